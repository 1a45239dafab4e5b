//! What one run over several hosts costs and reports (issue 33's measurements):
//!
//! - `hosts`: the same run (6,000 events at 600 ev/s, below capacity) from one host, then split
//!   over 2 and 3 simulated hosts (a generator each, its own host name and directory),
//!   interleaved 1 2 3 1 2 3: the merged p50/p99 of each against the one-host run, the results
//!   topic's bytes per event, and the CPU per event of all the run's processes;
//! - `publishing`: a `consume` process's CPU per event with and without publishing its results
//!   (`--chaos-hooks` consumers publish nothing), interleaved A B A B.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use pipedemo::pipeline::kafka::client_config;
use pipedemo::telemetry::metrics::{self, MetricEvent};

use super::clocks::world;
use super::{ab_figure, figure, proc_cpu_ticks, Args, Figure};

const EVENTS: u64 = 6000;
const RATE: u64 = 600;
const ROUNDS: usize = 2;

/// USER_HZ on Linux.
const TICKS_PER_SEC: f64 = 100.0;

fn dir(host: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pipedemo-bench-hosts/{host}"));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// `pipedemo ARGS` as host `host` of the bench's world.
fn on_host(a: &Args, env: &[(String, String)], host: &str, args: &[&str]) -> Command {
    let d = dir(host);
    let mut c = Command::new(std::fs::canonicalize(&a.pipedemo).unwrap_or(a.pipedemo.clone()));
    c.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PIPEDEMO_HOST", host)
        .env("METRICS_FILE", d.join("metrics.jsonl"))
        .env("LOG_LEVEL", "warn")
        .current_dir(d);
    c
}

/// `setup` of a section's world with `partitions` partitions.
fn setup(a: &Args, env: &[(String, String)], host: &str, partitions: &str) -> Result<()> {
    let ok = on_host(a, env, host, &["setup", "--partitions", partitions])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("setup of the bench's world {host} failed");
    }
    Ok(())
}

/// Clears a section's world (connector, slot, topics, read models): a connector left behind
/// keeps Connect busy polling its slot, and every later figure pays for it.
fn cleanup(a: &Args, env: &[(String, String)], host: &str) -> Result<()> {
    let ok = on_host(a, env, host, &["cleanup", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("cleanup of the bench's world {host} failed");
    }
    Ok(())
}

/// Waits for `child`, sampling its CPU ticks until it exits.
fn wait_sampled(child: Child) -> Result<(Output, u64)> {
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut ticks = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(t) = proc_cpu_ticks(pid) {
                    ticks = t;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            ticks
        })
    };
    let out = child.wait_with_output()?;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok((out, sampler.join().expect("sampler")))
}

/// Bytes (keys and values) on the results topic from the processes of run `run`: its updates,
/// and the heartbeats of the processes that sent them.
fn results_bytes(a: &Args, env: &[(String, String)], run: &str) -> Result<u64> {
    let mut k = a.settings.kafka.clone();
    if let Some((_, p)) = env.iter().find(|(k, _)| k == "TOPIC_PREFIX") {
        k.topic_prefix = p.clone();
    }
    let topic = k.results_topic();
    let c: BaseConsumer = client_config(&k)
        .set("group.id", "bench-results-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let (_, high) = c.fetch_watermarks(&topic, 0, Duration::from_secs(10))?;
    let mut per_process: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut ours = BTreeSet::new();
    let needle = format!("\"run\":\"{run}\"");
    loop {
        match c.poll(Duration::from_secs(5)) {
            Some(Ok(m)) => {
                let (key, value) = (m.key().unwrap_or(&[]), m.payload().unwrap_or(&[]));
                let size = (key.len() + value.len()) as u64;
                let id = String::from_utf8_lossy(key)
                    .split('|')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let e = per_process.entry(id.clone()).or_default();
                if String::from_utf8_lossy(value).contains(&needle) {
                    e.0 += size;
                    ours.insert(id);
                } else if key.ends_with(b"|alive") {
                    e.1 += size;
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None => break,
        }
    }
    // Heartbeats of the run's processes count whole: they live as long as the run here.
    Ok(ours
        .iter()
        .filter_map(|id| per_process.get(id))
        .map(|(u, h)| u + h)
        .sum())
}

/// Bytes of the results topic's log files on the native stack's broker (batches as stored:
/// compressed), `None` on another stack.
fn results_log_bytes(env: &[(String, String)]) -> Option<u64> {
    let prefix = &env.iter().find(|(k, _)| k == "TOPIC_PREFIX")?.1;
    let stack = std::env::var("STACK_DIR").unwrap_or_else(|_| ".stack".into());
    let dir =
        PathBuf::from(stack).join(format!("kafka/data/{prefix}.public.event_outbox.results-0"));
    let mut n = 0;
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        if e.path().extension().is_some_and(|x| x == "log") {
            n += e.metadata().ok()?.len();
        }
    }
    Some(n)
}

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |cur, p| &cur[*p])
        .as_f64()
        .unwrap_or(f64::NAN)
}

