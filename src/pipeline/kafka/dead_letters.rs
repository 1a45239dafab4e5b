//! The dead-letter producer: messages that cannot be handled are kept, with their reason.
//!
//! A dead letter always fits what the broker takes, whatever the message held: the reason is
//! cut to [`ECHO_LIMIT`], copied headers are bounded one by one and together, and a message
//! whose copy would still be too large (or that the broker refuses as too large) is recorded
//! by reference instead: its topic, partition, offset, sizes and reason, from which the
//! original can be read on its own topic. [`letter`] decides the shape, apart from Kafka.

use anyhow::{anyhow, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::Message as _;

use super::client::{client_config, TIMEOUT};
use super::headers::{self, RawHeader};
use super::producer::{Producer, Record};
use crate::config::KafkaArgs;
use crate::pipeline::bounded::{self, ECHO_LIMIT};

/// The largest dead letter pipedemo sends as a copy, bytes: under the broker's default
/// `message.max.bytes` (1 MiB and a little), so a default dead-letter topic takes every copy;
/// a larger message goes as a reference.
pub const COPY_LIMIT: usize = 1_000_000;
/// The most bytes of one copied header value (longer ones are cut and named in
/// [`TRUNCATED`]).
const HEADER_VALUE_LIMIT: usize = ECHO_LIMIT;
/// The most bytes of all copied headers together (the rest are dropped and counted).
const HEADERS_BUDGET: usize = 16 * 1024;
/// The most bytes of a header's name kept.
const HEADER_NAME_LIMIT: usize = 256;

/// Why the message could not be handled.
pub const ERROR: &str = "pipedemo.error";
/// The message's own topic.
pub const ORIGINAL_TOPIC: &str = "pipedemo.original.topic";
/// Its partition.
pub const ORIGINAL_PARTITION: &str = "pipedemo.original.partition";
/// Its offset.
pub const ORIGINAL_OFFSET: &str = "pipedemo.original.offset";
/// `copy` or `reference`.
pub const FORM: &str = "pipedemo.dead_letter";
/// The copied headers that were cut or dropped, with their original sizes.
pub const TRUNCATED: &str = "pipedemo.truncated";
/// What an original header of one of pipedemo's own names is renamed to (this prefix and its
/// name), so that a message cannot pass its own reason off as pipedemo's.
const RENAMED: &str = "pipedemo.original.header.";

/// How a dead letter carries the original message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Key, value and (bounded) headers copied.
    Copy,
    /// Only where the original is and how big it was: it was too large to copy.
    Reference,
}

impl Form {
    /// The [`FORM`] header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Copy => "copy",
            Form::Reference => "reference",
        }
    }
}

/// What one dead letter holds, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Letter {
    /// Copy or reference.
    pub form: Form,
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// The record value.
    pub value: Option<Vec<u8>>,
    /// The headers, in order: the original's (bounded), then pipedemo's.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Letter {
    /// Bytes on the wire, near enough to compare with a size limit.
    pub fn size(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8)
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + h + 64
    }
}

/// Where the message came from.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The dead letter of a message: a copy when it fits `limit` bytes, else a reference.
/// `reason` is cut to [`ECHO_LIMIT`] either way.
pub fn letter<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    original: impl IntoIterator<Item = RawHeader<'a>>,
    source: Source<'_>,
    reason: &str,
    form: Form,
    limit: usize,
) -> Letter {
    let original: Vec<RawHeader<'a>> = original.into_iter().collect();
    if form == Form::Copy {
        let copy = Letter {
            form,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: copied_headers(&original)
                .into_iter()
                .chain(own_headers(source, reason, Form::Copy))
                .collect(),
        };
        if copy.size() <= limit {
            return copy;
        }
    }
    let header_bytes: usize = original
        .iter()
        .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
        .sum();
    let described = serde_json::json!({
        "reference": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "key_bytes": key.map_or(0, <[u8]>::len),
            "value_bytes": value.map_or(0, <[u8]>::len),
            "headers": original.len(),
            "header_bytes": header_bytes,
        },
        "why": "the message is too large to copy into the dead-letter topic; read it at its offset",
    });
    Letter {
        form: Form::Reference,
        key: key.filter(|k| k.len() <= ECHO_LIMIT).map(<[u8]>::to_vec),
        value: Some(described.to_string().into_bytes()),
        headers: own_headers(source, reason, Form::Reference).collect(),
    }
}

