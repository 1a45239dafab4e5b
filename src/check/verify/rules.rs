//! What counts as verified, as pure functions over what was read: every outbox event traced
//! exactly once in the read models, references pointing to users, counts and access lists
//! consistent, statistics equal to the collections.

use std::collections::{BTreeMap, HashMap, HashSet};

use mongodb::bson::{Bson, Document};
use serde::Serialize;
use uuid::Uuid;

use crate::event::EventType;
use crate::pipeline::outbox::StoredEvent;

/// Everything verification reads: the outbox and the three read-model collections.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every outbox row.
    pub events: Vec<StoredEvent>,
    /// `users`, projected to `metadata.source_event_id` and `allowed_users`.
    pub users: Vec<Document>,
    /// `activities`, projected to `creator_id`, `metadata.source_event_id`, `participants`
    /// and `allowed_users`.
    pub activities: Vec<Document>,
    /// The `statistics` document `global`, if any.
    pub global_statistics: Option<Document>,
}

/// Per event type: expected (PostgreSQL) and found (MongoDB).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TypeCount {
    /// Rows in event_outbox.
    pub expected: u64,
    /// Traced in the read models.
    pub found: u64,
}

/// What the rules found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    /// Per type as the outbox names it.
    pub by_type: BTreeMap<String, TypeCount>,
    /// Outbox events found nowhere in the read models, in outbox order.
    pub missing_ids: Vec<Uuid>,
    /// Outbox events found more than once.
    pub duplicated_ids: Vec<Uuid>,
    /// Read-model entries whose event is not in the outbox (left from an earlier run).
    pub extra: u64,
    /// Referential-integrity and consistency problems, one sentence each.
    pub issues: Vec<String>,
}

impl Findings {
    /// Outbox events traced at least once.
    pub fn found(&self) -> u64 {
        self.by_type.values().map(|c| c.found).sum()
    }

    /// Nothing missing, nothing duplicated, no integrity problem.
    pub fn passed(&self) -> bool {
        self.missing_ids.is_empty() && self.duplicated_ids.is_empty() && self.issues.is_empty()
    }

    /// Adds the findings of another store's events (a capacity step's, verified before its
    /// read models were cleared): counts add up, lists follow one another.
    pub fn merge(&mut self, other: Findings) {
        for (t, c) in other.by_type {
            let e = self.by_type.entry(t).or_default();
            e.expected += c.expected;
            e.found += c.found;
        }
        self.missing_ids.extend(other.missing_ids);
        self.duplicated_ids.extend(other.duplicated_ids);
        self.extra += other.extra;
        self.issues.extend(other.issues);
    }
}

/// Applies every rule.
pub fn check(o: &Observed) -> Findings {
    let mut issues = Vec::new();
    let mut seen: HashMap<Uuid, u32> = HashMap::new();
    let user_ids = check_users(&o.users, &mut seen, &mut issues);
    let participants = check_activities(&o.activities, &user_ids, &mut seen, &mut issues);
    check_statistics(
        o.global_statistics.as_ref(),
        [
            (EventType::UserCreated, o.users.len() as i64),
            (EventType::ActivityCreated, o.activities.len() as i64),
            (EventType::ParticipantJoined, participants),
        ],
        &mut issues,
    );
    let mut f = trace(&o.events, &seen);
    f.issues = issues;
    f
}

/// Users: each traced to its event, and readable by itself only. Returns the user ids.
fn check_users(
    users: &[Document],
    seen: &mut HashMap<Uuid, u32>,
    issues: &mut Vec<String>,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    for u in users {
        let id = u.get_str("_id").unwrap_or_default().to_owned();
        note(seen, str_at(u, &["metadata", "source_event_id"]));
        let allowed = string_list(u.get("allowed_users"));
        if allowed != [id.clone()] {
            issues.push(format!(
                "user {id}: allowed_users is {allowed:?}, expected only itself"
            ));
        }
        ids.insert(id);
    }
    ids
}

