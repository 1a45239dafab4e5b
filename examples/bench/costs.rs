//! What one event costs each process of the pipeline (`--only costs`): CPU per event per
//! service at a few offered rates with the idle stack's own CPU taken off, the MongoDB
//! requests and PostgreSQL transactions those rates take, and perf profiles of pipedemo and
//! the MongoDB-protocol server at one rate.
//!
//! Idle first: every service's CPU with nothing offered for 10 s, as a rate. A load's cost
//! of a service is then its CPU during the load minus that rate times the load's length,
//! over the events: what the events added, not what the stack spends anyway.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mongodb::bson::{doc, Document};

use pipedemo::pipeline::outbox;
use pipedemo::telemetry::cpu::{self, Service};

use super::{ab_setup, at_most, figure, load_args, measured_load, ms, Args, CpuTracker, Figure};

/// Where the runs write (their own database and group, apart from the other sections').
const ENV: [(&str, &str); 3] = [
    ("MONGODB_DATABASE", "bench_costs"),
    ("CONSUMER_GROUP", "bench-costs"),
    ("METRICS_FILE", "/tmp/pipedemo-bench-costs.jsonl"),
];

/// Seconds of the idle measurement.
const IDLE_SECS: u64 = 10;

/// The server's request counters: MongoDB's `serverStatus`, which SecantusDB answers alike.
#[derive(Clone, Copy, Default)]
struct MongoCounters {
    /// Requests read off its connections (`network.numRequests`): round trips.
    requests: i64,
    /// Documents inserted and update statements (`opcounters`).
    inserts: i64,
    updates: i64,
    queries: i64,
}

async fn mongo_counters(db: &mongodb::Database) -> Result<MongoCounters> {
    let s = db.run_command(doc! { "serverStatus": 1 }).await?;
    let n = |d: &Document, k: &str| {
        d.get_i64(k)
            .or_else(|_| d.get_i32(k).map(i64::from))
            .unwrap_or_default()
    };
    let net = s.get_document("network").cloned().unwrap_or_default();
    let ops = s.get_document("opcounters").cloned().unwrap_or_default();
    Ok(MongoCounters {
        requests: n(&net, "numRequests"),
        inserts: n(&ops, "insert"),
        updates: n(&ops, "update"),
        queries: n(&ops, "query"),
    })
}

/// Transactions committed in the outbox's database since the server started.
async fn pg_commits(pg: &tokio_postgres::Client) -> Result<i64> {
    let row = pg
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0))
}

/// Every service's CPU, in seconds per second, with nothing offered.
fn idle() -> BTreeMap<Service, f64> {
    std::thread::sleep(Duration::from_secs(3));
    let t = CpuTracker::start();
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    t.stop()
        .into_iter()
        .map(|(s, secs)| (s, secs / IDLE_SECS as f64))
        .collect()
}

