//! The live state of a run, built from the metrics channel: what the dashboard, the headless
//! progress lines and the final report read.
//!
//! One task owns the receiver and folds every event into [`Live`] behind a mutex; readers take
//! a [`Snapshot`] every refresh. The consumer's hot path only sends on the channel.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::event::EventType;
use crate::fault::{Fault, FaultState};
use crate::telemetry::clock::now_us;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::{MetricEvent, MetricsFile, MetricsReceiver};
use crate::telemetry::stats::{Latency, RunStats, Stage, Summary};

/// How many recent events the dashboard lists.
pub const RECENT: usize = 5;
/// Seconds of per-second history kept for sparklines.
pub const HISTORY_SECS: usize = 120;

/// Overall state of the run, for the header's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RunState {
    /// Events are flowing or expected.
    Running,
    /// MongoDB or Kafka is failing; the consumer retries.
    Degraded,
    /// Messages were dead-lettered.
    Error,
    /// The run is over.
    Complete,
}

/// The whole run as merged from every process's published figures (several consumers or
/// generators): what the dashboard shows beside this process's own figures.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    /// Processes that reported the current phase.
    pub processes: usize,
    /// On how many hosts.
    pub hosts: usize,
    /// Events of the phase applied, by all of them.
    pub applied: u64,
    /// The phase's end-to-end p99 over all of them, ms.
    pub p99_ms: f64,
    /// Processes that stopped reporting (killed or cut off).
    pub stopped: usize,
}

impl RunView {
    /// The view of a merged phase.
    pub fn of(m: &crate::telemetry::results::MergedPhase) -> RunView {
        let hosts: HashSet<&str> = m.shares.iter().map(|s| s.host.as_str()).collect();
        RunView {
            processes: m.shares.len(),
            hosts: hosts.len(),
            applied: m.figures.applied(),
            p99_ms: m.figures.stats.stages.get(Stage::Total).quantile_ms(0.99),
            stopped: m.stopped().len(),
        }
    }

    /// `run: 5 processes on 3 hosts · 4,812 applied · p99 41.0ms`, for the header and the
    /// progress lines.
    pub fn text(&self) -> String {
        let mut t = format!(
            "run: {} processes on {} host{} · {} applied · p99 {:.1}ms",
            self.processes,
            self.hosts,
            if self.hosts == 1 { "" } else { "s" },
            crate::numbers::thousands(self.applied),
            self.p99_ms
        );
        if self.stopped > 0 {
            t.push_str(&format!(" · {} stopped", self.stopped));
        }
        t
    }
}

/// One line of the recent-events panel.
#[derive(Clone, Debug, PartialEq)]
pub struct RecentEvent {
    /// Written (true) or dead-lettered (false).
    pub ok: bool,
    /// Event type, or "error".
    pub event_type: String,
    /// Username, title, user id, or the error reason.
    pub label: String,
    /// End-to-end latency, ms (0 for errors).
    pub latency_ms: f64,
    /// When, µs since the epoch.
    pub at_us: i64,
}

/// One phase of a run (a `load`, or each step of `full`).
#[derive(Clone, Debug)]
pub struct Phase {
    /// Name, e.g. "warm-up".
    pub name: String,
    /// Events of the phase.
    pub target: u64,
    /// Ids inserted and still awaited.
    pub waiting: HashSet<Uuid>,
    /// Events of the phase that arrived (written, already there, or dead-lettered).
    pub received: u64,
    /// Of those, dead-lettered.
    pub dead: u64,
    /// Metrics of this phase's events.
    pub stats: RunStats,
    /// When the phase began inserting, µs.
    pub started_us: i64,
    /// When its last event arrived, µs.
    pub finished_us: Option<i64>,
    /// Every event of a small phase (≤ 20 events: the warm-up's detailed view).
    pub detail: Vec<RecentEvent>,
    /// Paced (open loop): each event had a time it was due to be inserted.
    pub paced: bool,
    /// For paced phases: when each event still awaited was due to be inserted, µs.
    pub scheduled: HashMap<Uuid, i64>,
    /// T5 minus the scheduled time: latency that a stalled inserter cannot hide.
    pub from_schedule: Latency,
    /// (µs, events inserted and not yet arrived), sampled at each insert and thinned to at
    /// most [`BACKLOG_SAMPLES`] over the phase ([`sample_backlog`]): a growing backlog means
    /// the pipeline falls behind the offered rate.
    pub backlog: Vec<(i64, u64)>,
    /// The least time between two kept backlog samples, µs (doubles at each thinning).
    pub backlog_spacing_us: i64,
    /// Events of the phase found in MongoDB that another consumer of the group applied: they
    /// arrived, but their latency is in that consumer's records, not here.
    pub elsewhere: u64,
}

