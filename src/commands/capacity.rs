//! `pipedemo capacity`: the highest rate this pipeline sustains within its latency target,
//! the stage that limits it, and proof that nothing was lost.
//!
//! An open-loop sweep (the wrk2 / OpenMessaging Benchmark way): each step offers a fixed rate
//! for `--step`, its latency counted from each event's scheduled insert time, so a pipeline
//! that falls behind cannot hide it (coordinated omission). Rates rise geometrically until a
//! step is not sustained, then the interval around the knee is narrowed ([`Sweep`]). Every
//! event of the sweep is verified at the end.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::display::{DisplayArgs, Shown};
use super::session::{self, PhaseOptions, Session};
use super::setup::{self, SetupOptions};
use super::signals::stop_on_signals;
use crate::check::capacity::{self as rules, Sweep, Verdict};
use crate::check::verify::{self, VerifyReport};
use crate::config::Settings;
use crate::pipeline::consumer::ConsumerOptions;
use crate::show::report;
use crate::telemetry::cpu::{CpuSample, Service};
use crate::telemetry::stats::{Stage, Summary};

/// The flags of `pipedemo capacity`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Take over an outbox table, read-model database, topic or connector that pipedemo did
    /// not create (setup refuses otherwise).
    #[arg(long)]
    pub force: bool,
    /// How long each rate is offered, e.g. `15s` or `1m`.
    #[arg(long, default_value = "15s", value_parser = parse_step)]
    pub step: Duration,
    /// The latency target: a step is sustained when its p99 (from each event's scheduled
    /// insert to its MongoDB write) is at most this many milliseconds.
    #[arg(long, default_value_t = 50.0, value_parser = positive)]
    pub slo_p99: f64,
    /// The first rate offered, events/s.
    #[arg(long, default_value_t = 500.0, value_parser = positive)]
    pub start_rate: f64,
    /// The highest rate offered, events/s.
    #[arg(long, default_value_t = 20_000.0, value_parser = positive)]
    pub max_rate: f64,
    /// Exit 1 when the sustained rate is below this (a CI gate), events/s.
    #[arg(long, value_parser = positive)]
    pub min_rate: Option<f64>,
    /// How long to warm the JVMs (Kafka, Connect) at 400 events/s before the sweep, not
    /// measured; `0s` skips it (a freshly started stack otherwise measures its JIT compiler).
    #[arg(long, default_value = "20s", value_parser = super::load::parse_duration)]
    pub prewarm: Duration,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

