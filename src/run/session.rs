//! A run with the consumer in this process: the consumer, the metrics collector (live state
//! and metrics file) and the health poller, plus the generator feeding the outbox phase by
//! phase. `load` is one phase, `full` several, `monitor` none.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::children::Children;
use super::outcome::{PhaseResult, TimelinePoint};
use crate::config::Settings;
use crate::config::{PostgresArgs, Routing};
use crate::event::EventType;
use crate::pipeline::consumer::{self, ConsumerOptions, Totals};
use crate::pipeline::generator::{Generator, Mix};
use crate::pipeline::kafka::results::{Publisher, Reader};
use crate::pipeline::outbox::{self, NewEvent};
use crate::pipeline::store::ReadModels;
use crate::pipeline::writer::{self, Pool, WriteModel};
use crate::telemetry::live::{self, Live, Shared, Sink, WINDOW_SECS};
use crate::telemetry::metrics::{self, MetricsFile};
use crate::telemetry::results::{
    self as figures, Book, Generated, MergedPhase, ProcessId, SharedBook,
};
use crate::telemetry::tag::RunTag;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Which run a session's phases belong to, and how many generators share it.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// The run's name, the same on every generator of the run (this process's run id when
    /// it generates alone).
    pub name: Arc<str>,
    /// Generators of the run: each offers its share of the rate and of the events.
    pub generators: u32,
    /// How long a generator waits for the others at each phase.
    pub join_timeout: Duration,
    /// The name was given (`--run`): it is registered even for one generator, so that a
    /// second run of the same name is refused rather than merged with the first.
    pub named: bool,
}

impl Default for RunPlan {
    fn default() -> Self {
        RunPlan {
            name: crate::run_id::run_id().into(),
            generators: 1,
            join_timeout: Duration::from_secs(600),
            named: false,
        }
    }
}

/// How long a phase's owner waits, once its own events are in, for every process's figures
/// of the phase to come in on the results topic.
pub const MERGE_WAIT: Duration = Duration::from_secs(30);

/// What the process runs (`load`, `full`, …), as the results name it.
fn command_name() -> String {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "pipedemo".into())
}

/// The events a phase offers at `rate` events/s for `over`, rounded, at least one.
pub fn events_at(rate: f64, over: Duration) -> u64 {
    ((rate * over.as_secs_f64()).round() as u64).max(1)
}

/// How one phase generates its events.
#[derive(Clone, Debug)]
pub struct PhaseOptions {
    /// Events to generate.
    pub events: u64,
    /// Which events share a transaction, on how many connections.
    pub write: WriteModel,
    /// Target insert rate, events/s (open loop: transactions are sent on schedule).
    pub rate: Option<f64>,
    /// Pause after each transaction (one connection only: the old burst show's pacing).
    pub batch_delay: Duration,
    /// How long to wait, after the last insert, for the events to reach MongoDB.
    pub timeout: Duration,
    /// Seed for reproducible data.
    pub seed: Option<u64>,
}

/// The run's windows from `since_us` on.
fn timeline(l: &Live, since_us: i64) -> Vec<TimelinePoint> {
    let since = since_us.div_euclid(1_000_000);
    l.timeline
        .iter()
        .filter(|w| w.start_sec + WINDOW_SECS > since)
        .map(|w| {
            let s = w.summary();
            TimelinePoint {
                at_secs: w.start_sec - since,
                applied_eps: w.applied as f64 / WINDOW_SECS as f64,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
                rss_mb: w.rss_mb,
            }
        })
        .collect()
}

/// The name of the phase that warms the JVMs before a measurement.
pub const PREWARM: &str = "pre-warm";

/// The rate of the pre-warm phase, events/s: steady work for the JIT, below capacity. Measured
/// on a cold stack: after 10 s at 200 events/s, Connect still stalled for half a second in the
/// next phase; 20 s at 400 events/s leaves it warm.
const PREWARM_RATE: f64 = 400.0;

