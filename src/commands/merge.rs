//! `pipedemo merge FILE…`: adds up the results files that processes of a run wrote (for
//! processes that could not reach the results topic, or a run read afterwards), with the same
//! arithmetic the run's owner uses on the topic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::event::EventType;
use crate::telemetry::results::{Merged, Share};
use crate::telemetry::results_file;
use crate::telemetry::stats::{Stage, Summary};

/// The flags of `pipedemo merge`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Results files (`pipedemo_results.jsonl`, one per process directory or host).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Only this run [default: every run in the files].
    #[arg(long = "run", value_name = "NAME")]
    pub run: Option<String>,
    /// Print the merged figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One phase of one run, merged over every process that wrote it.
#[derive(Serialize, Debug)]
pub struct MergedSummary {
    /// The run.
    pub run: String,
    /// The phase.
    pub phase: String,
    /// Rows the generators inserted.
    pub offered: u64,
    /// Events applied (first time anywhere).
    pub applied: u64,
    /// Events found applied already (redeliveries).
    pub already_applied: u64,
    /// Dead letters of the phase.
    pub dead_lettered: u64,
    /// Applied with times that cannot be real (kept out of the latency figures).
    pub timing_implausible: u64,
    /// Latency by stage.
    pub stages: BTreeMap<Stage, Summary>,
    /// End-to-end latency by type.
    pub by_type: BTreeMap<EventType, Summary>,
    /// From each event's due time (open-loop phases).
    pub total_from_schedule: Option<Summary>,
    /// Each process's part.
    pub processes: Vec<Share>,
}

/// Every phase in `merged` (of `run`, when given), in order of run and phase.
pub fn summaries(merged: &Merged, run: Option<&str>) -> Vec<MergedSummary> {
    let mut out = Vec::new();
    for (r, p) in merged.keys() {
        if run.is_some_and(|want| want != &*r) {
            continue;
        }
        // A file read afterwards: "silent" means nothing then, so it is measured from the
        // newest word of the phase, not from now.
        let Some(m) = merged.phase(&r, &p, i64::MIN, merged.newest(&r, &p)) else {
            continue;
        };
        let f = &m.figures;
        out.push(MergedSummary {
            run: r.to_string(),
            phase: p.to_string(),
            offered: f.offered,
            applied: f.applied(),
            already_applied: f.stats.already_applied.values().sum(),
            dead_lettered: f.stats.errors,
            timing_implausible: f.stats.implausible,
            stages: f.stats.stages.summaries(),
            by_type: f.stats.by_type_summaries(),
            total_from_schedule: (f.from_schedule.count() > 0).then(|| f.from_schedule.summary()),
            processes: m.shares.clone(),
        });
    }
    out
}

/// The text form.
pub fn text(all: &[MergedSummary]) -> String {
    let mut out = String::new();
    for m in all {
        let hosts: std::collections::BTreeSet<&str> =
            m.processes.iter().map(|p| p.host.as_str()).collect();
        let _ = writeln!(
            out,
            "run {}, phase {}: {} offered, {} applied, {} redelivered, {} dead-lettered; {} \
             processes on {} host(s)",
            m.run,
            m.phase,
            m.offered,
            m.applied,
            m.already_applied,
            m.dead_lettered,
            m.processes.len(),
            hosts.len()
        );
        if let Some(s) = &m.total_from_schedule {
            let _ = writeln!(
                out,
                "  from schedule: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
                s.p50_ms, s.p99_ms, s.max_ms, s.count
            );
        }
        out.push('\n');
        crate::show::report::latency_table(&mut out, &m.stages, &m.by_type);
        out.push_str(&crate::show::report::processes(&m.processes));
        out.push('\n');
    }
    out
}

/// Reads, merges and prints.
pub fn command(a: &Args) -> Result<ExitCode> {
    let mut merged = Merged::default();
    let mut unreadable = 0;
    for f in &a.files {
        let (updates, bad) = results_file::read(f)?;
        unreadable += bad;
        for u in updates {
            merged.take(u);
        }
    }
    if unreadable > 0 {
        eprintln!("{unreadable} line(s) were not results and were skipped");
    }
    let all = summaries(&merged, a.run.as_deref());
    if all.is_empty() {
        return Err(crate::exit::config(match &a.run {
            Some(r) => format!("no results of run {r} in the files given"),
            None => "no results in the files given (they are the pipedemo_results.jsonl files \
                     that load, full and consume write beside their metrics file)"
                .into(),
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", text(&all));
    }
    Ok(ExitCode::SUCCESS)
}
