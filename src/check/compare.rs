//! `pipedemo compare BASE.json NEW.json`: every figure two documents of the same kind share,
//! side by side, with the change and a verdict per figure ([`compare`]). A figure that got
//! worse by more than the allowed regression fails the comparison; a count of lost,
//! duplicated or dead-lettered events fails it on any rise.

use serde::Serialize;
use serde_json::Value;

use super::figures::{self, Better, Kind, Metric, Pct};
use crate::numbers::with_unit;

/// What happened to one figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Better by more than the allowed margin.
    Improved,
    /// Within the margin either way (noise on this machine, as far as one pair of runs says).
    Within,
    /// Worse by more than the margin: fails the comparison.
    Regressed,
    /// Shown, not judged: one sample (`max`), or measured in only one of the two runs.
    Unjudged,
}

/// One figure of both documents.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The figure, named as in `--threshold`.
    pub figure: String,
    /// Its unit.
    pub unit: &'static str,
    /// In the base document.
    pub base: Option<f64>,
    /// In the new document.
    pub new: Option<f64>,
    /// (new − base) ÷ base, %; none when base is 0 or either is missing.
    pub change_pct: Option<f64>,
    /// The verdict.
    pub change: Change,
}

/// The comparison: `pipedemo compare --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The documents' kind.
    pub kind: Kind,
    /// How much worse a figure may get before it counts as a regression, %.
    pub max_regression_pct: f64,
    /// Every figure either document has.
    pub figures: Vec<Row>,
    /// Why the figures may not be comparable (different offered rates, machines…).
    pub warnings: Vec<String>,
    /// One sentence per regressed figure.
    pub regressions: Vec<String>,
    /// No regression.
    pub passed: bool,
}

/// Compares `new` with `base`; refuses documents of different kinds or schema versions.
pub fn compare(base: &Value, new: &Value, max_regression_pct: f64) -> Result<Comparison, String> {
    let kind_of = |doc: &Value, which: &str| {
        Kind::of(doc).ok_or_else(|| {
            format!("the {which} document is not a pipedemo report (no `kind`, and not the shape of one); pass the JSON that `load`, `full`, `capacity`, `chaos` or `verify` print with --json")
        })
    };
    let (kb, kn) = (kind_of(base, "base")?, kind_of(new, "new")?);
    if kb != kn {
        return Err(format!(
            "cannot compare a `{kb}` document with a `{kn}` document: compare two runs of the same command"
        ));
    }
    let version = |d: &Value| d.get("schema_version").and_then(Value::as_u64).unwrap_or(1);
    if version(base) != version(new) {
        return Err(format!(
            "the documents have different schema versions ({} and {}): their figures do not mean the same; rerun the base with this pipedemo",
            version(base),
            version(new)
        ));
    }
    let (fb, fnew) = (figures::figures(kb, base), figures::figures(kn, new));
    let mut metrics: Vec<Metric> = fb.iter().chain(&fnew).map(|(m, _)| *m).collect();
    metrics.sort();
    metrics.dedup();
    let figures: Vec<Row> = metrics
        .into_iter()
        .filter(|m| shown(*m))
        .map(|m| {
            row(
                m,
                figures::get(&fb, m),
                figures::get(&fnew, m),
                max_regression_pct,
            )
        })
        .collect();
    let regressions: Vec<String> = figures
        .iter()
        .filter(|r| r.change == Change::Regressed)
        .map(|r| {
            let (b, n) = (r.base.unwrap_or(0.0), r.new.unwrap_or(0.0));
            match r.change_pct {
                Some(pct) => format!(
                    "{} went from {} to {} ({pct:+.1} %, more than {max_regression_pct} % worse)",
                    r.figure,
                    with_unit(b, r.unit),
                    with_unit(n, r.unit)
                ),
                None => format!(
                    "{} went from {} to {}",
                    r.figure,
                    with_unit(b, r.unit),
                    with_unit(n, r.unit)
                ),
            }
        })
        .collect();
    Ok(Comparison {
        kind: kb,
        max_regression_pct,
        warnings: warnings(kb, base, new),
        passed: regressions.is_empty(),
        regressions,
        figures,
    })
}

/// Stage rows are many: their p50, p95 and p99 say what changed.
fn shown(m: Metric) -> bool {
    match m {
        Metric::Stage(_, p) => matches!(p, Pct::P50 | Pct::P95 | Pct::P99),
        _ => true,
    }
}

