//! The enhanced consumer: Kafka → envelope → handler → MongoDB, with T0–T5 per event.
//!
//! Messages are taken in batches of whatever is already fetched (never waiting to fill one, so
//! latency stays low at low rates). A batch's writes go to MongoDB together; its offsets are
//! committed only after every write and every dead-letter send of the batch is acknowledged,
//! and its statistics too (folded with the other batches of a 50 ms window, see [`owed`]).
//! MongoDB or Kafka outages are retried with backoff and nothing is committed meanwhile, so
//! delivery is at-least-once and the idempotent read models absorb redeliveries.
//!
//! [`batch`] holds the decisions (what each message is, what the results add up to); this
//! module does the I/O around them; [`group`] is the Kafka consumer-group membership. [`start`]
//! is the one way every command runs a consumer.

pub mod batch;
mod gate;
mod group;
mod owed;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{RoutePattern, Routing, Settings};
use crate::pipeline::backoff::Backoff;
use crate::pipeline::handlers::{Registry, WriteOp};
use crate::pipeline::kafka::{headers, DeadLetters, LagProbe, Waiting};
use crate::pipeline::routed::{Origin, RoutedHeaders};
use crate::pipeline::store::{Outcome, ReadModels, TransientError, WriteResult};
use crate::telemetry::clock::now_us;
use crate::telemetry::metrics::{ErrorRecord, MetricEvent, MetricsSender};

use batch::{DeadLetter, Message, Route};
pub use gate::OwnTopics;
pub use group::{check_instance_id, instance_id_char, Assigned, Holding};
use group::{Ctx, Membership, Stalled};
use owed::Owed;

/// Tuning of the consumer.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Most messages handled as one batch.
    pub max_batch: usize,
    /// Process snapshot reads (`op: r`) as events instead of skipping them.
    pub include_snapshot: bool,
    /// How long a join waits for its activity before it is dead-lettered.
    pub missing_activity_wait: Duration,
    /// How long a failing MongoDB write or dead-letter send is retried before the consumer
    /// gives up with an error naming it (`None`: for ever, as a long-running `consume` does).
    pub retry_limit: Option<Duration>,
    /// Set by a chaos run (`consume --chaos-hooks`, SIGUSR1): the process aborts after the
    /// next batch's MongoDB write, before anything else of the batch or its offset commit.
    pub crash_armed: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The consumer's static group membership id (`consume --instance-id`): its restarts take
    /// back its partitions at once. `None`: a dynamic member, which leaves when it stops.
    pub instance_id: Option<String>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            max_batch: 1000,
            include_snapshot: false,
            missing_activity_wait: Duration::from_secs(10),
            retry_limit: None,
            crash_armed: None,
            instance_id: None,
        }
    }
}

/// How long a run with an end (`load`, `full`, `capacity`) retries by default before it
/// fails: longer than a restart of MongoDB or a broker, short enough to be an answer.
pub const RUN_RETRY_LIMIT: Duration = Duration::from_secs(60);

/// How often a failure that goes on is logged again.
const STILL_FAILING_EVERY: Duration = Duration::from_secs(60);

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

/// A consumer running on its own task.
pub struct Running {
    task: Option<JoinHandle<Result<Totals>>>,
    /// What it did, once it ended by itself without an error.
    ended: Option<Totals>,
    stop: CancellationToken,
    /// Tells when the group has given it partitions, and how many.
    pub assigned: Assigned,
    /// Partitions of the topic when it started.
    pub partitions: usize,
}

impl Running {
    /// It has held every partition of the topic since it started, with no rebalance: no other
    /// consumer of the group can have applied this run's events.
    pub fn alone(&self) -> bool {
        let h = self.assigned.holding();
        h.assignments <= 1 && h.partitions >= self.partitions.max(1)
    }
}

