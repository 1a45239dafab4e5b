//! `pipedemo config`: every setting's value and where it came from (flag, environment,
//! profile, file, default), secrets as `***`: what a run would use, without running it.

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Settings;

/// The flags of `pipedemo config`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Print the settings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipedemo config`.
pub fn command(s: &Settings, a: &Args) -> Result<ExitCode> {
    if a.json {
        super::output::print_document(&serde_json::to_value(&s.sources)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = &s.sources.0;
    let kw = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(7);
    let vw = rows
        .iter()
        .map(|r| r.value.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 48);
    println!("{:<kw$}  {:<vw$}  source", "setting", "value");
    for r in rows {
        println!("{:<kw$}  {:<vw$}  {}", r.key, r.value, r.source);
    }
    println!(
        "\nOrder: flag > environment (PIPEDEMO_NAME or NAME, .env) > profile > file > default."
    );
    Ok(ExitCode::SUCCESS)
}
