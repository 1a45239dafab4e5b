//! The figures a measuring command's JSON document holds, by name: what `--threshold` gates on
//! and what `pipedemo compare` sets side by side. Both read them from the same document the
//! command prints with `--json`, so a threshold, a comparison and the JSON never disagree.

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

use crate::fault::Fault;
use crate::telemetry::stats::Stage;

/// The version of every JSON document pipedemo prints; it grows when a field changes meaning
/// or goes away (new fields do not change it).
pub const SCHEMA_VERSION: u64 = 1;

/// What printed a JSON document: the `kind` field of every document pipedemo prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `pipedemo load`.
    Load,
    /// `pipedemo full` (and its `demo_report.json`).
    Full,
    /// `pipedemo capacity`.
    Capacity,
    /// `pipedemo chaos`.
    Chaos,
    /// `pipedemo verify`.
    Verify,
    /// `pipedemo replay`.
    Replay,
}

impl Kind {
    /// The name in documents and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Full => "full",
            Kind::Capacity => "capacity",
            Kind::Chaos => "chaos",
            Kind::Verify => "verify",
            Kind::Replay => "replay",
        }
    }

    /// The kind a document says it is, or for documents written before the `kind` field,
    /// the kind its shape shows.
    pub fn of(doc: &Value) -> Option<Kind> {
        if let Some(k) = doc.get("kind").and_then(Value::as_str) {
            return Kind::from_str(k, true).ok();
        }
        let has = |k: &str| doc.get(k).is_some();
        Some(if has("faults") && has("load") {
            Kind::Chaos
        } else if has("phases") && has("verification") {
            Kind::Full
        } else if has("steps") && has("sustained_eps") {
            Kind::Capacity
        } else if has("phase") && has("stages") {
            Kind::Load
        } else if has("found_events") {
            Kind::Verify
        } else {
            return None;
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point of a latency distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pct {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest.
    Max,
    /// Mean.
    Mean,
}

impl Pct {
    /// Every point, in the order tables show them.
    pub const ALL: [Pct; 7] = [
        Pct::P50,
        Pct::P90,
        Pct::P95,
        Pct::P99,
        Pct::P999,
        Pct::Max,
        Pct::Mean,
    ];

    /// The name in expressions (`p99`).
    pub const fn name(self) -> &'static str {
        match self {
            Pct::P50 => "p50",
            Pct::P90 => "p90",
            Pct::P95 => "p95",
            Pct::P99 => "p99",
            Pct::P999 => "p999",
            Pct::Max => "max",
            Pct::Mean => "mean",
        }
    }

    /// The field of a latency summary in the JSON documents.
    const fn field(self) -> &'static str {
        match self {
            Pct::P50 => "p50_ms",
            Pct::P90 => "p90_ms",
            Pct::P95 => "p95_ms",
            Pct::P99 => "p99_ms",
            Pct::P999 => "p999_ms",
            Pct::Max => "max_ms",
            Pct::Mean => "mean_ms",
        }
    }

    fn parse(s: &str) -> Option<Pct> {
        // k6 writes p(99); p99.9 is the 99.9th as some tools write it.
        let s = s.replace(['(', ')'], "");
        Some(match s.as_str() {
            "p50" | "med" | "median" => Pct::P50,
            "p90" => Pct::P90,
            "p95" => Pct::P95,
            "p99" => Pct::P99,
            "p999" | "p99.9" => Pct::P999,
            "max" => Pct::Max,
            "mean" | "avg" => Pct::Mean,
            _ => return None,
        })
    }
}

/// A figure a command measures, named as in `--threshold` expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// End-to-end latency, ms: from each event's scheduled insert when the load was paced
    /// (open loop), T5 − T0 otherwise.
    Latency(Pct),
    /// One stage's latency, ms (`stage.cdc.p99`).
    Stage(Stage, Pct),
    /// Events found in MongoDB of those written, %.
    Success,
    /// Events delivered per second.
    Throughput,
    /// The highest rate sustained within the p99 target, events/s.
    Capacity,
    /// Events written and never found.
    Lost,
    /// Events found more than once.
    Duplicated,
    /// Messages dead-lettered.
    DeadLettered,
    /// Seconds until the pipeline was back to normal after a fault: the slowest, or one.
    Recovery(Option<Fault>),
}

/// Which way is better for a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Less is better (latency, losses, recovery).
    Lower,
    /// More is better (throughput, capacity, success).
    Higher,
}

