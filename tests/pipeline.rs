//! The pipeline end to end against the real stack: setup → load → verify, and replay (bad
//! messages: tests/bad_input.rs; bad settings: tests/bad_config.rs). Needs `scripts/stack.sh up` (or docker compose).

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use pipedemo::check::verify;
use pipedemo::commands::replay;
use pipedemo::pipeline::consumer::ConsumerOptions;
use pipedemo::pipeline::store::ReadModels;
use pipedemo::run::load::{self, LoadOptions};
use pipedemo::run::session::PhaseOptions;
use pipedemo::telemetry::stats::Stage;

fn load_opts(events: u64) -> LoadOptions {
    LoadOptions {
        phase: PhaseOptions {
            seed: Some(events),
            ..PhaseOptions::unpaced(events)
        },
        consumer: ConsumerOptions::default(),
    }
}

#[tokio::test]
async fn load_1000_verifies_and_replaying_the_topic_changes_nothing_or_rebuilds_lost_read_models() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let s = common::settings("pipeline", &[]);
    common::setup(&s).await;

    let r = load::run(&s, &load_opts(1000), CancellationToken::new())
        .await
        .expect("load");
    assert!(r.missing.is_empty(), "missing: {:?}", r.missing);
    assert_eq!(r.stats.applied_total(), 1000);
    assert_eq!(r.stats.errors, 0);
    assert_eq!(r.stats.stages.get(Stage::Total).count(), 1000);

    let before = verify::run(&s, true).await.expect("verify");
    assert!(before.passed, "{before:#?}");
    assert_eq!((before.total_events, before.found_events), (1000, 1000));
    assert_eq!(before.by_type["UserCreated"].found, 500);
    assert_eq!(before.by_type["ActivityCreated"].found, 300);
    assert_eq!(before.by_type["ParticipantJoined"].found, 200);
    assert!(before.integrity_passed);
    assert_eq!(before.latency[&Stage::Total].count, 1000);
    assert!(before.latency[&Stage::Total].p50_ms > 0.0);

    // setup cleared the topic, so its start is this run: replay all of it.
    let r = replay::run(&s, Duration::from_secs(120), CancellationToken::new())
        .await
        .expect("replay");
    assert!(r.complete, "{r:?}");
    assert_eq!(r.messages, 1000, "{r:?}");
    assert_eq!((r.applied, r.already_applied), (0, 1000), "{r:?}");

    let after = verify::run(&s, true).await.expect("verify after replay");
    assert!(after.passed, "{after:#?}");
    assert!(after.duplicated_ids.is_empty());
    assert_eq!(
        before.checksum, after.checksum,
        "replay changed the read models"
    );

    // Read models lost: the topic alone rebuilds them, identical.
    ReadModels::connect(&s.mongo)
        .await
        .unwrap()
        .drop_all()
        .await
        .unwrap();
    let r = replay::run(&s, Duration::from_secs(120), CancellationToken::new())
        .await
        .expect("rebuild");
    assert_eq!((r.applied, r.already_applied), (1000, 0), "{r:?}");
    let rebuilt = verify::run(&s, true).await.expect("verify after rebuild");
    assert!(rebuilt.passed, "{rebuilt:#?}");
    assert_eq!(
        before.checksum, rebuilt.checksum,
        "rebuilt read models differ"
    );
    // The rebuilt database is pipedemo's: the next setup clears it without --force.
    let store = ReadModels::connect(&s.mongo).await.unwrap();
    assert_eq!(store.ownership().await.unwrap(), (true, true));
    common::setup(&s).await;
}
