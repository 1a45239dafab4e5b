//! The checker's arithmetic, apart from the I/O that feeds it: what the backlog was before a
//! fault, when the pipeline counts as recovered, and each fault's figures from the arrivals and
//! the backlog samples of the run.

use serde::Serialize;

use crate::telemetry::live::Sample;
use crate::telemetry::stats::Latency;

/// The backlog and state, sampled every [`super::TICK`].
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    /// When, µs.
    pub at_us: i64,
    /// Events due by the schedule and not yet arrived.
    pub backlog: u64,
    /// What pipedemo's health said was wrong then (the dashboard's DEGRADED cause).
    pub problem: Option<String>,
}

/// How long before a fault the normal backlog is read.
pub const BEFORE_US: i64 = 5_000_000;

/// How far back the p99 that decides recovery looks.
pub const P99_WINDOW_US: i64 = 2_000_000;

/// Ticks in a row that must look recovered: one good sample is not a recovery.
pub const STEADY_TICKS: usize = 2;

/// The backlog a recovery must come back to: the highest of the normal fluctuation before the
/// fault (the ticks in the [`BEFORE_US`] before it), and never below `floor` (a transaction's
/// worth of events, which is in flight at any moment).
pub fn normal_backlog(ticks: &[Tick], injected_us: i64, floor: u64) -> u64 {
    ticks
        .iter()
        .filter(|t| t.at_us < injected_us && t.at_us >= injected_us - BEFORE_US)
        .map(|t| t.backlog)
        .max()
        .unwrap_or(0)
        .max(floor)
}

/// The p99 from schedule of events written in `[from_us, to_us]`, ms (`None`: none were).
pub fn p99_ms(samples: &[Sample], from_us: i64, to_us: i64) -> Option<f64> {
    let l = latency(
        samples
            .iter()
            .filter(|s| s.t5_us >= from_us && s.t5_us <= to_us),
    );
    (l.count() > 0).then(|| l.quantile_ms(0.99))
}

fn latency<'a>(samples: impl Iterator<Item = &'a Sample>) -> Latency {
    let mut l = Latency::default();
    for s in samples {
        if let Some(due) = s.due_us {
            l.record(s.t5_us - due);
        }
    }
    l
}

/// Whether the pipeline looks recovered at tick `t`: the backlog back at `normal` and the p99
/// of the last [`P99_WINDOW_US`] within the SLO (no arrivals at all counts only when nothing
/// is waiting beyond normal).
pub fn looks_recovered(t: &Tick, normal: u64, samples: &[Sample], slo_p99_ms: f64) -> bool {
    t.backlog <= normal
        && p99_ms(samples, t.at_us - P99_WINDOW_US, t.at_us).is_none_or(|p| p <= slo_p99_ms)
}

/// Follows the ticks after a fault is cleared, one at a time: the nemesis asks at each new
/// tick, so each tick's window is judged once.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The first tick of the current run of recovered-looking ticks, and its length.
    streak: Option<(i64, usize)>,
}

impl Recovery {
    /// Judges tick `t`; returns when the recovery began once [`STEADY_TICKS`] in a row look
    /// recovered.
    pub fn observe(
        &mut self,
        t: &Tick,
        normal: u64,
        samples: &[Sample],
        slo_p99_ms: f64,
    ) -> Option<i64> {
        if !looks_recovered(t, normal, samples, slo_p99_ms) {
            self.streak = None;
            return None;
        }
        let (start, n) = self.streak.get_or_insert((t.at_us, 0));
        *n += 1;
        (*n >= STEADY_TICKS).then_some(*start)
    }
}

/// The first tick after `cleared_us` that starts [`STEADY_TICKS`] recovered ticks in a row.
pub fn recovered_at(
    ticks: &[Tick],
    cleared_us: i64,
    normal: u64,
    samples: &[Sample],
    slo_p99_ms: f64,
) -> Option<i64> {
    let mut r = Recovery::default();
    ticks
        .iter()
        .filter(|t| t.at_us >= cleared_us)
        .find_map(|t| r.observe(t, normal, samples, slo_p99_ms))
}

/// Latency of the events due in an interval, from schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stretch {
    /// Events due in it that arrived.
    pub events: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// The latency of the events due in `[from_us, to_us)`.
pub fn stretch(samples: &[Sample], from_us: i64, to_us: i64) -> Stretch {
    let l = latency(
        samples
            .iter()
            .filter(|s| s.due_us.is_some_and(|d| d >= from_us && d < to_us)),
    );
    let s = l.summary();
    Stretch {
        events: l.count(),
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        max_ms: s.max_ms,
    }
}

/// The highest backlog in `[from_us, to_us]`.
pub fn peak_backlog(ticks: &[Tick], from_us: i64, to_us: i64) -> u64 {
    ticks
        .iter()
        .filter(|t| t.at_us >= from_us && t.at_us <= to_us)
        .map(|t| t.backlog)
        .max()
        .unwrap_or(0)
}

/// Deliveries found already applied in `[from_us, to_us]`.
pub fn redelivered(samples: &[Sample], from_us: i64, to_us: i64) -> u64 {
    samples
        .iter()
        .filter(|s| s.redelivered && s.t5_us >= from_us && s.t5_us <= to_us)
        .count() as u64
}

/// When the first event written to MongoDB in `[from_us, to_us]` was written.
pub fn first_arrival(samples: &[Sample], from_us: i64, to_us: i64) -> Option<i64> {
    samples
        .iter()
        .map(|s| s.t5_us)
        .filter(|t| (from_us..=to_us).contains(t))
        .min()
}

