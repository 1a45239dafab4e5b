//! The pipeline end to end against the real stack: setup → load → verify, and replay (bad
//! messages: tests/bad_input.rs; bad settings: tests/bad_config.rs). Needs `scripts/stack.sh up` (or docker compose).

use crate::common;

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
        run: Default::default(),
    }
}

#[tokio::test]
async fn load_1000_verifies_and_replaying_the_topic_changes_nothing_or_rebuilds_lost_read_models() {
    common::shared_stack();
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

#[tokio::test]
async fn one_row_per_transaction_on_eight_connections_keeps_joins_after_what_they_refer_to() {
    use pipedemo::pipeline::writer::{Shape, WriteModel};
    common::shared_stack();
    let s = common::settings("writemodel", &[]);
    common::setup(&s).await;
    // Unpaced, so that the eight connections race each other as hard as they can.
    let mut opts = load_opts(2000);
    opts.phase.write = WriteModel {
        shape: Shape::Rows(1),
        connections: 8,
        retention: pipedemo::pipeline::outbox::Retention::Keep,
    };
    let r = load::run(&s, &opts, CancellationToken::new())
        .await
        .expect("load");
    assert!(r.missing.is_empty(), "missing: {:?}", r.missing);
    assert_eq!(r.transactions, 2000, "one row per transaction");
    assert_eq!(r.stats.errors, 0, "nothing dead-lettered");
    let summary = r.summary();
    assert_eq!(summary.write_model, "1 row per transaction, 8 connections");
    assert!(summary.transactions_per_sec > 0.0);

    // Every join's row was created after its activity's and its user's commits.
    let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    let early: i64 = pg
        .query_one(
            "SELECT count(*) FROM event_outbox j
             JOIN event_outbox a ON a.event_type = 'ActivityCreated' AND a.aggregate_id = j.aggregate_id
             JOIN event_outbox u ON u.event_type = 'UserCreated'
                                AND u.aggregate_id = (j.payload->>'user_id')::uuid
             WHERE j.event_type = 'ParticipantJoined'
               AND (j.created_at <= a.created_at OR j.created_at <= u.created_at)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(early, 0, "joins created before what they refer to");
    // Each row is a transaction of its own (its xmin).
    let transactions: i64 = pg
        .query_one("SELECT count(DISTINCT xmin::text) FROM event_outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(transactions, 2000, "one transaction per row");

    let v = verify::run(&s, false).await.expect("verify");
    assert!(v.passed && v.integrity_passed, "{v:#?}");
    assert_eq!((v.total_events, v.found_events), (2000, 2000));
}

/// `--outbox-delete`: each row deleted in the transaction that inserted it. The outbox stays
/// empty, every event still arrives once (Debezium captured the inserts, its deletes are
/// skipped), and `verify` proves it from pipedemo's record of what was sent.
#[tokio::test]
async fn rows_deleted_in_their_transaction_still_arrive_and_verify() {
    use pipedemo::pipeline::outbox::Retention;
    common::shared_stack();
    let s = common::settings("outboxdelete", &[]);
    common::setup(&s).await;
    let mut opts = load_opts(3000);
    opts.phase.write.retention = Retention::Delete;
    opts.phase.rate = Some(1000.0);
    let r = load::run(&s, &opts, CancellationToken::new())
        .await
        .expect("load");
    assert!(r.missing.is_empty(), "missing: {:?}", r.missing);
    assert_eq!(r.stats.errors, 0, "nothing dead-lettered");
    assert_eq!(
        r.stats.skipped, 0,
        "the connector emits no deletes or tombstones"
    );
    assert!(
        r.summary()
            .write_model
            .ends_with("rows deleted in their transaction"),
        "{}",
        r.summary().write_model
    );
    let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    let count = |table: &'static str| {
        let pg = &pg;
        async move {
            pg.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("event_outbox").await, 0, "the outbox stays empty");
    assert_eq!(count("pipedemo_sent_events").await, 3000);
    let v = verify::run(&s, false).await.expect("verify");
    assert!(v.passed && v.integrity_passed, "{v:#?}");
    assert_eq!((v.total_events, v.found_events), (3000, 3000));
    assert!(v.duplicated_ids.is_empty());
}