fn row(m: Metric, base: Option<f64>, new: Option<f64>, max_pct: f64) -> Row {
    let (change_pct, change) = match (base, new) {
        (Some(b), Some(n)) => {
            let pct = (b != 0.0).then(|| 100.0 * (n - b) / b.abs());
            // How much worse, % (negative: better).
            let worse = match (m.better(), pct) {
                (Better::Lower, Some(p)) => Some(p),
                (Better::Higher, Some(p)) => Some(-p),
                (_, None) if n == b => Some(0.0),
                (Better::Lower, None) => Some(f64::INFINITY),
                (Better::Higher, None) => Some(f64::NEG_INFINITY),
            };
            let change = if matches!(m, Metric::Latency(Pct::Max) | Metric::Stage(_, Pct::Max)) {
                Change::Unjudged
            } else if m.is_count() {
                // Losing or duplicating an event is never noise.
                match n.total_cmp(&b) {
                    std::cmp::Ordering::Greater => Change::Regressed,
                    std::cmp::Ordering::Less => Change::Improved,
                    std::cmp::Ordering::Equal => Change::Within,
                }
            } else {
                match worse {
                    Some(w) if w > max_pct => Change::Regressed,
                    Some(w) if w < -max_pct => Change::Improved,
                    _ => Change::Within,
                }
            };
            (pct, change)
        }
        _ => (None, Change::Unjudged),
    };
    Row {
        figure: m.to_string(),
        unit: m.unit(),
        base,
        new,
        change_pct,
        change,
    }
}

/// What makes two runs' figures not comparable, as far as the documents tell.
fn warnings(kind: Kind, base: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let offered = |d: &Value| -> Option<f64> {
        match kind {
            Kind::Load => d.get("offered_eps")?.as_f64(),
            Kind::Chaos => d.get("rate_eps")?.as_f64(),
            _ => None,
        }
    };
    match (offered(base), offered(new)) {
        (Some(b), Some(n)) if (b - n).abs() > 0.01 * b.max(n) => out.push(format!(
            "offered rates differ ({b:.0} and {n:.0} events/s): latency is only comparable at the same offered rate"
        )),
        (Some(_), None) | (None, Some(_)) if kind == Kind::Load => out.push(
            "one run was paced and the other not: latency from schedule and T5 − T0 differ in meaning".into(),
        ),
        _ => {}
    }
    // Where each kind says its routing (documents from before it existed: raw).
    let routing = |d: &Value| -> String {
        [
            "/routing",
            "/method/routing",
            "/capacity/routing",
            "/phases/0/routing",
            "/chaos/routing",
        ]
        .iter()
        .find_map(|p| d.pointer(p).and_then(Value::as_str))
        .unwrap_or("raw")
        .to_owned()
    };
    let (rb, rn) = (routing(base), routing(new));
    if rb != rn {
        out.push(format!(
            "the runs routed the outbox differently ({rb} and {rn}): the difference includes the Outbox Event Router's cost"
        ));
    }
    let cores = |d: &Value| d.pointer("/method/machine_cores").and_then(Value::as_u64);
    if let (Some(b), Some(n)) = (cores(base), cores(new)) {
        if b != n {
            out.push(format!("the runs were on machines with {b} and {n} cores"));
        }
    }
    out
}

