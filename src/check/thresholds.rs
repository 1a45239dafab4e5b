//! `--threshold` gates, k6-style: `p99<50ms`, `success>=99.9%`, `throughput>=1000`,
//! `stage.cdc.p99<20ms`, on the figures of a command's document ([`super::figures`]). The old
//! flags (`--max-p95-ms`, `--min-throughput`, `--min-rate`) are the same gates.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::figures::{self, Kind, Metric};
use crate::numbers::with_unit;

/// A comparison of a figure with a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    const ALL: [(&'static str, Op); 4] =
        [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)];

    fn holds(self, actual: f64, bound: f64) -> bool {
        match self {
            Op::Lt => actual < bound,
            Op::Le => actual <= bound,
            Op::Gt => actual > bound,
            Op::Ge => actual >= bound,
        }
    }

    /// The symbol, as written in expressions.
    pub fn as_str(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("?", |(s, _)| s)
    }
}

/// One gate: a figure, a comparison and a bound in the figure's unit (ms, %, events/s, s).
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The figure.
    pub metric: Metric,
    /// How it must compare.
    pub op: Op,
    /// The bound, in [`Metric::unit`].
    pub bound: f64,
    /// As the user wrote it, for messages.
    pub text: String,
}

impl FromStr for Threshold {
    type Err = String;

    /// `FIGURE OP VALUE[UNIT]`; the error says what is wrong and shows the form.
    fn from_str(s: &str) -> Result<Self, String> {
        let text: String = s.split_whitespace().collect();
        let (at, sym, op) = Op::ALL
            .iter()
            .filter_map(|(sym, op)| text.find(sym).map(|i| (i, *sym, *op)))
            .min_by_key(|(i, sym, _)| (*i, std::cmp::Reverse(sym.len())))
            .ok_or_else(|| {
                format!("`{s}` has no comparison: write FIGURE<VALUE, e.g. `p99<50ms`, `success>=99.9%`")
            })?;
        let metric: Metric = text[..at].parse()?;
        let value = &text[at + sym.len()..];
        let bound = bound(metric, value).map_err(|e| format!("`{s}`: {e}"))?;
        Ok(Threshold {
            metric,
            op,
            bound,
            text,
        })
    }
}

/// `value` in `metric`'s unit: latency takes `ms`, `s`, `us` (bare: ms); success `%` (bare:
/// %); rates `/s` (bare: events/s); recovery a duration (bare: s); counts a bare number.
fn bound(metric: Metric, value: &str) -> Result<f64, String> {
    let number = |v: &str| -> Result<f64, String> {
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("`{value}` is not a number"))
    };
    let unit_err = || {
        let unit = match metric.unit() {
            "" => "a count",
            u => u,
        };
        format!("{metric} is in {unit}, `{value}` is not")
    };
    match metric {
        Metric::Latency(_) | Metric::Stage(..) | Metric::Recovery(_) => {
            let recovery = matches!(metric, Metric::Recovery(_));
            if let Ok(n) = value.parse::<f64>() {
                // Bare: the figure's own unit (ms; s for recovery).
                return Ok(n);
            }
            let v = value.replace('µ', "u");
            let at = v
                .find(|c: char| c.is_ascii_alphabetic())
                .ok_or_else(unit_err)?;
            let (n, unit) = v.split_at(at);
            let n = number(n)?;
            // In ms, then in the figure's unit.
            let ms = match unit {
                "us" => n / 1000.0,
                "ms" => n,
                "s" => n * 1000.0,
                "m" | "min" => n * 60_000.0,
                _ => return Err(unit_err()),
            };
            Ok(if recovery { ms / 1000.0 } else { ms })
        }
        Metric::Success => {
            let v = value.strip_suffix('%').unwrap_or(value);
            if v.ends_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(unit_err());
            }
            number(v)
        }
        Metric::Throughput | Metric::Capacity => {
            let v = ["events/s", "ev/s", "eps", "/s"]
                .iter()
                .find_map(|u| value.strip_suffix(u))
                .unwrap_or(value);
            if v.ends_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(unit_err());
            }
            number(v)
        }
        Metric::Lost | Metric::Duplicated | Metric::DeadLettered => {
            number(value).map_err(|_| unit_err())
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Threshold {
    /// `--max-p95-ms X`: the run's p95 at most X ms.
    pub fn max_p95_ms(x: f64) -> Self {
        Threshold {
            metric: Metric::Latency(figures::Pct::P95),
            op: Op::Le,
            bound: x,
            text: format!("p95<={x}ms"),
        }
    }

    /// `--min-throughput X`: the last phase's throughput at least X events/s.
    pub fn min_throughput(x: f64) -> Self {
        Threshold {
            metric: Metric::Throughput,
            op: Op::Ge,
            bound: x,
            text: format!("throughput>={x}"),
        }
    }

    /// `--min-rate X`: a sustained rate of at least X events/s.
    pub fn min_capacity(x: f64) -> Self {
        Threshold {
            metric: Metric::Capacity,
            op: Op::Ge,
            bound: x,
            text: format!("capacity>={x}"),
        }
    }
}

/// Refuses gates a command of `kind` cannot judge (`capacity` on a `load`), before it runs.
pub fn check_measurable(thresholds: &[Threshold], kind: Kind) -> Result<(), String> {
    match thresholds.iter().find(|t| !t.metric.measured_by(kind)) {
        Some(t) => Err(format!(
            "--threshold `{t}`: `pipedemo {kind}` does not measure {}",
            t.metric
        )),
        None => Ok(()),
    }
}

/// One gate judged: printed as a line and in the JSON document's `thresholds`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Checked {
    /// The gate as written.
    pub threshold: String,
    /// The figure's value; none when the run did not measure it (which fails the gate).
    pub actual: Option<f64>,
    /// The unit of `actual`.
    pub unit: &'static str,
    /// It held.
    pub passed: bool,
}

