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

/// How long the pipeline must look recovered, from the moment counted as its recovery.
pub const STEADY_US: i64 = 2_000_000;

/// What "recovered" means, for the reports (followed by the SLO in ms).
pub const RECOVERED_MEANS: &str = "recovered = from the first moment after clearing that the \
     backlog is back at its level before the fault and stays there for 2 s, the events written \
     in those 2 s at a p99 from schedule ≤";

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

/// What a recovered pipeline is back within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    /// The backlog before the fault ([`normal_backlog`]).
    pub backlog: u64,
    /// How far the backlog may rise above it afterwards without counting as a relapse: the
    /// events of one SLO's worth of time at the offered rate (a transaction in flight, a
    /// slower poll), which are not late yet.
    pub slack: u64,
    /// The p99 from schedule, ms.
    pub slo_p99_ms: f64,
}

impl Bar {
    /// The bar for a run offering `rate` events/s against `slo_p99_ms`.
    pub fn new(backlog: u64, rate: f64, slo_p99_ms: f64) -> Self {
        Bar {
            backlog,
            slack: (rate * slo_p99_ms / 1000.0).ceil() as u64,
            slo_p99_ms,
        }
    }
}

/// Whether the pipeline was back to normal service from `ticks[0]` on: the backlog back at
/// its level before the fault then, never beyond it by more than the slack in the
/// [`STEADY_US`] that follow, and the p99 of the events written in them within the SLO (none
/// written counts, the backlog staying normal).
///
/// Judged forward, from the moment on, not over a window behind it: a window looking back
/// would count the late events' leaving it (2 s) as part of every recovery.
pub fn recovered_from(ticks: &[Tick], bar: Bar, samples: &[Sample]) -> bool {
    let Some(first) = ticks.first() else {
        return false;
    };
    let to = first.at_us + STEADY_US;
    first.backlog <= bar.backlog
        && ticks
            .iter()
            .take_while(|t| t.at_us <= to)
            .all(|t| t.backlog <= bar.backlog + bar.slack)
        && p99_ms(samples, first.at_us, to).is_none_or(|p| p <= bar.slo_p99_ms)
}

/// Follows the ticks after a fault is cleared: each tick is judged once, as soon as the ticks
/// cover the [`STEADY_US`] after it.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The ticks before this time are ruled out.
    judged_until_us: i64,
}

impl Recovery {
    /// Judges the ticks from `cleared_us` on that can be judged now; returns the first from
    /// which the pipeline was back to normal (see [`recovered_from`]).
    pub fn observe(
        &mut self,
        ticks: &[Tick],
        cleared_us: i64,
        bar: Bar,
        samples: &[Sample],
    ) -> Option<i64> {
        let last = ticks.last()?.at_us;
        let first = ticks.partition_point(|t| t.at_us < cleared_us.max(self.judged_until_us));
        for i in first..ticks.len() {
            let at = ticks[i].at_us;
            if at + STEADY_US > last {
                return None;
            }
            self.judged_until_us = at + 1;
            if recovered_from(&ticks[i..], bar, samples) {
                return Some(at);
            }
        }
        None
    }
}

/// The first tick from `cleared_us` on from which the pipeline was back to normal, when the
/// ticks cover the [`STEADY_US`] after it.
pub fn recovered_at(ticks: &[Tick], cleared_us: i64, bar: Bar, samples: &[Sample]) -> Option<i64> {
    Recovery::default().observe(ticks, cleared_us, bar, samples)
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

    /// 100 events/s against a p99 of 100 ms: a slack of 10.
    fn bar(normal: u64) -> Bar {
        Bar::new(normal, 100.0, 100.0)
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
    fn recovery_is_the_first_moment_from_which_the_pipeline_stays_normal_for_two_seconds() {
        // Cleared at 10 s; the events due until 13 s arrive 2 s late (written until 15 s),
        // the backlog drains by 15 s; from then on every event takes 10 ms.
        let mut samples = arrivals(0.0, 10.0, 10);
        samples.extend(arrivals(10.0, 13.0, 2000));
        samples.extend(arrivals(13.0, 20.0, 10));
        let ticks: Vec<Tick> = (40..80)
            .map(|i| {
                let at = i as f64 * 0.25;
                tick(at, if at < 15.0 { 300 } else { 5 }, None)
            })
            .collect();
        // From 15 s: not 17 s, as a p99 over the 2 s behind each moment would say.
        assert_eq!(
            recovered_at(&ticks, 10_000_000, bar(8), &samples),
            Some(15_000_000)
        );
        // Not judged before the ticks cover the 2 s after the moment.
        assert_eq!(
            recovered_at(&ticks[..25], 10_000_000, bar(8), &samples),
            None
        );
        // One good tick between bad ones is not a recovery; a backlog that comes back within
        // the 2 s rules the moment out.
        let flaky: Vec<Tick> = (40..60)
            .map(|i| {
                let at = i as f64 * 0.25;
                tick(at, if i == 45 { 300 } else { 5 }, None)
            })
            .collect();
        assert_eq!(
            recovered_at(&flaky, 10_000_000, bar(8), &arrivals(0.0, 20.0, 10)),
            Some(11_500_000)
        );
        // Within the slack (one SLO's worth of events above normal) the backlog may wander;
        // the moment itself must be back at normal.
        let wander: Vec<Tick> = (40..60)
            .map(|i| {
                let at = i as f64 * 0.25;
                tick(
                    at,
                    [5, 18, 19][(i == 44) as usize + 2 * (i == 41) as usize],
                    None,
                )
            })
            .collect();
        assert_eq!(
            recovered_at(&wander, 10_000_000, bar(8), &arrivals(0.0, 20.0, 10)),
            Some(10_500_000)
        );
        // Late events written within the 2 s after a moment rule it out too.
        let mut spike = arrivals(0.0, 20.0, 10);
        spike.extend(arrivals(10.5, 10.6, 900));
        let calm: Vec<Tick> = (40..80).map(|i| tick(i as f64 * 0.25, 5, None)).collect();
        assert_eq!(
            recovered_at(&calm, 10_000_000, bar(8), &spike),
            Some(11_500_000)
        );
        // Never within the SLO: not recovered.
        assert_eq!(
            recovered_at(&ticks, 10_000_000, bar(8), &arrivals(0.0, 30.0, 500)),
            None
        );
    }

    #[test]
    fn each_moment_is_judged_once_as_the_ticks_come() {
        let samples = arrivals(0.0, 20.0, 10);
        let ticks: Vec<Tick> = (40..80)
            .map(|i| {
                let at = i as f64 * 0.25;
                tick(at, if at < 11.0 { 300 } else { 5 }, None)
            })
            .collect();
        let mut r = Recovery::default();
        let seen: Vec<Option<i64>> = (1..=ticks.len())
            .map(|n| r.observe(&ticks[..n], 10_000_000, bar(8), &samples))
            .collect();
        // Decided at the tick 2 s after 11 s, not before.
        let first = seen.iter().position(Option::is_some).unwrap();
        assert_eq!(ticks[first].at_us, 13_000_000);
        assert_eq!(seen[first], Some(11_000_000));
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