/// A perf profile of pipedemo's `load` at `rate` and one of the MongoDB-protocol server
/// beside it, each process on its own: the functions that take most of its CPU, callees
/// included (what a cost is spent on) and alone (where it is burnt), written to
/// `bench/profile-<rate>-<process>.txt`.
fn profile(a: &Args, rate: u64) -> Result<String> {
    if Command::new("perf").arg("--version").output().is_err() {
        return Ok("perf is not installed: no profile".into());
    }
    let mongo = cpu::processes()
        .into_iter()
        .find(|(_, s, _)| *s == Service::Mongo)
        .map(|(pid, _, _)| pid);
    let mut cmd = Command::new(&a.pipedemo);
    cmd.args(load_args(rate * a.seconds, rate))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    std::fs::create_dir_all("bench")?;
    let mut child = cmd.spawn().context("starting the profiled load")?;
    let targets: Vec<(&str, u32)> = std::iter::once(("pipedemo", child.id()))
        .chain(mongo.map(|p| ("mongo", p)))
        .collect();
    let mut recorders = Vec::new();
    for (name, pid) in &targets {
        let data = Path::new("bench").join(format!("perf-{rate}-{name}.data"));
        let rec = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "499",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        recorders.push((*name, data, rec));
    }
    let status = child.wait()?;
    let mut out = String::new();
    for (name, data, rec) in recorders {
        // SIGINT is how perf record is asked to write its file and end.
        // SAFETY: kill(2) on perf's own pid.
        unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
        let _ = rec.wait_with_output();
        let report = |children: bool| -> Result<String> {
            let o = Command::new("perf")
                .args([
                    "report",
                    if children {
                        "--children"
                    } else {
                        "--no-children"
                    },
                    "--sort",
                    "sym",
                    "--stdio",
                    "--percent-limit",
                    "2",
                    "-g",
                    "none",
                    "-i",
                ])
                .arg(&data)
                .stderr(Stdio::null())
                .output()
                .context("perf report")?;
            Ok(String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .take(25)
                .map(|l| format!("{l}\n"))
                .collect())
        };
        let text = format!(
            "{name} at {rate} ev/s, with callees:\n{}\n{name} at {rate} ev/s, alone:\n{}",
            report(true)?,
            report(false)?
        );
        let file = Path::new("bench").join(format!("profile-{rate}-{name}.txt"));
        std::fs::write(&file, &text)?;
        out.push_str(&format!("== {} ==\n{text}\n", file.display()));
    }
    if !status.success() {
        bail!("the profiled load at {rate} ev/s failed ({status})");
    }
    Ok(out)
}

/// What one load of the section needs: the arguments, the idle rates and the servers' counters.
struct Costs<'a> {
    a: &'a Args,
    idle: &'a BTreeMap<Service, f64>,
    mongo: &'a mongodb::Database,
    pg: &'a tokio_postgres::Client,
}

impl Costs<'_> {
    /// One load at `rate` (in transactions of `window` ms, or the default's): latency from
    /// schedule, each process's CPU per event beyond idle, the MongoDB requests and
    /// PostgreSQL transactions it took.
    async fn load(&self, rate: u64, window: Option<u64>, figs: &mut Vec<Figure>) -> Result<()> {
        let (a, idle, mongo, pg) = (self.a, self.idle, self.mongo, self.pg);
        let window_arg = window.map(|w| format!("{w}ms"));
        let extra: Vec<&str> = match &window_arg {
            Some(w) => vec!["--tx-window", w.as_str()],
            None => Vec::new(),
        };
        let label = match window {
            Some(w) => format!("costs {rate} ev/s in {w} ms windows"),
            None => format!("costs {rate} ev/s"),
        };
        eprintln!("bench: {label} for {} s", a.seconds);
        let (m0, x0) = (mongo_counters(mongo).await?, pg_commits(pg).await?);
        let (v, wall, secs) = measured_load(&a.pipedemo, &ENV, rate, a.seconds, &extra)?;
        let (m1, x1) = (mongo_counters(mongo).await?, pg_commits(pg).await?);
        let events = (rate * a.seconds) as f64;
        let sched = &v["total_from_schedule"];
        let mut lat = figure(
            &format!("{label}: p50 from schedule"),
            ms(sched, &["p50_ms"]),
            "ms",
        );
        // A latency means something only below capacity: what arrived end to end says
        // whether the stack kept up with what was offered.
        lat.target = format!(
            "p99 {:.1} ms, p99.9 {:.1} ms at {rate} ev/s offered, {:.0} ev/s end to end",
            ms(sched, &["p99_ms"]),
            ms(sched, &["p999_ms"]),
            v["throughput_eps"].as_f64().unwrap_or(0.0)
        );
        figs.push(lat);
        let mut whole = 0.0;
        for (svc, cpu_secs) in &secs {
            let idle_secs = idle
                .iter()
                .find(|(s, _)| s.name() == svc)
                .map_or(0.0, |(_, x)| *x)
                * wall;
            let us = (cpu_secs - idle_secs).max(0.0) * 1e6 / events;
            whole += us;
            let mut f = figure(
                &format!("{label}: CPU µs/event {svc}, idle subtracted"),
                us,
                "µs/event",
            );
            // Issue 35's goals are for the default write model.
            match (rate, svc.as_str(), window) {
                (1000, "pipedemo", None) => f = at_most(f, 100.0),
                (4000, "pipedemo", None) => f = at_most(f, 30.0),
                _ => {}
            }
            f.target = format!(
                "{} {:.0} % of a core during the load",
                f.target,
                cpu_secs / wall * 100.0
            )
            .trim()
            .to_owned();
            figs.push(f);
        }
        let mut f = figure(
            &format!("{label}: CPU µs/event pipeline, idle subtracted"),
            whole,
            "µs/event",
        );
        match (rate, window) {
            (1000, None) => f = at_most(f, 300.0),
            (4000, None) => f = at_most(f, 150.0),
            _ => {}
        }
        figs.push(f);
        // The second serverStatus is counted in its own reply.
        let requests = (m1.requests - m0.requests - 1) as f64;
        let mut f = figure(
            &format!("{label}: MongoDB requests/s"),
            requests / wall,
            "requests/s",
        );
        f.target = format!(
            "{:.1} per 1,000 events; per 1,000 events as the server counts them (MongoDB: \
         documents; SecantusDB: insert commands): {:.0} inserts, {:.0} update statements, \
         {:.0} queries",
            requests / events * 1000.0,
            (m1.inserts - m0.inserts) as f64 / events * 1000.0,
            (m1.updates - m0.updates) as f64 / events * 1000.0,
            (m1.queries - m0.queries) as f64 / events * 1000.0,
        );
        figs.push(f);
        let mut f = figure(
            &format!("{label}: PostgreSQL transactions/s"),
            (x1 - x0) as f64 / wall,
            "tx/s",
        );
        f.target = format!(
            "{:.1} events per transaction",
            events / (x1 - x0).max(1) as f64
        );
        figs.push(f);
        Ok(())
    }
}

