//! A run's results as data that adds up: what each process of a run (consumers, generators,
//! on any host) measured of each phase, and the merge that makes one run of them.
//!
//! A process keeps a [`Book`]: per run and phase, the events it applied (counts and HDR
//! histograms of every stage, each type, and from the schedule), what it generated, and its
//! per-second counts. It publishes the phases that changed, whole (each update replaces the
//! last), when they settle and every [`FULL_EVERY_US`] meanwhile ([`Book::due`]), so the
//! latest update of every process is all a reader needs: [`Merged`] keeps
//! those and adds them up. HDR histograms add bucket by bucket, so the merged percentiles are
//! exactly those of all the processes' samples pooled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::telemetry::clock::now_us;
use crate::telemetry::metrics::{EventRecord, MetricEvent};
use crate::telemetry::stats::{Latency, RunStats};
use crate::telemetry::tag::RunTag;

/// Who published an update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Unique per process (its run id).
    pub id: Uuid,
    /// The host it runs on (`PIPEDEMO_HOST`, else the host name).
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// What it runs: `consume`, `load`, `full`, …
    pub command: String,
}

impl ProcessId {
    /// This process, running `command`.
    pub fn this(command: &str) -> ProcessId {
        ProcessId {
            id: Uuid::parse_str(crate::run_id::run_id()).unwrap_or_else(|_| Uuid::new_v4()),
            host: crate::run_id::reported_host(),
            pid: std::process::id(),
            command: command.to_owned(),
        }
    }

    /// `host/pid command`, for tables and logs.
    pub fn label(&self) -> String {
        format!("{}/{} {}", self.host, self.pid, self.command)
    }
}

/// What one process measured of one phase of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// The events of the phase this process handled (applied, found applied, dead-lettered).
    pub stats: RunStats,
    /// T5 minus each applied event's due time (open-loop phases).
    pub from_schedule: Latency,
    /// Events applied per second (by T5, Unix seconds).
    pub per_second: BTreeMap<i64, u64>,
    /// Generators: rows this process inserted for the phase.
    pub offered: u64,
    /// Generators: the rate it was asked to offer, events/s (`None`: unpaced).
    pub offered_eps: Option<f64>,
    /// Generators: seconds it spent inserting.
    pub insert_secs: f64,
    /// Generators: of the rows it inserted, those delivered to the read models (distinct
    /// events, applied by any consumer; dead letters apart).
    pub arrived: u64,
    /// Generators: inserting is over (what it offered is final).
    pub generated: bool,
}

impl PhaseFigures {
    /// Takes one event of the phase into account.
    pub fn record(&mut self, ev: &MetricEvent) {
        self.stats.record(ev);
        if let MetricEvent::Event(r) = ev {
            if r.applied && r.timing.plausible() {
                if let Some(due) = r.tag.as_ref().and_then(|t| t.due_us) {
                    self.from_schedule.record(r.timing.t5_us - due);
                }
                *self
                    .per_second
                    .entry(r.timing.t5_us.div_euclid(1_000_000))
                    .or_default() += 1;
            }
        }
    }

    /// Adds another process's figures of the same phase.
    pub fn add(&mut self, o: &PhaseFigures) {
        self.stats.add(&o.stats);
        self.from_schedule.add(&o.from_schedule);
        for (s, n) in &o.per_second {
            *self.per_second.entry(*s).or_default() += n;
        }
        self.offered += o.offered;
        self.arrived += o.arrived;
        self.offered_eps = match (self.offered_eps, o.offered_eps) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.insert_secs = self.insert_secs.max(o.insert_secs);
        self.generated = self.generated || o.generated;
    }

    /// Events of the phase that reached their read model for the first time, anywhere.
    pub fn applied(&self) -> u64 {
        self.stats.applied_total()
    }

    /// Whether the consumers' figures account for every event the generators saw delivered:
    /// each applied, or (applied by a process that stopped before publishing it) found
    /// applied by the one that took over.
    pub fn accounted(&self) -> bool {
        self.applied() + self.stats.already_applied.values().sum::<u64>() >= self.arrived
    }

    /// Events delivered whose first application no process reported (it stopped before
    /// publishing it): their latency is unknown and left out.
    pub fn unreported(&self) -> u64 {
        self.arrived.saturating_sub(self.applied())
    }
}

/// What a generator says of its part of a phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Generated {
    /// Rows inserted.
    pub offered: u64,
    /// The rate asked for, events/s.
    pub rate: Option<f64>,
    /// Seconds spent inserting.
    pub insert_secs: f64,
    /// Of its rows, those delivered to the read models (applied anywhere).
    pub arrived: u64,
    /// Inserting and waiting are over: these are final.
    pub done: bool,
}