impl Phase {
    /// Events of this phase that arrived (written, already there, or dead-lettered).
    pub fn done(&self) -> u64 {
        self.received
    }

    /// Seconds from its start to its end (or now).
    pub fn secs(&self) -> f64 {
        (self.finished_us.unwrap_or_else(now_us) - self.started_us).max(0) as f64 / 1e6
    }
}

/// Everything known about the run so far.
#[derive(Debug)]
pub struct Live {
    /// When the run started, µs.
    pub started_us: i64,
    /// All events of the run (all phases), including events of earlier runs if consumed.
    pub all: RunStats,
    /// Phases, in order; the last is the current one.
    pub phases: Vec<Phase>,
    /// Events handed to the outbox writers over all phases (none when this process does not
    /// generate: `consume`, `monitor`).
    pub offered: u64,
    /// Recent events, newest first.
    pub recent: VecDeque<RecentEvent>,
    /// Events written per second, oldest first, the last entry being the current second.
    pub per_second: VecDeque<(i64, u64, Latency)>,
    /// The highest per-second rate seen.
    pub peak_eps: u64,
    /// Messages dead-lettered.
    pub errors: u64,
    /// Consecutive failed attempts of the current outage (0 when none).
    pub outage: u32,
    /// What is failing in the current outage, with its error.
    pub outage_reason: Option<String>,
    /// A consumer process that ended and is being restarted (runs whose consumer is a child
    /// process), with how it ended.
    pub process_problem: Option<String>,
    /// A chaos run's schedule and backlog, for the dashboard.
    pub chaos: Option<ChaosView>,
    /// The run over every process, when others report into it.
    pub run_view: Option<RunView>,
    /// Every arrival of the current phase, when a chaos run asks for them (`Some`): what
    /// its per-fault figures are computed from.
    pub samples: Option<Vec<Sample>>,
    /// Polled health.
    pub health: Health,
    /// Set when the run ended.
    pub complete: bool,
    /// What the run found, once a command knows it (a capacity sweep's sustained rate): the
    /// line that says the run is complete says this, not the last step's name.
    pub result: Option<String>,
    /// Watching health only (`monitor --observe`): nothing is consumed here.
    pub observing: bool,
    /// The seconds older than the last [`HISTORY_SECS`], each summed up as it left
    /// `per_second`: with those, [`Live::seconds`] covers the whole run at a fixed cost per
    /// second, however many events it had.
    past_seconds: Vec<SecondFigures>,
    /// The whole run in windows of [`WINDOW_SECS`]: how latency and memory move over a
    /// long (soak) run.
    pub timeline: Vec<Window>,
}

/// One arrival, as a chaos run analyses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was written to MongoDB (or found there), µs.
    pub t5_us: i64,
    /// When it was due to be inserted (paced phases; `None` for a redelivery).
    pub due_us: Option<i64>,
    /// Found already applied: delivered again.
    pub redelivered: bool,
}

/// What the dashboard shows of a chaos run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChaosView {
    /// The schedule, in order, with where each fault stands.
    pub faults: Vec<(Fault, FaultState)>,
    /// Events due and not yet arrived, once a second, oldest first.
    pub backlog: VecDeque<u64>,
}

impl ChaosView {
    /// Records the backlog of this second.
    pub fn push_backlog(&mut self, n: u64) {
        if self.backlog.len() == HISTORY_SECS {
            self.backlog.pop_front();
        }
        self.backlog.push_back(n);
    }

