//! `pipedemo verify`: proves every outbox event landed exactly once in its read model, that the
//! read models are consistent, and reports latency from the metrics file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use serde::Serialize;
use uuid::Uuid;

use crate::config::Settings;
use crate::metrics::{self, MetricEvent};
use crate::outbox;
use crate::stats::{self, RunStats, Summary};
use crate::store::ReadModels;

/// Per event type: expected (PostgreSQL) and found (MongoDB).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TypeCount {
    /// Rows in event_outbox.
    pub expected: u64,
    /// Traced in the read models.
    pub found: u64,
}

/// The verification report (also written as JSON).
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Events in event_outbox.
    pub total_events: u64,
    /// Of those, traced in MongoDB.
    pub found_events: u64,
    /// found / total × 100.
    pub success_rate: f64,
    /// Per type.
    pub by_type: BTreeMap<String, TypeCount>,
    /// Event ids missing from the read models (at most 100 listed).
    pub missing_ids: Vec<Uuid>,
    /// Number missing.
    pub missing: u64,
    /// Event ids applied more than once.
    pub duplicated_ids: Vec<Uuid>,
    /// Read-model entries whose event is not in event_outbox (left from an earlier run).
    pub extra: u64,
    /// Referential-integrity and consistency problems.
    pub integrity_issues: Vec<String>,
    /// PASS or FAIL.
    pub integrity_check: &'static str,
    /// Latency by stage, from the metrics file.
    pub latency: BTreeMap<&'static str, Summary>,
    /// End-to-end latency by type.
    pub latency_by_type: BTreeMap<String, Summary>,
    /// Events/s from first T0 to last T5 of the measured events.
    pub throughput_eps: f64,
    /// Dead-lettered messages recorded in the metrics file.
    pub dead_lettered: u64,
    /// Latency samples below zero (clock resolution), recorded as 0.
    pub negative_samples: u64,
    /// The verdict on p95.
    pub verdict: String,
    /// A checksum of all read models (order-independent), for replay comparisons.
    pub checksum: Option<String>,
    /// True when nothing is missing or duplicated and integrity holds.
    pub passed: bool,
}

fn str_at<'a>(d: &'a Document, path: &[&str]) -> Option<&'a str> {
    let (last, init) = path.split_last()?;
    let mut cur = d;
    for p in init {
        cur = cur.get_document(p).ok()?;
    }
    cur.get_str(last).ok()
}

fn to_uuid(s: Option<&str>) -> Option<Uuid> {
    s.and_then(|s| Uuid::parse_str(s).ok())
}

