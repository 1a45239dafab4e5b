//! Turning outbox events into read-model writes, one handler per event type.
//!
//! Handlers are pure: they validate the payload and describe the write ([`WriteOp`]); the
//! [`crate::pipeline::store`] performs it. That keeps them testable without a server and keeps every write
//! idempotent in one place.

use std::borrow::Cow;
use std::collections::HashMap;

use mongodb::bson::{doc, rawdoc, DateTime, Document, RawBson, RawDocument, RawDocumentBuf};
use serde::Deserialize;

use crate::event::EventType;
use crate::pipeline::bounded;
use crate::pipeline::envelope::OutboxEvent;

/// The write an event asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Create a `users` document (`_id` = the user's aggregate id), built as the BSON the
    /// server takes: no tree of fields to hash, serialize and free per event.
    InsertUser(RawDocumentBuf),
    /// Create an `activities` document (`_id` = the activity's aggregate id), as BSON.
    InsertActivity(RawDocumentBuf),
    /// Add a participant to an activity.
    Join {
        /// The activity's `_id`.
        activity_id: String,
        /// The joining user.
        user_id: String,
        /// The `participants.list` entry, carrying `source_event_id`.
        entry: Document,
    },
}

impl WriteOp {
    /// The type of event that asks for this write.
    pub fn event_type(&self) -> EventType {
        match self {
            WriteOp::InsertUser(_) => EventType::UserCreated,
            WriteOp::InsertActivity(_) => EventType::ActivityCreated,
            WriteOp::Join { .. } => EventType::ParticipantJoined,
        }
    }

    /// The event id a write carries (`metadata.source_event_id`, or the entry's for a join):
    /// what makes the write idempotent.
    pub fn source_event_id(&self) -> &str {
        match self {
            WriteOp::InsertUser(d) | WriteOp::InsertActivity(d) => d
                .get_document("metadata")
                .and_then(|m| m.get_str("source_event_id"))
                .unwrap_or_default(),
            WriteOp::Join { entry, .. } => entry.get_str("source_event_id").unwrap_or_default(),
        }
    }

    /// The Kafka message that asks for this write (`source_partition`, `source_offset` beside
    /// `source_event_id`): the statistics count an event for the message that created its
    /// write, so a redelivery of that message counts it (its first delivery may have crashed
    /// before the statistics) and a copy of the event at another offset does not.
    pub fn source(&self) -> Option<Source> {
        match self {
            WriteOp::InsertUser(d) | WriteOp::InsertActivity(d) => {
                Source::of_raw(d.get_document("metadata").ok()?)
            }
            WriteOp::Join { entry, .. } => Source::of(entry),
        }
    }

    /// A short label for dashboards and logs: the username, the activity's title, or the
    /// joining user, at most 40 characters.
    pub fn label(&self) -> String {
        let s = match self {
            WriteOp::InsertUser(d) => d.get_str("username").unwrap_or_default(),
            WriteOp::InsertActivity(d) => d.get_str("title").unwrap_or_default(),
            WriteOp::Join { user_id, .. } => user_id,
        };
        s.chars().take(40).collect()
    }

    /// The document key this write touches; writes to one key must keep their order.
    pub fn key(&self) -> &str {
        match self {
            WriteOp::InsertUser(d) | WriteOp::InsertActivity(d) => d.get_str("_id").unwrap_or(""),
            WriteOp::Join { activity_id, .. } => activity_id,
        }
    }
}

/// A Kafka message's place: the write it created carries it, so that the statistics can tell
/// the message that created a write from a copy of the same event elsewhere in the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Source {
    /// The place recorded in a document's `metadata` or a participant entry, if any.
    pub fn of(d: &Document) -> Option<Source> {
        Some(Source {
            partition: d.get_i32("source_partition").ok()?,
            offset: d.get_i64("source_offset").ok()?,
        })
    }

    /// [`Source::of`] for a document kept as BSON.
    pub fn of_raw(d: &RawDocument) -> Option<Source> {
        Some(Source {
            partition: d.get_i32("source_partition").ok()?,
            offset: d.get_i64("source_offset").ok()?,
        })
    }
}

/// Why an event could not be turned into a write. The text is the dead-letter reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandlerError {
    /// No handler for this event type.
    #[error("unknown event_type `{0}` (known: {1})")]
    UnknownEventType(String, String),
    /// The payload lacks a field or has one of the wrong type.
    #[error("{event_type} payload is invalid: {reason}")]
    InvalidPayload {
        /// The event type being handled.
        event_type: String,
        /// What is wrong.
        reason: String,
    },
}