/// A run and one of its phases.
pub type PhaseKey = (Arc<str>, Arc<str>);

/// One process's figures of one phase, as published: it replaces the process's last one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Update {
    /// Who measured.
    pub process: ProcessId,
    /// The run.
    pub run: Arc<str>,
    /// The phase.
    pub phase: Arc<str>,
    /// What it measured so far.
    pub figures: PhaseFigures,
    /// The process ended: nothing more will come from it.
    pub last: bool,
    /// When it was published, µs.
    pub at_us: i64,
}

impl Update {
    /// The Kafka key: one per process and phase, so a compacted topic keeps the latest.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.process.id, self.run, self.phase)
    }
}

/// A process's sign of life, published each second whether or not its figures changed: a
/// process that stops sending it was killed or cut off.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Who.
    pub alive: ProcessId,
    /// When, µs.
    pub at_us: i64,
    /// Its last: the process is ending, its figures as sent are final.
    #[serde(default)]
    pub last: bool,
    /// The phases whose figures changed since it last sent them, with the events it applied
    /// of each: a process killed before it sent a phase's figures is still known to the run.
    #[serde(default)]
    pub pending: Vec<Pending>,
}

/// A phase a process has figures of that it has not sent yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    /// The run.
    pub run: Arc<str>,
    /// The phase.
    pub phase: Arc<str>,
    /// Events of it the process applied so far.
    pub applied: u64,
}

impl Heartbeat {
    /// The Kafka key: one per process.
    pub fn key(&self) -> String {
        format!("{}|alive", self.alive.id)
    }
}

/// What the results topic carries.
#[derive(Clone, Debug)]
pub enum Published {
    /// A phase's figures.
    Update(Box<Update>),
    /// A sign of life.
    Heartbeat(Heartbeat),
}

impl Published {
    /// A message of the results topic, if it is one. (Not a serde `untagged` enum: that
    /// buffers the value, and the buffer does not turn JSON's string keys back into the
    /// per-second map's numbers.)
    pub fn parse(bytes: &[u8]) -> Option<Published> {
        serde_json::from_slice::<Update>(bytes)
            .map(|u| Published::Update(Box::new(u)))
            .or_else(|_| serde_json::from_slice::<Heartbeat>(bytes).map(Published::Heartbeat))
            .ok()
    }
}

/// Seconds without a word (a process sends its heartbeat each second) after which a process
/// that did not say it ended is taken for stopped.
pub const SILENT_SECS: f64 = 3.0;

/// The most phases a book keeps: a consumer that runs for days sees many runs; the oldest
/// phase goes (after it was published) when a new one comes. A phase's histograms take about
/// 1.7 MB at full resolution.
pub const BOOK_PHASES: usize = 16;

/// What this process measured, phase by phase, and which phases changed since it last
/// published.
#[derive(Debug)]
pub struct Book {
    process: ProcessId,
    phases: BTreeMap<PhaseKey, PhaseFigures>,
    /// Phases changed since they were last published, and since when; and the order phases
    /// were last touched.
    dirty: BTreeMap<PhaseKey, Dirty>,
    touched: Vec<PhaseKey>,
    /// The phase this process is generating now (its session says), and else the phase of the
    /// last tagged event with when it came (µs): where a dead letter without a tag is counted.
    current: Option<PhaseKey>,
    last_tagged: Option<(PhaseKey, i64)>,
    /// Events and dead letters with no run tag (rows pipedemo's generator did not write) and
    /// no phase running to count them against.
    pub untagged: u64,
}

/// When a phase's figures changed first and last since they were published, µs.
#[derive(Clone, Copy, Debug)]
struct Dirty {
    since_us: i64,
    changed_us: i64,
}

/// A phase whose figures have not changed for this long is settled at this process: its
/// figures are sent at once (the run's owner is waiting for them at the phase's end).
pub const SETTLE_US: i64 = 1_000_000;

/// A phase still changing has its figures sent this often.
pub const FULL_EVERY_US: i64 = 10_000_000;

/// How long after a run's last event a consumer still counts a dead letter without a tag (a
/// foreign or hostile message) against that run's phase: the message came while it ran.
pub const UNTAGGED_WINDOW_US: i64 = 30_000_000;

impl Book {
    /// An empty book of `process`.
    pub fn new(process: ProcessId) -> Book {
        Book {
            process,
            phases: BTreeMap::new(),
            dirty: BTreeMap::new(),
            touched: Vec::new(),
            current: None,
            last_tagged: None,
            untagged: 0,
        }
    }