/// A pre-warm phase of `d` (none for zero): what `full` and `capacity` run before measuring, so
/// that a freshly started stack's JIT compilation is not taken for the pipeline's latency.
pub fn prewarm(d: Duration) -> Option<PhaseOptions> {
    (!d.is_zero()).then(|| PhaseOptions {
        events: (PREWARM_RATE * d.as_secs_f64()).ceil() as u64,
        rate: Some(PREWARM_RATE),
        ..PhaseOptions::unpaced(0)
    })
}

impl PhaseOptions {
    /// `events` as fast as they go: transactions of 100 rows, no pacing, two minutes to
    /// arrive.
    pub fn unpaced(events: u64) -> Self {
        PhaseOptions {
            events,
            write: WriteModel::default(),
            rate: None,
            batch_delay: Duration::ZERO,
            timeout: Duration::from_secs(120),
            seed: None,
        }
    }
}

/// The consumer, collector and health poller of a run.
pub struct Session {
    /// The live state the dashboard reads.
    pub live: Shared,
    changed: watch::Receiver<u64>,
    consumer: Consumer,
    collector: JoinHandle<Result<()>>,
    health: JoinHandle<()>,
    health_stop: CancellationToken,
    pg: Arc<tokio_postgres::Client>,
    pg_args: PostgresArgs,
    /// How long the writers reconnect to a PostgreSQL that went away (the consumer's retry
    /// limit; `None`: for ever).
    retry_limit: Option<Duration>,
    /// How long a phase stopped by a signal still waits for the events it already inserted
    /// (zero: not at all, for runs whose consumer stops with the same signal).
    pub drain_on_stop: Duration,
    elsewhere: Elsewhere,
    /// How the connector routes the outbox's events (for the reports).
    routing: Routing,
    /// The run this session's phases belong to.
    pub run: RunPlan,
    book: SharedBook,
    publisher: Option<Publisher>,
    reader: Option<Reader>,
    kafka: crate::config::KafkaArgs,
    results_file: PathBuf,
    /// When the dashboard's view of the whole run was last refreshed.
    viewed: Instant,
}

/// Where the session's consumer runs.
enum Consumer {
    /// In this process, on a task.
    Here(consumer::Running),
    /// In child processes, their records tailed back (chaos runs).
    Children(Children),
}

impl Consumer {
    fn alone(&self) -> bool {
        match self {
            Consumer::Here(r) => r.alone(),
            // Their group membership is not visible from here; the read models decide.
            Consumer::Children(_) => false,
        }
    }

    /// Whether this process's records are every record of the run: its consumer held every
    /// partition throughout, or its consumers are children whose records it tails (they are
    /// the group's only members a chaos run counts on).
    fn complete(&self) -> bool {
        match self {
            Consumer::Here(r) => r.alone(),
            Consumer::Children(_) => true,
        }
    }
}

/// Where a session runs its consumer.
#[derive(Clone, Debug, Default)]
pub enum Host {
    /// On a task of this process.
    #[default]
    InProcess,
    /// In child processes (`pipedemo consume`) that a chaos run can kill, showing on `live`
    /// (a new live state when `None`).
    Children(Option<Shared>),
}

/// Finds the events a phase awaits that another consumer of the group applied: with several
/// consumers in the group (scale-out), "arrived" is decided by the read models, not by this
/// process's consumer alone. Nothing is asked while this consumer has held every partition
/// since it started, so a run with one consumer pays nothing for it.
struct Elsewhere {
    store: ReadModels,
    /// The awaited events' type and aggregate, to find them by `_id`.
    awaiting: HashMap<Uuid, (EventType, Uuid)>,
    /// Found in the read models at the last look and still awaited: taken as arrived when
    /// still awaited at the next look, by which time this consumer's own record of them would
    /// have come (so its latency is never lost to this shortcut).
    seen: HashSet<Uuid>,
    last: Instant,
}

/// How often the read models are asked about awaited events.
const LOOK_EVERY: Duration = Duration::from_secs(1);