impl Checked {
    /// `✓ p99<50ms (p99 = 23.1 ms)` or `✗ …`.
    pub fn line(&self) -> String {
        let mark = if self.passed { "✓" } else { "✗" };
        let actual = match self.actual {
            Some(v) => format!(
                "{} = {}",
                metric_of(&self.threshold),
                with_unit(v, self.unit)
            ),
            None => "not measured in this run".into(),
        };
        format!("{mark} threshold {} ({actual})", self.threshold)
    }

    /// Why it failed, one sentence (for exit messages and reports).
    pub fn failure(&self) -> String {
        match self.actual {
            Some(v) => format!(
                "threshold {} broken: {} is {}",
                self.threshold,
                metric_of(&self.threshold),
                with_unit(v, self.unit)
            ),
            None => format!(
                "threshold {} broken: not measured in this run",
                self.threshold
            ),
        }
    }
}

fn metric_of(text: &str) -> &str {
    text.split(['<', '>']).next().unwrap_or(text)
}

/// Judges each gate on the figures of a run.
pub fn judge(thresholds: &[Threshold], figures: &[(Metric, f64)]) -> Vec<Checked> {
    thresholds
        .iter()
        .map(|t| {
            let actual = figures::get(figures, t.metric);
            Checked {
                threshold: t.text.clone(),
                actual,
                unit: t.metric.unit(),
                passed: actual.is_some_and(|a| t.op.holds(a, t.bound)),
            }
        })
        .collect()
}

/// clap's parser for `--threshold`: a bad expression is a usage error.
pub fn parse(s: &str) -> Result<Threshold, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::figures::Pct;
    use crate::fault::Fault;
    use crate::telemetry::stats::Stage;

    fn t(s: &str) -> Threshold {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn expressions_read_as_the_issue_writes_them() {
        let p99 = t("p99<50ms");
        assert_eq!(
            (p99.metric, p99.op, p99.bound),
            (Metric::Latency(Pct::P99), Op::Lt, 50.0)
        );
        assert_eq!(t("p95 < 0.1s").bound, 100.0);
        assert_eq!(t("p(95)<=250").bound, 250.0);
        assert_eq!(t("p50<800us").bound, 0.8);
        let s = t("success>=99.9%");
        assert_eq!((s.metric, s.op, s.bound), (Metric::Success, Op::Ge, 99.9));
        assert_eq!(t("throughput>=1000").bound, 1000.0);
        assert_eq!(t("throughput>=1000/s").bound, 1000.0);
        let st = t("stage.cdc.p99<20ms");
        assert_eq!(st.metric, Metric::Stage(Stage::Cdc, Pct::P99));
        assert_eq!(t("recovery<30s").bound, 30.0);
        assert_eq!(
            t("recovery.kafka-stop<1m").metric,
            Metric::Recovery(Some(Fault::KafkaStop))
        );
        assert_eq!(t("recovery.kafka-stop<1m").bound, 60.0);
        assert_eq!(t("lost<=0").op, Op::Le);
        assert_eq!(t("capacity>2000").op.as_str(), ">");
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let e = |s: &str| s.parse::<Threshold>().unwrap_err();
        assert!(e("p99 50ms").contains("no comparison"), "{}", e("p99 50ms"));
        assert!(e("p98<5ms").contains("unknown figure `p98`"));
        assert!(
            e("success>=99.9ms").contains("success is in %"),
            "{}",
            e("success>=99.9ms")
        );
        assert!(e("p99<fast").contains("is not"), "{}", e("p99<fast"));
        assert!(e("p99<5kg").contains("p99 is in ms"), "{}", e("p99<5kg"));
        assert!(e("throughput>=1000ms").contains("events/s"));
        assert!(e("lost<=none").contains("a count"));
    }

    #[test]
    fn each_gate_passes_or_fails_on_its_figure() {
        let figures = [(Metric::Latency(Pct::P99), 61.24), (Metric::Success, 100.0)];
        let c = judge(
            &[t("p99<50ms"), t("success>=99.9%"), t("capacity>=10")],
            &figures,
        );
        assert_eq!(
            c.iter().map(|c| c.passed).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(c[0].line(), "✗ threshold p99<50ms (p99 = 61.2 ms)");
        assert_eq!(c[1].line(), "✓ threshold success>=99.9% (success = 100%)");
        assert_eq!(c[0].failure(), "threshold p99<50ms broken: p99 is 61.2 ms");
        assert_eq!(
            c[2].failure(),
            "threshold capacity>=10 broken: not measured in this run"
        );
        // The bound itself: < excludes it, <= includes it.
        let at = [(Metric::Latency(Pct::P99), 50.0)];
        assert!(!judge(&[t("p99<50ms")], &at)[0].passed);
        assert!(judge(&[t("p99<=50ms")], &at)[0].passed);
    }

    #[test]
    fn the_old_flags_are_the_same_gates() {
        assert_eq!(
            Threshold::max_p95_ms(90.0),
            Threshold {
                text: "p95<=90ms".into(),
                ..t("p95<=90ms")
            }
        );
        assert_eq!(Threshold::min_throughput(500.0).metric, Metric::Throughput);
        assert_eq!(Threshold::min_capacity(1000.0), t("capacity>=1000"));
        assert!(check_measurable(&[t("capacity>=1")], Kind::Load)
            .unwrap_err()
            .contains("`pipedemo load` does not measure capacity"));
        assert!(check_measurable(&[t("capacity>=1"), t("p99<1s")], Kind::Full).is_ok());
    }
}
