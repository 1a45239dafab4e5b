//! The whole show over one session: setup, the pre-warm, the phases of growing load, the
//! closing capacity sweep, verification; the outcome as a value for the reports.

use std::path::PathBuf;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::capacity::{self, CapacityOptions};
use super::chaos::{self, ChaosOptions};
use super::outcome::{CapacityReport, FullOutcome, PhaseResult, PhaseSummary, Step};
use super::session::{Host, PhaseOptions, Session, PREWARM};
use crate::check::targets::Targets;
use crate::check::thresholds::Threshold;
use crate::check::verify::{self, VerifyReport};
use crate::config::Settings;
use crate::pipeline::consumer::ConsumerOptions;
use crate::provision::setup::{self, SetupOptions, Versions};
use crate::telemetry::live::Shared;
use crate::telemetry::stats;

/// Options of `full`.
#[derive(Clone, Debug)]
pub struct FullOptions {
    /// Events offered before the show to warm the JVMs (Kafka, Connect), shown as a phase of
    /// its own and not held to the targets.
    pub prewarm: Option<PhaseOptions>,
    /// One phase per entry, in order.
    pub phases: Vec<PhaseOptions>,
    /// Unpaced overload (`--burst`): latency targets are reported, not enforced.
    pub burst: bool,
    /// The targets every phase must meet (unless `burst`).
    pub targets: Targets,
    /// The closing capacity phase, unless skipped.
    pub capacity: Option<CapacityOptions>,
    /// The chaos phase after everything else (`--chaos`).
    pub chaos: Option<ChaosOptions>,
    /// Setup options.
    pub setup: SetupOptions,
    /// The consumer's options (its retry limit).
    pub consumer: ConsumerOptions,
    /// `--threshold`, `--max-p95-ms` and `--min-throughput`.
    pub thresholds: Vec<Threshold>,
    /// Where to write the JSON report.
    pub report_json: PathBuf,
    /// Where to write the HTML report.
    pub report_html: PathBuf,
}

/// The name of phase `i`.
pub fn phase_name(i: usize) -> String {
    match i {
        0 => "warm-up".into(),
        1 => "moderate".into(),
        2 => "stress".into(),
        3 => "extreme".into(),
        n => format!("phase {}", n + 1),
    }
}

/// Hears how the show goes, for a display: the live state once, then each finished phase.
pub trait Observer {
    /// The session started; `live` is what to draw from.
    fn started(&mut self, live: Shared);
    /// A phase finished.
    fn phase_done(&mut self, r: &PhaseResult);
    /// A step of the closing capacity phase finished.
    fn capacity_step(&mut self, s: &Step);
}

/// Runs the show: setup, the pre-warm, the phases, the capacity phase, verification.
pub async fn run(
    s: &Settings,
    o: &FullOptions,
    observer: &mut dyn Observer,
    stop: CancellationToken,
) -> Result<(FullOutcome, Shared, Versions)> {
    let versions = setup::run(s, &o.setup).await?;
    let mut session = Session::start(s, o.consumer.clone(), &stop).await?;
    let live = session.live.clone();
    observer.started(live.clone());
    let prewarm = match &o.prewarm {
        Some(p) if !stop.is_cancelled() => {
            let r = session.run_phase(PREWARM, p, &stop).await?;
            observer.phase_done(&r);
            Some(r.summary())
        }
        _ => None,
    };
    let mut results = Vec::new();
    for (i, phase) in o.phases.iter().enumerate() {
        if stop.is_cancelled() {
            break;
        }
        let r = session.run_phase(&phase_name(i), phase, &stop).await?;
        observer.phase_done(&r);
        results.push(r);
    }
    let mut cleared = verify::Cleared::default();
    let capacity = match &o.capacity {
        Some(c) if !stop.is_cancelled() => Some(
            capacity::sweep(s, &mut session, c, &mut cleared, &stop, |s| {
                observer.capacity_step(s)
            })
            .await?,
        ),
        _ => None,
    };
    session.finish().await?;
    // The faults come last, so that they cannot disturb the measured phases; the consumer
    // moves to a child process that the chaos phase can kill, on the same live state.
    let chaos = match &o.chaos {
        Some(c) if !stop.is_cancelled() => {
            let mut session = Session::start_on(
                s,
                o.consumer.clone(),
                &CancellationToken::new(),
                Host::Children(Some(live.clone())),
            )
            .await?;
            let r = chaos::run(&mut session, s, c, &stop).await;
            session.finish().await?;
            Some(r?)
        }
        _ => None,
    };
    let verification = verify::run_after(s, false, &cleared).await?;
    let total_secs = results.iter().map(|r| r.wall_secs).sum();
    let phases: Vec<PhaseSummary> = results.iter().map(PhaseResult::summary).collect();
    let mut outcome = outcome(o, phases, prewarm, capacity, verification, total_secs);
    if let Some(mut c) = chaos {
        c.judge(&outcome.verification);
        outcome.chaos = Some(c);
    }
    outcome.gate(&o.thresholds);
    Ok((outcome, live, versions))
}