impl Running {
    /// Whether it has stopped (by itself: an error, or `stop`).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The error it stopped with by itself (a retry limit ran out), once it has; `None` while
    /// it runs or when it ended cleanly.
    pub async fn failure(&mut self) -> Option<anyhow::Error> {
        if !self.task.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        match self.task.take()?.await {
            Ok(Ok(totals)) => {
                self.ended = Some(totals);
                None
            }
            Ok(Err(e)) => Some(e),
            Err(e) => Some(anyhow::Error::new(e).context("consumer task")),
        }
    }

    /// Stops it (the batch in hand is finished and committed) and returns what it did.
    pub async fn finish(self) -> Result<Totals> {
        self.stop.cancel();
        self.join().await
    }

    /// Waits until it stops by itself or by the `stop` it was started with.
    pub async fn join(self) -> Result<Totals> {
        match self.task {
            Some(task) => task.await.context("consumer task")?,
            None => Ok(self.ended.unwrap_or_default()),
        }
    }
}

/// Connects to Kafka and MongoDB, subscribes to the outbox topic and consumes on a task until
/// `stop` is cancelled (or [`Running::finish`]), sending what it measures on `metrics`. It
/// reads only topics of `ours` (what setup recorded; see [`gate`]), and refuses to start when
/// a topic it is configured for is not one of them.
pub async fn start(
    settings: &Settings,
    ours: OwnTopics,
    opts: ConsumerOptions,
    metrics: MetricsSender,
    stop: &CancellationToken,
) -> Result<Running> {
    let (pipeline, assigned, partitions) = Pipeline::new(settings, ours, opts, metrics).await?;
    let stop = stop.child_token();
    let task = tokio::spawn(pipeline.run(stop.clone()));
    Ok(Running {
        task: Some(task),
        ended: None,
        stop,
        assigned,
        partitions,
    })
}

/// The consumer, ready to run.
struct Pipeline {
    consumer: StreamConsumer<Ctx>,
    membership: Membership,
    probe: LagProbe,
    /// What the last quiet check without partitions saw (see `unstall`).
    idle_waiting: Option<Waiting>,
    /// The last quiet check found messages waiting on partitions held, and none came since.
    stall_suspected: bool,
    /// Failed attempts of the current Kafka outage (`None`: Kafka answers).
    kafka_down: Option<u32>,
    /// The Event Router's topic pattern when the connector routes; `None` for raw change
    /// events.
    route_pattern: Option<RoutePattern>,
    /// The topics it may read (see [`gate`]).
    ours: std::sync::Arc<OwnTopics>,
    dlq: DeadLetters,
    store: ReadModels,
    registry: Registry,
    metrics: MetricsSender,
    opts: ConsumerOptions,
    /// What handled batches owe before their offsets are committed (see [`owed`]).
    owed: Owed,
    /// This consumer's assignments: the participant counts it knows hold only until its
    /// partitions move ([`ReadModels::known_since`]).
    assigned: Assigned,
}

/// One message of a batch, with its receive time (T3).
struct Received {
    msg: OwnedMessage,
    t3_us: i64,
}

impl Received {
    fn new(msg: OwnedMessage) -> Self {
        Received {
            msg,
            t3_us: now_us(),
        }
    }

    /// The message as the batch's decisions see it; `route_pattern` is the Event Router's
    /// topic pattern when the connector routes (`None`: raw change events).
    fn view<'a>(&'a self, route_pattern: Option<&RoutePattern>) -> Message<'a> {
        let route = match route_pattern {
            None => Route::Raw,
            Some(pattern) => Route::Routed {
                origin: Origin::of(self.msg.topic(), pattern),
                headers: RoutedHeaders::pick(headers::raw(self.msg.headers())),
            },
        };
        Message {
            key: self.msg.key(),
            payload: self.msg.payload(),
            partition: self.msg.partition(),
            offset: self.msg.offset(),
            timestamp_ms: self.msg.timestamp().to_millis(),
            t3_us: self.t3_us,
            route,
        }
    }
}

/// How long without a message before the consumer checks whether it is stuck.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// How often a consumer that lost Kafka looks whether it is back, and how long it waits for
/// the answer.
const KAFKA_RECHECK: Duration = Duration::from_secs(1);