/// Handles one event type.
pub trait Handler: Send + Sync {
    /// The `event_type` this handler accepts.
    fn event_type(&self) -> EventType;
    /// Validates the event and describes its write, which records the message `at` that asks
    /// for it.
    fn handle(&self, event: &OutboxEvent, at: Source) -> Result<WriteOp, HandlerError>;
}

/// Dispatches events to handlers by `event_type`.
pub struct Registry {
    handlers: HashMap<EventType, Box<dyn Handler>>,
}

impl Registry {
    /// A registry with the given handlers.
    pub fn new(handlers: Vec<Box<dyn Handler>>) -> Self {
        Registry {
            handlers: handlers.into_iter().map(|h| (h.event_type(), h)).collect(),
        }
    }

    /// The demo's three handlers.
    pub fn standard() -> Self {
        Registry::new(vec![
            Box::new(UserCreated),
            Box::new(ActivityCreated),
            Box::new(ParticipantJoined),
        ])
    }

    /// Runs the handler for the event's type; `at` is the Kafka message it came in.
    pub fn handle(&self, event: &OutboxEvent, at: Source) -> Result<WriteOp, HandlerError> {
        match EventType::parse(&event.event_type).and_then(|t| self.handlers.get(&t)) {
            Some(h) => h.handle(event, at),
            None => Err(HandlerError::UnknownEventType(
                event.event_type.clone(),
                self.known(),
            )),
        }
    }

    /// The handled types' names, sorted, for error messages.
    fn known(&self) -> String {
        let mut names: Vec<&str> = self.handlers.keys().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

/// The event's payload read straight from its text into the handler's own shape.
fn parse<'a, T: Deserialize<'a>>(event: &'a OutboxEvent) -> Result<T, HandlerError> {
    serde_json::from_str(event.payload.json()).map_err(|e| HandlerError::InvalidPayload {
        event_type: event.event_type.clone(),
        reason: e.to_string(),
    })
}

fn invalid(event: &OutboxEvent, reason: impl Into<String>) -> HandlerError {
    HandlerError::InvalidPayload {
        event_type: event.event_type.clone(),
        reason: reason.into(),
    }
}

fn required<'a>(event: &OutboxEvent, field: &str, v: &'a str) -> Result<&'a str, HandlerError> {
    if v.trim().is_empty() {
        Err(invalid(event, format!("`{field}` is empty")))
    } else {
        Ok(v)
    }
}

fn uuid_text(event: &OutboxEvent, field: &str, v: &str) -> Result<String, HandlerError> {
    uuid::Uuid::parse_str(v)
        .map(|u| u.to_string())
        .map_err(|_| {
            invalid(
                event,
                format!("`{field}` is not a UUID: `{}`", bounded::value(v)),
            )
        })
}

fn metadata(event: &OutboxEvent, at: Source) -> RawDocumentBuf {
    let created = DateTime::from_millis(event.created_at_us.div_euclid(1000));
    rawdoc! {
        "created_at": created,
        "updated_at": created,
        "source_event_id": event.event_id.to_string(),
        "source_partition": at.partition,
        "source_offset": at.offset,
    }
}

/// An optional text field: `null` when absent, as the documents have always had it.
fn optional(v: Option<&str>) -> RawBson {
    v.map_or(RawBson::Null, RawBson::from)
}

/// `UserCreated` → a `users` document.
pub struct UserCreated;

#[derive(Deserialize)]
struct UserPayload<'a> {
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow)]
    first_name: Cow<'a, str>,
    #[serde(borrow)]
    last_name: Cow<'a, str>,
    #[serde(borrow, default)]
    bio: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    avatar_url: Option<Cow<'a, str>>,
}

impl Handler for UserCreated {
    fn event_type(&self) -> EventType {
        EventType::UserCreated
    }

    fn handle(&self, event: &OutboxEvent, at: Source) -> Result<WriteOp, HandlerError> {
        let p: UserPayload = parse(event)?;
        let email = required(event, "email", &p.email)?;
        if !email.contains('@') {
            return Err(invalid(
                event,
                format!("`email` is not an address: `{}`", bounded::value(email)),
            ));
        }
        let id = event.aggregate_id.to_string();
        Ok(WriteOp::InsertUser(rawdoc! {
            "_id": id.as_str(),
            "email": email,
            "username": required(event, "username", &p.username)?,
            "name": format!("{} {}", p.first_name, p.last_name),
            "first_name": &*p.first_name,
            "last_name": &*p.last_name,
            "profile": { "bio": optional(p.bio.as_deref()), "avatar_url": optional(p.avatar_url.as_deref()) },
            "metadata": metadata(event, at),
            "allowed_users": [id.as_str()],
        }))
    }
}