    /// The process whose book it is.
    pub fn process(&self) -> &ProcessId {
        &self.process
    }

    fn entry(&mut self, run: &Arc<str>, phase: &Arc<str>) -> &mut PhaseFigures {
        let key: PhaseKey = (run.clone(), phase.clone());
        if !self.phases.contains_key(&key) && self.phases.len() >= BOOK_PHASES {
            // The least recently touched phase that has nothing left to publish.
            if let Some(pos) = self
                .touched
                .iter()
                .position(|k| !self.dirty.contains_key(k))
            {
                let old = self.touched.remove(pos);
                self.phases.remove(&old);
            }
        }
        if let Some(pos) = self.touched.iter().rposition(|k| *k == key) {
            if pos + 1 != self.touched.len() {
                let k = self.touched.remove(pos);
                self.touched.push(k);
            }
        } else {
            self.touched.push(key.clone());
        }
        let now = now_us();
        self.dirty
            .entry(key.clone())
            .and_modify(|d| d.changed_us = now)
            .or_insert(Dirty {
                since_us: now,
                changed_us: now,
            });
        self.phases.entry(key).or_default()
    }

    /// Takes one metric event into account, under its run and phase.
    pub fn fold(&mut self, ev: &MetricEvent) {
        let tag = match ev {
            MetricEvent::Event(EventRecord { tag, .. }) => tag.as_ref(),
            MetricEvent::Error(e) => e.tag.as_ref(),
            MetricEvent::Skipped { .. } | MetricEvent::Outage { .. } => return,
        };
        match (tag, ev) {
            (Some(RunTag { run, phase, .. }), _) => {
                let (run, phase) = (run.clone(), phase.clone());
                self.last_tagged = Some(((run.clone(), phase.clone()), now_us()));
                self.entry(&run, &phase).record(ev);
            }
            // A message that is no event of a run (hostile, foreign, unreadable) still counts
            // against the phase it came during, as one process alone would count it.
            (None, MetricEvent::Error(e)) => match self.home_of_untagged(e.at_us) {
                Some((run, phase)) => self.entry(&run, &phase).record(ev),
                None => self.untagged += 1,
            },
            (None, _) => self.untagged += 1,
        }
    }

    /// The phase a dead letter without a tag that came at `at_us` counts against.
    fn home_of_untagged(&self, at_us: i64) -> Option<PhaseKey> {
        self.current.clone().or_else(|| {
            self.last_tagged
                .as_ref()
                .filter(|(_, t)| at_us - t <= UNTAGGED_WINDOW_US)
                .map(|(k, _)| k.clone())
        })
    }

    /// The phase this process generates now (`None` once it ended): dead letters without a
    /// tag that come meanwhile count against it.
    pub fn set_current(&mut self, phase: Option<PhaseKey>) {
        self.current = phase;
    }

    /// Records what this process generated for a phase so far.
    pub fn generated(&mut self, run: &Arc<str>, phase: &Arc<str>, g: Generated) {
        let f = self.entry(run, phase);
        f.offered = g.offered;
        f.offered_eps = g.rate;
        f.insert_secs = g.insert_secs;
        f.arrived = g.arrived;
        f.generated = g.done;
    }

    /// The changed phases that are due at `now_us`: settled here (nothing new for
    /// [`SETTLE_US`]: the phase's last figures, which its owner waits for) or changing for
    /// [`FULL_EVERY_US`] (a long phase's figures, now and then). A phase's figures are a few
    /// kilobytes: sent every second, they would cost more than the events themselves.
    pub fn due(&mut self, now_us: i64) -> Vec<Update> {
        let keys: Vec<PhaseKey> = self
            .dirty
            .iter()
            .filter(|(_, d)| {
                now_us - d.changed_us >= SETTLE_US || now_us - d.since_us >= FULL_EVERY_US
            })
            .map(|(k, _)| k.clone())
            .collect();
        self.emit(keys, false)
    }

    /// Every changed phase, now.
    pub fn flush(&mut self) -> Vec<Update> {
        let keys: Vec<PhaseKey> = self.dirty.keys().cloned().collect();
        self.emit(keys, false)
    }

    /// Every phase this process holds, as its final word (it is ending).
    pub fn last_word(&mut self) -> Vec<Update> {
        let keys: Vec<PhaseKey> = self.phases.keys().cloned().collect();
        self.emit(keys, true)
    }

