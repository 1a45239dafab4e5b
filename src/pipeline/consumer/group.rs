//! The consumer's membership in its Kafka consumer group: subscribing, hearing about partition
//! assignment, and telling a consumer that has stopped receiving from one with nothing to do.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::gate::OwnTopics;
use crate::config::KafkaArgs;
use crate::pipeline::kafka::{client_config, Position, Waiting};

/// A static member's session, ms (a dynamic member's is 10 s).
pub const STATIC_SESSION_MS: u64 = 30_000;

/// How often stored offsets are committed, ms: what a crash can leave to be redelivered.
pub(super) const COMMIT_EVERY_MS: u64 = 100;

/// How long the broker may hold a fetch that finds nothing (librdkafka's default).
pub(super) const FETCH_WAIT_MAX_MS: u64 = 500;

/// Tells how many partitions the group has given this consumer, and how often it was given
/// partitions.
pub(super) struct Ctx {
    assigned: Arc<watch::Sender<Holding>>,
    /// The topics it may read; a foreign partition the pattern reached is paused at once.
    ours: Arc<OwnTopics>,
    /// Foreign topics already named in the log (once each per consumer).
    told: Mutex<HashSet<String>>,
}

/// The consumer's share of the topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    /// Partitions held now.
    pub partitions: usize,
    /// Assignments received so far: more than one means the group was rebalanced (another
    /// member came or went, or the consumer reconnected).
    pub assignments: u64,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let (parts, foreign): (Vec<_>, Vec<_>) = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .partition(|(t, _)| self.ours.admits(t));
                self.pause_foreign(c, &foreign);
                tracing::info!(partitions = %list(&parts), "partitions assigned");
                self.assigned.send_modify(|h| {
                    h.partitions = parts.len();
                    h.assignments += 1;
                });
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                self.assigned.send_modify(|h| h.partitions = 0);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

impl Ctx {
    /// Pauses partitions of topics that are not pipedemo's, so that nothing of theirs is
    /// fetched, and names each such topic once.
    fn pause_foreign(&self, c: &BaseConsumer<Self>, foreign: &[(String, i32)]) {
        if foreign.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in foreign {
            tpl.add_partition(t, *p);
        }
        if let Err(e) = c.pause(&tpl) {
            // The consumer still drops whatever it fetches of them (see `run`).
            tracing::debug!(error = %e, "pausing foreign partitions");
        }
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        for (t, _) in foreign {
            if told.insert(t.clone()) {
                tracing::warn!(
                    topic = %t,
                    "topic matches the subscription but pipedemo did not create it; not read, \
                     dead-lettered or committed (setup records the topics it makes)"
                );
            }
        }
    }
}