impl Pipeline {
    async fn new(
        settings: &Settings,
        ours: OwnTopics,
        opts: ConsumerOptions,
        metrics: MetricsSender,
    ) -> Result<(Self, Assigned, usize)> {
        let partitions = crate::pipeline::kafka::require_topics(&settings.kafka).await?;
        ours.require(&settings.kafka)?;
        let store = ReadModels::connect(&settings.mongo).await?;
        // The consumer creates the database when it is not there (a replay rebuilding lost
        // read models): it is pipedemo's then, and setup may clear it later.
        store.mark_if_new().await?;
        let ours = std::sync::Arc::new(ours);
        let (membership, assigned) =
            Membership::new(&settings.kafka, ours.clone(), opts.instance_id.clone());
        let consumer = membership.subscribe()?;
        Ok((
            Pipeline {
                consumer,
                membership,
                probe: LagProbe::new(&settings.kafka, &settings.kafka.topics())?,
                idle_waiting: None,
                stall_suspected: false,
                kafka_down: None,
                dlq: DeadLetters::new(&settings.kafka)?,
                route_pattern: (settings.kafka.routing == Routing::EventRouter)
                    .then(|| settings.kafka.route_pattern()),
                ours,
                store,
                registry: Registry::standard(),
                metrics,
                opts,
                owed: Owed::default(),
                assigned: assigned.clone(),
            },
            assigned,
            partitions,
        ))
    }

    /// Takes the errors already queued behind `first`; returns the first message behind them,
    /// if one is, and the error that says most: the first that means an outage (a stopped
    /// broker queues a transport failure and "all brokers down" in either order), else `first`.
    fn skip_queued_errors(
        &self,
        first: rdkafka::error::KafkaError,
    ) -> (Option<OwnedMessage>, rdkafka::error::KafkaError) {
        let mut telling = first;
        loop {
            match self.consumer.recv().now_or_never() {
                Some(Err(e)) => {
                    if group::outage(&telling).is_none() && group::outage(&e).is_some() {
                        telling = e;
                    }
                }
                Some(Ok(m)) => return (Some(m.detach()), telling),
                None => return (None, telling),
            }
        }
    }

    /// Consumes until `stop` is cancelled, then finishes the batch in hand, commits and returns.
    async fn run(mut self, stop: CancellationToken) -> Result<Totals> {
        let mut totals = Totals::default();
        loop {
            // While Kafka is down, look every second whether it is back, so that the
            // dashboard's DEGRADED clears even when no message comes to say so.
            let quiet = if self.kafka_down.is_some() {
                KAFKA_RECHECK
            } else if self.stall_suspected {
                group::STALL_CONFIRM
            } else {
                STALL_AFTER
            };
            let due = self.owed.due();
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    if !self.settle(&stop).await? {
                        return Ok(totals);
                    }
                    continue;
                }
                m = self.consumer.recv() => m,
                _ = tokio::time::sleep(quiet) => {
                    // Whichever call took the fencing error, a fenced consumer stops here
                    // rather than making itself anew and fencing the member with its id.
                    self.fenced()?;
                    if self.kafka_down.is_some() {
                        self.recheck_kafka().await;
                    } else {
                        self.unstall().await?;
                    }
                    continue;
                }
            };
            let first = match first {
                Ok(m) => {
                    let m = m.detach();
                    self.idle_waiting = None;
                    self.stall_suspected = false;
                    self.kafka_back();
                    m
                }
                Err(e) => {
                    self.fenced()?;
                    // While a broker is down librdkafka queues an error for every failed
                    // connection attempt, faster than one per pause: read one per pause and
                    // a 20 s outage left a minute of stale errors to wade through after the
                    // broker was back (chaos run, kafka-stop: 58 s). Take them all now.
                    match self.skip_queued_errors(e) {
                        (Some(m), _) => {
                            self.kafka_back();
                            m
                        }
                        (None, e) => {
                            self.kafka_failing(&e);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
            };
            let mut batch = vec![Received::new(first)];
            while batch.len() < self.opts.max_batch {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(Received::new(m.detach())),
                    // The error that fences a static member comes once, often right behind
                    // messages: dropped here, it left the fenced consumer waiting for messages
                    // that never came (a test saw it run on for 90 s). The batch in hand is
                    // not committed: the member that took the id gets it again.
                    Some(Err(_)) => {
                        self.fenced()?;
                        break;
                    }
                    None => break,
                }
            }
            // A pattern subscription's foreign partition fetched before its pause took hold:
            // not pipedemo's to read, dead-letter or commit. (A raw subscription is one topic,
            // checked to be pipedemo's at start: nothing to look up per message.)
            if self.route_pattern.is_some() {
                batch.retain(|r| self.ours.admits(r.msg.topic()));
                if batch.is_empty() {
                    continue;
                }
            }
            let Some(acc) = self.process(&batch, &stop, &mut totals).await? else {
                // Stopped during an outage: the batch is not committed and will be redelivered.
                return Ok(totals);
            };
            fail::fail_point!("consumer-before-commit", |_| crash(
                "consumer-before-commit"
            ));
            let now = tokio::time::Instant::now();
            self.owed.add(
                acc.counted,
                acc.activity_counts,
                acc.records,
                next_offsets(&batch),
                now,
            );
            if self.owed.is_due(now) && !self.settle(&stop).await? {
                return Ok(totals);
            }
            self.stop_fetching_if_armed();
        }
        if !self.settle(&stop).await? {
            // Stopped during an outage: what is owed is not committed and will be redelivered.
            return Ok(totals);
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing consumed yet is the usual cause; every handled batch was committed.
            tracing::debug!(error = %e, "final commit");
        }
        Ok(totals)
    }