impl Metric {
    /// Which way is better.
    pub const fn better(self) -> Better {
        match self {
            Metric::Success | Metric::Throughput | Metric::Capacity => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// The unit its values are in, for tables (`ms`, `%`, `events/s`, `s`, or none).
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::Latency(_) | Metric::Stage(..) => "ms",
            Metric::Success => "%",
            Metric::Throughput | Metric::Capacity => "events/s",
            Metric::Recovery(_) => "s",
            Metric::Lost | Metric::Duplicated | Metric::DeadLettered => "",
        }
    }

    /// A count of events, where any rise from zero matters.
    pub const fn is_count(self) -> bool {
        matches!(
            self,
            Metric::Lost | Metric::Duplicated | Metric::DeadLettered
        )
    }

    /// Whether a command of `kind` measures it.
    pub fn measured_by(self, kind: Kind) -> bool {
        match self {
            Metric::Latency(_) | Metric::Stage(..) | Metric::Success | Metric::Throughput => {
                kind != Kind::Replay
            }
            Metric::Capacity => matches!(kind, Kind::Capacity | Kind::Full),
            Metric::Lost | Metric::Duplicated | Metric::DeadLettered => true,
            Metric::Recovery(_) => matches!(kind, Kind::Chaos | Kind::Full),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Latency(p) => f.write_str(p.name()),
            Metric::Stage(s, p) => write!(f, "stage.{}.{}", s.short(), p.name()),
            Metric::Success => f.write_str("success"),
            Metric::Throughput => f.write_str("throughput"),
            Metric::Capacity => f.write_str("capacity"),
            Metric::Lost => f.write_str("lost"),
            Metric::Duplicated => f.write_str("duplicated"),
            Metric::DeadLettered => f.write_str("dead_lettered"),
            Metric::Recovery(None) => f.write_str("recovery"),
            Metric::Recovery(Some(fault)) => write!(f, "recovery.{}", fault.name()),
        }
    }
}

/// The names a user can gate on, for error messages.
pub const METRIC_NAMES: &str = "p50, p90, p95, p99, p999, max, mean (end to end, ms), \
     stage.{cdc,kafka,poll,processing}.p99 (ms), success (%), throughput (events/s), \
     capacity (events/s), lost, duplicated, dead_lettered, recovery[.FAULT] (s)";

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let unknown = || format!("unknown figure `{s}`; known: {METRIC_NAMES}");
        if let Some(p) = Pct::parse(&s) {
            return Ok(Metric::Latency(p));
        }
        if let Some(rest) = s.strip_prefix("stage.") {
            let (stage, pct) = rest.split_once('.').ok_or_else(unknown)?;
            let stage = Stage::PARTS
                .into_iter()
                .find(|st| st.short() == stage)
                .ok_or_else(|| {
                    format!("unknown stage `{stage}`; stages: cdc, kafka, poll, processing")
                })?;
            return Ok(Metric::Stage(stage, Pct::parse(pct).ok_or_else(unknown)?));
        }
        if let Some(fault) = s.strip_prefix("recovery.") {
            let fault = Fault::from_str(fault, true).map_err(|_| {
                format!(
                    "unknown fault `{fault}`; faults: {}",
                    Fault::ALL.map(Fault::name).join(", ")
                )
            })?;
            return Ok(Metric::Recovery(Some(fault)));
        }
        Ok(match s.as_str() {
            "success" | "success_rate" => Metric::Success,
            "throughput" | "rate" => Metric::Throughput,
            "capacity" => Metric::Capacity,
            "lost" | "missing" => Metric::Lost,
            "duplicated" => Metric::Duplicated,
            "dead_lettered" | "errors" => Metric::DeadLettered,
            "recovery" => Metric::Recovery(None),
            _ => return Err(unknown()),
        })
    }
}