    /// Sets where `fault` stands.
    pub fn set(&mut self, fault: Fault, state: FaultState) {
        if let Some(f) = self.faults.iter_mut().find(|(f, _)| *f == fault) {
            f.1 = state;
        }
    }
}

/// One second of the run (events by T5), its percentiles exact: from that second's own
/// histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct SecondFigures {
    /// The second (Unix time).
    pub sec: i64,
    /// Events applied in it.
    pub events: u64,
    /// Their end-to-end latency.
    pub latency: Summary,
    /// How many of them fell in each latency bucket of [`HEAT_BOUNDS_US`] (and one more for
    /// the slower rest): a column of the report's heat map.
    pub heat: Vec<u64>,
}

/// Upper bounds of the heat map's latency buckets, µs: 1-2-5 steps from 1 ms to a minute.
pub const HEAT_BOUNDS_US: [u64; 15] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000, 20_000_000, 60_000_000,
];

impl SecondFigures {
    fn of(sec: i64, events: u64, l: &Latency) -> Self {
        SecondFigures {
            sec,
            events,
            latency: l.summary(),
            heat: l.bucket_counts(&HEAT_BOUNDS_US),
        }
    }
}

/// Seconds per [`Window`] of the timeline.
pub const WINDOW_SECS: i64 = 10;

/// A stretch of [`WINDOW_SECS`] of the run.
#[derive(Clone, Debug)]
pub struct Window {
    /// Its first second (Unix time).
    pub start_sec: i64,
    /// Events applied in it (by T5).
    pub applied: u64,
    /// Their end-to-end latency while the window is the newest; a full-resolution histogram
    /// is large, so older windows keep only [`Window::summary`].
    latency: Option<Latency>,
    /// Their end-to-end latency, once the window is closed.
    closed: Option<Summary>,
    /// pipedemo's resident memory, the highest sampled in it, MB.
    pub rss_mb: Option<f64>,
}

impl Window {
    /// The window's end-to-end latency.
    pub fn summary(&self) -> Summary {
        match (&self.closed, &self.latency) {
            (Some(s), _) => s.clone(),
            (None, Some(l)) => l.summary(),
            (None, None) => Summary::default(),
        }
    }

    fn close(&mut self) {
        if let Some(l) = self.latency.take() {
            self.closed = Some(l.summary());
        }
    }

    /// The first second of the window holding second `sec`.
    fn start_of(sec: i64) -> i64 {
        sec - sec.rem_euclid(WINDOW_SECS)
    }

