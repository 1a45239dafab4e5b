//! The global statistics, exact with any number of consumers: only increments, each guarded by
//! how far every partition has been counted.
//!
//! The `global` document holds the totals per event type and, per partition, the highest
//! offset already counted (`counted_through.p<N>`; `counted_through.<Aggregate>_p<N>` for the
//! Outbox Event Router's topics, whose partition numbers repeat from topic to topic). A batch adds only the events of messages
//! beyond that mark, in one update that matches only while the marks it read are still there:
//! a consumer that lost its partitions in a rebalance, or a batch delivered again after a
//! crash, cannot count an offset twice, and no consumer ever overwrites another's totals (a
//! `$set` of recomputed totals would, while others increment them). An event counts for the
//! message that created its write ([`super::WriteResult::by_this_message`]), so a copy of the
//! same event at another offset (Debezium resends after a crash) never counts.
//!
//! Decisions here are pure ([`tally`], [`guard`], [`update`]); [`super::ReadModels`] runs them.

use std::collections::BTreeMap;

use mongodb::bson::{doc, Bson, DateTime, Document};

use crate::event::{AggregateType, EventType};

/// The `_id` of the document with the global totals.
pub const GLOBAL: &str = "global";

/// Where the global document keeps the counted marks.
const MARKS: &str = "counted_through";

/// Where the global statistics document counts events of type `t`.
pub fn statistics_key(t: EventType) -> String {
    format!("events.{t}")
}

/// The topic a partition belongs to, as far as the counted marks need to tell: partition 0
/// of the users' topic and partition 0 of the activities' are two marks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// The one change-event topic (`--routing raw`).
    #[default]
    Raw,
    /// An aggregate's topic under the Outbox Event Router.
    Aggregate(AggregateType),
}

/// A partition of a [`Lane`].
pub type Part = (Lane, i32);

/// The mark's field within `counted_through`.
fn mark_name((lane, partition): Part) -> String {
    match lane {
        Lane::Raw => format!("p{partition}"),
        Lane::Aggregate(a) => format!("{a}_p{partition}"),
    }
}

/// [`mark_name`] read back.
fn parse_mark_name(k: &str) -> Option<Part> {
    let (lane, p) = match k.split_once("_p") {
        Some((a, p)) => (Lane::Aggregate(AggregateType::parse(a)?), p),
        None => (Lane::Raw, k.strip_prefix('p')?),
    };
    Some((lane, p.parse().ok()?))
}

fn mark_key(part: Part) -> String {
    format!("{MARKS}.{}", mark_name(part))
}

/// An event to count: the message (partition, offset) whose write created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// The message's topic, as a lane.
    pub lane: Lane,
    /// The message's partition.
    pub partition: i32,
    /// The message's offset.
    pub offset: i64,
    /// The event's type.
    pub event_type: EventType,
}

/// The highest offset counted per partition, as last read or written; a partition absent
/// from the map has nothing counted yet.
pub type Marks = BTreeMap<Part, i64>;

/// The marks in a `global` document (empty when there is none).
pub fn marks_of(global: Option<&Document>) -> Marks {
    let Some(m) = global.and_then(|g| g.get_document(MARKS).ok()) else {
        return Marks::new();
    };
    m.iter()
        .filter_map(|(k, v)| {
            let p = parse_mark_name(k)?;
            let o = match v {
                Bson::Int64(o) => *o,
                Bson::Int32(o) => *o as i64,
                _ => return None,
            };
            Some((p, o))
        })
        .collect()
}

/// What one batch adds: totals per type, and the new mark of each partition it touches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Events to add per type.
    pub add: BTreeMap<EventType, i64>,
    /// Per partition: the mark the update expects (as known) and the one it sets.
    pub marks: BTreeMap<Part, (Option<i64>, i64)>,
}

