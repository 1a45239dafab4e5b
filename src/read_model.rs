//! The read models' names: the MongoDB collections the consumer writes and `verify`, the
//! checksum and the dashboard read. One enum, so that a typo in a collection name does not
//! compile.

use std::fmt;

use serde::Serialize;

/// A read-model collection. Ordered by name, as maps of them print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Collection {
    /// One document per activity, with its participants.
    Activities,
    /// The global totals per event type.
    Statistics,
    /// One document per user.
    Users,
}

impl Collection {
    /// Every read-model collection, in the order they are shown.
    pub const ALL: [Collection; 3] = [
        Collection::Users,
        Collection::Activities,
        Collection::Statistics,
    ];

    /// The collection's name in MongoDB.
    pub const fn name(self) -> &'static str {
        match self {
            Collection::Users => "users",
            Collection::Activities => "activities",
            Collection::Statistics => "statistics",
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The collection holding the document that marks a read-model database as pipedemo's.
pub const OWNER_COLLECTION: &str = "_pipedemo";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_in_mongodb_and_in_json() {
        let names: Vec<&str> = Collection::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["users", "activities", "statistics"]);
        assert_eq!(
            serde_json::to_string(&Collection::Activities).unwrap(),
            "\"activities\""
        );
        assert_eq!(Collection::Users.to_string(), "users");
        let mut sorted = Collection::ALL;
        sorted.sort();
        assert_eq!(
            sorted,
            [
                Collection::Activities,
                Collection::Statistics,
                Collection::Users
            ]
        );
    }
}
