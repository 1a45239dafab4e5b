//! The consumer's decisions for one batch, apart from Kafka and MongoDB so they can be tested
//! without either: [`plan`] classifies each message (write, skip or dead letter) and collects
//! the writes; [`account`] turns the store's results into counts, statistics, timing records
//! and the dead letters that the writes themselves produced.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use crate::pipeline::bounded;
use crate::pipeline::envelope::{check_created_at, decode, Decoded, Op, OutboxEvent};
use crate::pipeline::handlers::{Registry, Source, WriteOp};
use crate::pipeline::routed::{self, Origin, RoutedHeaders};
use crate::pipeline::store::statistics::{Counted, Lane};
use crate::pipeline::store::{Outcome, WriteResult};
use crate::telemetry::metrics::{EventRecord, Timing};
use crate::telemetry::tag::RunTag;

/// What the consumer knows of one received Kafka message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The record key.
    pub key: Option<&'a [u8]>,
    /// The record value (`None`: a tombstone).
    pub payload: Option<&'a [u8]>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's timestamp (T2), ms, when it has one.
    pub timestamp_ms: Option<i64>,
    /// When the consumer received it (T3), µs.
    pub t3_us: i64,
    /// How to read it: a Debezium change event, or an Outbox Event Router message.
    pub route: Route<'a>,
}

/// The shape of a message, by the connector's routing.
#[derive(Clone, Copy, Debug)]
pub enum Route<'a> {
    /// A Debezium change event of `event_outbox` (`--routing raw`).
    Raw,
    /// An Outbox Event Router message (`--routing event-router`).
    Routed {
        /// The aggregate its topic carries.
        origin: Origin<'a>,
        /// The headers pipedemo reads.
        headers: RoutedHeaders<'a>,
    },
}

impl Route<'_> {
    /// The lane of the statistics' marks this message's topic is.
    pub fn lane(&self) -> Lane {
        match self {
            Route::Raw => Lane::Raw,
            Route::Routed {
                origin: Origin::Aggregate(a),
                ..
            } => Lane::Aggregate(*a),
            // Dead-lettered before anything is counted.
            Route::Routed { .. } => Lane::Raw,
        }
    }
}

/// A message that cannot be handled, bound for the dead-letter topic.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Its index in the batch (for its original bytes).
    pub index: usize,
    /// Why; goes into the `pipedemo.error` header.
    pub reason: String,
    /// The event id, when the message was readable that far.
    pub event_id: Option<Uuid>,
    /// The event type as the row named it, when readable.
    pub event_type: Option<String>,
    /// The run and phase the row was tagged with, when readable.
    pub tag: Option<RunTag>,
}

impl DeadLetter {
    /// The dead letter of message `index`. The reason and event type may repeat any part of
    /// the message, so both are cut to [`bounded::ECHO_LIMIT`]: they go into a header, the
    /// log and the dashboard, none of which may grow with the input.
    pub fn new(
        index: usize,
        reason: String,
        event_id: Option<Uuid>,
        event_type: Option<&str>,
    ) -> Self {
        DeadLetter {
            index,
            reason: bounded::echo(reason),
            event_id,
            event_type: event_type.map(|t| bounded::prefix(t, bounded::ECHO_LIMIT).into_owned()),
            tag: None,
        }
    }

    /// The dead letter of a readable event: it counts against the event's run and phase.
    pub fn of_event(index: usize, reason: String, event: &OutboxEvent) -> Self {
        DeadLetter {
            tag: event.run_tag.clone(),
            ..DeadLetter::new(index, reason, Some(event.event_id), Some(&event.event_type))
        }
    }
}

/// A message skipped on purpose (snapshot read, update, delete, tombstone, …).
#[derive(Clone, Debug, PartialEq)]
pub struct Skip {
    /// Its index in the batch.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// An event whose write is in [`Plan::ops`] at the same position.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Its index in the batch.
    pub index: usize,
    /// Its topic, as the statistics' marks tell topics apart.
    pub lane: Lane,
    /// Where it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The event.
    pub event: OutboxEvent,
    /// T0–T4 (T5 comes with the write's acknowledgement).
    pub timing: Timing,
}

/// What a batch asks for.
#[derive(Debug, Default)]
pub struct Plan {
    /// The writes, one per [`Plan::pending`] event, in batch order.
    pub ops: Vec<WriteOp>,
    /// The events behind the writes.
    pub pending: Vec<Pending>,
    /// Messages that cannot be handled.
    pub dead: Vec<DeadLetter>,
    /// Messages skipped on purpose.
    pub skipped: Vec<Skip>,
}

