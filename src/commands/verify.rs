//! `pipedemo verify`: the command around [`crate::check::verify`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::check::verify;
use crate::config::Settings;
use crate::show::report;

/// The flags of `pipedemo verify`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Also compute a checksum of all read models.
    #[arg(long)]
    pub checksum: bool,
}

/// Verifies, prints the report, and exits 1 when anything is missing or wrong.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let r = verify::run(s, a.checksum).await?;
    if let Some(p) = &a.report {
        verify::write_report(&r, p)?;
        crate::provision::ownership::record_files(s, &[p.as_path()]).await?;
    }
    if a.json {
        super::output::print_json(crate::check::figures::Kind::Verify, &r)?;
    } else {
        print!("{}", report::verify(&r));
        if let Some(p) = &a.report {
            println!("Report written to {}", p.display());
        }
    }
    Ok(if r.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