/// Every figure of a document of `kind`, in a stable order. A figure the run did not measure
/// (no sustained rate, no fault recovered) is absent, never 0.
pub fn figures(kind: Kind, doc: &Value) -> Vec<(Metric, f64)> {
    let mut out = Vec::new();
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let latency = |out: &mut Vec<(Metric, f64)>, summary: Option<&Value>| {
        if let Some(s) = summary.filter(|s| num(s, "count").is_none_or(|n| n > 0.0)) {
            for p in Pct::ALL {
                if let Some(v) = num(s, p.field()) {
                    out.push((Metric::Latency(p), v));
                }
            }
        }
    };
    let stages = |out: &mut Vec<(Metric, f64)>, stages: Option<&Value>| {
        let Some(stages) = stages else { return };
        for stage in Stage::PARTS {
            let Some(s) = stages.get(stage.key()) else {
                continue;
            };
            for p in Pct::ALL {
                if let Some(v) = num(s, p.field()) {
                    out.push((Metric::Stage(stage, p), v));
                }
            }
        }
    };
    match kind {
        Kind::Load => {
            let from_schedule = doc.get("total_from_schedule").filter(|v| !v.is_null());
            latency(
                &mut out,
                from_schedule.or_else(|| doc.get("stages").and_then(|s| s.get("total"))),
            );
            stages(&mut out, doc.get("stages"));
            if let (Some(d), Some(s)) = (num(doc, "delivered"), num(doc, "sent")) {
                if s > 0.0 {
                    out.push((Metric::Success, 100.0 * d / s));
                }
            }
            push(&mut out, Metric::Throughput, num(doc, "throughput_eps"));
            push(&mut out, Metric::Lost, num(doc, "missing"));
            push(&mut out, Metric::DeadLettered, num(doc, "errors"));
        }
        Kind::Full | Kind::Verify | Kind::Capacity => {
            let v = if kind == Kind::Verify {
                Some(doc)
            } else {
                doc.get("verification")
            };
            if kind == Kind::Capacity {
                // The sustained step's own figures: what the pipeline does at its capacity.
                let sustained = num(doc, "sustained_eps");
                let step = sustained.and_then(|r| {
                    doc.get("steps")?.as_array()?.iter().find(|s| {
                        num(s, "offered_eps") == Some(r)
                            && s.pointer("/verdict/sustained") == Some(&Value::Bool(true))
                    })
                });
                latency(&mut out, step.and_then(|s| s.get("latency")));
                stages(&mut out, step.and_then(|s| s.get("stages")));
                push(
                    &mut out,
                    Metric::Throughput,
                    step.and_then(|s| num(s, "achieved_eps")),
                );
                push(&mut out, Metric::Capacity, sustained);
            } else if kind == Kind::Full {
                // The slowest phase's figures: the show's phases are paced below capacity, while
                // the verified latency also holds the capacity sweep's overloaded steps.
                let worst = slowest_phase(doc);
                latency(&mut out, worst.get("total"));
                stages(&mut out, Some(&worst));
            } else {
                let lat = v.and_then(|v| v.get("latency"));
                latency(&mut out, lat.and_then(|l| l.get("total")));
                stages(&mut out, lat);
            }
            if kind == Kind::Full {
                let last = doc
                    .get("phases")
                    .and_then(Value::as_array)
                    .and_then(|p| p.last());
                push(
                    &mut out,
                    Metric::Throughput,
                    last.and_then(|p| num(p, "throughput_eps")),
                );
                push(
                    &mut out,
                    Metric::Capacity,
                    doc.get("capacity").and_then(|c| num(c, "sustained_eps")),
                );
                if let Some(c) = doc.get("chaos").filter(|c| !c.is_null()) {
                    recovery(&mut out, c);
                }
            } else if kind == Kind::Verify {
                push(&mut out, Metric::Throughput, num(doc, "throughput_eps"));
            }
            if let Some(v) = v {
                push(&mut out, Metric::Success, num(v, "success_rate"));
                push(&mut out, Metric::Lost, num(v, "missing"));
                push(
                    &mut out,
                    Metric::Duplicated,
                    v.get("duplicated_ids")
                        .and_then(Value::as_array)
                        .map(|a| a.len() as f64),
                );
                push(&mut out, Metric::DeadLettered, num(v, "dead_lettered"));
            }
        }
        Kind::Chaos => {
            let load = doc.get("load");
            latency(&mut out, load.and_then(|l| l.get("from_schedule")));
            push(
                &mut out,
                Metric::Throughput,
                load.and_then(|l| num(l, "achieved_eps")),
            );
            if let (Some(l), Some(sent)) = (load, load.and_then(|l| num(l, "sent"))) {
                let lost = num(doc, "lost").unwrap_or(0.0);
                if sent > 0.0 && num(l, "sent").is_some() {
                    out.push((Metric::Success, 100.0 * (sent - lost) / sent));
                }
            }
            push(&mut out, Metric::Lost, num(doc, "lost"));
            push(&mut out, Metric::Duplicated, num(doc, "duplicated"));
            recovery(&mut out, doc);
        }
        Kind::Replay => {
            push(&mut out, Metric::DeadLettered, num(doc, "dead_lettered"));
        }
    }
    out
}

