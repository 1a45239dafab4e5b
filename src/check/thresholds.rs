//! The gates a user sets on `full`: `--max-p95-ms` on the run's end-to-end p95 and
//! `--min-throughput` on the last phase. What broke is said in one sentence each.

use serde::Serialize;

/// The thresholds of a run; `None` is not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Thresholds {
    /// Fail when the run's p95 end-to-end latency is above this, ms.
    pub max_p95_ms: Option<f64>,
    /// Fail when the last phase's throughput is below this, events/s.
    pub min_throughput: Option<f64>,
}

impl Thresholds {
    /// The thresholds that broke for a run whose p95 was `p95_ms` and whose last phase
    /// (`name`, events/s) is `last`; empty when all held.
    pub fn failures(&self, p95_ms: f64, last: Option<(&str, f64)>) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(max) = self.max_p95_ms.filter(|max| p95_ms > *max) {
            failures.push(format!(
                "p95 end-to-end latency {p95_ms:.1} ms is above --max-p95-ms {max}"
            ));
        }
        if let (Some(min), Some((phase, eps))) = (self.min_throughput, last) {
            if eps < min {
                failures.push(format!(
                    "{phase} phase throughput {eps:.0} events/s is below --min-throughput {min}"
                ));
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_nothing_fails() {
        assert!(Thresholds::default()
            .failures(1e9, Some(("extreme", 0.0)))
            .is_empty());
    }

    #[test]
    fn each_broken_threshold_is_one_sentence_naming_its_flag() {
        let t = Thresholds {
            max_p95_ms: Some(100.0),
            min_throughput: Some(500.0),
        };
        assert!(t.failures(100.0, Some(("extreme", 500.0))).is_empty());
        let f = t.failures(100.4, Some(("extreme", 499.6)));
        assert_eq!(
            f,
            [
                "p95 end-to-end latency 100.4 ms is above --max-p95-ms 100",
                "extreme phase throughput 500 events/s is below --min-throughput 500",
            ]
        );
        // No phase ran: only the latency can be judged.
        assert_eq!(t.failures(10.0, None), Vec::<String>::new());
    }
}