pub fn hosts(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let env = world("hosts");
    setup(a, &env, "bench-host-1", "6")?;
    type Samples = BTreeMap<usize, Vec<f64>>;
    let (mut p50, mut p99, mut e2e99, mut bytes, mut stored, mut cpu) = (
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
    );
    for round in 0..ROUNDS {
        for k in [1usize, 2, 3] {
            let run = format!("bench-hosts-{k}-{round}-{}", std::process::id());
            let (events, rate, gens) = (EVENTS.to_string(), RATE.to_string(), k.to_string());
            let mut args = vec![
                "load", "--events", &events, "--rate", &rate, "--run", &run, "--no-tui", "--json",
            ];
            if k > 1 {
                args.extend(["--generators", &gens]);
            }
            let log_before = results_log_bytes(&env);
            let children: Vec<Child> = (1..=k)
                .map(|i| {
                    on_host(a, &env, &format!("bench-host-{i}"), &args)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .context("starting a generator")
                })
                .collect::<Result<_>>()?;
            let mut docs = Vec::new();
            let mut ticks = 0;
            for c in children {
                let (o, t) = wait_sampled(c)?;
                ticks += t;
                docs.push(
                    serde_json::from_slice::<Value>(&o.stdout)
                        .with_context(|| format!("{k} host(s): no JSON ({})", o.status))?,
                );
            }
            let d = &docs[0];
            if d["delivered"].as_u64() != Some(EVENTS) || d["merged"] != true {
                bail!("{k} host(s): not every event delivered and merged: {d}");
            }
            eprintln!(
                "bench: {k} host(s), round {round}: p50 {:.1} ms, p99 {:.1} ms from schedule",
                f64_at(d, &["total_from_schedule", "p50_ms"]),
                f64_at(d, &["total_from_schedule", "p99_ms"])
            );
            p50.entry(k)
                .or_default()
                .push(f64_at(d, &["total_from_schedule", "p50_ms"]));
            p99.entry(k)
                .or_default()
                .push(f64_at(d, &["total_from_schedule", "p99_ms"]));
            e2e99
                .entry(k)
                .or_default()
                .push(f64_at(d, &["stages", "total", "p99_ms"]));
            bytes
                .entry(k)
                .or_default()
                .push(results_bytes(a, &env, &run)? as f64 / EVENTS as f64);
            if let (Some(before), Some(after)) = (log_before, results_log_bytes(&env)) {
                stored
                    .entry(k)
                    .or_default()
                    .push(after.saturating_sub(before) as f64 / EVENTS as f64);
            }
            cpu.entry(k)
                .or_default()
                .push(ticks as f64 / TICKS_PER_SEC * 1e6 / EVENTS as f64);
        }
    }
    cleanup(a, &env, "bench-host-1")?;
    let one = |s: &Samples| s.get(&1).cloned().unwrap_or_default();
    for k in [2usize, 3] {
        for (name, s) in [
            ("p50 from schedule", &p50),
            ("p99 from schedule", &p99),
            ("end-to-end p99", &e2e99),
        ] {
            let mut f = ab_figure(
                &format!("hosts: merged {name}, {k} hosts vs 1 ({RATE} ev/s)"),
                "ms",
                s.get(&k).cloned().unwrap_or_default(),
                one(s),
                "1 host",
            );
            f.target = "the same run's latency; below capacity, near 1×".into();
            figs.push(f);
        }
        let mut f = ab_figure(
            &format!("hosts: CPU per event of the run's processes, {k} hosts vs 1"),
            "µs",
            cpu.get(&k).cloned().unwrap_or_default(),
            one(&cpu),
            "1 host",
        );
        f.target = "each process adds its own consumer, publisher and reader".into();
        figs.push(f);
    }
    // An outbox event is ~1,240 bytes in its Kafka log (Debezium's JSON change event with
    // its framing, uncompressed): 1 % of it is 12 bytes.
    for k in [1usize, 2, 3] {
        for (what, s) in [("as stored (gzip)", &stored), ("uncompressed", &bytes)] {
            let Some(v) = s.get(&k).map(|v| super::median(v)) else {
                continue;
            };
            let mut f = figure(
                &format!("hosts: results topic bytes per event {what}, {k} host(s)"),
                v,
                "bytes",
            );
            f.target = "under 1 % of an event's own bytes in Kafka (12 of ~1,240)".into();
            f.met = Some(v < 12.4);
            figs.push(f);
        }
    }
    Ok(())
}

