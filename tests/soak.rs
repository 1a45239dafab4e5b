//! A steady soak on four partitions: no self-inflicted stall (every 10 s window near the
//! offered rate, no rebalance, the consumer never replaced), and a consumer lag that means
//! something (near zero while every event is applied within milliseconds, and what Kafka's own
//! `kafka-consumer-groups --describe` says). Runs in its own world and clears it at the end.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{text, Spawned};

const NAME: &str = "soak";
const WORLD: [(&str, &str); 3] = [
    ("TOPIC_PREFIX", "pipedemo_test_soak"),
    ("CONNECTOR_NAME", "pipedemo-test-soak"),
    ("REPLICATION_SLOT", "pipedemo_test_soak"),
];
const RATE: u64 = 400;
/// `--duration 45s` at [`RATE`].
const EVENTS: u64 = 45 * RATE;

/// The group's total lag as Kafka's own tool reports it (`-` for a partition never
/// committed counts as its whole log).
fn kafka_tool_lag() -> i64 {
    let o = common::stack_sh(
        &[
            "kafka-tool",
            "consumer-groups",
            "--describe",
            "--group",
            &format!("pipedemo-test-{NAME}"),
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "kafka-consumer-groups failed:\n{out}");
    let mut header: Option<usize> = None;
    let mut total = 0;
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = cols.iter().position(|c| *c == "LAG") {
            header = Some(i);
            continue;
        }
        if let Some(i) = header {
            if let Some(v) = cols.get(i).and_then(|v| v.parse::<i64>().ok()) {
                total += v;
            }
        }
    }
    assert!(header.is_some(), "no LAG column:\n{out}");
    total
}

/// How long the lag may stay at a second of events or more before it counts as a stall.
const HIGH_LAG_LIMIT: Duration = Duration::from_secs(3);

/// The longest stretch of `lags` (time, lag; in time order) at or above `limit`: from its
/// first such reading to the next reading below, or to the last reading when none comes.
fn longest_at_or_above(lags: &[(Duration, i64)], limit: i64) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<Duration> = None;
    for &(at, lag) in lags {
        match (since, lag >= limit) {
            (None, true) => since = Some(at),
            (Some(start), false) => {
                longest = longest.max(at - start);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(start), Some(&(last, _))) = (since, lags.last()) {
        longest = longest.max(last - start);
    }
    longest
}

#[test]
fn a_burst_is_short_and_a_stall_is_long() {
    let s = Duration::from_secs;
    let lags = [
        (s(6), 5),
        (s(7), 721),
        (s(8), 6),
        (s(9), 400),
        (s(10), 900),
        (s(14), 2),
    ];
    assert_eq!(longest_at_or_above(&lags, 400), s(5));
    assert_eq!(longest_at_or_above(&lags[..3], 400), s(1));
    assert_eq!(longest_at_or_above(&lags[..5], 400), s(1));
    assert_eq!(longest_at_or_above(&lags[..1], 400), Duration::ZERO);
}

/// The `lag N` of a progress line.
fn lag_of(line: &str) -> Option<i64> {
    line.rsplit("· lag ")
        .next()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_soak_on_four_partitions_has_no_stall_and_a_lag_near_zero() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let run = |args: &[&str]| {
        common::pipedemo(NAME)
            .args(args)
            .envs(WORLD)
            .output()
            .unwrap()
    };
    let o = run(&["setup", "--partitions", "4"]);
    assert!(o.status.success(), "{}", text(&o));

    let mut load = Spawned::start(
        common::pipedemo(NAME)
            .args([
                "load",
                "--duration",
                "45s",
                "--rate",
                &RATE.to_string(),
                "--no-tui",
                "--json",
            ])
            .envs(WORLD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let started = Instant::now();
    let lines: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
    let stderr = load.child().stderr.take().unwrap();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push((started.elapsed(), l));
            }
        })
    };
    // Kafka's view of the lag, twice, beside pipedemo's own at the same moment.
    let sample = || {
        let theirs = kafka_tool_lag();
        let ours = lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(_, l)| lag_of(l))
            .expect("a progress line with the lag");
        (ours, theirs)
    };
    let mut compared = Vec::new();
    for at in [20, 35] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(started.elapsed()));
        let mut pair = sample();
        if pair.1 >= RATE as i64 {
            // Caught in a burst? A burst clears within a second or two; a stall does not.
            std::thread::sleep(Duration::from_millis(1500));
            pair = sample();
        }
        compared.push(pair);
    }
    let o = load.wait();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    let log: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(o.status.success(), "load failed:\n{log}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["missing"], 0, "{log}");

    // No stall: every whole 10 s window applied at least half the rate the events went in at
    // (windows are aligned to the clock, so the first and the last are partial). The offered
    // rate when PostgreSQL took them that fast; a slow machine's writer falling behind is not
    // the consumer stalling (it shows in the latency from schedule instead).
    let timeline = summary["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 5, "{summary}");
    let inserted = summary["insert_rate_eps"]
        .as_f64()
        .unwrap()
        .min(RATE as f64);
    for w in &timeline[1..timeline.len() - 1] {
        let eps = w["applied_eps"].as_f64().unwrap();
        assert!(
            eps >= inserted / 2.0,
            "a 10 s window at {eps} ev/s (offered {RATE}, inserted at {inserted:.0}): a stall\n{summary}\n{log}"
        );
    }
    // Nothing caused a rebalance or a reconnect, so none happened: the consumer gives its
    // partitions back once, when every event has arrived, so no progress line after that says
    // an event is still on its way.
    let all_in = format!(
        "{}/{}",
        pipedemo::numbers::thousands(EVENTS),
        pipedemo::numbers::thousands(EVENTS)
    );
    let revoked = lines
        .iter()
        .position(|(_, l)| l.contains("partitions revoked"));
    for (i, (_, l)) in lines.iter().enumerate() {
        for bad in ["reconnecting", "retrying", "failing"] {
            assert!(!l.contains(bad), "`{bad}` in a healthy soak:\n{log}");
        }
        let after_revoke = revoked.is_some_and(|r| i > r);
        assert!(
            !(after_revoke && l.starts_with('[') && !l.contains(&all_in)),
            "a rebalance mid-run in a healthy soak:\n{log}"
        );
    }
    // The lag stays near zero once running: its median under a tenth of a second of events,
    // and a second of events or more never for longer than HIGH_LAG_LIMIT. A stall holds the
    // lag up (the one this test was written for lasted 20 s); a slow machine's writer catching
    // up on its schedule in a burst shows as one high reading that the next one clears.
    let lags: Vec<(Duration, i64)> = lines
        .iter()
        .filter(|(at, _)| *at > Duration::from_secs(5))
        .filter_map(|(at, l)| lag_of(l).map(|lag| (*at, lag)))
        .collect();
    assert!(lags.len() >= 20, "too few progress lines:\n{log}");
    let mut sorted: Vec<i64> = lags.iter().map(|(_, lag)| *lag).collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!(
        median < RATE as i64 / 10,
        "median lag {median} (offered {RATE} ev/s):\n{log}"
    );
    let high = longest_at_or_above(&lags, RATE as i64);
    assert!(
        high < HIGH_LAG_LIMIT,
        "lag at or above {RATE} (a second of events) for {high:?} (peak {}):\n{log}",
        sorted.last().unwrap()
    );
    for (ours, theirs) in compared {
        assert!(
            theirs < RATE as i64 && (ours - theirs).abs() < RATE as i64,
            "pipedemo says lag {ours}, kafka-consumer-groups says {theirs}"
        );
    }

    let o = run(&["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}