    fn emit(&mut self, keys: Vec<PhaseKey>, last: bool) -> Vec<Update> {
        for k in &keys {
            self.dirty.remove(k);
        }
        let at_us = now_us();
        keys.into_iter()
            .filter_map(|k| {
                let figures = self.phases.get(&k)?.clone();
                Some(Update {
                    process: self.process.clone(),
                    run: k.0,
                    phase: k.1,
                    figures,
                    last,
                    at_us,
                })
            })
            .collect()
    }

    /// The phases whose figures changed since they were last sent, for the heartbeat.
    pub fn pending(&self) -> Vec<Pending> {
        self.dirty
            .keys()
            .filter_map(|k| {
                Some(Pending {
                    run: k.0.clone(),
                    phase: k.1.clone(),
                    applied: self.phases.get(k)?.applied(),
                })
            })
            .collect()
    }

    /// This process's figures of a phase as an update (without marking it published).
    pub fn updates_of(&self, run: &str, phase: &str) -> Vec<Update> {
        self.phases
            .iter()
            .filter(|((r, p), _)| &**r == run && &**p == phase)
            .map(|((r, p), f)| Update {
                process: self.process.clone(),
                run: r.clone(),
                phase: p.clone(),
                figures: f.clone(),
                last: false,
                at_us: now_us(),
            })
            .collect()
    }

    /// This process's own figures of a phase.
    pub fn phase(&self, run: &str, phase: &str) -> Option<&PhaseFigures> {
        self.phases
            .iter()
            .find(|((r, p), _)| &**r == run && &**p == phase)
            .map(|(_, f)| f)
    }
}

/// A book several tasks write (the collector) and read (the publisher).
pub type SharedBook = Arc<Mutex<Book>>;

/// One process's part in a merged phase.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Share {
    /// The process's id.
    pub id: Uuid,
    /// `host/pid command`.
    pub process: String,
    /// The host.
    pub host: String,
    /// Events it applied (first time anywhere).
    pub applied: u64,
    /// Events it found applied already (redeliveries).
    pub already_applied: u64,
    /// Dead letters of the phase it sent.
    pub dead_lettered: u64,
    /// Its end-to-end p99 over the events it applied, ms.
    pub p99_ms: f64,
    /// Rows it generated.
    pub offered: u64,
    /// The rate it was asked to offer, events/s.
    pub offered_eps: Option<f64>,
    /// The rate it achieved: rows over its insert time, events/s.
    pub achieved_eps: Option<f64>,
    /// It generated rows for the phase and is done inserting them.
    pub generated: bool,
    /// It said it ended.
    pub ended: bool,
    /// Not heard from for more than [`SILENT_SECS`] without saying it ended: killed or cut
    /// off. Its last figures are counted.
    pub stopped: bool,
    /// Its figures came (false: only its heartbeat said it worked on the phase; its count is
    /// the heartbeat's, its latency unknown).
    pub figures_sent: bool,
    /// Seconds since it was last heard from (an update or its heartbeat) when the phase was
    /// merged: a process that stops reporting (killed) shows here, its last figures still
    /// counted.
    pub silent_secs: f64,
}

/// A phase merged over every process that reported it.
#[derive(Clone, Debug, Default)]
pub struct MergedPhase {
    /// The sum of every process's figures.
    pub figures: PhaseFigures,
    /// Each process's part, by host then process.
    pub shares: Vec<Share>,
}

impl MergedPhase {
    /// The shares of processes that stopped without saying so: killed, or cut off.
    pub fn stopped(&self) -> Vec<&Share> {
        self.shares.iter().filter(|s| s.stopped).collect()
    }
}

/// The latest update of every process, per phase: what a run's owner merges from.
#[derive(Debug, Default)]
pub struct Merged {
    latest: BTreeMap<PhaseKey, BTreeMap<Uuid, Update>>,
    /// When each process was last heard from, µs.
    seen: BTreeMap<Uuid, i64>,
    /// Processes that said they ended.
    ended: std::collections::BTreeSet<Uuid>,
    /// What heartbeats said of phases not sent yet: the process, its applied count, when.
    pending: BTreeMap<PhaseKey, BTreeMap<Uuid, (ProcessId, u64, i64)>>,
    /// Updates that could not be read (counted, never fatal).
    pub unreadable: u64,
}

impl Merged {
    /// Takes a heartbeat of a process of `run`: its sign of life, its end, its pending phases.
    pub fn heartbeat(&mut self, h: Heartbeat, run: &str) {
        self.heard(h.alive.id, h.at_us);
        if h.last {
            self.ended(h.alive.id);
        }
        for p in h.pending.into_iter().filter(|p| &*p.run == run) {
            self.pending
                .entry((p.run, p.phase))
                .or_default()
                .insert(h.alive.id, (h.alive.clone(), p.applied, h.at_us));
        }
    }

