//! The `pipedemo` command line: parse, then dispatch ([`pipedemo::cli`]).

use std::process::ExitCode;

// Per event, pipedemo allocates and frees a few dozen small buffers (JSON, BSON, metrics);
// glibc's malloc spent a fifth of its CPU on them at 4,000 events/s.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let dotenv = pipedemo::cli::read_dotenv();
    let mut cli = pipedemo::cli::parse();
    if let Err(e) = dotenv {
        cli.settings.deferred.get_or_insert(e);
    }
    pipedemo::cli::run(cli)
}