/// Applied events in a metrics file.
fn applied_in(file: &std::path::Path) -> u64 {
    let mut n = 0;
    let _ = metrics::each_in_file(file, |ev| {
        if matches!(ev, MetricEvent::Event(r) if r.applied) {
            n += 1;
        }
    });
    n
}

pub fn publishing(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    let env = world("publishing");
    setup(a, &env, "bench-pub-0", "4")?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..2 * ROUNDS {
        let publishing = round % 2 == 0;
        let hosts = ["bench-pub-1", "bench-pub-2"];
        let mut consumers = Vec::new();
        for h in hosts {
            let _ = std::fs::remove_file(dir(h).join("metrics.jsonl"));
            let mut args = vec!["consume"];
            if !publishing {
                args.push("--chaos-hooks");
            }
            consumers.push(
                on_host(a, &env, h, &args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
        std::thread::sleep(Duration::from_secs(5));
        let (events, rate) = (EVENTS.to_string(), RATE.to_string());
        let o = on_host(
            a,
            &env,
            "bench-pub-0",
            &[
                "load", "--events", &events, "--rate", &rate, "--no-tui", "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()?;
        if !o.status.success() {
            bail!("the publishing section's load failed ({})", o.status);
        }
        let (mut ticks, mut applied) = (0, 0);
        for (c, h) in consumers.iter().zip(hosts) {
            ticks += proc_cpu_ticks(c.id()).unwrap_or(0);
            applied += applied_in(&dir(h).join("metrics.jsonl"));
        }
        for c in &mut consumers {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for mut c in consumers {
            let _ = c.wait();
        }
        if applied == 0 {
            bail!("the consumers applied nothing");
        }
        let us = ticks as f64 / TICKS_PER_SEC * 1e6 / applied as f64;
        eprintln!(
            "bench: consumer CPU per event {} publishing: {us:.0} µs ({applied} events)",
            if publishing { "with" } else { "without" }
        );
        if publishing { &mut with } else { &mut without }.push(us);
    }
    cleanup(a, &env, "bench-pub-0")?;
    let mut f = ab_figure(
        "consumer CPU per event: publishing results vs not",
        "µs",
        with,
        without,
        "not publishing",
    );
    f.target = "≈ 1× (publishing is once a second, not per event)".into();
    figs.push(f);
    Ok(())
}
