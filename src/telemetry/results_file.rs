//! The results file: each process appends its final results there (one JSON line per phase,
//! the same [`Update`] it publishes), so that processes that could not reach the results topic
//! can still be merged afterwards (`pipedemo merge`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::telemetry::results::Update;

/// The file's name, beside the metrics file.
pub const NAME: &str = "pipedemo_results.jsonl";

/// Where this process's results go: beside `metrics_file`.
pub fn path(metrics_file: &Path) -> PathBuf {
    metrics_file.parent().unwrap_or(Path::new("")).join(NAME)
}

/// Appends `updates` with one `write`, so that processes sharing a directory never
/// interleave half lines.
pub fn append(path: &Path, updates: &[Update]) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for u in updates {
        serde_json::to_writer(&mut buf, u)?;
        buf.push(b'\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(&buf))
        .with_context(|| format!("writing the results file {}", path.display()))
}

/// The updates in a results file, and how many lines were not one (skipped, not fatal).
pub fn read(path: &Path) -> Result<(Vec<Update>, u64)> {
    let f = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot read results file {}: give the {NAME} files the processes wrote",
            path.display()
        )
    })?;
    let (mut out, mut bad) = (Vec::new(), 0);
    for line in BufReader::new(f).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Update>(&line) {
            Ok(u) => out.push(u),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Whether a file's first line is one pipedemo wrote there (what `cleanup` asks before
/// removing it).
pub fn is_ours(first_line: &str) -> bool {
    serde_json::from_str::<Update>(first_line).is_ok()
}
