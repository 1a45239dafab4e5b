//! `--routing event-router`: Debezium's Outbox Event Router (the real SMT in Kafka Connect)
//! puts each aggregate's events on its own topic. The show runs whole with faults inside it,
//! consumers join and leave mid-load with exact statistics (a join travels on the activities'
//! topic, its user on the users': references are checked once everything arrived), and every
//! bad shape of a routed message is dead-lettered with its reason.
//!
//! Runs in its own world (topic prefix, connector, slot) and clears it at the end.

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{text, Spawned, Watched};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use pipedemo::check::verify;
use pipedemo::pipeline::kafka;
use pipedemo::run::load::{self, LoadOptions};
use pipedemo::run::session::PhaseOptions;

/// The worlds of the two tests.
const NAME: &str = "router";
const BAD: &str = "router_bad";

fn command(name: &str, args: &[&str]) -> Command {
    let mut c = common::pipedemo(name);
    c.args(args).env("OUTBOX_ROUTING", "event-router");
    c
}

fn run(name: &str, args: &[&str]) -> Output {
    command(name, args).output().expect("pipedemo runs")
}

/// The topic the router gives `aggregate` in world `name`.
fn topic(name: &str, aggregate: &str) -> String {
    format!("pipedemo_test_{name}.outbox.event.{aggregate}")
}

/// Messages now in partition 0..`parts` of `topic` (`None`: no such topic).
async fn messages_in(s: &pipedemo::config::Settings, topic: &str) -> Option<i64> {
    let w = kafka::watermarks(&s.kafka, topic).await.unwrap();
    (!w.is_empty()).then(|| w.iter().map(|w| w.high - w.low).sum())
}

fn world_settings(test: &str) -> pipedemo::config::Settings {
    common::settings(test, &["--routing=event-router"])
}

