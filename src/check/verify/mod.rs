//! `pipedemo verify`: proves every outbox event landed exactly once in its read model, that the
//! read models are consistent, and reports latency from the metrics file.
//!
//! [`fetch`] reads PostgreSQL and MongoDB; [`rules::check`] decides; [`latency`] measures from
//! the metrics file; [`run`] puts the report together.

pub mod rules;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::config::Settings;
use crate::event::EventType;
use crate::pipeline::outbox;
use crate::pipeline::store::ReadModels;
use crate::read_model::Collection;
use crate::telemetry::metrics::{self, MetricEvent};
use crate::telemetry::stats::{self, RunStats, Stage, Summary};
pub use rules::{missing_hint, Observed, TypeCount};

/// At most this many ids and issues are listed in the report (all are counted).
const LISTED: usize = 100;

/// The verification report (also written as JSON).
#[derive(Clone, Debug, Default, Serialize)]
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
    /// No integrity problem; written as `"integrity_check": "PASS"` or `"FAIL"`.
    #[serde(rename = "integrity_check", serialize_with = "pass_fail")]
    pub integrity_passed: bool,
    /// Latency by stage, from the metrics file.
    pub latency: BTreeMap<Stage, Summary>,
    /// End-to-end latency by type.
    pub latency_by_type: BTreeMap<EventType, Summary>,
    /// Events/s from first T0 to last T5 of the measured events.
    pub throughput_eps: f64,
    /// Dead-lettered messages recorded in the metrics file.
    pub dead_lettered: u64,
    /// Latency samples below zero (clock resolution), recorded as 0.
    pub negative_samples: u64,
    /// Events applied whose times cannot be real (before 2000, over a minute in the future,
    /// stages below zero): left out of the latency figures.
    pub timing_implausible: u64,
    /// The verdict on p95.
    pub verdict: String,
    /// A checksum of all read models (order-independent), for replay comparisons.
    pub checksum: Option<String>,
    /// True when nothing is missing or duplicated and integrity holds.
    pub passed: bool,
}

impl VerifyReport {
    /// Why verification failed, in one sentence (`None`: it passed): what is missing,
    /// duplicated or inconsistent. Never the latency: verification is delivery and integrity.
    pub fn failure(&self) -> Option<String> {
        if self.passed {
            return None;
        }
        let mut why = Vec::new();
        if self.missing > 0 {
            why.push(format!(
                "{} of {} events missing from the read models",
                crate::numbers::thousands(self.missing),
                crate::numbers::thousands(self.total_events)
            ));
        }
        if !self.duplicated_ids.is_empty() {
            why.push(format!(
                "{} events applied more than once",
                crate::numbers::thousands(self.duplicated_ids.len() as u64)
            ));
        }
        if !self.integrity_passed {
            why.push(format!(
                "integrity: {}",
                self.integrity_issues
                    .first()
                    .map_or("failed", String::as_str)
            ));
        }
        if why.is_empty() {
            why.push("failed".into());
        }
        Some(format!("verification: {}", why.join("; ")))
    }
}

fn pass_fail<S: Serializer>(passed: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(pass_fail_text(*passed))
}

