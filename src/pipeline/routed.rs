//! Decoding the messages of Debezium's Outbox Event Router (`--routing event-router`) into
//! [`OutboxEvent`]s: the payload is the value, the aggregate id the key, the aggregate type
//! the topic, the event id, type and T0 in headers, and T1 in a header pipedemo's connector
//! copies from the change event before the router drops it. Every way such a message can be
//! wrong has its own [`EnvelopeError`], so the dead-letter reason says what to fix.

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::config::RoutePattern;
use crate::event::{AggregateType, EventType};
use crate::pipeline::bounded;
use crate::pipeline::envelope::{parse_payload, Change, Decoded, EnvelopeError, Op, OutboxEvent};

/// The headers the Event Router's messages carry for pipedemo, beside the router's own `id`
/// (the event id).
pub mod headers {
    /// The outbox row's `event_type`.
    pub const EVENT_TYPE: &str = "event_type";
    /// The outbox row's `created_at` (T0).
    pub const CREATED_AT: &str = "created_at";
    /// When Debezium captured the change (T1, the change event's `ts_us`), copied to a header
    /// before the router drops the change event.
    pub const CAPTURED_US: &str = "pipedemo.captured_us";
    /// The event id, which the router always puts in this header.
    pub const ID: &str = "id";
    /// The outbox row's `run_tag` (optional: rows pipedemo did not generate have none).
    pub const RUN_TAG: &str = "run_tag";
}

/// The headers of one routed message that pipedemo reads (`None`: absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoutedHeaders<'a> {
    /// `id`: the event id.
    pub id: Option<&'a [u8]>,
    /// `event_type`.
    pub event_type: Option<&'a [u8]>,
    /// `created_at` (T0).
    pub created_at: Option<&'a [u8]>,
    /// `pipedemo.captured_us` (T1).
    pub captured_us: Option<&'a [u8]>,
    /// `run_tag`.
    pub run_tag: Option<&'a [u8]>,
}

impl<'a> RoutedHeaders<'a> {
    /// Picks pipedemo's headers out of a message's `(name, value)` headers (the last of a
    /// name wins, as Kafka's own `lastHeader`); names are bytes, as Kafka carries them.
    pub fn pick(all: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Self {
        let mut h = RoutedHeaders::default();
        for (name, value) in all {
            let slot = match name {
                n if n == headers::ID.as_bytes() => &mut h.id,
                n if n == headers::EVENT_TYPE.as_bytes() => &mut h.event_type,
                n if n == headers::CREATED_AT.as_bytes() => &mut h.created_at,
                n if n == headers::CAPTURED_US.as_bytes() => &mut h.captured_us,
                n if n == headers::RUN_TAG.as_bytes() => &mut h.run_tag,
                _ => continue,
            };
            *slot = value;
        }
        h
    }
}

/// Where a routed message came from: the aggregate its topic carries, or the topic itself
/// when it is not one pipedemo knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A topic of one of the demo's aggregates.
    Aggregate(AggregateType),
    /// A topic of the router's pattern for some other aggregate type.
    Unknown {
        /// The topic.
        topic: &'a str,
        /// Its aggregate type, as the pattern gives it.
        aggregate: &'a str,
    },
}