    fn at(sec: i64) -> Window {
        Window {
            start_sec: Window::start_of(sec),
            applied: 0,
            latency: Some(Latency::default()),
            closed: None,
            rss_mb: None,
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Live {
            started_us: now_us(),
            all: RunStats::default(),
            phases: Vec::new(),
            offered: 0,
            recent: VecDeque::with_capacity(RECENT),
            per_second: VecDeque::with_capacity(HISTORY_SECS),
            peak_eps: 0,
            errors: 0,
            outage: 0,
            outage_reason: None,
            process_problem: None,
            chaos: None,
            run_view: None,
            samples: None,
            health: Health::default(),
            complete: false,
            result: None,
            observing: false,
            past_seconds: Vec::new(),
            timeline: Vec::new(),
        }
    }
}

impl Live {
    /// Folds one metric event in.
    pub fn fold(&mut self, ev: &MetricEvent) {
        self.all.record(ev);
        match ev {
            MetricEvent::Event(r) => {
                self.outage = 0;
                let total = r.timing.stages().total_us;
                if let Some(p) = self.phases.last_mut() {
                    if p.waiting.remove(&r.event_id) {
                        p.received += 1;
                        p.stats.record(ev);
                        let due = p.scheduled.remove(&r.event_id);
                        if let Some(due) = due {
                            p.from_schedule.record(r.timing.t5_us - due);
                        }
                        if let Some(s) = self.samples.as_mut() {
                            s.push(Sample {
                                t5_us: r.timing.t5_us,
                                due_us: due,
                                redelivered: !r.applied,
                            });
                        }
                        if p.received == p.target {
                            p.finished_us = Some(r.timing.t5_us.max(now_us()));
                        }
                    } else if let (false, Some(s)) = (r.applied, self.samples.as_mut()) {
                        s.push(Sample {
                            t5_us: r.timing.t5_us,
                            due_us: None,
                            redelivered: true,
                        });
                    }
                }
                let plausible = r.timing.plausible();
                if r.applied && plausible {
                    self.tick(r.timing.t5_us, Some(total));
                } else if r.applied {
                    // Counted in its second (T5 is pipedemo's own clock), without a latency.
                    self.tick(r.timing.t5_us, None);
                }
                self.push_recent(RecentEvent {
                    ok: true,
                    event_type: r.event_type.to_string(),
                    label: r.label.clone(),
                    latency_ms: if plausible {
                        total as f64 / 1000.0
                    } else {
                        0.0
                    },
                    at_us: r.timing.t5_us,
                });
            }
            MetricEvent::Error(e) => {
                self.errors += 1;
                // A dead letter counts against the phase running when it happened; when it
                // is one of the phase's own events, that event is no longer awaited.
                if let Some(p) = self.phases.last_mut() {
                    let own = e.event_id.is_some_and(|id| p.waiting.remove(&id));
                    if own {
                        p.received += 1;
                        p.dead += 1;
                    }
                    if own || p.finished_us.is_none() {
                        p.stats.record(ev);
                    }
                    if own && p.received == p.target {
                        p.finished_us = Some(now_us());
                    }
                }
                self.push_recent(RecentEvent {
                    ok: false,
                    event_type: e.event_type.clone().unwrap_or_else(|| "error".into()),
                    label: e.reason.chars().take(60).collect(),
                    latency_ms: 0.0,
                    at_us: e.at_us,
                });
            }
            MetricEvent::Outage { attempt, reason } => {
                self.outage = *attempt;
                self.outage_reason = Some(reason.clone());
            }
            MetricEvent::Skipped { .. } => {}
        }
    }

    fn push_recent(&mut self, e: RecentEvent) {
        if let Some(p) = self.phases.last_mut() {
            if p.target <= 20 && p.detail.len() < 20 && p.finished_us.is_none_or(|f| e.at_us <= f) {
                p.detail.push(e.clone());
            }
        }
        if self.recent.len() == RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(e);
    }

    /// The timeline window holding second `sec` (late events of a past window go to the
    /// newest one; windows are for trends, not exact accounting).
    fn window(&mut self, sec: i64) -> &mut Window {
        // Called for every event: a new window (and its histogram) only when one starts.
        let start = Window::start_of(sec);
        if self.timeline.last().is_none_or(|w| w.start_sec < start) {
            if let Some(w) = self.timeline.last_mut() {
                w.close();
            }
            self.timeline.push(Window::at(sec));
        }
        self.timeline.last_mut().expect("pushed above")
    }

    /// Every second of the run so far, oldest first: events and exact percentiles.
    pub fn seconds(&self) -> Vec<SecondFigures> {
        self.past_seconds
            .iter()
            .cloned()
            .chain(
                self.per_second
                    .iter()
                    .map(|(sec, n, l)| SecondFigures::of(*sec, *n, l)),
            )
            .collect()
    }

    /// Records pipedemo's resident memory now, MB.
    pub fn sample_rss(&mut self, rss_mb: f64) {
        let w = self.window(now_us().div_euclid(1_000_000));
        w.rss_mb = Some(w.rss_mb.map_or(rss_mb, |r| r.max(rss_mb)));
    }

