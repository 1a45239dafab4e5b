//! Generating load while the consumer runs in the same process.
//!
//! A [`Session`] starts the consumer, the metrics collector (live state + metrics file) and the
//! health poller; each [`Session::run_phase`] inserts a phase's events and waits until every
//! one of them has arrived in MongoDB. `pipedemo load` is one phase; `pipedemo full` is several.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::consumer::{ConsumerOptions, Pipeline, Totals};
use crate::generator::{self, Mix, NewEvent};
use crate::live::{self, Live, Shared};
use crate::metrics::{self, MetricsFile};
use crate::outbox;
use crate::stats::{RunStats, Summary};

/// How one phase generates its events.
#[derive(Clone, Debug)]
pub struct PhaseOptions {
    /// Events to generate.
    pub events: u64,
    /// Rows per INSERT transaction.
    pub batch_size: usize,
    /// Target insert rate, events/s (open loop: batches are sent on schedule).
    pub rate: Option<f64>,
    /// Pause after each batch.
    pub batch_delay: Duration,
    /// How long to wait, after the last insert, for the events to reach MongoDB.
    pub timeout: Duration,
    /// Seed for reproducible data.
    pub seed: Option<u64>,
}

/// Options of `load`: one phase, and the consumer's tuning.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The events and their pacing.
    pub phase: PhaseOptions,
    /// Consumer tuning.
    pub consumer: ConsumerOptions,
}

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Phase name.
    pub name: String,
    /// Events asked for.
    pub events: u64,
    /// The mix of types.
    pub mix: Mix,
    /// Metrics of this phase's events.
    pub stats: RunStats,
    /// Seconds spent inserting.
    pub insert_secs: f64,
    /// Seconds from the first insert until the last event was in MongoDB.
    pub wall_secs: f64,
    /// Event ids that never arrived (empty on success).
    pub missing: Vec<Uuid>,
    /// For paced phases: T5 minus each event's scheduled insert time.
    pub from_schedule: Option<crate::stats::Latency>,
}

/// A JSON form of [`LoadResult`].
#[derive(Serialize, Clone, Debug)]
pub struct LoadSummary {
    /// Phase name.
    pub phase: String,
    /// Events asked for.
    pub events: u64,
    /// Events found in MongoDB.
    pub delivered: u64,
    /// Events missing.
    pub missing: usize,
    /// Dead-lettered messages.
    pub errors: u64,
    /// First insert to last write, s.
    pub duration_secs: f64,
    /// delivered / duration.
    pub throughput_eps: f64,
    /// Insert phase only, events/s.
    pub insert_rate_eps: f64,
    /// Seconds spent inserting.
    pub insert_secs: f64,
    /// Latency by stage.
    pub stages: std::collections::BTreeMap<&'static str, Summary>,
    /// End-to-end latency by type.
    pub by_type: std::collections::BTreeMap<String, Summary>,
    /// For paced runs: latency from each event's scheduled insert time to its write
    /// (open-loop measurement, immune to coordinated omission).
    pub total_from_schedule: Option<Summary>,
}

impl LoadResult {
    /// The JSON summary.
    pub fn summary(&self) -> LoadSummary {
        let delivered =
            self.stats.applied_total() + self.stats.already_applied.values().sum::<u64>();
        LoadSummary {
            phase: self.name.clone(),
            events: self.events,
            delivered,
            missing: self.missing.len(),
            errors: self.stats.errors,
            duration_secs: self.wall_secs,
            throughput_eps: if self.wall_secs > 0.0 {
                delivered as f64 / self.wall_secs
            } else {
                0.0
            },
            insert_rate_eps: if self.insert_secs > 0.0 {
                self.events as f64 / self.insert_secs
            } else {
                0.0
            },
            stages: self.stats.stages.summaries(),
            by_type: self
                .stats
                .by_type
                .iter()
                .map(|(k, v)| (k.clone(), v.summary()))
                .collect(),
            total_from_schedule: self.from_schedule.as_ref().map(|l| l.summary()),
            insert_secs: self.insert_secs,
        }
    }
}

/// The consumer, collector and health poller of a run.
pub struct Session {
    /// The live state the dashboard reads.
    pub live: Shared,
    changed: watch::Receiver<u64>,
    consumer: JoinHandle<Result<Totals>>,
    consumer_stop: CancellationToken,
    collector: JoinHandle<Result<()>>,
    health: JoinHandle<()>,
    pg: tokio_postgres::Client,
}

