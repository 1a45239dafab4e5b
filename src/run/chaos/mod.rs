//! A chaos run, in Jepsen's shape: a paced open-loop load, a nemesis that injects one fault
//! at a time and waits for the pipeline to recover before the next, and a checker (`verify`
//! and [`analysis`]) that says per fault when pipedemo noticed, how high the backlog rose, how
//! long recovery took, what was delivered twice and what was lost.
//!
//! The consumer runs in a child process ([`crate::run::children`]) so that killing it is a real
//! kill. Faults act only on pipedemo's own processes and connector and on the services of the
//! local stack ([`local`]); anything else is listed as skipped with the reason.

pub mod analysis;
pub mod in_force;
pub mod inject;
pub mod local;
pub mod outcome;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use self::analysis::Tick;
use self::inject::Hands;
pub use self::outcome::{ChaosOutcome, FaultReport, LoadFigures, Second, Verdict};
use super::session::{PhaseOptions, Session};
use crate::config::Settings;
use crate::fault::{Fault, FaultState};
use crate::numbers::thousands;
use crate::pipeline::writer::WriteModel;
use crate::provision::connector::Connect;
use crate::telemetry::clock::now_us;
use crate::telemetry::live::{ChaosView, Sample, Shared};

/// How often the nemesis samples the backlog and health.
pub const TICK: Duration = Duration::from_millis(250);

/// The name of the chaos phase.
pub const PHASE: &str = "chaos";

/// Options of a chaos run.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// Offered events/s, open loop.
    pub rate: f64,
    /// How long the load runs at most (`None`: until the schedule is done).
    pub duration: Option<Duration>,
    /// The faults asked for, in order (`None`: every one available here).
    pub faults: Option<Vec<Fault>>,
    /// How long a held fault (a stop, a pause, a second member) lasts.
    pub fault_duration: Duration,
    /// Normal load before the first fault and after each recovery.
    pub gap: Duration,
    /// How long after clearing a fault the pipeline may take to recover.
    pub recovery_timeout: Duration,
    /// The p99 (from schedule) a recovered pipeline is back within, ms.
    pub slo_p99_ms: f64,
    /// The local stack's script (default `scripts/stack.sh`).
    pub stack: Option<PathBuf>,
    /// How the load writes.
    pub write: WriteModel,
    /// Seed for reproducible data.
    pub seed: Option<u64>,
}

/// The faults asked for (all by default), each with why it cannot run here, if it cannot.
pub async fn available(s: &Settings, o: &ChaosOptions) -> Result<Vec<(Fault, Option<String>)>> {
    let connect = Connect::new(&s.connect)?;
    let stack = local::probe(o.stack.as_deref(), s).await;
    let mut out = Vec::new();
    for f in o.faults.clone().unwrap_or_else(|| Fault::ALL.to_vec()) {
        out.push((f, inject::refusal(f, &connect, &stack).await));
    }
    Ok(out)
}

/// Clears a fault that a chaos run which is gone left in force ([`in_force`]) and says what
/// it did; `None` when no fault was left. An error when the run that left it still runs (it
/// clears its own fault when it ends) or the fault cannot be cleared.
pub async fn restore(s: &Settings) -> Result<Option<String>> {
    let Some(rec) = in_force::read(s)? else {
        return Ok(None);
    };
    if in_force::alive(rec.pid) {
        return Err(crate::exit::config(format!(
            "a chaos run (pid {}) has {} in force and clears it when it ends (Ctrl-C stops \
             it); wait for it, or stop it first",
            rec.pid, rec.fault
        )));
    }
    let done = match in_force::undo(rec.fault) {
        in_force::Undo::Nothing(why) => format!("nothing to clear ({why})"),
        in_force::Undo::Resume => {
            let mut args = s.connect.clone();
            args.connector_name = rec.connector.clone();
            let connect = Connect::new(&args)?;
            connect.resume(Duration::from_secs(60)).await?;
            format!("connector {} resumed and RUNNING", rec.connector)
        }
        in_force::Undo::Start(service) => {
            let stack = local::probe(rec.stack.as_deref(), s).await;
            stack.run("start", service).await?;
            format!("{} started again", service.title())
        }
        in_force::Undo::Thaw(service) => {
            let stack = local::probe(rec.stack.as_deref(), s).await;
            stack.run("thaw", service).await?;
            format!("{} let go on (it was frozen)", service.title())
        }
    };
    in_force::remove(s);
    Ok(Some(format!(
        "a chaos run (pid {}) that ended without clearing {} left it in force: {done}",
        rec.pid, rec.fault
    )))
}

