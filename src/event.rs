//! The demo's event types: one name in code, so that a typo does not compile.
//!
//! On the wire (the outbox's `event_type` column, the metrics file, the reports) each type is
//! its name as text; [`EventType::parse`] is the one place that text becomes a type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of outbox event the demo generates and handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A user signed up: creates a `users` document.
    UserCreated,
    /// A user created an activity: creates an `activities` document.
    ActivityCreated,
    /// A user joined an activity: adds a participant to it.
    ParticipantJoined,
}

impl EventType {
    /// Every type, in the order reports list them.
    pub const ALL: [EventType; 3] = [
        EventType::UserCreated,
        EventType::ActivityCreated,
        EventType::ParticipantJoined,
    ];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "UserCreated",
            EventType::ActivityCreated => "ActivityCreated",
            EventType::ParticipantJoined => "ParticipantJoined",
        }
    }

    /// The type named `s`, if it is one of ours.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The aggregate type the outbox row carries for this event.
    pub const fn aggregate_type(self) -> &'static str {
        self.aggregate().as_str()
    }

    /// The aggregate this event belongs to: an activity's joins are the activity's events, so
    /// they share its key (and, routed by aggregate, its topic and partition).
    pub const fn aggregate(self) -> AggregateType {
        match self {
            EventType::UserCreated => AggregateType::User,
            EventType::ActivityCreated | EventType::ParticipantJoined => AggregateType::Activity,
        }
    }

    /// The known names, comma-separated, for error messages.
    pub fn known() -> String {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

/// The aggregates the demo's events belong to: the outbox's `aggregate_type` column, and the
/// topic each one's events travel on when Debezium's Outbox Event Router routes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AggregateType {
    /// A user (its `UserCreated`).
    User,
    /// An activity (its `ActivityCreated` and `ParticipantJoined`).
    Activity,
}

impl AggregateType {
    /// Every aggregate, in the order reports list them.
    pub const ALL: [AggregateType; 2] = [AggregateType::User, AggregateType::Activity];

    /// The name in the outbox's `aggregate_type` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            AggregateType::User => "User",
            AggregateType::Activity => "Activity",
        }
    }

    /// The aggregate named `s`, if it is one of ours.
    pub fn parse(s: &str) -> Option<AggregateType> {
        AggregateType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether an event of type `t` belongs to this aggregate.
    pub fn owns(self, t: EventType) -> bool {
        t.aggregate() == self
    }
}

impl fmt::Display for AggregateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_text_and_json() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{t}\""));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), t);
        }
        assert_eq!(EventType::parse("userCreated"), None);
        for a in AggregateType::ALL {
            assert_eq!(AggregateType::parse(a.as_str()), Some(a));
        }
        assert!(AggregateType::Activity.owns(EventType::ParticipantJoined));
        assert!(!AggregateType::User.owns(EventType::ActivityCreated));
        assert_eq!(
            EventType::known(),
            "ActivityCreated, ParticipantJoined, UserCreated"
        );
    }
}