/// `PASS` or `FAIL`, as reports print a check.
pub fn pass_fail_text(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Reads the outbox and the read models.
pub async fn fetch(s: &Settings) -> Result<(Observed, ReadModels)> {
    let pg = outbox::connect(&s.pg).await?;
    outbox::check_table(&pg).await?;
    let events = outbox::all_events(&pg).await?;
    let store = ReadModels::connect(&s.mongo).await?;
    let db = store.database();
    let users = all_of(
        db,
        Collection::Users,
        doc! { "metadata.source_event_id": 1, "allowed_users": 1 },
    )
    .await?;
    let activities = all_of(
        db,
        Collection::Activities,
        doc! { "creator_id": 1, "metadata.source_event_id": 1, "participants": 1, "allowed_users": 1 },
    )
    .await?;
    let global_statistics = db
        .collection::<Document>(Collection::Statistics.name())
        .find_one(doc! { "_id": "global" })
        .await?;
    let observed = Observed {
        events,
        users,
        activities,
        global_statistics,
    };
    Ok((observed, store))
}

/// Every document of a collection, projected.
async fn all_of(
    db: &mongodb::Database,
    coll: Collection,
    projection: Document,
) -> Result<Vec<Document>> {
    let read = async {
        db.collection::<Document>(coll.name())
            .find(doc! {})
            .projection(projection)
            .await?
            .try_collect::<Vec<_>>()
            .await
    };
    read.await
        .with_context(|| format!("reading MongoDB collection {coll}"))
}

/// Latency of the events of this outbox from the metrics file: the first applied record of
/// each event (a redelivery's record would time the redelivery), and every dead letter.
pub fn latency(records: &[MetricEvent], outbox_ids: &HashSet<Uuid>) -> RunStats {
    let mut l = Latency::new(outbox_ids);
    for ev in records {
        l.add(ev);
    }
    l.stats
}

/// [`latency`], one record at a time.
pub struct Latency<'a> {
    outbox_ids: &'a HashSet<Uuid>,
    counted: HashSet<Uuid>,
    /// The figures so far.
    pub stats: RunStats,
}

impl<'a> Latency<'a> {
    /// Nothing counted yet, for the events of `outbox_ids`.
    pub fn new(outbox_ids: &'a HashSet<Uuid>) -> Self {
        Latency {
            outbox_ids,
            counted: HashSet::new(),
            stats: RunStats::default(),
        }
    }

    /// Counts one record.
    pub fn add(&mut self, ev: &MetricEvent) {
        match ev {
            MetricEvent::Event(r)
                if r.applied
                    && self.outbox_ids.contains(&r.event_id)
                    && self.counted.insert(r.event_id) =>
            {
                self.stats.record(ev)
            }
            MetricEvent::Error(_) => self.stats.record(ev),
            _ => {}
        }
    }
}

/// What was verified in stores cleared since (a capacity sweep runs each step on fresh read
/// models): the run's verification adds it to what the stores hold at the end, so that every
/// event of the run is still proven, and its latency still counted.
#[derive(Clone, Debug, Default)]
pub struct Cleared {
    total: u64,
    findings: rules::Findings,
    ids: HashSet<Uuid>,
}

impl Cleared {
    /// Verifies what the outbox and the read models hold now, before they are cleared;
    /// returns the read models it read, for the clearing.
    pub async fn verify_now(&mut self, s: &Settings) -> Result<ReadModels> {
        let (observed, store) = fetch(s).await?;
        let findings = rules::check(&observed);
        self.total += observed.events.len() as u64;
        self.ids.extend(observed.events.iter().map(|e| e.event_id));
        self.findings.merge(findings);
        Ok(store)
    }
}

/// Runs the verification. The metrics file may be absent: latency is then left empty.
pub async fn run(s: &Settings, with_checksum: bool) -> Result<VerifyReport> {
    run_after(s, with_checksum, &Cleared::default()).await
}

/// [`run`], with what was verified in stores cleared before (the checksum, when asked for,
/// covers only what the read models hold now).
pub async fn run_after(
    s: &Settings,
    with_checksum: bool,
    cleared: &Cleared,
) -> Result<VerifyReport> {
    let (observed, store) = fetch(s).await?;
    let mut findings = cleared.findings.clone();
    findings.merge(rules::check(&observed));
    let mut outbox_ids: HashSet<Uuid> = observed.events.iter().map(|e| e.event_id).collect();
    outbox_ids.extend(cleared.ids.iter().copied());
    // Streamed: a long soak's metrics file need not fit in memory.
    let mut timing = Latency::new(&outbox_ids);
    if s.output.metrics_file.exists() {
        metrics::each_in_file(&s.output.metrics_file, |ev| timing.add(&ev))?;
    }
    let timing = timing.stats;
    let checksum = if with_checksum {
        Some(crate::check::checksum::read_models(store.database()).await?)
    } else {
        None
    };
    Ok(report(
        observed.events.len() as u64 + cleared.total,
        findings,
        &timing,
        checksum,
    ))
}