/// The comparison as a table for people, then the warnings, regressions and the verdict.
pub fn text(c: &Comparison, base_name: &str, new_name: &str) -> String {
    let mut rows = vec![[
        "figure".to_string(),
        base_name.to_string(),
        new_name.to_string(),
        "change".to_string(),
        "verdict".to_string(),
    ]];
    for r in &c.figures {
        let v = |x: Option<f64>| x.map_or("—".to_string(), |x| with_unit(x, r.unit));
        rows.push([
            r.figure.clone(),
            v(r.base),
            v(r.new),
            r.change_pct.map_or("—".into(), |p| format!("{p:+.1} %")),
            match r.change {
                Change::Improved => "better",
                Change::Within => "same",
                Change::Regressed => "WORSE",
                Change::Unjudged => "",
            }
            .to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "Comparing two `{}` runs (a figure more than {} % worse is a regression)\n\n",
        c.kind, c.max_regression_pct
    );
    for r in &rows {
        let mut line = format!("{:<w$}", r[0], w = widths[0]);
        for i in 1..4 {
            line += &format!("  {:>w$}", r[i], w = widths[i]);
        }
        line += &format!("  {}", r[4]);
        out += line.trim_end();
        out.push('\n');
    }
    for w in &c.warnings {
        out += &format!("\n! {w}");
    }
    if !c.warnings.is_empty() {
        out.push('\n');
    }
    out.push('\n');
    for r in &c.regressions {
        out += &format!("✗ {r}\n");
    }
    out += if c.passed {
        "PASS: no figure regressed\n"
    } else {
        "FAIL: regressed\n"
    };
    out
}

/// `--max-regression`: `10%` or `10`.
pub fn parse_pct(s: &str) -> Result<f64, String> {
    s.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| format!("`{s}` is not a percentage (e.g. 10%)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(p99: f64, eps: f64, missing: u64) -> Value {
        json!({"kind": "load", "schema_version": 1, "phase": "load", "offered_eps": 1000.0,
            "sent": 1000, "delivered": 1000 - missing, "missing": missing, "errors": 0,
            "throughput_eps": eps,
            "stages": {"total": {"count": 1000, "p99_ms": p99}},
            "total_from_schedule": {"count": 1000, "p50_ms": 10.0, "p99_ms": p99, "max_ms": 300.0}})
    }

    fn row<'a>(c: &'a Comparison, f: &str) -> &'a Row {
        c.figures.iter().find(|r| r.figure == f).unwrap()
    }

    #[test]
    fn a_slower_p99_beyond_the_margin_is_a_regression() {
        let c = compare(&load(40.0, 990.0, 0), &load(50.0, 995.0, 0), 10.0).unwrap();
        assert_eq!(row(&c, "p99").change, Change::Regressed);
        assert_eq!(row(&c, "p99").change_pct, Some(25.0));
        assert_eq!(row(&c, "p50").change, Change::Within);
        assert_eq!(row(&c, "throughput").change, Change::Within);
        assert_eq!(row(&c, "max").change, Change::Unjudged);
        assert!(!c.passed);
        assert_eq!(
            c.regressions,
            ["p99 went from 40.0 ms to 50.0 ms (+25.0 %, more than 10 % worse)"]
        );
        // The same figures with a wider margin pass; faster is better.
        assert!(
            compare(&load(40.0, 990.0, 0), &load(50.0, 995.0, 0), 30.0)
                .unwrap()
                .passed
        );
        let c = compare(&load(50.0, 990.0, 0), &load(40.0, 995.0, 0), 10.0).unwrap();
        assert_eq!(row(&c, "p99").change, Change::Improved);
        assert!(c.passed);
        // Throughput falling is worse.
        let c = compare(&load(40.0, 1000.0, 0), &load(40.0, 800.0, 0), 10.0).unwrap();
        assert_eq!(row(&c, "throughput").change, Change::Regressed);
    }

    #[test]
    fn one_lost_event_is_a_regression_whatever_the_margin() {
        let c = compare(&load(40.0, 990.0, 0), &load(40.0, 990.0, 1), 50.0).unwrap();
        assert_eq!(row(&c, "lost").change, Change::Regressed);
        assert_eq!(c.regressions, ["lost went from 0 to 1"]);
    }

    #[test]
    fn documents_of_different_kinds_or_versions_are_refused() {
        let verify = json!({"kind": "verify", "found_events": 3});
        let e = compare(&load(1.0, 1.0, 0), &verify, 10.0).unwrap_err();
        assert!(
            e.contains("cannot compare a `load` document with a `verify` document"),
            "{e}"
        );
        let mut v2 = load(1.0, 1.0, 0);
        v2["schema_version"] = json!(2);
        let e = compare(&load(1.0, 1.0, 0), &v2, 10.0).unwrap_err();
        assert!(e.contains("different schema versions (1 and 2)"), "{e}");
        let e = compare(&json!({"x": 1}), &v2, 10.0).unwrap_err();
        assert!(e.contains("base document is not a pipedemo report"), "{e}");
    }

    #[test]
    fn different_offered_rates_are_said() {
        let mut fast = load(40.0, 2000.0, 0);
        fast["offered_eps"] = json!(2000.0);
        let c = compare(&load(40.0, 1000.0, 0), &fast, 10.0).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("offered rates differ (1000 and 2000"));
        let t = text(&c, "old.json", "new.json");
        assert!(
            t.contains("figure") && t.contains("old.json") && t.contains("! offered rates differ"),
            "{t}"
        );
        assert!(t.ends_with("PASS: no figure regressed\n"), "{t}");
        let mut routed = load(40.0, 1000.0, 0);
        routed["routing"] = json!("event-router");
        let c = compare(&load(40.0, 1000.0, 0), &routed, 10.0).unwrap();
        assert!(
            c.warnings[0].contains("routed the outbox differently (raw and event-router)"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn percentages_parse_with_or_without_the_sign() {
        assert_eq!(parse_pct("10%"), Ok(10.0));
        assert_eq!(parse_pct("2.5"), Ok(2.5));
        assert!(parse_pct("-1%").is_err());
        assert!(parse_pct("ten").is_err());
    }
}
