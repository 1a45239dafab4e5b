//! Fault injection under load (slow; run them alone with
//! `cargo nextest run --features failpoints -E 'test(/^faults::/)'`). Each scenario
//! sends 10,000 events while something breaks, then proves with `verify` that every event is in
//! its read model exactly once and the counters are exact. Needs the stack started by
//! `scripts/stack.sh up` (the tests stop and start its services).

use crate::common;

use std::process::Stdio;

use crate::common::Spawned;
use std::time::{Duration, Instant};

use pipedemo::check::verify;
use pipedemo::config::Settings;
use pipedemo::pipeline::{generator, outbox};
use pipedemo::telemetry::stats::Stage;

const EVENTS: u64 = 10_000;

struct Scenario {
    name: &'static str,
    settings: Settings,
    metrics: std::path::PathBuf,
}

impl Scenario {
    async fn new(name: &'static str) -> Scenario {
        let settings = common::settings(name, &[]);
        common::setup(&settings).await;
        let metrics = settings.output.metrics_file.clone();
        Scenario {
            name,
            settings,
            metrics,
        }
    }

    /// Starts `pipedemo consume` for this scenario; its stderr goes to a log file.
    fn consumer(&self) -> Spawned {
        self.consumer_with_failpoints("")
    }

    /// Starts `pipedemo consume --instance-id ID`: a static member of the group.
    fn static_consumer(&self, id: &str) -> Spawned {
        self.consumer_args("", &["--instance-id", id])
    }

    /// Starts `pipedemo consume` with fail points armed (`FAILPOINTS` syntax of the `fail` crate).
    fn consumer_with_failpoints(&self, failpoints: &str) -> Spawned {
        self.consumer_args(failpoints, &[])
    }

    fn consumer_args(&self, failpoints: &str, args: &[&str]) -> Spawned {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        Spawned::start(
            common::pipedemo(self.name)
                .arg("consume")
                .args(args)
                .env("LOG_LEVEL", "info")
                .env("FAILPOINTS", failpoints)
                .stdout(Stdio::null())
                .stderr(log),
        )
    }