/// Runs the chaos phase on `session` (whose consumer must be in child processes), then
/// leaves `session` for the caller to finish and verify ([`ChaosOutcome::judge`]).
pub async fn run(
    session: &mut Session,
    s: &Settings,
    o: &ChaosOptions,
    stop: &CancellationToken,
) -> Result<ChaosOutcome> {
    let children = session
        .children()
        .context("a chaos run needs its consumer in a child process")?;
    let consumer_log = children.log().await;
    let live = session.live.clone();
    let hands = Hands {
        children,
        connect: Connect::new(&s.connect)?,
        stack: local::probe(o.stack.as_deref(), s).await,
    };
    let asked = o.faults.clone().unwrap_or_else(|| Fault::ALL.to_vec());
    let mut reports = Vec::new();
    let mut states = Vec::new();
    for f in &asked {
        match hands.refusal(*f).await {
            Some(why) => {
                states.push((*f, FaultState::Skipped(why.clone())));
                reports.push(FaultReport::new(*f, Verdict::Skipped, Some(why)));
            }
            None => {
                states.push((*f, FaultState::Pending));
                reports.push(FaultReport::new(*f, Verdict::Skipped, None));
            }
        }
    }
    let planned: Vec<usize> = (0..reports.len())
        .filter(|i| reports[*i].reason.is_none())
        .collect();
    {
        let mut l = live.lock();
        l.chaos = Some(ChaosView {
            faults: states,
            ..ChaosView::default()
        });
        l.samples = Some(Vec::new());
    }
    let held = |f: Fault| {
        if f.holds() {
            o.fault_duration
        } else {
            Duration::ZERO
        }
    };
    let cap = o.duration.unwrap_or_else(|| {
        o.gap
            + planned
                .iter()
                .map(|i| held(reports[*i].fault) + o.recovery_timeout + o.gap)
                .sum::<Duration>()
            + Duration::from_secs(10)
    });
    let phase = PhaseOptions {
        events: ((o.rate * cap.as_secs_f64()).ceil() as u64).max(1),
        write: o.write,
        rate: Some(o.rate),
        batch_delay: Duration::ZERO,
        timeout: o.recovery_timeout,
        seed: o.seed,
    };
    let load_stop = stop.child_token();
    session.drain_on_stop = o.recovery_timeout;
    let mut nemesis = Nemesis {
        live: live.clone(),
        settings: s,
        hands: &hands,
        o,
        ticks: Vec::new(),
        samples: Vec::new(),
        started_us: now_us(),
        load_ends_us: now_us() + cap.as_micros() as i64,
        load_stop: &load_stop,
        stop,
    };
    let (phase_r, ()) = tokio::join!(
        session.run_phase(PHASE, &phase, &load_stop),
        nemesis.run(&mut reports, &planned)
    );
    // Whatever happened to the load, no fault is left in force.
    let phase_r = phase_r?;
    nemesis.tick();
    let started_us = nemesis.started_us;
    let timeline = seconds(&nemesis.ticks, &nemesis.samples, started_us);
    let awaited_due = {
        let l = live.lock();
        l.phases
            .last()
            .map(|p| p.scheduled.clone())
            .unwrap_or_default()
    };
    if let Some(why) = hands.children.gave_up().await {
        return Err(crate::exit::config(format!(
            "the consumer process stopped for good: {why}"
        )));
    }
    let injected_us = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.injected_at_secs
                .map(|s| (i, started_us + (s * 1e6) as i64))
        })
        .collect();
    Ok(ChaosOutcome {
        routing: session.routing(),
        rate_eps: o.rate,
        slo_p99_ms: o.slo_p99_ms,
        recovery_timeout_secs: o.recovery_timeout.as_secs_f64(),
        fault_duration_secs: o.fault_duration.as_secs_f64(),
        faults: reports,
        load: LoadFigures {
            events: phase_r.events,
            sent: phase_r.sent,
            delivered: phase_r.sent - phase_r.missing.len() as u64,
            offered_eps: o.rate,
            achieved_eps: phase_r.sent as f64 / phase_r.insert_secs.max(1e-9),
            from_schedule: phase_r
                .from_schedule
                .as_ref()
                .map(|l| l.summary())
                .unwrap_or_default(),
        },
        lost: 0,
        duplicated: 0,
        timeline,
        consumer_log,
        consumer_exits: hands.children.ended().await,
        failures: Vec::new(),
        passed: false,
        awaited_due,
        injected_us,
    })
}

