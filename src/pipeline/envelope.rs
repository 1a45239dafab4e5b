//! Parsing Debezium change events for `event_outbox` into [`OutboxEvent`]s.
//!
//! Accepts the JSON converter's output with or without the `schema`/`payload` wrapper. The
//! outbox `payload` column (jsonb) arrives as a JSON string (Debezium's `io.debezium.data.Json`);
//! an object is accepted too. Every way a message can be wrong has its own [`EnvelopeError`], so
//! the dead-letter reason says exactly what to fix.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::pipeline::bounded;

/// One row of `event_outbox`, as captured.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    /// Primary key of the outbox row; the idempotency key everywhere downstream.
    pub event_id: Uuid,
    /// The aggregate the event belongs to (a user or an activity).
    pub aggregate_id: Uuid,
    /// `User` or `Activity`.
    pub aggregate_type: String,
    /// `UserCreated`, `ActivityCreated`, `ParticipantJoined`, …
    pub event_type: String,
    /// The event's data (always a JSON object).
    pub payload: Payload,
    /// T0: the row's `created_at`, microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// The row's `run_tag`, when it holds one of pipedemo's (anything else is no tag).
    pub run_tag: Option<crate::telemetry::tag::RunTag>,
}

impl OutboxEvent {
    /// The event a generated row becomes once captured with `created_at_us` (for tests and
    /// benchmarks that skip PostgreSQL and Debezium).
    pub fn from_new(e: crate::pipeline::outbox::NewEvent, created_at_us: i64) -> OutboxEvent {
        OutboxEvent {
            event_id: e.event_id,
            aggregate_id: e.aggregate_id,
            aggregate_type: e.event_type.aggregate_type().into(),
            event_type: e.event_type.as_str().into(),
            payload: Payload::of(&e.payload),
            created_at_us,
            run_tag: e
                .run_tag
                .as_deref()
                .and_then(crate::telemetry::tag::RunTag::parse),
        }
    }
}

/// An event's data: the text of one JSON object, checked once as it is decoded. Each handler
/// reads its own fields straight from the text: no tree of values is built in between (at
/// thousands of events a second that tree was a tenth of the consumer's CPU).
#[derive(Clone, Debug)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// The JSON text of the object.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The payload of a value known to be an object (a generated event's).
    pub fn of(v: &Value) -> Payload {
        Payload(serde_json::value::to_raw_value(v).expect("a JSON value serializes"))
    }

    /// The payload as a tree of values, for tests.
    #[cfg(test)]
    pub(crate) fn value(&self) -> Value {
        serde_json::from_str(self.json()).expect("a payload is checked JSON")
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

/// Debezium's operation code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `c`: an insert.
    Create,
    /// `r`: a row read by a snapshot.
    Read,
    /// `u`: an update.
    Update,
    /// `d`: a delete.
    Delete,
    /// `t`: a truncate.
    Truncate,
    /// `m`: a logical decoding message.
    Message,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "c" => Op::Create,
            "r" => Op::Read,
            "u" => Op::Update,
            "d" => Op::Delete,
            "t" => Op::Truncate,
            "m" => Op::Message,
            _ => return None,
        })
    }

    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Read => "r",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
            Op::Message => "m",
        }
    }
}

/// A decoded change event with its capture times.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// What happened to the row.
    pub op: Op,
    /// The row (`after`, or `before` for a delete).
    pub event: OutboxEvent,
    /// T1: when Debezium processed the change (`ts_us`/`ts_ms` of the envelope), µs.
    pub captured_us: i64,
    /// When the transaction committed in PostgreSQL (`source.ts_us`/`ts_ms`), µs.
    pub committed_us: Option<i64>,
}

/// What a Kafka message on the outbox topic turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// A change to an outbox row.
    Change(Box<Change>),
    /// A tombstone (null value) that Debezium sends after a delete.
    Tombstone,
    /// A change with no row to act on (truncate, logical message).
    NoRow(Op),
}

