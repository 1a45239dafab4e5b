//! The summary card on top of the HTML reports: what a stakeholder reads in ten seconds
//! (verdict, SLO and whether it held, capacity, events verified, the slowest stage, the
//! machine), decided here from the outcome, apart from the markup.

use crate::check::figures::{self, Kind, Metric, Pct};
use crate::numbers::thousands;
use crate::run::chaos::outcome::{ChaosOutcome, Verdict};
use crate::run::outcome::FullOutcome;
use crate::telemetry::stats::Stage;

/// One line of the card.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// What it is ("Verdict", "SLO"…), also its element id in lower case.
    pub label: &'static str,
    /// The answer, short.
    pub value: String,
    /// Good (true), bad (false) or neither.
    pub good: Option<bool>,
    /// The detail under it.
    pub detail: String,
}

fn item(label: &'static str, value: String, good: Option<bool>, detail: String) -> Item {
    Item {
        label,
        value,
        good,
        detail,
    }
}

/// The card of a `full` run. `machine`: the host's cores, and the stack's versions.
pub fn full(o: &FullOutcome, machine: (String, String)) -> Vec<Item> {
    let v = &o.verification;
    let why = o.failures();
    let passed = why.is_empty();
    let mut items = vec![item(
        "Verdict",
        if passed { "PASS" } else { "FAIL" }.into(),
        Some(passed),
        if why.is_empty() {
            "every event verified, every target and threshold held".into()
        } else {
            why.join("; ")
        },
    )];
    let missed: Vec<&str> = o
        .phases
        .iter()
        .zip(&o.targets_missed)
        .filter(|(_, m)| !m.is_empty())
        .map(|(p, _)| p.phase.as_str())
        .collect();
    let held = missed.is_empty();
    items.push(item(
        "SLO",
        format!(
            "p99 < {} ms {}",
            o.targets.p99_ms,
            if o.burst {
                "not enforced (burst)"
            } else if held {
                "held"
            } else {
                "missed"
            }
        ),
        (!o.burst).then_some(held),
        if held {
            format!("every phase: {}", o.targets.describe())
        } else {
            format!("missed in: {}", missed.join(", "))
        },
    ));
    if let Some(c) = &o.capacity {
        items.push(match c.sustained_eps {
            Some(r) => item(
                "Capacity",
                format!("{} events/s", thousands(r.round() as u64)),
                None,
                format!(
                    "the highest rate sustained at p99 ≤ {} ms in {} s steps{}",
                    c.slo_p99_ms,
                    c.step_secs,
                    c.knee_above_eps
                        .map(|k| format!("; {} events/s was not", thousands(k.round() as u64)))
                        .unwrap_or_default()
                ),
            ),
            None => item(
                "Capacity",
                "none".into(),
                Some(false),
                format!("no rate offered was sustained at p99 ≤ {} ms", c.slo_p99_ms),
            ),
        });
    }
    items.push(item(
        "Events verified",
        format!(
            "{} of {}",
            thousands(v.found_events),
            thousands(v.total_events)
        ),
        Some(v.passed),
        format!(
            "{:.2} % · {} missing · {} duplicated · integrity {}",
            v.success_rate,
            thousands(v.missing),
            v.duplicated_ids.len(),
            if v.integrity_passed { "PASS" } else { "FAIL" }
        ),
    ));
    // The same figures the thresholds judge: the slowest phase's, paced below capacity (the
    // verified latency also holds the capacity sweep's overloaded steps).
    let doc = serde_json::to_value(o).unwrap_or_default();
    let figures = figures::figures(Kind::Full, &doc);
    if let Some((stage, p99)) = Stage::PARTS
        .iter()
        .filter_map(|st| Some((*st, figures::get(&figures, Metric::Stage(*st, Pct::P99))?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        items.push(item(
            "Slowest stage",
            stage.label().into(),
            None,
            format!(
                "p99 {p99:.1} ms of the end-to-end p99 {:.1} ms (the slowest phase's)",
                figures::get(&figures, Metric::Latency(Pct::P99)).unwrap_or(0.0)
            ),
        ));
    }
    if let Some(c) = &o.chaos {
        items.extend(chaos_items(c).into_iter().skip(1));
    }
    if let Some(c) = &o.comparison {
        let worse = c.regressions.len();
        items.push(item(
            "Against the baseline",
            if worse == 0 {
                "no regression".into()
            } else {
                format!("{worse} figure(s) worse")
            },
            Some(worse == 0),
            format!("more than {} % worse counts", c.max_regression_pct),
        ));
    }
    items.push(item("Machine", machine.0, None, machine.1));
    items
}

/// The card of a chaos run.
pub fn chaos(c: &ChaosOutcome) -> Vec<Item> {
    chaos_items(c)
}

fn chaos_items(c: &ChaosOutcome) -> Vec<Item> {
    let ran: Vec<_> = c
        .faults
        .iter()
        .filter(|f| f.verdict != Verdict::Skipped)
        .collect();
    let recovered = ran
        .iter()
        .filter(|f| f.verdict == Verdict::Recovered)
        .count();
    let slowest = ran
        .iter()
        .filter_map(|f| Some((f.fault, f.recovery_secs?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let mut items = vec![item(
        "Verdict",
        if c.passed { "PASS" } else { "FAIL" }.into(),
        Some(c.passed),
        if c.failures.is_empty() {
            "every fault recovered, nothing lost".into()
        } else {
            c.failures.join("; ")
        },
    )];
    items.push(item(
        "Faults recovered",
        format!("{recovered} of {}", ran.len()),
        Some(recovered == ran.len()),
        format!(
            "back to the backlog before the fault and p99 ≤ {} ms within {} s{}",
            c.slo_p99_ms,
            c.recovery_timeout_secs,
            slowest
                .map(|(f, s)| format!("; slowest: {f} in {s:.1} s"))
                .unwrap_or_default()
        ),
    ));
    items.push(item(
        "Events under faults",
        format!("{} lost", thousands(c.lost)),
        Some(c.lost == 0 && c.duplicated == 0),
        format!(
            "{} offered at {:.0} events/s · {} duplicated",
            thousands(c.load.sent),
            c.rate_eps,
            thousands(c.duplicated)
        ),
    ));
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::verify::VerifyReport;
    use crate::run::outcome::{CapacityReport, PhaseSummary};
    use crate::telemetry::stats::Summary;

    fn outcome() -> FullOutcome {
        let mut v = VerifyReport {
            total_events: 11_110,
            found_events: 11_110,
            success_rate: 100.0,
            passed: true,
            integrity_passed: true,
            ..VerifyReport::default()
        };
        for (stage, p99) in [
            (Stage::Total, 40.0),
            (Stage::Cdc, 12.0),
            (Stage::Kafka, 20.5),
        ] {
            v.latency.insert(
                stage,
                Summary {
                    count: 10,
                    p99_ms: p99,
                    ..Summary::default()
                },
            );
        }
        FullOutcome {
            phases: vec![PhaseSummary {
                phase: "stress".into(),
                stages: v.latency.clone(),
                ..PhaseSummary::default()
            }],
            verification: v,
            threshold_failures: Vec::new(),
            thresholds: Vec::new(),
            total_events: 11_110,
            total_secs: 100.0,
            burst: false,
            targets: Default::default(),
            targets_missed: vec![Vec::new()],
            prewarm: None,
            capacity: Some(CapacityReport {
                routing: Default::default(),
                fresh_store: true,
                sustained_eps: Some(2000.0),
                knee_above_eps: Some(2500.0),
                uncertainty: Some(0.25),
                ceiling_eps: None,
                overflow_eps: None,
                slo_p99_ms: 50.0,
                step_secs: 5.0,
                limiting_stage: None,
                limiting_growth_ms: None,
                steps: Vec::new(),
            }),
            chaos: None,
            comparison: None,
        }
    }

    fn get<'a>(items: &'a [Item], label: &str) -> &'a Item {
        items.iter().find(|i| i.label == label).unwrap()
    }

    #[test]
    fn a_passing_show_says_pass_held_capacity_and_the_slowest_stage() {
        let items = full(&outcome(), ("2 cores".into(), "PostgreSQL 15".into()));
        assert_eq!(get(&items, "Verdict").value, "PASS");
        assert_eq!(get(&items, "SLO").value, "p99 < 200 ms held");
        assert_eq!(get(&items, "Capacity").value, "2,000 events/s");
        assert!(get(&items, "Capacity")
            .detail
            .contains("2,500 events/s was not"));
        assert_eq!(get(&items, "Events verified").value, "11,110 of 11,110");
        assert_eq!(get(&items, "Slowest stage").value, "Kafka T2-T1");
        assert_eq!(get(&items, "Machine").value, "2 cores");
    }

    #[test]
    fn a_failing_show_says_why_first() {
        let mut o = outcome();
        o.targets_missed = vec![vec!["p99 250.0 ms ≥ 200 ms".into()]];
        o.threshold_failures = vec!["stress phase missed the targets".into()];
        o.verification.passed = false;
        o.verification.missing = 3;
        let items = full(&o, Default::default());
        let verdict = get(&items, "Verdict");
        assert_eq!(
            (verdict.value.as_str(), verdict.good),
            ("FAIL", Some(false))
        );
        assert!(
            verdict.detail.starts_with(
                "verification: 3 of 11,110 events missing from the read models; stress phase"
            ),
            "{}",
            verdict.detail
        );
        assert_eq!(get(&items, "SLO").value, "p99 < 200 ms missed");
        assert_eq!(get(&items, "SLO").detail, "missed in: stress");
    }
}