/// `ActivityCreated` → an `activities` document with an empty participant list.
pub struct ActivityCreated;

#[derive(Deserialize)]
struct ActivityPayload<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow)]
    creator_user_id: Cow<'a, str>,
    max_participants: u32,
    #[serde(borrow, default)]
    location_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    location_address: Option<Cow<'a, str>>,
    #[serde(borrow)]
    start_date: Cow<'a, str>,
    #[serde(borrow, default)]
    timezone: Option<Cow<'a, str>>,
}

fn parse_start(event: &OutboxEvent, s: &str) -> Result<DateTime, HandlerError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_millis())
        })
        .map_err(|_| {
            invalid(
                event,
                format!("`start_date` is not ISO-8601: `{}`", bounded::value(s)),
            )
        })?;
    Ok(DateTime::from_millis(parsed))
}

impl Handler for ActivityCreated {
    fn event_type(&self) -> EventType {
        EventType::ActivityCreated
    }

    fn handle(&self, event: &OutboxEvent, at: Source) -> Result<WriteOp, HandlerError> {
        let p: ActivityPayload = parse(event)?;
        let creator = uuid_text(event, "creator_user_id", &p.creator_user_id)?;
        if p.max_participants == 0 {
            return Err(invalid(event, "`max_participants` must be at least 1"));
        }
        Ok(WriteOp::InsertActivity(rawdoc! {
            "_id": event.aggregate_id.to_string(),
            "title": required(event, "title", &p.title)?,
            "description": optional(p.description.as_deref()),
            "creator_id": creator.as_str(),
            "max_participants": p.max_participants as i64,
            "location": { "name": optional(p.location_name.as_deref()), "address": optional(p.location_address.as_deref()) },
            "start_date": parse_start(event, &p.start_date)?,
            "timezone": p.timezone.as_deref().unwrap_or("UTC"),
            "participants": { "count": 0_i64, "list": [] },
            "metadata": metadata(event, at),
            "allowed_users": [creator.as_str()],
        }))
    }
}

/// `ParticipantJoined` → a participant entry on the activity (`aggregate_id`).
pub struct ParticipantJoined;

#[derive(Deserialize)]
struct JoinPayload<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
}

impl Handler for ParticipantJoined {
    fn event_type(&self) -> EventType {
        EventType::ParticipantJoined
    }