/// Each stage's summary with every figure the highest of any phase of a `full` document
/// (`stages` keys as in the phases): the slowest phase, stage by stage.
fn slowest_phase(doc: &Value) -> Value {
    let mut worst = serde_json::Map::new();
    let phases = doc.get("phases").and_then(Value::as_array);
    for stage in Stage::ALL {
        let mut summary = serde_json::Map::new();
        for p in phases.into_iter().flatten() {
            let Some(s) = p.pointer(&format!("/stages/{}", stage.key())) else {
                continue;
            };
            if s.get("count")
                .and_then(Value::as_f64)
                .is_some_and(|n| n == 0.0)
            {
                continue;
            }
            for field in Pct::ALL.map(Pct::field).into_iter().chain(["count"]) {
                if let Some(v) = s.get(field).and_then(Value::as_f64) {
                    let e = summary.entry(field).or_insert(Value::from(v));
                    if e.as_f64().is_some_and(|old| v > old) {
                        *e = Value::from(v);
                    }
                }
            }
        }
        if !summary.is_empty() {
            worst.insert(stage.key().to_string(), Value::Object(summary));
        }
    }
    Value::Object(worst)
}

fn push(out: &mut Vec<(Metric, f64)>, m: Metric, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        out.push((m, v));
    }
}

/// The slowest recovery and each fault's, from a chaos document (`faults[]`).
fn recovery(out: &mut Vec<(Metric, f64)>, chaos: &Value) {
    let Some(faults) = chaos.get("faults").and_then(Value::as_array) else {
        return;
    };
    let mut each = Vec::new();
    for f in faults {
        let (Some(name), Some(secs)) = (
            f.get("fault").and_then(Value::as_str),
            f.get("recovery_secs").and_then(Value::as_f64),
        ) else {
            continue;
        };
        if let Ok(fault) = Fault::from_str(name, true) {
            each.push((Metric::Recovery(Some(fault)), secs));
        }
    }
    if let Some(slowest) = each.iter().map(|(_, s)| *s).reduce(f64::max) {
        out.push((Metric::Recovery(None), slowest));
    }
    out.extend(each);
}

