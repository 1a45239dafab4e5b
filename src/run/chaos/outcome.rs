//! What a chaos run found, as values for the reports: one [`FaultReport`] per fault, the
//! load's figures, and the verdict once `verify` has spoken ([`ChaosOutcome::judge`]).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use uuid::Uuid;

use super::analysis::Stretch;
use crate::check::verify::VerifyReport;
use crate::fault::Fault;
use crate::numbers::thousands;
use crate::telemetry::stats::Summary;

/// The load that ran under the faults.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadFigures {
    /// The most events the load would have offered (its rate × its longest duration); it
    /// stops when the schedule is done.
    pub events: u64,
    /// Events written to the outbox.
    pub sent: u64,
    /// Of those, arrived in MongoDB before the run ended.
    pub delivered: u64,
    /// Offered events/s.
    pub offered_eps: f64,
    /// Events/s written to the outbox.
    pub achieved_eps: f64,
    /// Latency from each event's scheduled insert to its MongoDB write, over the whole run.
    pub from_schedule: Summary,
}

/// How a fault of the schedule ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Back to normal within the recovery timeout.
    Recovered,
    /// Cleared, but not back to normal within the recovery timeout.
    NotRecovered,
    /// Could not be cleared (a service that would not start again).
    NotCleared,
    /// Could not be injected.
    NotInjected,
    /// Not run: not available here, or no load left for it.
    Skipped,
}

/// One fault's figures: the `faults` objects of the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    /// Which fault.
    pub fault: Fault,
    /// What it does.
    pub what: &'static str,
    /// How it ended.
    pub verdict: Verdict,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// When it was injected, s from the start of the load.
    pub injected_at_secs: Option<f64>,
    /// When injecting it was done and it was in force (a stop returned), s from the start.
    pub in_force_at_secs: Option<f64>,
    /// When it was cleared (resumed, started again, restarted), s from the start.
    pub cleared_at_secs: Option<f64>,
    /// From the fault being in force to pipedemo's health showing a problem (DEGRADED), s;
    /// 0 when it showed while the fault was still being injected; `None`: it never did (a
    /// rebalance can pass unseen).
    pub noticed_after_secs: Option<f64>,
    /// The problem shown.
    pub noticed_cause: Option<String>,
    /// From clearing to the first event written to MongoDB after it, s: how long the
    /// pipeline took to move again, apart from how long it took to catch up
    /// (`recovery_secs`). `None`: nothing arrived after it.
    pub first_event_after_secs: Option<f64>,
    /// The backlog before it (highest of the 5 s before), events.
    pub normal_backlog: u64,
    /// The highest backlog from injection to recovery, events.
    pub peak_backlog: u64,
    /// From clearing to the backlog back at normal and the p99 within the SLO, s.
    pub recovery_secs: Option<f64>,
    /// When it recovered, s from the start.
    pub recovered_at_secs: Option<f64>,
    /// Deliveries found already applied, from injection to recovery.
    pub redelivered: u64,
    /// Events due from its injection to the next fault's that never reached MongoDB.
    pub lost: u64,
    /// Latency from schedule of the events due while it was in force.
    pub latency_during: Stretch,
    /// Latency from schedule of the events due from clearing to recovery.
    pub latency_recovering: Stretch,
    /// Latency from schedule of the events due in the gap after recovery.
    pub latency_after: Stretch,
}

impl FaultReport {
    pub(crate) fn new(fault: Fault, verdict: Verdict, reason: Option<String>) -> FaultReport {
        FaultReport {
            fault,
            what: fault.what(),
            verdict,
            reason,
            injected_at_secs: None,
            in_force_at_secs: None,
            cleared_at_secs: None,
            noticed_after_secs: None,
            noticed_cause: None,
            first_event_after_secs: None,
            normal_backlog: 0,
            peak_backlog: 0,
            recovery_secs: None,
            recovered_at_secs: None,
            redelivered: 0,
            lost: 0,
            latency_during: Stretch::default(),
            latency_recovering: Stretch::default(),
            latency_after: Stretch::default(),
        }
    }

