//! Realistic outbox events with referential integrity, made with `fake`.
//!
//! The mix is exact: 50 % `UserCreated`, 30 % `ActivityCreated`, 20 % `ParticipantJoined`
//! (rounded down, the remainder to users). Types are interleaved in those proportions rather than
//! sent in blocks, and every reference points to something generated earlier in the same run:
//! an activity's creator is an earlier user, a join names an earlier activity and an earlier
//! user who has not joined it yet.

use std::collections::HashSet;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use fake::faker::address::en::{BuildingNumber, CityName, StreetName};
use fake::faker::company::en::CatchPhrase;
use fake::faker::internet::en::{SafeEmail, Username};
use fake::faker::lorem::en::{Paragraph, Sentence};
use fake::faker::name::en::{FirstName, LastName};
use fake::Fake;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

use crate::event::EventType;
use crate::pipeline::outbox::NewEvent;

/// How many events of each type a run of `total` events has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// `UserCreated`.
    pub users: u64,
    /// `ActivityCreated`.
    pub activities: u64,
    /// `ParticipantJoined`.
    pub joins: u64,
}

impl Mix {
    /// 50/30/20, rounded down, remainder to users.
    pub fn for_total(total: u64) -> Mix {
        let activities = total * 3 / 10;
        let joins = total * 2 / 10;
        Mix {
            users: total - activities - joins,
            activities,
            joins,
        }
    }
}

struct Activity {
    id: Uuid,
    members: HashSet<Uuid>,
}

/// Generates a run's events, in insertion order.
pub fn generate(total: u64, seed: Option<u64>) -> Vec<NewEvent> {
    Generator::new(total, seed).collect()
}

/// The events of a run, one at a time (a large run never has to be in memory whole).
pub struct Generator {
    rng: StdRng,
    total: u64,
    next: u64,
    targets: [u64; 3],
    emitted: [u64; 3],
    users: Vec<Uuid>,
    activities: Vec<Activity>,
}

impl Generator {
    /// A generator of `total` events; the same seed gives the same data.
    pub fn new(total: u64, seed: Option<u64>) -> Self {
        let mix = Mix::for_total(total);
        Generator {
            rng: match seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            },
            total,
            next: 0,
            targets: [mix.users, mix.activities, mix.joins],
            emitted: [0; 3],
            users: Vec::new(),
            activities: Vec::new(),
        }
    }
}

impl Iterator for Generator {
    type Item = NewEvent;