/// From `cleared_us` to the first event written to MongoDB after it, s: when the pipeline
/// moved again.
pub fn moving_after_secs(samples: &[Sample], cleared_us: i64) -> Option<f64> {
    first_arrival(samples, cleared_us, i64::MAX).map(|at| (at - cleared_us) as f64 / 1e6)
}

/// The first tick in `[from_us, to_us]` with a problem: when pipedemo noticed, and why.
pub fn noticed(ticks: &[Tick], from_us: i64, to_us: i64) -> Option<(i64, String)> {
    ticks
        .iter()
        .filter(|t| t.at_us >= from_us && t.at_us <= to_us)
        .find_map(|t| t.problem.clone().map(|p| (t.at_us, p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(at_s: f64, backlog: u64, problem: Option<&str>) -> Tick {
        Tick {
            at_us: (at_s * 1e6) as i64,
            backlog,
            problem: problem.map(str::to_owned),
        }
    }

    /// Events due every 10 ms from `from_s` to `to_s`, each arriving `latency_ms` later.
    fn arrivals(from_s: f64, to_s: f64, latency_ms: i64) -> Vec<Sample> {
        let mut v = Vec::new();
        let mut due = (from_s * 1e6) as i64;
        while due < (to_s * 1e6) as i64 {
            v.push(Sample {
                t5_us: due + latency_ms * 1000,
                due_us: Some(due),
                redelivered: false,
            });
            due += 10_000;
        }
        v
    }

    #[test]
    fn the_normal_backlog_is_the_highest_of_the_five_seconds_before() {
        let ticks = [
            tick(1.0, 90, None),
            tick(6.0, 4, None),
            tick(8.0, 7, None),
            tick(10.5, 500, None),
        ];
        assert_eq!(normal_backlog(&ticks, 10_000_000, 1), 7);
        assert_eq!(normal_backlog(&ticks, 10_000_000, 20), 20);
        assert_eq!(normal_backlog(&[], 10_000_000, 3), 3);
    }

    #[test]
    fn recovery_needs_the_backlog_back_and_the_p99_within_the_slo_for_two_ticks() {
        // Cleared at 10 s; the backlog drains by 12 s, but events written until 13 s are
        // the late ones (2 s over), so the p99 window holds them until 15 s.
        let mut samples = arrivals(0.0, 10.0, 10);
        for s in arrivals(10.0, 13.0, 2000) {
            samples.push(s);
        }
        samples.extend(arrivals(13.0, 20.0, 10));
        let ticks: Vec<Tick> = (40..80)
            .map(|i| {
                let at = i as f64 * 0.25;
                tick(at, if at < 12.0 { 300 } else { 5 }, None)
            })
            .collect();
        let at = recovered_at(&ticks, 10_000_000, 8, &samples, 100.0).unwrap();
        // The last late event is written just before 15 s; the 2 s window must have passed it.
        assert!((17_000_000..17_250_000).contains(&at), "{at}");
        // A single good tick between bad ones is not a recovery.
        let flaky = [
            tick(10.25, 5, None),
            tick(10.5, 300, None),
            tick(10.75, 5, None),
        ];
        assert_eq!(
            recovered_at(&flaky, 10_000_000, 8, &arrivals(0.0, 20.0, 10), 100.0),
            None
        );
        // Never within the SLO: not recovered.
        assert_eq!(
            recovered_at(&ticks, 10_000_000, 8, &arrivals(0.0, 30.0, 500), 100.0),
            None
        );
    }

    #[test]
    fn figures_count_what_happened_inside_the_fault() {
        let mut samples = arrivals(0.0, 4.0, 10);
        samples.extend(arrivals(4.0, 6.0, 1500));
        samples.push(Sample {
            t5_us: 6_500_000,
            due_us: None,
            redelivered: true,
        });
        let during = stretch(&samples, 4_000_000, 6_000_000);
        assert_eq!(during.events, 200);
        assert!((during.p50_ms - 1500.0).abs() < 10.0, "{during:?}");
        assert!(stretch(&samples, 0, 4_000_000).p99_ms < 11.0);
        assert_eq!(redelivered(&samples, 4_000_000, 7_000_000), 1);
        assert_eq!(redelivered(&samples, 0, 6_000_000), 0);
        let ticks = [
            tick(3.0, 4, None),
            tick(4.5, 150, Some("Kafka: broker down")),
            tick(5.0, 200, Some("Kafka: broker down")),
            tick(8.0, 3, None),
        ];
        assert_eq!(peak_backlog(&ticks, 4_000_000, 8_000_000), 200);
        assert_eq!(
            noticed(&ticks, 4_000_000, 8_000_000),
            Some((4_500_000, "Kafka: broker down".into()))
        );
        assert_eq!(noticed(&ticks, 7_000_000, 8_000_000), None);
        // The first arrival at or after 4 s (the one due at 3.99 s), none after 30 s.
        assert_eq!(
            first_arrival(&samples, 4_000_000, 9_000_000),
            Some(4_000_000)
        );
        assert_eq!(first_arrival(&samples, 30_000_000, 40_000_000), None);
        assert_eq!(moving_after_secs(&samples, 3_995_000), Some(0.005));
        assert_eq!(moving_after_secs(&samples, 30_000_000), None);
        assert_eq!(p99_ms(&samples, 9_000_000, 10_000_000), None);
    }
}