/// Partitions as `0,1,2` for log lines, or `topic:0,other:0` when they span topics (the
/// Outbox Event Router's).
fn list(parts: &[(String, i32)]) -> String {
    let one_topic = parts.windows(2).all(|w| w[0].0 == w[1].0);
    parts
        .iter()
        .map(|(t, p)| {
            if one_topic {
                p.to_string()
            } else {
                format!("{t}:{p}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A running consumer's handle on its partition assignment.
#[derive(Clone)]
pub struct Assigned(watch::Receiver<Holding>);

impl Assigned {
    /// Waits until the group has assigned partitions, or `timeout` passes.
    pub async fn wait(&mut self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.0.wait_for(|h| h.partitions > 0))
            .await
            .context("the consumer got no partitions from its group in time")?
            .context("the consumer stopped")?;
        Ok(())
    }

    /// What the consumer holds now.
    pub fn holding(&self) -> Holding {
        *self.0.borrow()
    }
}

/// Makes group members that report their assignment to one [`Assigned`].
pub(super) struct Membership {
    kafka: KafkaArgs,
    /// A topic, or (starting with `^`) a pattern of topics.
    subscription: String,
    assigned: Arc<watch::Sender<Holding>>,
    ours: Arc<OwnTopics>,
    /// The static member's id (`group.instance.id`), when it has one.
    instance_id: Option<String>,
}

impl Membership {
    /// A membership of `kafka.group` on [`KafkaArgs::subscription`], reading only `ours`,
    /// and the handle that hears its assignments. With `instance_id` it is a static member
    /// (KIP-345): a restart with the same id takes back its partitions at once instead of
    /// leaving them unread for the session timeout while the group waits out the dead
    /// member; without, it leaves the group when it closes.
    pub(super) fn new(
        kafka: &KafkaArgs,
        ours: Arc<OwnTopics>,
        instance_id: Option<String>,
    ) -> (Membership, Assigned) {
        let (tx, rx) = watch::channel(Holding::default());
        let m = Membership {
            kafka: kafka.clone(),
            subscription: kafka.subscription(),
            assigned: Arc::new(tx),
            ours,
            instance_id,
        };
        (m, Assigned(rx))
    }

    /// The static member's id, when it has one.
    pub(super) fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// The consumer group.
    pub(super) fn group(&self) -> &str {
        &self.kafka.group
    }

    /// A new Kafka consumer in the group, subscribed to the topic.
    pub(super) fn subscribe(&self) -> Result<StreamConsumer<Ctx>> {
        let mut config = client_config(&self.kafka);
        // The consumer protocol of KIP-848 (`-X group.protocol=consumer`) keeps the session
        // and the assignment on the broker: librdkafka refuses a consumer that sets them.
        let classic = !uses_consumer_protocol(&self.kafka);
        if self.subscription.starts_with('^') {
            // A pattern subscription sees a new topic (an aggregate type the router met for
            // the first time) at the next metadata refresh: 5 minutes by default.
            config.set("topic.metadata.refresh.interval.ms", "5000");
            // The range assignor splits each topic on its own, giving partition 0 of every
            // topic to the same member and none to a member beyond a topic's partition count;
            // round robin over all the topics' partitions gives every member its share.
            if classic {
                config.set("partition.assignment.strategy", "roundrobin");
            }
        }
        config
            .set("group.id", &self.kafka.group)
            // Offsets are stored by the consumer only once a batch's writes are acknowledged,
            // and librdkafka commits what is stored, on this interval.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", COMMIT_EVERY_MS.to_string())
            .set("auto.offset.reset", "earliest")
            // A fetch is answered as soon as one byte is there (fetch.min.bytes 1), so how long
            // the broker may hold an empty one costs no latency; it is what an idle consumer
            // costs the broker. At 5 ms an idle consumer took 3-4 % of a core of Kafka's (200
            // empty fetches a second), at 500 none measurable (docs/performance.md).
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS.to_string())
            .set("fetch.queue.backoff.ms", "1")
            // librdkafka pre-fetches up to 64 MB per partition by default; 8 MB keeps memory
            // bounded and is still thousands of envelopes ahead.
            .set("queued.max.messages.kbytes", "8192");
        if classic {
            config
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000");
        }
        if let Some(id) = &self.instance_id {
            // A static member whose session runs out while the broker is away (a broker
            // restart takes 15 s here) has been seen never to get its partitions back from
            // librdkafka: its session outlasts such outages. A restart with the same id takes
            // the partitions back at once whatever the timeout; it is how long a static member
            // stopped for good keeps its partitions unread.
            config.set("group.instance.id", id);
            if classic {
                config.set("session.timeout.ms", STATIC_SESSION_MS.to_string());
            }
        }
        let consumer: StreamConsumer<Ctx> = crate::pipeline::kafka::client::created(
            config.create_with_context(Ctx {
                assigned: self.assigned.clone(),
                ours: self.ours.clone(),
                told: Mutex::default(),
            }),
            "creating the Kafka consumer",
        )?;
        consumer
            .subscribe(&[&self.subscription])
            .with_context(|| format!("subscribing to {}", self.subscription))?;
        Ok(consumer)
    }
}

/// The consumer's own positions on the partitions it holds, or `None` when it holds none
/// (local state: no broker round trip).
pub(super) fn positions(c: &StreamConsumer<Ctx>) -> Option<Vec<Position>> {
    let held = c.assignment().ok()?;
    if held.count() == 0 {
        return None;
    }
    let pos = c.position().ok();
    Some(
        held.elements()
            .iter()
            .map(|e| {
                let p = e.partition();
                let at = pos
                    .as_ref()
                    .and_then(|l| l.find_partition(e.topic(), p))
                    .and_then(|x| match x.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                (e.topic().to_owned(), p, at)
            })
            .collect(),
    )
}

/// What to do after a quiet spell, given what the previous quiet check without partitions saw
/// (`idle_before`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stalled {
    /// Nothing is wrong (nothing waits, or another member is consuming).
    No,
    /// Holding partitions with messages waiting, seen once: look again shortly
    /// ([`STALL_CONFIRM`]) before making a new consumer.
    LookAgain,
    /// Nothing moved: make a new Kafka consumer.
    Reconnect,
}

/// How soon a first sighting of a stall is looked at again. A broker frozen for as long as the
/// quiet spell (10 s) answers the check the moment it thaws, before librdkafka has fetched
/// again: reconnecting then replaced a consumer that was about to go on, and the new one, its
/// group join met by a broker just back, waited 20 s for its partitions (chaos, kafka-freeze).
pub(super) const STALL_CONFIRM: Duration = Duration::from_secs(2);

/// librdkafka sometimes stops consuming after losing every broker: the group revokes the
/// partitions and never assigns them again, or fetching stops (rust-rdkafka #597), while
/// messages wait. Holding partitions with messages waiting is stuck at once. Holding none, the
/// partitions may be another member's: stuck only when no member has committed anything since
/// the previous check. (The count of waiting messages cannot tell: while a load runs it grows
/// whether or not anybody consumes, and a consumer that waited for it to stand still stayed
/// wedged for as long as the load ran.)
/// `suspected`: the check before this one found the same, [`STALL_CONFIRM`] ago, and no
/// message came since.
pub(super) fn stalled(
    now: Waiting,
    holds_partitions: bool,
    idle_before: Option<Waiting>,
    suspected: bool,
) -> Stalled {
    if now.messages <= 0 {
        Stalled::No
    } else if holds_partitions {
        if suspected {
            Stalled::Reconnect
        } else {
            Stalled::LookAgain
        }
    } else if idle_before.is_some_and(|b| b.committed == now.committed) {
        Stalled::Reconnect
    } else {
        Stalled::No
    }
}

/// Whether the consumer joins with the consumer protocol of KIP-848 (`-X
/// group.protocol=consumer`) rather than the classic one.
pub(super) fn uses_consumer_protocol(kafka: &KafkaArgs) -> bool {
    kafka
        .client_properties()
        .iter()
        .rev()
        .find(|(k, _)| k == "group.protocol")
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("consumer"))
}

/// The outage a consumer error means, as the dashboard says it: the brokers cannot be
/// reached or refuse this client. `None` for the errors of a working connection (a partition
/// leader moving, one connection closed and reopened), which librdkafka retries by itself.
pub(super) fn outage(e: &rdkafka::error::KafkaError) -> Option<String> {
    use rdkafka::types::RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code()?;
    let what = match code {
        C::AllBrokersDown => "no broker reachable",
        C::Authentication | C::SaslAuthenticationFailed => "authentication refused",
        C::SSL => "TLS handshake failed",
        C::Resolve => "broker address does not resolve",
        _ => return None,
    };
    Some(format!("Kafka: {what} ({code:?})"))
}

/// Whether Kafka takes `c` in a group instance id.
pub fn instance_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A static member's id checked before it reaches the broker: Kafka takes letters, digits,
/// `.`, `_` and `-`, at most 249 of them.
pub fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 249 || !id.chars().all(instance_id_char) {
        let shown: String = id.chars().take(60).collect();
        return Err(format!(
            "--instance-id `{shown}` is not a Kafka group instance id: use 1-249 letters, \
             digits, `.`, `_` or `-` (a pod or unit name such as `consumer-0`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_or_refusing_brokers_are_an_outage() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        let down = KafkaError::MessageConsumption(C::AllBrokersDown);
        assert_eq!(
            outage(&down).as_deref(),
            Some("Kafka: no broker reachable (AllBrokersDown)")
        );
        assert!(outage(&KafkaError::MessageConsumption(C::Authentication)).is_some());
        for routine in [
            C::BrokerTransportFailure,
            C::NotLeaderForPartition,
            C::PartitionEOF,
        ] {
            assert_eq!(outage(&KafkaError::MessageConsumption(routine)), None);
        }
    }

    #[test]
    fn instance_ids_are_what_kafka_takes() {
        assert_eq!(check_instance_id("consumer-0"), Ok(()));
        assert_eq!(check_instance_id("pipedemo.host_a-1"), Ok(()));
        for bad in ["", "a b", "x/y", &"a".repeat(250)] {
            let e = check_instance_id(bad).unwrap_err();
            assert!(e.contains("--instance-id"), "{e}");
        }
    }

    #[test]
    fn a_quiet_consumer_is_stuck_only_when_messages_wait_for_it() {
        let w = |messages, committed| Waiting {
            messages,
            committed,
        };
        assert_eq!(stalled(w(0, 0), true, None, false), Stalled::No);
        assert_eq!(stalled(w(0, 0), true, None, true), Stalled::No);
        // Holding partitions with messages waiting: looked at again before reconnecting (a
        // broker that just thawed has not been fetched from yet).
        assert_eq!(stalled(w(500, 0), true, None, false), Stalled::LookAgain);
        assert_eq!(stalled(w(500, 0), true, None, true), Stalled::Reconnect);
        // Without partitions: first sighting, or another member committing.
        assert_eq!(stalled(w(500, 10), false, None, false), Stalled::No);
        assert_eq!(
            stalled(w(500, 900), false, Some(w(800, 700)), false),
            Stalled::No
        );
        // Nobody committed since: stuck, whether the count stood still or a load added to it.
        assert_eq!(
            stalled(w(500, 700), false, Some(w(500, 700)), false),
            Stalled::Reconnect
        );
        assert_eq!(
            stalled(w(15_888, 700), false, Some(w(9_080, 700)), false),
            Stalled::Reconnect
        );
    }
}