    /// A consumer error: an outage on the metrics channel when it means the brokers cannot
    /// be reached (the dashboard turns DEGRADED with it at once, as for MongoDB), a log line
    /// either way.
    fn kafka_failing(&mut self, e: &rdkafka::error::KafkaError) {
        let Some(reason) = group::outage(e) else {
            tracing::warn!(error = %e, "Kafka consumer error; retrying");
            return;
        };
        let attempt = self.kafka_down.map_or(1, |n| n + 1);
        if attempt == 1 {
            tracing::warn!(error = %e, "Kafka unreachable; retrying (offsets not committed)");
        }
        self.kafka_down = Some(attempt);
        let _ = self.metrics.send(MetricEvent::Outage { reason, attempt });
    }

    /// Kafka answered again: the outage is over (attempt 0 clears it on the dashboard).
    fn kafka_back(&mut self) {
        if self.kafka_down.take().is_some() {
            tracing::info!("Kafka is back; continuing");
            let _ = self.metrics.send(MetricEvent::Outage {
                reason: "Kafka is back".into(),
                attempt: 0,
            });
        }
    }

    /// While Kafka is down and nothing arrives: whether its brokers answer again.
    async fn recheck_kafka(&mut self) {
        if let Ok(Ok(_)) = tokio::time::timeout(KAFKA_RECHECK, self.probe.lag()).await {
            self.kafka_back();
        }
    }

    /// Another consumer joined the group with this one's instance id: the broker fenced this
    /// one for good. Said as what to change, not as librdkafka's code.
    fn fenced(&self) -> Result<()> {
        let fatal = self.consumer.client().fatal_error();
        match (fatal, self.membership.instance_id()) {
            (Some((rdkafka::types::RDKafkaErrorCode::FencedInstanceId, _)), Some(id)) => {
                Err(crate::exit::config(format!(
                    "the broker fenced this consumer of the group {}: another consumer joined \
                     with this consumer's instance id `{id}` and took its place. Each consumer \
                     of a group needs its own --instance-id (PIPEDEMO_INSTANCE_ID), stable \
                     across its restarts; if no other one runs, start this one again",
                    self.membership.group()
                )))
            }
            (Some((code, why)), _) => Err(crate::exit::service(format!(
                "the Kafka consumer failed for good ({code:?}): {}",
                crate::pipeline::diagnose::first_line(&why)
            ))),
            (None, _) => Ok(()),
        }
    }

