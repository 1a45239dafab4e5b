//! `pipedemo man`: the manual page (roff) on stdout, or a page per subcommand in a directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// The flags of `pipedemo man`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "Read it: pipedemo man | man -l -
Install: pipedemo man --out ~/.local/share/man/man1")]
pub struct Args {
    /// Write pipedemo.1 and a page per subcommand (pipedemo-load.1, …) into this directory
    /// instead of printing pipedemo.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Renders the pages of `cmd`, the whole command line (passed in by the caller, which owns it).
pub fn command(a: &Args, cmd: clap::Command) -> Result<ExitCode> {
    match &a.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
            eprintln!("Manual pages written to {}", dir.display());
        }
        None => match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
            // `pipedemo man | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r?,
        },
    }
    Ok(ExitCode::SUCCESS)
}
