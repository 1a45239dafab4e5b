//! `pipedemo chaos` against the real stack: every local fault in one run, recovered with
//! nothing lost; a fault that cannot be cleared fails the run and names it; the dashboard's
//! chaos view in a real terminal. Needs `scripts/stack.sh up`; the tests stop, kill and start
//! its services.

use crate::common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use pipedemo::check::verify;

const STACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh");

fn chaos(name: &str, extra: &[&str]) -> Command {
    let mut c = common::pipedemo(name);
    c.args(["chaos", "--stack", STACK, "--no-tui", "--json"])
        .args(extra)
        .env("LOG_LEVEL", "info");
    c
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}):\n{}", common::text(o)))
}

#[tokio::test]
async fn every_local_fault_recovers_and_nothing_is_lost_or_duplicated() {
    // It stops services: a stack of its own.
    let _stack = common::PrivateStack::up("chaos_all");
    let s = common::settings("chaos_all", &[]);
    common::setup(&s).await;
    // Recovery means draining the fault's backlog: the rate leaves a debug build on a machine
    // busy with other tests room to (at 150 ev/s a busy two-core machine's debug consumer kept
    // up, but never caught up). The SLO and the timeout are generous: this test is about every
    // fault recovering with nothing lost; how soon is `scripts/bench.sh --only chaos`.
    let o = chaos(
        "chaos_all",
        &[
            "--rate",
            "50",
            "--slo-p99",
            common::LAX_SLO_P99_MS,
            "--fault-duration",
            "4s",
            "--gap",
            "4s",
            "--recovery-timeout",
            "300s",
        ],
    )
    .output()
    .unwrap();
    let out = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let doc = json(&o);
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["passed"], true, "{out}");
    assert_eq!(
        (doc["lost"].as_u64(), doc["duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    let faults = doc["faults"].as_array().unwrap();
    let names: Vec<&str> = faults
        .iter()
        .map(|f| f["fault"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "consumer-kill",
            "consumer-crash",
            "rebalance",
            "connector-pause",
            "task-restart",
            "connect-kill",
            "kafka-stop",
            "mongo-stop",
            "postgres-restart",
            "connect-freeze",
            "kafka-freeze",
            "mongo-freeze",
            "postgres-freeze"
        ],
        "by default every fault runs against the local stack"
    );
    for f in faults {
        let name = f["fault"].as_str().unwrap();
        assert_eq!(f["verdict"], "recovered", "{name}: {f:#}");
        let injected = f["injected_at_secs"].as_f64().unwrap();
        let cleared = f["cleared_at_secs"].as_f64().unwrap();
        let recovery = f["recovery_secs"].as_f64().unwrap();
        assert!(injected < cleared && recovery >= 0.0, "{name}: {f:#}");
        // Events arrived after it was cleared, and when the first did is said (under this
        // test's lax SLO a fault can count as recovered before that).
        let moving = f["first_event_after_secs"].as_f64();
        assert!(moving.is_some_and(|m| m >= 0.0), "{name}: {f:#}");
        assert_eq!(f["lost"], 0, "{name}");
        assert!(f["peak_backlog"].as_u64().is_some() && f["latency_during"]["p99_ms"].is_number());
    }
    let by = |n: &str| faults.iter().find(|f| f["fault"] == n).unwrap();
    // What breaks the flow shows on the dashboard, with its cause.
    for (fault, cause) in [
        ("consumer-kill", "killed (SIGKILL)"),
        ("consumer-crash", "crashed (SIGABRT)"),
        ("connector-pause", "PAUSED"),
        ("kafka-stop", "Kafka"),
        ("mongo-stop", "MongoDB"),
        ("postgres-restart", "PostgreSQL"),
        // Alive but silent: seen because the probes give up after a second.
        ("kafka-freeze", "Kafka"),
        ("mongo-freeze", "MongoDB"),
        ("postgres-freeze", "PostgreSQL"),
        ("connect-freeze", "Connect"),
    ] {
        let f = by(fault);
        assert!(
            f["noticed_cause"]
                .as_str()
                .is_some_and(|c| c.contains(cause)),
            "{fault} noticed as {}, expected {cause:?}",
            f["noticed_cause"]
        );
        // Noticed at all; how soon is a figure of `scripts/bench.sh --only chaos`.
        assert!(f["noticed_after_secs"].as_f64().is_some(), "{f:#}");
        // Measured around the fault; that it rises above the level before is a figure of the
        // benchmark too (on a busy machine the level before can be the higher one).
        assert!(
            f["peak_backlog"].as_u64().is_some() && f["normal_backlog"].as_u64().is_some(),
            "{f:#}"
        );
    }
    // The crash came between the MongoDB write and the commit: that batch came again and was
    // found already applied. Counted in the consumers' own records: a fault's window ends
    // when it has recovered, which under a lax SLO can come before the batch comes again.
    let (records, _) = pipedemo::telemetry::metrics::read_file(&s.output.metrics_file).unwrap();
    let again = records
        .iter()
        .filter(|e| matches!(e, pipedemo::telemetry::metrics::MetricEvent::Event(r) if !r.applied))
        .count();
    assert!(again > 0, "no event was found already applied:\n{out}");
    // The consumer saw the broker go and come back, and said so on the metrics channel.
    let consumers = std::fs::read_to_string(doc["consumer_log"].as_str().unwrap()).unwrap();
    assert!(
        consumers.contains("Kafka unreachable; retrying") && consumers.contains("Kafka is back"),
        "the consumers' log:\n{consumers}"
    );
    assert!(
        doc["load"]["delivered"] == doc["load"]["sent"],
        "every written event arrived: {}",
        doc["load"]
    );

    // The read models are exact: verify agrees, and replaying the whole topic changes nothing.
    let before = verify::run(&s, true).await.unwrap();
    assert!(
        before.passed && before.duplicated_ids.is_empty(),
        "{before:#?}"
    );
    let r = common::pipedemo("chaos_all")
        .args(["replay", "--json", "--timeout-secs", "180"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", common::text(&r));
    let r: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(r["applied"], 0, "the replay wrote something anew: {r}");
    let after = verify::run(&s, true).await.unwrap();
    assert_eq!(before.checksum, after.checksum);
    eprintln!(
        "chaos: {} events, {} faults recovered; replay of {} messages: 0 applied",
        after.found_events,
        faults.len(),
        r["messages"]
    );
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

#[tokio::test]
async fn a_fault_that_cannot_be_cleared_fails_the_run_and_names_it() {
    // It stops services: a stack of its own.
    let stack = common::PrivateStack::up("chaos_down");
    let s = common::settings("chaos_down", &[]);
    common::setup(&s).await;
    let run = common::Spawned::start(
        chaos(
            "chaos_down",
            &[
                "--faults",
                "mongo-stop",
                "--fault-duration",
                "6s",
                "--gap",
                "5s",
                "--recovery-timeout",
                "10s",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped()),
    );
    // Once the fault has stopped MongoDB, something else takes its port: the stack cannot
    // start it again, as when a service will not come back.
    let mongo = stack.port("mongo");
    let deadline = Instant::now() + Duration::from_secs(60);
    while port_open(mongo) {
        assert!(Instant::now() < deadline, "MongoDB was never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let squatter = TcpListener::bind(("127.0.0.1", mongo)).expect("the freed port");
    let o = run.wait();
    drop(squatter);
    let out = common::text(&o);
    // The fault it could not clear stays recorded: `chaos --restore` starts MongoDB again.
    let r = common::pipedemo("chaos_down")
        .args(["chaos", "--restore", "--stack", STACK])
        .output()
        .unwrap();
    let restored = common::stack_sh(&["start", "mongo"], &[]).status.success();
    assert!(
        restored,
        "MongoDB could not be started again after the test"
    );
    assert!(r.status.success(), "{}", common::text(&r));
    assert!(
        common::text(&r)
            .contains("without clearing mongo-stop left it in force: MongoDB started again"),
        "{}",
        common::text(&r)
    );
    assert_eq!(o.status.code(), Some(1), "{out}");
    let doc = json(&o);
    assert_eq!(doc["passed"], false);
    let f = &doc["faults"][0];
    assert_eq!(f["fault"], "mongo-stop");
    assert_eq!(f["verdict"], "not-cleared", "{f:#}");
    assert!(
        f["reason"].as_str().unwrap().contains("start mongo"),
        "{f:#}"
    );
    let failures = doc["failures"].to_string();
    assert!(
        failures.contains("mongo-stop: could not clear"),
        "{failures}"
    );
}

#[tokio::test]
async fn the_dashboard_shows_the_schedule_the_fault_and_its_result() {
    common::shared_stack();
    let s = common::settings("chaos_tui", &[]);
    common::setup(&s).await;
    let socket = format!("pipedemo-chaos-{}", std::process::id());
    // The world's variables on the command line tmux runs: its server has its own environment.
    let world = common::world_vars("chaos_tui");
    let cmd = format!(
        "NO_COLOR=1 {world}\
         METRICS_FILE={m} POSTGRES_PASSWORD=pipedemo {bin} chaos --stack {STACK} \
         --rate 50 --slo-p99 {slo} --recovery-timeout 300s \
         --faults connector-pause,consumer-kill --fault-duration 6s --gap 3s --refresh-ms 100; \
         echo EXIT=$?; sleep 60",
        bin = env!("CARGO_BIN_EXE_pipedemo"),
        m = common::metrics_file("chaos_tui").display(),
        slo = common::LAX_SLO_P99_MS,
    );
    common::tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "c",
            "-x",
            "100",
            "-y",
            "30",
            &cmd,
        ],
    );
    // Generous: the run ends when each fault has recovered, within --recovery-timeout 300s.
    let deadline = Instant::now() + Duration::from_secs(900);
    let (mut in_force, mut recovered, mut end) = (String::new(), String::new(), String::new());
    let mut styled = String::new();
    while Instant::now() < deadline {
        let pane = common::tmux(&socket, &["capture-pane", "-p", "-t", "c"]);
        if pane.contains("connector-pause   IN FORCE") && pane.contains("DEGRADED") {
            in_force = pane.clone();
            styled = common::tmux(&socket, &["capture-pane", "-p", "-e", "-t", "c"]);
        }
        if pane.contains("connector-pause   recovered in") {
            recovered = pane.clone();
        }
        let all = common::tmux(&socket, &["capture-pane", "-p", "-t", "c", "-S", "-200"]);
        if all.contains("EXIT=") {
            end = all;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::tmux(&socket, &["kill-server"]);
    assert!(
        in_force.contains("Chaos")
            && in_force.contains("cleared in")
            && in_force.contains("consumer-kill     pending")
            && in_force.contains("PAUSED")
            && in_force.contains("backlog"),
        "the fault in force, its countdown and the schedule:\n{in_force}"
    );
    assert!(
        !recovered.is_empty(),
        "no `connector-pause   recovered in` line was seen (the run ended, or 900 s passed):\n{end}"
    );
    // NO_COLOR: attributes (bold, reverse video for the state badge) but not one colour.
    let params: Vec<u32> = styled
        .split("\x1b[")
        .skip(1)
        .filter_map(|seq| seq.split_once('m'))
        .flat_map(|(p, _)| {
            p.split(';')
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    assert!(
        params.contains(&7),
        "the state badge in reverse video:\n{styled:?}"
    );
    assert!(
        !params
            .iter()
            .any(|p| matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107)),
        "a colour under NO_COLOR: {params:?}"
    );
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(
        end.contains("PASS: every fault recovered and nothing was lost"),
        "{end}"
    );
}

/// The processes whose parent is `pid`, with their process groups.
fn children_of(pid: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …: the name may hold spaces, so read after its `)`.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let me: u32 = head.split(' ').next().unwrap().parse().unwrap_or(0);
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push((me, fields[2].parse().unwrap_or(0)));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A chaos run stopped in each way a user stops one puts everything back: the fault in force
/// is cleared by the run itself (Ctrl-C twice, SIGTERM, a closed terminal's SIGHUP), or after
/// a SIGKILL by `pipedemo chaos --restore`; its consumer processes end with it; and a Ctrl-C
/// at the terminal (sent to the run's whole process group, as a terminal does) never reaches
/// them.
#[tokio::test]
async fn an_interrupted_chaos_run_puts_everything_back() {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    common::shared_stack();
    let s = common::settings("chaos_stop", &[]);
    common::setup(&s).await;
    let connect = pipedemo::provision::connector::Connect::new(&s.connect).unwrap();
    let state = || async {
        connect
            .status()
            .await
            .unwrap()
            .map(|st| format!("{:?}", st.connector.state))
            .unwrap_or_default()
    };
    let record = s
        .output
        .metrics_file
        .parent()
        .unwrap()
        .join(pipedemo::run::chaos::in_force::FILE);
    // A `.env` the parent reads and its children must not read again: the port is the
    // parent's (children that re-read it failed to bind it and restarted in a loop).
    let dir = std::env::temp_dir().join(format!("pipedemo-chaos-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join(".env"),
        format!("METRICS_LISTEN=127.0.0.1:{port}\n"),
    )
    .unwrap();
    for (way, signals) in [
        ("Ctrl-C twice", &["INT", "INT"][..]),
        ("SIGTERM", &["TERM"][..]),
        ("SIGHUP", &["HUP"][..]),
        ("SIGKILL", &["KILL"][..]),
    ] {
        let mut cmd = chaos(
            "chaos_stop",
            &[
                "--faults",
                "connector-pause",
                "--fault-duration",
                "300s",
                "--gap",
                "1s",
                "--rate",
                "50",
            ],
        );
        cmd.process_group(0)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let consumers_log = record.with_file_name("pipedemo-consumers.log");
        let log_before = std::fs::metadata(&consumers_log).map_or(0, |m| m.len() as usize);
        let mut run = common::Spawned::start(&mut cmd);
        let pid = run.child().id();
        let deadline = Instant::now() + Duration::from_secs(90);
        while state().await != "Paused" {
            if Instant::now() >= deadline {
                let o = run.wait();
                panic!(
                    "{way}: the connector was never paused by the run\n{}",
                    common::text(&o)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            port_open(port),
            "{way}: the run serves its metrics on its .env's port"
        );
        assert!(record.is_file(), "{way}: the fault in force is recorded");
        let kids: Vec<(u32, u32)> = children_of(pid);
        assert!(!kids.is_empty(), "{way}: the run has its consumer process");
        for (kid, group) in &kids {
            assert_ne!(
                *group, pid,
                "{way}: consumer {kid} is in the terminal's group"
            );
        }
        for sig in signals {
            // To the whole group, as the terminal sends Ctrl-C.
            let ok = Command::new("kill")
                .args([&format!("-{sig}"), "--", &format!("-{pid}")])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "{way}: kill -{sig} -{pid}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let o = run.wait();
        let out = common::text(&o);
        if way == "SIGKILL" {
            assert_eq!(
                state().await,
                "Paused",
                "{way}: killed with the fault in force"
            );
            let r = common::pipedemo("chaos_stop")
                .args(["chaos", "--restore", "--stack", STACK])
                .output()
                .unwrap();
            assert!(r.status.success(), "{}", common::text(&r));
            assert!(common::text(&r).contains("resumed"), "{}", common::text(&r));
        }
        assert_eq!(
            state().await,
            "Running",
            "{way}: the connector is running again\n{out}"
        );
        assert!(!record.exists(), "{way}: no fault left recorded\n{out}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while kids.iter().any(|(k, _)| alive(*k)) {
            assert!(
                Instant::now() < deadline,
                "{way}: a consumer of the run outlived it: {kids:?}\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(&consumers_log).unwrap_or_default();
        let log = log.get(log_before..).unwrap_or_default();
        assert!(
            !log.contains("cannot listen"),
            "{way}: a child read the parent's .env again:\n{log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debezium has lost events on a connector restart when several rows share one LSN (a
/// multi-row transaction, pipedemo's write shape) or a transaction was in progress. Large
/// transactions captured across dozens of task restarts and a few kills of Kafka Connect
/// itself: every event arrives, exactly once in the read models.
#[tokio::test]
async fn multi_row_transactions_survive_dozens_of_connector_restarts_exactly_once() {
    use std::process::Stdio;
    // It stops services: a stack of its own.
    let _stack = common::PrivateStack::up("chaos_restarts");
    let s = common::settings("chaos_restarts", &[]);
    common::setup(&s).await;
    let connect = pipedemo::provision::connector::Connect::new(&s.connect).unwrap();
    const EVENTS: u64 = 24_000;
    let events = EVENTS.to_string();
    let mut load = common::Spawned::start(
        common::pipedemo("chaos_restarts")
            .args([
                "load",
                "--events",
                &events,
                "--rate",
                "300",
                "--tx-rows",
                "600",
                "--no-tui",
                "--json",
                "--timeout",
                "300s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (mut task_restarts, mut connect_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while load.child().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the load did not end");
        if task_restarts > 0 && task_restarts % 12 == 0 && connect_kills < 3 {
            // Kafka Connect itself, killed mid-transaction and started again.
            assert!(common::stack_sh(&["kill", "connect"], &[]).status.success());
            assert!(common::stack_sh(&["start", "connect"], &[])
                .status
                .success());
            connect_kills += 1;
        }
        match connect.restart_task(0).await {
            Ok(()) => task_restarts += 1,
            // Connect still starting after a kill, or the task being reassigned.
            Err(e) => eprintln!("task restart not taken: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let o = load.wait();
    let out = common::text(&o);
    assert!(
        task_restarts >= 24 && connect_kills >= 1,
        "only {task_restarts} task restarts and {connect_kills} Connect kills happened during the load\n{out}"
    );
    assert_eq!(o.status.code(), Some(0), "every event delivered\n{out}");
    let v = verify::run(&s, false).await.unwrap();
    assert_eq!(
        (v.total_events, v.found_events, v.missing),
        (EVENTS, EVENTS, 0),
        "lost across {task_restarts} task restarts and {connect_kills} Connect kills: {v:#?}"
    );
    assert!(v.duplicated_ids.is_empty(), "{v:#?}");
    assert!(v.passed && v.integrity_passed, "{v:#?}");
    eprintln!(
        "{EVENTS} events in 600-row transactions: {task_restarts} task restarts, \
         {connect_kills} Connect kills, none lost"
    );
}
