//! An async Kafka producer whose delivery reports are served by a thread that sleeps between
//! them, for the dead letters and the results topic.
//!
//! rdkafka's `FutureProducer` serves them in 100 ms slices, and each slice ends in a busy wait:
//! librdkafka's wait returns a fraction of a millisecond before the slice's deadline, the
//! remaining time rounds down to a 0 ms poll, and the loop spins until the deadline. Measured
//! on a `load` at 1 event/s: the two producers' polling threads took 1.7 % of a core, more than
//! the rest of pipedemo together (1.2 %). Slices of [`SLICE`] make that spin ten times rarer; a
//! producer dropped lets its thread go at the end of the current slice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::oneshot;

/// How long the polling thread waits for delivery reports at a time: also how long a dropped
/// producer's thread (and its librdkafka client) may outlive it.
const SLICE: Duration = Duration::from_secs(1);

/// How often a send retries while librdkafka's queue is full.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(10);

/// Completes each message's [`oneshot`] with its delivery report.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<()>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let _ = tx.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// A message to send: borrowed parts, as `FutureRecord` has them.
pub struct Record<'a> {
    /// The message key.
    pub key: Option<&'a [u8]>,
    /// The message value.
    pub payload: Option<&'a [u8]>,
    /// The message headers.
    pub headers: Option<OwnedHeaders>,
}

struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A producer with one polling thread; clones share both.
#[derive(Clone)]
pub struct Producer {
    base: Arc<BaseProducer<Reports>>,
    _stop: Arc<Stop>,
}

impl Producer {
    /// Creates the producer and starts its polling thread.
    pub fn create(config: &ClientConfig) -> KafkaResult<Producer> {
        let base: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (base.clone(), stop.clone());
        std::thread::Builder::new()
            .name("pipedemo-producer".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    polled.poll(SLICE);
                }
            })
            .map_err(|_| KafkaError::ClientCreation("cannot start the producer's thread".into()))?;
        Ok(Producer {
            base,
            _stop: Arc::new(Stop(stop)),
        })
    }

    /// Sends `record` to `topic` and waits for Kafka's acknowledgement. While librdkafka's
    /// queue is full the send is retried for up to `queue_timeout`.
    pub async fn send(
        &self,
        topic: &str,
        record: Record<'_>,
        queue_timeout: Duration,
    ) -> KafkaResult<()> {
        let give_up = Instant::now() + queue_timeout;
        let mut headers = record.headers;
        loop {
            let (tx, rx) = oneshot::channel();
            let mut r: BaseRecord<'_, [u8], [u8], _> =
                BaseRecord::with_opaque_to(topic, Box::new(tx));
            if let Some(k) = record.key {
                r = r.key(k);
            }
            if let Some(p) = record.payload {
                r = r.payload(p);
            }
            if let Some(h) = headers.take() {
                r = r.headers(h);
            }
            match self.base.send(r) {
                Ok(()) => return rx.await.unwrap_or_else(|_| Err(KafkaError::Canceled)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < give_up =>
                {
                    headers = back.headers;
                    tokio::time::sleep(QUEUE_FULL_RETRY).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}
