//! The figures the test suite no longer judges: how soon, how fast, how low. A test asserts
//! what happened (every event once, a fault noticed and recovered, no rebalance); whether it
//! happened within a goal depends on the machine and its load, so it is measured here, on a
//! release build with the stack to itself, and printed with its goal and the offered rate.
//!
//! - `soak`: the soak test's windows and lag (no stall, a lag near zero, pipedemo's lag as
//!   Kafka's own tool reports it);
//! - `chaos`: every local fault's notice and recovery times, and the backlog it caused;
//! - `show`: `full`'s phases against the seed's targets, its capacity at the seed's 500 ms SLO,
//!   and the short capacity sweep at p99 ≤ 250 ms.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use pipedemo::telemetry::stall::longest_at_or_above;

use super::{at_least, at_most, figure, Args, Figure};

/// A section's own world: topic prefix, connector, slot, read models, group and files. The
/// outbox table is the stack's, which the sections take in turn.
pub(super) fn world(name: &str) -> Vec<(String, String)> {
    let dir = std::env::temp_dir().join(format!("pipedemo-bench-{name}"));
    let _ = std::fs::create_dir_all(&dir);
    [
        ("TOPIC_PREFIX", format!("bench_{name}")),
        ("REPLICATION_SLOT", format!("bench_{name}")),
        ("MONGODB_DATABASE", format!("bench_{name}")),
        ("CONNECTOR_NAME", format!("bench-{name}")),
        ("CONSUMER_GROUP", format!("bench-{name}")),
        (
            "METRICS_FILE",
            dir.join("metrics.jsonl").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn pipedemo(a: &Args, env: &[(String, String)], args: &[&str]) -> Command {
    let mut c = Command::new(&a.pipedemo);
    c.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    c
}

/// Runs a command that must succeed, its output for people passed through.
fn must(a: &Args, env: &[(String, String)], args: &[&str]) -> Result<()> {
    let s = pipedemo(a, env, args)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running pipedemo {args:?}"))?;
    if !s.success() {
        bail!("pipedemo {args:?} failed ({s})");
    }
    Ok(())
}

/// The JSON document of a measuring run, whether or not it met its own goals (exit 1 says a
/// target was missed, which is a figure here; any other failure is an error).
fn document(a: &Args, env: &[(String, String)], args: &[&str]) -> Result<Value> {
    let o = pipedemo(a, env, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running pipedemo {args:?}"))?;
    if !matches!(o.status.code(), Some(0 | 1)) {
        bail!("pipedemo {args:?} failed ({})", o.status);
    }
    serde_json::from_slice(&o.stdout).with_context(|| format!("pipedemo {args:?}: no JSON"))
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

/// The group's total lag as `kafka-consumer-groups --describe` reports it.
fn kafka_tool_lag(group: &str) -> Result<i64> {
    let o = Command::new("scripts/stack.sh")
        .args([
            "kafka-tool",
            "consumer-groups",
            "--describe",
            "--group",
            group,
        ])
        .output()?;
    let out = String::from_utf8_lossy(&o.stdout);
    let mut column = None;
    let mut total = 0;
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = cols.iter().position(|c| *c == "LAG") {
            column = Some(i);
        } else if let Some(v) = column.and_then(|i| cols.get(i)?.parse::<i64>().ok()) {
            total += v;
        }
    }
    column
        .map(|_| total)
        .context("kafka-consumer-groups printed no LAG column")
}

/// A 45 s soak at 400 ev/s on four partitions: the slowest whole 10 s window against the
/// insert rate, the median lag, the longest stretch at a second of events or more, and
/// pipedemo's lag beside Kafka's own at two moments.
pub fn soak(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    const RATE: i64 = 400;
    let env = world("soak");
    let group = "bench-soak";
    must(a, &env, &["setup", "--partitions", "4"])?;
    let mut load = pipedemo(
        a,
        &env,
        &[
            "load",
            "--duration",
            "45s",
            "--rate",
            &RATE.to_string(),
            "--no-tui",
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let started = Instant::now();
    let lines: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
    let reader = {
        let lines = lines.clone();
        let stderr = load.stderr.take().context("stderr")?;
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push((started.elapsed(), l));
            }
        })
    };
    let mut compared = Vec::new();
    for at in [20, 35] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(started.elapsed()));
        let theirs = kafka_tool_lag(group)?;
        let ours = lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(_, l)| lag_of(l))
            .unwrap_or(i64::MAX);
        compared.push((ours - theirs).abs());
    }
    let out = load.wait_with_output()?;
    let _ = reader.join();
    if !out.status.success() {
        bail!("the soak's load failed ({})", out.status);
    }
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let inserted = summary["insert_rate_eps"]
        .as_f64()
        .unwrap_or(f64::NAN)
        .min(RATE as f64);
    let timeline = summary["timeline"].as_array().cloned().unwrap_or_default();
    let slowest = timeline
        .iter()
        .skip(1)
        .take(timeline.len().saturating_sub(2))
        .filter_map(|w| w["applied_eps"].as_f64())
        .fold(f64::INFINITY, f64::min);
    figs.push(at_least(
        figure(
            "soak 400 ev/s: slowest whole 10 s window ÷ insert rate",
            slowest / inserted,
            "×",
        ),
        0.5,
    ));
    let lags: Vec<(Duration, i64)> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at > Duration::from_secs(5))
        .filter_map(|(at, l)| lag_of(l).map(|lag| (*at, lag)))
        .collect();
    let mut sorted: Vec<i64> = lags.iter().map(|(_, l)| *l).collect();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(i64::MAX);
    figs.push(at_most(
        figure(
            "soak 400 ev/s: median consumer lag",
            median as f64,
            "events",
        ),
        (RATE / 10) as f64,
    ));
    figs.push(at_most(
        figure(
            "soak 400 ev/s: longest lag of a second of events or more",
            longest_at_or_above(&lags, RATE).as_secs_f64(),
            "s",
        ),
        3.0,
    ));
    figs.push(at_most(
        figure(
            "soak 400 ev/s: pipedemo's lag − kafka-consumer-groups' (worst of 2)",
            compared.into_iter().max().unwrap_or(i64::MAX) as f64,
            "events",
        ),
        RATE as f64,
    ));
    must(a, &env, &["cleanup", "--yes"])
}

