//! The stack is real: Debezium captures PostgreSQL inserts into Kafka, and MongoDB stores and
//! returns documents. Needs `scripts/stack.sh up` (or docker compose).

mod common;

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
    common::require_stack();
    let _guard = common::serial().lock().await;
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
    pg.execute(
        "DELETE FROM event_outbox WHERE event_type = 'SmokeTest'",
        &[],
    )
    .await
    .unwrap();
}

#[test]
fn docker_compose_matches_the_native_stack() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&text).expect("docker-compose.yml is valid YAML");
    let services = &docs[0]["services"];
    for (svc, port) in [("postgres", "5432"), ("kafka", "9092"), ("mongo", "27017")] {
        let s = &services[svc];
        assert!(!s["image"].is_badvalue(), "{svc} has an image");
        assert!(
            !s["healthcheck"]["test"].is_badvalue(),
            "{svc} has a healthcheck"
        );
        let ports: Vec<&str> = s["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert!(
            ports.contains(&format!("127.0.0.1:{port}:{port}").as_str()),
            "{svc} publishes {port}: {ports:?}"
        );
    }
    // Connect shares PostgreSQL's network, so its REST port is published there, and it is
    // restarted with PostgreSQL, which would otherwise leave it without a network.
    assert_eq!(
        services["connect"]["network_mode"].as_str(),
        Some("service:postgres")
    );
    assert_eq!(
        services["connect"]["depends_on"]["postgres"]["restart"].as_bool(),
        Some(true)
    );
    // The names the images read: the Debezium Connect entrypoint maps ADVERTISED_HOST_NAME and
    // CONNECT_-prefixed settings; the unprefixed storage replication factors are ignored.
    let connect_env = services["connect"]["environment"].as_hash().unwrap();
    let names: Vec<&str> = connect_env.keys().filter_map(|k| k.as_str()).collect();
    assert!(names.contains(&"ADVERTISED_HOST_NAME"), "{names:?}");
    assert!(
        !names.contains(&"CONNECT_REST_ADVERTISED_HOST_NAME"),
        "{names:?}"
    );
    for store in ["CONFIG", "OFFSET", "STATUS"] {
        assert!(
            names.contains(&format!("CONNECT_{store}_STORAGE_REPLICATION_FACTOR").as_str()),
            "{names:?}"
        );
        assert!(
            !names.contains(&format!("{store}_STORAGE_REPLICATION_FACTOR").as_str()),
            "{names:?}"
        );
    }
    // Every stateful service keeps its data on a named volume.
    let volumes = docs[0]["volumes"].as_hash().unwrap();
    for (svc, dir) in [
        ("postgres", "/var/lib/postgresql/data"),
        ("kafka", "/var/lib/kafka/data"),
        ("mongo", "/data/db"),
    ] {
        let mounts: Vec<&str> = services[svc]["volumes"]
            .as_vec()
            .unwrap_or_else(|| panic!("{svc} has no volume"))
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let mount = mounts
            .iter()
            .find(|m| m.ends_with(&format!(":{dir}")))
            .unwrap_or_else(|| panic!("{svc} keeps {dir} on a volume: {mounts:?}"));
        let name = mount.split(':').next().unwrap();
        assert!(
            volumes.contains_key(&yaml_rust2::Yaml::String(name.into())),
            "volume {name} is declared"
        );
    }
    assert_eq!(
        services["kafka"]["environment"]["KAFKA_LOG_DIRS"].as_str(),
        Some("/var/lib/kafka/data")
    );
    assert!(!services["connect"]["healthcheck"]["test"].is_badvalue());
    let pg_ports = services["postgres"]["ports"].as_vec().unwrap();
    assert!(pg_ports
        .iter()
        .any(|p| p.as_str() == Some("127.0.0.1:8083:8083")));
    assert_eq!(
        services["postgres"]["environment"]["POSTGRES_DB"].as_str(),
        Some("activity_db")
    );
    let cmd: Vec<&str> = services["postgres"]["command"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(cmd.contains(&"wal_level=logical"));
    // The same versions as scripts/stack.sh.
    let stack =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh")).unwrap();
    let kafka_image = services["kafka"]["image"].as_str().unwrap();
    let connect_image = services["connect"]["image"].as_str().unwrap();
    let kv = kafka_image.rsplit(':').next().unwrap();
    let dv = connect_image.rsplit(':').next().unwrap();
    assert!(
        stack.contains(&format!("KAFKA_VERSION={kv}")),
        "stack.sh pins Kafka {kv}"
    );
    assert!(
        stack.contains(&format!("DEBEZIUM_VERSION={dv}")),
        "stack.sh pins Debezium {dv}"
    );
}

/// `scripts/stack.sh` of this checkout, copied to `dir` (as a checkout elsewhere would have
/// it), run there with `env`.
fn stack_in(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let scripts = dir.join("scripts");
    if !scripts.exists() {
        let ok = std::process::Command::new("cp")
            .args(["-r", concat!(env!("CARGO_MANIFEST_DIR"), "/scripts")])
            .arg(&scripts)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying scripts/");
    }
    std::process::Command::new(scripts.join("stack.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn a_pid_file_naming_another_program_is_never_trusted() {
    let dir = std::env::temp_dir().join(format!("pipedemo-pidfile-{}", std::process::id()));
    std::fs::create_dir_all(dir.join(".stack/run")).unwrap();
    // A stale pid file whose pid now belongs to some other program.
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(dir.join(".stack/run/mongo.pid"), other.id().to_string()).unwrap();
    let env = [
        ("STACK_DIR", dir.join(".stack").display().to_string()),
        ("MONGO_PORT", "1".to_string()),
    ];
    let o = stack_in(&dir, &["status"], &env);
    let out = common::text(&o);
    let mongo = out
        .lines()
        .find(|l| l.starts_with("mongo"))
        .unwrap_or_default();
    assert!(mongo.contains("down"), "{out}");
    let o = stack_in(&dir, &["stop", "mongo"], &env);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(
        other.try_wait().unwrap().is_none(),
        "stack.sh stopped a process that was not the stack's"
    );
    other.kill().unwrap();
    let _ = other.wait();
    let _ = std::fs::remove_dir_all(dir);
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
    let o = stack_in(&checkout, &["start", "postgres"], &env);
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
    let stopped = stack_in(&checkout, &["stop", "postgres"], &env);
    if let Some(m) = &moved {
        let _ = std::fs::remove_dir_all(std::path::Path::new(m).parent().unwrap());
    }
    let _ = std::fs::remove_dir_all(&private);
    assert!(ok, "{out}");
    let moved = moved.unwrap_or_else(|| panic!("no line saying where the data went:\n{out}"));
    assert!(moved.starts_with("/var/lib/pipedemo-stack/"), "{out}");
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "1",
        "{psql:?}"
    );
    assert!(stopped.status.success(), "{}", common::text(&stopped));
}
