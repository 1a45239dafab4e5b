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
use crate::pipeline::outbox::{self, NewEvent};
use crate::pipeline::store::ReadModels;
use crate::pipeline::writer::{self, Pool, WriteModel};
use crate::telemetry::live::{self, Live, Shared, Sink, WINDOW_SECS};
use crate::telemetry::metrics::{self, MetricsFile};
use std::sync::Arc;

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
        outbox::check_table(&pg).await?;
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
        let collector = tokio::spawn(live::collect(
            rx,
            Sink {
                live: Some(live.clone()),
                file: Some(file),
                changed: Some(changed_tx),
            },
        ));
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
                c.wait_members(1, Duration::from_secs(60)).await?;
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
        self.live.lock().begin_phase_of(name, o.events);
        self.elsewhere.clear();
        let started = Instant::now();
        let (sent, transactions) = self.insert(o, started, stop).await?;
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
        while self.phase_waiting() > 0 {
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
        }
        let wall_secs = started.elapsed().as_secs_f64();
        let l = self.live.lock();
        let p = l.phases.last().context("the phase begun above")?;
        Ok(PhaseResult {
            name: name.to_owned(),
            events: o.events,
            sent,
            transactions,
            write: o.write,
            routing: self.routing,
            offered_eps: o.rate,
            mix: Mix::for_total(o.events),
            stats: p.stats.clone(),
            insert_secs,
            wall_secs: p.finished_us.map_or(wall_secs, |_| p.secs()),
            missing: p.waiting.iter().copied().collect(),
            elsewhere: p.elsewhere,
            from_schedule: p.paced.then(|| p.from_schedule.clone()),
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
            let chunk: Vec<NewEvent> = events.by_ref().take(tx.rows).collect();
            let due = tx.due.map(|d| start_us + d.as_micros() as i64);
            self.live
                .lock()
                .await_ids(chunk.iter().map(|e| e.event_id), due);
            self.elsewhere.track(&chunk);
            sent += chunk.len() as u64;
            pool.send(chunk).await?;
            self.elsewhere.look(&self.live, self.consumer.alone()).await;
            if !o.batch_delay.is_zero() {
                tokio::time::sleep(o.batch_delay).await;
            }
        }
        let transactions = pool.finish().await?;
        Ok((sent, transactions))
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
        self.live.lock().complete = true;
        Ok(totals)
    }
}