impl Tally {
    /// Nothing to add and no mark to move.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

/// What `counted` adds beyond `marks`: messages at or below their partition's mark were
/// counted before (by an earlier delivery, or by another consumer) and add nothing.
/// A message delivered twice among `counted` (a consumer given its partition back after a
/// rebalance reads again from the committed offset, within one settling window) counts once.
pub fn tally(counted: &[Counted], marks: &Marks) -> Tally {
    let mut t = Tally::default();
    let mut seen = std::collections::HashSet::new();
    for c in counted {
        let part = (c.lane, c.partition);
        let known = marks.get(&part).copied();
        if known.is_some_and(|m| c.offset <= m) || !seen.insert((part, c.offset)) {
            continue;
        }
        *t.add.entry(c.event_type).or_default() += 1;
        let e = t.marks.entry(part).or_insert((known, c.offset));
        e.1 = e.1.max(c.offset);
    }
    t
}

/// The filter that matches the global document only while every mark the tally expects is
/// still there.
pub fn guard(t: &Tally) -> Document {
    let mut q = doc! { "_id": GLOBAL };
    for (p, (expected, _)) in &t.marks {
        match expected {
            Some(m) => q.insert(mark_key(*p), *m),
            None => q.insert(mark_key(*p), doc! { "$exists": false }),
        };
    }
    q
}

/// The update: increments only, and the new marks.
pub fn update(t: &Tally, now: DateTime) -> Document {
    let mut set = doc! { "updated_at": now };
    for (p, (_, to)) in &t.marks {
        set.insert(mark_key(*p), *to);
    }
    // Every type, 0 included: the document that the first update creates then lists them in
    // one order, whatever types its first batch held.
    let inc: Document = EventType::ALL
        .iter()
        .map(|ty| {
            let n = t.add.get(ty).copied().unwrap_or(0);
            (statistics_key(*ty), Bson::Int64(n))
        })
        .collect();
    doc! { "$set": set, "$inc": inc }
}

/// The statements of one `update` command on the statistics collection: the guarded global
/// update first (when the batch counts anything beyond the marks), then each touched
/// activity's participant count (`$max`, so replays and reordering cannot lower or double
/// it). One command instead of two: the statistics cost a batch one round trip and one
/// command on the server.
pub fn statements(
    t: &Tally,
    activity_counts: &BTreeMap<String, i64>,
    now: DateTime,
) -> Vec<Document> {
    let global =
        (!t.is_empty()).then(|| doc! { "q": guard(t), "u": update(t, now), "upsert": true });
    global
        .into_iter()
        .chain(activity_counts.iter().map(|(id, n)| {
            doc! {
                "q": { "_id": format!("activity:{id}") },
                "u": { "$max": { "participant_count": n }, "$setOnInsert": { "activity_id": id } },
                "upsert": true,
            }
        }))
        .collect()
}

/// What the server did with the guarded global statement (the first of [`statements`]),
/// read from the command's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Global {
    /// Matched or created: the tally is counted.
    Counted,
    /// The guard missed (a mark moved: another consumer, or this one's earlier delivery):
    /// read the marks and tally again.
    MarksMoved,
    /// Refused for another reason (the server's code and message).
    Refused(i32, String),
}

/// Reads [`Global`] from the reply of an unordered `update` of `statements` statements whose
/// first is the guarded global one and every other an upsert. The reply's `n` counts the
/// statements that matched or upserted; each other statement counts once unless it failed,
/// so what is left is the global statement's.
pub fn global_outcome(reply: &Document, statements: usize) -> Global {
    let errors: Vec<&Document> = reply
        .get_array("writeErrors")
        .map(|a| a.iter().filter_map(Bson::as_document).collect())
        .unwrap_or_default();
    let index = |d: &Document| {
        d.get_i32("index")
            .map(i64::from)
            .or_else(|_| d.get_i64("index"))
            .unwrap_or(-1)
    };
    if let Some(e) = errors.iter().find(|e| index(e) == 0) {
        let code = e.get_i32("code").unwrap_or_default();
        // The upsert found `global` there: the guard missed.
        if code == super::DUPLICATE_KEY {
            return Global::MarksMoved;
        }
        let why = e.get_str("errmsg").unwrap_or_default();
        return Global::Refused(code, super::first_line(why).to_owned());
    }
    let upserted = reply
        .get_array("upserted")
        .map(|a| {
            a.iter()
                .filter_map(Bson::as_document)
                .any(|d| index(d) == 0)
        })
        .unwrap_or(false);
    let n = reply
        .get_i32("n")
        .map(i64::from)
        .or_else(|_| reply.get_i64("n"))
        .unwrap_or(0);
    let others = statements.saturating_sub(1) - errors.len().min(statements.saturating_sub(1));
    if upserted || n - others as i64 >= 1 {
        Global::Counted
    } else {
        Global::MarksMoved
    }
}

