//! The commands as a user runs them: `pipedemo setup && pipedemo load && pipedemo verify`.

use crate::common;

use std::process::{Command, Output, Stdio};

use crate::common::{text, Spawned};

/// `pipedemo ARGS` in world `name`.
fn command(name: &str, args: &[&str]) -> Command {
    let mut c = common::pipedemo(name);
    c.args(args);
    c
}

fn pipedemo(name: &str, args: &[&str]) -> Output {
    command(name, args).output().expect("pipedemo runs")
}

#[tokio::test]
async fn setup_load_verify_as_a_user_runs_them() {
    common::shared_stack();
    let o = pipedemo("cli", &["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Setup complete"));

    let o = pipedemo("cli", &["load", "--events", "200", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    assert_eq!(summary["schema_version"], 1);
    assert_eq!(summary["delivered"], 200);
    assert_eq!(summary["sent"], 200);
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["missing"], 0);
    assert!(summary["stages"]["total"]["p99_ms"].as_f64().unwrap() > 0.0);

    let report =
        std::env::temp_dir().join(format!("pipedemo-cli-report-{}.json", std::process::id()));
    let o = pipedemo("cli", &["verify", "--report", report.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("RESULT: PASS") && out.contains("200 found"),
        "{out}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["success_rate"], 100.0);
    assert_eq!(r["integrity_check"], "PASS");

    // A row the consumer never sees makes verify fail with a non-zero exit.
    let pg = pipedemo::pipeline::outbox::connect(&common::settings("cli", &[]).pg)
        .await
        .unwrap();
    pg.execute(
        "INSERT INTO event_outbox (event_id, aggregate_id, aggregate_type, event_type, payload) VALUES (gen_random_uuid(), gen_random_uuid(), 'User', 'UserCreated', '{}')",
        &[],
    )
    .await
    .unwrap();
    let o = pipedemo("cli", &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Missing: 1 event"), "{}", text(&o));
    pg.execute("TRUNCATE event_outbox", &[]).await.unwrap();
}

/// Ctrl-C mid-load: the inserts stop, what was sent still arrives and is checked, the JSON
/// says sent vs requested, and the exit code is 130. Logs written to a file carry no colour
/// codes unless `--color always` asks for them.
#[tokio::test]
async fn an_interrupted_load_reports_what_it_sent_and_exits_130() {
    common::shared_stack();
    assert!(pipedemo("cli_interrupted", &["setup"]).status.success());
    let log = std::env::temp_dir().join(format!("pipedemo-cli-{}.log", std::process::id()));
    let mut load = Spawned::start(
        command(
            "cli_interrupted",
            &[
                "load", "--events", "100000", "--rate", "200", "--json", "--no-tui",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap()),
    );
    // Mid-load by count: some rows in, most to come.
    common::wait_for_outbox_rows("cli_interrupted", 400, std::time::Duration::from_secs(120));
    load.signal("-INT");
    let o = load.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(o.status.code(), Some(130), "{}{stderr}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["events"], 100_000);
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 100_000, "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(sent), "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert!(stderr.contains("interrupted: no more inserts"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a log file:\n{stderr}"
    );

    let o = command(
        "cli_interrupted",
        &["load", "--events", "20", "--color", "always"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains('\x1b'),
        "--color always wrote no colour: {}",
        text(&o)
    );
}

/// Thresholds on a real load, and `compare` on the documents it printed.
#[tokio::test]
async fn thresholds_gate_a_load_and_compare_finds_a_regression() {
    common::shared_stack();
    let o = pipedemo("cli_thresholds", &["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pipedemo(
        "cli_thresholds",
        &[
            "load",
            "--events",
            "300",
            "--rate",
            "300",
            "--json",
            "--no-tui",
            "--threshold",
            "p99<60s",
            "--threshold",
            "success>=100%",
            "--threshold",
            "stage.cdc.p99<60s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["kind"], "load");
    assert_eq!(doc["thresholds"].as_array().unwrap().len(), 3);
    assert!(doc["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["passed"] == true));
    assert!(
        text(&o).contains("✓ threshold p99<60s (p99 = "),
        "{}",
        text(&o)
    );
    let p99 = doc["thresholds"][0]["actual"].as_f64().unwrap();
    assert_eq!(
        Some(p99),
        doc["total_from_schedule"]["p99_ms"].as_f64(),
        "p99 from schedule"
    );

    // A gate nobody meets: exit 1, naming it.
    let o = pipedemo(
        "cli_thresholds",
        &[
            "load",
            "--events",
            "50",
            "--no-tui",
            "--threshold",
            "p50<1us",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("✗ threshold p50<1us (p50 = "),
        "{}",
        text(&o)
    );
    // Bad or unmeasurable gates are usage errors, before anything runs.
    for bad in ["p99<fast", "capacity>=1000", "p98<1ms"] {
        let o = pipedemo(
            "cli_thresholds",
            &["load", "--events", "10", "--threshold", bad],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }

    // compare: the same document passes; twice the p99 is a regression; kinds must match.
    let dir = std::env::temp_dir().join(format!("pipedemo-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.json");
    std::fs::write(&base, serde_json::to_string(&doc).unwrap()).unwrap();
    let mut worse = doc.clone();
    worse["total_from_schedule"]["p99_ms"] = serde_json::json!(p99 * 2.0 + 1.0);
    let new = dir.join("new.json");
    std::fs::write(&new, serde_json::to_string(&worse).unwrap()).unwrap();
    let (b, n) = (base.to_str().unwrap(), new.to_str().unwrap());
    let o = pipedemo("cli_thresholds", &["compare", b, b]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("PASS: no figure regressed"),
        "{}",
        text(&o)
    );
    let o = pipedemo(
        "cli_thresholds",
        &["compare", b, n, "--max-regression", "10%"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("✗ p99 went from"), "{}", text(&o));
    let o = pipedemo("cli_thresholds", &["compare", b, n, "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["passed"], false);
    let verify = dir.join("verify.json");
    let v = pipedemo("cli_thresholds", &["verify", "--json"]);
    std::fs::write(&verify, &v.stdout).unwrap();
    let o = pipedemo("cli_thresholds", &["compare", b, verify.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot compare a `load` document with a `verify` document"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn commands_that_need_the_pipeline_refuse_before_setup_and_start_nothing() {
    common::shared_stack();
    // A world of its own that was never set up: its database exists, nothing in it.
    let name = "cli_nosetup";
    let dir = common::metrics_file(name).parent().unwrap().to_path_buf();
    let missing = "table event_outbox, Kafka topic pipedemo_test_cli_nosetup.public.event_outbox \
                   and connector pipedemo-test-cli_nosetup do not exist; run `pipedemo setup` first";
    for args in [
        &["chaos", "--no-tui"][..],
        &["load", "--events", "10", "--no-tui"],
        &["monitor", "--no-tui"],
    ] {
        let o = pipedemo(name, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(missing), "{args:?}: {}", text(&o));
        // Refused before anything started: no consumer process (its log), no metrics file,
        // no child's file.
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".jsonl") || f.starts_with("pipedemo-consumers"))
            .collect();
        assert!(
            left.is_empty(),
            "{args:?} left {left:?} in {}",
            dir.display()
        );
    }
}

#[tokio::test]
async fn bad_configuration_fails_in_one_line_without_secrets() {
    common::shared_stack();
    // A world set up, so that what fails below is the configuration alone.
    assert!(pipedemo("cli_badconf", &["setup"]).status.success());
    // A topic that does not exist.
    let o = pipedemo("cli_badconf", &["consume", "--topic", "no.such.topic"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Kafka topic no.such.topic does not exist; run `pipedemo setup` first"),
        "{}",
        text(&o)
    );
    // An aggregate topic of the Event Router that does not exist: the hint names its setup.
    let o = pipedemo(
        "cli_badconf",
        &[
            "consume",
            "--routing",
            "event-router",
            "--topic-prefix",
            "no_such_prefix",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            ".outbox.event.User does not exist; run `pipedemo setup --routing event-router` first"
        ),
        "{}",
        text(&o)
    );
    // A report path that cannot be written.
    let o = pipedemo(
        "cli_badconf",
        &["verify", "--report", "/nonexistent-dir/report.json"],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("cannot write the report to /nonexistent-dir/report.json"),
        "{}",
        text(&o)
    );
    // A wrong password, with debug logs on: the password appears nowhere.
    let secret = "s3cr3t-Pa55word-913";
    let o = command(
        "cli_badconf",
        &["setup", "--pg-password", secret, "--log-level", "debug"],
    )
    .env(
        "MONGODB_URI",
        format!("mongodb://admin:{secret}@127.0.0.1:1/?serverSelectionTimeoutMS=500"),
    )
    .output()
    .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("rejected the credentials"), "{out}");
    assert!(out.contains("mongodb://admin:***@127.0.0.1:1"), "{out}");
    assert!(!out.contains(secret), "the password leaked:\n{out}");
}

/// Runs `pipedemo monitor --observe --no-tui` for a few seconds, stops it with SIGTERM and
/// returns its exit status and output.
fn observe_for(name: &str, secs: u64, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Spawned::start(
        command(name, &["monitor", "--observe", "--no-tui"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    std::thread::sleep(std::time::Duration::from_secs(secs));
    child.signal("-TERM");
    let o = child.wait();
    (o.status, text(&o))
}

#[tokio::test]
async fn monitor_observe_reports_health_and_names_a_service_that_is_down() {
    common::shared_stack();
    assert!(pipedemo("cli_monitor", &["setup"]).status.success());
    let (status, out) = observe_for("cli_monitor", 4, &[]);
    assert_eq!(status.code(), Some(130), "{out}");
    let healthy = out
        .lines()
        .find(|l| l.starts_with("[RUNNING] observing · lag ") && !l.contains("lag ?"))
        .unwrap_or_else(|| panic!("no complete health line:\n{out}"));
    assert!(healthy.contains("Debezium RUNNING 1/1"), "{healthy}");
    assert!(
        healthy.contains("MongoDB activities ") && healthy.contains("users "),
        "{healthy}"
    );

    let (status, out) = observe_for(
        "cli_monitor",
        4,
        &[(
            "MONGODB_URI",
            "mongodb://u:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=300",
        )],
    );
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("[DEGRADED] observing")
            && l.contains("Debezium RUNNING")
            && l.contains("problem: MongoDB: unreachable at mongodb://u:***@127.0.0.1:1")),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "the password leaked:\n{out}");
}

#[tokio::test]
async fn replay_refuses_while_a_consumer_of_the_group_runs() {
    common::shared_stack();
    let o = pipedemo("cli_replay", &["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut consumer = Spawned::start(command("cli_replay", &["consume"]).stderr(Stdio::piped()));
    // Wait until it is a member of the group with its partition.
    let stderr = consumer.child().stderr.take().unwrap();
    let (joined_tx, joined) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("partitions assigned") {
                let _ = joined_tx.send(());
            }
        }
    });
    joined
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the consumer joined its group");
    let o = pipedemo("cli_replay", &["replay"]);
    consumer.signal("-TERM");
    let _ = consumer.wait();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot reset consumer group pipedemo-test-cli_replay")
            && text(&o).contains("stop any running `pipedemo consume`"),
        "{}",
        text(&o)
    );
}

/// Secrets set the ways users set them (a librdkafka property, a connector setting, a URL's
/// query) never reach what a run prints, logs (at debug level), writes or serves.
#[tokio::test]
async fn secrets_never_reach_logs_reports_or_metrics() {
    use std::io::{Read, Write};
    common::shared_stack();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let secrets = ["s3cret-key", "s3cret-info", "s3cret-query"];
    let with_secrets = |args: &[&str]| {
        let mut c = command("cli_secrets", args);
        c.env("LOG_LEVEL", "debug")
            .env("KAFKA_OPTIONS", "ssl.key.password=s3cret-key")
            .env(
                "CONNECTOR_CONFIG",
                "value.converter.basic.auth.user.info=u:s3cret-info",
            )
            .env(
                "MONGODB_URI",
                "mongodb://127.0.0.1:27017/?appName=pipedemo&authMechanismProperties=TOKEN:s3cret-query",
            );
        c
    };
    let o = with_secrets(&["setup"]).output().unwrap();
    let mut seen = text(&o);
    assert!(o.status.success(), "{seen}");
    let mut run = Spawned::start(
        with_secrets(&[
            "--metrics-listen",
            &listen,
            "load",
            "--events",
            "300",
            "--rate",
            "50",
            "--no-tui",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()),
    );
    // Scrape while it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let scraped = loop {
        if let Ok(mut c) = std::net::TcpStream::connect(&listen) {
            c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut body = String::new();
            let _ = c.read_to_string(&mut body);
            if body.contains("pipedemo_") {
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the metrics endpoint never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = run.child();
    let o = run.wait();
    assert!(o.status.success(), "{}", text(&o));
    seen.push_str(&text(&o));
    seen.push_str(&scraped);
    let s = common::settings("cli_secrets", &[]);
    seen.push_str(&std::fs::read_to_string(&s.output.metrics_file).unwrap_or_default());
    let log = s.output.metrics_file.parent().unwrap().join("pipedemo.log");
    seen.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    for secret in secrets {
        assert!(!seen.contains(secret), "{secret} was printed:\n{seen}");
    }
    // The connector got the setting (it is only hidden, not lost).
    let connect = pipedemo::provision::connector::Connect::new(&s.connect).unwrap();
    let config = connect.config().await.unwrap().unwrap();
    assert_eq!(
        config["value.converter.basic.auth.user.info"], "u:s3cret-info",
        "{config:?}"
    );
}

/// `replay --group` and `consume --topic` meet setup's ownership rules: a group or topic that
/// pipedemo did not create is refused, and nothing of it moves.
#[tokio::test]
async fn replay_and_consume_refuse_a_group_or_topic_that_is_not_pipedemos() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    common::shared_stack();
    let o = pipedemo("cli_foreign", &["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = common::settings("cli_foreign", &[]);
    let topic = s.kafka.topic();
    // Somebody else's group, with a position on pipedemo's topic.
    let group = format!("someone-elses-{}", std::process::id());
    let theirs: BaseConsumer = pipedemo::pipeline::kafka::client_config(&s.kafka)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(0))
        .unwrap();
    theirs.commit(&tpl, CommitMode::Sync).unwrap();
    drop(theirs);
    let o = pipedemo("cli_foreign", &["--group", &group, "replay"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("replay refused") && text(&o).contains(&group),
        "{}",
        text(&o)
    );
    let mut k = s.kafka.clone();
    k.group = group.clone();
    assert_eq!(
        pipedemo::pipeline::kafka::committed(&k, &topic)
            .await
            .unwrap(),
        Some(vec![(0, 0)]),
        "their position did not move"
    );
    // A topic of pipedemo's shape that setup did not make.
    let foreign = format!("someone-elses-{}.public.event_outbox", std::process::id());
    pipedemo::pipeline::kafka::ensure_topic(&s.kafka, &foreign, 1)
        .await
        .unwrap();
    let o = pipedemo("cli_foreign", &["--topic", &foreign, "consume"]);
    pipedemo::pipeline::kafka::delete_topics(&s.kafka, std::slice::from_ref(&foreign))
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{foreign} exists but pipedemo did not create it")),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn an_unusable_dead_letter_topic_shows_degraded_and_fails_the_run_in_bounded_time() {
    common::shared_stack();
    let name = "dlqfail";
    let o = common::pipedemo(name).arg("setup").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // A message that must be dead-lettered, to a dead-letter topic Kafka cannot take.
    let s = common::settings(name, &[]);
    let producer: rdkafka::producer::FutureProducer =
        pipedemo::pipeline::kafka::client_config(&s.kafka)
            .create()
            .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::<str, str>::to(&s.kafka.topic()).payload("not JSON"),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let o = common::pipedemo(name)
        .args(["load", "--events", "20", "--no-tui", "--retry-limit", "5s"])
        .env("DLQ_TOPIC", "pipedemo test: not a topic name!")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("the dead-letter topic pipedemo test: not a topic name! kept failing for 5 s"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("[DEGRADED]") && l.contains("the dead-letter topic")),
        "no DEGRADED progress line naming the cause:\n{out}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // Nothing was committed: with a usable dead-letter topic the message is dead-lettered
    // and the run goes on.
    let o = common::pipedemo(name)
        .args(["load", "--events", "20", "--no-tui"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// A load whose events are held back says what held them (the cause its health line showed),
/// not only "check the stack", and nothing of them is lost: once the cause clears they arrive.
#[tokio::test]
async fn a_load_whose_events_were_held_back_names_the_cause_and_loses_nothing() {
    common::shared_stack();
    let o = pipedemo("cli_held", &["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = common::settings("cli_held", &[]);
    let connect = pipedemo::provision::connector::Connect::new(&s.connect).unwrap();
    connect.set_paused(true).await.unwrap();
    let o = pipedemo(
        "cli_held",
        &[
            "load",
            "--events",
            "300",
            "--rate",
            "150",
            "--timeout",
            "10s",
        ],
    );
    connect.set_paused(false).await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("while waiting the health line showed: Debezium connector PAUSED"),
        "{}",
        text(&o)
    );
    // Resumed, the connector sends them on and a consumer applies every one.
    let mut consumer = common::Spawned::start(
        common::pipedemo("cli_held")
            .arg("consume")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let r = loop {
        let r = pipedemo::check::verify::run(&s, false).await.unwrap();
        if (r.passed && r.found_events == 300) || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    consumer.signal("-TERM");
    let _ = consumer.wait();
    assert!(
        r.passed && r.found_events == 300,
        "waited 120 s for the held events: {r:#?}"
    );
}
