//! The `pipedemo` command line: parse, then dispatch ([`pipedemo::cli`]).

use std::process::ExitCode;

// Per event, pipedemo allocates and frees a few dozen small buffers (JSON, BSON, metrics);
// glibc's malloc spent a fifth of its CPU on them at 4,000 events/s.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Err(e) = pipedemo::cli::read_dotenv() {
        eprintln!("error: {e:#}");
        return pipedemo::exit::Exit::Usage.into();
    }
    pipedemo::cli::run(pipedemo::cli::parse())
}
