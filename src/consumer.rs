//! The enhanced consumer: Kafka → envelope → handler → MongoDB, with T0–T5 per event.
//!
//! Messages are taken in batches of whatever is already fetched (never waiting to fill one, so
//! latency stays low at low rates). A batch's writes go to MongoDB together; its offsets are
//! committed only after every write and every dead-letter send of the batch is acknowledged.
//! MongoDB or Kafka outages are retried with backoff and nothing is committed meanwhile, so
//! delivery is at-least-once and the idempotent read models absorb redeliveries.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::now_us;
use crate::config::Settings;
use crate::envelope::{decode, Decoded, Op, OutboxEvent};
use crate::handlers::{Registry, WriteOp};
use crate::kafka::{client_config, DeadLetters};
use crate::metrics::{ErrorRecord, EventRecord, MetricEvent, MetricsSender, Timing};
use crate::store::{Outcome, ReadModels, TransientError};

/// Tuning of the consumer.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Most messages handled as one batch.
    pub max_batch: usize,
    /// Process snapshot reads (`op: r`) as events instead of skipping them.
    pub include_snapshot: bool,
    /// How long a join waits for its activity before it is dead-lettered.
    pub missing_activity_wait: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            max_batch: 1000,
            include_snapshot: false,
            missing_activity_wait: Duration::from_secs(10),
        }
    }
}

/// Counts of what a consumer run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events written now.
    pub applied: u64,
    /// Events found already written.
    pub already_applied: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Messages skipped on purpose.
    pub skipped: u64,
}

/// Tells when the group has given this consumer partitions.
struct Ctx {
    assigned: std::sync::Arc<watch::Sender<bool>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?parts, "partitions assigned");
                self.assigned.send_replace(!parts.is_empty());
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// A running consumer's handle on its partition assignment.
#[derive(Clone)]
pub struct Assigned(watch::Receiver<bool>);

impl Assigned {
    /// Waits until the group has assigned partitions, or `timeout` passes.
    pub async fn wait(&mut self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.0.wait_for(|a| *a))
            .await
            .context("the consumer got no partitions from its group in time")?
            .context("the consumer stopped")?;
        Ok(())
    }
}

/// The consumer, ready to run.
pub struct Pipeline {
    consumer: StreamConsumer<Ctx>,
    kafka: crate::config::KafkaArgs,
    assigned: std::sync::Arc<watch::Sender<bool>>,
    /// Messages waiting at the last idle check without partitions (see `unstall`).
    idle_waiting: Option<i64>,
    topic: String,
    dlq: DeadLetters,
    store: ReadModels,
    registry: Registry,
    metrics: MetricsSender,
    opts: ConsumerOptions,
}

/// One message of a batch, with its receive time (T3).
struct Received {
    msg: OwnedMessage,
    t3_us: i64,
}

/// An event waiting for its write.
struct Pending<'a> {
    event: OutboxEvent,
    timing: Timing,
    msg: &'a OwnedMessage,
}

/// A message bound for the dead-letter topic.
struct Dead<'a> {
    msg: &'a OwnedMessage,
    reason: String,
    event_id: Option<uuid::Uuid>,
    event_type: Option<String>,
}

impl Pipeline {
    /// Connects to Kafka and MongoDB and subscribes to the outbox topic.
    pub async fn new(
        settings: &Settings,
        opts: ConsumerOptions,
        metrics: MetricsSender,
    ) -> Result<(Self, Assigned)> {
        let store = ReadModels::connect(&settings.mongo).await?;
        let topic = settings.kafka.topic();
        if crate::kafka::partitions(&settings.kafka, &topic)
            .await?
            .is_none()
        {
            anyhow::bail!("Kafka topic {topic} does not exist; run `pipedemo setup` first");
        }
        let (tx, rx) = watch::channel(false);
        let assigned = std::sync::Arc::new(tx);
        let consumer = subscribe(&settings.kafka, &topic, &assigned)?;
        let dlq = DeadLetters::new(&settings.kafka)?;
        Ok((
            Pipeline {
                consumer,
                kafka: settings.kafka.clone(),
                assigned,
                idle_waiting: None,
                topic,
                dlq,
                store,
                registry: Registry::standard(),
                metrics,
                opts,
            },
            Assigned(rx),
        ))
    }

