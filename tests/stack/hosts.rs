//! One run over several hosts: generators and consumers on three simulated hosts, each its own
//! set of processes with its own host name (`PIPEDEMO_HOST`), working directory (metrics and
//! results files) and loopback address (127.0.0.2–4, where its Prometheus endpoint listens).
//! Every process publishes its figures on the run's results topic; each generator's report
//! must be the whole run's: every event's latency, exactly the percentiles of all the
//! processes' per-event records pooled, each host's share, thresholds judged on the merged
//! figures, a consumer killed mid-run counted and named.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pipedemo::telemetry::metrics::{self, MetricEvent};
use pipedemo::telemetry::stats::Latency;

use crate::common::{text, Spawned, Watched};

const NAME: &str = "hosts";
/// How long a consumer may take to join its group.
const JOIN: Duration = Duration::from_secs(90);
/// How long the generators may take to write the rows a step waits for.
const ROWS: Duration = Duration::from_secs(180);
/// Events of each run, over both generators; the total rate they share.
const EVENTS: u64 = 3000;
const RATE: &str = "300";

/// A simulated host.
struct Host {
    name: &'static str,
    addr: Ipv4Addr,
    dir: PathBuf,
}

impl Host {
    fn new(name: &'static str, last: u8) -> Host {
        let dir = std::env::temp_dir().join(format!(
            "pipedemo-test-{NAME}-{}/{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the host");
        Host {
            name,
            addr: Ipv4Addr::new(127, 0, 0, last),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = common::pipedemo(NAME);
        c.current_dir(&self.dir)
            .env("PIPEDEMO_HOST", self.name)
            .env("METRICS_FILE", self.dir.join("metrics.jsonl"))
            .args(args);
        c
    }

    /// A free port on the host's own address.
    fn port(&self) -> u16 {
        TcpListener::bind(SocketAddrV4::new(self.addr, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no port on {} ({e})", self.addr))
    }

    /// A `consume` of the group, serving its figures on the host's address, once it has
    /// partitions; returns it with that address.
    fn consumer(&self) -> (Watched, SocketAddrV4) {
        let at = SocketAddrV4::new(self.addr, self.port());
        let c = Watched::start(
            self.command(&["consume"])
                .env("METRICS_LISTEN", at.to_string()),
        );
        c.wait_for(
            "partitions assigned",
            1,
            JOIN,
            &format!("the consumer of {} to join its group", self.name),
        );
        (c, at)
    }

    /// One of the run's two generators; `gates`: with a threshold (judged on the merged
    /// figures).
    fn generator(&self, run: &str, gates: bool) -> Spawned {
        let events = EVENTS.to_string();
        let mut args = vec![
            "load",
            "--run",
            run,
            "--generators",
            "2",
            "--events",
            &events,
            "--rate",
            RATE,
            "--no-tui",
            "--json",
        ];
        if gates {
            // Gates that only the merged figures can pass: every event delivered (counted
            // over both generators), and a p99 judged on every consumer's events (its value
            // is checked against the report's; how low it is is the bench's to say).
            args.extend(["--threshold", "success>=100%", "--threshold", "p99<3600s"]);
        }
        Spawned::start(
            self.command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    }

    /// Every record in the host's metrics file.
    fn records(&self) -> Vec<MetricEvent> {
        let mut all = Vec::new();
        let file = self.dir.join("metrics.jsonl");
        if file.exists() {
            metrics::each_in_file(&file, |ev| all.push(ev)).expect("a readable metrics file");
        }
        all
    }
}

/// A generator's JSON report.
fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}", text(o)))
}

/// `GET /metrics` on `at`: the host's own address answers.
fn scrape(at: SocketAddrV4) -> String {
    let mut s = TcpStream::connect(at).unwrap_or_else(|e| panic!("nothing listens on {at} ({e})"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {at}\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The end-to-end and from-schedule latency of run `run`'s applied events, pooled from every
/// host's per-event records.
fn pooled(hosts: &[&Host], run: &str) -> (Latency, Latency) {
    let (mut total, mut scheduled) = (Latency::default(), Latency::default());
    for h in hosts {
        for ev in h.records() {
            let MetricEvent::Event(r) = ev else { continue };
            let Some(tag) = r.tag.as_ref().filter(|t| &*t.run == run) else {
                continue;
            };
            if r.applied && r.timing.plausible() {
                total.record(r.timing.stages().total_us);
                if let Some(due) = tag.due_us {
                    scheduled.record(r.timing.t5_us - due);
                }
            }
        }
    }
    (total, scheduled)
}

fn hosts_of(doc: &serde_json::Value) -> BTreeSet<String> {
    doc["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["host"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_run_over_three_hosts_reports_every_event_exactly_and_names_a_killed_consumer() {
    common::shared_stack();
    let o = common::pipedemo(NAME)
        .args(["setup", "--partitions", "6"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (a, b, c) = (
        Host::new("host-a", 2),
        Host::new("host-b", 3),
        Host::new("host-c", 4),
    );

    // A consumer on each host, each serving its figures on its own address; then a generator
    // on host-a and one on host-b (each with a consumer of its own in the group).
    let (ca, at_a) = a.consumer();
    let (cb, _) = b.consumer();
    let (cc, at_c) = c.consumer();
    assert!(scrape(at_a).contains("pipedemo_"), "host-a's endpoint");
    assert!(scrape(at_c).contains("pipedemo_"), "host-c's endpoint");
    let (ga, gb) = (a.generator("hosts-1", true), b.generator("hosts-1", true));
    let (oa, ob) = (ga.wait(), gb.wait());
    assert!(oa.status.success(), "generator on host-a:\n{}", text(&oa));
    assert!(ob.status.success(), "generator on host-b:\n{}", text(&ob));
    let (ra, rb) = (report(&oa), report(&ob));

    for r in [&ra, &rb] {
        let out = serde_json::to_string_pretty(r).unwrap();
        assert_eq!(r["merged"], true, "{out}");
        assert_eq!(r["generators"], 2, "{out}");
        assert_eq!(r["sent"], EVENTS, "both generators' rows: {out}");
        assert_eq!(r["delivered"], EVENTS, "{out}");
        assert_eq!(r["missing"], 0, "{out}");
        // Every event's latency, whichever of the five consumers applied it.
        assert_eq!(r["stages"]["total"]["count"], EVENTS, "{out}");
        assert_eq!(r["total_from_schedule"]["count"], EVENTS, "{out}");
        assert_eq!(
            hosts_of(r),
            ["host-a", "host-b", "host-c"].map(String::from).into(),
            "{out}"
        );
        // Thresholds are judged on the merged figures.
        assert_eq!(r["thresholds"][0]["passed"], true, "{out}");
        assert_eq!(r["thresholds"][1]["passed"], true, "{out}");
        assert_eq!(
            r["thresholds"][1]["actual"], r["total_from_schedule"]["p99_ms"],
            "{out}"
        );
    }
    // One run, one report: both generators print the same figures.
    assert_eq!(ra["stages"], rb["stages"]);
    assert_eq!(ra["total_from_schedule"], rb["total_from_schedule"]);
    // Exactly the figures of every per-event record pooled.
    let (total, scheduled) = pooled(&[&a, &b, &c], "hosts-1");
    assert_eq!(
        total.count(),
        EVENTS,
        "records of the run in the hosts' files"
    );
    for (q, key) in [(0.5, "p50_ms"), (0.99, "p99_ms"), (1.0, "max_ms")] {
        assert_eq!(
            ra["stages"]["total"][key].as_f64(),
            Some(total.quantile_ms(q)),
            "end-to-end {key}"
        );
        assert_eq!(
            ra["total_from_schedule"][key].as_f64(),
            Some(scheduled.quantile_ms(q)),
            "from-schedule {key}"
        );
    }
    // Each share is one process's own count; they add up to the run.
    let shares: u64 = ra["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["applied"].as_u64().unwrap())
        .sum();
    assert_eq!(shares, EVENTS);

    cc.stop();

    // The second run: host-c's consumer is killed a third of the way in. What it had
    // published is counted; what it applied after is delivered (verified below) and declared,
    // and the report names it as stopped.
    let (cc, _) = c.consumer();
    // No gate here: the killed consumer's partitions wait for the group to notice, which is
    // latency the report shows, not a failure of the run.
    let (ga, gb) = (a.generator("hosts-2", false), b.generator("hosts-2", false));
    common::wait_for_outbox_rows(NAME, (EVENTS + EVENTS / 3) as i64, ROWS);
    let mut cc = cc;
    cc.signal("-KILL");
    let killed_log = cc.log();
    drop(cc);
    let (oa, ob) = (ga.wait(), gb.wait());
    assert!(oa.status.success(), "{}\nkilled:\n{killed_log}", text(&oa));
    assert!(ob.status.success(), "{}", text(&ob));
    let r = report(&oa);
    let out = serde_json::to_string_pretty(&r).unwrap();
    assert_eq!(r["delivered"], EVENTS, "{out}");
    assert_eq!(r["missing"], 0, "{out}");
    let measured = r["stages"]["total"]["count"].as_u64().unwrap();
    let unreported = r["latency_unreported"].as_u64().unwrap();
    assert_eq!(
        measured + unreported,
        EVENTS,
        "every event measured or declared: {out}"
    );
    // Only the killed consumer is taken for stopped; it is named when it had sent word of the
    // phase (figures, or a heartbeat listing it) before it died, which a kill a second after
    // its first event can beat (the unit tests pin both cases down).
    let processes = r["processes"].as_array().unwrap();
    for p in processes {
        let killed = p["host"] == "host-c" && p["process"].as_str().unwrap().ends_with("consume");
        assert_eq!(p["stopped"] == true, killed, "{p}: {out}");
    }

    for c in [ca, cb] {
        c.stop();
    }
    // Read models and statistics exact: every event of both runs once.
    let o = common::pipedemo(NAME)
        .args(["verify", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "verify:\n{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["found_events"], 2 * EVENTS);
    assert_eq!(v["integrity_check"], "PASS");

    // Stopped, each process left its final figures in its host's results file (the killed one
    // excepted); those of the first run merge to the same figures as the topic gave.
    let files: Vec<PathBuf> = [&a, &b, &c]
        .iter()
        .map(|h| h.dir.join("pipedemo_results.jsonl"))
        .collect();
    let mut merge = common::pipedemo(NAME);
    merge
        .args(["merge", "--run", "hosts-1", "--json"])
        .args(&files);
    let o = merge.output().unwrap();
    assert!(o.status.success(), "merge:\n{}", text(&o));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m[0]["applied"], EVENTS, "{}", text(&o));
    assert_eq!(m[0]["stages"], ra["stages"], "{}", text(&o));

    // A run's name is its own: a new run that reuses it (even alone) is refused, rather than
    // merged with the old run's figures.
    let o = a
        .command(&["load", "--run", "hosts-1", "--events", "10", "--no-tui"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("a run name used before needs a new one"),
        "{}",
        text(&o)
    );
}