/// Classifies every message of a batch. `now_us` gives T4 (the handler's start) per event.
pub fn plan<'a>(
    batch: impl IntoIterator<Item = Message<'a>>,
    registry: &Registry,
    include_snapshot: bool,
    mut now_us: impl FnMut() -> i64,
) -> Plan {
    let mut plan = Plan::default();
    for (index, m) in batch.into_iter().enumerate() {
        let decoded = match &m.route {
            Route::Raw => decode(m.key, m.payload),
            Route::Routed { origin, headers } => routed::decode(*origin, m.key, m.payload, headers),
        };
        let change = match decoded {
            Ok(Decoded::Change(c)) => c,
            Ok(Decoded::Tombstone) => {
                plan.skip(index, "tombstone".into());
                continue;
            }
            Ok(Decoded::NoRow(op)) => {
                plan.skip(index, format!("op `{}`: nothing to apply", op.code()));
                continue;
            }
            Err(e) => {
                plan.dead
                    .push(DeadLetter::new(index, e.to_string(), None, None));
                continue;
            }
        };
        match change.op {
            Op::Create => {}
            Op::Read if include_snapshot => {}
            Op::Read => {
                plan.skip(index, "snapshot read".into());
                continue;
            }
            other => {
                plan.skip(
                    index,
                    format!("op `{}` (only inserts are events)", other.code()),
                );
                continue;
            }
        }
        let t4_us = now_us();
        let handled = check_created_at(&change.event, t4_us)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let at = Source {
                    partition: m.partition,
                    offset: m.offset,
                };
                registry
                    .handle(&change.event, at)
                    .map_err(|e| e.to_string())
            });
        match handled {
            Ok(op) => {
                plan.ops.push(op);
                plan.pending.push(Pending {
                    index,
                    lane: m.route.lane(),
                    partition: m.partition,
                    offset: m.offset,
                    timing: Timing {
                        t0_us: change.event.created_at_us,
                        commit_us: change.committed_us,
                        t1_us: change.captured_us,
                        t2_us: m.timestamp_ms.map_or(0, |ms| ms * 1000),
                        t3_us: m.t3_us,
                        t4_us,
                        t5_us: 0,
                    },
                    event: change.event,
                });
            }
            Err(reason) => plan
                .dead
                .push(DeadLetter::of_event(index, reason, &change.event)),
        }
    }
    plan
}

impl Plan {
    fn skip(&mut self, index: usize, reason: String) {
        self.skipped.push(Skip { index, reason });
    }
}

/// What a batch's writes came to.
#[derive(Debug, Default, PartialEq)]
pub struct Account {
    /// Events written now.
    pub applied: u64,
    /// Events found already written (a replay or a redelivery).
    pub already_applied: u64,
    /// Events to count in the global statistics: applied now, or found applied by an earlier
    /// delivery of the same message (which may have crashed before counting them).
    pub counted: Vec<Counted>,
    /// Each joined activity's participant count after the batch (`$max`, so a replay
    /// refreshes a count a crash left behind and can never lower or double it).
    pub activity_counts: BTreeMap<String, i64>,
    /// One timing record per event written or found written.
    pub records: Vec<EventRecord>,
    /// Events whose write could not be done: a join whose activity never came, or a document
    /// the server rejected.
    pub dead: Vec<DeadLetter>,
}

