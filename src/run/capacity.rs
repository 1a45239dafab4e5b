//! The capacity sweep over a running session: each step offers one rate, open loop, for a
//! fixed time; [`crate::check::capacity`] decides which rate comes next and whether a step
//! was sustained.

use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::outcome::{CapacityReport, Step};
use super::session::{events_at, PhaseOptions, Session};
use crate::check::capacity::{self as rules, Sweep};
use crate::check::verify::Cleared;
use crate::config::Settings;
use crate::numbers::thousands;
use crate::pipeline::outbox;
use crate::pipeline::writer::WriteModel;
use crate::telemetry::clock::now_us;
use crate::telemetry::cpu::CpuSample;
use crate::telemetry::gc;

/// How the name of every step's phase begins, so that a report can tell the sweep's steps
/// from the show's phases.
pub const STEP_PREFIX: &str = "capacity";

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
    /// How each step's events become transactions.
    pub write: WriteModel,
    /// Each step on empty read models and an empty outbox (what was there verified first):
    /// the MongoDB server's work per event grows with the read models' size, so on a store
    /// that keeps every step's events the steps that narrow the knee, which come last, are
    /// judged on the most data and the figure depends on the sweep's path.
    pub fresh_store: bool,
}

/// How long each try of a step first offers its rate unjudged, as a phase of its own whose
/// events are verified with the rest. A step starts from idle after a drain, on a fresh store
/// right after the read models were emptied: in the step's first 100–300 ms the MongoDB writes
/// stalled (p50 43–85 ms against 10–12 after), which alone held about 1 % of a 15-second step
/// at 4,000 ev/s, enough to decide its p99 near the knee. The question is the rate sustained,
/// not a start from idle.
pub const LEAD_IN: Duration = Duration::from_secs(1);

/// The rest after a step whose backlog grew, once it has drained, before the next step
/// (two steps' length when that is shorter: a sweep of short steps is a quick look).
pub const SETTLE_AFTER_OVERLOAD: Duration = Duration::from_secs(10);

/// Runs the sweep in a running session; each step is a phase named by its rate. With
/// [`CapacityOptions::fresh_store`], what each step clears was verified first, into `cleared`,
/// for the run's verification at the end ([`crate::check::verify::run_after`]).
pub async fn sweep(
    s: &Settings,
    session: &mut Session,
    o: &CapacityOptions,
    cleared: &mut Cleared,
    stop: &CancellationToken,
    mut on_step: impl FnMut(&Step),
) -> Result<CapacityReport> {
    let mut sweep = Sweep::new(o.start_rate, o.max_rate, o.growth, o.refinements);
    let mut steps: Vec<Step> = Vec::new();
    while let Some(rate) = sweep.next() {
        if stop.is_cancelled() {
            break;
        }
        let mut step = run_step(s, session, o, rate, cleared, stop).await?;
        if rules::worth_confirming(&step.verdict) && !stop.is_cancelled() {
            let mut again = run_step(s, session, o, rate, cleared, stop).await?;
            again.verdict = rules::confirmed(&step.verdict, &again.verdict);
            again.first_try = Some(Box::new(step));
            step = again;
        }
        sweep.record(rate, step.verdict.sustained, step.verdict.backlog_flat);
        let overloaded = !step.verdict.backlog_flat;
        on_step(&step);
        steps.push(step);
        if overloaded && sweep.next().is_some() {
            // Drained is not yet settled: the services still work off the overload (the
            // MongoDB-protocol server's storage, the JVMs' heaps) and a step judged now
            // fails below rates that held before it.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(SETTLE_AFTER_OVERLOAD.min(o.step * 2)) => {}
            }
        }
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
    let (ceiling_eps, overflow_eps) = sweep.ceiling();
    session.live.lock().result = Some(result_line(sustained, o.slo_p99_ms));
    Ok(CapacityReport {
        routing: session.routing(),
        fresh_store: o.fresh_store,
        sustained_eps: sustained,
        knee_above_eps: sweep.knee_above(),
        uncertainty: sweep.uncertainty(),
        ceiling_eps,
        overflow_eps,
        slo_p99_ms: o.slo_p99_ms,
        step_secs: o.step.as_secs_f64(),
        limiting_stage: knee.map(|k| k.0),
        limiting_growth_ms: knee.map(|k| k.1),
        steps,
    })
}