/// The report from the findings and the timing.
pub fn report(
    total: u64,
    mut f: rules::Findings,
    timing: &RunStats,
    checksum: Option<String>,
) -> VerifyReport {
    let latency = timing.stages.summaries();
    let found = f.found();
    let passed = f.passed();
    let missing = f.missing_ids.len() as u64;
    f.missing_ids.truncate(LISTED);
    VerifyReport {
        total_events: total,
        found_events: found,
        success_rate: if total > 0 {
            found as f64 * 100.0 / total as f64
        } else {
            100.0
        },
        by_type: f.by_type,
        missing_ids: f.missing_ids,
        missing,
        duplicated_ids: f.duplicated_ids,
        extra: f.extra,
        integrity_passed: f.issues.is_empty(),
        integrity_issues: f.issues.into_iter().take(LISTED).collect(),
        verdict: if timing.stages.get(Stage::Total).count() > 0 {
            stats::verdict(stats::total(&latency).p95_ms).to_owned()
        } else {
            "no latency data".into()
        },
        latency,
        latency_by_type: timing.by_type_summaries(),
        throughput_eps: timing.throughput(),
        dead_lettered: timing.errors,
        negative_samples: timing.stages.negative(),
        timing_implausible: timing.implausible,
        checksum,
        passed,
    }
}

/// Writes the report as pretty JSON.
pub fn write_report(report: &VerifyReport, path: &Path) -> Result<()> {
    #[derive(Serialize)]
    struct File<'a> {
        kind: super::figures::Kind,
        schema_version: u64,
        /// The run that wrote the file (see [`crate::run_id`]).
        run_id: &'static str,
        #[serde(flatten)]
        report: &'a VerifyReport,
    }
    let json = serde_json::to_string_pretty(&File {
        kind: super::figures::Kind::Verify,
        schema_version: super::figures::SCHEMA_VERSION,
        run_id: crate::run_id::run_id(),
        report,
    })?;
    std::fs::write(path, json).with_context(|| {
        format!(
            "cannot write the report to {} (choose a writable --report path)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::{EventRecord, Timing};

    fn record(event_id: Uuid, applied: bool, total_ms: i64) -> MetricEvent {
        let t0 = 1_795_377_600_000_000;
        let timing = Timing {
            t0_us: t0,
            commit_us: None,
            t1_us: t0 + 1_000,
            t2_us: t0 + 1_000,
            t3_us: t0 + 1_000,
            t4_us: t0 + 1_000,
            t5_us: t0 + total_ms * 1000,
        };
        MetricEvent::Event(EventRecord {
            event_id,
            event_type: EventType::UserCreated,
            aggregate_id: event_id,
            label: String::new(),
            partition: 0,
            offset: 0,
            applied,
            stages: timing.stages(),
            timing,
            tag: None,
        })
    }

    #[test]
    fn latency_counts_each_event_of_this_outbox_once() {
        let (a, b, old) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let records = [
            record(a, true, 10),
            record(a, true, 900), // a redelivery's second record
            record(b, false, 5),  // found already applied: not a latency
            record(old, true, 7), // an earlier run's event
        ];
        let run = latency(&records, &HashSet::from([a, b]));
        let total = run.stages.get(Stage::Total);
        assert_eq!(total.count(), 1);
        assert!(
            (total.quantile_ms(1.0) - 10.0).abs() < 0.05,
            "the first record counts"
        );
    }

    #[test]
    fn the_report_fails_when_anything_is_missing_and_lists_at_most_100() {
        let f = rules::Findings {
            missing_ids: (0..150).map(|_| Uuid::new_v4()).collect(),
            ..rules::Findings::default()
        };
        let r = report(150, f, &RunStats::default(), None);
        assert!(!r.passed && r.integrity_passed);
        assert_eq!((r.missing, r.missing_ids.len()), (150, 100));
        assert_eq!(r.verdict, "no latency data");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["integrity_check"], "PASS");
        assert_eq!(json["success_rate"], 0.0);
    }
}
