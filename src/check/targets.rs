//! The seed's success metrics, which every phase of `pipedemo full` must meet: end-to-end
//! p50 < 30 ms, p95 < 100 ms, p99 < 200 ms, at least 99.9 % of events delivered, and 100 %
//! integrity (checked by `verify`).

use serde::Serialize;

use crate::telemetry::stats::Summary;

/// Latency and success targets of one phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Targets {
    /// End-to-end p50 must be below this, ms.
    pub p50_ms: f64,
    /// End-to-end p95 must be below this, ms.
    pub p95_ms: f64,
    /// End-to-end p99 must be below this, ms.
    pub p99_ms: f64,
    /// At least this share of the phase's events must arrive, %.
    pub success_pct: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            p50_ms: 30.0,
            p95_ms: 100.0,
            p99_ms: 200.0,
            success_pct: 99.9,
        }
    }
}

impl Targets {
    /// Each latency target: its name, the phase's value, the limit, and the fewest events
    /// that percentile needs to say more than the phase's slowest event (n ≥ 1 / (1 − q)).
    fn latencies(&self, total: &Summary) -> [(&'static str, f64, f64, u64); 3] {
        [
            ("p50", total.p50_ms, self.p50_ms, 1),
            ("p95", total.p95_ms, self.p95_ms, 20),
            ("p99", total.p99_ms, self.p99_ms, 100),
        ]
    }

    /// What a phase with end-to-end latency `total`, `delivered` of `events`, missed; empty
    /// when it met every target. A percentile is judged only on enough events to have one
    /// (see [`Targets::unjudged`]).
    pub fn missed(&self, total: &Summary, delivered: u64, events: u64) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value, limit, needs) in self.latencies(total) {
            if total.count >= needs && value >= limit {
                out.push(format!("{name} {value:.1} ms ≥ {limit} ms"));
            }
        }
        let success = if events > 0 {
            delivered as f64 * 100.0 / events as f64
        } else {
            100.0
        };
        if success < self.success_pct {
            out.push(format!(
                "success {success:.2} % < {} % ({delivered} of {events})",
                self.success_pct
            ));
        }
        out
    }

    /// The percentiles a phase with end-to-end latency `total` has too few events to judge,
    /// said so: ten events have no p95 of their own (it would be their slowest event, so one
    /// hiccup of the machine would decide it). `None` when every target was judged.
    pub fn unjudged(&self, total: &Summary) -> Option<String> {
        let short: Vec<String> = self
            .latencies(total)
            .into_iter()
            .filter(|&(_, _, _, needs)| total.count < needs)
            .map(|(name, _, _, needs)| format!("a {name} needs {needs}"))
            .collect();
        (!short.is_empty()).then(|| {
            format!(
                "{} events: {} not judged ({})",
                total.count,
                if short.len() == 1 {
                    "1 percentile"
                } else {
                    "percentiles"
                },
                short.join(", ")
            )
        })
    }

    /// The targets in words, for reports.
    pub fn describe(&self) -> String {
        format!(
            "p50 < {} ms, p95 < {} ms, p99 < {} ms, ≥ {} % success, 100 % integrity",
            self.p50_ms, self.p95_ms, self.p99_ms, self.success_pct
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(p50_ms: f64, p95_ms: f64, p99_ms: f64) -> Summary {
        Summary {
            count: 1000,
            p50_ms,
            p95_ms,
            p99_ms,
            ..Summary::default()
        }
    }

    #[test]
    fn a_phase_within_the_seed_targets_misses_nothing() {
        let t = Targets::default();
        assert!(t.missed(&latency(12.0, 40.0, 90.0), 1000, 1000).is_empty());
        assert!(t
            .missed(&latency(12.0, 40.0, 90.0), 9990, 10_000)
            .is_empty());
    }

    #[test]
    fn each_missed_target_is_named_with_its_value() {
        let t = Targets::default();
        assert_eq!(
            t.missed(&latency(30.0, 120.0, 150.0), 998, 1000),
            [
                "p50 30.0 ms ≥ 30 ms",
                "p95 120.0 ms ≥ 100 ms",
                "success 99.80 % < 99.9 % (998 of 1000)"
            ]
        );
    }

    #[test]
    fn a_percentile_is_judged_only_on_events_enough_to_have_one() {
        let t = Targets::default();
        // Ten events: the p95 and p99 are the slowest event, not judged; the p50 is.
        let ten = Summary {
            count: 10,
            ..latency(11.5, 100.7, 100.7)
        };
        assert!(t.missed(&ten, 10, 10).is_empty());
        assert_eq!(
            t.unjudged(&ten).as_deref(),
            Some("10 events: percentiles not judged (a p95 needs 20, a p99 needs 100)")
        );
        let slow_median = Summary {
            count: 10,
            ..latency(31.0, 100.7, 100.7)
        };
        assert_eq!(t.missed(&slow_median, 10, 10), ["p50 31.0 ms ≥ 30 ms"]);
        // Fifty: the p95 is judged, the p99 not yet.
        let fifty = Summary {
            count: 50,
            ..latency(11.5, 100.7, 100.7)
        };
        assert_eq!(t.missed(&fifty, 50, 50), ["p95 100.7 ms ≥ 100 ms"]);
        assert_eq!(
            t.unjudged(&fifty).as_deref(),
            Some("50 events: 1 percentile not judged (a p99 needs 100)")
        );
        assert_eq!(t.unjudged(&latency(1.0, 2.0, 3.0)), None);
    }
}