    fn log(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "pipedemo-fault-{}-{}.log",
            self.name,
            std::process::id()
        ))
    }

    /// Inserts the events at about 1,000/s in 100-row batches, in the background.
    fn load(&self) -> tokio::task::JoinHandle<()> {
        let pg = self.settings.pg.clone();
        tokio::spawn(async move {
            let mut client = outbox::connect(&pg).await.expect("PostgreSQL");
            let mut events = generator::Generator::new(EVENTS, None);
            loop {
                let batch: Vec<_> = events.by_ref().take(100).collect();
                if batch.is_empty() {
                    break;
                }
                loop {
                    match outbox::insert_batch(&client, &batch).await {
                        Ok(_) => break,
                        // Committed before the connection broke: the batch is in.
                        Err(e) if format!("{e:#}").contains("duplicate key") => break,
                        Err(_) => {
                            // PostgreSQL may be restarting: reconnect and retry the batch.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            if let Ok(c) = outbox::connect(&pg).await {
                                client = c;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Runs `pipedemo replay` (the whole topic again, as a user would) and checks that the read
    /// models' checksum is unchanged and that nothing was written anew.
    async fn replay_changes_nothing(&self) {
        let before = verify::run(&self.settings, true).await.expect("verify");
        let out = common::pipedemo(self.name)
            .args(["replay", "--json", "--timeout-secs", "180"])
            .output()
            .expect("pipedemo replay runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "replay failed: {stderr}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("replay --json");
        assert_eq!(r["complete"], true, "{r}");
        assert_eq!(r["applied"], 0, "replay wrote something anew: {r}");
        assert!(
            r["already_applied"].as_u64().unwrap() >= EVENTS,
            "every event is replayed: {r}"
        );
        let after = verify::run(&self.settings, true).await.expect("verify");
        assert!(after.passed, "{after:#?}");
        assert_eq!(
            before.checksum, after.checksum,
            "{}: replaying the topic changed the read models",
            self.name
        );
        // The scenario's figures, for `cargo nextest run … --no-capture`.
        let redelivered = self.redelivered();
        eprintln!(
            "{}: sent {EVENTS}, verified {}, duplicated {}, redelivered and absorbed {redelivered}; \
             replay of {} messages: {} applied, {} already applied, checksum unchanged",
            self.name,
            after.found_events,
            after.duplicated_ids.len(),
            r["messages"],
            r["applied"],
            r["already_applied"]
        );
    }

    /// Events the consumers found already applied: delivered more than once.
    fn redelivered(&self) -> usize {
        let (records, _) = pipedemo::telemetry::metrics::read_file(&self.metrics).unwrap();
        records
            .iter()
            .filter(
                |e| matches!(e, pipedemo::telemetry::metrics::MetricEvent::Event(r) if !r.applied),
            )
            .count()
    }

    /// Waits until the load has written `rows` rows (the load runs on this test's runtime, so
    /// the wait must not block it).
    async fn wait_rows(&self, rows: i64) {
        let pg = outbox::connect(&self.settings.pg)
            .await
            .expect("PostgreSQL");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n: i64 = pg
                .query_one("SELECT count(*) FROM event_outbox", &[])
                .await
                .expect("counting the outbox")
                .get(0);
            if n >= rows {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited 120 s for {rows} rows in the outbox ({n} so far)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a consumer of the scenario has its partitions (its log says so).
    async fn wait_joined(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .contains("partitions assigned")
        {
            assert!(
                Instant::now() < deadline,
                "waited 90 s for the consumer to join its group:\n{}",
                tail(&std::fs::read_to_string(self.log()).unwrap_or_default())
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until verify passes (or fails after `limit`) and returns the last report.
    async fn settle(&self, limit: Duration) -> verify::VerifyReport {
        let deadline = Instant::now() + limit;
        loop {
            let r = verify::run(&self.settings, false)
                .await
                .expect("verify runs");
            if (r.passed && r.total_events == EVENTS) || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn stack(args: &[&str]) {
    let ok = common::stack_sh(args, &[]).status.success();
    assert!(ok, "scripts/stack.sh {args:?} failed");
}

fn assert_exact(r: &verify::VerifyReport, log: &std::path::Path) {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        r.passed,
        "verify failed: {r:#?}\nconsumer log tail:\n{}",
        tail(&log)
    );
    assert_eq!((r.total_events, r.found_events), (EVENTS, EVENTS));
    assert!(r.duplicated_ids.is_empty());
    assert!(
        r.integrity_passed,
        "integrity issues: {:?}",
        r.integrity_issues
    );
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn stop_consumer(mut c: Spawned) {
    c.signal("-TERM");
    let _ = c.wait();
}

#[tokio::test]
async fn consumer_killed_three_times_loses_and_duplicates_nothing() {
    common::shared_stack();
    let s = Scenario::new("fault_kill").await;
    let mut consumer = s.consumer();
    let load = s.load();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        consumer.signal("-KILL");
        let _ = consumer.wait();
        tokio::time::sleep(Duration::from_millis(500)).await;
        consumer = s.consumer();
    }
    load.await.unwrap();
    let r = s.settle(Duration::from_secs(120)).await;
    stop_consumer(consumer);
    assert_exact(&r, &s.log());
    s.replay_changes_nothing().await;
}

#[tokio::test]
async fn a_restarted_static_consumer_takes_back_its_partitions_and_a_second_with_its_id_is_refused()
{
    common::shared_stack();
    let s = Scenario::new("fault_static").await;
    let group = s.settings.kafka.group.clone();
    let mut consumer = s.static_consumer("fault-static-0");
    let load = s.load();
    s.wait_joined().await;
    s.wait_rows(2_000).await;
    consumer.signal("-KILL");
    let _ = consumer.wait();
    let consumer = s.static_consumer("fault-static-0");
    // A dynamic consumer's restart joins as a second member beside the dead one, and the group
    // rebalances once the dead one's session (10 s) runs out; a static member takes the dead
    // one's place. So the group never counts two members, and no rebalance revokes anything.
    let mut most = 0;
    let watch_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < watch_until {
        if let Ok(Some(g)) =
            pipedemo::pipeline::kafka::admin::group_state(&s.settings.kafka, &group).await
        {
            most = most.max(g.members);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        most,
        1,
        "the restarted static member was counted beside the dead one:\n{}",
        tail(&std::fs::read_to_string(s.log()).unwrap_or_default())
    );
    let log = std::fs::read_to_string(s.log()).unwrap_or_default();
    assert_eq!(
        log.matches("partitions assigned").count(),
        2,
        "each process was assigned its partitions once:\n{}",
        tail(&log)
    );
    assert!(!log.contains("partitions revoked"), "{}", tail(&log));

    // A second process with the same id takes the place; the first is told why it must stop.
    let mut first = consumer;
    let second = s.static_consumer("fault-static-0");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = first.child().try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "waited 90 s for the consumer whose id was taken to stop:\n{}",
            tail(&std::fs::read_to_string(s.log()).unwrap_or_default())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = std::fs::read_to_string(s.log()).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "{}", tail(&log));
    assert!(
        log.contains("with this consumer's instance id `fault-static-0`")
            && log.contains("needs its own --instance-id"),
        "{}",
        tail(&log)
    );
    load.await.unwrap();
    let r = s.settle(Duration::from_secs(120)).await;
    stop_consumer(second);
    assert_exact(&r, &s.log());
}

#[test]
fn an_instance_id_kafka_would_refuse_is_refused_before_joining() {
    let o = common::pipedemo("fault_static_bad")
        .args(["consume", "--instance-id", "two words"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("is not a Kafka group instance id"),
        "{}",
        common::text(&o)
    );
}

/// Waits for a consumer that must crash at an armed fail point; fails the test otherwise.
async fn expect_abort(mut c: Spawned, point: &str, log: &std::path::Path) {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = c.child().try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            panic!("fail point {point} did not fire within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status.signal(),
        Some(6),
        "{point}: expected SIGABRT, got {status:?}"
    );
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        text.contains(&format!("fail point {point}: aborting")),
        "{}",
        tail(&text)
    );
}

#[tokio::test]
async fn consumer_crashing_between_mongodb_write_and_offset_commit_duplicates_nothing() {
    common::shared_stack();
    let s = Scenario::new("fault_failpoint").await;
    let load = s.load();
    // Crash after the 6th batch's inserts and joins are acknowledged, before its statistics,
    // dead letters and offset commit: the batch comes again, already applied, and the
    // statistics are repaired when the next consumer starts.
    expect_abort(
        s.consumer_with_failpoints("consumer-after-write=5*off->return"),
        "consumer-after-write",
        &s.log(),
    )
    .await;
    // Crash after everything but the offset commit.
    expect_abort(
        s.consumer_with_failpoints("consumer-before-commit=5*off->return"),
        "consumer-before-commit",
        &s.log(),
    )
    .await;
    let consumer = s.consumer();
    load.await.unwrap();
    let r = s.settle(Duration::from_secs(120)).await;
    stop_consumer(consumer);
    assert_exact(&r, &s.log());
    // The crashed batches were really delivered twice: found already applied the second time.
    let redelivered = s.redelivered();
    assert!(
        redelivered > 0,
        "no event was redelivered after the crashes"
    );
    // The batch written just before the first crash has no timing records: the report says so
    // instead of presenting the percentiles as covering every event.
    let timed = r.latency[&Stage::Total].count;
    assert!(timed < EVENTS, "{timed} timed events");
    let text = pipedemo::show::report::verify(&r);
    assert!(
        text.contains(&format!(
            "latency covers {timed} of the {EVENTS} events found"
        )),
        "{text}"
    );
    s.replay_changes_nothing().await;
}

#[tokio::test]
async fn consumer_that_stops_consuming_reconnects_by_itself() {
    common::shared_stack();
    // After its third batch the Kafka consumer stops while the load goes on, in the two ways
    // librdkafka has been seen to after a broker outage: fetching paused, or its partitions
    // dropped while the group still counts them as taken.
    for (name, how) in [
        ("fault_stall_paused", "pause"),
        ("fault_stall_unassigned", "unassign"),
    ] {
        let s = Scenario::new(name).await;
        let consumer =
            s.consumer_with_failpoints(&format!("consumer-stop-fetching=2*off->1*return({how})"));
        s.load().await.unwrap();
        let r = s.settle(Duration::from_secs(120)).await;
        stop_consumer(consumer);
        assert_exact(&r, &s.log());
        let log = std::fs::read_to_string(s.log()).unwrap();
        assert!(
            log.contains("although messages are waiting; reconnecting"),
            "{name}: {}",
            tail(&log)
        );
        s.replay_changes_nothing().await;
    }
}

/// Runs a load with a consumer, stops `service` once the consumer has joined and `after_rows`
/// rows are in (`scripts/stack.sh stop`, or `kill` for a crash): mid-load by count, not by
/// the clock. Starts it again after `down_for`, and returns the scenario once verify has
/// settled and passed.
async fn outage(
    name: &'static str,
    stop: &str,
    service: &str,
    after_rows: i64,
    down_for: Duration,
) -> Scenario {
    let s = Scenario::new(name).await;
    let consumer = s.consumer();
    let load = s.load();
    s.wait_joined().await;
    s.wait_rows(after_rows).await;
    stack(&[stop, service]);
    tokio::time::sleep(down_for).await;
    stack(&["start", service]);
    load.await.unwrap();
    let r = s.settle(Duration::from_secs(180)).await;
    stop_consumer(consumer);
    assert_exact(&r, &s.log());
    s.replay_changes_nothing().await;
    s
}

#[tokio::test]
async fn mongodb_down_for_10_seconds_is_retried_and_caught_up() {
    // It stops MongoDB: a stack of its own.
    let _stack = common::PrivateStack::up("fault_mongo");
    let s = outage(
        "fault_mongo",
        "stop",
        "mongo",
        2_000,
        Duration::from_secs(10),
    )
    .await;
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(
        log.contains("MongoDB failing; retrying"),
        "the outage is shown:\n{}",
        tail(&log)
    );
    assert!(log.contains("MongoDB is back"), "{}", tail(&log));
}

#[tokio::test]
async fn graceful_stop_mid_load_commits_and_exits_130() {
    common::shared_stack();
    let s = Scenario::new("fault_term").await;
    let mut consumer = s.consumer();
    let load = s.load();
    tokio::time::sleep(Duration::from_secs(3)).await;
    consumer.signal("-TERM");
    let status = consumer.wait().status;
    assert_eq!(
        status.code(),
        Some(130),
        "SIGTERM exits 130 after a clean stop"
    );
    let consumer = s.consumer();
    load.await.unwrap();
    let r = s.settle(Duration::from_secs(120)).await;
    stop_consumer(consumer);
    assert_exact(&r, &s.log());
    s.replay_changes_nothing().await;
    let log = std::fs::read_to_string(s.log()).unwrap();
    assert!(
        log.contains("stopping: finishing the batch in hand"),
        "{}",
        tail(&log)
    );
}

// The Kafka broker's, Kafka Connect's and PostgreSQL's outages run in `tests/chaos.rs`: one
// `pipedemo chaos` run breaks each of them (and more) under load, then verifies and replays.
