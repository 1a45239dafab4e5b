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