/// The outcome: each phase against the targets, and the thresholds that broke.
fn outcome(
    o: &FullOptions,
    phases: Vec<PhaseSummary>,
    prewarm: Option<PhaseSummary>,
    capacity: Option<CapacityReport>,
    verification: VerifyReport,
    total_secs: f64,
) -> FullOutcome {
    let mut threshold_failures = Vec::new();
    let targets_missed: Vec<Vec<String>> = phases
        .iter()
        .map(|p| {
            o.targets
                .missed(&stats::total(&p.stages), p.delivered, p.events)
        })
        .collect();
    if !o.burst {
        for (p, missed) in phases.iter().zip(&targets_missed) {
            if !missed.is_empty() {
                threshold_failures.push(format!(
                    "{} phase missed the targets: {}",
                    p.phase,
                    missed.join(", ")
                ));
            }
        }
    }
    FullOutcome {
        total_events: phases.iter().map(|p| p.events).sum(),
        phases,
        verification,
        threshold_failures,
        thresholds: Vec::new(),
        total_secs,
        burst: o.burst,
        targets: o.targets,
        targets_missed,
        prewarm,
        capacity,
        chaos: None,
        comparison: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::{Stage, Summary};

    fn options(burst: bool, max_p95_ms: Option<f64>) -> FullOptions {
        FullOptions {
            prewarm: None,
            phases: Vec::new(),
            burst,
            targets: Targets::default(),
            capacity: None,
            chaos: None,
            setup: SetupOptions::fresh(1, false),
            consumer: ConsumerOptions::default(),
            thresholds: max_p95_ms.map(Threshold::max_p95_ms).into_iter().collect(),
            report_json: PathBuf::from("r.json"),
            report_html: PathBuf::from("r.html"),
        }
    }

    fn phase(name: &str, p99_ms: f64, delivered: u64) -> PhaseSummary {
        PhaseSummary {
            phase: name.into(),
            events: 100,
            delivered,
            stages: [(
                Stage::Total,
                Summary {
                    count: 100,
                    p50_ms: 10.0,
                    p95_ms: 20.0,
                    p99_ms,
                    ..Summary::default()
                },
            )]
            .into(),
            ..PhaseSummary::default()
        }
    }

    fn verified() -> VerifyReport {
        VerifyReport {
            passed: true,
            integrity_passed: true,
            ..VerifyReport::default()
        }
    }

    #[test]
    fn phases_are_named_as_the_seed_names_them() {
        let names: Vec<String> = (0..5).map(phase_name).collect();
        assert_eq!(
            names,
            ["warm-up", "moderate", "stress", "extreme", "phase 5"]
        );
    }

    #[test]
    fn a_phase_that_misses_its_targets_fails_the_show_unless_it_is_a_burst() {
        let phases = || vec![phase("warm-up", 20.0, 100), phase("stress", 250.0, 100)];
        let o = outcome(&options(false, None), phases(), None, None, verified(), 1.0);
        assert_eq!(o.targets_missed[0], Vec::<String>::new());
        assert_eq!(o.targets_missed[1], ["p99 250.0 ms ≥ 200 ms"]);
        assert_eq!(
            o.threshold_failures,
            ["stress phase missed the targets: p99 250.0 ms ≥ 200 ms"]
        );
        assert!(!o.passed());
        assert_eq!(o.total_events, 200);
        // A burst is overload by design: the misses are reported, not enforced.
        let b = outcome(&options(true, None), phases(), None, None, verified(), 1.0);
        assert_eq!(b.targets_missed[1].len(), 1);
        assert!(b.threshold_failures.is_empty() && b.passed());
    }

    #[test]
    fn the_p95_gate_reads_the_slowest_phase_not_the_capacity_sweep() {
        // The verified latency holds the sweep's overloaded steps; the gate reads the phases.
        let mut v = verified();
        v.latency.insert(
            Stage::Total,
            Summary {
                count: 100,
                p95_ms: 900.0,
                ..Summary::default()
            },
        );
        let mut slow = phase("stress", 90.0, 100);
        slow.stages.get_mut(&Stage::Total).unwrap().p95_ms = 80.0;
        slow.stages.get_mut(&Stage::Total).unwrap().count = 100;
        let opts = options(false, Some(50.0));
        let mut o = outcome(
            &opts,
            vec![phase("warm-up", 20.0, 100), slow],
            None,
            None,
            v,
            1.0,
        );
        assert!(o.passed());
        o.gate(&opts.thresholds);
        assert_eq!(
            o.threshold_failures,
            ["threshold p95<=50ms broken: p95 is 80.0 ms"]
        );
        assert!(!o.passed() && !o.thresholds[0].passed);
    }
}