/// Activities: creators and participants are users, the count matches the list, and access
/// is the creator plus the participants. Returns the participant entries over all activities.
fn check_activities(
    activities: &[Document],
    users: &HashSet<String>,
    seen: &mut HashMap<Uuid, u32>,
    issues: &mut Vec<String>,
) -> i64 {
    let mut participants = 0i64;
    for a in activities {
        let id = a.get_str("_id").unwrap_or_default();
        note(seen, str_at(a, &["metadata", "source_event_id"]));
        let creator = a.get_str("creator_id").unwrap_or_default();
        if !users.contains(creator) {
            issues.push(format!("activity {id}: creator {creator} is not a user"));
        }
        let parts = a.get_document("participants").ok();
        let list: &[Bson] = parts
            .and_then(|p| p.get_array("list").ok())
            .map_or(&[], Vec::as_slice);
        let count = parts.and_then(|p| p.get_i64("count").ok()).unwrap_or(-1);
        if count != list.len() as i64 {
            issues.push(format!(
                "activity {id}: participants.count {count} but {} entries",
                list.len()
            ));
        }
        participants += list.len() as i64;
        let mut expected_allowed: HashSet<String> = HashSet::from([creator.to_owned()]);
        for p in list.iter().filter_map(Bson::as_document) {
            note(seen, p.get_str("source_event_id").ok());
            let uid = p.get_str("user_id").unwrap_or_default();
            if !users.contains(uid) {
                issues.push(format!("activity {id}: participant {uid} is not a user"));
            }
            expected_allowed.insert(uid.to_owned());
        }
        let allowed: HashSet<String> = string_list(a.get("allowed_users")).into_iter().collect();
        if allowed != expected_allowed {
            issues.push(format!(
                "activity {id}: allowed_users differs from creator + participants"
            ));
        }
    }
    participants
}

/// The global statistics must equal what the collections hold.
fn check_statistics(
    global: Option<&Document>,
    actual: [(EventType, i64); 3],
    issues: &mut Vec<String>,
) {
    for (t, actual) in actual {
        let stored = global
            .and_then(|g| g.get_document("events").ok())
            .and_then(|e| match e.get(t.as_str()) {
                Some(Bson::Int64(n)) => Some(*n),
                Some(Bson::Int32(n)) => Some(*n as i64),
                _ => None,
            })
            .unwrap_or(0);
        if stored != actual {
            issues.push(format!(
                "statistics: {t} total is {stored} but the read models hold {actual}"
            ));
        }
    }
}

/// Each outbox event against how often the read models carry it.
fn trace(events: &[StoredEvent], seen: &HashMap<Uuid, u32>) -> Findings {
    let mut f = Findings::default();
    for e in events {
        let c = f.by_type.entry(e.event_type.clone()).or_default();
        c.expected += 1;
        match seen.get(&e.event_id) {
            Some(n) => {
                c.found += 1;
                if *n > 1 {
                    f.duplicated_ids.push(e.event_id);
                }
            }
            None => f.missing_ids.push(e.event_id),
        }
    }
    let outbox: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    f.extra = seen.keys().filter(|id| !outbox.contains(id)).count() as u64;
    f
}

fn note(seen: &mut HashMap<Uuid, u32>, event_id: Option<&str>) {
    if let Some(ev) = event_id.and_then(|s| Uuid::parse_str(s).ok()) {
        *seen.entry(ev).or_default() += 1;
    }
}

fn str_at<'a>(d: &'a Document, path: &[&str]) -> Option<&'a str> {
    let (last, init) = path.split_last()?;
    let mut cur = d;
    for p in init {
        cur = cur.get_document(p).ok()?;
    }
    cur.get_str(last).ok()
}

