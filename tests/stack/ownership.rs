//! pipedemo clears only what it created. Pointed at a read-model database, an outbox table or
//! a topic that someone else made, `setup` refuses, names it and leaves it exactly as it was;
//! `--force` takes it over. `cleanup` removes what setup and the runs after it made, files
//! included, and nothing else.

use crate::common;

use std::time::Duration;

use crate::common::{pipedemo, text};
use mongodb::bson::{doc, Document};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;

/// Every document of every collection of `db`, as raw BSON, in a stable order.
async fn mongo_bytes(s: &pipedemo::config::Settings, db: &str) -> Vec<(String, Vec<u8>)> {
    let client = mongodb::Client::with_uri_str(s.mongo.mongodb_uri.expose())
        .await
        .unwrap();
    let db = client.database(db);
    let mut names = db.list_collection_names().await.unwrap();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let docs: Vec<Document> = futures::TryStreamExt::try_collect(
            db.collection::<Document>(&n)
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        for d in docs {
            out.push((n.clone(), mongodb::bson::to_vec(&d).unwrap()));
        }
    }
    out
}

/// A topic someone else made, holding `n` messages.
async fn application_topic(s: &pipedemo::config::Settings, topic: &str, n: usize) {
    pipedemo::pipeline::kafka::ensure_topic(&s.kafka, topic, 1)
        .await
        .unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> =
        pipedemo::pipeline::kafka::client_config(&s.kafka)
            .create()
            .unwrap();
    for i in 0..n {
        let body = format!("order {i}");
        producer
            .send(BaseRecord::<str, str>::to(topic).key("k").payload(&body))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Exit 2, one `error:` line, naming `what` and `--force`.
fn refused(o: &std::process::Output, what: &str) {
    let out = text(o);
    assert_eq!(o.status.code(), Some(2), "setup must refuse: {out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one refusal expected:\n{out}");
    assert!(
        errors[0].contains(what) && errors[0].contains("--force"),
        "{:?} should name {what:?} and --force",
        errors[0]
    );
}

#[tokio::test]
async fn a_read_model_database_pipedemo_did_not_create_is_refused_until_forced() {
    common::shared_stack();
    let s = common::settings("foreigndb", &[]);
    let db = "pipedemo_test_foreign_app";
    let client = mongodb::Client::with_uri_str(s.mongo.mongodb_uri.expose())
        .await
        .unwrap();
    client.database(db).drop().await.unwrap();
    client
        .database(db)
        .collection::<Document>("orders")
        .insert_many([
            doc! { "_id": 1, "customer": "Ada", "total": 12.5 },
            doc! { "_id": 2, "customer": "Grace", "total": 99.0, "lines": [1, 2, 3] },
        ])
        .await
        .unwrap();
    let before = mongo_bytes(&s, db).await;

    let o = pipedemo("foreigndb")
        .arg("setup")
        .env("MONGODB_DATABASE", db)
        .output()
        .unwrap();
    refused(&o, &format!("MongoDB database `{db}`"));
    assert_eq!(
        mongo_bytes(&s, db).await,
        before,
        "the database was touched"
    );

    let o = pipedemo("foreigndb")
        .args(["setup", "--force"])
        .env("MONGODB_DATABASE", db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let clearing = text(&o)
        .lines()
        .find(|l| l.contains("Clearing:"))
        .map(str::to_owned);
    assert!(
        clearing
            .as_deref()
            .is_some_and(|l| l.contains(&format!("MongoDB database `{db}`"))),
        "setup says what it clears: {}",
        text(&o)
    );
    let names = client.database(db).list_collection_names().await.unwrap();
    assert!(
        !names.contains(&"orders".to_owned()),
        "not cleared: {names:?}"
    );
    assert!(
        names.contains(&"_pipedemo".to_owned()),
        "not marked: {names:?}"
    );
    // Marked now: a second setup clears it without --force.
    let o = pipedemo("foreigndb")
        .arg("setup")
        .env("MONGODB_DATABASE", db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    client.database(db).drop().await.unwrap();
}

#[tokio::test]
async fn an_outbox_table_pipedemo_did_not_create_is_refused_until_forced() {
    common::shared_stack();
    let s = common::settings("foreigntable", &[]);
    let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    // An application's own table of that name, with other columns.
    pg.batch_execute(
        "DROP TABLE IF EXISTS event_outbox;
         CREATE TABLE event_outbox (id int PRIMARY KEY, topic text, body jsonb);
         INSERT INTO event_outbox VALUES (1, 'orders', '{\"n\": 1}'), (2, 'billing', '{\"n\": 2}');",
    )
    .await
    .unwrap();
    let snapshot = || async {
        let row = pg
            .query_one(
                "SELECT (SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)
                           FROM information_schema.columns WHERE table_name = 'event_outbox'),
                        (SELECT md5(string_agg(t::text, ';' ORDER BY id)) FROM event_outbox t)",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0), row.get::<_, String>(1))
    };
    let before = snapshot().await;

    let o = pipedemo("foreigntable").arg("setup").output().unwrap();
    refused(&o, "table event_outbox (2 rows)");
    assert_eq!(snapshot().await, before, "the table was touched");

    let o = pipedemo("foreigntable")
        .args(["setup", "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mark: String = pg
        .query_one(
            "SELECT obj_description('event_outbox'::regclass, 'pg_class')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(mark, pipedemo::provision::ownership::TABLE_MARK);
    // The new table is captured: events go all the way through.
    let o = pipedemo("foreigntable")
        .args(["load", "--events", "300", "--no-tui"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// The record of sent events (`--outbox-delete`) is refused like the outbox when it is not
/// pipedemo's, and replaced only with `--force`.
#[tokio::test]
async fn a_sent_events_table_pipedemo_did_not_create_is_refused_until_forced() {
    common::shared_stack();
    let s = common::settings("foreignsent", &[]);
    let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    pg.batch_execute(
        "DROP TABLE IF EXISTS pipedemo_sent_events;
         CREATE TABLE pipedemo_sent_events (id int PRIMARY KEY, note text);
         INSERT INTO pipedemo_sent_events VALUES (1, 'mine');",
    )
    .await
    .unwrap();
    let o = pipedemo("foreignsent").arg("setup").output().unwrap();
    refused(&o, "table pipedemo_sent_events (1 rows)");
    let note: String = pg
        .query_one("SELECT note FROM pipedemo_sent_events WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "mine", "the table was touched");
    let o = pipedemo("foreignsent")
        .args(["setup", "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = pipedemo("foreignsent")
        .args([
            "load",
            "--events",
            "300",
            "--outbox-delete",
            "--no-tui",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let sent: i64 = pg
        .query_one("SELECT count(*) FROM pipedemo_sent_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 300);
}

#[tokio::test]
async fn a_topic_pipedemo_did_not_create_is_refused_until_forced() {
    common::shared_stack();
    let topic = format!("pipedemo_test_foreign_topic_{}", std::process::id());
    let s = common::settings("foreigntopic", &[&format!("--topic={topic}")]);
    application_topic(&s, &topic, 3).await;
    let contents = || {
        let (s, topic) = (s.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = pipedemo::pipeline::kafka::client_config(&s.kafka)
                .set("group.id", "pipedemo-test-foreign-reader")
                .create()
                .unwrap();
            let (low, high) = c
                .fetch_watermarks(&topic, 0, Duration::from_secs(10))
                .unwrap();
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(low))
                .unwrap();
            c.assign(&tpl).unwrap();
            let mut bodies = Vec::new();
            while (bodies.len() as i64) < high - low {
                if let Some(m) = c.poll(Duration::from_secs(10)) {
                    let m = m.unwrap();
                    bodies.push(m.payload().unwrap_or_default().to_vec());
                } else {
                    panic!("topic {topic} did not give back its messages");
                }
            }
            (low, high, bodies)
        })
    };
    let before = contents().await.unwrap();
    assert_eq!(before.1 - before.0, 3);

    let o = pipedemo("foreigntopic")
        .arg("setup")
        .env("KAFKA_TOPIC", &topic)
        .output()
        .unwrap();
    refused(&o, &format!("Kafka topic {topic} (3 messages)"));
    assert_eq!(contents().await.unwrap(), before, "the topic was touched");

    let o = pipedemo("foreigntopic")
        .args(["setup", "--force"])
        .env("KAFKA_TOPIC", &topic)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let marks = pipedemo::pipeline::kafka::watermarks(&s.kafka, &topic)
        .await
        .unwrap();
    assert!(
        marks.iter().all(|w| w.low == w.high),
        "not cleared: {marks:?}"
    );
    pipedemo::pipeline::kafka::delete_topics(&s.kafka, &[topic.clone(), format!("{topic}.dlq")])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_consumer_group_pipedemo_did_not_create_is_refused_and_never_deleted() {
    common::shared_stack();
    // An application's group, with its position (offset 7) on its own topic.
    let group = format!("pipedemo-test-orders-service-{}", std::process::id());
    let app_topic = format!("pipedemo_test_app_orders_{}", std::process::id());
    let s = common::settings("foreigngroup", &[]);
    application_topic(&s, &app_topic, 10).await;
    let app = |commit: Option<i64>| {
        let (s, group, topic) = (s.clone(), group.clone(), app_topic.clone());
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = pipedemo::pipeline::kafka::client_config(&s.kafka)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let mut tpl = rdkafka::TopicPartitionList::new();
            if let Some(o) = commit {
                tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(o))
                    .unwrap();
                c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
            }
            let mut q = rdkafka::TopicPartitionList::new();
            q.add_partition(&topic, 0);
            let got = c.committed_offsets(q, Duration::from_secs(10)).unwrap();
            got.find_partition(&topic, 0).unwrap().offset()
        })
    };
    assert_eq!(app(Some(7)).await.unwrap(), rdkafka::Offset::Offset(7));
    let world = [
        ("CONSUMER_GROUP", group.as_str()),
        ("TOPIC_PREFIX", "pipedemo_test_foreigngroup"),
        ("CONNECTOR_NAME", "pipedemo-test-foreigngroup"),
        ("REPLICATION_SLOT", "pipedemo_test_foreigngroup"),
    ];
    let o = pipedemo("foreigngroup")
        .arg("setup")
        .envs(world)
        .output()
        .unwrap();
    refused(&o, &format!("Kafka consumer group {group}"));
    assert!(text(&o).contains("CONSUMER_GROUP"), "{}", text(&o));
    assert_eq!(
        app(None).await.unwrap(),
        rdkafka::Offset::Offset(7),
        "setup moved the application's position"
    );
    let connector = pipedemo::provision::connector::Connect::new(
        &common::settings(
            "foreigngroup",
            &["--connector-name=pipedemo-test-foreigngroup"],
        )
        .connect,
    )
    .unwrap()
    .config()
    .await
    .unwrap();
    assert!(connector.is_none(), "a refused setup created a connector");

    let o = pipedemo("foreigngroup")
        .args(["cleanup", "--yes"])
        .envs(world)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "cleanup must refuse: {}",
        text(&o)
    );
    assert!(
        text(&o).contains(&format!("Kafka consumer group {group}")),
        "{}",
        text(&o)
    );
    assert_eq!(
        app(None).await.unwrap(),
        rdkafka::Offset::Offset(7),
        "cleanup deleted the application's group"
    );
    let mut k = s.kafka.clone();
    k.group = group.clone();
    pipedemo::pipeline::kafka::delete_group(&k).await.unwrap();
    pipedemo::pipeline::kafka::delete_topics(&s.kafka, &[app_topic])
        .await
        .unwrap();
}

#[tokio::test]
async fn cleanup_removes_what_pipedemo_made_and_leaves_the_rest() {
    common::shared_stack();
    let name = "cleanup";
    let world = [
        ("TOPIC_PREFIX", "pipedemo_test_cleanup"),
        ("CONNECTOR_NAME", "pipedemo-test-cleanup"),
        ("REPLICATION_SLOT", "pipedemo_test_cleanup"),
    ];
    let run = |args: &[&str]| pipedemo(name).args(args).envs(world).output().unwrap();
    let o = run(&["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["load", "--events", "100", "--no-tui"]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = std::env::temp_dir().join(format!("pipedemo-cleanup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("custom-report.json");
    let o = run(&["verify", "--report", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let metrics = common::metrics_file(name);
    let log = metrics.parent().unwrap().join("pipedemo.log");
    // The header pipedemo writes when it first diverts log lines there.
    std::fs::write(
        &log,
        format!("{}a log line\n", pipedemo::run_id::log_header()),
    )
    .unwrap();
    let bystander = dir.join("notes.txt");
    std::fs::write(&bystander, "mine").unwrap();
    assert!(report.is_file() && metrics.is_file());
    // A file outside the working directory that a registry row points at (anyone who can
    // write that table could add one), even one carrying a run id: it stays.
    let victim = dir.join("victim.json");
    std::fs::write(&victim, std::fs::read(&report).unwrap()).unwrap();
    let pg = pipedemo::pipeline::outbox::connect(&common::settings(name, &[]).pg)
        .await
        .unwrap();
    let run_id: String = {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        r["run_id"]
            .as_str()
            .expect("the report carries its run id")
            .to_owned()
    };
    pg.execute(
        "INSERT INTO pipedemo_owned (kind, name, scope) VALUES ('file', $1, $2)",
        &[
            &format!("{run_id} {}", victim.display()),
            &pipedemo::provision::ownership::host(),
        ],
    )
    .await
    .unwrap();

    // Another application's slot, which REPLICATION_SLOT now names by mistake: cleanup takes
    // the slot from the connector's own settings and leaves this one alone.
    let foreign_slot = "pipedemo_test_cleanup_foreign";
    pg.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&foreign_slot],
    )
    .await
    .unwrap();

    // The report is outside the working directory: named on the command line, it goes.
    let o = pipedemo(name)
        .args(["cleanup", "--yes", "--file", report.to_str().unwrap()])
        .envs(world)
        .env("REPLICATION_SLOT", foreign_slot)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("Removing what pipedemo created"), "{out}");

    let s = common::settings(
        name,
        &[
            "--topic-prefix=pipedemo_test_cleanup",
            "--connector-name=pipedemo-test-cleanup",
        ],
    );
    for f in [&report, &metrics, &log] {
        assert!(!f.exists(), "{} was not removed", f.display());
    }
    assert!(
        bystander.is_file(),
        "a file pipedemo did not write was removed"
    );
    assert!(
        victim.is_file(),
        "a file outside the working directory was removed on the word of a registry row"
    );
    let topic = s.kafka.topic();
    assert_eq!(
        pipedemo::pipeline::kafka::partitions(&s.kafka, &topic)
            .await
            .unwrap(),
        None,
        "topic {topic} is still there"
    );
    let connector = pipedemo::provision::connector::Connect::new(&s.connect)
        .unwrap()
        .config()
        .await
        .unwrap();
    assert!(connector.is_none(), "the connector is still registered");
    let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    let left: (bool, bool, bool) = {
        let r = pg
            .query_one(
                "SELECT to_regclass('event_outbox') IS NOT NULL OR to_regclass('pipedemo_sent_events') IS NOT NULL,
                        EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pipedemo_test_cleanup'),
                        EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'pipedemo_test_cleanup_pub')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        left,
        (false, false, false),
        "(table, slot, publication) left behind"
    );
    let foreign_left: bool = pg
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&foreign_slot],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        foreign_left,
        "cleanup dropped a slot its connector did not use"
    );
    pg.execute("SELECT pg_drop_replication_slot($1)", &[&foreign_slot])
        .await
        .unwrap();
    let store = pipedemo::pipeline::store::ReadModels::connect(&s.mongo)
        .await
        .unwrap();
    assert_eq!(store.ownership().await.unwrap(), (false, false));

    // Nothing of pipedemo's is left in this world: a second cleanup has nothing to do.
    let o = run(&["cleanup", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Nothing to remove"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);

    // What other worlds recorded in the same database is still theirs: the default world's
    // topic (with messages) is not refused, and the shared table comes back.
    let o = pipedemo(name).arg("setup").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