    /// Counts an applied event in its second (by T5).
    fn tick(&mut self, at_us: i64, total_us: Option<i64>) {
        let sec = at_us.div_euclid(1_000_000);
        let w = self.window(sec);
        w.applied += 1;
        if let Some(t) = total_us {
            if let Some(l) = w.latency.as_mut() {
                l.record(t);
            }
        }
        match self.per_second.back_mut() {
            Some((s, n, l)) if *s == sec => {
                *n += 1;
                if let Some(t) = total_us {
                    l.record(t);
                }
            }
            Some((s, _, _)) if *s > sec => {
                // A late event of an earlier second: count it there if still kept.
                if let Some((_, n, l)) = self.per_second.iter_mut().find(|(s2, _, _)| *s2 == sec) {
                    *n += 1;
                    if let Some(t) = total_us {
                        l.record(t);
                    }
                }
            }
            _ => {
                let mut l = Latency::default();
                if let Some(t) = total_us {
                    l.record(t);
                }
                self.per_second.push_back((sec, 1, l));
                while self.per_second.len() > HISTORY_SECS {
                    if let Some((sec, events, l)) = self.per_second.pop_front() {
                        self.past_seconds.push(SecondFigures::of(sec, events, &l));
                    }
                }
            }
        }
        let n = self.per_second.back().map_or(0, |(_, n, _)| *n);
        self.peak_eps = self.peak_eps.max(n);
    }

    /// Starts a phase awaiting `ids`.
    pub fn begin_phase(&mut self, name: &str, ids: impl IntoIterator<Item = Uuid>) {
        let ids: Vec<Uuid> = ids.into_iter().collect();
        self.begin_phase_of(name, ids.len() as u64);
        self.await_ids(ids, None);
    }

    /// Starts a phase of `target` events whose ids come later, batch by batch ([`Self::await_ids`]),
    /// so a large phase need not be generated up front.
    pub fn begin_phase_of(&mut self, name: &str, target: u64) {
        self.phases.push(Phase {
            name: name.to_owned(),
            target,
            waiting: HashSet::new(),
            received: 0,
            dead: 0,
            stats: RunStats::default(),
            started_us: now_us(),
            finished_us: None,
            detail: Vec::new(),
            paced: false,
            scheduled: HashMap::new(),
            from_schedule: Latency::default(),
            backlog: Vec::new(),
            backlog_spacing_us: 0,
            elsewhere: 0,
        });
    }

    /// Marks events of the current phase as arrived that were found in the read models while
    /// this process still awaited them: another consumer of the group applied them (scale-out),
    /// or this one did and its record is still on the way (then nothing changes). Returns how
    /// many it took.
    pub fn arrived_elsewhere(&mut self, ids: &[Uuid]) -> u64 {
        let Some(p) = self.phases.last_mut() else {
            return 0;
        };
        let mut n = 0;
        for id in ids {
            if p.waiting.remove(id) {
                p.scheduled.remove(id);
                p.received += 1;
                p.elsewhere += 1;
                n += 1;
            }
        }
        if n > 0 && p.received == p.target {
            p.finished_us = Some(now_us());
        }
        n
    }

    /// Adds ids the current phase awaits (before they are inserted), with the time they were
    /// due for paced runs (a transaction's events are due together).
    pub fn await_ids(&mut self, ids: impl IntoIterator<Item = Uuid>, due_us: Option<i64>) {
        let Some(p) = self.phases.last_mut() else {
            return;
        };
        for id in ids {
            self.offered += 1;
            p.waiting.insert(id);
            if let Some(d) = due_us {
                p.scheduled.insert(id, d);
                p.paced = true;
            }
        }
        let waiting = p.waiting.len() as u64;
        sample_backlog(&mut p.backlog, &mut p.backlog_spacing_us, now_us(), waiting);
    }

    /// What is wrong now, the most direct cause first: the consumer's failing writes, a
    /// consumer process down, then what the health poller found.
    pub fn problem(&self) -> Option<String> {
        (self.outage > 0)
            .then(|| {
                self.outage_reason
                    .clone()
                    .unwrap_or_else(|| "MongoDB down".into())
            })
            .or_else(|| self.process_problem.clone())
            .or_else(|| self.health.problem.clone())
    }