    fn handle(&self, event: &OutboxEvent, at: Source) -> Result<WriteOp, HandlerError> {
        let p: JoinPayload = parse(event)?;
        let user_id = uuid_text(event, "user_id", &p.user_id)?;
        Ok(WriteOp::Join {
            activity_id: event.aggregate_id.to_string(),
            entry: doc! {
                "user_id": &user_id,
                "joined_at": DateTime::from_millis(event.created_at_us.div_euclid(1000)),
                "source_event_id": event.event_id.to_string(),
                "source_partition": at.partition,
                "source_offset": at.offset,
            },
            user_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    const AT: Source = Source {
        partition: 2,
        offset: 41,
    };

    fn event(event_type: &str, payload: serde_json::Value) -> OutboxEvent {
        OutboxEvent {
            event_id: Uuid::new_v4(),
            aggregate_id: Uuid::new_v4(),
            aggregate_type: "X".into(),
            event_type: event_type.into(),
            payload: crate::pipeline::envelope::Payload::of(&payload),
            created_at_us: 1_795_377_600_123_456,
            run_tag: None,
        }
    }

    #[test]
    fn user_document_has_profile_metadata_and_self_access() {
        let e = event(
            "UserCreated",
            json!({"email":"ada@example.com","username":"ada","first_name":"Ada","last_name":"Lovelace","bio":"hi"}),
        );
        let WriteOp::InsertUser(d) = Registry::standard().handle(&e, AT).unwrap() else {
            panic!("not a user insert")
        };
        let id = e.aggregate_id.to_string();
        assert_eq!(d.get_str("_id").unwrap(), id);
        assert_eq!(d.get_str("name").unwrap(), "Ada Lovelace");
        assert_eq!(
            d.get_document("profile").unwrap().get_str("bio").unwrap(),
            "hi"
        );
        let meta = d.get_document("metadata").unwrap();
        assert_eq!(
            meta.get_str("source_event_id").unwrap(),
            e.event_id.to_string()
        );
        assert_eq!(
            meta.get_datetime("created_at").unwrap().timestamp_millis(),
            1_795_377_600_123
        );
        assert_eq!(Source::of_raw(meta), Some(AT), "the message is recorded");
        let allowed: Vec<_> = d.get_array("allowed_users").unwrap().into_iter().collect();
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].as_ref().unwrap().as_str(), Some(id.as_str()));
    }

    #[test]
    fn activity_starts_with_no_participants_and_creator_access() {
        let creator = Uuid::new_v4().to_string();
        let e = event(
            "ActivityCreated",
            json!({"title":"Hike","description":"d","creator_user_id":creator,"max_participants":12,
                   "location_name":"Oslo","location_address":"1 Main St","start_date":"2027-01-02T10:00:00Z","timezone":"UTC"}),
        );
        let WriteOp::InsertActivity(d) = Registry::standard().handle(&e, AT).unwrap() else {
            panic!("not an activity insert")
        };
        assert_eq!(d.get_str("creator_id").unwrap(), creator);
        assert_eq!(d.get_i64("max_participants").unwrap(), 12);
        let p = d.get_document("participants").unwrap();
        assert_eq!(p.get_i64("count").unwrap(), 0);
        assert!(p.get_array("list").unwrap().is_empty());
        assert_eq!(
            d.get_document("location").unwrap().get_str("name").unwrap(),
            "Oslo"
        );
        assert_eq!(
            d.get_array("allowed_users")
                .unwrap()
                .into_iter()
                .next()
                .unwrap()
                .unwrap()
                .as_str(),
            Some(creator.as_str())
        );
        assert_eq!(WriteOp::InsertActivity(d).source(), Some(AT));
    }

    #[test]
    fn join_targets_the_activity_and_carries_the_event_id() {
        let user = Uuid::new_v4().to_string();
        let e = event("ParticipantJoined", json!({ "user_id": user }));
        let op = Registry::standard().handle(&e, AT).unwrap();
        assert_eq!(op.key(), e.aggregate_id.to_string());
        assert_eq!(op.source(), Some(AT));
        assert_eq!(op.source_event_id(), e.event_id.to_string());
        let WriteOp::Join { entry, user_id, .. } = op else {
            panic!("not a join")
        };
        assert_eq!(user_id, user);
        assert_eq!(
            entry.get_str("source_event_id").unwrap(),
            e.event_id.to_string()
        );
    }

    #[test]
    fn escaped_text_is_read_as_written() {
        // Strings with escapes cannot be borrowed from the payload's text: they are copied.
        let e = event(
            "UserCreated",
            json!({"email":"o'hara@example.com","username":"\"zoë\"","first_name":"Zoë\n","last_name":"O'Hara"}),
        );
        assert!(e.payload.json().contains(r#"\"zoë\""#));
        let op = Registry::standard().handle(&e, AT).unwrap();
        assert_eq!(op.label(), "\"zoë\"");
        let WriteOp::InsertUser(d) = op else {
            panic!("not a user insert")
        };
        assert_eq!(d.get_str("username").unwrap(), "\"zoë\"");
        assert_eq!(d.get_str("name").unwrap(), "Zoë\n O'Hara");
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        let r = Registry::standard();
        let cases = [
            (event("Nope", json!({})), "unknown event_type `Nope`"),
            (
                event("UserCreated", json!({"username":"x"})),
                "missing field `email`",
            ),
            (
                event(
                    "UserCreated",
                    json!({"email":"nope","username":"x","first_name":"a","last_name":"b"}),
                ),
                "not an address",
            ),
            (
                event(
                    "ActivityCreated",
                    json!({"title":"t","creator_user_id":"zz","max_participants":3,"start_date":"2027-01-01T00:00:00Z"}),
                ),
                "`creator_user_id` is not a UUID",
            ),
            (
                event(
                    "ActivityCreated",
                    json!({"title":"t","creator_user_id":Uuid::new_v4().to_string(),"max_participants":"three","start_date":"2027-01-01T00:00:00Z"}),
                ),
                "invalid type: string \"three\", expected u32",
            ),
            (
                event("ParticipantJoined", json!({"user_id": 5})),
                "invalid type: integer `5`",
            ),
        ];
        for (e, expected) in cases {
            let err = r.handle(&e, AT).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }
}