impl Elsewhere {
    fn track(&mut self, chunk: &[NewEvent]) {
        self.awaiting.extend(
            chunk
                .iter()
                .map(|e| (e.event_id, (e.event_type, e.aggregate_id))),
        );
    }

    /// Looks, at most once per [`LOOK_EVERY`]; `alone`: this consumer is the group's only one.
    async fn look(&mut self, live: &Shared, alone: bool) {
        if self.last.elapsed() < LOOK_EVERY {
            return;
        }
        self.last = Instant::now();
        {
            // Pruned under the lock, not from a copy: the waiting set can hold a whole
            // backlog, and this runs every second of every run.
            let l = live.lock();
            match l.phases.last() {
                Some(p) => self.awaiting.retain(|id, _| p.waiting.contains(id)),
                None => self.awaiting.clear(),
            }
        }
        if alone {
            return;
        }
        let events: Vec<(Uuid, EventType, Uuid)> = self
            .awaiting
            .iter()
            .map(|(id, (t, a))| (*id, *t, *a))
            .collect();
        let mut found = HashSet::new();
        for chunk in events.chunks(5000) {
            match self.store.holding(chunk).await {
                Ok(ids) => found.extend(ids),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot look for awaited events in MongoDB");
                    return;
                }
            }
        }
        let confirmed: Vec<Uuid> = found.intersection(&self.seen).copied().collect();
        let n = live.lock().arrived_elsewhere(&confirmed);
        if n > 0 {
            tracing::debug!(events = n, "applied by another consumer of the group");
        }
        self.seen = found;
    }

    fn clear(&mut self) {
        self.awaiting.clear();
        self.seen.clear();
    }
}

impl Session {
    /// How the connector routes the outbox's events.
    pub fn routing(&self) -> Routing {
        self.routing
    }

    /// Starts everything and waits until the consumer has its partitions.
    pub async fn start(
        s: &Settings,
        opts: ConsumerOptions,
        stop: &CancellationToken,
    ) -> Result<Session> {
        Session::start_on(s, opts, stop, Host::InProcess).await
    }

    /// Like [`Session::start`], with the consumer where `host` says.
    pub async fn start_on(
        s: &Settings,
        opts: ConsumerOptions,
        stop: &CancellationToken,
        host: Host,
    ) -> Result<Session> {
        let pg = Arc::new(outbox::connect(&s.pg).await?);
        // Before any consumer, child process or file: a run that cannot work says so at once.
        crate::provision::ready::require(s, &pg).await?;
        let file = MetricsFile::append(&s.output.metrics_file)?;
        let (tx, rx) = metrics::channel();
        let live = match &host {
            Host::Children(Some(live)) => {
                live.lock().complete = false;
                live.clone()
            }
            _ => Shared::new(Live::default()),
        };
        let (changed_tx, changed) = watch::channel(0);
        let book: SharedBook = Arc::new(Mutex::new(Book::new(ProcessId::this(&command_name()))));
        let collector = tokio::spawn(live::collect(
            rx,
            Sink {
                live: Some(live.clone()),
                file: Some(file),
                changed: Some(changed_tx),
                // Child consumers (chaos) publish nothing: their records, tailed here, are
                // this process's to publish.
                book: Some(book.clone()),
            },
        ));
        let publisher = Publisher::start(&s.kafka, book.clone())
            .map_err(|e| tracing::warn!(error = %e, "results are not published; figures cover this process only"))
            .ok();
        if let Some(addr) = s.output.metrics_listen {
            crate::telemetry::exporter::serve(addr, live.clone())?;
        }
        let retry_limit = opts.retry_limit;
        let consumer = match host {
            Host::InProcess => {
                let ours = crate::provision::ownership::own_topics(s).await?;
                let mut c = consumer::start(s, ours, opts, tx, stop).await?;
                c.assigned.wait(Duration::from_secs(30)).await?;
                Consumer::Here(c)
            }
            Host::Children(_) => {
                let c = Children::start(s, tx, live.clone()).await?;
                if let Err(e) = c.wait_members(1, Duration::from_secs(60)).await {
                    // Nothing ran: no consumer left behind, no child's file left.
                    let _ = c.clone().finish().await;
                    return Err(e);
                }
                Consumer::Children(c)
            }
        };
        let health_stop = stop.child_token();
        let health = tokio::spawn(crate::run::health::poll(
            s.clone(),
            live.clone(),
            Duration::from_secs(1),
            health_stop.clone(),
        ));
        let elsewhere = Elsewhere {
            store: ReadModels::connect(&s.mongo).await?,
            awaiting: HashMap::new(),
            seen: HashSet::new(),
            last: Instant::now(),
        };
        Ok(Session {
            elsewhere,
            live,
            changed,
            consumer,
            collector,
            health,
            health_stop,
            pg,
            pg_args: s.pg.clone(),
            retry_limit,
            drain_on_stop: Duration::ZERO,
            routing: s.kafka.routing,
            run: RunPlan::default(),
            book,
            publisher,
            reader: None,
            kafka: s.kafka.clone(),
            results_file: crate::telemetry::results_file::path(&s.output.metrics_file),
            viewed: Instant::now(),
        })
    }