impl Session {
    /// Starts everything and waits until the consumer has its partitions.
    pub async fn start(
        s: &Settings,
        consumer: ConsumerOptions,
        stop: &CancellationToken,
    ) -> Result<Session> {
        let pg = outbox::connect(&s.pg).await?;
        outbox::check_table(&pg).await?;
        let file = MetricsFile::append(&s.metrics_file)?;
        let (tx, rx) = metrics::channel();
        let live: Shared = Arc::new(Mutex::new(Live::default()));
        let (changed_tx, changed) = watch::channel(0);
        let collector = tokio::spawn(live::collect(rx, live.clone(), Some(file), changed_tx));
        let (pipeline, mut assigned) = Pipeline::new(s, consumer, tx).await?;
        let consumer_stop = stop.child_token();
        let consumer = tokio::spawn(pipeline.run(consumer_stop.clone()));
        let health = tokio::spawn(crate::health::poll(
            s.clone(),
            live.clone(),
            Duration::from_secs(1),
            consumer_stop.clone(),
        ));
        assigned.wait(Duration::from_secs(30)).await?;
        Ok(Session {
            live,
            changed,
            consumer,
            consumer_stop,
            collector,
            health,
            pg,
        })
    }

    /// Inserts a phase's events and waits until all are in MongoDB (or dead-lettered), the
    /// timeout passes, or `stop` is cancelled.
    pub async fn run_phase(
        &mut self,
        name: &str,
        o: &PhaseOptions,
        stop: &CancellationToken,
    ) -> Result<LoadResult> {
        if o.events == 0 {
            bail!("--events must be at least 1");
        }
        if o.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        // Generated batch by batch: a large phase never sits in memory whole.
        let mut events = generator::Generator::new(o.events, o.seed);
        self.live
            .lock()
            .expect("live state lock")
            .begin_phase_of(name, o.events);
        let started = Instant::now();
        let start_us = crate::clock::now_us();
        let mut sent = 0u64;
        loop {
            let chunk: Vec<NewEvent> = events.by_ref().take(o.batch_size).collect();
            if chunk.is_empty() {
                break;
            }
            let due: Option<Vec<i64>> = o.rate.map(|rate| {
                (0..chunk.len())
                    .map(|k| start_us + ((sent + k as u64) as f64 / rate * 1e6) as i64)
                    .collect()
            });
            if let Some(rate) = o.rate {
                // Open loop: each batch is due when its first event is, however long earlier
                // ones took.
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            if stop.is_cancelled() {
                break;
            }
            self.live
                .lock()
                .expect("live state lock")
                .expect(chunk.iter().map(|e| e.event_id), due.as_deref());
            outbox::insert_batch(&self.pg, &chunk).await?;
            sent += chunk.len() as u64;
            if !o.batch_delay.is_zero() {
                tokio::time::sleep(o.batch_delay).await;
            }
        }
        let insert_secs = started.elapsed().as_secs_f64();
        tracing::debug!(phase = name, secs = insert_secs, "outbox rows inserted");

        let deadline = tokio::time::Instant::now() + o.timeout;
        loop {
            if self.phase_waiting() == 0 || stop.is_cancelled() {
                break;
            }
            tokio::select! {
                r = self.changed.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.cancelled() => break,
            }
        }
        let wall_secs = started.elapsed().as_secs_f64();
        let l = self.live.lock().expect("live state lock");
        let p = l.phases.last().expect("the phase begun above");
        Ok(LoadResult {
            name: name.to_owned(),
            events: o.events,
            mix: Mix::for_total(o.events),
            stats: p.stats.clone(),
            insert_secs,
            wall_secs: p.finished_us.map_or(wall_secs, |_| p.secs()),
            missing: p.waiting.iter().copied().collect(),
            from_schedule: (!p.scheduled.is_empty()).then(|| p.from_schedule.clone()),
        })
    }

    fn phase_waiting(&self) -> u64 {
        self.live
            .lock()
            .expect("live state lock")
            .phases
            .last()
            .map_or(0, |p| p.target - p.received)
    }

    /// Stops the consumer (committing offsets), drains the metrics and marks the run complete.
    pub async fn finish(self) -> Result<Totals> {
        self.consumer_stop.cancel();
        let totals = self.consumer.await.context("consumer task")??;
        // The consumer held the only sender; the collector ends when it has drained.
        self.collector.await.context("metrics collector")??;
        let _ = self.health.await;
        self.live.lock().expect("live state lock").complete = true;
        Ok(totals)
    }
}

/// Runs a one-phase load with no display.
pub async fn run(s: &Settings, opts: &LoadOptions, stop: CancellationToken) -> Result<LoadResult> {
    run_with(s, opts, stop, |_| {}).await
}

/// Like [`run`], returning the session's live state too, for a display running meanwhile.
pub async fn run_with(
    s: &Settings,
    opts: &LoadOptions,
    stop: CancellationToken,
    on_start: impl FnOnce(Shared),
) -> Result<LoadResult> {
    let mut session = Session::start(s, opts.consumer.clone(), &stop).await?;
    on_start(session.live.clone());
    let r = session.run_phase("load", &opts.phase, &stop).await;
    session.finish().await?;
    r
}