    /// Makes the consumer stop, as librdkafka sometimes does after a broker outage (fetching
    /// paused, or partitions dropped while the group thinks them taken), so that the tests can
    /// see [`Self::unstall`] recover. Off unless the fail point is armed.
    fn stop_fetching_if_armed(&self) {
        #[cfg(feature = "failpoints")]
        if let Some(how) = fail::eval("consumer-stop-fetching", |arg| arg) {
            if how.as_deref() == Some("unassign") {
                let _ = self.consumer.unassign();
            } else if let Ok(a) = self.consumer.assignment() {
                let _ = self.consumer.pause(&a);
            }
        }
    }

    /// Called after [`STALL_AFTER`] without a message: makes the Kafka consumer anew when it
    /// has stopped receiving while messages wait (see [`group::stalled`]). Nothing is lost,
    /// because offsets are committed only after the writes.
    async fn unstall(&mut self) -> Result<()> {
        // Paused foreign partitions have messages waiting that are not the consumer's.
        let positions = group::positions(&self.consumer).map(|mut p| {
            p.retain(|(t, _, _)| self.ours.admits(t));
            p
        });
        let positions = positions.filter(|p| !p.is_empty());
        let holds = positions.is_some();
        let waiting = match self.probe.waiting(positions).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether messages wait");
                Waiting::default()
            }
        };
        match group::stalled(waiting, holds, self.idle_waiting, self.stall_suspected) {
            Stalled::No => {
                self.stall_suspected = false;
                self.idle_waiting = (!holds && waiting.messages > 0).then_some(waiting);
            }
            Stalled::LookAgain => {
                tracing::debug!(
                    waiting = waiting.messages,
                    "quiet with messages waiting; looking again"
                );
                self.stall_suspected = true;
            }
            Stalled::Reconnect => {
                self.stall_suspected = false;
                tracing::warn!(
                    waiting = waiting.messages,
                    assigned = holds,
                    "the Kafka consumer received nothing for {STALL_AFTER:?} although messages are waiting; reconnecting"
                );
                self.idle_waiting = None;
                let old = std::mem::replace(&mut self.consumer, self.membership.subscribe()?);
                // Closing a consumer that is stuck in its group can block for long (librdkafka
                // waits for the group): never on the runtime's only thread.
                tokio::task::spawn_blocking(move || drop(old));
            }
        }
        Ok(())
    }

    /// Marks a handled batch's offsets for commit. librdkafka commits what is stored every
    /// [`group::COMMIT_EVERY_MS`] (and at a rebalance and at the end), never anything not
    /// stored here, so nothing is committed before its MongoDB writes are acknowledged. One
    /// commit per batch instead would queue up at the group coordinator at a few hundred
    /// batches a second: the committed offsets then fall further and further behind, and the
    /// heartbeats wait behind the commits until the group drops the consumer.
    fn store_offsets(&self, next: HashMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in next {
            let _ = tpl.add_partition_offset(&t, p, Offset::Offset(o));
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // A partition revoked meanwhile: its new owner gets the batch again (idempotent).
            tracing::debug!(error = %e, "offsets not stored; the batch may be redelivered");
        }
    }

    /// Settles what the handled batches owe ([`owed`]): their statistics in one update, then
    /// their offsets stored for commit and their records published. False if `stop` came
    /// during an outage (nothing of it is committed: redelivered), an error when a retry
    /// limit ran out.
    async fn settle(&mut self, stop: &CancellationToken) -> Result<bool> {
        if self.owed.is_empty() {
            return Ok(true);
        }
        let owed = self.owed.take();
        let t_stats = std::time::Instant::now();
        // Exact under retries too: a write acknowledged just before the connection dropped
        // comes back "already applied" by this message and still counts, and a statistics
        // update that went through before its reply was lost adds nothing the second time
        // (the counted marks have moved).
        let recorded = self
            .mongo(stop, || {
                self.store
                    .record_statistics(&owed.counted, &owed.activity_counts)
            })
            .await?;
        if recorded.is_none() {
            return Ok(false);
        }
        tracing::debug!(
            events = owed.records.len(),
            stats_us = t_stats.elapsed().as_micros(),
            "settled"
        );
        self.store_offsets(owed.offsets);
        for r in owed.records {
            let _ = self.metrics.send(MetricEvent::Event(r));
        }
        Ok(true)
    }

    /// Handles a batch up to what it owes: plan, write, account, dead letters; the
    /// statistics, records and offsets are left to [`Self::settle`]. `None` if `stop` came
    /// during an outage, an error when a retry limit ran out.
    async fn process(
        &self,
        batch: &[Received],
        stop: &CancellationToken,
        totals: &mut Totals,
    ) -> Result<Option<batch::Account>> {
        let t_start = std::time::Instant::now();
        let plan = batch::plan(
            batch.iter().map(|r| r.view(self.route_pattern.as_ref())),
            &self.registry,
            self.opts.include_snapshot,
            now_us,
        );
        for s in &plan.skipped {
            let m = &batch[s.index].msg;
            totals.skipped += 1;
            tracing::debug!(partition = m.partition(), offset = m.offset(), reason = %s.reason, "skipped");
            let _ = self.metrics.send(MetricEvent::Skipped {
                partition: m.partition(),
                offset: m.offset(),
                reason: s.reason.clone(),
            });
        }
        let t_apply = std::time::Instant::now();
        let Some(results) = self.write(&plan.ops, stop).await? else {
            return Ok(None);
        };
        let apply_us = t_apply.elapsed().as_micros();
        fail::fail_point!("consumer-after-write", |_| crash("consumer-after-write"));
        if !plan.ops.is_empty()
            && self
                .opts
                .crash_armed
                .as_ref()
                .is_some_and(|a| a.load(std::sync::atomic::Ordering::Relaxed))
        {
            eprintln!("chaos: crashing between the MongoDB write and the offset commit (SIGUSR1)");
            std::process::abort();
        }
        let acc = batch::account(
            plan.pending,
            &plan.ops,
            &results,
            self.opts.missing_activity_wait,
        );
        totals.applied += acc.applied;
        totals.already_applied += acc.already_applied;
        tracing::debug!(
            messages = batch.len(),
            decode_us = (t_apply - t_start).as_micros(),
            apply_us,
            "batch"
        );
        for d in plan.dead.iter().chain(&acc.dead) {
            if !self.dead_letter(&batch[d.index].msg, d, stop).await? {
                return Ok(None);
            }
            totals.dead_lettered += 1;
        }
        Ok(Some(acc))
    }

    /// Performs the writes; joins that came before their activity are tried again for
    /// [`ConsumerOptions::missing_activity_wait`] (the activity may be in a later batch of
    /// another partition), then left as [`Outcome::ActivityMissing`].
    async fn write(
        &self,
        ops: &[WriteOp],
        stop: &CancellationToken,
    ) -> Result<Option<Vec<WriteResult>>> {
        self.store.known_since(self.assigned.holding().assignments);
        let Some(mut results) = self.mongo(stop, || self.store.apply(ops)).await? else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + self.opts.missing_activity_wait;
        let mut wait = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let missing: Vec<usize> = (0..ops.len())
                .filter(|&i| results[i].outcome == Outcome::ActivityMissing)
                .collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Some(results));
            }
            if !wait.wait(stop).await {
                return Ok(None);
            }
            let again: Vec<WriteOp> = missing.iter().map(|&i| ops[i].clone()).collect();
            let Some(again) = self.mongo(stop, || self.store.apply(&again)).await? else {
                return Ok(None);
            };
            for (i, r) in missing.into_iter().zip(again) {
                results[i] = r;
            }
        }
    }

    async fn dead_letter(
        &self,
        m: &OwnedMessage,
        d: &DeadLetter,
        stop: &CancellationToken,
    ) -> Result<bool> {
        let event_id = d.event_id.map(|id| id.to_string()).unwrap_or_default();
        tracing::error!(
            topic = %m.topic(), partition = m.partition(), offset = m.offset(),
            event_id = %event_id, reason = %d.reason,
            "message cannot be handled; sent to the dead-letter topic {}", self.dlq.topic()
        );
        let what = format!("the dead-letter topic {}", self.dlq.topic());
        let sent = self
            .until_done(stop, &what, || self.dlq.send(m, &d.reason))
            .await?;
        if sent.is_none() {
            return Ok(false);
        }
        let _ = self.metrics.send(MetricEvent::Error(ErrorRecord {
            partition: m.partition(),
            offset: m.offset(),
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            reason: d.reason.clone(),
            at_us: now_us(),
            tag: d.tag.clone(),
        }));
        Ok(true)
    }

    /// Runs a MongoDB call until it succeeds (see [`Self::until_done`]).
    async fn mongo<T, F, Fut>(&self, stop: &CancellationToken, f: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TransientError>>,
    {
        self.until_done(stop, "MongoDB", f).await
    }

    /// Runs `f` until it succeeds, backing off, with nothing committed meanwhile. Each failure
    /// is an outage on the metrics channel (the dashboard and health line turn DEGRADED with
    /// `what` and the error), logged at once and then once a minute. `Ok(None)` when `stop`
    /// came first; an error naming `what` when [`ConsumerOptions::retry_limit`] ran out.
    async fn until_done<T, E, F, Fut>(
        &self,
        stop: &CancellationToken,
        what: &str,
        mut f: F,
    ) -> Result<Option<T>>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        // At most a second between attempts: a service back from a restart is used within a
        // second of answering (5 s here made a 5 s MongoDB stop cost up to 10 s).
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let since = tokio::time::Instant::now();
        let mut logged: Option<tokio::time::Instant> = None;
        let mut attempt = 0u32;
        loop {
            let e = match f().await {
                Ok(v) => {
                    if attempt > 0 {
                        tracing::info!(attempts = attempt + 1, "{what} is back; continuing");
                    }
                    return Ok(Some(v));
                }
                Err(e) => e,
            };
            attempt += 1;
            let error = crate::pipeline::diagnose::first_line(&e.to_string()).to_owned();
            let _ = self.metrics.send(MetricEvent::Outage {
                reason: format!("{what}: {error}"),
                attempt,
            });
            let failing = since.elapsed();
            if let Some(limit) = self.opts.retry_limit.filter(|l| failing >= *l) {
                return Err(crate::exit::service(format!(
                    "{what} kept failing for {} s ({error}); nothing was committed, so the \
                     messages are delivered again once it works. Fix it and run again \
                     (`pipedemo consume` retries for ever)",
                    limit.as_secs()
                )));
            }
            if logged.is_none_or(|at| at.elapsed() >= STILL_FAILING_EVERY) {
                tracing::warn!(
                    error = %error,
                    attempt,
                    failing_secs = failing.as_secs(),
                    "{what} failing; retrying (offsets not committed)"
                );
                logged = Some(tokio::time::Instant::now());
            }
            if !backoff.wait(stop).await {
                return Ok(None);
            }
        }
    }
}

/// The next offset to commit per partition a batch reached.
fn next_offsets(batch: &[Received]) -> impl Iterator<Item = ((String, i32), i64)> + '_ {
    // Borrowed names per message; one owned name per partition of the batch.
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for r in batch {
        let e = next.entry((r.msg.topic(), r.msg.partition())).or_insert(0);
        *e = (*e).max(r.msg.offset() + 1);
    }
    next.into_iter().map(|((t, p), o)| ((t.to_owned(), p), o))
}

/// Ends the process at once, as SIGKILL would, from an armed fail point: nothing after this
/// point of the batch (statistics, dead letters, offset commit) happens.
#[cfg(feature = "failpoints")]
fn crash(point: &str) -> ! {
    eprintln!("fail point {point}: aborting the process");
    std::process::abort()
}