fn string_list(b: Option<&Bson>) -> Vec<String> {
    match b {
        Some(Bson::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// What to do about events that did not arrive in time, naming the cause the health line
/// showed while the run waited (`problem`) when it showed one: "the connector is UNASSIGNED"
/// says more than "check the stack". Nothing is lost while a cause holds them back: they are
/// in the outbox, and arrive once it clears.
pub fn missing_hint(problem: Option<&str>) -> String {
    const GENERIC: &str = "check `scripts/stack.sh status` and the connector with \
        `pipedemo setup --keep`";
    match problem {
        Some(p) => {
            let p: String = p.chars().take(200).collect();
            format!(
                "while waiting the health line showed: {p}. They are in the outbox and \
                 arrive once that clears (`pipedemo verify` counts them then); otherwise {GENERIC}"
            )
        }
        None => GENERIC.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn findings_of_two_stores_add_up() {
        let a_id = Uuid::from_u128(1);
        let b_id = Uuid::from_u128(2);
        let mut a = Findings {
            by_type: BTreeMap::from([(
                "UserCreated".into(),
                TypeCount {
                    expected: 3,
                    found: 3,
                },
            )]),
            extra: 1,
            ..Findings::default()
        };
        let b = Findings {
            by_type: BTreeMap::from([
                (
                    "UserCreated".into(),
                    TypeCount {
                        expected: 2,
                        found: 1,
                    },
                ),
                (
                    "ActivityCreated".into(),
                    TypeCount {
                        expected: 4,
                        found: 4,
                    },
                ),
            ]),
            missing_ids: vec![b_id],
            duplicated_ids: vec![a_id],
            issues: vec!["statistics: 1 UserCreated counted, 2 in users".into()],
            ..Findings::default()
        };
        assert!(a.passed());
        a.merge(b);
        assert_eq!(
            a.by_type["UserCreated"],
            TypeCount {
                expected: 5,
                found: 4
            }
        );
        assert_eq!(a.by_type["ActivityCreated"].found, 4);
        assert_eq!(a.found(), 8);
        assert_eq!(
            (a.missing_ids, a.duplicated_ids.clone()),
            (vec![b_id], vec![a_id])
        );
        assert_eq!(a.extra, 1);
        assert_eq!(a.issues.len(), 1);
    }

    /// A consistent world: one user, one activity by that user, one join by the same user.
    struct World {
        user: Uuid,
        activity: Uuid,
        events: [Uuid; 3],
        observed: Observed,
    }

    fn stored(event_id: Uuid, aggregate_id: Uuid, t: EventType) -> StoredEvent {
        StoredEvent {
            event_id,
            aggregate_id,
            event_type: t.as_str().into(),
        }
    }

    fn world() -> World {
        let (user, activity) = (Uuid::new_v4(), Uuid::new_v4());
        let events = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let (u, a) = (user.to_string(), activity.to_string());
        let observed = Observed {
            events: vec![
                stored(events[0], user, EventType::UserCreated),
                stored(events[1], activity, EventType::ActivityCreated),
                stored(events[2], activity, EventType::ParticipantJoined),
            ],
            users: vec![doc! {
                "_id": &u,
                "metadata": { "source_event_id": events[0].to_string() },
                "allowed_users": [&u],
            }],
            activities: vec![doc! {
                "_id": &a,
                "creator_id": &u,
                "metadata": { "source_event_id": events[1].to_string() },
                "participants": { "count": 1_i64, "list": [
                    { "user_id": &u, "source_event_id": events[2].to_string() }
                ] },
                "allowed_users": [&u],
            }],
            global_statistics: Some(doc! { "_id": "global", "events": {
                "UserCreated": 1_i64, "ActivityCreated": 1_i64, "ParticipantJoined": 1_i64,
            } }),
        };
        World {
            user,
            activity,
            events,
            observed,
        }
    }

    fn participants(o: &mut Observed) -> &mut Document {
        o.activities[0].get_document_mut("participants").unwrap()
    }

    #[test]
    fn a_consistent_world_passes() {
        let f = check(&world().observed);
        assert_eq!(f.issues, Vec::<String>::new());
        assert!(f.passed());
        assert_eq!(f.found(), 3);
        assert_eq!(
            f.by_type["ParticipantJoined"],
            TypeCount {
                expected: 1,
                found: 1
            }
        );
        assert_eq!(f.extra, 0);
    }

    #[test]
    fn an_event_found_nowhere_is_missing() {
        let mut w = world();
        let lost = Uuid::new_v4();
        w.observed
            .events
            .push(stored(lost, w.user, EventType::UserCreated));
        let f = check(&w.observed);
        assert_eq!(f.missing_ids, [lost]);
        assert_eq!(f.found(), 3);
        assert_eq!(
            f.by_type["UserCreated"],
            TypeCount {
                expected: 2,
                found: 1
            }
        );
        assert!(!f.passed());
    }

    #[test]
    fn a_join_applied_twice_is_duplicated_and_its_count_checked() {
        let mut w = world();
        let entry =
            doc! { "user_id": w.user.to_string(), "source_event_id": w.events[2].to_string() };
        let p = participants(&mut w.observed);
        p.get_array_mut("list").unwrap().push(entry.into());
        p.insert("count", 2_i64);
        w.observed.global_statistics = Some(doc! { "events": {
            "UserCreated": 1_i64, "ActivityCreated": 1_i64, "ParticipantJoined": 2_i64,
        } });
        let f = check(&w.observed);
        assert_eq!(f.duplicated_ids, [w.events[2]]);
        assert!(f.missing_ids.is_empty() && f.issues.is_empty());
        assert!(!f.passed());
    }

    #[test]
    fn a_wrong_participant_count_is_an_issue() {
        let mut w = world();
        participants(&mut w.observed).insert("count", 3_i64);
        let f = check(&w.observed);
        assert_eq!(
            f.issues,
            [format!(
                "activity {}: participants.count 3 but 1 entries",
                w.activity
            )]
        );
    }

    #[test]
    fn references_to_unknown_users_are_broken() {
        let mut w = world();
        let ghost = Uuid::new_v4().to_string();
        w.observed.activities[0].insert("creator_id", &ghost);
        let f = check(&w.observed);
        assert!(f.issues.contains(&format!(
            "activity {}: creator {ghost} is not a user",
            w.activity
        )));
        // Access follows the creator, so it is flagged as well.
        assert!(f.issues.iter().any(|i| i.contains("allowed_users differs")));
    }

    #[test]
    fn access_lists_and_statistics_must_match() {
        let mut w = world();
        let other = Uuid::new_v4().to_string();
        w.observed.users[0].insert("allowed_users", vec![w.user.to_string(), other]);
        w.observed.global_statistics = None;
        let f = check(&w.observed);
        assert_eq!(f.issues.len(), 4, "{:#?}", f.issues);
        assert!(f.issues[0].ends_with("expected only itself"));
        assert_eq!(
            f.issues[1],
            "statistics: UserCreated total is 0 but the read models hold 1"
        );
    }

    #[test]
    fn read_models_of_other_runs_are_extra_not_failures() {
        let mut w = world();
        w.observed.events.truncate(2);
        // The join's event is no longer in the outbox.
        let f = check(&w.observed);
        assert_eq!(f.extra, 1);
        assert!(f.passed());
    }

    #[test]
    fn a_run_that_waited_names_what_held_its_events_back() {
        let h = missing_hint(Some("Debezium connector UNASSIGNED"));
        assert!(h.contains("Debezium connector UNASSIGNED"), "{h}");
        assert!(h.contains("arrive once that clears"), "{h}");
        let long = "x".repeat(10_000);
        assert!(missing_hint(Some(&long)).len() < 600);
        assert!(missing_hint(None).starts_with("check `scripts/stack.sh status`"));
    }
}