/// Why a message could not be decoded. The text is the dead-letter reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvelopeError {
    /// Bytes that are not UTF-8.
    #[error("message value is not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// Text that is not JSON.
    #[error("message value is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a Debezium change event.
    #[error("not a Debezium change event: {0}")]
    NotEnvelope(String),
    /// A row field is missing or null.
    #[error("outbox row has no `{0}`")]
    MissingField(&'static str),
    /// A row field has the wrong type or an unreadable value.
    #[error("outbox row field `{field}` is invalid: {reason}")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An Outbox Event Router message without a header pipedemo's connector puts there.
    #[error("message has no `{0}` header (pipedemo's connector settings for --routing event-router put it there, as `pipedemo setup` prints them)")]
    MissingHeader(&'static str),
    /// A header with an unreadable value.
    #[error("header `{header}` is invalid: {reason}")]
    BadHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A message on a topic of the router's pattern for an aggregate type pipedemo does not
    /// handle.
    #[error("topic {topic} carries aggregate type `{aggregate}`, which pipedemo does not handle (known: {known})")]
    UnknownAggregate {
        /// The topic.
        topic: String,
        /// The aggregate type its name gives.
        aggregate: String,
        /// The aggregate types pipedemo handles.
        known: String,
    },
    /// An event on the topic of an aggregate it does not belong to.
    #[error("event type `{event_type}` does not belong on the {aggregate} topic")]
    WrongAggregate {
        /// The event's type.
        event_type: String,
        /// The topic's aggregate type.
        aggregate: &'static str,
    },
    /// The message key names another event or aggregate than the value.
    #[error("message key {field} {key} disagrees with the row's {field} {row}")]
    KeyMismatch {
        /// The key field (`event_id`, or `aggregate_id` when keyed by aggregate).
        field: &'static str,
        /// Its value in the key.
        key: String,
        /// Its value in the row.
        row: Uuid,
    },
}

/// A change event, possibly in the schema wrapper (`schema`, `payload`). `R` is how its row
/// is read: a [`Row`] in the same pass, or its raw text when it is read on its own.
#[derive(Deserialize)]
struct Envelope<'a, R> {
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    op: Option<&'a str>,
    // A missing `after` is `None` without `default` (which would ask for `R: Default`).
    after: Option<R>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(default)]
    ts_us: Option<i64>,
}

#[derive(Deserialize)]
struct Source {
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(default)]
    ts_us: Option<i64>,
}

/// The row's fields as their JSON text: each is read on its own (a string borrowed where it
/// has no escapes), and only a field that is wrong becomes a value, for its error.
#[derive(Deserialize)]
struct Row<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    aggregate_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    aggregate_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    run_tag: Option<&'a RawValue>,
}

/// Decodes one message of the outbox topic. `key` is checked against the row when present.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Decoded, EnvelopeError> {
    let Some(value) = value else {
        return Ok(Decoded::Tombstone);
    };
    let text = std::str::from_utf8(value).map_err(|e| EnvelopeError::NotUtf8(e.valid_up_to()))?;
    // Nearly every message is a plain envelope, read in one pass; anything else (the schema
    // wrapper, a defect) is read again by the general path, which says what is wrong.
    let env = match serde_json::from_str::<Envelope<Row>>(text) {
        Ok(env) if env.op.is_some() => env,
        _ => match general(text)? {
            Some(env) => env,
            None => return Ok(Decoded::Tombstone),
        },
    };
    let op_text = env
        .op
        .ok_or_else(|| EnvelopeError::NotEnvelope("no `op` field".into()))?;
    let op = Op::parse(op_text).ok_or_else(|| {
        EnvelopeError::NotEnvelope(format!("unknown op `{}`", bounded::value(op_text)))
    })?;
    let row = match op {
        // The outbox is insert-only: a delete is a row's retention ending (`--outbox-delete`
        // deletes each row in its own transaction), with only its key in `before` under the
        // default replica identity. Nothing to apply, and nothing wrong.
        Op::Delete | Op::Truncate | Op::Message => return Ok(Decoded::NoRow(op)),
        _ => env.after,
    };
    let row = row.ok_or_else(|| {
        EnvelopeError::NotEnvelope(format!("op `{}` without a row", bounded::value(op_text)))
    })?;
    let event = parse_row(row)?;
    if let Some(key) = key {
        check_key(key, &event)?;
    }
    let captured_us = env
        .ts_us
        .or(env.ts_ms.map(|ms| ms.saturating_mul(1000)))
        .ok_or_else(|| EnvelopeError::NotEnvelope("no `ts_ms`".into()))?;
    let committed_us = env
        .source
        .and_then(|s| s.ts_us.or(s.ts_ms.map(|ms| ms.saturating_mul(1000))));
    Ok(Decoded::Change(Box::new(Change {
        op,
        event,
        captured_us,
        committed_us,
    })))
}