    /// Inserts a phase's events and waits until all are in MongoDB (or dead-lettered), the
    /// timeout passes, or `stop` is cancelled.
    pub async fn run_phase(
        &mut self,
        name: &str,
        o: &PhaseOptions,
        stop: &CancellationToken,
    ) -> Result<PhaseResult> {
        if o.events == 0 {
            bail!("--events must be at least 1");
        }
        if o.write.connections == 0 || o.write.shape == writer::Shape::Rows(0) {
            bail!("--tx-rows and --connections must be at least 1");
        }
        if let Some(why) = crate::telemetry::tag::name_problem(name) {
            bail!("phase name `{name}` {why}");
        }
        let asked = o.events;
        let (generator, share) = self.join(name, o).await?;
        let o = &share;
        let phase: Arc<str> = name.into();
        self.live.lock().begin_phase_of(name, o.events);
        self.elsewhere.clear();
        self.book().generated(
            &self.run.name,
            &phase,
            Generated {
                rate: o.rate,
                ..Generated::default()
            },
        );
        self.book()
            .set_current(Some((self.run.name.clone(), phase.clone())));
        let started = Instant::now();
        let tag = RunTag {
            run: self.run.name.clone(),
            phase: phase.clone(),
            generator,
            due_us: None,
        };
        let (sent, transactions) = self.insert(o, &tag, started, stop).await?;
        let insert_secs = started.elapsed().as_secs_f64();
        if sent < o.events {
            // Stopped early: the phase awaits what was written, not what never was.
            let mut l = self.live.lock();
            if let Some(p) = l.phases.last_mut() {
                p.target = sent;
                if p.received >= sent && p.finished_us.is_none() {
                    p.finished_us = Some(crate::telemetry::clock::now_us());
                }
            }
        }
        let arrived_while_inserting = self.live.lock().phases.last().map_or(0, |p| p.received);
        tracing::debug!(phase = name, secs = insert_secs, "outbox rows inserted");

        let mut deadline = tokio::time::Instant::now() + o.timeout;
        let mut draining = false;
        let mut problem_while_waiting = None;
        while self.phase_waiting() > 0 {
            if let Some(p) = self.live.lock().problem() {
                problem_while_waiting = Some(p);
            }
            if stop.is_cancelled() && !draining {
                if self.drain_on_stop.is_zero() {
                    break;
                }
                draining = true;
                deadline = deadline.min(tokio::time::Instant::now() + self.drain_on_stop);
                tracing::info!(
                    sent,
                    requested = o.events,
                    "interrupted: no more inserts; waiting for the events already inserted"
                );
            }
            tokio::select! {
                r = self.changed.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.cancelled(), if !draining => {}
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
            self.elsewhere.look(&self.live, self.consumer.alone()).await;
            self.refresh_view(&phase);
        }
        let wall_secs = started.elapsed().as_secs_f64();
        // Delivered to the read models: arrived, less what was dead-lettered.
        let arrived = self
            .live
            .lock()
            .phases
            .last()
            .map_or(0, |p| p.received - p.dead);
        self.book().generated(
            &self.run.name,
            &phase,
            Generated {
                offered: sent,
                rate: o.rate,
                insert_secs,
                arrived,
                done: true,
            },
        );
        self.book().set_current(None);
        let merged = self.merged(&phase).await;
        if let Some(m) = merged.as_ref().filter(|m| m.shares.len() > 1) {
            self.live.lock().run_view = Some(crate::telemetry::live::RunView::of(m));
        }
        let l = self.live.lock();
        let p = l.phases.last().context("the phase begun above")?;
        let own_applied = p.stats.applied_total();
        let (stats, from_schedule, processes) = match &merged {
            Some(m) => (
                m.figures.stats.clone(),
                m.figures.from_schedule.clone(),
                m.shares.clone(),
            ),
            None => (p.stats.clone(), p.from_schedule.clone(), Vec::new()),
        };
        let elsewhere = match &merged {
            Some(m) => m.figures.applied().saturating_sub(own_applied),
            None => p.elsewhere,
        };
        // Several generators: the run's totals (rows, rate, the longest insert), not this
        // generator's share.
        let (events, sent, offered_eps, insert_secs) = match &merged {
            Some(m) if self.run.generators > 1 => (
                asked,
                m.figures.offered,
                m.figures.offered_eps,
                m.figures.insert_secs,
            ),
            _ => (o.events, sent, o.rate, insert_secs),
        };
        Ok(PhaseResult {
            name: name.to_owned(),
            events,
            sent,
            transactions,
            write: o.write,
            routing: self.routing,
            offered_eps,
            mix: Mix::for_total(o.events),
            stats,
            insert_secs,
            wall_secs: p.finished_us.map_or(wall_secs, |_| p.secs()),
            missing: p.waiting.iter().copied().collect(),
            elsewhere,
            from_schedule: p.paced.then_some(from_schedule),
            merged: merged.is_some(),
            processes,
            missing_elsewhere: merged.as_ref().map_or(0, |m| {
                let f = &m.figures;
                f.offered
                    .saturating_sub(f.arrived)
                    .saturating_sub(p.waiting.len() as u64)
            }),
            arrived: merged
                .as_ref()
                .map_or(p.received - p.dead, |m| m.figures.arrived),
            unreported: merged.as_ref().map_or(0, |m| m.figures.unreported()),
            generators: self.run.generators,
            problem_while_waiting,
            arrived_while_inserting,
            timeline: timeline(&l, p.started_us),
            backlog: p
                .backlog
                .iter()
                .map(|(at, n)| ((at - p.started_us) as f64 / 1e6, *n as f64))
                .collect(),
        })
    }

    /// Generates the phase's events and writes them as [`writer::plan`] says (a large phase
    /// never sits in memory whole), open loop when paced: a transaction is sent at its time
    /// however long earlier ones took. Returns how many events and transactions were written
    /// (fewer when `stop` came).
    async fn insert(
        &mut self,
        o: &PhaseOptions,
        tag: &RunTag,
        started: Instant,
        stop: &CancellationToken,
    ) -> Result<(u64, u64)> {
        if self.pg.is_closed() {
            // PostgreSQL restarted since the last phase.
            self.pg = Arc::new(outbox::connect(&self.pg_args).await?);
        }
        let mut clients = vec![self.pg.clone()];
        for _ in 1..o.write.connections {
            clients.push(Arc::new(outbox::connect(&self.pg_args).await?));
        }
        let mut pool = Pool::start_with(
            clients,
            Some(writer::Reconnect {
                pg: self.pg_args.clone(),
                limit: self.retry_limit.unwrap_or(Duration::MAX),
            }),
            o.write.retention,
        );
        let mut events = Generator::new(o.events, o.seed);
        let start_us = crate::telemetry::clock::now_us() - started.elapsed().as_micros() as i64;
        let mut sent = 0u64;
        for tx in writer::plan(o.events, o.rate, o.write.shape) {
            if let Some(at) = tx.due {
                tokio::time::sleep_until((started + at).into()).await;
            }
            if stop.is_cancelled() {
                break;
            }
            let mut chunk: Vec<NewEvent> = events.by_ref().take(tx.rows).collect();
            let due = tx.due.map(|d| start_us + d.as_micros() as i64);
            let row_tag = RunTag {
                due_us: due,
                ..tag.clone()
            }
            .encode();
            for e in &mut chunk {
                e.run_tag = Some(row_tag.clone());
            }
            self.live
                .lock()
                .await_ids(chunk.iter().map(|e| e.event_id), due);
            self.elsewhere.track(&chunk);
            sent += chunk.len() as u64;
            pool.send(chunk).await?;
            self.elsewhere.look(&self.live, self.consumer.alone()).await;
            self.refresh_view(&tag.phase);
            if !o.batch_delay.is_zero() {
                tokio::time::sleep(o.batch_delay).await;
            }
        }
        let transactions = pool.finish().await?;
        Ok((sent, transactions))
    }

    /// Once a second, when other processes report into the run: the merged phase so far, for
    /// the dashboard (the reader starts the first time it is needed).
    fn refresh_view(&mut self, phase: &Arc<str>) {
        if self.viewed.elapsed() < LOOK_EVERY {
            return;
        }
        self.viewed = Instant::now();
        if self.run.generators <= 1 && self.consumer.complete() {
            return;
        }
        if self.reader.is_none() {
            self.reader = Reader::start(&self.kafka, self.run.name.clone())
                .map_err(|e| tracing::warn!(error = %e, "cannot read the results topic"))
                .ok();
        }
        let Some(reader) = &self.reader else { return };
        let m = reader.merged().phase(
            &self.run.name,
            phase,
            self.phase_since(),
            crate::telemetry::clock::now_us(),
        );
        if let Some(m) = m {
            self.live.lock().run_view = Some(crate::telemetry::live::RunView::of(&m));
        }
    }

    /// When the current phase started here (after the generators met: the agreed start).
    fn phase_since(&self) -> i64 {
        self.live.lock().phases.last().map_or(0, |p| p.started_us)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// With several generators: meets the others at phase `name` (see [`super::members`]),
    /// waits for the agreed start, and returns this generator's number and its share of the
    /// phase (events, rate and seed). Alone: generator 0 and the whole phase.
    async fn join(&mut self, name: &str, o: &PhaseOptions) -> Result<(u32, PhaseOptions)> {
        let n = self.run.generators;
        if n <= 1 && !self.run.named {
            return Ok((0, o.clone()));
        }
        let me = self.book().process().id;
        let place = super::members::meet(
            &self.pg,
            &self.run.name,
            name,
            me,
            &crate::run_id::reported_host(),
            n,
            self.run.join_timeout,
        )
        .await?;
        let wait_us = place.start_us - crate::telemetry::clock::now_us();
        if wait_us > 0 {
            tokio::time::sleep(Duration::from_micros(wait_us as u64)).await;
        }
        tracing::info!(
            run = %self.run.name, phase = name, generator = place.index, of = n,
            "all generators joined; starting"
        );
        let events = super::members::share(o.events, place.index, n);
        Ok((
            place.index,
            PhaseOptions {
                events: events.max(1),
                rate: o.rate.map(|r| r / f64::from(n)),
                seed: o.seed.map(|s| s.wrapping_add(u64::from(place.index))),
                ..o.clone()
            },
        ))
    }

    /// The phase's figures over every process of the run: this process's own when it is the
    /// run's only generator and its consumer the group's only one, else every process's
    /// latest update on the results topic, once they account for every event the generators
    /// saw arrive ([`figures::PhaseFigures::accounted`]) or [`MERGE_WAIT`] passed. `None`
    /// when the results topic cannot be read: the figures are then this process's alone.
    async fn merged(&mut self, phase: &Arc<str>) -> Option<MergedPhase> {
        let run = self.run.name.clone();
        let own = self.book().updates_of(&run, phase);
        if self.run.generators <= 1 && self.consumer.complete() {
            return Some(figures::merge(
                own.iter(),
                |_| None,
                |_| false,
                crate::telemetry::clock::now_us(),
            ));
        }
        if let Some(p) = &self.publisher {
            p.publish_now();
        }
        if self.reader.is_none() {
            self.reader = Reader::start(&self.kafka, run.clone())
                .map_err(|e| tracing::warn!(error = %e, "cannot read the results topic"))
                .ok();
        }
        let reader = self.reader.as_ref()?;
        let own_applied = own.first().map_or(0, |u| u.figures.applied());
        let since = self.phase_since();
        let generators = self.run.generators as usize;
        let deadline = tokio::time::Instant::now() + MERGE_WAIT;
        let mut last = None;
        loop {
            let merged =
                reader
                    .merged()
                    .phase(&run, phase, since, crate::telemetry::clock::now_us());
            if let Some(m) = merged {
                let me = own.first().map(|u| u.process.id);
                let mine = m
                    .shares
                    .iter()
                    .any(|s| Some(s.id) == me && s.applied >= own_applied && s.generated);
                let done = m.shares.iter().filter(|s| s.generated).count() >= generators;
                if mine && done && m.figures.accounted() {
                    return Some(m);
                }
                last = Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                let unreadable = reader.merged().unreadable;
                if unreadable > 0 {
                    tracing::warn!(
                        unreadable,
                        "messages on the results topic were not results of this pipedemo"
                    );
                }
                let m = last?;
                tracing::warn!(
                    run = %run, phase = %phase,
                    applied = m.figures.applied(), arrived = m.figures.arrived,
                    stopped = %m.stopped().iter().map(|s| s.process.as_str()).collect::<Vec<_>>().join(", "),
                    "not every process's figures came in within {MERGE_WAIT:?}; the report merges what did"
                );
                return Some(m);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn phase_waiting(&self) -> u64 {
        self.live
            .lock()
            .phases
            .last()
            .map_or(0, |p| p.target - p.received)
    }

    /// The consumer processes, when they are children (chaos runs break them).
    pub fn children(&self) -> Option<Children> {
        match &self.consumer {
            Consumer::Children(c) => Some(c.clone()),
            Consumer::Here(_) => None,
        }
    }

    /// Stops the consumer (committing offsets), drains the metrics and marks the run complete.
    pub async fn finish(self) -> Result<Totals> {
        let totals = match self.consumer {
            Consumer::Here(c) => c.finish().await?,
            Consumer::Children(c) => c.finish().await?,
        };
        // The consumer held the only sender; the collector ends when it has drained.
        self.collector.await.context("metrics collector")??;
        self.health_stop.cancel();
        let _ = self.health.await;
        if let Some(r) = self.reader {
            r.stop().await;
        }
        let last = match self.publisher {
            Some(p) => p.finish().await,
            None => self
                .book
                .lock()
                .map(|mut b| b.last_word())
                .unwrap_or_default(),
        };
        if let Err(e) = crate::telemetry::results_file::append(&self.results_file, &last) {
            tracing::warn!(error = %e, "cannot keep this process's results");
        }
        self.live.lock().complete = true;
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_over_a_duration_is_rounded_to_at_least_one_event() {
        assert_eq!(events_at(4000.0, Duration::from_secs(15)), 60_000);
        assert_eq!(events_at(437.5, Duration::from_secs(1)), 438);
        assert_eq!(events_at(0.1, Duration::from_secs(1)), 1);
    }
}
