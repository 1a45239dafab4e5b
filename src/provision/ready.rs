//! Whether what `pipedemo setup` creates is there, asked before a command that needs the
//! pipeline starts anything (a consumer, a child process, a file): the outbox table, the topics
//! the consumer reads and the connector. Something missing is a usage error (exit 2) naming all
//! that is missing and the setup that creates it; a service that cannot be asked is exit 3.

use anyhow::Result;
use tokio_postgres::Client;

use crate::config::{Routing, Settings};
use crate::pipeline::{kafka, outbox};
use crate::provision::connector::Connect;

/// What was found of what the setup creates.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// Whether `public.event_outbox` exists.
    pub table: bool,
    /// The topics the consumer reads that do not exist.
    pub missing_topics: Vec<String>,
    /// Whether the connector is registered with Kafka Connect.
    pub connector: bool,
}

/// What is not set up, in one message with the fix (`None`: everything is there).
pub fn unready(found: &Found, routing: Routing, connector: &str) -> Option<String> {
    let mut missing = Vec::new();
    if !found.table {
        missing.push("table event_outbox".to_owned());
    }
    match found.missing_topics.as_slice() {
        [] => {}
        [one] => missing.push(format!("Kafka topic {one}")),
        many => missing.push(format!("Kafka topics {}", many.join(", "))),
    }
    if !found.connector {
        missing.push(format!("connector {connector}"));
    }
    if missing.is_empty() {
        return None;
    }
    let plural = missing.len() > 1 || found.missing_topics.len() > 1;
    let verb = if plural { "do" } else { "does" };
    Some(format!(
        "{} {verb} not exist; run `{}` first",
        join_and(&missing),
        routing.setup_command()
    ))
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Looks for what the setup creates, with `pg` for the table.
pub async fn survey(s: &Settings, pg: &Client) -> Result<Found> {
    let table = outbox::table_exists(pg).await?;
    let mut missing_topics = Vec::new();
    for topic in s.kafka.topics() {
        if kafka::partitions(&s.kafka, &topic).await?.is_none() {
            missing_topics.push(topic);
        }
    }
    let connector = Connect::new(&s.connect)?.status().await?.is_some();
    Ok(Found {
        table,
        missing_topics,
        connector,
    })
}

/// Fails, before anything starts, when the setup was not run (exit 2, with the command that
/// fixes it) or a service cannot be asked (exit 3); then checks the table's shape.
pub async fn require(s: &Settings, pg: &Client) -> Result<()> {
    let found = survey(s, pg).await?;
    if let Some(why) = unready(&found, s.kafka.routing, &s.connect.connector_name) {
        return Err(crate::exit::not_set_up(why));
    }
    outbox::check_table(pg).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(table: bool, topics: &[&str], connector: bool) -> Found {
        Found {
            table,
            missing_topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            connector,
        }
    }

    #[test]
    fn everything_missing_is_named_at_once_with_the_setup_that_creates_it() {
        assert_eq!(unready(&found(true, &[], true), Routing::Raw, "c"), None);
        assert_eq!(
            unready(&found(false, &[], true), Routing::Raw, "c").unwrap(),
            "table event_outbox does not exist; run `pipedemo setup` first"
        );
        assert_eq!(
            unready(
                &found(false, &["t.a"], false),
                Routing::Raw,
                "pipedemo-outbox"
            )
            .unwrap(),
            "table event_outbox, Kafka topic t.a and connector pipedemo-outbox do not exist; \
             run `pipedemo setup` first"
        );
        assert_eq!(
            unready(
                &found(true, &["p.User", "p.Activity"], true),
                Routing::EventRouter,
                "c"
            )
            .unwrap(),
            "Kafka topics p.User, p.Activity do not exist; run `pipedemo setup --routing \
             event-router` first"
        );
    }
}
