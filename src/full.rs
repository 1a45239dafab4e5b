//! `pipedemo full`: the whole show. Setup, phases of growing load (10 → 100 → 1,000 → 10,000 by
//! default) with one consumer throughout, verification, and the reports.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::consumer::ConsumerOptions;
use crate::live::Shared;
use crate::load::{LoadResult, LoadSummary, PhaseOptions, Session};
use crate::setup::{self, SetupOptions};
use crate::verify::{self, VerifyReport};

/// Options of `full`.
#[derive(Clone, Debug)]
pub struct FullOptions {
    /// Events per phase.
    pub phases: Vec<u64>,
    /// Rows per INSERT transaction.
    pub batch_size: usize,
    /// Pause after each batch.
    pub batch_delay: Duration,
    /// Optional insert rate, events/s.
    pub rate: Option<f64>,
    /// Wait per phase after its last insert.
    pub timeout: Duration,
    /// Setup options.
    pub setup: SetupOptions,
    /// Fail when the run's p95 end-to-end latency exceeds this (ms).
    pub max_p95_ms: Option<f64>,
    /// Fail when the last phase's throughput is below this (events/s).
    pub min_throughput: Option<f64>,
    /// Where to write the JSON report.
    pub report_json: PathBuf,
    /// Where to write the HTML report.
    pub report_html: PathBuf,
}

/// The name of phase `i` of `n`.
pub fn phase_name(i: usize) -> String {
    match i {
        0 => "warm-up".into(),
        1 => "moderate".into(),
        2 => "stress".into(),
        3 => "extreme".into(),
        n => format!("phase {}", n + 1),
    }
}

/// What `full` measured.
#[derive(Debug, Serialize)]
pub struct FullOutcome {
    /// Per-phase summaries.
    pub phases: Vec<LoadSummary>,
    /// The verification.
    pub verification: VerifyReport,
    /// Threshold violations (empty when all held).
    pub threshold_failures: Vec<String>,
    /// Events over all phases.
    pub total_events: u64,
    /// Seconds from the first phase's start to the last one's end.
    pub total_secs: f64,
}

impl FullOutcome {
    /// Verification passed and no threshold broke.
    pub fn passed(&self) -> bool {
        self.verification.passed && self.threshold_failures.is_empty()
    }
}

/// Callbacks for the display: it learns the live state, and hears each finished phase.
pub trait Display {
    /// The session started; `live` is what to draw from.
    fn started(&mut self, live: Shared);
    /// A phase finished.
    fn phase_done(&mut self, r: &LoadResult);
}

/// Runs the show.
pub async fn run(
    s: &Settings,
    o: &FullOptions,
    display: &mut dyn Display,
    stop: CancellationToken,
) -> Result<(FullOutcome, Shared, setup::Versions)> {
    let versions = setup::run(s, &o.setup).await?;
    let mut session = Session::start(s, ConsumerOptions::default(), &stop).await?;
    let live = session.live.clone();
    display.started(live.clone());
    let mut results = Vec::new();
    for (i, &n) in o.phases.iter().enumerate() {
        if stop.is_cancelled() {
            break;
        }
        let r = session
            .run_phase(
                &phase_name(i),
                &PhaseOptions {
                    events: n,
                    batch_size: o.batch_size,
                    rate: o.rate,
                    batch_delay: o.batch_delay,
                    timeout: o.timeout,
                    seed: None,
                },
                &stop,
            )
            .await?;
        display.phase_done(&r);
        results.push(r);
    }
    session.finish().await?;
    let verification = verify::run(s, false).await?;

    let mut failures = Vec::new();
    let p95 = verification.latency.get("total").map_or(0.0, |t| t.p95_ms);
    if let Some(max) = o.max_p95_ms {
        if p95 > max {
            failures.push(format!(
                "p95 end-to-end latency {p95:.1} ms is above --max-p95-ms {max}"
            ));
        }
    }
    if let (Some(min), Some(last)) = (o.min_throughput, results.last()) {
        let t = last.summary().throughput_eps;
        if t < min {
            failures.push(format!(
                "{} phase throughput {t:.0} events/s is below --min-throughput {min}",
                last.name
            ));
        }
    }
    let total_events = results.iter().map(|r| r.events).sum();
    let total_secs = {
        let l = live.lock().expect("live state lock");
        match (l.phases.first(), l.phases.last()) {
            (Some(a), Some(b)) => {
                (b.finished_us.unwrap_or(b.started_us) - a.started_us).max(0) as f64 / 1e6
            }
            _ => 0.0,
        }
    };
    Ok((
        FullOutcome {
            phases: results.iter().map(LoadResult::summary).collect(),
            verification,
            threshold_failures: failures,
            total_events,
            total_secs,
        },
        live,
        versions,
    ))
}
