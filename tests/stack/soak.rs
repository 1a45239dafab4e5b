//! A steady soak on four partitions: no self-inflicted stall (every 10 s window applied events,
//! no rebalance, the consumer never replaced, nothing lost), and a consumer lag that means
//! something (reported all along, and zero at the end, as Kafka's own `kafka-consumer-groups
//! --describe` says). How close the windows stay to the offered rate and how low the lag stays
//! are figures of `scripts/bench.sh --only soak`. Runs in its own world and clears it at the end.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::common::{text, Spawned};

const NAME: &str = "soak";
/// Offered events/s: a rate a debug build keeps up with on a busy machine (the benchmark's
/// soak offers 400 to a release build).
const RATE: u64 = 100;
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
async fn a_soak_on_four_partitions_never_stalls_rebalances_or_loses_and_ends_at_lag_zero() {
    common::shared_stack();
    let run = |args: &[&str]| common::pipedemo(NAME).args(args).output().unwrap();
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
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let stderr = load.child().stderr.take().unwrap();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let o = load.wait();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    let log: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(o.status.success(), "load failed:\n{log}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["sent"], EVENTS, "{log}");
    assert_eq!(summary["delivered"], EVENTS, "{log}");
    assert_eq!(summary["missing"], 0, "{log}");

    // No stall, by counts: every whole 10 s window applied events (windows are aligned to the
    // clock, so the first and the last are partial). How many, against the offered rate, is
    // the benchmark's figure (scripts/bench.sh --only soak), not a verdict of this test.
    let timeline = summary["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 5, "{summary}");
    for w in &timeline[1..timeline.len() - 1] {
        assert!(
            w["applied_eps"].as_f64().unwrap() > 0.0,
            "a 10 s window with no event applied: a stall\n{summary}\n{log}"
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
    let revoked = lines.iter().position(|l| l.contains("partitions revoked"));
    for (i, l) in lines.iter().enumerate() {
        for bad in ["reconnecting", "retrying", "failing"] {
            assert!(!l.contains(bad), "`{bad}` in a healthy soak:\n{log}");
        }
        let after_revoke = revoked.is_some_and(|r| i > r);
        assert!(
            !(after_revoke && l.starts_with('[') && !l.contains(&all_in)),
            "a rebalance mid-run in a healthy soak:\n{log}"
        );
    }
    // The lag means something: pipedemo reports one all along, never more than the events
    // in flight, and once the run is over Kafka's own `kafka-consumer-groups` says the group
    // committed everything (the last progress line may come before the last commit).
    let lags: Vec<i64> = lines.iter().filter_map(|l| lag_of(l)).collect();
    assert!(
        lags.len() >= 20,
        "too few progress lines with a lag:\n{log}"
    );
    assert!(
        lags.iter().all(|l| (0..=EVENTS as i64).contains(l)),
        "a lag outside 0..={EVENTS}:\n{log}"
    );
    assert_eq!(
        kafka_tool_lag(),
        0,
        "Kafka's lag of the group after the run"
    );

    let o = run(&["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}