/// A message the one pass could not read: unwraps the schema wrapper (`None`: it wraps a
/// tombstone) and names the first thing wrong, in the order a reader would check.
fn general(text: &str) -> Result<Option<Envelope<'_, Row<'_>>>, EnvelopeError> {
    let mut env: Envelope<&RawValue> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            EnvelopeError::NotEnvelope(format!("top level is not an object ({e})"))
        } else {
            EnvelopeError::NotJson(e.to_string())
        }
    })?;
    // The converter's schemas.enable=true form: {"schema": {...}, "payload": {envelope}}.
    if env.op.is_none() && env.schema.is_some() {
        let inner = env
            .payload
            .ok_or_else(|| EnvelopeError::NotEnvelope("schema without payload".into()))?;
        if inner.get() == "null" {
            return Ok(None);
        }
        env = serde_json::from_str(inner.get())
            .map_err(|e| EnvelopeError::NotEnvelope(format!("payload is not an envelope ({e})")))?;
    }
    let after = match env.op.and_then(Op::parse) {
        // Rows of these are never read (see `decode`).
        None | Some(Op::Delete | Op::Truncate | Op::Message) => None,
        Some(_) => env
            .after
            .filter(|r| r.get() != "null")
            .map(|r| serde_json::from_str::<Row>(r.get()))
            .transpose()
            .map_err(|e| EnvelopeError::NotEnvelope(format!("row is not an object ({e})")))?,
    };
    Ok(Some(Envelope {
        schema: None,
        payload: None,
        op: env.op,
        after,
        source: env.source,
        ts_ms: env.ts_ms,
        ts_us: env.ts_us,
    }))
}

/// The largest event payload accepted. Outbox payloads are small records; one this large is a
/// mistake upstream, and goes to the dead-letter topic instead of into a read model.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// How far in the future a `created_at` may be before it is treated as bad data (clock skew
/// beyond this would make every latency figure wrong).
pub const MAX_FUTURE_US: i64 = 60_000_000;

/// Rejects an event whose `created_at` is more than [`MAX_FUTURE_US`] ahead of `now_us`.
pub fn check_created_at(event: &OutboxEvent, now_us: i64) -> Result<(), EnvelopeError> {
    let ahead = event.created_at_us.saturating_sub(now_us);
    if ahead > MAX_FUTURE_US {
        return Err(EnvelopeError::BadField {
            field: "created_at",
            reason: format!(
                "{:.0} s in the future (clock skew between PostgreSQL and this host?)",
                ahead as f64 / 1e6
            ),
        });
    }
    Ok(())
}

fn parse_row(row: Row) -> Result<OutboxEvent, EnvelopeError> {
    let payload = parse_payload(row.payload)?;
    Ok(OutboxEvent {
        event_id: uuid_field("event_id", row.event_id)?,
        aggregate_id: uuid_field("aggregate_id", row.aggregate_id)?,
        aggregate_type: string_field("aggregate_type", row.aggregate_type)?,
        event_type: string_field("event_type", row.event_type)?,
        payload,
        created_at_us: timestamp_field("created_at", row.created_at)?,
        run_tag: row
            .run_tag
            .and_then(text)
            .and_then(|t| crate::telemetry::tag::RunTag::parse(&t)),
    })
}