/// The value of `m` among `figures`.
pub fn get(figures: &[(Metric, f64)], m: Metric) -> Option<f64> {
    figures.iter().find(|(k, _)| *k == m).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_read_back_as_the_same_figure() {
        let mut all = vec![
            Metric::Success,
            Metric::Throughput,
            Metric::Capacity,
            Metric::Lost,
            Metric::Duplicated,
            Metric::DeadLettered,
            Metric::Recovery(None),
            Metric::Recovery(Some(Fault::KafkaStop)),
        ];
        for p in Pct::ALL {
            all.push(Metric::Latency(p));
            for s in Stage::PARTS {
                all.push(Metric::Stage(s, p));
            }
        }
        for m in all {
            assert_eq!(m.to_string().parse::<Metric>(), Ok(m), "{m}");
        }
        assert_eq!("p(95)".parse(), Ok(Metric::Latency(Pct::P95)));
        assert_eq!("P99.9".parse(), Ok(Metric::Latency(Pct::P999)));
        let e = "stage.db.p99".parse::<Metric>().unwrap_err();
        assert!(e.contains("unknown stage `db`"), "{e}");
        let e = "p98".parse::<Metric>().unwrap_err();
        assert!(
            e.contains("unknown figure `p98`") && e.contains("throughput"),
            "{e}"
        );
    }

    #[test]
    fn a_paced_load_is_judged_from_its_schedule() {
        let doc = json!({
            "phase": "load", "sent": 1000, "delivered": 999, "missing": 1, "errors": 0,
            "throughput_eps": 950.0,
            "stages": {"total": {"count": 999, "p99_ms": 20.0}, "1_cdc_capture": {"p99_ms": 4.0}},
            "total_from_schedule": {"count": 999, "p99_ms": 31.0},
        });
        assert_eq!(Kind::of(&doc), Some(Kind::Load));
        let f = figures(Kind::Load, &doc);
        assert_eq!(get(&f, Metric::Latency(Pct::P99)), Some(31.0));
        assert_eq!(get(&f, Metric::Stage(Stage::Cdc, Pct::P99)), Some(4.0));
        assert_eq!(get(&f, Metric::Success), Some(99.9));
        assert_eq!(get(&f, Metric::Lost), Some(1.0));
        // Unpaced: T5 − T0.
        let mut doc = doc;
        doc["total_from_schedule"] = Value::Null;
        assert_eq!(
            get(&figures(Kind::Load, &doc), Metric::Latency(Pct::P99)),
            Some(20.0)
        );
    }

    #[test]
    fn capacity_is_the_sustained_steps_and_absent_when_none_was() {
        let step = |r: f64, ok: bool, p99: f64| {
            json!({"offered_eps": r, "achieved_eps": r - 1.0, "latency": {"count": 5, "p99_ms": p99},
                   "stages": {}, "verdict": {"sustained": ok}})
        };
        let doc = json!({"kind": "capacity", "sustained_eps": 2000.0,
            "steps": [step(1000.0, true, 9.0), step(2000.0, true, 30.0), step(4000.0, false, 900.0)],
            "verification": {"success_rate": 100.0, "missing": 0, "duplicated_ids": []}});
        let f = figures(Kind::Capacity, &doc);
        assert_eq!(get(&f, Metric::Capacity), Some(2000.0));
        assert_eq!(get(&f, Metric::Latency(Pct::P99)), Some(30.0));
        assert_eq!(get(&f, Metric::Throughput), Some(1999.0));
        assert_eq!(get(&f, Metric::Duplicated), Some(0.0));
        let none = json!({"kind": "capacity", "sustained_eps": null, "steps": []});
        let f = figures(Kind::Capacity, &none);
        assert_eq!(get(&f, Metric::Capacity), None);
        assert_eq!(get(&f, Metric::Latency(Pct::P99)), None);
    }

    #[test]
    fn chaos_recovery_is_the_slowest_fault_and_each_one() {
        let doc = json!({"kind": "chaos", "lost": 0, "duplicated": 0,
            "load": {"sent": 500, "achieved_eps": 100.0, "from_schedule": {"count": 500, "p99_ms": 900.0}},
            "faults": [{"fault": "kafka-stop", "recovery_secs": 22.4},
                       {"fault": "rebalance", "recovery_secs": 0.0},
                       {"fault": "mongo-stop", "recovery_secs": null}]});
        let f = figures(Kind::Chaos, &doc);
        assert_eq!(get(&f, Metric::Recovery(None)), Some(22.4));
        assert_eq!(get(&f, Metric::Recovery(Some(Fault::Rebalance))), Some(0.0));
        assert_eq!(get(&f, Metric::Recovery(Some(Fault::MongoStop))), None);
        assert_eq!(get(&f, Metric::Success), Some(100.0));
    }

    #[test]
    fn a_show_is_judged_by_its_slowest_phase_not_the_capacity_sweep() {
        let phase = |p99: f64, cdc: f64| {
            json!({"stages": {"total": {"count": 10, "p50_ms": 9.0, "p99_ms": p99},
                              "1_cdc_capture": {"count": 10, "p99_ms": cdc}}})
        };
        let doc = json!({"kind": "full", "phases": [phase(20.0, 9.0), phase(31.0, 4.0)],
            "verification": {"latency": {"total": {"count": 99, "p99_ms": 1500.0}}, "success_rate": 100.0}});
        let f = figures(Kind::Full, &doc);
        assert_eq!(get(&f, Metric::Latency(Pct::P99)), Some(31.0));
        assert_eq!(get(&f, Metric::Latency(Pct::P50)), Some(9.0));
        assert_eq!(get(&f, Metric::Stage(Stage::Cdc, Pct::P99)), Some(9.0));
    }

    #[test]
    fn kinds_come_from_the_field_or_the_shape() {
        assert_eq!(Kind::of(&json!({"kind": "chaos"})), Some(Kind::Chaos));
        assert_eq!(
            Kind::of(&json!({"phases": [], "verification": {}})),
            Some(Kind::Full)
        );
        assert_eq!(Kind::of(&json!({"found_events": 3})), Some(Kind::Verify));
        assert_eq!(Kind::of(&json!({"x": 1})), None);
        assert!(Metric::Capacity.measured_by(Kind::Full));
        assert!(!Metric::Capacity.measured_by(Kind::Load));
        assert!(!Metric::Recovery(None).measured_by(Kind::Capacity));
    }
}
