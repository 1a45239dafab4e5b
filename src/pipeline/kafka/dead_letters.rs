//! The dead-letter producer: messages that cannot be handled are kept, with their reason.

use anyhow::{anyhow, Context, Result};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::client::{client_config, TIMEOUT};
use crate::config::KafkaArgs;

/// Sends messages that cannot be handled to the dead-letter topic, with the reason and the
/// original position in headers, and waits for Kafka to acknowledge each.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    /// A producer for `args.dlq_topic()`.
    pub fn new(args: &KafkaArgs) -> Result<Self> {
        let producer = client_config(args)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", "10485760")
            .create()
            .context("creating the dead-letter producer")?;
        Ok(DeadLetters {
            producer,
            topic: args.dlq_topic(),
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one message, with its `original` headers and pipedemo's; returns once Kafka has it.
    pub async fn send(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        original: Option<&OwnedHeaders>,
        origin: (&str, i32, i64),
        reason: &str,
    ) -> Result<()> {
        let partition = origin.1.to_string();
        let offset = origin.2.to_string();
        // The original headers first (an Event Router message's event id, type and T0 are
        // there): the dead letter keeps everything the message carried.
        let mut headers = OwnedHeaders::new();
        for h in original.into_iter().flat_map(|o| o.iter()) {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
        let headers = headers
            .insert(Header {
                key: "pipedemo.error",
                value: Some(reason),
            })
            .insert(Header {
                key: "pipedemo.original.topic",
                value: Some(origin.0),
            })
            .insert(Header {
                key: "pipedemo.original.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "pipedemo.original.offset",
                value: Some(&offset),
            });
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        self.producer.send(rec, TIMEOUT).await.map_err(|(e, _)| {
            anyhow!(
                "dead-letter topic {} did not take the message: {e}",
                self.topic
            )
        })?;
        Ok(())
    }
}