impl<'a> Origin<'a> {
    /// Where a message on `topic` came from, given the router's topic `pattern`.
    pub fn of(topic: &'a str, pattern: &RoutePattern) -> Origin<'a> {
        let aggregate = pattern.value_of(topic).unwrap_or(topic);
        match AggregateType::parse(aggregate) {
            Some(a) => Origin::Aggregate(a),
            None => Origin::Unknown { topic, aggregate },
        }
    }
}

/// Decodes one message of an aggregate topic.
pub fn decode(
    origin: Origin<'_>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    h: &RoutedHeaders<'_>,
) -> Result<Decoded, EnvelopeError> {
    let aggregate = match origin {
        Origin::Aggregate(a) => a,
        Origin::Unknown { topic, aggregate } => {
            return Err(EnvelopeError::UnknownAggregate {
                topic: topic.to_owned(),
                aggregate: aggregate.to_owned(),
                known: AggregateType::ALL.map(|a| a.as_str()).join(", "),
            })
        }
    };
    let Some(value) = value else {
        return Ok(Decoded::Tombstone);
    };
    let event_id = header_text(headers::ID, h.id)?;
    let event_id = Uuid::parse_str(event_id).map_err(|e| EnvelopeError::BadHeader {
        header: headers::ID,
        reason: format!("`{}` is not a UUID ({e})", bounded::value(event_id)),
    })?;
    let event_type = header_text(headers::EVENT_TYPE, h.event_type)?.to_owned();
    if let Some(t) = EventType::parse(&event_type) {
        // A known type on another aggregate's topic was routed by a wrong `aggregate_type`;
        // an unknown type is the handlers' to refuse, with the known ones listed.
        if !aggregate.owns(t) {
            return Err(EnvelopeError::WrongAggregate {
                event_type,
                aggregate: aggregate.as_str(),
            });
        }
    }
    let created_at = header_text(headers::CREATED_AT, h.created_at)?;
    let created_at_us = chrono::DateTime::parse_from_rfc3339(created_at)
        .map(|t| t.timestamp_micros())
        .map_err(|e| EnvelopeError::BadHeader {
            header: headers::CREATED_AT,
            reason: format!(
                "`{}` is not an ISO-8601 timestamp ({e})",
                bounded::value(created_at)
            ),
        })?;
    let captured = header_text(headers::CAPTURED_US, h.captured_us)?;
    let captured_us: i64 = captured.parse().map_err(|_| EnvelopeError::BadHeader {
        header: headers::CAPTURED_US,
        reason: format!(
            "`{}` is not microseconds since the epoch",
            bounded::value(captured)
        ),
    })?;
    let aggregate_id = aggregate_key(key)?;
    let text = std::str::from_utf8(value).map_err(|e| EnvelopeError::NotUtf8(e.valid_up_to()))?;
    let payload: &RawValue =
        serde_json::from_str(text).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let payload = parse_payload(Some(payload))?;
    Ok(Decoded::Change(Box::new(Change {
        op: Op::Create,
        event: OutboxEvent {
            event_id,
            aggregate_id,
            aggregate_type: aggregate.as_str().to_owned(),
            event_type,
            payload,
            created_at_us,
            // Bytes that are not a tag of ours are no tag: never a reason to refuse the event.
            run_tag: h
                .run_tag
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(unquote)
                .and_then(crate::telemetry::tag::RunTag::parse),
        },
        captured_us,
        // The router keeps the row only: the commit time is not carried.
        committed_us: None,
    })))
}

fn header_text<'a>(name: &'static str, v: Option<&'a [u8]>) -> Result<&'a str, EnvelopeError> {
    let v = v.ok_or(EnvelopeError::MissingHeader(name))?;
    let text = std::str::from_utf8(v).map_err(|e| EnvelopeError::BadHeader {
        header: name,
        reason: format!("not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
    })?;
    // Kafka Connect's header converter writes strings bare; a JSON-quoted one is accepted too.
    let text = unquote(text);
    if text.is_empty() {
        return Err(EnvelopeError::BadHeader {
            header: name,
            reason: "empty".into(),
        });
    }
    Ok(text)
}

/// `text` without the quotes of a JSON string, if it has them.
fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// The aggregate id, which the router makes the key: a JSON string with the JSON converter
/// (`"…"`), or the bare id with a string converter.
fn aggregate_key(key: Option<&[u8]>) -> Result<Uuid, EnvelopeError> {
    let key = key.ok_or(EnvelopeError::MissingField("key (the aggregate id)"))?;
    let text = unquote(std::str::from_utf8(key).unwrap_or_default());
    Uuid::parse_str(text).map_err(|e| EnvelopeError::BadField {
        field: "key (the aggregate id)",
        reason: format!("`{}` is not a UUID ({e})", bounded::value(text)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Debezium 3.3.2's Outbox Event Router with pipedemo's connector settings sent it
    // (topic pipedemo.outbox.event.User, JSON converter without schemas).
    const KEY: &[u8] = br#""55d90f5c-9c5b-4037-8fb4-1f653caa172b""#;
    const VALUE: &[u8] = br#""{\"email\": \"a@b.c\", \"username\": \"x\", \"last_name\": \"b\", \"first_name\": \"a\"}""#;

    fn headers() -> RoutedHeaders<'static> {
        RoutedHeaders::pick([
            (
                &b"__debezium.context.connectorName"[..],
                Some(&b"postgresql"[..]),
            ),
            (b"pipedemo.captured_us", Some(b"1796052558045280")),
            (b"id", Some(b"52d6f2e6-1a0b-4b79-b772-c3252ab2f5fd")),
            (b"event_type", Some(b"UserCreated")),
            (b"created_at", Some(b"2026-11-30T15:28:28.926225Z")),
        ])
    }

    fn user() -> Origin<'static> {
        Origin::Aggregate(AggregateType::User)
    }

    #[test]
    fn the_topic_names_the_aggregate() {
        let pattern = &RoutePattern::new("pipedemo.outbox.event.${routedByValue}");
        assert_eq!(
            Origin::of("pipedemo.outbox.event.User", pattern),
            Origin::Aggregate(AggregateType::User)
        );
        assert_eq!(
            Origin::of("pipedemo.outbox.event.Order", pattern),
            Origin::Unknown {
                topic: "pipedemo.outbox.event.Order",
                aggregate: "Order"
            }
        );
        assert_eq!(
            Origin::of(
                "events-Activity-v1",
                &RoutePattern::new("events-${routedByValue}-v1")
            ),
            Origin::Aggregate(AggregateType::Activity)
        );
    }

    #[test]
    fn a_routed_message_becomes_the_event_with_t0_and_t1() {
        let Decoded::Change(c) = decode(user(), Some(KEY), Some(VALUE), &headers()).unwrap() else {
            panic!("a change")
        };
        assert_eq!(c.op, Op::Create);
        assert_eq!(
            c.event.event_id.to_string(),
            "52d6f2e6-1a0b-4b79-b772-c3252ab2f5fd"
        );
        assert_eq!(
            c.event.aggregate_id.to_string(),
            "55d90f5c-9c5b-4037-8fb4-1f653caa172b"
        );
        assert_eq!(c.event.aggregate_type, "User");
        assert_eq!(c.event.event_type, "UserCreated");
        assert_eq!(c.event.payload.value()["email"], "a@b.c");
        assert_eq!(c.event.created_at_us, 1_796_052_508_926_225);
        assert_eq!(c.captured_us, 1_796_052_558_045_280);
        assert_eq!(c.committed_us, None, "not carried by the router");
        // An expanded payload (table.expand.json.payload=true) is the object itself.
        let expanded =
            br#"{"email": "a@b.c", "username": "x", "last_name": "b", "first_name": "a"}"#;
        assert!(matches!(
            decode(user(), Some(KEY), Some(expanded), &headers()),
            Ok(Decoded::Change(_))
        ));
    }

    #[test]
    fn each_way_a_routed_message_is_wrong_has_its_reason() {
        let err = |origin, key, value: &[u8], h: RoutedHeaders<'_>| {
            decode(origin, key, Some(value), &h)
                .unwrap_err()
                .to_string()
        };
        let e = err(user(), Some(KEY), br#""[1, 2]""#, headers());
        assert!(e.contains("expected a JSON object, got an array"), "{e}");
        let e = err(user(), Some(KEY), b"42", headers());
        assert!(e.contains("expected a JSON object, got a number"), "{e}");
        for missing in ["id", "event_type", "created_at", "pipedemo.captured_us"] {
            let mut h = headers();
            match missing {
                "id" => h.id = None,
                "event_type" => h.event_type = None,
                "created_at" => h.created_at = None,
                _ => h.captured_us = None,
            }
            let e = err(user(), Some(KEY), VALUE, h);
            assert!(e.contains(&format!("no `{missing}` header")), "{e}");
        }
        let unknown = Origin::Unknown {
            topic: "pipedemo.outbox.event.Order",
            aggregate: "Order",
        };
        let e = err(unknown, Some(KEY), VALUE, headers());
        assert!(
            e.contains("pipedemo.outbox.event.Order") && e.contains("`Order`"),
            "{e}"
        );
        let e = err(
            Origin::Aggregate(AggregateType::Activity),
            Some(KEY),
            VALUE,
            headers(),
        );
        assert!(
            e.contains("`UserCreated` does not belong on the Activity topic"),
            "{e}"
        );
        let e = err(user(), None, VALUE, headers());
        assert!(e.contains("no `key (the aggregate id)`"), "{e}");
        let mut h = headers();
        h.captured_us = Some(b"soon");
        let e = err(user(), Some(KEY), VALUE, h);
        assert!(e.contains("`pipedemo.captured_us` is invalid"), "{e}");
        // A tombstone is nothing to apply, not a dead letter.
        assert_eq!(
            decode(user(), Some(KEY), None, &headers()),
            Ok(Decoded::Tombstone)
        );
    }
}