    /// The run's state, for colours.
    pub fn state(&self) -> RunState {
        if self.complete {
            RunState::Complete
        } else if self.outage > 0 || self.process_problem.is_some() || self.health.problem.is_some()
        {
            RunState::Degraded
        } else if self.errors > 0 {
            RunState::Error
        } else {
            RunState::Running
        }
    }

    /// A copy for rendering.
    pub fn snapshot(&self) -> Snapshot {
        let now_sec = now_us().div_euclid(1_000_000);
        // The last complete second's rate, so the figure does not flicker.
        let current = self
            .per_second
            .iter()
            .rev()
            .find(|(s, _, _)| *s == now_sec - 1)
            .map_or(0, |(_, n, _)| *n);
        let phase = self.phases.last();
        let processed: u64 = self.phases.iter().map(|p| p.done()).sum();
        let target: u64 = self.phases.iter().map(|p| p.target).sum();
        let uptime = (now_us() - self.started_us).max(0) as f64 / 1e6;
        Snapshot {
            state: self.state(),
            observing: self.observing,
            phase: phase.map(|p| p.name.clone()).unwrap_or_else(|| {
                if self.observing {
                    "observing"
                } else {
                    "consuming"
                }
                .into()
            }),
            phase_done: phase.map_or(0, |p| p.done()),
            phase_target: phase.map_or(0, |p| p.target),
            processed: if target > 0 {
                processed
            } else {
                self.all.applied_total()
            },
            target,
            uptime_secs: uptime,
            current_eps: current,
            average_eps: self.all.throughput(),
            peak_eps: self.peak_eps,
            errors: self.errors,
            error_rate: if self.all.applied_total() + self.errors > 0 {
                self.errors as f64 / (self.all.applied_total() + self.errors) as f64
            } else {
                0.0
            },
            total: self.all.stages.get(Stage::Total).summary(),
            phase_total: phase.map(|p| p.stats.stages.get(Stage::Total).summary()),
            stages: Stage::PARTS
                .iter()
                .map(|s| (*s, self.all.stages.get(*s).summary()))
                .collect(),
            by_type: self
                .all
                .applied
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        *v + self.all.already_applied.get(k).copied().unwrap_or(0),
                    )
                })
                .collect(),
            p95_history: self
                .per_second
                .iter()
                .map(|(_, _, l)| (l.quantile_ms(0.95) * 1000.0) as u64)
                .collect(),
            eps_history: self.per_second.iter().map(|(_, n, _)| *n).collect(),
            recent: self.recent.iter().cloned().collect(),
            health: self.health.clone(),
            outage: self.outage,
            outage_reason: (self.outage > 0)
                .then(|| self.outage_reason.clone())
                .flatten(),
            process_problem: self.process_problem.clone(),
            result: self.complete.then(|| self.result.clone()).flatten(),
            chaos: self.chaos.clone(),
            run_view: self.run_view.clone(),
        }
    }
}

/// What one frame of the dashboard shows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Colour of the run.
    pub state: RunState,
    /// Watching health only: the consumer figures do not apply.
    pub observing: bool,
    /// Current phase name.
    pub phase: String,
    /// Events of the current phase arrived.
    pub phase_done: u64,
    /// Events of the current phase.
    pub phase_target: u64,
    /// Events arrived, all phases.
    pub processed: u64,
    /// Events expected, all phases (0 when just consuming).
    pub target: u64,
    /// Seconds since start.
    pub uptime_secs: f64,
    /// Events written in the last complete second.
    pub current_eps: u64,
    /// Average events/s.
    pub average_eps: f64,
    /// Peak events in one second.
    pub peak_eps: u64,
    /// Dead-lettered messages.
    pub errors: u64,
    /// errors / (errors + events).
    pub error_rate: f64,
    /// End-to-end latency over the whole run.
    pub total: Summary,
    /// End-to-end latency of the current phase's own events (`None`: no phase, a consumer
    /// alone), what a line that names the phase shows.
    pub phase_total: Option<Summary>,
    /// The four stages of [`Stage::PARTS`] over the whole run.
    pub stages: BTreeMap<Stage, Summary>,
    /// Events per type.
    pub by_type: BTreeMap<EventType, u64>,
    /// Per-second p95 end-to-end latency, µs.
    pub p95_history: Vec<u64>,
    /// Per-second events written.
    pub eps_history: Vec<u64>,
    /// Newest first.
    pub recent: Vec<RecentEvent>,
    /// Polled health.
    pub health: Health,
    /// Current outage attempt (0: none).
    pub outage: u32,
    /// What fails in the current outage, with its error.
    pub outage_reason: Option<String>,
    /// A consumer process down and being restarted.
    pub process_problem: Option<String>,
    /// What the run found, once it is complete (see [`Live::result`]).
    pub result: Option<String>,
    /// A chaos run's schedule and backlog.
    pub chaos: Option<ChaosView>,
    /// The run over every process, when others report into it.
    pub run_view: Option<RunView>,
}