/// `--step`: a duration such as `15s` or `1m`, at least one second.
fn parse_step(s: &str) -> Result<Duration, String> {
    let d = super::load::parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{s}` is too short: a step needs at least 1s"));
    }
    Ok(d)
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// How a sweep runs.
#[derive(Clone, Debug)]
pub struct CapacityOptions {
    /// How long each rate is offered.
    pub step: Duration,
    /// The p99 target, ms.
    pub slo_p99_ms: f64,
    /// First rate, events/s.
    pub start_rate: f64,
    /// Highest rate, events/s.
    pub max_rate: f64,
    /// Factor between rates until a step fails.
    pub growth: f64,
    /// Halvings of the interval around the knee.
    pub refinements: u32,
}

impl From<&Args> for CapacityOptions {
    fn from(a: &Args) -> Self {
        CapacityOptions {
            step: a.step,
            slo_p99_ms: a.slo_p99,
            start_rate: a.start_rate,
            max_rate: a.max_rate,
            growth: 2.0,
            refinements: 3,
        }
    }
}

/// One step of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The rate offered, events/s.
    pub offered_eps: f64,
    /// Events that reached MongoDB while the step's inserts ran, per second.
    pub achieved_eps: f64,
    /// Events of the step.
    pub events: u64,
    /// End-to-end latency from each event's scheduled insert time (open loop).
    pub latency: Summary,
    /// Latency of each stage (T1−T0 … T5−T3) and end to end (T5−T0).
    pub stages: BTreeMap<Stage, Summary>,
    /// How fast the backlog (inserted, not yet in MongoDB) grew, events/s.
    pub backlog_slope_eps: f64,
    /// CPU of each local process during the step, % of one core.
    pub cpu_pct: BTreeMap<Service, f64>,
    /// Sustained, and why (not).
    pub verdict: Verdict,
}

/// What a sweep found.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityReport {
    /// The highest rate sustained within the SLO, events/s (none: not even the lowest).
    pub sustained_eps: Option<f64>,
    /// The latency target, ms (p99).
    pub slo_p99_ms: f64,
    /// Seconds each rate was offered.
    pub step_secs: f64,
    /// The stage whose p99 grew most from the highest sustained step to the next one up.
    pub limiting_stage: Option<Stage>,
    /// How much that stage's p99 grew, ms.
    pub limiting_growth_ms: Option<f64>,
    /// Every step, in the order offered.
    pub steps: Vec<Step>,
}

/// The whole result of `pipedemo capacity`, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct CapacityOutcome {
    /// The sweep.
    #[serde(flatten)]
    pub capacity: CapacityReport,
    /// Every event of the sweep traced in the read models.
    pub verification: VerifyReport,
    /// Why the run failed (empty when it passed).
    pub failures: Vec<String>,
}

/// Runs the sweep in a running session; each step is a phase named by its rate.
pub async fn sweep(
    session: &mut Session,
    o: &CapacityOptions,
    stop: &CancellationToken,
    mut on_step: impl FnMut(&Step),
) -> Result<CapacityReport> {
    let mut sweep = Sweep::new(o.start_rate, o.max_rate, o.growth, o.refinements);
    let mut steps: Vec<Step> = Vec::new();
    while let Some(rate) = sweep.next() {
        if stop.is_cancelled() {
            break;
        }
        let step = run_step(session, o, rate, stop).await?;
        sweep.record(rate, step.verdict.sustained);
        on_step(&step);
        steps.push(step);
    }
    let sustained = sweep.sustained();
    let knee = sustained.and_then(|r| {
        let below = steps.iter().find(|s| s.offered_eps == r)?;
        let above = steps
            .iter()
            .filter(|s| !s.verdict.sustained && s.offered_eps > r)
            .min_by(|a, b| a.offered_eps.total_cmp(&b.offered_eps))?;
        rules::limiting_stage(&below.stages, &above.stages)
    });
    Ok(CapacityReport {
        sustained_eps: sustained,
        slo_p99_ms: o.slo_p99_ms,
        step_secs: o.step.as_secs_f64(),
        limiting_stage: knee.map(|k| k.0),
        limiting_growth_ms: knee.map(|k| k.1),
        steps,
    })
}

/// Offers `rate` for one step, then lets the backlog drain before judging it.
async fn run_step(
    session: &mut Session,
    o: &CapacityOptions,
    rate: f64,
    stop: &CancellationToken,
) -> Result<Step> {
    let events = ((rate * o.step.as_secs_f64()).round() as u64).max(1);
    let phase = PhaseOptions {
        events,
        batch_size: rules::batch_size(rate),
        rate: Some(rate),
        batch_delay: Duration::ZERO,
        // An overloaded step drains at the pipeline's own pace; give it room to.
        timeout: Duration::from_secs(60).max(o.step * 4),
        seed: None,
    };
    let name = format!(
        "capacity {} ev/s (SLO p99 ≤ {} ms)",
        report::thousands(rate.round() as u64),
        o.slo_p99_ms
    );
    let cpu_before = CpuSample::now();
    let r = session.run_phase(&name, &phase, stop).await?;
    let cpu = CpuSample::now().since(&cpu_before);
    let latency = r
        .from_schedule
        .as_ref()
        .map(|l| l.summary())
        .unwrap_or_default();
    let backlog_slope_eps = rules::slope(&r.backlog);
    let verdict = rules::judge(
        rate,
        latency.p99_ms,
        o.slo_p99_ms,
        backlog_slope_eps,
        r.missing.len() as u64,
    );
    Ok(Step {
        offered_eps: rate,
        achieved_eps: if r.insert_secs > 0.0 {
            r.arrived_while_inserting as f64 / r.insert_secs
        } else {
            0.0
        },
        events,
        latency,
        stages: r.stats.stages.summaries(),
        backlog_slope_eps,
        cpu_pct: cpu,
        verdict,
    })
}

/// `pipedemo capacity`: setup, the sweep with one consumer throughout, verification.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let o = CapacityOptions::from(&a);
    let stop = stop_on_signals();
    setup::run(s, &SetupOptions::fresh(1, a.force)).await?;
    let mut session = Session::start(s, ConsumerOptions::default(), &stop).await?;
    let shown = Shown::start(session.live.clone(), a.display, &stop);
    let tui = shown.tui;
    if let Some(p) = session::prewarm(a.prewarm) {
        session.run_phase(session::PREWARM, &p, &stop).await?;
    }
    let result = sweep(&mut session, &o, &stop, |step| {
        if !tui {
            eprintln!("{}", report::capacity_step(step));
        }
    })
    .await;
    shown.end().await;
    session.finish().await?;
    let capacity = result?;
    let verification = verify::run(s, false).await?;
    let failures = failures(&capacity, &verification, a.min_rate);
    let outcome = CapacityOutcome {
        capacity,
        verification,
        failures,
    };
    if a.json {
        super::output::print_json(&outcome)?;
    } else {
        print!("{}", report::capacity(&outcome.capacity));
        println!(
            "Verification: {} of {} events found, integrity {}",
            report::thousands(outcome.verification.found_events),
            report::thousands(outcome.verification.total_events),
            verify::pass_fail_text(outcome.verification.integrity_passed)
        );
    }
    for f in &outcome.failures {
        eprintln!("✗ {f}");
    }
    Ok(if stop.is_cancelled() {
        crate::exit::Exit::Interrupted.into()
    } else if outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Why a capacity run fails: lost or broken events, nothing sustained, or below `--min-rate`.
pub fn failures(c: &CapacityReport, v: &VerifyReport, min_rate: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    if !v.passed {
        out.push(format!(
            "verification failed: {} of {} events found, {} duplicated, integrity {}",
            v.found_events,
            v.total_events,
            v.duplicated_ids.len(),
            verify::pass_fail_text(v.integrity_passed)
        ));
    }
    match (c.sustained_eps, min_rate) {
        (None, _) => out.push(format!(
            "no rate was sustained within p99 ≤ {} ms",
            c.slo_p99_ms
        )),
        (Some(r), Some(min)) if r < min => out.push(format!(
            "the pipeline sustains {r:.0} events/s at p99 ≤ {} ms, below --min-rate {min}",
            c.slo_p99_ms
        )),
        _ => {}
    }
    out
}