/// Runs the verification. `metrics_file` may be absent: latency is then left empty.
pub async fn run(s: &Settings, with_checksum: bool) -> Result<VerifyReport> {
    let pg = outbox::connect(&s.pg).await?;
    outbox::check_table(&pg).await?;
    let events = outbox::all_events(&pg).await?;
    let store = ReadModels::connect(&s.mongo).await?;
    let db = store.database();

    // Where each event id is found, and how often.
    let mut seen: HashMap<Uuid, u32> = HashMap::new();
    let mut issues = Vec::new();
    let mut user_ids: HashSet<String> = HashSet::new();
    let users: Vec<Document> = db
        .collection::<Document>("users")
        .find(doc! {})
        .projection(doc! { "metadata.source_event_id": 1, "allowed_users": 1 })
        .await?
        .try_collect()
        .await?;
    for u in &users {
        let id = u.get_str("_id").unwrap_or_default().to_owned();
        if let Some(ev) = to_uuid(str_at(u, &["metadata", "source_event_id"])) {
            *seen.entry(ev).or_default() += 1;
        }
        let allowed = string_list(u.get("allowed_users"));
        if allowed != vec![id.clone()] {
            issues.push(format!(
                "user {id}: allowed_users is {allowed:?}, expected only itself"
            ));
        }
        user_ids.insert(id);
    }
    let activities: Vec<Document> = db
        .collection::<Document>("activities")
        .find(doc! {})
        .projection(doc! {
            "creator_id": 1, "metadata.source_event_id": 1, "participants": 1, "allowed_users": 1,
        })
        .await?
        .try_collect()
        .await?;
    let mut participant_total = 0i64;
    for a in &activities {
        let id = a.get_str("_id").unwrap_or_default();
        if let Some(ev) = to_uuid(str_at(a, &["metadata", "source_event_id"])) {
            *seen.entry(ev).or_default() += 1;
        }
        let creator = a.get_str("creator_id").unwrap_or_default();
        if !user_ids.contains(creator) {
            issues.push(format!("activity {id}: creator {creator} is not a user"));
        }
        let parts = a.get_document("participants").ok();
        let list = parts
            .and_then(|p| p.get_array("list").ok())
            .cloned()
            .unwrap_or_default();
        let count = parts.and_then(|p| p.get_i64("count").ok()).unwrap_or(-1);
        if count != list.len() as i64 {
            issues.push(format!(
                "activity {id}: participants.count {count} but {} entries",
                list.len()
            ));
        }
        participant_total += list.len() as i64;
        let mut expected_allowed: HashSet<String> = HashSet::from([creator.to_owned()]);
        for p in list.iter().filter_map(Bson::as_document) {
            if let Some(ev) = to_uuid(p.get_str("source_event_id").ok()) {
                *seen.entry(ev).or_default() += 1;
            }
            let uid = p.get_str("user_id").unwrap_or_default();
            if !user_ids.contains(uid) {
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

    // Statistics must agree with the collections.
    let global = db
        .collection::<Document>("statistics")
        .find_one(doc! { "_id": "global" })
        .await?;
    let stat = |t: &str| -> i64 {
        global
            .as_ref()
            .and_then(|g| g.get_document("events").ok())
            .and_then(|e| match e.get(t) {
                Some(Bson::Int64(n)) => Some(*n),
                Some(Bson::Int32(n)) => Some(*n as i64),
                _ => None,
            })
            .unwrap_or(0)
    };
    for (t, actual) in [
        ("UserCreated", users.len() as i64),
        ("ActivityCreated", activities.len() as i64),
        ("ParticipantJoined", participant_total),
    ] {
        if stat(t) != actual {
            issues.push(format!(
                "statistics: {t} total is {} but the read models hold {actual}",
                stat(t)
            ));
        }
    }

    let mut by_type: BTreeMap<String, TypeCount> = BTreeMap::new();
    let mut missing_ids = Vec::new();
    let mut duplicated_ids = Vec::new();
    let outbox_ids: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    for e in &events {
        let c = by_type.entry(e.event_type.clone()).or_default();
        c.expected += 1;
        match seen.get(&e.event_id) {
            Some(n) => {
                c.found += 1;
                if *n > 1 {
                    duplicated_ids.push(e.event_id);
                }
            }
            None => missing_ids.push(e.event_id),
        }
    }
    let extra = seen.keys().filter(|id| !outbox_ids.contains(id)).count() as u64;
    let total = events.len() as u64;
    let found = total - missing_ids.len() as u64;

    let mut run_stats = RunStats::default();
    if s.metrics_file.exists() {
        let (recs, _bad) = metrics::read_file(&s.metrics_file)?;
        let mut counted: HashSet<Uuid> = HashSet::new();
        for ev in &recs {
            match ev {
                // The first applied record of each event of this outbox.
                MetricEvent::Event(r)
                    if r.applied
                        && outbox_ids.contains(&r.event_id)
                        && counted.insert(r.event_id) =>
                {
                    run_stats.record(ev)
                }
                MetricEvent::Error(_) => run_stats.record(ev),
                _ => {}
            }
        }
    }
    let latency = run_stats.stages.summaries();
    let p95 = latency.get("total").map_or(0.0, |s| s.p95_ms);
    let negative = run_stats.stages.cdc.negative
        + run_stats.stages.kafka.negative
        + run_stats.stages.poll.negative
        + run_stats.stages.processing.negative;
    let checksum = if with_checksum {
        Some(crate::checksum::read_models(db).await?)
    } else {
        None
    };
    let missing = missing_ids.len() as u64;
    missing_ids.truncate(100);
    let passed = missing == 0 && duplicated_ids.is_empty() && issues.is_empty();
    Ok(VerifyReport {
        total_events: total,
        found_events: found,
        success_rate: if total > 0 {
            found as f64 * 100.0 / total as f64
        } else {
            100.0
        },
        by_type,
        missing_ids,
        missing,
        duplicated_ids,
        extra,
        integrity_check: if issues.is_empty() { "PASS" } else { "FAIL" },
        integrity_issues: issues.into_iter().take(100).collect(),
        latency,
        latency_by_type: run_stats
            .by_type
            .iter()
            .map(|(k, v)| (k.clone(), v.summary()))
            .collect(),
        throughput_eps: run_stats.throughput(),
        dead_lettered: run_stats.errors,
        negative_samples: negative,
        verdict: if run_stats.stages.total.count() > 0 {
            stats::verdict(p95).to_owned()
        } else {
            "no latency data".into()
        },
        checksum,
        passed,
    })
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

/// Writes the report as pretty JSON.
pub fn write_report(report: &VerifyReport, path: &Path) -> Result<()> {
    use anyhow::Context;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json).with_context(|| {
        format!(
            "cannot write the report to {} (choose a writable --report path)",
            path.display()
        )
    })
}
