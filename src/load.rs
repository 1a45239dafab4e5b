//! `pipedemo load`: generate N events into the outbox while the consumer runs in the same
//! process, and return when every one of them is in MongoDB.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Settings;
use crate::consumer::{ConsumerOptions, Pipeline};
use crate::generator::{self, Mix};
use crate::metrics::{self, MetricEvent, MetricsFile, MetricsReceiver};
use crate::outbox;
use crate::stats::RunStats;

/// Options of `load`.
#[derive(Clone, Debug)]
pub struct LoadOptions {
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
    /// Consumer tuning.
    pub consumer: ConsumerOptions,
}

/// What a load run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Events asked for.
    pub events: u64,
    /// The mix of types.
    pub mix: Mix,
    /// Aggregated metrics of this run's events.
    pub stats: RunStats,
    /// Seconds spent inserting.
    pub insert_secs: f64,
    /// Seconds from the first insert until the last event was in MongoDB.
    pub wall_secs: f64,
    /// Event ids that never arrived (empty on success).
    pub missing: Vec<Uuid>,
    /// Messages of other runs seen meanwhile (older events still in the topic).
    pub foreign: u64,
}

/// A JSON form of [`LoadResult`].
#[derive(Serialize)]
pub struct LoadSummary {
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
    /// Latency by stage.
    pub stages: std::collections::BTreeMap<&'static str, crate::stats::Summary>,
    /// End-to-end latency by type.
    pub by_type: std::collections::BTreeMap<String, crate::stats::Summary>,
}

impl LoadResult {
    /// The JSON summary.
    pub fn summary(&self) -> LoadSummary {
        let delivered =
            self.stats.applied_total() + self.stats.already_applied.values().sum::<u64>();
        LoadSummary {
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
        }
    }
}

/// Collects metric events: writes the metrics file, aggregates this run's events and tells
/// when all of them have arrived.
struct Collector {
    file: MetricsFile,
    expected: HashSet<Uuid>,
    stats: RunStats,
    foreign: u64,
}

impl Collector {
    fn take(&mut self, ev: MetricEvent) -> Result<()> {
        self.file.write(&ev)?;
        match &ev {
            MetricEvent::Event(r) => {
                if self.expected.remove(&r.event_id) {
                    self.stats.record(&ev);
                } else {
                    self.foreign += 1;
                }
            }
            MetricEvent::Error(e) => {
                if let Some(id) = e.event_id {
                    // Dead-lettered: kept in the DLQ, and it will not arrive in MongoDB.
                    self.expected.remove(&id);
                }
                self.stats.record(&ev);
            }
            MetricEvent::Outage { reason, attempt } if *attempt == 1 => {
                tracing::warn!("MongoDB outage: {reason}");
            }
            _ => self.stats.record(&ev),
        }
        Ok(())
    }
}

/// Runs a load.
pub async fn run(s: &Settings, opts: &LoadOptions, stop: CancellationToken) -> Result<LoadResult> {
    if opts.events == 0 {
        bail!("--events must be at least 1");
    }
    if opts.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut pg = outbox::connect(&s.pg).await?;
    outbox::check_table(&pg).await?;
    let file = MetricsFile::append(&s.metrics_file)?;

    let events = generator::generate(opts.events, opts.seed);
    let mut collector = Collector {
        file,
        expected: events.iter().map(|e| e.event_id).collect(),
        stats: RunStats::default(),
        foreign: 0,
    };

    let (tx, mut rx) = metrics::channel();
    let (pipeline, mut assigned) = Pipeline::new(s, opts.consumer.clone(), tx).await?;
    let consumer_stop = stop.child_token();
    let consumer = tokio::spawn(pipeline.run(consumer_stop.clone()));
    assigned.wait(Duration::from_secs(30)).await?;

    let started = Instant::now();
    let mut inserted = 0u64;
    for (i, chunk) in events.chunks(opts.batch_size).enumerate() {
        if let Some(rate) = opts.rate {
            // Open loop: batch i is due at i·B/R seconds, however long earlier ones took.
            let due = started + Duration::from_secs_f64((i * opts.batch_size) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if stop.is_cancelled() {
            break;
        }
        inserted += outbox::insert_batch(&mut pg, chunk).await?;
        drain(&mut rx, &mut collector)?;
        if !opts.batch_delay.is_zero() {
            tokio::time::sleep(opts.batch_delay).await;
        }
    }
    let insert_secs = started.elapsed().as_secs_f64();
    tracing::info!(inserted, secs = insert_secs, "outbox rows inserted");

    let deadline = tokio::time::Instant::now() + opts.timeout;
    while !collector.expected.is_empty() && !stop.is_cancelled() {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => collector.take(ev)?,
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stop.cancelled() => break,
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    consumer_stop.cancel();
    let totals = consumer.await.context("consumer task")??;
    drain(&mut rx, &mut collector)?;
    collector.file.flush()?;
    tracing::debug!(?totals, "consumer finished");

    Ok(LoadResult {
        events: opts.events,
        mix: Mix::for_total(opts.events),
        stats: collector.stats,
        insert_secs,
        wall_secs,
        missing: collector.expected.into_iter().collect(),
        foreign: collector.foreign,
    })
}

fn drain(rx: &mut MetricsReceiver, c: &mut Collector) -> Result<()> {
    while let Ok(ev) = rx.try_recv() {
        c.take(ev)?;
    }
    Ok(())
}