/// The live state, shared by the collector that writes it and the displays that read it.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<Live>>);

impl Shared {
    /// Shares `live`.
    pub fn new(live: Live) -> Self {
        Shared(Arc::new(Mutex::new(live)))
    }

    /// The state, for a short read or update. A panic while it was held leaves figures that are
    /// still worth showing, so a poisoned lock is taken over rather than spreading the panic.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where [`collect`] delivers the metric events.
#[derive(Default)]
pub struct Sink {
    /// The live state to fold them into (the dashboard's and the report's source).
    pub live: Option<Shared>,
    /// The metrics file to append them to (what `verify` reads).
    pub file: Option<MetricsFile>,
    /// Bumped after each batch of events, so that waiters can re-check their phase.
    pub changed: Option<watch::Sender<u64>>,
    /// This process's results, by run and phase, that it publishes for the run to merge.
    pub book: Option<crate::telemetry::results::SharedBook>,
}

/// Feeds the channel into the sink until the channel closes (the consumer is gone).
pub async fn collect(mut rx: MetricsReceiver, mut sink: Sink) -> anyhow::Result<()> {
    let mut n = 0u64;
    while let Some(ev) = rx.recv().await {
        let mut batch = vec![ev];
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
            if batch.len() >= 4096 {
                break;
            }
        }
        if let Some(f) = sink.file.as_mut() {
            for ev in &batch {
                f.write(ev)?;
            }
            f.flush()?;
        }
        if let Some(live) = &sink.live {
            let mut l = live.lock();
            for ev in &batch {
                l.fold(ev);
            }
        }
        if let Some(book) = &sink.book {
            let mut b = book
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ev in &batch {
                b.fold(ev);
            }
        }
        n += batch.len() as u64;
        if let Some(c) = &sink.changed {
            c.send_replace(n);
        }
    }
    if let Some(f) = sink.file.as_mut() {
        f.flush()?;
    }
    Ok(())
}

/// The most backlog samples a phase keeps, however long it runs.
pub const BACKLOG_SAMPLES: usize = 4096;