    /// Consumes until `stop` is cancelled, then finishes the batch in hand, commits and returns.
    pub async fn run(mut self, stop: CancellationToken) -> Result<Totals> {
        let mut totals = Totals::default();
        // Repairs global statistics after a crash between a write and its statistics update.
        self.retry(&stop, || self.store.recompute_statistics())
            .await;
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                m = self.consumer.recv() => m,
                _ = tokio::time::sleep(STALL_AFTER) => {
                    self.unstall()?;
                    continue;
                }
            };
            let first = match first {
                Ok(m) => {
                    self.idle_waiting = None;
                    m.detach()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut batch = vec![Received {
                msg: first,
                t3_us: now_us(),
            }];
            while batch.len() < self.opts.max_batch {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(Received {
                        msg: m.detach(),
                        t3_us: now_us(),
                    }),
                    _ => break,
                }
            }
            if !self.process(&batch, &stop, &mut totals).await {
                // Stopped during an outage: the batch is not committed and will be redelivered.
                return Ok(totals);
            }
            fail::fail_point!("consumer-before-commit", |_| crash(
                "consumer-before-commit"
            ));
            self.commit(&batch, CommitMode::Async);
            // Makes the consumer stop, as librdkafka sometimes does after a broker outage
            // (fetching paused, or partitions dropped while the group thinks them taken), so
            // that the tests can see `unstall` recover.
            if let Some(how) = fail::eval("consumer-stop-fetching", |arg| arg) {
                if how.as_deref() == Some("unassign") {
                    let _ = self.consumer.unassign();
                } else if let Ok(a) = self.consumer.assignment() {
                    let _ = self.consumer.pause(&a);
                }
            }
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing consumed yet is the usual cause; every handled batch was committed.
            tracing::debug!(error = %e, "final commit");
        }
        Ok(totals)
    }

    /// Called after [`STALL_AFTER`] without a message. librdkafka sometimes stops consuming
    /// after every broker connection was lost: the group revokes the partitions and never
    /// assigns them again, or fetching stops (rust-rdkafka #597), while messages wait in the
    /// topic. Then the Kafka consumer is made anew; nothing is lost, because offsets are
    /// committed only after the writes.
    fn unstall(&mut self) -> Result<()> {
        let Some(waiting) = self.waiting() else {
            self.idle_waiting = None;
            return Ok(());
        };
        let assigned = self
            .consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false);
        // Without partitions, another member may hold them: only a group that made no
        // progress at all since the last check is stuck.
        if !assigned && self.idle_waiting != Some(waiting) {
            self.idle_waiting = Some(waiting);
            return Ok(());
        }
        tracing::warn!(
            waiting,
            assigned,
            "the Kafka consumer received nothing for {STALL_AFTER:?} although messages are waiting; reconnecting"
        );
        self.idle_waiting = None;
        self.consumer = subscribe(&self.kafka, &self.topic, &self.assigned)?;
        Ok(())
    }

    /// Messages waiting past this consumer's position on its partitions, or, with no
    /// partitions, past the group's committed offsets on the whole topic.
    fn waiting(&self) -> Option<i64> {
        const T: Duration = Duration::from_secs(2);
        let mut parts = self.consumer.assignment().ok()?;
        let position = self.consumer.position().ok()?;
        if parts.count() == 0 {
            let md = self.consumer.fetch_metadata(Some(&self.topic), T).ok()?;
            for p in md.topics().first()?.partitions() {
                parts.add_partition(&self.topic, p.id());
            }
        }
        let committed = self.consumer.committed_offsets(parts.clone(), T).ok()?;
        let mut waiting = 0;
        for e in parts.elements() {
            let p = e.partition();
            let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, T).ok()?;
            let at = |l: &TopicPartitionList| match l.find_partition(&self.topic, p)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let next = at(&position).or_else(|| at(&committed)).unwrap_or(low);
            waiting += (high - next).max(0);
        }
        (waiting > 0).then_some(waiting)
    }

    fn commit(&self, batch: &[Received], mode: CommitMode) {
        let mut next: HashMap<i32, i64> = HashMap::new();
        for r in batch {
            let e = next.entry(r.msg.partition()).or_insert(0);
            *e = (*e).max(r.msg.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(o));
        }
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::warn!(error = %e, "offset commit failed; the batch may be redelivered (idempotent)");
        }
    }

    /// Handles a batch completely. Returns false if `stop` came during an outage.
    async fn process(
        &self,
        batch: &[Received],
        stop: &CancellationToken,
        totals: &mut Totals,
    ) -> bool {
        let t_start = std::time::Instant::now();
        let mut ops: Vec<WriteOp> = Vec::with_capacity(batch.len());
        let mut pending: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut dead: Vec<Dead> = Vec::new();
        for r in batch {
            let m = &r.msg;
            let decoded = match decode(m.key(), m.payload()) {
                Ok(d) => d,
                Err(e) => {
                    dead.push(Dead {
                        msg: m,
                        reason: e.to_string(),
                        event_id: None,
                        event_type: None,
                    });
                    continue;
                }
            };
            let change = match decoded {
                Decoded::Change(c) => c,
                Decoded::Tombstone => {
                    self.skip(m, "tombstone", totals);
                    continue;
                }
                Decoded::NoRow(op) => {
                    self.skip(m, &format!("op `{}` carries no row", op.code()), totals);
                    continue;
                }
            };
            match change.op {
                Op::Create => {}
                Op::Read if self.opts.include_snapshot => {}
                Op::Read => {
                    self.skip(m, "snapshot read", totals);
                    continue;
                }
                other => {
                    self.skip(
                        m,
                        &format!("op `{}` (only inserts are events)", other.code()),
                        totals,
                    );
                    continue;
                }
            }
            let t4_us = now_us();
            let handled = crate::envelope::check_created_at(&change.event, t4_us)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    self.registry
                        .handle(&change.event)
                        .map_err(|e| e.to_string())
                });
            match handled {
                Ok(op) => {
                    ops.push(op);
                    pending.push(Pending {
                        timing: Timing {
                            t0_us: change.event.created_at_us,
                            commit_us: change.committed_us,
                            t1_us: change.captured_us,
                            t2_us: m.timestamp().to_millis().map_or(0, |ms| ms * 1000),
                            t3_us: r.t3_us,
                            t4_us,
                            t5_us: 0,
                        },
                        event: change.event,
                        msg: m,
                    });
                }
                Err(e) => dead.push(Dead {
                    msg: m,
                    reason: e.to_string(),
                    event_id: Some(change.event.event_id),
                    event_type: Some(change.event.event_type.clone()),
                }),
            }
        }

        let t_apply = std::time::Instant::now();
        let Some(mut results) = self.retry(stop, || self.store.apply(&ops)).await else {
            return false;
        };
        let apply_us = t_apply.elapsed().as_micros();
        // Joins that came before their activity: wait for it a while, then dead-letter.
        let deadline = tokio::time::Instant::now() + self.opts.missing_activity_wait;
        let mut wait = Duration::from_millis(50);
        loop {
            let missing: Vec<usize> = (0..ops.len())
                .filter(|&i| results[i].outcome == Outcome::ActivityMissing)
                .collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
            let retry_ops: Vec<WriteOp> = missing.iter().map(|&i| ops[i].clone()).collect();
            let Some(again) = self.retry(stop, || self.store.apply(&retry_ops)).await else {
                return false;
            };
            for (i, r) in missing.into_iter().zip(again) {
                results[i] = r;
            }
        }

        fail::fail_point!("consumer-after-write", |_| crash("consumer-after-write"));
        let mut applied_per_type: BTreeMap<String, i64> = BTreeMap::new();
        let mut activity_counts: BTreeMap<String, i64> = BTreeMap::new();
        let mut records = Vec::with_capacity(pending.len());
        for ((p, r), op) in pending.into_iter().zip(&results).zip(&ops) {
            let applied = match &r.outcome {
                Outcome::Applied => true,
                Outcome::AlreadyApplied => false,
                Outcome::ActivityMissing => {
                    dead.push(Dead {
                        msg: p.msg,
                        reason: format!(
                            "activity {} not found after {:?} (ParticipantJoined before its ActivityCreated)",
                            p.event.aggregate_id, self.opts.missing_activity_wait
                        ),
                        event_id: Some(p.event.event_id),
                        event_type: Some(p.event.event_type.clone()),
                    });
                    continue;
                }
                Outcome::Rejected(reason) => {
                    dead.push(Dead {
                        msg: p.msg,
                        reason: format!("MongoDB rejected the write: {reason}"),
                        event_id: Some(p.event.event_id),
                        event_type: Some(p.event.event_type.clone()),
                    });
                    continue;
                }
            };
            // Per-activity statistics start with the first participant. Replays refresh them
            // too ($max), repairing a crash that came between a join and its statistics.
            if let (WriteOp::Join { .. }, Some(n)) = (op, r.participant_count) {
                let e = activity_counts.entry(op.key().to_owned()).or_default();
                *e = (*e).max(n);
            }
            if applied {
                *applied_per_type
                    .entry(p.event.event_type.clone())
                    .or_default() += 1;
                totals.applied += 1;
            } else {
                totals.already_applied += 1;
            }
            let mut timing = p.timing;
            timing.t5_us = r.acked_us;
            records.push(EventRecord {
                event_id: p.event.event_id,
                label: label(&p.event),
                event_type: p.event.event_type,
                aggregate_id: p.event.aggregate_id,
                partition: p.msg.partition(),
                offset: p.msg.offset(),
                applied,
                stages: timing.stages(),
                timing,
            });
        }
        let t_stats = std::time::Instant::now();
        if self
            .retry(stop, || {
                self.store
                    .record_statistics(&applied_per_type, &activity_counts)
            })
            .await
            .is_none()
        {
            return false;
        }
        tracing::debug!(
            messages = batch.len(),
            decode_us = (t_apply - t_start).as_micros(),
            apply_us,
            stats_us = t_stats.elapsed().as_micros(),
            "batch"
        );
        for d in &dead {
            if !self.dead_letter(d, stop).await {
                return false;
            }
            totals.dead_lettered += 1;
        }
        for r in records {
            let _ = self.metrics.send(MetricEvent::Event(r));
        }
        true
    }

    fn skip(&self, m: &OwnedMessage, reason: &str, totals: &mut Totals) {
        totals.skipped += 1;
        tracing::debug!(
            partition = m.partition(),
            offset = m.offset(),
            reason,
            "skipped"
        );
        let _ = self.metrics.send(MetricEvent::Skipped {
            partition: m.partition(),
            offset: m.offset(),
            reason: reason.to_owned(),
        });
    }

    async fn dead_letter(&self, d: &Dead<'_>, stop: &CancellationToken) -> bool {
        let m = d.msg;
        tracing::error!(
            topic = %self.topic, partition = m.partition(), offset = m.offset(),
            event_id = ?d.event_id, reason = %d.reason,
            "message cannot be handled; sent to the dead-letter topic {}", self.dlq.topic()
        );
        let mut wait = Duration::from_millis(100);
        loop {
            match self
                .dlq
                .send(
                    m.key(),
                    m.payload(),
                    (&self.topic, m.partition(), m.offset()),
                    &d.reason,
                )
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "dead-letter send failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        let _ = self.metrics.send(MetricEvent::Error(ErrorRecord {
            partition: m.partition(),
            offset: m.offset(),
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            reason: d.reason.clone(),
            at_us: now_us(),
        }));
        true
    }

    /// Runs `f` until it succeeds, backing off on MongoDB failures. `None` if stopped first.
    async fn retry<T, F, Fut>(&self, stop: &CancellationToken, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TransientError>>,
    {
        let mut wait = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(attempts = attempt + 1, "MongoDB is back; continuing");
                    }
                    return Some(v);
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "MongoDB unavailable; retrying in {wait:?} (offsets not committed)");
                    let _ = self.metrics.send(MetricEvent::Outage {
                        reason: e.to_string(),
                        attempt,
                    });
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// How long without a message before the consumer checks whether it is stuck.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// A Kafka consumer in the group, subscribed to `topic`.
fn subscribe(
    kafka: &crate::config::KafkaArgs,
    topic: &str,
    assigned: &std::sync::Arc<watch::Sender<bool>>,
) -> Result<StreamConsumer<Ctx>> {
    let consumer: StreamConsumer<Ctx> = client_config(kafka)
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Low latency: answer fetches at once rather than waiting to fill them.
        .set("fetch.wait.max.ms", "5")
        .set("fetch.queue.backoff.ms", "1")
        .set("session.timeout.ms", "10000")
        // librdkafka pre-fetches up to 64 MB per partition by default; 8 MB keeps memory
        // bounded and is still thousands of envelopes ahead.
        .set("queued.max.messages.kbytes", "8192")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(Ctx {
            assigned: assigned.clone(),
        })
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    Ok(consumer)
}

/// Ends the process at once, as SIGKILL would, from an armed fail point: nothing after this
/// point of the batch (statistics, dead letters, offset commit) happens.
fn crash(point: &str) -> ! {
    eprintln!("fail point {point}: aborting the process");
    std::process::abort()
}

/// A short label for dashboards and logs: username, activity title, or the joining user.
pub fn label(e: &OutboxEvent) -> String {
    let field = match e.event_type.as_str() {
        "UserCreated" => "username",
        "ActivityCreated" => "title",
        _ => "user_id",
    };
    let s = e.payload.get(field).and_then(|v| v.as_str()).unwrap_or("");
    s.chars().take(40).collect()
}