/// Per-second backlog and p99 from the ticks and arrivals.
fn seconds(ticks: &[Tick], samples: &[Sample], started_us: i64) -> Vec<Second> {
    let mut by_sec: std::collections::BTreeMap<i64, (u64, crate::telemetry::stats::Latency)> =
        Default::default();
    for t in ticks {
        let e = by_sec
            .entry((t.at_us - started_us).div_euclid(1_000_000))
            .or_default();
        e.0 = e.0.max(t.backlog);
    }
    for s in samples {
        if let Some(due) = s.due_us {
            let e = by_sec
                .entry((s.t5_us - started_us).div_euclid(1_000_000))
                .or_default();
            e.1.record(s.t5_us - due);
        }
    }
    by_sec
        .into_iter()
        .filter(|(sec, _)| *sec >= 0)
        .map(|(sec, (backlog, l))| Second {
            at_secs: sec as f64,
            backlog,
            p99_ms: (l.count() > 0).then(|| l.quantile_ms(0.99)),
        })
        .collect()
}

/// The schedule's runner and the checker's eyes during the run.
struct Nemesis<'a> {
    live: Shared,
    settings: &'a Settings,
    hands: &'a Hands,
    o: &'a ChaosOptions,
    ticks: Vec<Tick>,
    /// Arrivals copied from the live state so far.
    samples: Vec<Sample>,
    started_us: i64,
    load_ends_us: i64,
    load_stop: &'a CancellationToken,
    stop: &'a CancellationToken,
}