/// After a successful update, the marks it set.
pub fn advance(marks: &mut Marks, t: &Tally) {
    for (p, (_, to)) in &t.marks {
        marks.insert(*p, *to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_statement_is_read_from_the_counts_of_one_reply() {
        // Three statements: global, two activities (each upserts or matches: counts once).
        let ok = doc! { "ok": 1.0, "n": 3, "nModified": 3 };
        assert_eq!(global_outcome(&ok, 3), Global::Counted);
        let missed = doc! { "ok": 1.0, "n": 2, "nModified": 2 };
        assert_eq!(global_outcome(&missed, 3), Global::MarksMoved);
        let created = doc! { "ok": 1.0, "n": 3, "upserted": [ { "index": 0, "_id": "global" } ] };
        assert_eq!(global_outcome(&created, 3), Global::Counted);
        let moved = doc! { "ok": 1.0, "n": 2, "writeErrors": [ { "index": 0, "code": 11000, "errmsg": "E11000 dup" } ] };
        assert_eq!(global_outcome(&moved, 3), Global::MarksMoved);
        // An activity statement that failed does not count in n, nor against the global one.
        let one_failed = doc! { "ok": 1.0, "n": 2, "writeErrors": [ { "index": 2, "code": 121, "errmsg": "no" } ] };
        assert_eq!(global_outcome(&one_failed, 3), Global::Counted);
        let refused = doc! { "ok": 1.0, "n": 0, "writeErrors": [ { "index": 0_i64, "code": 2, "errmsg": "bad\nmore" } ] };
        assert_eq!(
            global_outcome(&refused, 1),
            Global::Refused(2, "bad".into())
        );
    }

    #[test]
    fn one_command_holds_the_guarded_totals_first_then_each_activity() {
        let counted = [c(0, 4, EventType::ParticipantJoined)];
        let t = tally(&counted, &Marks::new());
        let counts = BTreeMap::from([("a1".to_owned(), 3_i64), ("a2".to_owned(), 1)]);
        let s = statements(&t, &counts, DateTime::from_millis(0));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].get_document("q").unwrap(), &guard(&t));
        assert_eq!(
            s[2].get_document("q").unwrap(),
            &doc! { "_id": "activity:a2" }
        );
        // Nothing beyond the marks: the activities alone.
        assert_eq!(
            statements(&Tally::default(), &counts, DateTime::from_millis(0)).len(),
            2
        );
    }

    fn c(partition: i32, offset: i64, event_type: EventType) -> Counted {
        Counted {
            lane: Lane::Raw,
            partition,
            offset,
            event_type,
        }
    }

    #[test]
    fn only_messages_beyond_the_mark_count_and_the_mark_moves_to_the_last() {
        let counted = [
            c(0, 5, EventType::UserCreated),
            c(0, 9, EventType::UserCreated),
            c(1, 3, EventType::ParticipantJoined),
            c(2, 1, EventType::ActivityCreated),
        ];
        let marks = Marks::from([((Lane::Raw, 0), 5), ((Lane::Raw, 1), 7)]);
        let t = tally(&counted, &marks);
        assert_eq!(
            t.add,
            BTreeMap::from([(EventType::UserCreated, 1), (EventType::ActivityCreated, 1)])
        );
        assert_eq!(
            t.marks,
            BTreeMap::from([((Lane::Raw, 0), (Some(5), 9)), ((Lane::Raw, 2), (None, 1))])
        );
        // Partition 1 was counted past offset 3 already: it is left out of the guard too.
        let g = guard(&t);
        assert_eq!(
            g,
            doc! { "_id": "global", "counted_through.p0": 5_i64, "counted_through.p2": { "$exists": false } }
        );
    }

    #[test]
    fn a_message_delivered_twice_in_one_window_counts_once() {
        let counted = [
            c(0, 10, EventType::UserCreated),
            c(0, 11, EventType::ActivityCreated),
            c(0, 10, EventType::UserCreated),
            c(0, 11, EventType::ActivityCreated),
            c(0, 12, EventType::UserCreated),
        ];
        let t = tally(&counted, &Marks::new());
        assert_eq!(
            t.add,
            BTreeMap::from([(EventType::UserCreated, 2), (EventType::ActivityCreated, 1)])
        );
        assert_eq!(t.marks[&(Lane::Raw, 0)], (None, 12));
    }

    #[test]
    fn a_batch_delivered_again_adds_nothing() {
        let counted = [
            c(0, 10, EventType::UserCreated),
            c(0, 11, EventType::UserCreated),
        ];
        let mut marks = Marks::new();
        let first = tally(&counted, &marks);
        assert_eq!(first.add[&EventType::UserCreated], 2);
        advance(&mut marks, &first);
        assert!(tally(&counted, &marks).is_empty());
        // Redelivered from offset 11 on, with one new message behind it.
        let again = [
            c(0, 11, EventType::UserCreated),
            c(0, 12, EventType::ActivityCreated),
        ];
        let t = tally(&again, &marks);
        assert_eq!(t.add, BTreeMap::from([(EventType::ActivityCreated, 1)]));
        assert_eq!(t.marks[&(Lane::Raw, 0)], (Some(11), 12));
    }

    #[test]
    fn the_same_partition_of_two_aggregate_topics_is_two_marks() {
        let lane = |a| Lane::Aggregate(a);
        let user = Counted {
            lane: lane(AggregateType::User),
            partition: 0,
            offset: 40,
            event_type: EventType::UserCreated,
        };
        let activity = Counted {
            lane: lane(AggregateType::Activity),
            partition: 0,
            offset: 7,
            event_type: EventType::ActivityCreated,
        };
        // The users' topic is counted through offset 40 already; the activities' offset 7 is
        // new, though lower.
        let marks = Marks::from([((lane(AggregateType::User), 0), 40)]);
        let t = tally(&[user, activity], &marks);
        assert_eq!(t.add, BTreeMap::from([(EventType::ActivityCreated, 1)]));
        let now = DateTime::from_millis(0);
        assert_eq!(
            update(&t, now)
                .get_document("$set")
                .unwrap()
                .get_i64("counted_through.Activity_p0"),
            Ok(7)
        );
    }

    #[test]
    fn the_update_only_increments_and_marks() {
        let t = tally(&[c(3, 42, EventType::UserCreated)], &Marks::new());
        let now = DateTime::from_millis(0);
        assert_eq!(
            update(&t, now),
            doc! {
                "$set": { "updated_at": now, "counted_through.p3": 42_i64 },
                "$inc": {
                    "events.UserCreated": 1_i64,
                    "events.ActivityCreated": 0_i64,
                    "events.ParticipantJoined": 0_i64,
                },
            }
        );
    }

    #[test]
    fn marks_are_read_back_from_the_document() {
        let g = doc! { "_id": "global", "counted_through": { "p0": 9_i64, "p12": 3_i32, "x": 1, "User_p0": 4_i64, "Order_p1": 2_i64 } };
        assert_eq!(
            marks_of(Some(&g)),
            Marks::from([
                ((Lane::Raw, 0), 9),
                ((Lane::Raw, 12), 3),
                ((Lane::Aggregate(AggregateType::User), 0), 4)
            ])
        );
        assert!(marks_of(None).is_empty());
    }
}
