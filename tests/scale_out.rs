//! Scale-out: several `pipedemo consume` processes in one group with a `load` (whose own
//! consumer is one more member), joining, leaving and killed mid-load. The read models,
//! statistics and verdicts must be exactly those of one consumer: `load` decides what arrived
//! from MongoDB, and `verify` (statistics equal to the collections) passes.
//!
//! Runs in its own world (topic prefix, connector, slot) with a 4-partition topic, and clears
//! it at the end.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{text, Spawned};

const NAME: &str = "scale";
const WORLD: [(&str, &str); 3] = [
    ("TOPIC_PREFIX", "pipedemo_test_scale"),
    ("CONNECTOR_NAME", "pipedemo-test-scale"),
    ("REPLICATION_SLOT", "pipedemo_test_scale"),
];

fn command(args: &[&str]) -> Command {
    let mut c = common::pipedemo(NAME);
    c.args(args).envs(WORLD);
    c
}

fn run(args: &[&str]) -> Output {
    command(args).output().expect("pipedemo runs")
}

/// A `pipedemo consume` in the group, its output kept for the failure message.
fn consumer() -> Spawned {
    Spawned::start(
        command(&["consume"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

fn sleep(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}

/// A paced load with its JSON summary; `during` runs while it goes (its consumers come and go).
fn load_while(events: u64, rate: u64, during: impl FnOnce()) -> (Output, serde_json::Value) {
    let load = Spawned::start(
        command(&[
            "load",
            "--events",
            &events.to_string(),
            "--rate",
            &rate.to_string(),
            "--no-tui",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()),
    );
    during();
    let o = load.wait();
    let summary = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{}", text(&o)));
    (o, summary)
}

fn stop(mut c: Spawned) -> String {
    c.signal("-TERM");
    text(&c.wait())
}

/// Statistics exact: `verify` checks them against the collections, every event once.
fn assert_verified(events: u64) {
    let o = run(&["verify", "--json"]);
    let out = text(&o);
    assert!(o.status.success(), "verify failed:\n{out}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("verify JSON");
    assert_eq!(r["found_events"], events, "{out}");
    assert_eq!(r["total_events"], events, "{out}");
    assert_eq!(r["integrity_check"], "PASS", "{out}");
}

#[tokio::test]
async fn consumers_joining_and_leaving_mid_load_give_exact_verdicts_and_statistics() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let o = run(&["setup", "--partitions", "4"]);
    assert!(o.status.success(), "{}", text(&o));

    // One consumer before the load, two more joining 2 s and 4 s into it, one of the first
    // leaving 6 s in: four rebalances while events flow.
    let first = consumer();
    sleep(3.0);
    let mut joined = Vec::new();
    let mut left = String::new();
    let (o, summary) = load_while(8000, 1000, || {
        sleep(2.0);
        joined.push(consumer());
        sleep(2.0);
        joined.push(consumer());
        sleep(2.0);
        left = stop(first);
    });
    let out = text(&o);
    assert!(
        o.status.success(),
        "load failed:\n{out}\nconsumer that left:\n{left}"
    );
    assert_eq!(summary["sent"], 8000, "{out}");
    assert_eq!(summary["delivered"], 8000, "{out}");
    assert_eq!(summary["missing"], 0, "{out}");
    // The others took their share: load saw them in MongoDB, not in its own records.
    assert!(
        summary["applied_elsewhere"].as_u64().unwrap() > 0,
        "no event was applied by another consumer: the test did not scale out\n{out}"
    );
    for c in joined {
        stop(c);
    }
    assert_verified(8000);

    // A consumer killed mid-load (its batch in hand written, not committed) and a new one
    // started: the redelivered events are applied once and counted once.
    let victim = consumer();
    sleep(3.0);
    let mut replacement = None;
    let (o, summary) = load_while(6000, 1000, || {
        sleep(2.5);
        let mut victim = victim;
        victim.signal("-KILL");
        drop(victim);
        sleep(1.0);
        replacement = Some(consumer());
    });
    let out = text(&o);
    assert!(o.status.success(), "load failed:\n{out}");
    assert_eq!(summary["delivered"], 6000, "{out}");
    if let Some(c) = replacement {
        stop(c);
    }
    assert_verified(14000);

    let o = run(&["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}