    fn next(&mut self) -> Option<NewEvent> {
        if self.next == self.total {
            return None;
        }
        let (i, total, targets, emitted) = (self.next, self.total, self.targets, self.emitted);
        self.next += 1;
        // The type furthest behind its share so far, among those whose references exist.
        let feasible = [true, !self.users.is_empty(), !self.activities.is_empty()];
        let kind = (0..3)
            .filter(|&k| emitted[k] < targets[k] && feasible[k])
            .max_by(|&a, &b| {
                let da = (targets[a] * (i + 1)) as f64 / total as f64 - emitted[a] as f64;
                let db = (targets[b] * (i + 1)) as f64 / total as f64 - emitted[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        self.emitted[kind] += 1;
        let rng = &mut self.rng;
        Some(match kind {
            0 => {
                let e = user_created(rng);
                self.users.push(e.aggregate_id);
                e
            }
            1 => {
                let creator = *self.users.choose(rng).expect("a user exists");
                let e = activity_created(rng, creator);
                self.activities.push(Activity {
                    id: e.aggregate_id,
                    members: HashSet::from([creator]),
                });
                e
            }
            _ => {
                let (activity, user) = pick_join(rng, &mut self.activities, &self.users);
                participant_joined(activity, user)
            }
        })
    }
}

/// The aggregates an event touches or refers to: its own, an activity's creator, a join's
/// user. An event must commit after every earlier one touching the same (see
/// `pipeline::writer`).
pub fn refers_to(e: &NewEvent) -> impl Iterator<Item = Uuid> + '_ {
    let field = match e.event_type {
        EventType::UserCreated => None,
        EventType::ActivityCreated => Some("creator_user_id"),
        EventType::ParticipantJoined => Some("user_id"),
    };
    let referred = field.and_then(|f| e.payload.get(f)?.as_str()?.parse::<Uuid>().ok());
    std::iter::once(e.aggregate_id).chain(referred)
}

/// A random activity and a user not in it yet (creator included), when one exists.
fn pick_join(rng: &mut StdRng, activities: &mut [Activity], users: &[Uuid]) -> (Uuid, Uuid) {
    for _ in 0..20 {
        let a = rng.random_range(0..activities.len());
        let u = *users.choose(rng).expect("a user exists");
        if activities[a].members.insert(u) {
            return (activities[a].id, u);
        }
    }
    for a in activities.iter_mut() {
        if let Some(u) = users.iter().find(|u| !a.members.contains(u)) {
            a.members.insert(*u);
            return (a.id, *u);
        }
    }
    // Every user is in every activity: a repeat join is still a valid event.
    (activities[0].id, users[0])
}

fn user_created(rng: &mut StdRng) -> NewEvent {
    let first: String = FirstName().fake_with_rng(rng);
    let last: String = LastName().fake_with_rng(rng);
    let username: String = Username().fake_with_rng(rng);
    let email: String = SafeEmail().fake_with_rng(rng);
    let bio: String = Sentence(6..16).fake_with_rng(rng);
    NewEvent {
        event_id: Uuid::new_v4(),
        aggregate_id: Uuid::new_v4(),
        event_type: EventType::UserCreated,
        payload: json!({
            "email": email,
            "username": username,
            "first_name": first,
            "last_name": last,
            "bio": bio.chars().take(200).collect::<String>(),
        }),
        run_tag: None,
    }
}

fn activity_created(rng: &mut StdRng, creator: Uuid) -> NewEvent {
    let title: String = CatchPhrase().fake_with_rng(rng);
    let description: String = Paragraph(2..4).fake_with_rng(rng);
    let city: String = CityName().fake_with_rng(rng);
    let number: String = BuildingNumber().fake_with_rng(rng);
    let street: String = StreetName().fake_with_rng(rng);
    let start = Utc::now() + ChronoDuration::minutes(rng.random_range(60..60 * 24 * 90));
    NewEvent {
        event_id: Uuid::new_v4(),
        aggregate_id: Uuid::new_v4(),
        event_type: EventType::ActivityCreated,
        payload: json!({
            "title": title,
            "description": description,
            "creator_user_id": creator.to_string(),
            "max_participants": rng.random_range(5..=50),
            "location_name": city,
            "location_address": format!("{number} {street}, {city}"),
            // Whole seconds, `Z`: as `%Y-%m-%dT%H:%M:%SZ` writes it, without parsing a format.
            "start_date": start.to_rfc3339_opts(SecondsFormat::Secs, true),
            "timezone": "UTC",
        }),
        run_tag: None,
    }
}

fn participant_joined(activity: Uuid, user: Uuid) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        aggregate_id: activity,
        event_type: EventType::ParticipantJoined,
        payload: json!({ "user_id": user.to_string() }),
        run_tag: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::envelope::OutboxEvent;
    use crate::pipeline::handlers::Registry;

    #[test]
    fn mix_is_exact_with_remainder_to_users() {
        assert_eq!(
            Mix::for_total(10),
            Mix {
                users: 5,
                activities: 3,
                joins: 2
            }
        );
        assert_eq!(
            Mix::for_total(7),
            Mix {
                users: 4,
                activities: 2,
                joins: 1
            }
        );
        assert_eq!(
            Mix::for_total(1),
            Mix {
                users: 1,
                activities: 0,
                joins: 0
            }
        );
    }

    #[test]
    fn references_point_backwards_and_counts_match() {
        for n in [1, 5, 10, 100, 1000] {
            let evs = generate(n, Some(n));
            assert_eq!(evs.len() as u64, n);
            let mix = Mix::for_total(n);
            let count = |t| evs.iter().filter(|e| e.event_type == t).count() as u64;
            assert_eq!(count(EventType::UserCreated), mix.users);
            assert_eq!(count(EventType::ActivityCreated), mix.activities);
            assert_eq!(count(EventType::ParticipantJoined), mix.joins);
            let mut users = HashSet::new();
            let mut acts = HashSet::new();
            let mut pairs = HashSet::new();
            for e in &evs {
                match e.event_type {
                    EventType::UserCreated => {
                        users.insert(e.aggregate_id.to_string());
                    }
                    EventType::ActivityCreated => {
                        assert!(users.contains(e.payload["creator_user_id"].as_str().unwrap()));
                        // Whole seconds in UTC, as handlers and the seeds' data write them.
                        let start = e.payload["start_date"].as_str().unwrap();
                        assert_eq!(start.len(), "2027-01-02T10:00:00Z".len(), "{start}");
                        assert!(
                            chrono::DateTime::parse_from_rfc3339(start).is_ok(),
                            "{start}"
                        );
                        assert!(start.ends_with('Z') && !start.contains('.'), "{start}");
                        acts.insert(e.aggregate_id);
                    }
                    EventType::ParticipantJoined => {
                        let u = e.payload["user_id"].as_str().unwrap().to_owned();
                        assert!(acts.contains(&e.aggregate_id), "join before its activity");
                        assert!(users.contains(&u), "join by an unknown user");
                        assert!(pairs.insert((e.aggregate_id, u)), "same user joined twice");
                    }
                }
            }
        }
    }

    #[test]
    fn generated_events_pass_their_handlers() {
        let r = Registry::standard();
        for (i, e) in generate(200, Some(7)).into_iter().enumerate() {
            let at = crate::pipeline::handlers::Source {
                partition: 0,
                offset: i as i64,
            };
            r.handle(&OutboxEvent::from_new(e, 1), at).unwrap();
        }
    }
}
