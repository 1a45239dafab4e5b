//! Which topics the consumer may read: only those `setup` recorded as pipedemo's. A pattern
//! subscription (the Event Router's) can reach topics of the same names that somebody else
//! made; the consumer pauses them at once and never plans, dead-letters or commits a message
//! of theirs. The topics it is configured for must be pipedemo's before it starts at all.

use std::collections::HashSet;

use crate::config::{KafkaArgs, Routing};

/// The topics `setup` recorded as pipedemo's in this Kafka cluster.
#[derive(Clone, Debug, Default)]
pub struct OwnTopics(HashSet<String>);

impl OwnTopics {
    /// The recorded topic names.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        OwnTopics(names.into_iter().collect())
    }

    /// Whether the consumer may read `topic`.
    pub fn admits(&self, topic: &str) -> bool {
        self.0.contains(topic)
    }

    /// The topics of `wanted` that are not pipedemo's; empty when it may read them all.
    pub fn foreign<'a>(&self, wanted: &'a [String]) -> Vec<&'a str> {
        wanted
            .iter()
            .filter(|t| !self.admits(t))
            .map(String::as_str)
            .collect()
    }
}

impl OwnTopics {
    /// An error naming the topics of `kafka`'s routing that are not pipedemo's, and the fix.
    pub fn require(&self, kafka: &KafkaArgs) -> anyhow::Result<()> {
        let topics = kafka.topics();
        let foreign = self.foreign(&topics);
        if foreign.is_empty() {
            return Ok(());
        }
        Err(crate::exit::config(format!(
            "Kafka topic {} exists but pipedemo did not create it (setup records the topics it \
             makes); pipedemo reads only its own topics. Point --topic-prefix (or --topic, \
             --route-topic) at a name of pipedemo's and run `pipedemo setup{}`",
            foreign.join(", "),
            match kafka.routing {
                Routing::Raw => "",
                Routing::EventRouter => " --routing event-router",
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recorded_topics_are_admitted() {
        let ours = OwnTopics::new(["a.User".to_owned(), "a.Activity".to_owned()]);
        assert!(ours.admits("a.User"));
        assert!(!ours.admits("a.Order"));
        assert!(!ours.admits("connect-configs"));
        let wanted = vec!["a.User".to_owned(), "b.User".to_owned()];
        assert_eq!(ours.foreign(&wanted), vec!["b.User"]);
        assert!(!OwnTopics::default().admits("x"));
    }
}