/// What a sweep found, in the words of the line that says it is complete: the result, not
/// the last rate tried (which is above it, or a refinement below it).
fn result_line(sustained: Option<f64>, slo_p99_ms: f64) -> String {
    match sustained {
        Some(r) => format!(
            "capacity {} events/s: the highest offered rate sustained within p99 {slo_p99_ms} ms",
            crate::numbers::thousands(r.round() as u64)
        ),
        None => format!("capacity: no offered rate sustained within p99 {slo_p99_ms} ms"),
    }
}

/// Offers `rate` for one step (on a fresh store when asked), then lets the backlog drain
/// before judging it.
async fn run_step(
    s: &Settings,
    session: &mut Session,
    o: &CapacityOptions,
    rate: f64,
    cleared: &mut Cleared,
    stop: &CancellationToken,
) -> Result<Step> {
    let events = events_at(rate, o.step);
    let phase = PhaseOptions {
        events,
        write: o.write,
        rate: Some(rate),
        batch_delay: Duration::ZERO,
        // An overloaded step drains at the pipeline's own pace; give it room to.
        timeout: Duration::from_secs(60).max(o.step * 4),
        seed: None,
    };
    let name = format!(
        "{STEP_PREFIX} {} ev/s (SLO p99 ≤ {} ms)",
        thousands(rate.round() as u64),
        o.slo_p99_ms
    );
    if o.fresh_store {
        start_fresh(s, cleared).await?;
    }
    let received =
        |session: &Session| -> u64 { session.live.lock().phases.iter().map(|p| p.received).sum() };
    let before_lead_in = received(session);
    let lead_in_events = lead_in(session, &phase, rate, stop).await?;
    let events_before = if o.fresh_store {
        received(session) - before_lead_in
    } else {
        received(session)
    };
    let cpu_before = CpuSample::now();
    let from_us = now_us();
    let r = session.run_phase(&name, &phase, stop).await?;
    let cpu = CpuSample::now().since(&cpu_before);
    let gc_pauses = gc::pauses_between(&gc::stack_logs(), from_us, now_us());
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
        transactions_per_sec: r.transactions_per_sec(),
        events,
        lead_in_events,
        events_before,
        latency,
        stages: r.stats.stages.summaries(),
        backlog_slope_eps,
        cpu_pct: cpu,
        verdict,
        gc_pauses,
        first_try: None,
    })
}

/// Offers `rate` for [`LEAD_IN`] before a step's try ([`LEAD_IN`] says why); returns how
/// many events it offered.
async fn lead_in(
    session: &mut Session,
    step: &PhaseOptions,
    rate: f64,
    stop: &CancellationToken,
) -> Result<u64> {
    let o = PhaseOptions {
        events: events_at(rate, LEAD_IN),
        ..step.clone()
    };
    let name = format!(
        "{STEP_PREFIX} {} ev/s lead-in (not judged)",
        thousands(rate.round() as u64)
    );
    session.run_phase(&name, &o, stop).await?;
    Ok(o.events)
}

/// Verifies what the outbox and the read models hold, then empties both. The last step
/// drained before this (its phase waits for every event), so nothing is in flight.
async fn start_fresh(s: &Settings, cleared: &mut Cleared) -> Result<()> {
    let store = cleared.verify_now(s).await?;
    outbox::clear_events(&outbox::connect(&s.pg).await?).await?;
    store.start_empty().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_names_the_sustained_rate() {
        assert_eq!(
            result_line(Some(2000.4), 50.0),
            "capacity 2,000 events/s: the highest offered rate sustained within p99 50 ms"
        );
        assert!(result_line(None, 50.0).contains("no offered rate sustained"));
    }
}