impl Nemesis<'_> {
    /// Samples the backlog and health, and copies new arrivals.
    fn tick(&mut self) {
        let now = now_us();
        let mut l = self.live.lock();
        let problem = l.problem();
        let backlog = l.phases.last().map_or(0, |p| {
            self.started_us = p.started_us;
            let offered = p.received + p.waiting.len() as u64;
            let due = if self.load_stop.is_cancelled() {
                offered
            } else {
                let by_schedule = (self.o.rate * (now - p.started_us).max(0) as f64 / 1e6) as u64;
                by_schedule.min(p.target).max(offered)
            };
            due.saturating_sub(p.received)
        });
        if let Some(s) = l.samples.as_ref() {
            self.samples
                .extend_from_slice(&s[self.samples.len().min(s.len())..]);
        }
        let new_second = self
            .ticks
            .last()
            .is_none_or(|t| t.at_us.div_euclid(1_000_000) != now.div_euclid(1_000_000));
        if new_second {
            if let Some(c) = l.chaos.as_mut() {
                c.push_backlog(backlog);
            }
        }
        drop(l);
        self.ticks.push(Tick {
            at_us: now,
            backlog,
            problem,
        });
    }

    /// Ticks for `d` (less if the run is stopped). Returns false when stopped.
    async fn wait(&mut self, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < until {
            if self.stop.is_cancelled() {
                return false;
            }
            self.tick();
            tokio::select! {
                _ = tokio::time::sleep(TICK.min(until - tokio::time::Instant::now())) => {}
                _ = self.stop.cancelled() => return false,
            }
        }
        true
    }

    fn set(&self, fault: Fault, state: FaultState) {
        if let Some(c) = self.live.lock().chaos.as_mut() {
            c.set(fault, state);
        }
    }

    fn secs(&self, us: i64) -> f64 {
        (us - self.started_us) as f64 / 1e6
    }

    /// Runs the schedule, then stops the load.
    async fn run(&mut self, reports: &mut [FaultReport], planned: &[usize]) {
        let mut go_on = self.wait(self.o.gap).await;
        let mut skip_why: Option<String> = None;
        for (k, &i) in planned.iter().enumerate() {
            let fault = reports[i].fault;
            let hold = if fault.holds() {
                self.o.fault_duration
            } else {
                Duration::ZERO
            };
            if !go_on {
                skip_why.get_or_insert_with(|| "the run was interrupted".into());
            } else if now_us() + (hold + TICK * 8).as_micros() as i64 > self.load_ends_us {
                skip_why
                    .get_or_insert_with(|| "the load ended before it (raise --duration)".into());
            }
            if let Some(why) = &skip_why {
                reports[i].reason = Some(why.clone());
                self.set(fault, FaultState::Skipped(why.clone()));
                continue;
            }
            go_on = self.one(&mut reports[i], hold).await;
            if !matches!(reports[i].verdict, Verdict::Recovered) {
                skip_why = Some(format!("{fault} did not recover"));
                continue;
            }
            if k + 1 < planned.len() {
                go_on = go_on && self.wait(self.o.gap).await;
            }
        }
        // The figures after each fault: the events due in the gap after its recovery, up
        // to a second before the next fault (whose first victims are due just before it).
        let ends: Vec<Option<f64>> = planned
            .iter()
            .map(|&i| reports[i].injected_at_secs)
            .skip(1)
            .chain(std::iter::once(None))
            .collect();
        for (&i, end) in planned.iter().zip(ends) {
            // Over every arrival so far: a fault recovered at once (a rebalance) has its first
            // event after clearing later than its recovery.
            if let Some(cleared) = reports[i].cleared_at_secs {
                let cleared = self.started_us + (cleared * 1e6) as i64;
                reports[i].first_event_after_secs =
                    analysis::moving_after_secs(&self.samples, cleared);
            }
            if let Some(from) = reports[i].recovered_at_secs {
                let from = self.started_us + (from * 1e6) as i64;
                let next = end.map_or(i64::MAX, |e| self.started_us + (e * 1e6) as i64 - 1_000_000);
                let to = next.min(from + self.o.gap.as_micros() as i64);
                reports[i].latency_after = analysis::stretch(&self.samples, from, to);
            }
        }
        if go_on {
            let _ = self.wait(self.o.gap).await;
        }
        self.load_stop.cancel();
    }

    /// Injects, holds, clears and watches one fault; false when the run was stopped.
    async fn one(&mut self, r: &mut FaultReport, hold: Duration) -> bool {
        let fault = r.fault;
        self.tick();
        let injected_us = now_us();
        let floor = (self.o.rate * 0.05).ceil() as u64;
        r.normal_backlog = analysis::normal_backlog(&self.ticks, injected_us, floor.max(1));
        r.injected_at_secs = Some(self.secs(injected_us));
        self.set(fault, FaultState::Active { until_us: None });
        tracing::info!(fault = %fault, "chaos: injecting: {}", fault.what());
        // Recorded before it is in force, so that a run killed at any point after leaves the
        // means to clear it; and a second Ctrl-C waits for the clearing while it is held.
        let record = in_force::InForce {
            pid: std::process::id(),
            fault,
            stack: self.o.stack.clone(),
            connector: self.settings.connect.connector_name.clone(),
        };
        if let Err(e) = in_force::write(self.settings, &record) {
            r.verdict = Verdict::NotInjected;
            r.reason = Some(format!(
                "could not record the fault before injecting it: {e:#}"
            ));
            self.set(fault, FaultState::Failed(r.line()));
            return true;
        }
        let _clearing = in_force::Held::new();
        let injected = match self.ticking(self.hands.inject(fault)).await {
            Ok(x) => x,
            Err(e) => {
                r.verdict = Verdict::NotInjected;
                r.reason = Some(format!("could not inject: {e:#}"));
                self.set(fault, FaultState::Failed(r.line()));
                // Half-injected is possible (a stop that failed halfway): clear what can be.
                if self.hands.clear_left(fault).await.is_ok() {
                    in_force::remove(self.settings);
                }
                return true;
            }
        };
        // A stop takes its time (a broker's controlled shutdown): noticing is counted from
        // when the fault is in force.
        let in_force_us = now_us();
        r.in_force_at_secs = Some(self.secs(in_force_us));
        if !hold.is_zero() {
            self.set(
                fault,
                FaultState::Active {
                    until_us: Some(in_force_us + hold.as_micros() as i64),
                },
            );
        }
        let mut go_on = self.wait(hold).await;
        // Cleared even when stopped: a run never leaves a fault in force.
        let cleared = self.ticking(self.hands.clear(fault, injected)).await;
        if cleared.is_ok() {
            in_force::remove(self.settings);
        }
        drop(_clearing);
        let cleared_us = now_us();
        r.cleared_at_secs = Some(self.secs(cleared_us));
        self.set(
            fault,
            FaultState::Recovering {
                since_us: cleared_us,
            },
        );
        tracing::info!(fault = %fault, "chaos: cleared; waiting for recovery");
        let deadline = cleared_us + self.o.recovery_timeout.as_micros() as i64;
        let mut recovered = None;
        let mut recovery = analysis::Recovery::default();
        let bar = analysis::Bar::new(r.normal_backlog, self.o.rate, self.o.slo_p99_ms);
        // A moment is judged by the steady stretch after it: the last one that can count is
        // at the deadline, judged that stretch later.
        while go_on && now_us() <= deadline + analysis::STEADY_US {
            go_on = self.wait(TICK).await;
            recovered = recovery
                .observe(&self.ticks, cleared_us, bar, &self.samples)
                .filter(|&at| at <= deadline);
            if recovered.is_some() {
                break;
            }
        }
        let until = recovered.unwrap_or_else(now_us);
        r.peak_backlog = analysis::peak_backlog(&self.ticks, injected_us, until);
        r.redelivered = analysis::redelivered(&self.samples, injected_us, until);
        if let Some((at, cause)) = analysis::noticed(&self.ticks, injected_us, until) {
            r.noticed_after_secs = Some((at - in_force_us).max(0) as f64 / 1e6);
            r.noticed_cause = Some(cause);
        }
        // Again at the end of the run, over the arrivals after this point too.
        r.first_event_after_secs = analysis::moving_after_secs(&self.samples, cleared_us);
        r.latency_during = analysis::stretch(&self.samples, injected_us, cleared_us);
        r.latency_recovering = analysis::stretch(&self.samples, cleared_us, until);
        match (cleared, recovered) {
            (Err(e), _) => {
                r.verdict = Verdict::NotCleared;
                r.reason = Some(format!("could not clear: {e:#}"));
            }
            (Ok(()), Some(at)) => {
                r.verdict = Verdict::Recovered;
                r.recovery_secs = Some((at - cleared_us) as f64 / 1e6);
                r.recovered_at_secs = Some(self.secs(at));
            }
            (Ok(()), None) if go_on => {
                r.verdict = Verdict::NotRecovered;
                r.reason = Some(format!(
                    "not recovered within --recovery-timeout {} s (backlog {} vs {} before, \
                     SLO p99 {} ms)",
                    self.o.recovery_timeout.as_secs(),
                    thousands(self.ticks.last().map_or(0, |t| t.backlog)),
                    thousands(r.normal_backlog),
                    self.o.slo_p99_ms
                ));
            }
            (Ok(()), None) => {
                r.verdict = Verdict::NotRecovered;
                r.reason = Some("the run was interrupted before it recovered".into());
            }
        }
        let line = r.line();
        tracing::info!(fault = %fault, "chaos: {line}");
        self.set(
            fault,
            if r.verdict == Verdict::Recovered {
                FaultState::Recovered(line)
            } else {
                FaultState::Failed(line)
            },
        );
        go_on
    }

    /// Awaits `f` while the ticks go on (a stop or a restart takes its time).
    async fn ticking<T>(&mut self, f: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(f);
        loop {
            tokio::select! {
                r = &mut f => return r,
                _ = tokio::time::sleep(TICK) => self.tick(),
            }
        }
    }
}
