//! Every kind of bad message in the outbox topic: each is dead-lettered with its reason and
//! counted, skipped on purpose, or accepted, and the pipeline goes on. Needs the stack up.

use crate::common;

use std::time::Duration;

use mongodb::bson::doc;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use pipedemo::check::verify;
use pipedemo::pipeline::consumer::ConsumerOptions;
use pipedemo::pipeline::kafka;
use pipedemo::run::load::{self, LoadOptions};
use pipedemo::run::session::PhaseOptions;

enum Expect {
    /// Dead-lettered with a reason containing this text.
    Dead(&'static str),
    /// Skipped on purpose (counted, not dead-lettered).
    Skipped,
    /// Written to the read models (users/_id).
    Applied(Uuid),
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn user_payload() -> Value {
    json!({"email": "ada@example.com", "username": "ada", "first_name": "Ada", "last_name": "Lovelace"})
}

fn row(event_type: &str, aggregate: Uuid, payload: Value, created_at: &str) -> Value {
    json!({
        "event_id": Uuid::new_v4().to_string(),
        "aggregate_id": aggregate.to_string(),
        "aggregate_type": "User",
        "event_type": event_type,
        "payload": payload,
        "status": "pending",
        "created_at": created_at,
    })
}

fn envelope(op: &str, after: Value) -> Vec<u8> {
    let ms = chrono::Utc::now().timestamp_millis();
    let (before, after) = if op == "d" {
        (after, Value::Null)
    } else {
        (Value::Null, after)
    };
    serde_json::to_vec(&json!({
        "before": before, "after": after, "source": {"ts_ms": ms}, "op": op, "ts_ms": ms,
    }))
    .unwrap()
}

/// A UserCreated envelope whose row says it was created at `created_at`.
fn user_created_at(created_at: &str) -> Vec<u8> {
    user_row(user_payload(), created_at)
}

/// A UserCreated envelope for user `id`, created at `created_at`.
fn user_of(id: Uuid, created_at: &str) -> Vec<u8> {
    envelope(
        "c",
        row(
            "UserCreated",
            id,
            Value::String(user_payload().to_string()),
            created_at,
        ),
    )
}

fn user_event(payload: Value) -> Vec<u8> {
    user_row(payload, &now())
}

fn user_row(payload: Value, created_at: &str) -> Vec<u8> {
    envelope(
        "c",
        row(
            "UserCreated",
            Uuid::new_v4(),
            Value::String(payload.to_string()),
            created_at,
        ),
    )
}

/// A hostile message: its name, key, value and headers, and the text its reason holds.
type Hostile = (&'static str, Vec<u8>, Vec<u8>, OwnedHeaders, &'static str);

/// A case: its name, the message key and value to produce, and what must become of it.
type Case = (&'static str, Option<Vec<u8>>, Option<Vec<u8>>, Expect);

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    let mut ok = |name, key, value: Vec<u8>, e| v.push((name, key, Some(value), e));
    ok(
        "not JSON",
        None,
        b"hello, world".to_vec(),
        Expect::Dead("not JSON"),
    );
    ok(
        "JSON but not an envelope",
        None,
        br#"{"hello":"world"}"#.to_vec(),
        Expect::Dead("no `op`"),
    );
    ok(
        "non-UTF-8 bytes",
        None,
        vec![0xff, 0xfe, 0x00, 0x41],
        Expect::Dead("not UTF-8"),
    );
    let id = Uuid::new_v4();
    let wrapped = json!({"schema": {"type": "struct"}, "payload": serde_json::from_slice::<Value>(
        &envelope("c", row("UserCreated", id, Value::String(user_payload().to_string()), &now()))).unwrap()});
    ok(
        "schema-wrapped envelope",
        None,
        serde_json::to_vec(&wrapped).unwrap(),
        Expect::Applied(id),
    );
    ok(
        "snapshot read (op r)",
        None,
        envelope(
            "r",
            row(
                "UserCreated",
                Uuid::new_v4(),
                Value::String(user_payload().to_string()),
                &now(),
            ),
        ),
        Expect::Skipped,
    );
    ok(
        "update (op u)",
        None,
        envelope(
            "u",
            row(
                "UserCreated",
                Uuid::new_v4(),
                Value::String(user_payload().to_string()),
                &now(),
            ),
        ),
        Expect::Skipped,
    );
    ok(
        "delete (op d)",
        None,
        envelope(
            "d",
            row(
                "UserCreated",
                Uuid::new_v4(),
                Value::String(user_payload().to_string()),
                &now(),
            ),
        ),
        Expect::Skipped,
    );
    ok(
        "unknown event_type",
        None,
        envelope(
            "c",
            row(
                "UserDeleted",
                Uuid::new_v4(),
                Value::String("{}".into()),
                &now(),
            ),
        ),
        Expect::Dead("unknown event_type `UserDeleted`"),
    );
    ok(
        "missing payload",
        None,
        envelope("c", row("UserCreated", Uuid::new_v4(), Value::Null, &now())),
        Expect::Dead("has no `payload`"),
    );
    ok(
        "payload not an object",
        None,
        envelope(
            "c",
            row(
                "UserCreated",
                Uuid::new_v4(),
                Value::String("[1,2]".into()),
                &now(),
            ),
        ),
        Expect::Dead("expected a JSON object"),
    );
    let id = Uuid::new_v4();
    ok(
        "payload as an object, not a string",
        None,
        envelope("c", row("UserCreated", id, user_payload(), &now())),
        Expect::Applied(id),
    );
    let mut bad_uuid = row(
        "UserCreated",
        Uuid::new_v4(),
        Value::String(user_payload().to_string()),
        &now(),
    );
    bad_uuid["event_id"] = json!("not-a-uuid");
    ok(
        "bad UUID",
        None,
        envelope("c", bad_uuid),
        Expect::Dead("is not a UUID"),
    );
    ok(
        "UserCreated without email",
        None,
        user_event(json!({"username": "x", "first_name": "a", "last_name": "b"})),
        Expect::Dead("missing field `email`"),
    );
    ok("ActivityCreated without title", None, envelope("c", row("ActivityCreated", Uuid::new_v4(), Value::String(json!({"creator_user_id": Uuid::new_v4().to_string(), "max_participants": 5, "start_date": "2027-01-01T00:00:00Z"}).to_string()), &now())), Expect::Dead("missing field `title`"));
    ok(
        "ParticipantJoined without user_id",
        None,
        envelope(
            "c",
            row(
                "ParticipantJoined",
                Uuid::new_v4(),
                Value::String("{}".into()),
                &now(),
            ),
        ),
        Expect::Dead("missing field `user_id`"),
    );
    ok("wrong type (string for int)", None, envelope("c", row("ActivityCreated", Uuid::new_v4(), Value::String(json!({"title": "t", "creator_user_id": Uuid::new_v4().to_string(), "max_participants": "ten", "start_date": "2027-01-01T00:00:00Z"}).to_string()), &now())), Expect::Dead("invalid type: string \"ten\""));
    let big = json!({"email": "a@b.c", "username": "x", "first_name": "a", "last_name": "b", "bio": "x".repeat(900_000)});
    ok(
        "oversize payload (900 KB)",
        None,
        user_event(big),
        Expect::Dead("more than the 262144"),
    );
    ok(
        "join for an activity never seen",
        None,
        envelope(
            "c",
            row(
                "ParticipantJoined",
                Uuid::new_v4(),
                Value::String(json!({"user_id": Uuid::new_v4().to_string()}).to_string()),
                &now(),
            ),
        ),
        Expect::Dead("not found after"),
    );
    let id = Uuid::new_v4();
    let dup = user_of(id, &now());
    ok(
        "duplicate event_id (first)",
        None,
        dup.clone(),
        Expect::Applied(id),
    );
    ok("duplicate event_id (again)", None, dup, Expect::Applied(id));
    let r = row(
        "UserCreated",
        Uuid::new_v4(),
        Value::String(user_payload().to_string()),
        &now(),
    );
    let key = serde_json::to_vec(&json!({"aggregate_id": Uuid::new_v4().to_string()})).unwrap();
    ok(
        "key disagrees with the row",
        Some(key),
        envelope("c", r),
        Expect::Dead("disagrees with the row's aggregate_id"),
    );
    ok(
        "created_at unparsable",
        None,
        user_created_at("yesterday"),
        Expect::Dead("not an ISO-8601 timestamp"),
    );
    ok(
        "created_at in the future",
        None,
        user_created_at("2999-01-01T00:00:00Z"),
        Expect::Dead("in the future"),
    );
    // Times that cannot be real: applied (nothing is lost), but kept out of the latency
    // figures and counted as implausible.
    for (name, ts) in [
        ("Debezium time at i64::MAX", json!(i64::MAX)),
        ("Debezium time negative", json!(-5_000_000_i64)),
    ] {
        let id = Uuid::new_v4();
        let mut e: Value = serde_json::from_slice(&user_of(id, &now())).unwrap();
        e["ts_us"] = ts.clone();
        e["ts_ms"] = json!(ts.as_i64().unwrap() / 1000);
        v.push((
            name,
            None,
            Some(serde_json::to_vec(&e).unwrap()),
            Expect::Applied(id),
        ));
    }
    let id = Uuid::new_v4();
    v.push((
        "created_at in year 1",
        None,
        Some(user_of(id, "0001-01-01T00:00:00Z")),
        Expect::Applied(id),
    ));
    v.push(("tombstone (null value)", None, None, Expect::Skipped));
    v
}

/// How many implausible-time events in the metrics file were applied, and the largest
/// end-to-end latency that made it into a histogram.
fn implausible_in(metrics: &std::path::Path) -> (u64, f64) {
    let (events, _) = pipedemo::telemetry::metrics::read_file(metrics).unwrap();
    let mut stats = pipedemo::telemetry::stats::RunStats::default();
    for e in &events {
        stats.record(e);
    }
    let total = stats.stages.get(pipedemo::telemetry::stats::Stage::Total);
    (stats.implausible, total.quantile_ms(1.0))
}

#[tokio::test]
async fn every_bad_message_is_dead_lettered_skipped_or_accepted_and_the_run_goes_on() {
    common::shared_stack();
    let s = common::settings("badinput", &[]);
    common::setup(&s).await;
    let dlq_start = common::end_offset(&s, &s.kafka.dlq_topic()).await;

    let cases = cases();
    assert!(cases.len() >= 20, "at least 20 kinds");
    let producer: FutureProducer = kafka::client_config(&s.kafka)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let topic = s.kafka.topic();
    // Hostile ones, with headers: whatever they hold, each is dead-lettered (a copy cut to
    // fit, or a reference) and the events behind them go through.
    let huge_key = serde_json::to_vec(&json!({"event_id": "k".repeat(1_000_000)})).unwrap();
    let big_header = vec![b'h'; 600_000];
    let hostile: Vec<Hostile> = vec![
        (
            "1 MB key",
            huge_key,
            user_event(user_payload()),
            OwnedHeaders::new(),
            "disagrees with the row's event_id",
        ),
        (
            "600 KB header and a header name that is not UTF-8",
            b"{}".to_vec(),
            b"garbage".to_vec(),
            common::with_raw_header(
                OwnedHeaders::new().insert(Header {
                    key: "big",
                    value: Some(&big_header),
                }),
                &[0xff, 0xfe],
                b"v",
            ),
            "not JSON",
        ),
    ];
    for (name, key, value, headers, _) in &hostile {
        let rec = FutureRecord::<[u8], [u8]>::to(&topic)
            .key(key)
            .payload(value)
            .headers(headers.clone());
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    for (name, key, value, _) in &cases {
        let mut rec = FutureRecord::<[u8], [u8]>::to(&topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }

    let opts = LoadOptions {
        phase: PhaseOptions {
            seed: Some(3),
            ..PhaseOptions::unpaced(100)
        },
        consumer: ConsumerOptions {
            missing_activity_wait: Duration::from_secs(2),
            ..ConsumerOptions::default()
        },
        run: Default::default(),
    };
    let r = load::run(&s, &opts, CancellationToken::new())
        .await
        .expect("the run goes on");
    assert!(r.missing.is_empty(), "the good events still arrive");
    let dead: Vec<&str> = cases
        .iter()
        .filter_map(|c| match c.3 {
            Expect::Dead(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        r.stats.errors,
        (dead.len() + hostile.len()) as u64,
        "each bad message counted once"
    );

    // Each is in the dead-letter topic with its reason and original bytes, and no other.
    let letters = common::dead_letters(&s, dlq_start, dead.len() + hostile.len()).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    for (name, _, _, _, text) in &hostile {
        assert!(
            reasons.iter().any(|r| r.contains(text)),
            "{name}: no reason containing {text:?} in {reasons:#?}"
        );
    }
    for l in &letters {
        assert!(l.reason.len() <= 1100, "a reason echoes at most 1 KB");
        assert!(
            l.bytes < 1_000_000,
            "every dead letter fits: {} bytes",
            l.bytes
        );
    }
    assert_eq!(
        letters.iter().filter(|l| l.form == "reference").count(),
        1,
        "the 1 MB key is kept by reference: {letters:#?}"
    );
    for (name, _, _, e) in &cases {
        if let Expect::Dead(text) = e {
            assert!(
                reasons.iter().any(|r| r.contains(text)),
                "{name}: no reason containing {text:?} in {reasons:#?}"
            );
        }
    }

    // Accepted ones are in the read model, the duplicate once.
    let client = mongodb::Client::with_uri_str(s.mongo.mongodb_uri.expose())
        .await
        .unwrap();
    let users = client
        .database(&s.mongo.mongodb_database)
        .collection::<mongodb::bson::Document>("users");
    for (name, _, _, e) in &cases {
        if let Expect::Applied(id) = e {
            let n = users
                .count_documents(doc! { "_id": id.to_string() })
                .await
                .unwrap();
            assert_eq!(n, 1, "{name}");
        }
    }
    let v = verify::run(&s, false).await.unwrap();
    assert!(v.passed, "{v:#?}");
    assert_eq!(v.found_events, 100);
    let (implausible, max_ms) = implausible_in(&s.output.metrics_file);
    assert_eq!(implausible, 3, "the three events with impossible times");
    assert!(
        max_ms < 60_000.0,
        "an impossible time reached the histograms: max {max_ms} ms"
    );
}
