//! Scale-out: several `pipedemo consume` processes in one group with a `load` (whose own
//! consumer is one more member), joining, leaving and killed mid-load. The read models,
//! statistics and verdicts must be exactly those of one consumer: `load` decides what arrived
//! from MongoDB, and `verify` (statistics equal to the collections) passes.
//!
//! Runs in its own world (topic prefix, connector, slot) with a 4-partition topic, and clears
//! it at the end.

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{text, Spawned, Watched};

/// How long a consumer may take to join its group: generous, since it says what was awaited.
const JOIN: Duration = Duration::from_secs(90);
/// How long a load may take to write the rows a step waits for.
const ROWS: Duration = Duration::from_secs(120);

const NAME: &str = "scale";

fn command(args: &[&str]) -> Command {
    let mut c = common::pipedemo(NAME);
    c.args(args);
    c
}

fn run(args: &[&str]) -> Output {
    command(args).output().expect("pipedemo runs")
}

/// A `pipedemo consume` in the group, once it has its partitions; its output kept for the
/// failure message.
fn consumer() -> Watched {
    let c = Watched::start(&mut command(&["consume"]));
    c.wait_for(
        "partitions assigned",
        1,
        JOIN,
        "a consumer to join its group",
    );
    c
}

/// Waits until the load has written `rows` rows in all.
fn rows(rows: i64) {
    common::wait_for_outbox_rows(NAME, rows, ROWS);
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

fn stop(c: Watched) -> String {
    c.stop().1
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
    common::shared_stack();
    let o = run(&["setup", "--partitions", "4"]);
    assert!(o.status.success(), "{}", text(&o));

    // One consumer before the load, two more joining a quarter and half way into it, one of
    // the first leaving three quarters in: four rebalances while events flow. Each step waits
    // for rows written, not for time, so a slow machine changes nothing but the duration.
    let first = consumer();
    let mut joined = Vec::new();
    let mut left = String::new();
    let (o, summary) = load_while(8000, 1000, || {
        rows(2000);
        joined.push(consumer());
        rows(4000);
        joined.push(consumer());
        rows(6000);
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
    // The others took their share, and their figures are in the report: every event's
    // latency, merged from the consumers' published results, each consumer's share named.
    assert!(
        summary["applied_elsewhere"].as_u64().unwrap() > 0,
        "no event was applied by another consumer: the test did not scale out\n{out}"
    );
    assert_eq!(summary["merged"], true, "{out}");
    assert_eq!(summary["stages"]["total"]["count"], 8000, "{out}");
    assert_eq!(summary["total_from_schedule"]["count"], 8000, "{out}");
    assert!(
        summary["processes"].as_array().unwrap().len() >= 3,
        "the load and the consumers that applied events: {out}"
    );
    for c in joined {
        stop(c);
    }
    assert_verified(8000);

    // A consumer killed mid-load (its batch in hand written, not committed) and a new one
    // started: the redelivered events are applied once and counted once.
    let victim = consumer();
    let mut replacement = None;
    let (o, summary) = load_while(6000, 1000, || {
        rows(8000 + 2500);
        let mut victim = victim;
        victim.signal("-KILL");
        drop(victim);
        replacement = Some(consumer());
    });
    let out = text(&o);
    assert!(o.status.success(), "load failed:\n{out}");
    assert_eq!(summary["delivered"], 6000, "{out}");
    // The killed consumer's events: each measured, or declared as applied by a process that
    // died before publishing it.
    assert_eq!(
        summary["stages"]["total"]["count"].as_u64().unwrap()
            + summary["latency_unreported"].as_u64().unwrap(),
        6000,
        "{out}"
    );
    if let Some(c) = replacement {
        stop(c);
    }
    assert_verified(14000);

    let o = run(&["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}
