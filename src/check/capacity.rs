//! What counts as a sustained rate, and which rate to try next: the decisions of
//! `pipedemo capacity`, apart from the runs that feed them.
//!
//! A sweep offers rising open-loop rates (geometric), then narrows the interval between the
//! highest rate sustained and the lowest one not sustained (the knee). A step is sustained
//! when its p99 latency, counted from each event's scheduled insert time, is within the SLO
//! and the backlog (events inserted but not yet in MongoDB) did not grow over the step.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::verify::{pass_fail_text, VerifyReport};
use crate::telemetry::stats::{Stage, Summary};

/// The next rate to offer, from what the earlier steps found.
#[derive(Clone, Debug)]
pub struct Sweep {
    start: f64,
    max: f64,
    growth: f64,
    refinements: u32,
    /// The highest rate sustained so far.
    sustained: Option<f64>,
    /// The lowest rate not sustained so far.
    failed: Option<f64>,
    refined: u32,
    /// The highest rate offered so far.
    top: f64,
    /// The highest rate whose backlog stayed flat.
    flat: Option<f64>,
    /// The lowest rate whose backlog grew.
    grew: Option<f64>,
    probes: u32,
}

/// Steps above the SLO knee that look for the throughput ceiling (the backlog growing).
const CEILING_PROBES: u32 = 2;

/// The narrowing stops once the knee is known this closely (a fraction of the rate
/// sustained): finer than the ±10 % the figure is to repeat within.
pub const RESOLUTION: f64 = 0.05;

/// Below this rate a sweep gives up looking down: the pipeline is broken, not slow.
const FLOOR_EPS: f64 = 10.0;

impl Sweep {
    /// Starts at `start` ev/s, multiplies by `growth` until a step fails or `max` is reached,
    /// then halves the interval around the knee `refinements` times.
    pub fn new(start: f64, max: f64, growth: f64, refinements: u32) -> Sweep {
        Sweep {
            start: start.min(max),
            max,
            growth: growth.max(1.1),
            refinements,
            sustained: None,
            failed: None,
            refined: 0,
            top: 0.0,
            flat: None,
            grew: None,
            probes: 0,
        }
    }

    /// The rate of the next step, or `None` when the sweep is over.
    pub fn next(&self) -> Option<f64> {
        match (self.sustained, self.failed) {
            (None, None) => Some(self.start),
            (Some(ok), None) if ok >= self.max => None,
            (Some(ok), None) => Some((ok * self.growth).min(self.max)),
            (None, Some(bad)) => Some(bad / self.growth).filter(|r| *r >= FLOOR_EPS),
            (Some(ok), Some(bad)) => {
                // The knee first, to the resolution asked: the steps that decide the figure
                // run before the ceiling probes overload the stack on purpose (steps after
                // an overloaded one were seen to fail at rates that had held before it).
                let wide = bad - ok > RESOLUTION * ok;
                if self.refined < self.refinements && wide {
                    return Some((ok + bad) / 2.0);
                }
                // Above the SLO knee the backlog still kept up: look higher for the ceiling.
                (self.grew.is_none() && self.probes < CEILING_PROBES && self.top < self.max)
                    .then(|| (self.top * self.growth).min(self.max))
            }
        }
    }

    /// How far the figure may lie below the true knee, as a fraction of it: the interval
    /// between the highest rate sustained and the lowest one above it that was not, over the
    /// former (`None`: no knee found above the figure).
    pub fn uncertainty(&self) -> Option<f64> {
        let (ok, bad) = (self.sustained?, self.knee_above()?);
        Some((bad - ok) / ok)
    }

    /// Takes a step's verdict into account: sustained within the SLO, and whether its
    /// backlog stayed flat.
    pub fn record(&mut self, rate: f64, sustained: bool, backlog_flat: bool) {
        if let (Some(_), Some(bad)) = (self.sustained, self.failed) {
            if rate > bad {
                self.probes += 1;
            } else {
                self.refined += 1;
            }
        }
        self.top = self.top.max(rate);
        if backlog_flat {
            self.flat = Some(self.flat.map_or(rate, |r| r.max(rate)));
        } else {
            self.grew = Some(self.grew.map_or(rate, |r| r.min(rate)));
        }
        if sustained {
            self.sustained = Some(self.sustained.map_or(rate, |r| r.max(rate)));
            // A rate sustained at or above one that failed shows that failure was not the
            // knee (a stall, or a stack still settling): the knee lies higher, so the search
            // goes on from here rather than ending on a figure with no failure above it.
            if self.failed.is_some_and(|bad| bad <= rate) {
                self.failed = None;
                self.refined = 0;
            }
        } else {
            self.failed = Some(self.failed.map_or(rate, |r| r.min(rate)));
        }
    }

