//! `pipedemo compare BASE.json NEW.json`: two runs' figures side by side, exit 1 on a
//! regression ([`crate::check::compare`]). Reads files only; no service is contacted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use crate::check::compare::{self, parse_pct};
use crate::check::figures::Kind;
use crate::exit::{self, Exit};

/// The flags of `pipedemo compare`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The run to compare against: the JSON that `load`, `full`, `capacity`, `chaos` or
    /// `verify` printed with `--json` (or `demo_report.json`).
    pub base: PathBuf,
    /// The new run's JSON, of the same command.
    pub new: PathBuf,
    /// How much worse a figure may get before it is a regression (exit 1), e.g. `10%`. Counts
    /// of lost, duplicated and dead-lettered events fail on any rise.
    #[arg(long, default_value = "10%", value_parser = parse_pct)]
    pub max_regression: f64,
    /// Print the comparison as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the comparison as an HTML page to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// A document of `kind` from `path`, or a configuration error saying what it is instead.
pub fn read_of(path: &Path, kind: Kind) -> Result<Value> {
    let doc = read(path)?;
    match Kind::of(&doc) {
        Some(k) if k == kind => Ok(doc),
        Some(k) => Err(exit::config(format!(
            "{} is a `{k}` document; a `{kind}` run compares with a `{kind}` document",
            path.display()
        ))),
        None => Err(exit::config(format!(
            "{} is not a pipedemo report; pass a `{kind}` run's JSON",
            path.display()
        ))),
    }
}

/// The largest document `compare` reads: a full run's JSON is a few MB at most.
const LARGEST_DOCUMENT: u64 = 256 * 1024 * 1024;

fn read(path: &Path) -> Result<Value> {
    use std::io::Read as _;
    let cannot =
        |e: &dyn std::fmt::Display| exit::config(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    // `/dev/zero`, a pipe, a device: no end to read to.
    if !file.metadata().map_err(|e| cannot(&e))?.is_file() {
        return Err(exit::config(format!(
            "{} is not a file; pass the JSON a command printed with --json, saved to a file",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(LARGEST_DOCUMENT + 1)
        .read_to_string(&mut text)
        .map_err(|e| cannot(&e))?;
    if text.len() as u64 > LARGEST_DOCUMENT {
        return Err(exit::config(format!(
            "{} is larger than {} MB, more than any pipedemo report; pass a run's --json output",
            path.display(),
            LARGEST_DOCUMENT / (1024 * 1024)
        )));
    }
    serde_json::from_str(&text).map_err(|e| {
        exit::config(format!(
            "{} is not a JSON document ({e}); pass what a command printed with --json",
            path.display()
        ))
    })
}

/// `pipedemo compare`.
pub fn command(a: &Args) -> Result<ExitCode> {
    let (base, new) = (read(&a.base)?, read(&a.new)?);
    let c = compare::compare(&base, &new, a.max_regression).map_err(exit::config)?;
    if a.json {
        super::output::print_document(&serde_json::to_value(&c)?)?;
    } else {
        let name = |p: &Path| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            )
        };
        let (mut b, mut n) = (name(&a.base), name(&a.new));
        if b == n {
            (b, n) = ("base".into(), "new".into());
        }
        print!("{}", compare::text(&c, &b, &n));
    }
    if let Some(path) = &a.html {
        crate::show::demo_report::write_comparison_html(
            path,
            &c,
            &a.base.display().to_string(),
            &a.new.display().to_string(),
        )?;
        eprintln!("HTML: {}", path.display());
    }
    Ok(if c.passed {
        Exit::Success
    } else {
        Exit::CheckFailed
    }
    .into())
}
