//! Planning a batch's joins (`ParticipantJoined`) as one guarded `update` command, and reading
//! its reply, apart from the server: plan → execute (in [`super`]) → interpret.
//!
//! For each activity, the joins whose event ids are not yet in its participant list become one
//! statement that pushes them all, and matches only while none of those ids is in the list and
//! the participant count is the one planned from: so a statement runs at most once, even if
//! the batch comes again, and the count after it is exact. An activity's state comes from a
//! read, or from the count this process last saw ([`super::known::KnownCounts`]), which the
//! count guard checks.

use std::collections::{BTreeMap, HashMap};

use mongodb::bson::{doc, Bson, Document};

use super::Outcome;
use crate::pipeline::handlers::{Source, WriteOp};

/// An activity's participants as read before the update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Existing {
    /// `participants.count`.
    pub count: i64,
    /// The `source_event_id` of every participant entry, with the Kafka message that added
    /// it (when recorded).
    pub events: HashMap<String, Option<Source>>,
}

impl Existing {
    /// An activity known only by its participant count (no read): every join is planned as
    /// new, and the statement's guards settle it.
    pub fn counted(count: i64) -> Existing {
        Existing {
            count,
            events: HashMap::new(),
        }
    }

    /// The activity id and its participants, from a document projected to
    /// `participants.count` and `participants.list.source_event_id` (and `source_partition`,
    /// `source_offset`).
    pub fn of(d: &Document) -> (String, Existing) {
        let p = d.get_document("participants").ok();
        let count = p.and_then(|p| p.get_i64("count").ok()).unwrap_or(0);
        let events = p
            .and_then(|p| p.get_array("list").ok())
            .map(|l| {
                l.iter()
                    .filter_map(|e| {
                        let e = e.as_document()?;
                        Some((e.get_str("source_event_id").ok()?.to_owned(), Source::of(e)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let id = d.get_str("_id").unwrap_or_default().to_owned();
        (id, Existing { count, events })
    }
}

/// What to send, and what is known before sending.
#[derive(Debug, Default)]
pub struct Plan {
    /// Joins settled by the read alone: (op index, outcome, participant count, whether this
    /// very message added the entry found).
    pub settled: Vec<(usize, Outcome, Option<i64>, bool)>,
    /// One `update` statement per activity with new joins.
    pub statements: Vec<Document>,
    /// Per statement, in order: its joins (op indexes) and the count after them.
    pub pending: Vec<(Vec<usize>, i64)>,
    /// Per statement, in order: its activity.
    pub activities: Vec<String>,
}

/// Plans the joins `by_activity` (op indexes per activity, in batch order) against what the
/// activities held. A join whose event is already listed is already applied; one whose
/// activity does not exist is missing; the rest go into the activity's statement.
pub fn plan(
    ops: &[WriteOp],
    by_activity: BTreeMap<&str, Vec<usize>>,
    mut existing: HashMap<String, Existing>,
) -> Plan {
    let mut plan = Plan::default();
    for (activity_id, idxs) in by_activity {
        let Some(state) = existing.get_mut(activity_id) else {
            for i in idxs {
                plan.settled
                    .push((i, Outcome::ActivityMissing, None, false));
            }
            continue;
        };
        let mut fresh = Vec::new();
        for i in idxs {
            let here = ops[i].source();
            match state.events.get(ops[i].source_event_id()) {
                None => {
                    state
                        .events
                        .insert(ops[i].source_event_id().to_owned(), here);
                    fresh.push(i);
                }
                Some(made_at) => plan.settled.push((
                    i,
                    Outcome::AlreadyApplied,
                    Some(state.count),
                    here.is_some() && *made_at == here,
                )),
            }
        }
        if fresh.is_empty() {
            continue;
        }
        let before = state.count;
        state.count += fresh.len() as i64;
        plan.statements
            .push(statement(ops, activity_id, before, &fresh));
        plan.activities.push(activity_id.to_owned());
        plan.pending.push((fresh, state.count));
    }
    plan
}

/// The guarded update adding the joins `fresh` to one activity that has `before`
/// participants.
fn statement(ops: &[WriteOp], activity_id: &str, before: i64, fresh: &[usize]) -> Document {
    let mut entries = Vec::new();
    let mut users = Vec::new();
    let mut event_ids = Vec::new();
    let mut last_joined = Bson::Null;
    for &i in fresh {
        if let WriteOp::Join { entry, user_id, .. } = &ops[i] {
            event_ids.push(Bson::String(ops[i].source_event_id().to_owned()));
            entries.push(Bson::Document(entry.clone()));
            users.push(Bson::String(user_id.clone()));
            last_joined = entry.get("joined_at").cloned().unwrap_or(Bson::Null);
        }
    }
    doc! {
        "q": {
            "_id": activity_id,
            "participants.count": before,
            "participants.list.source_event_id": { "$nin": event_ids },
        },
        "u": {
            "$push": { "participants.list": { "$each": entries } },
            "$inc": { "participants.count": fresh.len() as i64 },
            "$addToSet": { "allowed_users": { "$each": users } },
            "$set": { "metadata.updated_at": last_joined },
        },
    }
}

/// What the server's reply to the statements means.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Every statement matched or was rejected: (op index, outcome, count after).
    Settled(Vec<(usize, Outcome, i64)>),
    /// Some statement matched nothing (another writer changed its activity since the read,
    /// the count planned from was out of date, or one of its joins was listed already):
    /// `matched` of the statements ran, and the reply does not say which
    /// ([`matched_now`] tells them apart from a read).
    Contended {
        /// How many statements matched.
        matched: usize,
    },
}

/// Reads the `update` command's reply (`n` matched, `writeErrors` by statement index).
pub fn interpret(reply: &Document, plan: &Plan) -> Reply {
    let mut rejected: HashMap<usize, String> = HashMap::new();
    if let Ok(errors) = reply.get_array("writeErrors") {
        for e in errors.iter().filter_map(Bson::as_document) {
            let index = e.get_i32("index").unwrap_or(-1);
            let msg = e.get_str("errmsg").unwrap_or("write error");
            rejected.insert(
                index as usize,
                format!("{msg} (code {})", e.get_i32("code").unwrap_or(0)),
            );
        }
    }
    let matched = match reply.get("n") {
        Some(Bson::Int32(n)) => *n as usize,
        Some(Bson::Int64(n)) => *n as usize,
        _ => 0,
    };
    if matched + rejected.len() < plan.statements.len() {
        return Reply::Contended { matched };
    }
    let mut out = Vec::new();
    for (k, (idxs, count)) in plan.pending.iter().enumerate() {
        let outcome = match rejected.get(&k) {
            Some(reason) => Outcome::Rejected(reason.clone()),
            None => Outcome::Applied,
        };
        out.extend(idxs.iter().map(|&i| (i, outcome.clone(), *count)));
    }
    Reply::Settled(out)
}

/// Which statements of a contended update ran, told from the activities read after it
/// (`after`): a statement whose joins are not all listed did not run; those whose joins are
/// all listed ran if as many of them as `matched` (a join listed by an earlier delivery looks
/// the same, and then the read cannot tell: `None`).
pub fn matched_now(
    ops: &[WriteOp],
    plan: &Plan,
    after: &HashMap<String, Existing>,
    matched: usize,
) -> Option<Vec<bool>> {
    let listed: Vec<bool> = plan
        .activities
        .iter()
        .zip(&plan.pending)
        .map(|(activity, (idxs, _))| {
            after.get(activity).is_some_and(|state| {
                idxs.iter()
                    .all(|&i| state.events.contains_key(ops[i].source_event_id()))
            })
        })
        .collect();
    (listed.iter().filter(|&&l| l).count() == matched).then_some(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(activity: &str, event: &str, user: &str) -> WriteOp {
        WriteOp::Join {
            activity_id: activity.into(),
            user_id: user.into(),
            entry: doc! { "user_id": user, "source_event_id": event, "joined_at": 1_i64 },
        }
    }

    fn by_activity(ops: &[WriteOp]) -> BTreeMap<&str, Vec<usize>> {
        let mut m: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            m.entry(op.key()).or_default().push(i);
        }
        m
    }

    fn existing(entries: &[(&str, i64, &[&str])]) -> HashMap<String, Existing> {
        entries
            .iter()
            .map(|(id, count, events)| {
                let events = events.iter().map(|e| (e.to_string(), None)).collect();
                (
                    id.to_string(),
                    Existing {
                        count: *count,
                        events,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn new_joins_of_one_activity_share_one_guarded_statement() {
        let ops = [join("a1", "e1", "u1"), join("a1", "e2", "u2")];
        let plan = plan(&ops, by_activity(&ops), existing(&[("a1", 3, &["e0"])]));
        assert!(plan.settled.is_empty());
        assert_eq!(plan.pending, [(vec![0, 1], 5)]);
        let s = &plan.statements[0];
        let guard = s.get_document("q").unwrap();
        assert_eq!(guard.get_str("_id").unwrap(), "a1");
        assert_eq!(guard.get_i64("participants.count").unwrap(), 3);
        let nin = guard
            .get_document("participants.list.source_event_id")
            .unwrap()
            .get_array("$nin")
            .unwrap();
        assert_eq!(nin, &vec![Bson::from("e1"), Bson::from("e2")]);
        let u = s.get_document("u").unwrap();
        assert_eq!(
            u.get_document("$inc")
                .unwrap()
                .get_i64("participants.count")
                .unwrap(),
            2
        );
        let pushed = u
            .get_document("$push")
            .unwrap()
            .get_document("participants.list")
            .unwrap()
            .get_array("$each")
            .unwrap();
        assert_eq!(pushed.len(), 2);
    }

    #[test]
    fn joins_already_listed_or_repeated_in_the_batch_are_already_applied() {
        // e1 is stored already; e2 comes twice in the batch (a redelivery inside one batch).
        let ops = [
            join("a1", "e1", "u1"),
            join("a1", "e2", "u2"),
            join("a1", "e2", "u2"),
        ];
        let plan = plan(&ops, by_activity(&ops), existing(&[("a1", 1, &["e1"])]));
        assert_eq!(
            plan.settled,
            [
                (0, Outcome::AlreadyApplied, Some(1), false),
                (2, Outcome::AlreadyApplied, Some(1), false),
            ]
        );
        assert_eq!(plan.pending, [(vec![1], 2)]);
    }

    #[test]
    fn a_join_found_listed_by_this_same_message_says_so() {
        // A redelivery of the message at 0/7 after its first delivery wrote the entry.
        let mut ops = [join("a1", "e1", "u1"), join("a1", "e2", "u2")];
        for (op, offset) in ops.iter_mut().zip([7_i64, 9]) {
            if let WriteOp::Join { entry, .. } = op {
                entry.insert("source_partition", 0);
                entry.insert("source_offset", offset);
            }
        }
        let here = |offset| {
            Some(Source {
                partition: 0,
                offset,
            })
        };
        let stored = HashMap::from([(
            "a1".to_string(),
            Existing {
                count: 2,
                events: HashMap::from([("e1".into(), here(7)), ("e2".into(), here(3))]),
            },
        )]);
        let plan = plan(&ops, by_activity(&ops), stored);
        assert_eq!(
            plan.settled,
            [
                (0, Outcome::AlreadyApplied, Some(2), true),
                (1, Outcome::AlreadyApplied, Some(2), false),
            ]
        );
    }

    #[test]
    fn an_activity_known_by_its_count_alone_plans_every_join_as_new_guarded_by_that_count() {
        // A redelivered e1 cannot be told from the count alone: the $nin guard keeps the
        // statement from running again, and the reply says it did not match (Contended).
        let ops = [join("a1", "e1", "u1"), join("a1", "e2", "u2")];
        let known = HashMap::from([("a1".to_string(), Existing::counted(4))]);
        let plan = plan(&ops, by_activity(&ops), known);
        assert!(plan.settled.is_empty());
        assert_eq!(plan.pending, [(vec![0, 1], 6)]);
        assert_eq!(plan.activities, ["a1"]);
        let guard = plan.statements[0].get_document("q").unwrap();
        assert_eq!(guard.get_i64("participants.count").unwrap(), 4);
        assert_eq!(
            interpret(&doc! { "n": 0 }, &plan),
            Reply::Contended { matched: 0 }
        );
    }

    #[test]
    fn joins_of_a_missing_activity_send_nothing() {
        let ops = [join("nope", "e1", "u1")];
        let plan = plan(&ops, by_activity(&ops), existing(&[]));
        assert_eq!(plan.settled, [(0, Outcome::ActivityMissing, None, false)]);
        assert!(plan.statements.is_empty());
    }

    #[test]
    fn a_reply_settles_each_statement_or_says_it_was_contended() {
        let ops = [join("a1", "e1", "u1"), join("a2", "e2", "u2")];
        let plan = plan(
            &ops,
            by_activity(&ops),
            existing(&[("a1", 0, &[]), ("a2", 4, &[])]),
        );
        assert_eq!(
            interpret(&doc! { "n": 2, "ok": 1 }, &plan),
            Reply::Settled(vec![(0, Outcome::Applied, 1), (1, Outcome::Applied, 5)])
        );
        let rejected = doc! { "n": 1, "writeErrors": [
            { "index": 1, "code": 17419, "errmsg": "document too large" }
        ] };
        assert_eq!(
            interpret(&rejected, &plan),
            Reply::Settled(vec![
                (0, Outcome::Applied, 1),
                (
                    1,
                    Outcome::Rejected("document too large (code 17419)".into()),
                    5
                ),
            ])
        );
        assert_eq!(
            interpret(&doc! { "n": 1 }, &plan),
            Reply::Contended { matched: 1 }
        );
    }

    #[test]
    fn a_contended_update_is_told_apart_by_what_the_read_after_it_lists() {
        let ops = [
            join("a1", "e1", "u1"),
            join("a2", "e2", "u2"),
            join("a2", "e3", "u3"),
        ];
        let plan = plan(
            &ops,
            by_activity(&ops),
            HashMap::from([
                ("a1".to_string(), Existing::counted(0)),
                ("a2".to_string(), Existing::counted(7)),
            ]),
        );
        // a1's statement ran; a2's count was out of date, so its statement did not.
        let after = existing(&[("a1", 1, &["e1"]), ("a2", 9, &["x", "y"])]);
        assert_eq!(matched_now(&ops, &plan, &after, 1), Some(vec![true, false]));
        // Both listed but one ran: one of them was listed by an earlier delivery; which, the
        // read cannot say.
        let after = existing(&[("a1", 1, &["e1"]), ("a2", 9, &["e2", "e3"])]);
        assert_eq!(matched_now(&ops, &plan, &after, 1), None);
        assert_eq!(matched_now(&ops, &plan, &after, 2), Some(vec![true, true]));
        // Half listed: that statement did not run (its other join is new).
        let after = existing(&[("a1", 0, &[]), ("a2", 8, &["e2"])]);
        assert_eq!(
            matched_now(&ops, &plan, &after, 0),
            Some(vec![false, false])
        );
    }

    #[test]
    fn existing_reads_the_projected_document() {
        let d = doc! { "_id": "a1", "participants": { "count": 2_i64, "list": [
            { "source_event_id": "e1" },
            { "source_event_id": "e2", "source_partition": 3_i32, "source_offset": 40_i64 }
        ] } };
        let (id, e) = Existing::of(&d);
        assert_eq!(id, "a1");
        assert_eq!(e.count, 2);
        assert_eq!(
            e.events,
            HashMap::from([
                ("e1".to_string(), None),
                (
                    "e2".to_string(),
                    Some(Source {
                        partition: 3,
                        offset: 40
                    })
                )
            ])
        );
    }
}
