//! `pipedemo capacity` and soak runs as a user runs them: a short sweep finds a sustained rate
//! and verifies every event, `--min-rate` gates, bad durations are one clear line, and a soak
//! reports latency and memory over time. Needs `scripts/stack.sh up` (or docker compose).

use crate::common;

use crate::common::text;

/// `pipedemo ARGS` in this file's own world.
fn pipedemo(name: &str, args: &[&str]) -> std::process::Output {
    common::pipedemo(name)
        .args(args)
        .output()
        .expect("pipedemo runs")
}

/// A sweep of 2-second steps from 20 events/s (rates even a debug build sustains, doubling)
/// up to `max_rate`, held to p99 ≤ `slo_p99` ms.
fn sweep(name: &str, max_rate: &str, slo_p99: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "capacity",
        "--step",
        "2s",
        "--start-rate",
        "20",
        "--max-rate",
        max_rate,
        "--slo-p99",
        slo_p99,
        "--prewarm",
        "0s",
    ];
    args.extend_from_slice(extra);
    pipedemo(name, &args)
}

#[tokio::test]
async fn a_short_sweep_finds_a_sustained_rate_and_verifies_every_event() {
    common::shared_stack();
    // A target no working pipeline misses (a minute): this test is about the sweep and the
    // verification, not the machine; the rate at a real target is the benchmark's figure.
    let o = sweep("capacity_sweep", "80", "60000", &["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let steps = r["steps"].as_array().unwrap();
    let offered: Vec<f64> = steps
        .iter()
        .map(|s| s["offered_eps"].as_f64().unwrap())
        .collect();
    assert_eq!(offered[0], 20.0, "{r}");
    let sustained = r["sustained_eps"].as_f64().expect("a sustained rate");
    assert!(offered.contains(&sustained), "{r}");
    let best = steps
        .iter()
        .find(|s| s["offered_eps"].as_f64() == Some(sustained))
        .unwrap();
    assert_eq!(best["verdict"]["sustained"], true);
    // Sustained means within the SLO: the verdict agrees with the step's own figure.
    assert!(
        best["latency"]["p99_ms"].as_f64().unwrap() <= 60000.0,
        "{best}"
    );
    assert!(best["latency"]["count"].as_u64().unwrap() >= (sustained * 2.0) as u64 - 1);
    assert!(best["achieved_eps"].as_f64().unwrap() > 0.0, "{best}");
    assert!(
        best["cpu_pct"]["pipedemo"].as_f64().is_some(),
        "CPU of pipedemo measured: {best}"
    );
    // The throughput ceiling apart from the SLO answer: here the backlog kept up at the
    // sustained rate at least.
    assert!(r["ceiling_eps"].as_f64().unwrap() >= sustained, "{r}");
    // With the native stack's GC logs, every step says what the JVMs paused.
    let logs = ["kafka", "connect"]
        .iter()
        .filter(|j| std::path::Path::new(&format!(".stack/logs/{j}-gc.log")).is_file())
        .count();
    for s in steps {
        assert_eq!(s["gc_pauses"].as_array().unwrap().len(), logs, "{s}");
    }
    let v = &r["verification"];
    assert_eq!(v["passed"], true, "{v}");
    // A step that missed its target with a flat backlog is offered again; its first try's
    // events were written and verified too, and so were each try's lead-in's (its rate
    // offered for a second before it, not judged).
    let tries: Vec<&serde_json::Value> = steps
        .iter()
        .flat_map(|s| std::iter::once(s).chain(s.get("first_try").filter(|f| !f.is_null())))
        .collect();
    for t in &tries {
        assert!(
            t["lead_in_events"].as_u64().unwrap() >= 1,
            "a lead-in ran: {t}"
        );
    }
    let events: u64 = tries
        .iter()
        .map(|s| s["events"].as_u64().unwrap() + s["lead_in_events"].as_u64().unwrap())
        .sum();
    assert_eq!(
        v["total_events"].as_u64(),
        Some(events),
        "every step's events"
    );
    assert_eq!(v["found_events"].as_u64(), Some(events));
    // Every verified event's timing record read, the cleared steps' too: a count of records
    // (those with impossible times are counted apart), not a duration.
    let timed = v["latency"]["total"]["count"].as_u64().unwrap();
    let implausible = v["timing_implausible"].as_u64().unwrap();
    assert_eq!(timed + implausible, events, "{v}");
    assert_eq!(r["failures"], serde_json::json!([]));
    // Each step ran on empty read models but for its lead-in: what the one before left was
    // verified (above), then cleared, so a `verify` now finds the last step's events only.
    assert_eq!(r["fresh_store"], true, "{r}");
    for s in &tries {
        assert_eq!(s["events_before"], s["lead_in_events"], "{s}");
    }
    let last = steps.last().unwrap();
    let last = last["events"].as_u64().unwrap() + last["lead_in_events"].as_u64().unwrap();
    let o = pipedemo("capacity_sweep", &["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let after: serde_json::Value = serde_json::from_slice(&o.stdout).expect("verify's JSON");
    assert_eq!(after["total_events"].as_u64(), Some(last), "{after}");
    assert_eq!(after["found_events"].as_u64(), Some(last), "{after}");
}

#[tokio::test]
async fn a_sweep_on_a_growing_store_keeps_every_step() {
    common::shared_stack();
    let o = sweep(
        "capacity_growing",
        "40",
        "60000",
        &["--json", "--growing-store"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let steps = r["steps"].as_array().unwrap();
    assert!(steps.len() >= 2, "{r}");
    assert_eq!(r["fresh_store"], false, "{r}");
    // Each step begins on what every earlier step and its own lead-in wrote.
    let mut before = 0;
    for s in steps {
        let first = s.get("first_try").filter(|f| !f.is_null());
        for t in first.into_iter().chain(std::iter::once(s)) {
            before += t["lead_in_events"].as_u64().unwrap();
            assert_eq!(t["events_before"].as_u64(), Some(before), "{t}");
            before += t["events"].as_u64().unwrap();
        }
    }
    assert_eq!(r["verification"]["passed"], true, "{r}");
    let o = pipedemo("capacity_growing", &["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let after: serde_json::Value = serde_json::from_slice(&o.stdout).expect("verify's JSON");
    assert_eq!(after["total_events"].as_u64(), Some(before), "{after}");
}

#[tokio::test]
async fn a_min_rate_above_the_capacity_fails_and_says_why() {
    common::shared_stack();
    let o = sweep("capacity_min", "40", "1000", &["--min-rate", "1000000"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // `--min-rate R` is the gate `capacity>=R`, judged and named like any threshold.
    assert!(
        err.contains("threshold capacity>=1000000 broken: capacity is "),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("✗ threshold capacity>=1000000 (capacity = "),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("This pipeline sustains "),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn a_soak_run_reports_latency_and_memory_over_time() {
    common::shared_stack();
    let o = pipedemo("capacity_soak", &["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pipedemo(
        "capacity_soak",
        &["load", "--duration", "22s", "--rate", "50", "--json"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    assert_eq!(r["events"], 1100);
    assert_eq!(r["delivered"], 1100);
    let timeline = r["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 2, "{r}");
    // Windows are 10 s of the wall clock: the first may begin up to 9 s before the load (and
    // end before its first event lands), the last after it; every window in between is judged.
    let whole: Vec<_> = timeline[..timeline.len() - 1]
        .iter()
        .filter(|w| w["at_secs"].as_i64().unwrap() >= 0)
        .collect();
    assert!(!whole.is_empty(), "{r}");
    for w in whole {
        assert!(w["rss_mb"].as_f64().unwrap() > 1.0, "{w}");
        assert!(w["p99_ms"].as_f64().unwrap() > 0.0, "{w}");
        assert!(w["applied_eps"].as_f64().unwrap() > 0.0, "{w}");
    }
    let o = pipedemo("capacity_soak", &["verify"]);
    assert!(o.status.success(), "{}", text(&o));
}
