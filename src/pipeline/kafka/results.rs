//! The results topic: every process of a run publishes what it measured there ([`Publisher`]:
//! a heartbeat each second, a phase's figures when they settle and every ten seconds while they
//! change), and the run's owner reads everyone's latest ([`Reader`]) to merge them.
//!
//! The topic is the run's own Kafka cluster's (no new service), made and recorded by `setup`,
//! compacted: an update is keyed by process and phase and replaces that key's last, so what
//! survives is each process's latest word. Publishing never stops the pipeline: a refusal is
//! logged once and the figures stay local.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{client_config, created};
use super::producer::{Producer, Record};
use crate::config::KafkaArgs;
use crate::telemetry::clock::now_us;
use crate::telemetry::results::{Heartbeat, Merged, Published, SharedBook, Update};

/// How often a process sends its heartbeat and looks for phases due ([`crate::telemetry::results::Book::due`]).
pub const EVERY: Duration = Duration::from_secs(1);

/// The largest update read back: a phase's figures are a few kilobytes; anything larger on the
/// topic is not an update of ours and is skipped (counted).
pub const MAX_UPDATE_BYTES: usize = 4 * 1024 * 1024;

/// Publishes a book's changed phases as they fall due, a heartbeat each [`EVERY`], and every
/// phase when finished.
pub struct Publisher {
    book: SharedBook,
    producer: Producer,
    topic: String,
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
    now: Arc<tokio::sync::Notify>,
    /// Bytes published so far (keys and values), for the cost figure.
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Publisher {
    /// Starts publishing `book` to `args.results_topic()`.
    pub fn start(args: &KafkaArgs, book: SharedBook) -> Result<Publisher> {
        let producer = created(
            Producer::create(
                client_config(args)
                    .set("acks", "all")
                    .set("linger.ms", "20")
                    // The histograms travel as base64 text: gzip takes back most of its quarter.
                    .set("compression.type", "gzip")
                    .set("message.timeout.ms", "10000"),
            ),
            "creating the results producer",
        )?;
        let topic = args.results_topic();
        let stop = CancellationToken::new();
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let now = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(publish_loop(
            producer.clone(),
            topic.clone(),
            book.clone(),
            stop.clone(),
            now.clone(),
            bytes.clone(),
        ));
        Ok(Publisher {
            book,
            producer,
            topic,
            task: Some(task),
            stop,
            now,
            bytes,
        })
    }

    /// Publishes what changed now rather than at the next second (a phase just ended).
    pub fn publish_now(&self) {
        self.now.notify_one();
    }

    /// Publishes what changed since it was last sent, then a last heartbeat that says this
    /// process ended, and waits (up to 10 s each) for Kafka to have them. Returns the final
    /// word of every phase the book holds, for the results file.
    pub async fn finish(mut self) -> Vec<Update> {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let (changed, bye, last) = {
            let mut b = lock(&self.book);
            let changed = b.flush();
            let bye = Heartbeat {
                alive: b.process().clone(),
                at_us: now_us(),
                last: true,
                pending: Vec::new(),
            };
            (changed, bye, b.last_word())
        };
        let mut warned = false;
        for u in &changed {
            send(&self.producer, &self.topic, u, &mut warned, &self.bytes).await;
        }
        heartbeat(&self.producer, &self.topic, &bye, &self.bytes).await;
        last
    }
}

fn lock(book: &SharedBook) -> std::sync::MutexGuard<'_, crate::telemetry::results::Book> {
    book.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn publish_loop(
    producer: Producer,
    topic: String,
    book: SharedBook,
    stop: CancellationToken,
    now: Arc<tokio::sync::Notify>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut warned = false;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let flush = tokio::select! {
            _ = tick.tick() => false,
            _ = now.notified() => true,
            _ = stop.cancelled() => return,
        };
        let (updates, alive) = {
            let mut b = lock(&book);
            let alive = Heartbeat {
                alive: b.process().clone(),
                at_us: now_us(),
                last: false,
                pending: b.pending(),
            };
            let updates = if flush { b.flush() } else { b.due(now_us()) };
            (updates, alive)
        };
        for u in &updates {
            send(&producer, &topic, u, &mut warned, &bytes).await;
        }
        heartbeat(&producer, &topic, &alive, &bytes).await;
    }
}

