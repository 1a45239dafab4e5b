//! The `pipedemo` command line: parse, then dispatch ([`pipedemo::cli`]).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // .env values act as environment variables; a missing file is fine.
    let _ = dotenvy::dotenv();
    pipedemo::cli::run(pipedemo::cli::Cli::parse())
}