#[tokio::test]
async fn the_show_runs_routed_with_faults_and_scale_out_keeps_statistics_exact() {
    common::shared_stack();
    let _cleanup = common::Cleanup(|| command(NAME, &[]));
    let dir = std::env::temp_dir().join(format!("pipedemo-router-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");

    // The whole show, routed: phases, the capacity sweep and a chaos phase whose faults act
    // on the connector with its SMT (consumers joining and leaving come below, with exact
    // statistics as the measure).
    let o = command(
        NAME,
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
            "--prewarm",
            "2s",
            "--chaos",
            "--chaos-rate",
            "50",
            "--faults",
            "connector-pause,task-restart",
            "--fault-duration",
            "3s",
            "--gap",
            "3s",
        ],
    )
    .args(common::LAX_TARGETS)
    .args(common::LAX_CAPACITY)
    .args(common::LAX_CHAOS)
    .arg("--report-json")
    .arg(&json)
    .arg("--report-html")
    .arg(dir.join("r.html"))
    .env("METRICS_FILE", dir.join("m.jsonl"))
    .output()
    .unwrap();
    let out = text(&o);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap())
        .unwrap_or_else(|e| panic!("no report ({e}):\n{}", common::failure(&o)));
    assert!(o.status.success(), "{}", common::failure(&o));
    assert_eq!(r["verification"]["passed"], true, "{out}");
    assert_eq!(r["integrity_check"], "PASS", "{out}");
    assert_eq!(r["method"]["routing"], "event-router");
    assert!(
        r["method"]["clocks"][1]
            .as_str()
            .unwrap()
            .contains("pipedemo.captured_us"),
        "{r}"
    );
    assert_eq!(r["phases"][1]["routing"], "event-router");
    assert_eq!(r["phases"][1]["delivered"], 100);
    assert_eq!(r["capacity"]["routing"], "event-router");
    let verified = r["verification"]["found_events"].as_u64().unwrap();
    assert_eq!(
        r["verification"]["total_events"].as_u64(),
        Some(verified),
        "{r}"
    );
    // Every stage measured: T1 came through the SMT in its header, T2 is Kafka's append time.
    for stage in [
        "1_cdc_capture",
        "2_kafka_delivery",
        "3_consumer_poll",
        "4_processing",
    ] {
        assert_eq!(
            r["verification"]["latency"][stage]["count"].as_u64(),
            Some(verified),
            "{stage}: {r}"
        );
    }
    assert_eq!(r["chaos"]["passed"], true, "{:#}", r["chaos"]);
    assert!(
        r["chaos"]["faults"].as_array().unwrap().len() == 2,
        "{:#}",
        r["chaos"]
    );

    // The events went where the router puts them, and the raw topic got none.
    let s = world_settings(NAME);
    assert!(messages_in(&s, &topic(NAME, "User")).await.unwrap() > 0);
    assert!(messages_in(&s, &topic(NAME, "Activity")).await.unwrap() > 0);
    assert_eq!(
        messages_in(&s, &format!("pipedemo_test_{NAME}.public.event_outbox"))
            .await
            .unwrap_or(0),
        0
    );

    // Scale-out on two partitions per aggregate topic: a consumer before the load, one
    // joining, the first leaving; partition 0 of each topic is two marks of the statistics.
    let o = run(NAME, &["setup", "--partitions", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    // Each step waits for a consumer to join or for rows written, not for time.
    let join = |c: &Watched| {
        c.wait_for(
            "partitions assigned",
            1,
            Duration::from_secs(90),
            "a consumer to join its group",
        )
    };
    let first = Watched::start(&mut command(NAME, &["consume"]));
    join(&first);
    let load = Spawned::start(
        command(
            NAME,
            &[
                "load", "--events", "4000", "--rate", "500", "--no-tui", "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()),
    );
    common::wait_for_outbox_rows(NAME, 1000, Duration::from_secs(120));
    let second = Watched::start(&mut command(NAME, &["consume"]));
    join(&second);
    common::wait_for_outbox_rows(NAME, 2500, Duration::from_secs(120));
    let (_, left) = first.stop();
    let o = load.wait();
    let out = text(&o);
    assert!(o.status.success(), "{out}\nconsumer that left:\n{left}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["delivered"], 4000, "{out}");
    assert_eq!(summary["missing"], 0, "{out}");
    assert_eq!(summary["routing"], "event-router", "{out}");
    let (_, joined) = second.stop();
    assert!(
        summary["applied_elsewhere"].as_u64().unwrap() > 0,
        "no event was applied by another consumer: the test did not scale out\n{out}\nconsumer that joined:\n{joined}\nconsumer that left:\n{left}"
    );
    let o = run(NAME, &["verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["found_events"], 4000);
    assert_eq!(v["integrity_check"], "PASS", "statistics exact: {v:#}");

    // Cleanup removes the aggregate topics it made.
    let o = run(NAME, &["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(messages_in(&s, &topic(NAME, "User")).await, None);
    assert_eq!(messages_in(&s, &topic(NAME, "Activity")).await, None);
}

/// A routed message as the SMT would send it, with `headers` (name, value) and a JSON value.
fn routed(
    key: Option<&str>,
    value: &str,
    headers: &[(&str, &str)],
) -> (Option<String>, String, OwnedHeaders) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    (key.map(str::to_owned), value.to_owned(), h)
}

/// Sets a topic's `max.message.bytes` (the broker's limit for its records).
async fn limit_topic(s: &pipedemo::config::Settings, topic: &str, bytes: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        kafka::client_config(&s.kafka).create().unwrap();
    let bytes = bytes.to_string();
    let r = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &bytes)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

#[tokio::test]
async fn every_bad_routed_message_is_dead_lettered_with_its_reason() {
    common::shared_stack();
    let _cleanup = common::Cleanup(|| command(BAD, &[]));
    let s = world_settings(BAD);
    common::setup(&s).await;
    let dlq_start = common::end_offset(&s, &s.kafka.dlq_topic()).await;
    // The dead-letter topic takes less than the aggregate topics do: a copy the broker
    // refuses must become a reference, not a retry for ever. (Cleanup deletes the topic.)
    limit_topic(&s, &s.kafka.dlq_topic(), 200_000).await;
    // An aggregate type nobody handles gets a topic of the router's pattern (the router
    // would make it on its first event), but setup did not make it: the consumer's pattern
    // reaches it and must leave it alone (not read, dead-lettered or committed).
    let aggregate = format!("Order{}", std::process::id());
    let order = topic(BAD, &aggregate);
    kafka::ensure_topic(&s.kafka, &order, 1).await.unwrap();

    let key = format!("\"{}\"", uuid::Uuid::new_v4());
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let captured = (chrono::Utc::now().timestamp_micros()).to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let user = r#""{\"email\": \"a@b.c\", \"username\": \"x\", \"first_name\": \"a\", \"last_name\": \"b\"}""#;
    let full = |event_type: &'static str| {
        vec![
            ("id", id.as_str()),
            ("event_type", event_type),
            ("created_at", now.as_str()),
            ("pipedemo.captured_us", captured.as_str()),
        ]
    };
    let without = |name: &str| {
        full("UserCreated")
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            topic(BAD, "User"),
            routed(Some(&key), r#""[1, 2]""#, &full("UserCreated")),
            "expected a JSON object, got an array",
        ),
        (
            topic(BAD, "User"),
            routed(Some(&key), "42", &full("UserCreated")),
            "expected a JSON object, got a number",
        ),
        (
            topic(BAD, "User"),
            routed(Some(&key), user, &without("id")),
            "no `id` header",
        ),
        (
            topic(BAD, "User"),
            routed(Some(&key), user, &without("pipedemo.captured_us")),
            "no `pipedemo.captured_us` header",
        ),
        (
            topic(BAD, "User"),
            routed(None, user, &full("UserCreated")),
            "no `key (the aggregate id)`",
        ),
        (
            topic(BAD, "Activity"),
            routed(Some(&key), user, &full("UserCreated")),
            "does not belong on the Activity topic",
        ),
        (
            topic(BAD, "User"),
            routed(Some(&key), user, &full("UserDeleted")),
            "unknown event_type `UserDeleted`",
        ),
    ];
    // Hostile ones: whatever they hold, each is dead-lettered (a copy cut to fit, or a
    // reference) and the events behind them go through.
    let huge_id = "x".repeat(600_000);
    let mut duplicated = full("UserCreated");
    duplicated.push(("id", huge_id.as_str()));
    let huge_key = format!("\"{}\"", "k".repeat(1_000_000));
    let big_array = format!("\"[{}1]\"", "1,".repeat(110_000));
    let hostile = [
        (
            "600 KB id header (the wedge)",
            routed(Some(&key), user, &{
                let mut h = without("id");
                h.push(("id", huge_id.as_str()));
                h
            }),
            "bytes in all)` is not a UUID",
        ),
        (
            "duplicated header, the last 600 KB",
            routed(Some(&key), user, &duplicated),
            "header `id` is invalid: `xxx",
        ),
        (
            "1 MB key",
            routed(Some(&huge_key), user, &full("UserCreated")),
            "key (the aggregate id)` is invalid",
        ),
        (
            "header value not UTF-8",
            {
                let (k, v, h) = routed(Some(&key), user, &without("event_type"));
                (
                    k,
                    v,
                    common::with_raw_header(h, b"event_type", &[0xff, 0xfe]),
                )
            },
            "header `event_type` is invalid: not UTF-8",
        ),
        (
            "header name not UTF-8",
            {
                let mut h = full("UserCreated");
                h.retain(|(n, _)| *n != "created_at");
                h.push(("created_at", "yesterday"));
                let (k, v, h) = routed(Some(&key), user, &h);
                (k, v, common::with_raw_header(h, &[b'x', 0xff, 0xfe], b"v"))
            },
            "is not an ISO-8601 timestamp",
        ),
        (
            "220 KB value the dead-letter topic refuses to copy",
            routed(Some(&key), &big_array, &full("UserCreated")),
            "expected a JSON object, got an array",
        ),
    ];
    let producer: FutureProducer = kafka::client_config(&s.kafka)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let send = |t: String, (k, v, h): (Option<String>, String, OwnedHeaders)| {
        let producer = producer.clone();
        async move {
            let mut rec = FutureRecord::<str, str>::to(&t).payload(&v).headers(h);
            if let Some(k) = &k {
                rec = rec.key(k);
            }
            producer
                .send(rec, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{t}: {e:?}"));
        }
    };
    for (t, m, _) in &cases {
        send(t.clone(), m.clone()).await;
    }
    for (_, m, _) in &hostile {
        send(topic(BAD, "User"), m.clone()).await;
    }
    // Not pipedemo's topic: never read.
    send(
        order.clone(),
        routed(Some(&key), user, &full("OrderPlaced")),
    )
    .await;

    let opts = LoadOptions {
        phase: PhaseOptions {
            seed: Some(5),
            ..PhaseOptions::unpaced(200)
        },
        consumer: Default::default(),
        run: Default::default(),
    };
    let r = load::run(&s, &opts, CancellationToken::new())
        .await
        .expect("the run goes on");
    assert!(r.missing.is_empty(), "the good events still arrive");
    let dead = cases.len() + hostile.len();
    let letters = common::dead_letters(&s, dlq_start, dead).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    for (t, _, expected) in &cases {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{t}: no reason containing {expected:?} in {reasons:#?}"
        );
    }
    for (name, _, expected) in &hostile {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{name}: no reason containing {expected:?} in {reasons:#?}"
        );
    }
    for l in &letters {
        assert!(
            l.reason.len() <= 1100,
            "a reason echoes at most 1 KB: {}",
            l.reason.len()
        );
        assert!(
            l.bytes < 200_000,
            "every dead letter fits the topic: {} bytes",
            l.bytes
        );
    }
    let references = letters.iter().filter(|l| l.form == "reference").count();
    assert_eq!(
        references, 2,
        "the 1 MB key (too large to copy) and the 220 KB value (refused by the topic) are kept \
         by reference: {letters:#?}"
    );
    let v = verify::run(&s, false).await.unwrap();
    assert!(v.passed, "{v:#?}");
    assert_eq!(v.found_events, 200);
    assert_eq!(v.dead_lettered, dead as u64, "each counted once");
    // The foreign topic's message is still there, unread by the group: nothing committed.
    assert_eq!(messages_in(&s, &order).await, Some(1));
    assert_eq!(
        kafka::committed(&s.kafka, &order).await.unwrap(),
        None,
        "the group committed an offset on a topic that is not pipedemo's"
    );
    kafka::delete_topics(&s.kafka, &[order]).await.unwrap();
    let o = run(BAD, &["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}