/// Adds a backlog sample unless it comes sooner than `spacing_us` after the last one kept;
/// when [`BACKLOG_SAMPLES`] are kept, every other one goes (each kept sample takes the larger
/// backlog of its pair, so a peak survives) and the spacing becomes the kept samples' mean
/// gap. A soak of hours keeps a few thousand samples spread over all of it.
pub fn sample_backlog(samples: &mut Vec<(i64, u64)>, spacing_us: &mut i64, at_us: i64, n: u64) {
    if let Some(last) = samples.last_mut() {
        if at_us - last.0 < *spacing_us {
            last.1 = last.1.max(n);
            return;
        }
    }
    samples.push((at_us, n));
    if samples.len() >= BACKLOG_SAMPLES {
        let halved: Vec<(i64, u64)> = samples
            .chunks(2)
            .map(|c| (c[0].0, c.iter().map(|s| s.1).max().unwrap_or(0)))
            .collect();
        *samples = halved;
        let span = samples.last().map_or(0, |l| l.0) - samples[0].0;
        *spacing_us = (span / samples.len() as i64).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_runs_backlog_keeps_a_bounded_spread_of_samples_and_its_peak() {
        let (mut v, mut spacing) = (Vec::new(), 0);
        // An hour of inserts, 1,000 a second, the backlog peaking once at 10 minutes.
        for i in 0..3_600_000i64 {
            let n = if i == 600_000 {
                50_000
            } else {
                (i % 100) as u64
            };
            sample_backlog(&mut v, &mut spacing, i * 1_000, n);
        }
        assert!(v.len() < BACKLOG_SAMPLES, "{}", v.len());
        assert!(v.len() > BACKLOG_SAMPLES / 4, "{}", v.len());
        assert_eq!(v[0].0, 0);
        assert!(v.last().unwrap().0 > 3_500_000_000, "spread to the end");
        assert_eq!(
            v.iter().map(|s| s.1).max(),
            Some(50_000),
            "the peak survives"
        );
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
    }
    use crate::telemetry::metrics::{EventRecord, Timing};

    pub(crate) fn event(id: Uuid, t0: i64, total_ms: i64, event_type: EventType) -> MetricEvent {
        let timing = Timing {
            t0_us: t0,
            commit_us: None,
            t1_us: t0 + 1000,
            t2_us: t0 + 2000,
            t3_us: t0 + 3000,
            t4_us: t0 + 3100,
            t5_us: t0 + total_ms * 1000,
        };
        MetricEvent::Event(EventRecord {
            event_id: id,
            event_type,
            aggregate_id: id,
            label: "ada".into(),
            partition: 0,
            offset: 0,
            applied: true,
            stages: timing.stages(),
            timing,
            tag: None,
        })
    }

    #[test]
    fn phases_complete_when_all_their_events_arrive() {
        let mut l = Live::default();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        l.begin_phase("warm-up", ids.clone());
        let t0 = now_us();
        for (i, id) in ids.iter().enumerate() {
            l.fold(&event(*id, t0, 10 + i as i64, EventType::UserCreated));
        }
        let p = &l.phases[0];
        assert_eq!((p.done(), p.target), (3, 3));
        assert!(p.finished_us.is_some());
        assert_eq!(p.stats.stages.get(Stage::Total).count(), 3);
        let s = l.snapshot();
        assert_eq!(s.processed, 3);
        assert_eq!(s.by_type[&EventType::UserCreated], 3);
        assert_eq!(s.recent.len(), 3);
        assert_eq!(s.total.count, 3);
        assert_eq!(l.seconds().iter().map(|s| s.events).sum::<u64>(), 3);
    }

    #[test]
    fn every_second_of_a_long_run_keeps_its_exact_figures_at_a_fixed_cost() {
        let mut l = Live::default();
        let t0 = 1_700_000_000_000_000;
        let secs = HISTORY_SECS as i64 * 3;
        for sec in 0..secs {
            // Second `sec` has 10 events of 1..=10 ms, and one of `sec` ms more.
            for k in 1..=10 {
                l.tick(t0 + sec * 1_000_000 + k, Some(k * 1000));
            }
            l.tick(t0 + sec * 1_000_000 + 11, Some(10_000 + sec * 1000));
        }
        let all = l.seconds();
        assert_eq!(all.len(), secs as usize);
        assert!(l.per_second.len() <= HISTORY_SECS);
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.sec, t0 / 1_000_000 + i as i64);
            assert_eq!(s.events, 11);
            let max = 10.0 + i as f64;
            assert!((s.latency.max_ms - max).abs() / max < 0.01, "{s:?}");
            // Up to 1 ms, 1–2 ms, 2–5 ms; every event in some bucket.
            assert_eq!(s.heat.iter().sum::<u64>(), 11);
            assert_eq!(&s.heat[..3], &[1, 1, 3]);
        }
    }

    #[test]
    fn recent_keeps_the_newest_five() {
        let mut l = Live::default();
        for i in 0..8 {
            l.fold(&event(
                Uuid::new_v4(),
                now_us(),
                i + 1,
                EventType::UserCreated,
            ));
        }
        assert_eq!(l.recent.len(), RECENT);
        assert_eq!(l.recent[0].latency_ms, 8.0);
    }
}