    /// The highest rate sustained.
    pub fn sustained(&self) -> Option<f64> {
        self.sustained
    }

    /// The lowest rate above [`Sweep::sustained`] that was not sustained: the knee lies
    /// between the two.
    pub fn knee_above(&self) -> Option<f64> {
        self.failed
            .filter(|f| self.sustained.is_none_or(|s| *f > s))
    }

    /// The throughput ceiling as far as the sweep saw it: the highest rate whose backlog
    /// stayed flat, and the lowest whose backlog grew (none: no rate offered overflowed).
    pub fn ceiling(&self) -> (Option<f64>, Option<f64>) {
        (self.flat, self.grew)
    }
}

/// The least-squares slope of `(seconds, backlog)` samples, in events per second (0 with
/// fewer than two distinct times).
pub fn slope(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let (mx, my) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// How fast a backlog may grow before a step counts as falling behind: 2 % of the offered
/// rate, and at least 5 events/s so that a few slow batches at low rates do not count.
pub fn backlog_limit(offered: f64) -> f64 {
    (0.02 * offered).max(5.0)
}

/// Why a step was or was not sustained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// p99 within the SLO and no growing backlog.
    pub sustained: bool,
    /// What broke, or "within the SLO".
    pub reason: String,
    /// The p99 was within the SLO.
    pub latency_ok: bool,
    /// The backlog did not grow: the pipeline kept up with the rate.
    pub backlog_flat: bool,
    /// Every event of the step arrived.
    pub complete: bool,
}

/// Whether a step that failed is offered again before the sweep believes it: one that
/// failed on latency alone (its backlog flat, every event in), which one stall can cause. A
/// growing backlog is the pipeline past its ceiling, which no second try changes.
pub fn worth_confirming(v: &Verdict) -> bool {
    !v.sustained && v.backlog_flat && v.complete
}

/// The verdict of a step offered twice: sustained when the second try was (the first one's
/// failure was a stall, not the rate).
pub fn confirmed(first: &Verdict, second: &Verdict) -> Verdict {
    let reason = if second.sustained {
        format!(
            "within the SLO on a second try (the first: {})",
            first.reason
        )
    } else {
        format!("{}; again on a second try: {}", first.reason, second.reason)
    };
    Verdict {
        reason,
        ..second.clone()
    }
}

/// Judges a step: its p99 from schedule against the SLO, its backlog slope against
/// [`backlog_limit`], and whether every event of it arrived.
pub fn judge(
    offered: f64,
    p99_ms: f64,
    slo_p99_ms: f64,
    backlog_slope: f64,
    missing: u64,
) -> Verdict {
    let mut broken = Vec::new();
    if p99_ms > slo_p99_ms {
        broken.push(format!("p99 {p99_ms:.1} ms > SLO {slo_p99_ms} ms"));
    }
    let limit = backlog_limit(offered);
    if backlog_slope > limit {
        broken.push(format!(
            "backlog grew {backlog_slope:.0} events/s (limit {limit:.0})"
        ));
    }
    if missing > 0 {
        broken.push(format!("{missing} events did not arrive in time"));
    }
    Verdict {
        sustained: broken.is_empty(),
        reason: if broken.is_empty() {
            "within the SLO".into()
        } else {
            broken.join("; ")
        },
        latency_ok: p99_ms <= slo_p99_ms,
        backlog_flat: backlog_slope <= limit,
        complete: missing == 0,
    }
}