async fn send(
    producer: &Producer,
    topic: &str,
    u: &Update,
    warned: &mut bool,
    bytes: &std::sync::atomic::AtomicU64,
) {
    let Ok(value) = serde_json::to_vec(u) else {
        return;
    };
    match publish(producer, topic, &u.key(), &value, bytes).await {
        Ok(()) => {}
        Err(e) if !*warned => {
            *warned = true;
            tracing::warn!(
                topic, error = %e,
                "cannot publish this process's results; its figures stay in its own report \
                 and results file (`pipedemo merge` adds them up)"
            );
        }
        Err(_) => {}
    }
}

async fn heartbeat(
    producer: &Producer,
    topic: &str,
    h: &Heartbeat,
    bytes: &std::sync::atomic::AtomicU64,
) {
    if let Ok(value) = serde_json::to_vec(h) {
        let _ = publish(producer, topic, &h.key(), &value, bytes).await;
    }
}

/// Sends one keyed message and, once Kafka has it, counts its bytes.
async fn publish(
    producer: &Producer,
    topic: &str,
    key: &str,
    value: &[u8],
    bytes: &std::sync::atomic::AtomicU64,
) -> rdkafka::error::KafkaResult<()> {
    let record = Record {
        key: Some(key.as_bytes()),
        payload: Some(value),
        headers: None,
    };
    producer
        .send(topic, record, Duration::from_secs(10))
        .await?;
    bytes.fetch_add(
        (key.len() + value.len()) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    Ok(())
}

/// Reads every process's updates of one run into a [`Merged`], until stopped or dropped.
pub struct Reader {
    merged: Arc<Mutex<Merged>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for Reader {
    /// Its thread is the blocking pool's, which the runtime waits for at exit: a reader left
    /// running (its session ended by an error) would keep the process from exiting.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Reader {
    /// Starts reading `args.results_topic()` from its start, keeping `run`'s updates.
    pub fn start(args: &KafkaArgs, run: Arc<str>) -> Result<Reader> {
        let consumer: BaseConsumer = created(
            client_config(args)
                // librdkafka assigns partitions only to a consumer with a group id; this one
                // never joins the group nor commits, so the broker keeps nothing under it.
                .set("group.id", format!("{}.results-reader", args.group))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "false")
                .create(),
            "creating the results reader",
        )?;
        let topic = args.results_topic();
        let merged = Arc::new(Mutex::new(Merged::default()));
        let stop = CancellationToken::new();
        let (m, s) = (merged.clone(), stop.clone());
        let task = tokio::task::spawn_blocking(move || read_loop(consumer, &topic, &run, &m, &s));
        Ok(Reader {
            merged,
            stop,
            task: Some(task),
        })
    }

    /// The updates read so far.
    pub fn merged(&self) -> std::sync::MutexGuard<'_, Merged> {
        self.merged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops reading.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

fn read_loop(
    consumer: BaseConsumer,
    topic: &str,
    run: &str,
    merged: &Mutex<Merged>,
    stop: &CancellationToken,
) {
    let mut assigned = false;
    let mut warned = false;
    while !stop.is_cancelled() {
        if !assigned {
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => {
                    let parts: Vec<i32> = md
                        .topics()
                        .iter()
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect();
                    if parts.is_empty() {
                        if !warned {
                            warned = true;
                            tracing::warn!(
                                topic,
                                "the results topic is missing (run `pipedemo setup --keep` to make \
                                 it); figures cover this process only"
                            );
                        }
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    let mut tpl = TopicPartitionList::new();
                    for p in parts {
                        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
                    }
                    match consumer.assign(&tpl) {
                        Ok(()) => assigned = true,
                        Err(e) => tracing::debug!(error = %e, "cannot assign the results topic"),
                    }
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let message = m
                    .payload()
                    .filter(|p| p.len() <= MAX_UPDATE_BYTES)
                    .and_then(Published::parse);
                let mut merged = merged
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match message {
                    Some(Published::Update(u)) if &*u.run == run => merged.take(*u),
                    Some(Published::Update(u)) => merged.heard(u.process.id, u.at_us),
                    Some(Published::Heartbeat(h)) => merged.heartbeat(h, run),
                    None => merged.unreadable += 1,
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "reading the results topic"),
            None => {}
        }
    }
}
