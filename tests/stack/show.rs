//! `pipedemo full` as a presenter and as CI run it: headless with reports, and the live
//! dashboard in a real terminal (tmux). Needs `scripts/stack.sh up` (or docker compose).

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

fn pipedemo() -> Command {
    common::pipedemo("show")
}

/// The dashboard test's world.
fn pipedemo_tui() -> Command {
    common::pipedemo("show_tui")
}

#[tokio::test]
async fn headless_full_writes_reports_and_enforces_thresholds() {
    common::shared_stack();
    let _cleanup = common::Cleanup(pipedemo);
    let dir = std::env::temp_dir().join(format!("pipedemo-show-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, html) = (dir.join("r.json"), dir.join("r.html"));
    let o = pipedemo()
        .args([
            "full",
            "--phases",
            "10,100",
            "--phase-secs",
            "2,4",
            "--no-tui",
            "--json",
        ])
        // Short capacity steps; the lax capacity and chaos settings below: this test is about
        // the show, not the machine.
        .args(["--capacity-step", "1s", "--prewarm", "2s"])
        // Lax targets too, for the same reason.
        .args(common::LAX_TARGETS)
        // The chaos phase at the end, with two faults that act on pipedemo's own processes and
        // connector (the local stack's own faults run in tests/chaos.rs).
        .args([
            "--chaos",
            "--chaos-rate",
            "50",
            "--faults",
            "connector-pause,rebalance",
            "--fault-duration",
            "3s",
            "--gap",
            "3s",
        ])
        .args(common::LAX_CAPACITY)
        .args(common::LAX_CHAOS)
        .arg("--report-json")
        .arg(&json)
        .arg("--report-html")
        .arg(&html)
        .env("METRICS_FILE", dir.join("m.jsonl"))
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{}", common::failure(&o));
    // With --json, stdout is the one JSON document; everything for people is on stderr.
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["total_events"], 110);
    assert_eq!(doc["verification"]["success_rate"], 100.0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Demo complete!"),
        "{out}"
    );
    assert!(
        out.contains("Phase warm-up done") && out.contains("Phase moderate done"),
        "{out}"
    );
    assert!(
        out.contains("✅ Demo complete! 110 events in the show's phases"),
        "{out}"
    );
    // One verdict, stated once, the JSON's: no second grade of the latency beside it.
    assert_eq!(out.matches("RESULT:").count(), 1, "{out}");
    assert!(out.contains("RESULT: PASS"), "{out}");
    assert!(!out.contains("Assessment:"), "{out}");
    assert!(out.contains("Success rate: 100.00% ("), "{out}");
    // The targets that applied are the ones given, in both reports.
    assert!(
        out.contains(
            "Targets per phase: p50 < 30000 ms, p95 < 45000 ms, p99 < 60000 ms, ≥ 99 % success"
        ),
        "{out}"
    );
    assert!(out.contains("Targets: met by every phase"), "{out}");
    // The show ends with the capacity phase, one line per step and the answer.
    assert!(out.contains("capacity step:"), "{out}");
    assert!(out.contains("This pipeline sustains "), "{out}");
    // The warm-up lists every event.
    assert!(out.matches("    ✓ ").count() >= 10, "{out}");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["passed"], true);
    assert_eq!(r["failures"], serde_json::json!([]));
    assert_eq!(r["success_rate"], 100.0);
    assert_eq!(r["integrity_check"], "PASS");
    assert_eq!(r["total_events"], 110);
    assert_eq!(r["phases"].as_array().unwrap().len(), 2);
    assert_eq!(r["phases"][1]["phase"], "moderate");
    assert_eq!(r["phases"][1]["delivered"], 100);
    assert_eq!(r["phases"][1]["offered_eps"], 25.0);
    assert_eq!(r["targets_missed"], serde_json::json!([[], []]));
    assert_eq!(r["targets"]["p99_ms"], 60000.0, "{r}");
    assert!(
        r["capacity"]["sustained_eps"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    let steps = r["capacity"]["steps"].as_array().unwrap();
    assert!(steps.len() >= 2, "{r}");
    let verified = r["verification"]["found_events"].as_u64().unwrap();
    assert!(verified > 110, "the capacity steps are verified too: {r}");
    assert_eq!(
        r["verification"]["total_events"].as_u64().unwrap(),
        verified
    );
    assert!(
        r["phases"][1]["stages"]["total"]["p95_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        r["verification"]["latency"]["total"]["count"].as_u64(),
        Some(verified)
    );
    assert!(
        r["verification"]["latency_by_type"]["UserCreated"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(r["method"]["debezium"], "3.7.1.Final");
    assert!(r["method"]["machine_cores"].as_u64().unwrap() >= 1);
    assert!(!r["method"]["postgres"].as_str().unwrap().is_empty());
    let chaos = &r["chaos"];
    assert_eq!(chaos["passed"], true, "{chaos:#}");
    let verdicts: Vec<(&str, &str)> = chaos["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["fault"].as_str().unwrap(), f["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [("connector-pause", "recovered"), ("rebalance", "recovered")]
    );
    assert!(
        out.contains("PASS: every fault recovered and nothing was lost"),
        "{out}"
    );
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(
        h.contains("<h2 id=\"chaos\">Chaos</h2>")
            && h.contains("<figure id=\"chaos-backlog\"><svg")
    );
    for id in [
        "latency-over-time",
        "latency-heat",
        "latency-cdf",
        "stage-breakdown",
        "throughput",
        "latency-vs-rate",
    ] {
        let at = h
            .find(&format!("<figure id=\"{id}\"><svg"))
            .unwrap_or_else(|| panic!("plot {id} missing"));
        assert!(h[at..].contains("</svg>"), "plot {id} is a complete SVG");
    }
    assert!(
        h.contains("Latency CDF per phase")
            && h.contains("warm-up")
            && h.contains("result <span class=\"pass\">PASS")
    );
    // Per second and per phase, never per event: no plot holds a mark per event.
    assert!(
        h.matches("<circle").count() < 1000,
        "{} circles",
        h.matches("<circle").count()
    );
    // The stage table is per phase, the sweep's steps apart from the phases.
    assert!(
        h.contains("Latency by stage, per phase") && h.contains("capacity step "),
        "stage table"
    );
    assert!(!h.contains("src=\"http"), "self-contained");
    // The summary card, as a browser renders it: the verdict, the SLO, the capacity, the
    // events verified (all of them), the slowest stage and the machine.
    let dom = common::chromium_dom(&html);
    let card = |id: &str| -> String {
        let at = dom
            .find(&format!("id=\"summary-{id}\""))
            .unwrap_or_else(|| panic!("summary-{id} in the rendered page:\n{dom}"));
        let end = dom[at..].find("</div></div>").map_or(dom.len(), |e| at + e);
        // The text of the item, tags dropped.
        let mut text = String::new();
        let mut in_tag = false;
        for c in dom[at..end].chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    text.push(' ');
                }
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        card("verdict").contains("Verdict PASS"),
        "{}",
        card("verdict")
    );
    assert!(
        card("slo").contains("p99 < 60000 ms held"),
        "{}",
        card("slo")
    );
    let sustained = r["capacity"]["sustained_eps"].as_f64().unwrap().round() as u64;
    assert!(
        card("capacity").contains("events/s"),
        "{}",
        card("capacity")
    );
    assert!(
        card("capacity")
            .replace(',', "")
            .contains(&sustained.to_string()),
        "{} vs {sustained}",
        card("capacity")
    );
    assert!(
        card("events-verified")
            .replace(',', "")
            .contains(&format!("{verified} of {verified}")),
        "{}",
        card("events-verified")
    );
    assert!(
        card("slowest-stage").contains("p99"),
        "{}",
        card("slowest-stage")
    );
    assert!(card("machine").contains("cores"), "{}", card("machine"));
    assert!(
        card("faults-recovered").contains("2 of 2"),
        "{}",
        card("faults-recovered")
    );

    // A threshold nobody can meet fails the run, saying why.
    let o = pipedemo()
        .args([
            "full",
            "--phases",
            "10",
            "--phase-durations",
            "1s",
            "--no-capacity",
            "--prewarm",
            "0s",
            "--no-tui",
            "--max-p95-ms",
            "0.001",
            "--threshold",
            "success>=99%",
            "--max-regression",
            "1000%",
        ])
        .arg("--baseline")
        .arg(&json)
        .arg("--report-json")
        .arg(&json)
        .arg("--report-html")
        .arg(&html)
        .env("METRICS_FILE", dir.join("m2.jsonl"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("✗ threshold p95<=0.001ms (p95 = ")
            && out.contains("✓ threshold success>=99% (success = 100%)")
            && out.contains("❌ Demo complete!"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The closing verdict lists the JSON's reasons, each once.
    assert_eq!(out.matches("RESULT:").count(), 1, "{out}");
    let failures = report["failures"].as_array().unwrap();
    assert!(!failures.is_empty(), "{report:#}");
    for f in failures {
        let f = f.as_str().unwrap();
        assert!(
            out.contains("RESULT: FAIL") && out.contains(&format!("  ✗ {f}")),
            "{f:?} not in {out}"
        );
    }
    assert_eq!(report["kind"], "full");
    assert_eq!(report["thresholds"][0]["threshold"], "success>=99%");
    assert_eq!(report["thresholds"][1]["passed"], false);
    // Against the first run's report: a section in both reports.
    assert_eq!(report["comparison"]["kind"], "full", "{report:#}");
    assert!(report["comparison"]["figures"].as_array().unwrap().len() > 5);
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(
        h.contains("<h2 id=\"comparison\">Against the baseline</h2>"),
        "comparison section"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn dashboard_runs_live_in_a_real_terminal() {
    common::shared_stack();
    let _cleanup = common::Cleanup(pipedemo_tui);
    let socket = format!("pipedemo-test-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("pipedemo-tmux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The world's variables on the command line tmux runs: its server has its own environment.
    let world = common::world_vars("show_tui");
    // tmux runs the binary itself: the world's database is made here.
    let _ = common::settings("show_tui", &[]);
    let cmd = format!(
        "LOG_LEVEL=pipedemo=debug {world}METRICS_FILE={d}/m.jsonl {bin} full --phases 10,100,2000 --phase-secs 2,3,40 --no-capacity --prewarm 1s --refresh-ms 100 {targets} --report-json {d}/r.json --report-html {d}/r.html; echo EXIT=$?; sleep 60",
        bin = env!("CARGO_BIN_EXE_pipedemo"),
        targets = common::LAX_TARGETS.join(" "),
        d = dir.display()
    );
    common::tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "show",
            "-x",
            "80",
            "-y",
            "24",
            &cmd,
        ],
    );

    // Debug logs (a line per consumer batch) are on: they must not reach the screen while the
    // dashboard is up, but the log file next to the metrics file.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut dashboard = String::new();
    let mut end = String::new();
    let mut frames = 0;
    while Instant::now() < deadline {
        let pane = common::tmux(&socket, &["capture-pane", "-p", "-t", "show"]);
        if pane.contains("Pipeline health") && pane.contains("phase:") {
            frames += 1;
            assert!(
                !["DEBUG", " INFO ", " WARN ", "ERROR"]
                    .iter()
                    .any(|l| pane.contains(l)),
                "a log line drew over the dashboard:\n{pane}"
            );
            if dashboard.is_empty() {
                dashboard = pane.clone();
            }
        }
        let pane = common::tmux(&socket, &["capture-pane", "-p", "-t", "show", "-S", "-200"]);
        if pane.contains("EXIT=") {
            end = pane;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::tmux(&socket, &["kill-server"]);
    let log = std::fs::read_to_string(dir.join("pipedemo.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(frames > 0, "the dashboard was never seen");
    assert!(
        log.contains("DEBUG")
            && log.contains("batch")
            && log.contains("partitions assigned")
            && !log.contains('\x1b'),
        "the dashboard's log lines, without colour codes, go to pipedemo.log:\n{log}"
    );
    assert!(end.contains("log line(s) of this run went to"), "{end}");
    for panel in [
        "pipedemo · CDC pipeline",
        "Throughput",
        "Latency end-to-end",
        "Stage breakdown",
        "Events by type",
        "Recent events",
        "Pipeline health",
        "processed",
    ] {
        assert!(
            dashboard.contains(panel),
            "{panel:?} missing from the live screen:\n{dashboard}"
        );
    }
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(
        end.contains("Demo complete! 2,110 events in the show's phases"),
        "{end}"
    );
    assert!(
        end.contains("stress") && end.contains("2,000"),
        "phase table stays on screen:\n{end}"
    );
}
