//! `pipedemo cleanup`: removes what the demo made: outbox rows, the read-model database, and
//! the metrics and report files.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::config::Settings;
use crate::pipeline::outbox;
use crate::pipeline::store::ReadModels;

/// The flags of `pipedemo cleanup`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Asks, then deletes the demo data and the default report files.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    if !confirm(s, a.yes)? {
        eprintln!("cleanup cancelled; nothing deleted");
        return Ok(crate::exit::Exit::CheckFailed.into());
    }
    let files = [
        s.metrics_file.clone(),
        PathBuf::from("demo_report.json"),
        PathBuf::from("demo_report.html"),
    ];
    run(s, &files).await?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on a terminal whether to go on; refuses without `--yes` when there is no terminal to
/// ask on (a usage error).
pub fn confirm(s: &Settings, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("cleanup deletes data; pass --yes to run it without a terminal");
    }
    eprint!(
        "Delete all rows of event_outbox in {}, drop MongoDB database `{}` and the metrics/report files? [y/N] ",
        s.pg.describe(),
        s.mongo.mongodb_database
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Deletes the demo data. `files` are removed when present.
pub async fn run(s: &Settings, files: &[PathBuf]) -> Result<()> {
    let pg = outbox::connect(&s.pg).await?;
    outbox::check_table(&pg).await?;
    outbox::truncate(&pg).await?;
    eprintln!("  ✓ event_outbox emptied");
    ReadModels::connect(&s.mongo).await?.drop_all().await?;
    eprintln!(
        "  ✓ MongoDB database `{}` dropped",
        s.mongo.mongodb_database
    );
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => eprintln!("  ✓ removed {}", f.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot remove {}: {e}", f.display()),
        }
    }
    Ok(())
}