    /// Notes that a process ended.
    pub fn ended(&mut self, id: Uuid) {
        self.ended.insert(id);
    }

    /// Notes a process's sign of life.
    pub fn heard(&mut self, id: Uuid, at_us: i64) {
        let t = self.seen.entry(id).or_insert(at_us);
        *t = (*t).max(at_us);
    }

    /// Keeps `u` unless an update of its process for its phase is newer.
    pub fn take(&mut self, u: Update) {
        self.heard(u.process.id, u.at_us);
        let per = self
            .latest
            .entry((u.run.clone(), u.phase.clone()))
            .or_default();
        match per.get(&u.process.id) {
            Some(old) if old.at_us > u.at_us => {}
            _ => {
                per.insert(u.process.id, u);
            }
        }
    }

    /// Every run and phase known, in order.
    pub fn keys(&self) -> Vec<PhaseKey> {
        self.latest.keys().cloned().collect()
    }

    /// The newest update's time of `run`'s `phase`, µs (0 when none).
    pub fn newest(&self, run: &str, phase: &str) -> i64 {
        self.latest
            .iter()
            .filter(|((r, p), _)| &**r == run && &**p == phase)
            .flat_map(|(_, v)| v.values().map(|u| u.at_us))
            .max()
            .unwrap_or(0)
    }

    /// `run`'s `phase`, merged over every process that reported it since `since_us` (when the
    /// phase started: an update from before is an earlier run's that had the same name), as of
    /// `now_us`.
    pub fn phase(&self, run: &str, phase: &str, since_us: i64, now_us: i64) -> Option<MergedPhase> {
        let per = self
            .latest
            .iter()
            .find(|((r, p), _)| &**r == run && &**p == phase)
            .map(|(_, v)| v)?;
        let fresh: Vec<&Update> = per.values().filter(|u| u.at_us >= since_us).collect();
        if fresh.is_empty() {
            return None;
        }
        let mut m = merge(
            fresh,
            |id| self.seen.get(&id).copied(),
            |id| self.ended.contains(&id),
            now_us,
        );
        // Processes heard working on the phase that never sent its figures (killed first):
        // named, with what they applied, their latency unknown.
        let unsent = self
            .pending
            .iter()
            .filter(|((r, p), _)| &**r == run && &**p == phase)
            .flat_map(|(_, v)| v.values())
            .filter(|(who, _, at)| *at >= since_us && !m.shares.iter().any(|s| s.id == who.id))
            .cloned()
            .collect::<Vec<_>>();
        for (who, applied, _) in &unsent {
            let heard = self.seen.get(&who.id).copied().unwrap_or(0);
            let silent = (now_us - heard).max(0) as f64 / 1e6;
            let ended = self.ended.contains(&who.id);
            m.shares.push(Share {
                id: who.id,
                process: who.label(),
                host: who.host.clone(),
                applied: *applied,
                already_applied: 0,
                dead_lettered: 0,
                p99_ms: 0.0,
                offered: 0,
                offered_eps: None,
                achieved_eps: None,
                generated: false,
                ended,
                stopped: !ended && silent > SILENT_SECS,
                silent_secs: silent,
                figures_sent: false,
            });
        }
        m.shares
            .sort_by(|a, b| (&a.host, &a.process).cmp(&(&b.host, &b.process)));
        Some(m)
    }
}