/// The event's payload as the outbox's `payload` column arrives: a JSON string (Debezium's
/// `io.debezium.data.Json`) or an object (expanded), no larger than [`MAX_PAYLOAD_BYTES`],
/// and an object once read.
pub(crate) fn parse_payload(raw: Option<&RawValue>) -> Result<Payload, EnvelopeError> {
    let raw = raw
        .filter(|r| r.get() != "null")
        .ok_or(EnvelopeError::MissingField("payload"))?;
    let payload = match text(raw) {
        Some(s) if s.len() > MAX_PAYLOAD_BYTES => {
            return Err(EnvelopeError::BadField {
                field: "payload",
                reason: format!(
                    "{} bytes, more than the {MAX_PAYLOAD_BYTES} accepted",
                    s.len()
                ),
            })
        }
        Some(s) => RawValue::from_string(s.into_owned()).map_err(|e| EnvelopeError::BadField {
            field: "payload",
            reason: format!("not JSON ({e})"),
        })?,
        None if raw.get().len() > MAX_PAYLOAD_BYTES => {
            return Err(EnvelopeError::BadField {
                field: "payload",
                reason: format!("more than the {MAX_PAYLOAD_BYTES} bytes accepted"),
            })
        }
        None => raw.to_owned(),
    };
    // Checked JSON without surrounding space: an object is what starts with a brace.
    if !payload.get().starts_with('{') {
        let kind = serde_json::from_str(payload.get()).map_or("not JSON", |v| json_kind(&v));
        return Err(EnvelopeError::BadField {
            field: "payload",
            reason: format!("expected a JSON object, got {kind}"),
        });
    }
    Ok(Payload(payload))
}

/// A JSON string's text (borrowed unless it has escapes); `None` for any other value.
fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str(raw.get()).ok()
}

/// A field's value, on the path that reports what is wrong with it.
fn value_of(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Debezium's key: the primary key, or the aggregate id when the connector keys by aggregate
/// (message.key.columns), possibly schema-wrapped.
#[derive(Deserialize)]
struct Key<'a> {
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    aggregate_id: Option<&'a RawValue>,
}

fn check_key(key: &[u8], row: &OutboxEvent) -> Result<(), EnvelopeError> {
    // A key we cannot read is not an error: the value is what we process.
    let Ok(mut k) = serde_json::from_slice::<Key>(key) else {
        return Ok(());
    };
    if let (Some(_), Some(inner)) = (k.schema, k.payload) {
        let Ok(inner) = serde_json::from_str::<Key>(inner.get()) else {
            return Ok(());
        };
        k = inner;
    }
    for (field, given, expected) in [
        ("event_id", k.event_id, row.event_id),
        ("aggregate_id", k.aggregate_id, row.aggregate_id),
    ] {
        if let Some(given) = given.and_then(text) {
            if Uuid::parse_str(&given).ok() != Some(expected) {
                return Err(EnvelopeError::KeyMismatch {
                    field,
                    key: bounded::value(&given).into_owned(),
                    row: expected,
                });
            }
        }
    }
    Ok(())
}

/// A JSON value's kind, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field that must be a non-empty string: its text, borrowed unless it has escapes.
fn nonempty_text<'a>(
    field: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Cow<'a, str>, EnvelopeError> {
    match raw.and_then(text) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(not_a_string(field, value_of(raw))),
    }
}

fn string_field(field: &'static str, raw: Option<&RawValue>) -> Result<String, EnvelopeError> {
    nonempty_text(field, raw).map(Cow::into_owned)
}

/// What is wrong with a field that is not a non-empty string.
fn not_a_string(field: &'static str, v: Option<Value>) -> EnvelopeError {
    match v {
        None | Some(Value::Null) => EnvelopeError::MissingField(field),
        Some(Value::String(_)) => EnvelopeError::BadField {
            field,
            reason: "empty string".into(),
        },
        Some(other) => EnvelopeError::BadField {
            field,
            reason: format!("expected a string, got {}", json_kind(&other)),
        },
    }
}

fn uuid_field(field: &'static str, raw: Option<&RawValue>) -> Result<Uuid, EnvelopeError> {
    let s = nonempty_text(field, raw)?;
    Uuid::parse_str(&s).map_err(|e| EnvelopeError::BadField {
        field,
        reason: format!("`{}` is not a UUID ({e})", bounded::value(&s)),
    })
}

