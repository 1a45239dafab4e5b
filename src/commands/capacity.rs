//! `pipedemo capacity`: the highest rate this pipeline sustains within its latency target,
//! the stage that limits it, and proof that nothing was lost.
//!
//! An open-loop sweep (the wrk2 / OpenMessaging Benchmark way): each step offers a fixed rate
//! for `--step`, its latency counted from each event's scheduled insert time, so a pipeline
//! that falls behind cannot hide it (coordinated omission). Rates rise geometrically until a
//! step is not sustained, then the interval around the knee is narrowed
//! ([`crate::check::capacity::Sweep`], run by [`crate::run::capacity`]). Every event of the
//! sweep is verified at the end.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::flags::{parse_duration, positive, RetryArgs, ThresholdArgs, WriteArgs};
use super::output;
use super::signals::stop_on_signals;
use crate::check::capacity as rules;
use crate::check::figures::Kind;
use crate::check::thresholds::Threshold;
use crate::check::verify;
use crate::config::Settings;
use crate::provision::setup::{self, SetupOptions};
use crate::run::capacity::{sweep, CapacityOptions};
use crate::run::outcome::CapacityOutcome;
use crate::run::session::{self, Session};
use crate::show::display::{DisplayArgs, Shown};
use crate::show::report;

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
    /// insert to its MongoDB write) is at most this, e.g. `50ms` (a bare number is ms).
    #[arg(long, default_value = "50ms", value_parser = super::flags::latency_ms)]
    pub slo_p99: f64,
    /// The first rate offered, events/s.
    #[arg(long, default_value_t = 500.0, value_parser = positive)]
    pub start_rate: f64,
    /// The highest rate offered, events/s.
    #[arg(long, default_value_t = 20_000.0, value_parser = positive)]
    pub max_rate: f64,
    /// Same as `--threshold 'capacity>=X'`: exit 1 when the sustained rate is below this
    /// (a CI gate), events/s.
    #[arg(long, value_parser = positive)]
    pub min_rate: Option<f64>,
    /// Gates on the sweep's figures (capacity: the sustained rate; latency, stages and
    /// throughput: the sustained step's).
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// How long to warm the JVMs (Kafka, Connect) at 400 events/s before the sweep, not
    /// measured; `0s` skips it (a freshly started stack otherwise measures its JIT compiler).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub prewarm: Duration,
    /// Keep every step's events in the read models, as one long run would, instead of
    /// starting each step on empty ones (what was there verified first). The MongoDB
    /// server's work per event grows with the store, so the figure then depends on the
    /// sweep's path: the steps that narrow the knee come last, on the most data.
    #[arg(long)]
    pub growing_store: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How events become outbox transactions.
    #[command(flatten)]
    pub write: WriteArgs,
    /// How long failures are retried.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

/// `--step`: a duration such as `15s` or `1m`, at least one second.
fn parse_step(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{s}` is too short: a step needs at least 1s"));
    }
    Ok(d)
}

impl From<&Args> for CapacityOptions {
    fn from(a: &Args) -> Self {
        CapacityOptions {
            step: a.step,
            slo_p99_ms: a.slo_p99,
            start_rate: a.start_rate,
            max_rate: a.max_rate,
            growth: 2.0,
            refinements: 5,
            write: a.write.model(),
            fresh_store: !a.growing_store,
        }
    }
}

/// `pipedemo capacity`: setup, the sweep with one consumer throughout, verification.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let o = CapacityOptions::from(&a);
    let thresholds = a
        .thresholds
        .list(Kind::Capacity, a.min_rate.map(Threshold::min_capacity))?;
    let stop = stop_on_signals();
    super::chaos::restore_left(s).await?;
    setup::run(s, &SetupOptions::fresh(1, a.force)).await?;
    let mut session = Session::start(s, a.retry.consumer(), &stop).await?;
    let shown = Shown::start(session.live.clone(), a.display, &stop);
    let tui = shown.tui;
    if let Some(p) = session::prewarm(a.prewarm) {
        session.run_phase(session::PREWARM, &p, &stop).await?;
    }
    let mut cleared = verify::Cleared::default();
    let result = sweep(s, &mut session, &o, &mut cleared, &stop, |step| {
        if !tui {
            eprintln!("{}", report::capacity_step(step));
        }
    })
    .await;
    shown.end().await;
    session.finish().await?;
    let capacity = result?;
    let verification = verify::run_after(s, false, &cleared).await?;
    let failures = rules::failures(capacity.sustained_eps, capacity.slo_p99_ms, &verification);
    let mut outcome = CapacityOutcome {
        capacity,
        verification,
        failures,
    };
    let mut doc = output::document(Kind::Capacity, &outcome)?;
    let checked = output::gate(Kind::Capacity, &mut doc, &thresholds);
    outcome
        .failures
        .extend(checked.iter().filter(|c| !c.passed).map(|c| c.failure()));
    if a.json {
        output::print_document(&doc)?;
    } else {
        print!("{}", report::capacity(&outcome.capacity));
        println!(
            "Verification: {} of {} events found, integrity {}",
            report::thousands(outcome.verification.found_events),
            report::thousands(outcome.verification.total_events),
            verify::pass_fail_text(outcome.verification.integrity_passed)
        );
    }
    output::human(a.json, &output::threshold_lines(&checked));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_at_least_a_second() {
        assert_eq!(parse_step("15s"), Ok(Duration::from_secs(15)));
        assert!(parse_step("500ms").unwrap_err().contains("at least 1s"));
        assert!(parse_step("fast").is_err());
    }
}
