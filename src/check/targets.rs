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
    /// What a phase with end-to-end latency `total`, `delivered` of `events`, missed; empty
    /// when it met every target.
    pub fn missed(&self, total: &Summary, delivered: u64, events: u64) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value, limit) in [
            ("p50", total.p50_ms, self.p50_ms),
            ("p95", total.p95_ms, self.p95_ms),
            ("p99", total.p99_ms, self.p99_ms),
        ] {
            if value >= limit {
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
}
