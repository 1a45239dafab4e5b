//! The pipeline end to end against the real stack: setup → load → verify, replay, and clear
//! errors for wrong settings (bad messages: tests/bad_input.rs). Needs `scripts/stack.sh up` (or docker compose).

mod common;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use pipedemo::consumer::{ConsumerOptions, Pipeline};
use pipedemo::kafka::{self, ResetTo};
use pipedemo::load::{self, LoadOptions, PhaseOptions};
use pipedemo::metrics::{self, MetricEvent};
use pipedemo::setup;
use pipedemo::verify;

fn load_opts(events: u64) -> LoadOptions {
    LoadOptions {
        phase: PhaseOptions {
            events,
            batch_size: 100,
            rate: None,
            batch_delay: Duration::ZERO,
            timeout: Duration::from_secs(120),
            seed: Some(events),
        },
        consumer: ConsumerOptions::default(),
    }
}

#[tokio::test]
async fn load_1000_verifies_and_replaying_the_topic_changes_nothing() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let s = common::settings("pipeline", &[]);
    common::setup(&s).await;
    let started_ms = pipedemo::clock::now_us() / 1000;

    let r = load::run(&s, &load_opts(1000), CancellationToken::new())
        .await
        .expect("load");
    assert!(r.missing.is_empty(), "missing: {:?}", r.missing);
    assert_eq!(r.stats.applied_total(), 1000);
    assert_eq!(r.stats.errors, 0);
    assert_eq!(r.stats.stages.total.count(), 1000);

    let before = verify::run(&s, true).await.expect("verify");
    assert!(before.passed, "{before:#?}");
    assert_eq!((before.total_events, before.found_events), (1000, 1000));
    assert_eq!(before.by_type["UserCreated"].found, 500);
    assert_eq!(before.by_type["ActivityCreated"].found, 300);
    assert_eq!(before.by_type["ParticipantJoined"].found, 200);
    assert_eq!(before.integrity_check, "PASS");
    assert_eq!(before.latency["total"].count, 1000);
    assert!(before.latency["total"].p50_ms > 0.0);

    // Replay this run's part of the topic (earlier runs' events belong to other read models).
    kafka::reset_group(&s.kafka, &s.kafka.topic(), ResetTo::Timestamp(started_ms))
        .await
        .unwrap();
    let (tx, mut rx) = metrics::channel();
    let (pipeline, _) = Pipeline::new(&s, ConsumerOptions::default(), tx)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(stop.clone()));
    let mut replayed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while replayed < 1000 && Instant::now() < deadline {
        if let Ok(Some(MetricEvent::Event(e))) =
            tokio::time::timeout(Duration::from_secs(5), rx.recv()).await
        {
            assert!(!e.applied, "replay wrote event {} again", e.event_id);
            replayed += 1;
        }
    }
    stop.cancel();
    let totals = task.await.unwrap().unwrap();
    assert!(replayed >= 1000, "replayed {replayed}, totals {totals:?}");

    let after = verify::run(&s, true).await.expect("verify after replay");
    assert!(after.passed, "{after:#?}");
    assert!(after.duplicated_ids.is_empty());
    assert_eq!(
        before.checksum, after.checksum,
        "replay changed the read models"
    );
}

#[tokio::test]
async fn setup_says_what_is_wrong_with_each_service() {
    common::require_stack();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["--pg-port=1"],
            &[
                "PostgreSQL at 127.0.0.1:1 is unreachable",
                "scripts/stack.sh up",
            ],
        ),
        (
            &["--pg-password=wrong-secret-42"],
            &["rejected the credentials", "POSTGRES_PASSWORD"],
        ),
        (
            &["--pg-db=no_such_db"],
            &["database `no_such_db` does not exist"],
        ),
        (
            &["--bootstrap-servers=127.0.0.1:1"],
            &["Kafka at 127.0.0.1:1 is unreachable"],
        ),
        (
            &["--connect-url=http://127.0.0.1:1"],
            &["Kafka Connect at http://127.0.0.1:1 is unreachable"],
        ),
        (
            &["--mongodb-uri=mongodb://u:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=1000"],
            &["MongoDB at mongodb://u:***@127.0.0.1:1", "unreachable"],
        ),
    ];
    for (args, expected) in cases {
        let s = common::settings("badconfig", args);
        let err = format!(
            "{:#}",
            setup::check_services(&s).await.expect_err("must fail")
        );
        for e in expected {
            assert!(err.contains(e), "{args:?}: {err:?} should contain {e:?}");
        }
        assert!(
            !err.contains("wrong-secret-42") && !err.contains("hunter2"),
            "password leaked: {err}"
        );
    }
    let s = common::settings("badconfig", &["--mongodb-uri=mongo:/broken"]);
    let err = format!("{:#}", setup::check_services(&s).await.unwrap_err());
    assert!(
        err.contains("not a valid MongoDB connection string"),
        "{err}"
    );
}