/// Accounts for the results of [`Plan::ops`] (one per op, same order). `missing_wait` is how
/// long a join waited for its activity, for the dead-letter reason.
pub fn account(
    pending: Vec<Pending>,
    ops: &[WriteOp],
    results: &[WriteResult],
    missing_wait: Duration,
) -> Account {
    let mut acc = Account::default();
    for ((p, r), op) in pending.into_iter().zip(results).zip(ops) {
        let applied = match &r.outcome {
            Outcome::Applied => true,
            Outcome::AlreadyApplied => false,
            Outcome::ActivityMissing => {
                acc.dead.push(p.dead(format!(
                    "activity {} not found after {missing_wait:?} (ParticipantJoined before its \
                     ActivityCreated)",
                    p.event.aggregate_id
                )));
                continue;
            }
            Outcome::Rejected(reason) => {
                acc.dead
                    .push(p.dead(format!("MongoDB rejected the write: {reason}")));
                continue;
            }
        };
        if let (WriteOp::Join { activity_id, .. }, Some(n)) = (op, r.participant_count) {
            let e = acc.activity_counts.entry(activity_id.clone()).or_default();
            *e = (*e).max(n);
        }
        if r.by_this_message {
            acc.counted.push(Counted {
                lane: p.lane,
                partition: p.partition,
                offset: p.offset,
                event_type: op.event_type(),
            });
        }
        if applied {
            acc.applied += 1;
        } else {
            acc.already_applied += 1;
        }
        let mut timing = p.timing;
        timing.t5_us = r.acked_us;
        acc.records.push(EventRecord {
            event_id: p.event.event_id,
            label: op.label(),
            event_type: op.event_type(),
            aggregate_id: p.event.aggregate_id,
            partition: p.partition,
            offset: p.offset,
            applied,
            stages: timing.stages(),
            timing,
            tag: p.event.run_tag.clone(),
        });
    }
    acc
}