/// Adds up the updates of one phase, one per process; `seen` says when a process was last
/// heard from (else its update's time), `ended` whether it said it ended, `now_us` is when the
/// merge is made.
pub fn merge<'a>(
    updates: impl IntoIterator<Item = &'a Update>,
    seen: impl Fn(Uuid) -> Option<i64>,
    ended: impl Fn(Uuid) -> bool,
    now_us: i64,
) -> MergedPhase {
    let updates: Vec<&Update> = updates.into_iter().collect();
    let mut m = MergedPhase::default();
    for u in &updates {
        m.figures.add(&u.figures);
        let f = &u.figures;
        let heard = seen(u.process.id).unwrap_or(u.at_us).max(u.at_us);
        let silent = (now_us - heard).max(0) as f64 / 1e6;
        m.shares.push(Share {
            id: u.process.id,
            process: u.process.label(),
            host: u.process.host.clone(),
            applied: f.applied(),
            already_applied: f.stats.already_applied.values().sum(),
            dead_lettered: f.stats.errors,
            p99_ms: f
                .stats
                .stages
                .get(crate::telemetry::stats::Stage::Total)
                .quantile_ms(0.99),
            offered: f.offered,
            offered_eps: f.offered_eps,
            achieved_eps: (f.offered > 0 && f.insert_secs > 0.0)
                .then(|| f.offered as f64 / f.insert_secs),
            generated: f.generated,
            ended: u.last || ended(u.process.id),
            stopped: !(u.last || ended(u.process.id)) && silent > SILENT_SECS,
            silent_secs: silent,
            figures_sent: true,
        });
    }
    m.shares
        .sort_by(|a, b| (&a.host, &a.process).cmp(&(&b.host, &b.process)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::telemetry::metrics::{ErrorRecord, Timing};
    use crate::telemetry::stats::Stage;

    fn tag(phase: &str, due: Option<i64>) -> Option<RunTag> {
        Some(RunTag {
            run: "r1".into(),
            phase: phase.into(),
            generator: 0,
            due_us: due,
        })
    }

    fn event(total_us: i64, phase: &str, t: EventType, applied: bool) -> MetricEvent {
        let t0 = 1_795_000_000_000_000;
        let timing = Timing {
            t0_us: t0,
            commit_us: None,
            t1_us: t0 + total_us / 4,
            t2_us: t0 + total_us / 2,
            t3_us: t0 + total_us * 3 / 4,
            t4_us: t0 + total_us * 3 / 4,
            t5_us: t0 + total_us,
        };
        MetricEvent::Event(EventRecord {
            event_id: Uuid::new_v4(),
            event_type: t,
            aggregate_id: Uuid::nil(),
            label: String::new(),
            partition: 0,
            offset: 0,
            applied,
            stages: timing.stages(),
            timing,
            tag: tag(phase, Some(t0 - 500)),
        })
    }

    fn process(n: u128, host: &str) -> ProcessId {
        ProcessId {
            id: Uuid::from_u128(n),
            host: host.into(),
            pid: n as u32,
            command: "consume".into(),
        }
    }

    /// A spread of latencies: a few thousand distinct values from 1 ms to 2 s.
    fn latencies(n: i64, seed: i64) -> Vec<i64> {
        (0..n)
            .map(|i| 1_000 + ((i * 7919 + seed * 104_729) % 2_000_000))
            .collect()
    }

    #[test]
    fn merged_percentiles_are_the_pooled_samples_percentiles() {
        let parts = [latencies(3000, 1), latencies(700, 2), latencies(5000, 3)];
        let mut pooled = Book::new(process(9, "one-big-host"));
        let mut merged = Merged::default();
        for (i, part) in parts.iter().enumerate() {
            let mut b = Book::new(process(i as u128 + 1, &format!("h{i}")));
            for (j, us) in part.iter().enumerate() {
                let t = EventType::ALL[j % 3];
                let e = event(*us, "load", t, true);
                b.fold(&e);
                pooled.fold(&e);
            }
            for u in b.flush() {
                merged.take(u);
            }
        }
        let m = merged.phase("r1", "load", 0, now_us()).unwrap();
        let one = pooled.phase("r1", "load").unwrap();
        assert_eq!(m.figures.applied(), 8700);
        for stage in Stage::ALL {
            assert_eq!(
                m.figures.stats.stages.get(stage).summary(),
                one.stats.stages.get(stage).summary(),
                "{stage:?}"
            );
        }
        assert_eq!(
            m.figures.stats.by_type_summaries(),
            one.stats.by_type_summaries()
        );
        assert_eq!(
            m.figures.from_schedule.summary(),
            one.from_schedule.summary()
        );
        assert_eq!(m.figures.per_second, one.per_second);
        assert_eq!(m.shares.len(), 3);
        assert_eq!(
            m.shares.iter().map(|s| s.applied).collect::<Vec<_>>(),
            vec![3000, 700, 5000]
        );
    }

    #[test]
    fn an_update_survives_the_wire_exactly() {
        let mut b = Book::new(process(1, "h"));
        for us in latencies(2000, 5) {
            b.fold(&event(us, "load", EventType::UserCreated, true));
        }
        b.fold(&event(10_000, "load", EventType::UserCreated, false));
        let u = b.flush().pop().unwrap();
        let text = serde_json::to_string(&u).unwrap();
        let Some(Published::Update(back)) = Published::parse(text.as_bytes()) else {
            panic!("not read back: {text}");
        };
        let alive = Heartbeat {
            alive: u.process.clone(),
            at_us: 7,
            last: false,
            pending: Vec::new(),
        };
        let hb = serde_json::to_vec(&alive).unwrap();
        assert!(matches!(Published::parse(&hb), Some(Published::Heartbeat(h)) if h.at_us == 7));
        assert!(Published::parse(b"{\"run\": 1}").is_none());
        let (a, z) = (&u.figures, &back.figures);
        assert_eq!(a.stats.stages.summaries(), z.stats.stages.summaries());
        assert_eq!(a.stats.already_applied, z.stats.already_applied);
        assert_eq!(a.from_schedule.summary(), z.from_schedule.summary());
        assert_eq!(a.per_second, z.per_second);
        assert_eq!(back.key(), u.key());
    }

    #[test]
    fn the_newest_update_of_a_process_replaces_its_older_ones() {
        let mut b = Book::new(process(1, "h"));
        let mut merged = Merged::default();
        b.fold(&event(5_000, "load", EventType::UserCreated, true));
        let first = b.flush();
        b.fold(&event(6_000, "load", EventType::UserCreated, true));
        let mut second = b.flush();
        second[0].at_us = first[0].at_us + 1;
        merged.take(second.pop().unwrap());
        merged.take(first[0].clone());
        assert_eq!(
            merged
                .phase("r1", "load", 0, now_us())
                .unwrap()
                .figures
                .applied(),
            2
        );
        assert!(b.flush().is_empty(), "nothing changed since");
    }

    #[test]
    fn phases_runs_and_untagged_events_stay_apart() {
        let mut b = Book::new(process(1, "h"));
        b.fold(&event(5_000, "warm-up", EventType::UserCreated, true));
        b.fold(&event(5_000, "load", EventType::UserCreated, true));
        let MetricEvent::Event(mut foreign) = event(5_000, "load", EventType::UserCreated, true)
        else {
            unreachable!()
        };
        foreign.tag = None;
        b.fold(&MetricEvent::Event(foreign));
        b.fold(&MetricEvent::Error(ErrorRecord {
            partition: 0,
            offset: 1,
            event_id: None,
            event_type: None,
            reason: "bad".into(),
            at_us: 0,
            tag: tag("load", None),
        }));
        assert_eq!(b.untagged, 1);
        assert_eq!(b.phase("r1", "load").unwrap().stats.errors, 1);
        // A hostile message (no tag) counts against the phase it came during: the running
        // one, else the last one seen, for a while.
        let hostile = |at_us| {
            MetricEvent::Error(ErrorRecord {
                partition: 0,
                offset: 2,
                event_id: None,
                event_type: None,
                reason: "not JSON".into(),
                at_us,
                tag: None,
            })
        };
        b.fold(&hostile(now_us()));
        assert_eq!(b.phase("r1", "load").unwrap().stats.errors, 2);
        b.fold(&hostile(now_us() + UNTAGGED_WINDOW_US * 2));
        assert_eq!(b.untagged, 2, "long after the run: no phase's");
        b.set_current(Some(("r1".into(), "warm-up".into())));
        b.fold(&hostile(now_us() + UNTAGGED_WINDOW_US * 2));
        assert_eq!(b.phase("r1", "warm-up").unwrap().stats.errors, 1);
        assert_eq!(b.phase("r1", "warm-up").unwrap().applied(), 1);
        assert_eq!(b.flush().len(), 2);
    }

    #[test]
    fn generators_offer_adds_up_and_a_silent_process_is_named() {
        let mut merged = Merged::default();
        for (i, n) in [(1u128, 600u64), (2, 400)] {
            let mut b = Book::new(process(i, &format!("h{i}")));
            b.generated(
                &"r1".into(),
                &"load".into(),
                Generated {
                    offered: n,
                    rate: Some(n as f64 / 10.0),
                    insert_secs: 10.0,
                    arrived: n,
                    done: true,
                },
            );
            let mut u = (if i == 2 { b.last_word() } else { b.flush() })
                .pop()
                .unwrap();
            u.at_us = if i == 1 { 0 } else { 30_000_000 };
            merged.take(u);
        }
        // The second one's heartbeat keeps it alive; the first one fell silent at 0.
        merged.heard(Uuid::from_u128(2), 31_000_000);
        let m = merged.phase("r1", "load", 0, 32_000_000).unwrap();
        assert_eq!(m.shares[1].silent_secs, 1.0);
        // Since the second one's start, the first one's update is an earlier run's.
        let fresh = merged.phase("r1", "load", 10_000_000, 32_000_000).unwrap();
        assert_eq!(fresh.figures.offered, 400);
        assert_eq!(m.figures.offered, 1000);
        assert_eq!(m.figures.arrived, 1000);
        assert_eq!(m.figures.offered_eps, Some(100.0));
        assert_eq!(m.shares[0].achieved_eps, Some(60.0));
        let stopped: Vec<&str> = m.stopped().iter().map(|s| s.host.as_str()).collect();
        assert_eq!(stopped, vec!["h1"]);
    }

    #[test]
    fn a_process_killed_before_it_sent_a_phase_is_named_from_its_heartbeat() {
        let mut merged = Merged::default();
        let mut sent = Book::new(process(1, "a"));
        sent.fold(&event(5_000, "load", EventType::UserCreated, true));
        for u in sent.flush() {
            merged.take(u);
        }
        let mut killed = Book::new(process(2, "c"));
        for _ in 0..3 {
            killed.fold(&event(5_000, "load", EventType::UserCreated, true));
        }
        let at = now_us();
        merged.heartbeat(
            Heartbeat {
                alive: killed.process().clone(),
                at_us: at,
                last: false,
                pending: killed.pending(),
            },
            "r1",
        );
        let m = merged.phase("r1", "load", 0, at + 10_000_000).unwrap();
        let c = m.shares.iter().find(|s| s.host == "c").unwrap();
        assert_eq!((c.applied, c.figures_sent, c.stopped), (3, false, true));
        assert_eq!(m.figures.applied(), 1, "its latency is not invented");
    }

    #[test]
    fn events_a_killed_consumer_never_reported_are_accounted_for_and_counted() {
        let mut merged = Merged::default();
        // The generator saw 10 arrive; the killed consumer reported 6 before it died, having
        // applied 2 more; the one that took over found those 2 applied and applied the rest.
        let mut g = Book::new(process(1, "gen"));
        g.generated(
            &"r1".into(),
            &"load".into(),
            Generated {
                offered: 10,
                arrived: 10,
                done: true,
                ..Generated::default()
            },
        );
        let mut killed = Book::new(process(2, "a"));
        let mut after = Book::new(process(3, "b"));
        for _ in 0..6 {
            killed.fold(&event(5_000, "load", EventType::UserCreated, true));
        }
        for applied in [false, false, true, true] {
            after.fold(&event(5_000, "load", EventType::UserCreated, applied));
        }
        for b in [&mut g, &mut killed] {
            for u in b.flush() {
                merged.take(u);
            }
        }
        assert!(!merged
            .phase("r1", "load", 0, 0)
            .unwrap()
            .figures
            .accounted());
        for u in after.flush() {
            merged.take(u);
        }
        let m = merged.phase("r1", "load", 0, 0).unwrap();
        assert!(m.figures.accounted());
        assert_eq!(m.figures.applied(), 8);
        assert_eq!(m.figures.unreported(), 2);
    }

    #[test]
    fn a_phase_is_sent_when_it_settles_and_now_and_then_while_it_changes() {
        let mut b = Book::new(process(1, "h"));
        b.fold(&event(5_000, "load", EventType::UserCreated, true));
        let t = now_us();
        assert!(b.due(t).is_empty(), "still changing");
        assert_eq!(b.due(t + SETTLE_US + 1_000_000).len(), 1, "settled");
        assert!(
            b.due(t + 2 * FULL_EVERY_US).is_empty(),
            "sent, and unchanged since"
        );
        // Changing all the time: sent every FULL_EVERY_US all the same.
        b.fold(&event(5_000, "load", EventType::UserCreated, true));
        let first = now_us();
        let mut sent = 0;
        for ms in (0..=FULL_EVERY_US / 1000 + 500).step_by(500) {
            let at = first + ms * 1000;
            b.dirty.values_mut().for_each(|d| d.changed_us = at);
            sent += b.due(at).len();
        }
        assert_eq!(sent, 1, "one full update in a long stretch of change");
        // The process ending sends every phase it holds, as its last word.
        let last = b.last_word();
        assert_eq!(last.len(), 1);
        assert!(last[0].last);
    }

    #[test]
    fn a_full_book_drops_its_oldest_published_phase() {
        let mut b = Book::new(process(1, "h"));
        for i in 0..BOOK_PHASES + 5 {
            b.fold(&event(
                5_000,
                &format!("p{i}"),
                EventType::UserCreated,
                true,
            ));
            b.flush();
        }
        assert_eq!(b.phases.len(), BOOK_PHASES);
        assert!(b.phase("r1", "p0").is_none());
        assert!(b.phase("r1", &format!("p{}", BOOK_PHASES + 4)).is_some());
    }
}