/// The stage whose p99 grew most from the highest sustained step to the first step above
/// it: where the pipeline gives way first. `None` when there is no such pair of steps.
pub fn limiting_stage(
    below: &BTreeMap<Stage, Summary>,
    above: &BTreeMap<Stage, Summary>,
) -> Option<(Stage, f64)> {
    Stage::PARTS
        .iter()
        .filter_map(|s| {
            let grew = above.get(s)?.p99_ms - below.get(s).map_or(0.0, |b| b.p99_ms);
            Some((*s, grew))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Why a capacity run fails, one sentence each: events lost or broken (`v`), no rate
/// `sustained` within p99 ≤ `slo_p99_ms`, or the sustained rate below `min_rate`. Empty when
/// it passed.
pub fn failures(sustained: Option<f64>, slo_p99_ms: f64, v: &VerifyReport) -> Vec<String> {
    let mut out = Vec::new();
    if !v.passed {
        out.push(format!(
            "verification failed: {} of {} events found, {} duplicated, integrity {}",
            v.found_events,
            v.total_events,
            v.duplicated_ids.len(),
            pass_fail_text(v.integrity_passed)
        ));
    }
    if sustained.is_none() {
        out.push(format!(
            "no rate was sustained within p99 ≤ {slo_p99_ms} ms"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(passed: bool) -> VerifyReport {
        VerifyReport {
            passed,
            integrity_passed: passed,
            total_events: 10,
            found_events: if passed { 10 } else { 9 },
            ..VerifyReport::default()
        }
    }

    #[test]
    fn a_capacity_run_fails_for_loss_for_no_rate_and_below_the_gate() {
        assert!(failures(Some(1000.0), 50.0, &verified(true)).is_empty());
        assert_eq!(
            failures(None, 50.0, &verified(true)),
            ["no rate was sustained within p99 ≤ 50 ms"]
        );
        let f = failures(Some(2000.0), 50.0, &verified(false));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].starts_with("verification failed: 9 of 10 events found, 0 duplicated, integrity"),
            "{f:?}"
        );
    }

    fn run(sweep: Sweep, capacity: f64) -> (Vec<f64>, Option<f64>) {
        let (offered, s) = run_ceiling(sweep, capacity, capacity);
        (offered, s.sustained())
    }

    /// A pipeline within the SLO up to `capacity` and keeping up up to `ceiling`.
    fn run_ceiling(mut sweep: Sweep, capacity: f64, ceiling: f64) -> (Vec<f64>, Sweep) {
        let mut offered = Vec::new();
        while let Some(r) = sweep.next() {
            assert!(offered.len() < 50, "the sweep ends");
            offered.push(r);
            sweep.record(r, r <= capacity, r <= ceiling);
        }
        (offered, sweep)
    }

    #[test]
    fn rates_grow_geometrically_then_narrow_around_the_knee() {
        let (offered, found) = run(Sweep::new(500.0, 20_000.0, 2.0, 3), 4_200.0);
        assert_eq!(
            offered,
            [500.0, 1000.0, 2000.0, 4000.0, 8000.0, 6000.0, 5000.0, 4500.0]
        );
        assert_eq!(found, Some(4000.0));
    }

    #[test]
    fn the_knee_is_narrowed_to_the_resolution_and_no_further() {
        let (offered, s) = run_ceiling(Sweep::new(500.0, 20_000.0, 2.0, 10), 4_200.0, 4_200.0);
        assert_eq!(
            offered,
            [500.0, 1000.0, 2000.0, 4000.0, 8000.0, 6000.0, 5000.0, 4500.0, 4250.0, 4125.0]
        );
        assert_eq!(s.sustained(), Some(4125.0));
        let u = s.uncertainty().unwrap();
        assert!(u <= RESOLUTION && (u - 125.0 / 4125.0).abs() < 1e-9, "{u}");
        let (_, s) = run_ceiling(Sweep::new(500.0, 20_000.0, 2.0, 3), 4_200.0, 4_200.0);
        assert_eq!(s.uncertainty(), Some(0.125), "three halvings of a doubling");
    }

    #[test]
    fn the_knee_is_narrowed_before_the_ceiling_is_probed() {
        let (offered, s) = run_ceiling(Sweep::new(500.0, 20_000.0, 2.0, 2), 1_200.0, 5_000.0);
        // 2,000 fails the SLO with a flat backlog: the knee is narrowed (1,500, 1,250), then
        // 4,000 (flat) and 8,000 (grew) find the ceiling: the overloaded steps come last.
        assert_eq!(
            offered,
            [500.0, 1000.0, 2000.0, 1500.0, 1250.0, 4000.0, 8000.0]
        );
        assert_eq!(s.sustained(), Some(1000.0));
        assert_eq!(s.knee_above(), Some(1250.0));
        assert_eq!(s.ceiling(), (Some(4000.0), Some(8000.0)));
        // At most two probes; none once a backlog grew.
        let (offered, s) = run_ceiling(Sweep::new(500.0, 20_000.0, 2.0, 1), 700.0, 1e9);
        assert_eq!(offered, [500.0, 1000.0, 750.0, 2000.0, 4000.0]);
        assert_eq!(s.ceiling(), (Some(4000.0), None));
        let (offered, _) = run_ceiling(Sweep::new(500.0, 20_000.0, 2.0, 1), 700.0, 700.0);
        assert_eq!(offered, [500.0, 1000.0, 750.0]);
    }

    #[test]
    fn a_latency_failure_is_confirmed_a_growing_backlog_is_not() {
        let stall = judge(1000.0, 217.0, 50.0, 0.0, 0);
        assert!(worth_confirming(&stall));
        assert!(!worth_confirming(&judge(1000.0, 217.0, 50.0, 400.0, 0)));
        assert!(!worth_confirming(&judge(1000.0, 17.0, 50.0, 0.0, 0)));
        let ok = judge(1000.0, 21.0, 50.0, 0.0, 0);
        let v = confirmed(&stall, &ok);
        assert!(v.sustained);
        assert_eq!(
            v.reason,
            "within the SLO on a second try (the first: p99 217.0 ms > SLO 50 ms)"
        );
        let v = confirmed(&stall, &judge(1000.0, 90.0, 50.0, 0.0, 0));
        assert!(!v.sustained);
        assert!(v
            .reason
            .ends_with("again on a second try: p99 90.0 ms > SLO 50 ms"));
    }

    #[test]
    fn the_sweep_stops_at_the_maximum_and_looks_down_when_the_start_fails() {
        let (offered, found) = run(Sweep::new(500.0, 3000.0, 2.0, 2), 1e9);
        assert_eq!(offered, [500.0, 1000.0, 2000.0, 3000.0]);
        assert_eq!(found, Some(3000.0));
        let (offered, found) = run(Sweep::new(1000.0, 20_000.0, 2.0, 1), 300.0);
        assert_eq!(offered, [1000.0, 500.0, 250.0, 375.0]);
        assert_eq!(found, Some(250.0));
        let (_, found) = run(Sweep::new(100.0, 20_000.0, 2.0, 1), 0.0);
        assert_eq!(found, None, "nothing sustained, down to the floor");
    }

    #[test]
    fn a_failure_below_a_sustained_rate_does_not_end_the_search() {
        // The first step stalls once (p99 over the SLO at 500 though the pipeline holds
        // 4,200): the sweep looks down, a ceiling probe then passes at 1,000, and the search
        // must go on up to the real knee instead of ending at 2,000 with nothing failed above.
        let mut sweep = Sweep::new(500.0, 20_000.0, 2.0, 3);
        let mut offered = Vec::new();
        while let Some(r) = sweep.next() {
            assert!(offered.len() < 50, "the sweep ends");
            let fluke = offered.is_empty();
            offered.push(r);
            sweep.record(r, !fluke && r <= 4_200.0, r <= 4_200.0);
        }
        assert_eq!(sweep.sustained(), Some(4000.0));
        assert_eq!(sweep.knee_above(), Some(4500.0));
        assert_eq!(
            offered,
            [
                500.0, 250.0, 375.0, 437.5, 468.75, 1000.0, 2000.0, 4000.0, 8000.0, 6000.0, 5000.0,
                4500.0
            ]
        );
    }

    #[test]
    fn backlog_slope_is_least_squares() {
        let flat = [(0.0, 20.0), (1.0, 22.0), (2.0, 18.0), (3.0, 20.0)];
        assert!(slope(&flat).abs() < 1.0);
        let growing: Vec<(f64, f64)> = (0..10).map(|t| (t as f64, 100.0 * t as f64)).collect();
        assert!((slope(&growing) - 100.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn a_step_is_sustained_within_the_slo_without_a_growing_backlog() {
        assert!(judge(2000.0, 30.0, 50.0, 3.0, 0).sustained);
        let v = judge(2000.0, 80.0, 50.0, 300.0, 0);
        assert!(!v.sustained);
        assert_eq!(
            v.reason,
            "p99 80.0 ms > SLO 50 ms; backlog grew 300 events/s (limit 40)"
        );
        assert!(!judge(100.0, 10.0, 50.0, 0.0, 3).sustained);
    }

    #[test]
    fn the_limit_is_the_stage_that_grew_most_at_the_knee() {
        let p99 = |v: [f64; 4]| -> BTreeMap<Stage, Summary> {
            Stage::PARTS
                .iter()
                .zip(v)
                .map(|(s, p99_ms)| {
                    (
                        *s,
                        Summary {
                            p99_ms,
                            ..Summary::default()
                        },
                    )
                })
                .collect()
        };
        let below = p99([10.0, 12.0, 20.0, 15.0]);
        let above = p99([15.0, 14.0, 140.0, 90.0]);
        assert_eq!(limiting_stage(&below, &above), Some((Stage::Poll, 120.0)));
    }
}