/// The original headers, each value at most [`HEADER_VALUE_LIMIT`] bytes and all together at
/// most [`HEADERS_BUDGET`]; what was cut or dropped is listed in a [`TRUNCATED`] header.
fn copied_headers(original: &[RawHeader<'_>]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut used = 0usize;
    let mut dropped = 0usize;
    for (name, value) in original {
        let mut name = bounded::bytes(name, HEADER_NAME_LIMIT);
        if is_own(&name) {
            name = format!("{RENAMED}{name}");
        }
        let mut value = value.map(<[u8]>::to_vec);
        if let Some(v) = value.as_mut().filter(|v| v.len() > HEADER_VALUE_LIMIT) {
            notes.push(format!(
                "{} cut from {} bytes",
                bounded::prefix(&name, 64),
                v.len()
            ));
            v.truncate(HEADER_VALUE_LIMIT);
        }
        let size = name.len() + value.as_ref().map_or(0, Vec::len);
        if used + size > HEADERS_BUDGET {
            dropped += 1;
            continue;
        }
        used += size;
        out.push((name, value));
    }
    if dropped > 0 {
        notes.push(format!(
            "{dropped} header(s) dropped beyond {HEADERS_BUDGET} bytes"
        ));
    }
    if !notes.is_empty() {
        // Bounded like a reason: many cut headers make many notes.
        let notes = bounded::echo(notes.join("; "));
        out.push((TRUNCATED.to_owned(), Some(notes.into_bytes())));
    }
    out
}

/// Whether a header name is one of those pipedemo sets on a dead letter.
fn is_own(name: &str) -> bool {
    [ERROR, FORM, TRUNCATED].contains(&name) || name.starts_with("pipedemo.original.")
}

fn own_headers(
    source: Source<'_>,
    reason: &str,
    form: Form,
) -> impl Iterator<Item = (String, Option<Vec<u8>>)> {
    [
        (ERROR, bounded::prefix(reason, ECHO_LIMIT).into_owned()),
        (ORIGINAL_TOPIC, source.topic.to_owned()),
        (ORIGINAL_PARTITION, source.partition.to_string()),
        (ORIGINAL_OFFSET, source.offset.to_string()),
        (FORM, form.as_str().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Some(v.into_bytes())))
}

/// Whether Kafka refused a record for its size (locally or at the broker): the same record
/// will never go through, its reference will.
fn too_large(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Sends messages that cannot be handled to the dead-letter topic, with the reason and the
/// original position in headers, and waits for Kafka to acknowledge each.
#[derive(Clone)]
pub struct DeadLetters {
    producer: Producer,
    topic: String,
}

impl DeadLetters {
    /// A producer for `args.dlq_topic()`.
    pub fn new(args: &KafkaArgs) -> Result<Self> {
        let producer = super::client::created(
            Producer::create(
                client_config(args)
                    .set("acks", "all")
                    .set("enable.idempotence", "true")
                    // A copy is at most COPY_LIMIT; the rest of the room is for the request's
                    // framing.
                    .set("message.max.bytes", (COPY_LIMIT + 48 * 1024).to_string()),
            ),
            "creating the dead-letter producer",
        )?;
        Ok(DeadLetters {
            producer,
            topic: args.dlq_topic(),
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends the dead letter of `m`; returns once Kafka has it, with the form it took. A copy
    /// that Kafka refuses for its size is sent again as a reference; any other refusal (the
    /// topic missing, not authorised, …) is an error, which the caller retries loudly.
    pub async fn send(&self, m: &OwnedMessage, reason: &str) -> Result<Form> {
        let source = Source {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
        };
        let make = |form| {
            letter(
                m.key(),
                m.payload(),
                headers::raw(m.headers()),
                source,
                reason,
                form,
                COPY_LIMIT,
            )
        };
        let first = make(Form::Copy);
        match self.produce(&first).await {
            Ok(()) => Ok(first.form),
            Err(e) if first.form == Form::Copy && too_large(&e) => {
                tracing::warn!(
                    topic = source.topic, partition = source.partition, offset = source.offset,
                    error = %e,
                    "the dead-letter topic refused the copy for its size; recording it by reference"
                );
                let reference = make(Form::Reference);
                self.produce(&reference)
                    .await
                    .map_err(|e| self.refused(e))?;
                Ok(Form::Reference)
            }
            Err(e) => Err(self.refused(e)),
        }
    }

    fn refused(&self, e: KafkaError) -> anyhow::Error {
        anyhow!(
            "dead-letter topic {} did not take the message: {e}",
            self.topic
        )
    }

    async fn produce(&self, l: &Letter) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(l.headers.len());
        for (k, v) in &l.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: v.as_deref(),
            });
        }
        let rec = Record {
            key: l.key.as_deref(),
            payload: l.value.as_deref(),
            headers: Some(headers),
        };
        self.producer.send(&self.topic, rec, TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Source<'static> = Source {
        topic: "pipedemo.outbox.event.User",
        partition: 2,
        offset: 41,
    };

    fn header<'a>(l: &'a Letter, name: &str) -> Option<&'a str> {
        l.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
    }

    #[test]
    fn a_small_message_is_copied_whole_with_its_reason_and_origin() {
        let h = [(&b"id"[..], Some(&b"abc"[..]))];
        let l = letter(Some(b"k"), Some(b"v"), h, AT, "bad", Form::Copy, COPY_LIMIT);
        assert_eq!(l.form, Form::Copy);
        assert_eq!(
            (l.key.as_deref(), l.value.as_deref()),
            (Some(&b"k"[..]), Some(&b"v"[..]))
        );
        assert_eq!(header(&l, "id"), Some("abc"));
        assert_eq!(header(&l, ERROR), Some("bad"));
        assert_eq!(
            header(&l, ORIGINAL_TOPIC),
            Some("pipedemo.outbox.event.User")
        );
        assert_eq!(header(&l, ORIGINAL_PARTITION), Some("2"));
        assert_eq!(header(&l, ORIGINAL_OFFSET), Some("41"));
        assert_eq!(header(&l, FORM), Some("copy"));
        assert_eq!(header(&l, TRUNCATED), None);
    }

    #[test]
    fn a_huge_header_and_reason_are_cut_and_the_letter_fits() {
        // The wedge: a 600 KB `id` header, echoed by the reason and copied: 1.2 MB.
        let big = vec![b'x'; 600_000];
        let reason = format!(
            "header `id` is invalid: `{}` is not a UUID",
            "x".repeat(600_000)
        );
        let h = [(&b"id"[..], Some(&big[..]))];
        let l = letter(
            Some(b"k"),
            Some(b"{}"),
            h,
            AT,
            &reason,
            Form::Copy,
            COPY_LIMIT,
        );
        assert_eq!(l.form, Form::Copy);
        assert!(l.size() < 4 * ECHO_LIMIT, "{}", l.size());
        assert_eq!(header(&l, "id").unwrap().len(), HEADER_VALUE_LIMIT);
        assert!(header(&l, TRUNCATED)
            .unwrap()
            .contains("id cut from 600000 bytes"));
        assert!(header(&l, ERROR).unwrap().ends_with("bytes in all)"));
    }

    #[test]
    fn many_headers_are_bounded_together() {
        let v = vec![b'v'; 1000];
        let names: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        let h: Vec<RawHeader<'_>> = names.iter().map(|n| (n.as_bytes(), Some(&v[..]))).collect();
        let l = letter(None, Some(b"{}"), h, AT, "r", Form::Copy, COPY_LIMIT);
        assert!(l.size() < HEADERS_BUDGET + 2 * ECHO_LIMIT, "{}", l.size());
        assert!(header(&l, TRUNCATED).unwrap().contains("header(s) dropped"));
    }

    #[test]
    fn a_message_too_large_to_copy_is_recorded_by_reference() {
        let key = vec![b'k'; 1_048_576];
        let l = letter(
            Some(&key),
            Some(b"{}"),
            [],
            AT,
            "bad key",
            Form::Copy,
            COPY_LIMIT,
        );
        assert_eq!(l.form, Form::Reference);
        assert_eq!(l.key, None, "a 1 MB key is not repeated");
        let v: serde_json::Value = serde_json::from_slice(l.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["reference"]["key_bytes"], 1_048_576);
        assert_eq!(v["reference"]["offset"], 41);
        assert_eq!(header(&l, FORM), Some("reference"));
        assert_eq!(header(&l, ERROR), Some("bad key"));
        assert!(l.size() < 2 * ECHO_LIMIT);
        // Asked for a reference (the broker refused the copy), a small message is one too.
        let r = letter(
            Some(b"k"),
            Some(b"v"),
            [],
            AT,
            "r",
            Form::Reference,
            COPY_LIMIT,
        );
        assert_eq!(
            (r.form, r.key.as_deref()),
            (Form::Reference, Some(&b"k"[..]))
        );
    }

    #[test]
    fn a_message_cannot_pass_its_own_reason_off_as_pipedemos() {
        let h = [
            (&b"pipedemo.error"[..], Some(&b"all fine"[..])),
            (&b"pipedemo.original.offset"[..], Some(&b"0"[..])),
            (&[0xffu8, b'n'][..], Some(&b"x"[..])),
        ];
        let l = letter(None, Some(b"{}"), h, AT, "real", Form::Copy, COPY_LIMIT);
        let named = |n: &str| l.headers.iter().filter(|(k, _)| k == n).count();
        assert_eq!(named(ERROR), 1);
        assert_eq!(header(&l, ERROR), Some("real"));
        assert_eq!(named(ORIGINAL_OFFSET), 1);
        assert_eq!(
            header(&l, "pipedemo.original.header.pipedemo.error"),
            Some("all fine")
        );
        assert_eq!(
            header(&l, "\u{fffd}n"),
            Some("x"),
            "a name of any bytes, shown lossily"
        );
    }
}