    /// From injection to clearing, s.
    pub fn held_secs(&self) -> Option<f64> {
        Some(self.cleared_at_secs? - self.injected_at_secs?)
    }

    /// Its result in one line, for the dashboard and the text report.
    pub fn line(&self) -> String {
        let noticed = match (self.noticed_after_secs, &self.noticed_cause) {
            (Some(s), Some(c)) => format!("noticed after {s:.1} s ({c})"),
            _ => "not noticed".into(),
        };
        match self.verdict {
            Verdict::Recovered => format!(
                "recovered in {:.1} s{} · peak backlog {} · {noticed} · {} redelivered",
                self.recovery_secs.unwrap_or(0.0),
                self.first_event_after_secs
                    .map_or(String::new(), |s| format!(" (moving after {s:.1} s)")),
                thousands(self.peak_backlog),
                thousands(self.redelivered)
            ),
            Verdict::Skipped => format!(
                "skipped: {}",
                self.reason.as_deref().unwrap_or("not available")
            ),
            _ => format!(
                "{}: {} · peak backlog {} · {noticed}",
                match self.verdict {
                    Verdict::NotRecovered => "NOT RECOVERED",
                    Verdict::NotCleared => "NOT CLEARED",
                    _ => "NOT INJECTED",
                },
                self.reason.as_deref().unwrap_or(""),
                thousands(self.peak_backlog)
            ),
        }
    }
}

/// One second of the run: backlog and latency over time, for the HTML report's plots.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds from the start of the load.
    pub at_secs: f64,
    /// The highest backlog in it, events.
    pub backlog: u64,
    /// The p99 from schedule of the events written in it, ms.
    pub p99_ms: Option<f64>,
}

/// What a chaos run found: the `chaos` section of the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosOutcome {
    /// How the connector routed the outbox's events.
    pub routing: crate::config::Routing,
    /// Offered events/s.
    pub rate_eps: f64,
    /// The recovery criterion's p99, ms.
    pub slo_p99_ms: f64,
    /// How long each fault had to recover, s.
    pub recovery_timeout_secs: f64,
    /// How long held faults lasted, s.
    pub fault_duration_secs: f64,
    /// One object per fault asked for, in schedule order.
    pub faults: Vec<FaultReport>,
    /// The load's own figures.
    pub load: LoadFigures,
    /// Events written to the outbox and never found in MongoDB (from `verify`).
    pub lost: u64,
    /// Events found more than once in the read models (from `verify`).
    pub duplicated: u64,
    /// Backlog and p99 per second.
    pub timeline: Vec<Second>,
    /// Where the consumer processes logged.
    pub consumer_log: PathBuf,
    /// How each consumer process that was not asked to stop ended (the supervisor restarted
    /// it): the kills and crashes the faults caused, and any other.
    pub consumer_exits: Vec<String>,
    /// What failed the run: a fault that did not recover, lost or duplicated events.
    pub failures: Vec<String>,
    /// No failures.
    pub passed: bool,
    /// When each event still awaited at the end was due, µs: to put losses under a fault.
    #[serde(skip)]
    pub(crate) awaited_due: HashMap<Uuid, i64>,
    /// When each fault was injected, µs, in schedule order.
    #[serde(skip)]
    pub(crate) injected_us: Vec<(usize, i64)>,
}

impl ChaosOutcome {
    /// Decides the run when `verify` could not run (a service a fault left down).
    pub fn unverified(&mut self, e: &anyhow::Error) {
        self.judge(&VerifyReport::default());
        // Nothing was verified: no verification's reason, only why it could not be.
        self.failures.retain(|f| !f.starts_with("verification:"));
        self.failures.push(format!(
            "could not verify: {}",
            crate::pipeline::diagnose::first_line(&format!("{e:#}"))
        ));
        self.passed = false;
    }

