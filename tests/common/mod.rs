//! Shared helpers of the integration tests, which run against the real stack.
#![allow(dead_code)]

use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use pipedemo::config::Settings;

/// Tests share one outbox table and connector, so they run one at a time.
pub fn serial() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Runs `scripts/stack.sh` with `args` and extra environment.
pub fn stack_sh(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/stack.sh runs")
}

/// Fails the test, saying how to start the stack, unless all four services listen.
pub fn require_stack() {
    let down: Vec<&str> = [
        ("PostgreSQL 127.0.0.1:5432", "127.0.0.1:5432"),
        ("Kafka 127.0.0.1:9092", "127.0.0.1:9092"),
        ("Kafka Connect 127.0.0.1:8083", "127.0.0.1:8083"),
        ("MongoDB 127.0.0.1:27017", "127.0.0.1:27017"),
    ]
    .iter()
    .filter(|(_, addr)| {
        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_err()
    })
    .map(|(name, _)| *name)
    .collect();
    assert!(
        down.is_empty(),
        "the stack is not up ({} unreachable): run `scripts/stack.sh up` (or `docker compose up -d --wait`) before `cargo test`",
        down.join(", ")
    );
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    settings: Settings,
}

/// Default settings (as a user with the stack up has), with this test's own read-model
/// database, consumer group and metrics file so tests do not see each other's data.
pub fn settings(test: &str, extra: &[&str]) -> Settings {
    let metrics =
        std::env::temp_dir().join(format!("pipedemo-test-{test}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&metrics);
    let mut argv = vec![
        "pipedemo".to_owned(),
        format!("--mongodb-database=pipedemo_test_{test}"),
        format!("--group=pipedemo-test-{test}"),
        format!("--metrics-file={}", metrics.display()),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    Args::try_parse_from(argv)
        .expect("valid test settings")
        .settings
}

/// `pipedemo setup` for a test: fresh data, group at the end, one partition, tuned connector.
pub async fn setup(s: &Settings) {
    use pipedemo::setup::{run, SetupOptions};
    run(
        s,
        &SetupOptions {
            keep: false,
            from_earliest: false,
            partitions: 1,
            tuning: pipedemo::connect::Tuning::Tuned,
        },
    )
    .await
    .expect("setup");
}

/// The end offset of partition 0 of `topic` (where the next message will go).
pub async fn end_offset(s: &Settings, topic: &str) -> i64 {
    let (s, topic) = (s.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer;
        let c: rdkafka::consumer::BaseConsumer =
            pipedemo::kafka::client_config(&s.kafka).create().unwrap();
        c.fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap()
            .1
    })
    .await
    .unwrap()
}

/// Reads `n` messages of the dead-letter topic from `from`, returning their reasons; fails if
/// they do not come within 20 s each.
pub async fn dead_letter_reasons(s: &Settings, from: i64, n: usize) -> Vec<String> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let consumer: StreamConsumer = pipedemo::kafka::client_config(&s.kafka)
        .set("group.id", "pipedemo-test-dlq-reader")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&s.kafka.dlq_topic(), 0, rdkafka::Offset::Offset(from))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} dead letters: {reasons:#?}", reasons.len()))
            .unwrap();
        let h = m.headers().expect("dead letters carry headers");
        assert!(h.iter().any(|h| h.key == "pipedemo.original.offset"));
        assert!(m.payload().is_some(), "the original bytes are kept");
        let reason = h
            .iter()
            .find(|h| h.key == "pipedemo.error")
            .and_then(|h| h.value)
            .expect("reason header");
        reasons.push(String::from_utf8_lossy(reason).into_owned());
    }
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(
        extra.is_err(),
        "more dead letters than expected: {reasons:#?}"
    );
    reasons
}
