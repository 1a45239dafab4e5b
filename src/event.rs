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
        match self {
            EventType::UserCreated => "User",
            EventType::ActivityCreated | EventType::ParticipantJoined => "Activity",
        }
    }

    /// The known names, comma-separated, for error messages.
    pub fn known() -> String {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
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
        assert_eq!(
            EventType::known(),
            "ActivityCreated, ParticipantJoined, UserCreated"
        );
    }
}
