//! The stack is real: Debezium captures PostgreSQL inserts into Kafka, and MongoDB stores and
//! returns documents. Needs `scripts/stack.sh up` (or docker compose).

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use serde_json::Value;
use uuid::Uuid;

use pipedemo::pipeline::{kafka, outbox};
use pipedemo::provision::connector::{connector_config, Connect, Tuning};

#[tokio::test]
async fn debezium_captures_outbox_inserts_into_kafka_and_mongodb_round_trips() {
    common::shared_stack();
    // A connector, slot and topic of the smoke test's own, so it is independent of `setup`;
    // fresh names each run, since Connect keeps a deleted connector's offsets under its name.
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (name, slot) = (format!("smoke-{run}"), format!("smoke_{run}"));
    let s = common::settings(
        "smoke",
        &[
            &format!("--connector-name={name}"),
            &format!("--replication-slot={slot}"),
            &format!("--topic-prefix=smoke{run}"),
        ],
    );
    let pg = outbox::connect(&s.pg).await.expect("PostgreSQL reachable");
    outbox::check_logical_decoding(&pg)
        .await
        .expect("wal_level=logical");
    outbox::create_table(&pg).await.unwrap();
    // Made by pipedemo's own code, so marked as pipedemo's: the next `setup` takes it over.
    pipedemo::provision::ownership::mark_table(&pg)
        .await
        .unwrap();

    let connect = Connect::new(&s.connect).unwrap();
    connect
        .check_plugin()
        .await
        .expect("Debezium plugin installed");
    connect
        .upsert(&connector_config(
            &s.pg,
            &s.kafka,
            &s.connect,
            Tuning::Tuned,
        ))
        .await
        .expect("connector accepted");
    let status = connect
        .wait_running(Duration::from_secs(60))
        .await
        .expect("connector RUNNING");
    assert!(status.running(), "{}", status.describe());

    // Read from the topic's current end so older rows do not matter.
    let topic = s.kafka.topic();
    kafka::ensure_topic(&s.kafka, &topic, 1).await.unwrap();
    kafka::reset_group(&s.kafka, &topic, kafka::ResetTo::End)
        .await
        .unwrap();
    let consumer: StreamConsumer = kafka::client_config(&s.kafka)
        .set("group.id", &s.kafka.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();

    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        pg.execute(
            "INSERT INTO event_outbox (event_id, aggregate_id, aggregate_type, event_type, payload) \
             VALUES ($1, $2, 'User', 'SmokeTest', $3)",
            &[id, &Uuid::new_v4(), &serde_json::json!({"n": 1})],
        )
        .await
        .unwrap();
    }

    let mut want: HashSet<String> = ids.iter().map(|u| u.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "rows not captured within 60 s: {want:?}");
        let m = tokio::time::timeout(left, consumer.recv())
            .await
            .expect("captured in time")
            .expect("Kafka message");
        let v: Value = serde_json::from_slice(m.payload().expect("a value")).unwrap();
        let Some(id) = v["after"]["event_id"].as_str() else {
            continue;
        };
        if !want.remove(id) {
            continue;
        }
        assert_eq!(v["op"], "c");
        assert!(v["ts_ms"].as_i64().unwrap() > 0);
        assert!(v["source"]["ts_ms"].as_i64().unwrap() > 0);
        assert!(v["ts_ms"].as_i64() >= v["source"]["ts_ms"].as_i64());
        assert_eq!(v["after"]["event_type"], "SmokeTest");
        // jsonb arrives as a JSON string.
        let payload: Value = serde_json::from_str(v["after"]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["n"], 1);
        assert!(m.timestamp().to_millis().unwrap() > 0);
    }

    let client = mongodb::Client::with_uri_str(s.mongo.mongodb_uri.expose())
        .await
        .unwrap();
    let coll = client
        .database(&s.mongo.mongodb_database)
        .collection::<mongodb::bson::Document>("smoke");
    let id = Uuid::new_v4().to_string();
    coll.insert_one(doc! { "_id": &id, "hello": "world" })
        .await
        .unwrap();
    let back = coll
        .find_one(doc! { "_id": &id })
        .await
        .unwrap()
        .expect("document read back");
    assert_eq!(back.get_str("hello").unwrap(), "world");
    client
        .database(&s.mongo.mongodb_database)
        .drop()
        .await
        .unwrap();

    // Leave no slot behind: an unused slot makes PostgreSQL keep WAL forever.
    reqwest::Client::new()
        .delete(format!("{}/connectors/{name}", s.connect.connect_url))
        .send()
        .await
        .unwrap();
    for _ in 0..50 {
        let r = pg
            .query_opt(
                "SELECT pg_drop_replication_slot($1) WHERE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[&slot],
            )
            .await;
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nor a group or topic of its own (setup did not make them, so cleanup would not).
    drop(consumer);
    for _ in 0..20 {
        if kafka::delete_group(&s.kafka).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    kafka::delete_topics(&s.kafka, std::slice::from_ref(&topic))
        .await
        .unwrap();
    pg.execute(
        "DELETE FROM event_outbox WHERE event_type = 'SmokeTest'",
        &[],
    )
    .await
    .unwrap();
}

#[test]
fn postgres_starts_from_a_checkout_in_a_private_directory_as_root() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        eprintln!("not root: PostgreSQL runs as the current user here, nothing to move");
        return;
    }
    // Like a checkout in root's home: a directory the postgres user cannot enter.
    let private = std::env::temp_dir().join(format!("pipedemo-private-{}", std::process::id()));
    let checkout = private.join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    std::process::Command::new("chmod")
        .args(["700"])
        .arg(&private)
        .status()
        .unwrap();
    let port = 25_000 + (std::process::id() % 1000) as u16;
    let env = [
        ("STACK_DIR", checkout.join(".stack").display().to_string()),
        ("PG_PORT", port.to_string()),
    ];
    let o = common::stack_in(&checkout, &["start", "postgres"], &env);
    let out = common::text(&o);
    let moved = out
        .lines()
        .find_map(|l| l.strip_prefix("[stack] PostgreSQL's data is in "))
        .and_then(|l| l.split(':').next())
        .map(str::to_owned);
    let ok = o.status.success();
    let psql = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "pipedemo",
            "-d",
            "activity_db",
        ])
        .args(["-tAc", "SELECT 1"])
        .env("PGPASSWORD", "pipedemo")
        .output()
        .unwrap();
    let stopped = common::stack_in(&checkout, &["stop", "postgres"], &env);
    if let Some(m) = &moved {
        let _ = std::fs::remove_dir_all(std::path::Path::new(m).parent().unwrap());
    }
    let _ = std::fs::remove_dir_all(&private);
    assert!(ok, "{out}");
    // Its output went to a pipe: no colour codes, from the script or what it ran (initdb).
    assert!(!out.contains('\x1b'), "escape codes in a pipe: {out:?}");
    let moved = moved.unwrap_or_else(|| panic!("no line saying where the data went:\n{out}"));
    assert!(moved.starts_with("/var/lib/pipedemo-stack/"), "{out}");
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "1",
        "{psql:?}"
    );
    assert!(stopped.status.success(), "{}", common::text(&stopped));
}