/// Reads a timestamp as Debezium emits it: an ISO-8601 string for `timestamptz`
/// (`ZonedTimestamp`), or epoch micro- or milliseconds for other precision modes.
fn timestamp_field(field: &'static str, raw: Option<&RawValue>) -> Result<i64, EnvelopeError> {
    if let Some(s) = raw.and_then(text) {
        return chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| EnvelopeError::BadField {
                field,
                reason: format!(
                    "`{}` is not an ISO-8601 timestamp ({e})",
                    bounded::value(&s)
                ),
            });
    }
    match value_of(raw) {
        None | Some(Value::Null) => Err(EnvelopeError::MissingField(field)),
        Some(Value::Number(n)) => match n.as_i64() {
            // Epoch microseconds have 16 digits today, milliseconds 13.
            Some(x) if x.abs() >= 100_000_000_000_000 => Ok(x),
            Some(x) => Ok(x * 1000),
            None => Err(EnvelopeError::BadField {
                field,
                reason: format!("{n} is not an integer timestamp"),
            }),
        },
        Some(other) => Err(EnvelopeError::BadField {
            field,
            reason: format!("expected a timestamp, got {}", json_kind(&other)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Debezium 3.3.2 (pgoutput, JSON converter without schemas).
    const CAPTURED: &str = include_str!("../../tests/fixtures/debezium_insert.json");
    const CAPTURED_WITH_SCHEMA: &str =
        include_str!("../../tests/fixtures/debezium_insert_schema.json");

    fn change(d: Decoded) -> Change {
        match d {
            Decoded::Change(c) => *c,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_captured_insert() {
        let c = change(decode(None, Some(CAPTURED.as_bytes())).unwrap());
        assert_eq!(c.op, Op::Create);
        assert_eq!(c.event.event_type, "UserCreated");
        assert_eq!(c.event.aggregate_type, "User");
        assert!(c.event.payload.value().get("email").is_some());
        assert!(c.captured_us >= c.event.created_at_us);
        assert!(c.committed_us.unwrap() >= c.event.created_at_us - 1000);
    }

    #[test]
    fn schema_wrapper_gives_the_same_event() {
        let plain = change(decode(None, Some(CAPTURED.as_bytes())).unwrap());
        let wrapped = change(decode(None, Some(CAPTURED_WITH_SCHEMA.as_bytes())).unwrap());
        assert_eq!(plain.event.payload, wrapped.event.payload);
        assert_eq!(wrapped.op, Op::Create);
        assert!(wrapped.event.created_at_us > 0);
    }

    #[test]
    fn tombstones_and_truncates_carry_no_row() {
        assert_eq!(decode(None, None).unwrap(), Decoded::Tombstone);
        let t = r#"{"before":null,"after":null,"source":{"ts_ms":1},"op":"t","ts_ms":2}"#;
        assert_eq!(
            decode(None, Some(t.as_bytes())).unwrap(),
            Decoded::NoRow(Op::Truncate)
        );
    }

    fn row(fields: &str) -> String {
        format!(
            r#"{{"before":null,"after":{{{fields}}},"source":{{"ts_ms":1700000000000}},"op":"c","ts_ms":1700000000001}}"#
        )
    }

    const GOOD: &str = r#""event_id":"7f1c2a4e-0d7a-4b8e-9c39-3f2a1b0c9d8e","aggregate_id":"1f1c2a4e-0d7a-4b8e-9c39-3f2a1b0c9d8e","aggregate_type":"User","event_type":"UserCreated","payload":"{\"email\":\"a@b.c\"}","created_at":"2026-11-22T20:00:00.123456Z""#;

    #[test]
    fn decodes_payload_as_string_or_object() {
        let c = change(decode(None, Some(row(GOOD).as_bytes())).unwrap());
        assert_eq!(c.event.payload.value()["email"], "a@b.c");
        assert_eq!(c.event.created_at_us, 1_795_377_600_123_456);
        let obj = GOOD.replace(r#""{\"email\":\"a@b.c\"}""#, r#"{"email":"a@b.c"}"#);
        let c = change(decode(None, Some(row(&obj).as_bytes())).unwrap());
        assert_eq!(c.event.payload.value()["email"], "a@b.c");
    }

    #[test]
    fn the_one_pass_and_the_general_path_read_the_same_event() {
        let plain = row(GOOD);
        let fast = change(decode(None, Some(plain.as_bytes())).unwrap());
        // A key order and spacing serde reads the same way, but through the general path.
        let wrapped = format!(r#"{{"schema":{{"type":"struct"}},"payload":{plain}}}"#);
        let slow = change(decode(None, Some(wrapped.as_bytes())).unwrap());
        assert_eq!(fast, slow);
        assert_eq!(fast.event.payload.json(), r#"{"email":"a@b.c"}"#);
        // A payload string with escapes inside: unescaped once, then kept as checked JSON.
        let escaped = GOOD.replace(r#"a@b.c"#, r#"a\\u00e9@b.c"#);
        let c = change(decode(None, Some(row(&escaped).as_bytes())).unwrap());
        assert_eq!(c.event.payload.value()["email"], "a\u{e9}@b.c");
    }

    #[test]
    fn a_payload_string_that_is_not_json_says_so() {
        let v = row(&GOOD.replace(r#"{\"email\":\"a@b.c\"}"#, "{oops"));
        let err = decode(None, Some(v.as_bytes())).unwrap_err().to_string();
        assert!(err.contains("`payload` is invalid: not JSON"), "{err}");
        let v = row(&GOOD.replace(r#""{\"email\":\"a@b.c\"}""#, r#""  [1] ""#));
        let err = decode(None, Some(v.as_bytes())).unwrap_err().to_string();
        assert!(
            err.contains("expected a JSON object, got an array"),
            "{err}"
        );
    }

    #[test]
    fn every_defect_has_its_own_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\xff\xfe".to_vec(), "not UTF-8"),
            (b"hello".to_vec(), "not JSON"),
            (b"[1,2]".to_vec(), "not a Debezium change event"),
            (br#"{"a":1}"#.to_vec(), "no `op`"),
            (br#"{"op":"c","ts_ms":1}"#.to_vec(), "op `c` without a row"),
            (
                row(&GOOD.replace("UserCreated", "")).into_bytes(),
                "`event_type` is invalid",
            ),
            (
                row(&GOOD.replace("7f1c2a4e-0d7a", "zz")).into_bytes(),
                "is not a UUID",
            ),
            (
                row(&GOOD.replace(r#""{\"email\":\"a@b.c\"}""#, "[1]")).into_bytes(),
                "expected a JSON object",
            ),
            (
                row(&GOOD.replace(r#""{\"email\":\"a@b.c\"}""#, "null")).into_bytes(),
                "has no `payload`",
            ),
            (
                row(&GOOD.replace("2026-11-22T20:00:00.123456Z", "yesterday")).into_bytes(),
                "not an ISO-8601 timestamp",
            ),
        ];
        for (bytes, expected) in cases {
            let err = decode(None, Some(&bytes)).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn oversize_payloads_and_future_timestamps_are_rejected() {
        let big = format!(r#"{{\"bio\":\"{}\"}}"#, "x".repeat(MAX_PAYLOAD_BYTES));
        let v = row(&GOOD.replace(r#"{\"email\":\"a@b.c\"}"#, &big));
        let err = decode(None, Some(v.as_bytes())).unwrap_err().to_string();
        assert!(err.contains("more than the 262144 accepted"), "{err}");
        let c = change(decode(None, Some(row(GOOD).as_bytes())).unwrap());
        assert!(check_created_at(&c.event, c.event.created_at_us).is_ok());
        let err = check_created_at(&c.event, c.event.created_at_us - 3_600_000_000).unwrap_err();
        assert!(err.to_string().contains("3600 s in the future"), "{err}");
    }

    #[test]
    fn key_must_agree_with_row() {
        let v = row(GOOD);
        let good_key = br#"{"event_id":"7f1c2a4e-0d7a-4b8e-9c39-3f2a1b0c9d8e"}"#;
        assert!(decode(Some(good_key), Some(v.as_bytes())).is_ok());
        let bad_key = br#"{"event_id":"00000000-0d7a-4b8e-9c39-3f2a1b0c9d8e"}"#;
        let err = decode(Some(bad_key), Some(v.as_bytes())).unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::KeyMismatch {
                field: "event_id",
                ..
            }
        ));
        let by_aggregate = br#"{"aggregate_id":"1f1c2a4e-0d7a-4b8e-9c39-3f2a1b0c9d8e"}"#;
        assert!(decode(Some(by_aggregate), Some(v.as_bytes())).is_ok());
        let other_aggregate = br#"{"aggregate_id":"2f1c2a4e-0d7a-4b8e-9c39-3f2a1b0c9d8e"}"#;
        let err = decode(Some(other_aggregate), Some(v.as_bytes())).unwrap_err();
        assert!(err.to_string().contains("aggregate_id"), "{err}");
    }
}