/// The section: idle, then each rate of `--cost-rates`, each window of `--cost-windows`, then
/// the profile.
pub async fn costs(a: &Args, figs: &mut Vec<Figure>) -> Result<()> {
    ab_setup(&a.pipedemo, &ENV)?;
    let mongo = mongodb::Client::with_uri_str(a.settings.mongo.mongodb_uri.expose())
        .await?
        .database("admin");
    let pg = outbox::connect(&a.settings.pg).await?;
    // JVMs that have not compiled the hot paths yet would be measured, not the pipeline.
    eprintln!("bench: costs: warm-up, 5,000 events at 1,000 ev/s");
    super::run_bin(
        &a.pipedemo,
        &ENV,
        &[
            "load", "--events", "5000", "--rate", "1000", "--json", "--no-tui",
        ],
    )?;
    eprintln!("bench: costs: the idle stack for {IDLE_SECS} s");
    let idle = idle();
    for (s, x) in &idle {
        let mut f = figure(
            &format!("costs: idle {}", s.name()),
            x * 100.0,
            "% of a core",
        );
        if *s == Service::Connect {
            f = at_most(f, 5.0);
        }
        figs.push(f);
    }
    let at = Costs {
        a,
        idle: &idle,
        mongo: &mongo,
        pg: &pg,
    };
    for &rate in &a.cost_rates {
        at.load(rate, None, figs).await?;
    }
    for &window in &a.cost_windows {
        at.load(a.cost_window_rate, Some(window), figs).await?;
    }
    if let Some(rate) = a.profile_rate.filter(|r| *r > 0) {
        eprintln!("bench: costs: perf profile at {rate} ev/s");
        match profile(a, rate) {
            Ok(text) => eprintln!("{text}"),
            Err(e) => eprintln!("bench: no profile: {e:#}"),
        }
    }
    Ok(())
}