impl Pending {
    fn dead(&self, reason: String) -> DeadLetter {
        DeadLetter::of_event(self.index, reason, &self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use serde_json::json;

    const NOW_US: i64 = 1_795_377_600_500_000;

    fn row(event_type: &str, aggregate: Uuid, payload: serde_json::Value) -> Vec<u8> {
        json!({
            "op": "c",
            "ts_us": NOW_US - 400_000,
            "source": { "ts_us": NOW_US - 450_000 },
            "after": {
                "event_id": Uuid::new_v4().to_string(),
                "aggregate_id": aggregate.to_string(),
                "aggregate_type": "X",
                "event_type": event_type,
                "payload": payload.to_string(),
                "created_at": "2026-11-22T20:00:00.000000Z",
            }
        })
        .to_string()
        .into_bytes()
    }

    fn user() -> Vec<u8> {
        row(
            "UserCreated",
            Uuid::new_v4(),
            json!({"email":"a@b.c","username":"ada","first_name":"A","last_name":"L"}),
        )
    }

    fn join(activity: Uuid) -> Vec<u8> {
        row(
            "ParticipantJoined",
            activity,
            json!({ "user_id": Uuid::new_v4().to_string() }),
        )
    }

    fn messages(values: &[Option<Vec<u8>>]) -> Vec<Message<'_>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Message {
                key: None,
                payload: v.as_deref(),
                partition: 0,
                offset: 100 + i as i64,
                timestamp_ms: Some(NOW_US / 1000 - 300),
                t3_us: NOW_US - 100_000,
                route: Route::Raw,
            })
            .collect()
    }

    fn planned(values: &[Option<Vec<u8>>]) -> Plan {
        plan(messages(values), &Registry::standard(), false, || NOW_US)
    }

    fn result(outcome: Outcome, participant_count: Option<i64>) -> WriteResult {
        WriteResult {
            by_this_message: outcome == Outcome::Applied,
            outcome,
            acked_us: NOW_US + 1_000,
            participant_count,
        }
    }

    fn counted(offset: i64, event_type: EventType) -> Counted {
        Counted {
            lane: Lane::Raw,
            partition: 0,
            offset,
            event_type,
        }
    }

    #[test]
    fn plan_sorts_messages_into_writes_skips_and_dead_letters() {
        let mut snapshot: serde_json::Value = serde_json::from_slice(&user()).unwrap();
        snapshot["op"] = json!("r");
        let unknown = row("UserDeleted", Uuid::new_v4(), json!({}));
        let p = planned(&[
            Some(user()),
            None,
            Some(b"not json".to_vec()),
            Some(snapshot.to_string().into_bytes()),
            Some(unknown),
            Some(join(Uuid::new_v4())),
        ]);
        assert_eq!(p.ops.len(), 2);
        assert_eq!(
            p.pending.iter().map(|e| e.index).collect::<Vec<_>>(),
            [0, 5]
        );
        assert_eq!(p.ops[1].event_type(), EventType::ParticipantJoined);
        let skipped: Vec<(usize, &str)> = p
            .skipped
            .iter()
            .map(|s| (s.index, s.reason.as_str()))
            .collect();
        assert_eq!(skipped, [(1, "tombstone"), (3, "snapshot read")]);
        assert_eq!(p.dead.len(), 2);
        assert_eq!(p.dead[0].index, 2);
        assert!(p.dead[0].reason.starts_with("message value is not JSON"));
        assert_eq!(p.dead[0].event_id, None);
        assert_eq!(p.dead[1].index, 4);
        assert!(p.dead[1]
            .reason
            .contains("unknown event_type `UserDeleted`"));
        assert_eq!(p.dead[1].event_type.as_deref(), Some("UserDeleted"));
    }

    #[test]
    fn plan_stamps_t0_to_t4() {
        let p = planned(&[Some(user())]);
        let t = p.pending[0].timing;
        assert_eq!(t.t1_us, NOW_US - 400_000);
        assert_eq!(t.commit_us, Some(NOW_US - 450_000));
        assert_eq!(t.t2_us, (NOW_US / 1000 - 300) * 1000);
        assert_eq!((t.t3_us, t.t4_us, t.t5_us), (NOW_US - 100_000, NOW_US, 0));
    }

    #[test]
    fn snapshot_reads_are_events_when_asked_for() {
        let mut snapshot: serde_json::Value = serde_json::from_slice(&user()).unwrap();
        snapshot["op"] = json!("r");
        let values = [Some(snapshot.to_string().into_bytes())];
        let p = plan(messages(&values), &Registry::standard(), true, || NOW_US);
        assert_eq!((p.ops.len(), p.skipped.len()), (1, 0));
    }

    #[test]
    fn account_counts_applied_and_duplicates_apart() {
        let activity = Uuid::new_v4();
        let p = planned(&[Some(user()), Some(user()), Some(join(activity))]);
        let mut redelivered = result(Outcome::AlreadyApplied, Some(4));
        redelivered.by_this_message = true;
        let results = [
            result(Outcome::Applied, Some(0)),
            result(Outcome::AlreadyApplied, Some(0)),
            redelivered,
        ];
        let a = account(p.pending, &p.ops, &results, Duration::from_secs(10));
        assert_eq!((a.applied, a.already_applied), (1, 2));
        // The second user is a copy of an event another message wrote: it does not count.
        // The join was written by an earlier delivery of this same message: it does.
        assert_eq!(
            a.counted,
            [
                counted(100, EventType::UserCreated),
                counted(102, EventType::ParticipantJoined)
            ]
        );
        // A join found already applied still refreshes its activity's count ($max).
        assert_eq!(
            a.activity_counts,
            BTreeMap::from([(activity.to_string(), 4)])
        );
        assert_eq!(a.records.len(), 3);
        assert!(a.records[0].applied && !a.records[1].applied);
        assert_eq!(a.records[0].timing.t5_us, NOW_US + 1_000);
        assert_eq!(
            a.records[0].stages.total_us,
            NOW_US + 1_000 - a.records[0].timing.t0_us
        );
        assert_eq!(a.records[0].label, "ada");
        assert!(a.dead.is_empty());
    }

    #[test]
    fn account_keeps_the_highest_count_per_activity() {
        let activity = Uuid::new_v4();
        let p = planned(&[Some(join(activity)), Some(join(activity))]);
        let results = [
            result(Outcome::Applied, Some(7)),
            result(Outcome::Applied, Some(5)),
        ];
        let a = account(p.pending, &p.ops, &results, Duration::from_secs(10));
        assert_eq!(a.activity_counts[&activity.to_string()], 7);
        assert_eq!(
            a.counted,
            [
                counted(100, EventType::ParticipantJoined),
                counted(101, EventType::ParticipantJoined)
            ]
        );
    }

    #[test]
    fn writes_that_cannot_be_done_become_dead_letters_not_counts() {
        let activity = Uuid::new_v4();
        let p = planned(&[Some(join(activity)), Some(user())]);
        let event_ids: Vec<Uuid> = p.pending.iter().map(|e| e.event.event_id).collect();
        let results = [
            result(Outcome::ActivityMissing, None),
            result(Outcome::Rejected("document too large".into()), None),
        ];
        let a = account(p.pending, &p.ops, &results, Duration::from_secs(10));
        assert_eq!((a.applied, a.already_applied), (0, 0));
        assert!(a.records.is_empty() && a.activity_counts.is_empty());
        assert_eq!(a.dead.len(), 2);
        assert_eq!(a.dead[0].event_id, Some(event_ids[0]));
        assert!(a.dead[0]
            .reason
            .starts_with(&format!("activity {activity} not found after 10s")));
        assert_eq!(
            a.dead[1].reason,
            "MongoDB rejected the write: document too large"
        );
        assert_eq!(a.dead[1].index, 1);
    }
}