    /// Takes `verify`'s word on loss and duplicates, puts each lost event under the fault in
    /// force (or last injected) when it was due, and decides the run.
    pub fn judge(&mut self, v: &VerifyReport) {
        self.lost = v.missing;
        self.duplicated = v.duplicated_ids.len() as u64;
        for id in &v.missing_ids {
            let Some(due) = self.awaited_due.get(id) else {
                continue;
            };
            if let Some((i, _)) = self.injected_us.iter().rev().find(|(_, at)| at <= due) {
                self.faults[*i].lost += 1;
            }
        }
        let mut failures = Vec::new();
        for f in &self.faults {
            if !matches!(f.verdict, Verdict::Recovered | Verdict::Skipped) {
                failures.push(format!(
                    "{}: {}",
                    f.fault,
                    f.reason.as_deref().unwrap_or("failed")
                ));
            }
        }
        if self.lost > 0 {
            failures.push(format!("{} events lost", thousands(self.lost)));
        }
        if self.duplicated > 0 {
            failures.push(format!(
                "{} events duplicated in the read models",
                thousands(self.duplicated)
            ));
        }
        if self.lost == 0 && self.duplicated == 0 {
            failures.extend(v.failure());
        }
        self.passed = failures.is_empty();
        self.failures = failures;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> ChaosOutcome {
        let mut kill = FaultReport::new(Fault::ConsumerKill, Verdict::Recovered, None);
        kill.injected_at_secs = Some(10.0);
        let mut stop = FaultReport::new(Fault::KafkaStop, Verdict::Recovered, None);
        stop.injected_at_secs = Some(40.0);
        let skipped = FaultReport::new(
            Fault::MongoStop,
            Verdict::Skipped,
            Some("MongoDB is not the local stack's".into()),
        );
        ChaosOutcome {
            routing: Default::default(),
            rate_eps: 300.0,
            slo_p99_ms: 100.0,
            recovery_timeout_secs: 60.0,
            fault_duration_secs: 10.0,
            faults: vec![kill, stop, skipped],
            load: LoadFigures::default(),
            lost: 0,
            duplicated: 0,
            timeline: Vec::new(),
            consumer_log: PathBuf::from("pipedemo-consumers.log"),
            consumer_exits: Vec::new(),
            failures: Vec::new(),
            passed: false,
            awaited_due: HashMap::new(),
            injected_us: vec![(0, 10_000_000), (1, 40_000_000)],
        }
    }

    #[test]
    fn a_clean_run_passes_and_skipped_faults_do_not_fail_it() {
        let mut c = outcome();
        c.judge(&VerifyReport {
            passed: true,
            integrity_passed: true,
            ..VerifyReport::default()
        });
        assert!(c.passed, "{:?}", c.failures);
    }

    #[test]
    fn losses_go_under_the_fault_in_force_and_fail_the_run() {
        let mut c = outcome();
        let (early, late, before) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        c.awaited_due = [(early, 12_000_000), (late, 45_000_000), (before, 5_000_000)].into();
        c.faults[1].verdict = Verdict::NotRecovered;
        c.faults[1].reason = Some("not recovered within --recovery-timeout 60 s".into());
        c.judge(&VerifyReport {
            missing: 3,
            missing_ids: vec![early, late, before],
            duplicated_ids: vec![Uuid::new_v4()],
            ..VerifyReport::default()
        });
        assert_eq!(
            (c.faults[0].lost, c.faults[1].lost, c.faults[2].lost),
            (1, 1, 0)
        );
        assert_eq!(
            c.failures,
            [
                "kafka-stop: not recovered within --recovery-timeout 60 s",
                "3 events lost",
                "1 events duplicated in the read models"
            ]
        );
        assert!(!c.passed);
        // Unverifiable (a service left down): failed, and says why.
        let mut c = outcome();
        c.unverified(&anyhow::anyhow!(
            "MongoDB at mongodb://127.0.0.1:27017 is unreachable"
        ));
        assert!(!c.passed);
        assert_eq!(
            c.failures,
            ["could not verify: MongoDB at mongodb://127.0.0.1:27017 is unreachable"]
        );
    }
}
