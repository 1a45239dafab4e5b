//! The `pipedemo` command line: parse, then dispatch ([`pipedemo::cli`]).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if let Err(e) = pipedemo::cli::read_dotenv() {
        eprintln!("error: {e:#}");
        return pipedemo::exit::Exit::Usage.into();
    }
    pipedemo::cli::run(pipedemo::cli::Cli::parse())
}