/// Every local fault once, under 150 ev/s: how long each took to be noticed and to recover.
pub fn chaos(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let env = world("chaos");
    must(a, &env, &["setup"])?;
    let v = document(
        a,
        &env,
        &[
            "chaos",
            "--stack",
            "scripts/stack.sh",
            "--no-tui",
            "--json",
            "--rate",
            "150",
            "--fault-duration",
            "4s",
            "--gap",
            "4s",
            "--recovery-timeout",
            "90s",
        ],
    )?;
    for f in v["faults"].as_array().cloned().unwrap_or_default() {
        let name = f["fault"].as_str().unwrap_or("?");
        if let Some(n) = f["noticed_after_secs"].as_f64() {
            figs.push(at_most(
                figure(&format!("chaos 150 ev/s: {name} noticed after"), n, "s"),
                10.0,
            ));
        }
        if let (Some(peak), Some(normal)) =
            (f["peak_backlog"].as_f64(), f["normal_backlog"].as_f64())
        {
            figs.push(at_least(
                figure(
                    &format!("chaos 150 ev/s: {name} peak backlog ÷ the level before"),
                    peak / normal.max(1.0),
                    "×",
                ),
                1.0,
            ));
        }
        figs.push(at_most(
            figure(
                &format!("chaos 150 ev/s: {name} recovered after"),
                f["recovery_secs"].as_f64().unwrap_or(f64::NAN),
                "s",
            ),
            90.0,
        ));
    }
    must(a, &env, &["cleanup", "--yes"])
}

/// `full` as the show test runs it, with the seed's targets and the seed's 500 ms capacity
/// SLO; then the capacity test's short sweep at p99 ≤ 250 ms.
pub fn show(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let env = world("show");
    let report: PathBuf = std::env::temp_dir().join("pipedemo-bench-show/report.json");
    document(
        a,
        &env,
        &[
            "full",
            "--phases",
            "10,100",
            "--phase-secs",
            "2,4",
            "--no-tui",
            "--json",
            "--capacity-step",
            "1s",
            "--slo-p99",
            "500",
            "--prewarm",
            "2s",
            "--report-json",
            &report.display().to_string(),
        ],
    )?;
    let r: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    for p in r["phases"].as_array().cloned().unwrap_or_default() {
        let offered = p["offered_eps"].as_f64().unwrap_or(f64::NAN);
        for q in ["p95", "p99"] {
            figs.push(at_most(
                figure(
                    &format!(
                        "show {} ({offered} ev/s): {q}",
                        p["phase"].as_str().unwrap_or("?")
                    ),
                    p["stages"]["total"][format!("{q}_ms")]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    "ms",
                ),
                r["targets"][format!("{q}_ms")].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    figs.push(at_least(
        figure(
            "show: capacity at p99 ≤ 500 ms (1 s steps)",
            r["capacity"]["sustained_eps"].as_f64().unwrap_or(0.0),
            "events/s",
        ),
        20.0,
    ));
    must(a, &env, &["cleanup", "--yes"])?;

    let env = world("sweep");
    let v = document(
        a,
        &env,
        &[
            "capacity",
            "--step",
            "2s",
            "--start-rate",
            "20",
            "--max-rate",
            "80",
            "--slo-p99",
            "250",
            "--prewarm",
            "0s",
            "--json",
        ],
    )?;
    let sustained = v["sustained_eps"].as_f64().unwrap_or(0.0);
    figs.push(at_least(
        figure(
            "capacity sweep 20→80 ev/s, 2 s steps: sustained at p99 ≤ 250 ms",
            sustained,
            "events/s",
        ),
        20.0,
    ));
    let achieved = v["steps"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["offered_eps"].as_f64() == Some(sustained))
        })
        .and_then(|s| s["achieved_eps"].as_f64())
        .unwrap_or(0.0);
    figs.push(at_least(
        figure(
            "capacity sweep: achieved ÷ offered at the sustained rate",
            achieved / sustained,
            "×",
        ),
        0.5,
    ));
    must(a, &env, &["cleanup", "--yes"])
}
