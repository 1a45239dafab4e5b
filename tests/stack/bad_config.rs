//! Bad configuration, as a user meets it: `pipedemo setup` must stop with one error line that
//! says what is wrong and how to fix it, exit non-zero, leak no password, and leave nothing
//! half-done. Wrong settings for each service, and services that answer but are set up wrong
//! for change data capture: a PostgreSQL without logical decoding and a Kafka Connect without
//! the Debezium plugin, each a real server started next to the stack by `scripts/stack.sh` in
//! its own directory on a free port. Needs `scripts/stack.sh up` for the other services.

use crate::common;

use std::path::PathBuf;
use std::process::Output;

/// A service started by `scripts/stack.sh start` with extra settings; stopped when dropped.
struct SideService {
    service: &'static str,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl SideService {
    fn start(service: &'static str, name: &str, env: &[(&str, String)]) -> SideService {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("side-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut all = vec![("STACK_DIR".to_owned(), dir.display().to_string())];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let side = SideService {
            service,
            env: all,
            dir,
        };
        let out = common::stack_sh(&["start", service], &side.env);
        assert!(
            out.status.success(),
            "starting the side {service} failed (its output is above)"
        );
        side
    }
}

impl Drop for SideService {
    fn drop(&mut self) {
        let _ = common::stack_sh(&["stop", self.service], &self.env);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pipedemo setup` with names of its own, so that anything it created would be found.
fn setup(name: &str, extra: &[String]) -> Output {
    common::pipedemo(name)
        .arg("setup")
        .args(extra)
        .output()
        .expect("pipedemo runs")
}

/// The `error: …` line; there must be exactly one, and it must say all of `expected`. No
/// password of these tests may appear anywhere in the output. The exit code is 3 (a service
/// unusable), or 2 for a malformed setting or credentials the service refuses.
fn one_error_line(o: &Output, expected: &[&str]) -> String {
    let malformed = expected
        .iter()
        .any(|e| e.contains("not a valid") || e.contains("rejected the credentials"));
    assert_eq!(
        o.status.code(),
        Some(if malformed { 2 } else { 3 }),
        "setup must fail: {o:?}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    for e in expected {
        assert!(errors[0].contains(e), "{:?} should say {e:?}", errors[0]);
    }
    assert!(!stderr.contains("Setup complete"), "{stderr}");
    for secret in ["wrong-secret-42", "hunter2"] {
        assert!(!stderr.contains(secret), "a password leaked:\n{stderr}");
    }
    errors[0].to_owned()
}

/// Nothing of `name` exists: no MongoDB database, no Kafka topic, no connector.
async fn nothing_created(name: &str, connect_url: &str) {
    let s = common::settings(name, &[]);
    let client = mongodb::Client::with_uri_str(s.mongo.mongodb_uri.expose())
        .await
        .unwrap();
    let dbs = client.list_database_names().await.unwrap();
    assert!(
        !dbs.contains(&format!("pipedemo_test_{name}")),
        "a read-model database was created: {dbs:?}"
    );
    let topic = format!("pipedemo_test_{name}.public.event_outbox");
    assert_eq!(
        pipedemo::pipeline::kafka::partitions(&s.kafka, &topic)
            .await
            .unwrap(),
        None,
        "topic {topic} was created"
    );
    let status = reqwest::get(format!("{connect_url}/connectors/pipedemo-test-{name}"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "the connector was registered");
}

#[tokio::test]
async fn postgres_without_logical_decoding_is_refused_before_anything_is_created() {
    common::shared_stack();
    let port = free_port();
    let pg = SideService::start(
        "postgres",
        "walreplica",
        &[
            ("PG_PORT", port.to_string()),
            ("PG_WAL_LEVEL", "replica".to_owned()),
        ],
    );
    // The side server has the stack's database, not the world's.
    let o = setup(
        "walreplica",
        &[format!("--pg-port={port}"), "--pg-db=activity_db".into()],
    );
    let line = one_error_line(
        &o,
        &[
            "wal_level is `replica`",
            "Debezium needs `logical`",
            "wal_level = logical",
            "restart PostgreSQL",
        ],
    );
    assert!(!line.contains("pipedemo@") && !line.contains("password=pipedemo"));

    // The misconfigured server itself got no table and no replication slot.
    let s = common::settings(
        "walreplica",
        &[&format!("--pg-port={port}"), "--pg-db=activity_db"],
    );
    let c = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    let row = c
        .query_one(
            "SELECT to_regclass('public.event_outbox') IS NULL, \
             (SELECT count(*) FROM pg_replication_slots)",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "event_outbox was created");
    assert_eq!(row.get::<_, i64>(1), 0, "a replication slot was created");
    nothing_created("walreplica", "http://127.0.0.1:8083").await;
    drop(pg);
}

#[tokio::test]
async fn connect_without_the_debezium_plugin_is_refused_before_anything_is_created() {
    common::shared_stack();
    let port = free_port();
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("no-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let connect = SideService::start(
        "connect",
        "noplugin",
        &[
            ("CONNECT_PORT", port.to_string()),
            ("CONNECT_PLUGIN_PATH", empty.display().to_string()),
            ("CONNECT_GROUP_ID", "pipedemo-test-noplugin".to_owned()),
        ],
    );
    let url = format!("http://127.0.0.1:{port}");
    // The worker is up and answers; it just cannot run Debezium.
    let plugins = reqwest::get(format!("{url}/connector-plugins"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!plugins.contains("PostgresConnector"), "{plugins}");

    let o = setup("noplugin", &[format!("--connect-url={url}")]);
    one_error_line(
        &o,
        &[
            &format!("Kafka Connect at {url} has no Debezium PostgreSQL plugin"),
            "plugin.path",
            "restart Connect",
        ],
    );
    nothing_created("noplugin", &url).await;
    drop(connect);
    let _ = std::fs::remove_dir_all(empty);
}

#[tokio::test]
async fn a_wrong_setting_for_any_service_is_named_with_its_fix_and_nothing_is_created() {
    common::shared_stack();
    let cases: [(&str, &[&str]); 7] = [
        (
            "--pg-port=1",
            &[
                "PostgreSQL at 127.0.0.1:1 is unreachable",
                "scripts/stack.sh up",
            ],
        ),
        (
            "--pg-password=wrong-secret-42",
            &["rejected the credentials", "POSTGRES_PASSWORD"],
        ),
        (
            "--pg-db=no_such_db",
            &["database `no_such_db` does not exist"],
        ),
        (
            "--bootstrap-servers=127.0.0.1:1",
            &[
                "Kafka at 127.0.0.1:1 is unreachable",
                "KAFKA_BOOTSTRAP_SERVERS",
            ],
        ),
        (
            "--connect-url=http://127.0.0.1:1",
            &["Kafka Connect at http://127.0.0.1:1 is unreachable"],
        ),
        (
            "--mongodb-uri=mongodb://u:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=1000",
            &[
                "MongoDB at mongodb://u:***@127.0.0.1:1",
                "unreachable",
                "MONGODB_URI",
            ],
        ),
        (
            "--mongodb-uri=mongo:/broken",
            &[
                "not a valid MongoDB connection string",
                "mongodb://127.0.0.1:27017",
            ],
        ),
    ];
    for (arg, expected) in cases {
        one_error_line(&setup("badconfig", &[arg.to_owned()]), expected);
        nothing_created("badconfig", "http://127.0.0.1:8083").await;
    }
}
