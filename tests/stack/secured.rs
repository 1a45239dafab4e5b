//! pipedemo through the secured stack (`STACK_SECURE=1 scripts/stack.sh up`): PostgreSQL with
//! TLS only (hostssl) and SCRAM passwords, Kafka with a SASL_SSL listener (SCRAM-SHA-512) and
//! nothing else, Kafka Connect's REST API over https with basic authentication, and the
//! MongoDB-protocol server with authentication and TLS. The settings come from
//! `STACK_SECURE=1 scripts/stack.sh env`, as a user's would. The test starts the secured stack
//! itself when it is not running (and stops it after).

use crate::common;

use std::process::{Command, Output};

use crate::common::text;
use pipedemo::config::Settings;

/// The secured stack's settings, `NAME=value` as `scripts/stack.sh env` prints them.
fn secure_env() -> Vec<(String, String)> {
    let o = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
        .arg("env")
        .env("STACK_SECURE", "1")
        .output()
        .expect("scripts/stack.sh runs");
    assert!(
        o.status.success(),
        "the secured stack is not installed: run `STACK_SECURE=1 scripts/stack.sh up` before \
         the tests ({})",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

fn get<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("stack.sh env has no {name}"))
}

/// The same settings as flags, for checks the test makes through pipedemo's library.
fn settings(name: &str, env: &[(String, String)]) -> Settings {
    let flags = [
        ("POSTGRES_DB", "--pg-db"),
        ("POSTGRES_PORT", "--pg-port"),
        ("POSTGRES_USER", "--pg-user"),
        ("POSTGRES_PASSWORD", "--pg-password"),
        ("POSTGRES_SSLMODE", "--pg-sslmode"),
        ("POSTGRES_SSLROOTCERT", "--pg-sslrootcert"),
        ("KAFKA_BOOTSTRAP_SERVERS", "--bootstrap-servers"),
        ("KAFKA_SECURITY_PROTOCOL", "--kafka-security-protocol"),
        ("KAFKA_SASL_MECHANISM", "--kafka-sasl-mechanism"),
        ("KAFKA_SASL_USERNAME", "--kafka-sasl-username"),
        ("KAFKA_SASL_PASSWORD", "--kafka-sasl-password"),
        ("KAFKA_SSL_CA_LOCATION", "--kafka-ssl-ca"),
        ("CONNECT_URL", "--connect-url"),
        ("CONNECT_CA_FILE", "--connect-ca-file"),
        ("CONNECT_USERNAME", "--connect-username"),
        ("CONNECT_PASSWORD", "--connect-password"),
        ("MONGODB_URI", "--mongodb-uri"),
    ];
    let args: Vec<String> = flags
        .iter()
        .map(|(var, flag)| format!("{flag}={}", get(env, var)))
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // The plain helpers: the world's database is the secured stack's own.
    crate::shared::settings(name, &refs)
}

/// The secured stack for the length of the test: started (installing what it needs) unless it
/// runs already, and then stopped again, so that it costs the other tests nothing.
struct SecureStack {
    started: bool,
}

impl SecureStack {
    fn up() -> Self {
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
            .arg("status")
            .env("STACK_SECURE", "1")
            .output()
            .expect("scripts/stack.sh runs");
        if status.status.success() {
            return SecureStack { started: false };
        }
        let up = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
            .arg("up")
            .env("STACK_SECURE", "1")
            .env("JVM_GC_OPTS", crate::world::TEST_JVM_OPTS)
            .stderr(std::process::Stdio::inherit())
            .status()
            .expect("scripts/stack.sh runs");
        assert!(
            up.success(),
            "`STACK_SECURE=1 scripts/stack.sh up` failed (see above)"
        );
        SecureStack { started: true }
    }
}

impl Drop for SecureStack {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
                .arg("down")
                .env("STACK_SECURE", "1")
                .status();
        }
    }
}

#[tokio::test]
async fn the_secured_stack() {
    common::shared_stack();
    let _stack = SecureStack::up();
    let env = secure_env();
    setup_load_verify_and_replay_run_encrypted_and_authenticated(&env).await;
    mutual_tls_reaches_kafka_with_a_client_certificate(&env).await;
    wrong_security_settings_fail_setup_in_one_line_without_secrets(&env).await;
}

/// The secured Kafka's second listener (port 19094) takes TLS clients with a certificate signed
/// by the stack's CA, and no others.
async fn mutual_tls_reaches_kafka_with_a_client_certificate(env: &[(String, String)]) {
    let tls = std::path::Path::new(get(env, "KAFKA_SSL_CA_LOCATION"))
        .parent()
        .unwrap()
        .to_owned();
    let mtls = |c: &mut Command| {
        c.env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19094")
            .env("KAFKA_SECURITY_PROTOCOL", "SSL")
            .env_remove("KAFKA_SASL_MECHANISM")
            .env_remove("KAFKA_SASL_USERNAME")
            .env_remove("KAFKA_SASL_PASSWORD");
    };
    // The consumer, the dead-letter producer and the lag probe, all over mutual TLS.
    let mut load = secured("secured", env);
    mtls(&mut load);
    let o = load
        .args(["load", "--events", "500", "--no-tui", "--json"])
        .env("KAFKA_SSL_CERTIFICATE_LOCATION", tls.join("client.pem"))
        .env("KAFKA_SSL_KEY_LOCATION", tls.join("client.key"))
        .output()
        .unwrap();
    assert!(o.status.success(), "load over mutual TLS: {}", text(&o));
    assert_eq!(json(&o)["delivered"], 500, "{}", text(&o));

    let mut setup = secured("secured", env);
    mtls(&mut setup);
    let o = setup.arg("setup").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let errors: Vec<String> = text(&o)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(errors.len(), 1, "{}", text(&o));
    assert!(
        errors[0].contains("Kafka at 127.0.0.1:19094")
            && errors[0].contains("KAFKA_SSL_CERTIFICATE_LOCATION"),
        "{errors:?}"
    );
}

/// `pipedemo` in test `name`'s world, with the secured stack's settings.
fn secured(name: &str, env: &[(String, String)]) -> Command {
    let mut c = crate::shared::pipedemo(name);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    c
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

async fn setup_load_verify_and_replay_run_encrypted_and_authenticated(env: &[(String, String)]) {
    let name = "secured";
    let o = secured(name, env)
        .args(["setup", "--connector-config", "heartbeat.interval.ms=7000"])
        .output()
        .unwrap();
    assert!(o.status.success(), "setup: {}", text(&o));
    assert!(
        text(&o).contains("heartbeat.interval.ms=7000"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("database.sslmode=verify-full")
            && text(&o).contains("database.password=***"),
        "setup prints the connector's settings, secrets redacted: {}",
        text(&o)
    );

    let o = secured(name, env)
        .args(["load", "--events", "10000", "--no-tui", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "load: {}", text(&o));
    let load = json(&o);
    assert_eq!(load["sent"], 10000, "{load}");
    assert_eq!(load["delivered"], 10000, "{load}");

    // The PostgreSQL settings as one URL instead.
    let url = format!(
        "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
        get(env, "POSTGRES_USER"),
        get(env, "POSTGRES_PASSWORD"),
        get(env, "POSTGRES_PORT"),
        get(env, "POSTGRES_DB"),
        get(env, "POSTGRES_SSLROOTCERT"),
    );
    let mut verify = secured(name, env);
    for var in [
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "POSTGRES_USER",
    ] {
        verify.env_remove(var);
    }
    let o = verify
        .args(["verify", "--json"])
        .env("POSTGRES_PASSWORD", "not-this-one")
        .env("POSTGRES_SSLMODE", "disable")
        .env("POSTGRES_URL", &url)
        .output()
        .unwrap();
    assert!(o.status.success(), "verify: {}", text(&o));
    assert_eq!(json(&o)["passed"], true);

    let o = secured(name, env)
        .args(["replay", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "replay: {}", text(&o));
    let replay = json(&o);
    assert_eq!(replay["complete"], true, "{replay}");
    assert_eq!(replay["applied"], 0, "a replay changes nothing: {replay}");
    assert!(
        replay["already_applied"].as_u64().unwrap() >= 10000,
        "{replay}"
    );
    let o = secured(name, env)
        .args(["verify", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "verify after the replay: {}", text(&o));

    let s = settings(name, env);
    let connector = pipedemo::provision::connector::Connect::new(&s.connect)
        .unwrap()
        .config()
        .await
        .unwrap()
        .expect("the connector is registered");
    assert_eq!(
        connector["heartbeat.interval.ms"], "7000",
        "--connector-config is merged"
    );
    assert_eq!(connector["database.sslmode"], "verify-full");

    // Debezium's replication stream and pipedemo's own session both run over TLS (the server
    // allows nothing else, and says so here).
    let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.unwrap();
    let own: bool = pg
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(own, "pipedemo's PostgreSQL session is not encrypted");
    let replication: Vec<bool> = pg
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r ON r.pid = s.pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !replication.is_empty() && replication.iter().all(|s| *s),
        "Debezium's replication connection is not encrypted: {replication:?}"
    );
}

/// Nothing of the `secfail` world exists: read-model database, topic, connector.
async fn nothing_created(env: &[(String, String)]) {
    let s = settings("secfail", env);
    let store = pipedemo::pipeline::store::ReadModels::connect(&s.mongo)
        .await
        .unwrap();
    assert_eq!(
        store.ownership().await.unwrap(),
        (false, false),
        "a database was made"
    );
    let topic = "pipedemo_sec_fail.public.event_outbox";
    let mut k = s.kafka.clone();
    k.topic = Some(topic.into());
    assert_eq!(
        pipedemo::pipeline::kafka::partitions(&k, topic)
            .await
            .unwrap(),
        None,
        "topic {topic} was created"
    );
    let mut c = s.connect.clone();
    c.connector_name = "pipedemo-sec-fail".into();
    let connector = pipedemo::provision::connector::Connect::new(&c)
        .unwrap()
        .config()
        .await
        .unwrap();
    assert!(connector.is_none(), "the connector was registered");
}

async fn wrong_security_settings_fail_setup_in_one_line_without_secrets(env: &[(String, String)]) {
    let wrong = "wrong-secret-77";
    let mongo_no_ca = get(env, "MONGODB_URI")
        .split("&tlsCAFile=")
        .next()
        .unwrap()
        .to_owned();
    let mongo_wrong =
        get(env, "MONGODB_URI").replacen("pipedemo:", &format!("pipedemo:{wrong}"), 1);
    // (what changes: Some(value) sets, None removes; what the one error line must say)
    type Changes<'a> = Vec<(&'a str, Option<String>)>;
    let cases: Vec<(Changes, &[&str])> = vec![
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", Some("PLAINTEXT".into())),
                ("KAFKA_SASL_MECHANISM", None),
                ("KAFKA_SASL_USERNAME", None),
                ("KAFKA_SASL_PASSWORD", None),
            ],
            &[
                "Kafka at 127.0.0.1:",
                "expects TLS",
                "KAFKA_SECURITY_PROTOCOL",
            ],
        ),
        (
            vec![("KAFKA_SASL_PASSWORD", Some(wrong.into()))],
            &[
                "Kafka at",
                "rejected the SASL credentials",
                "KAFKA_SASL_PASSWORD",
            ],
        ),
        (
            vec![("KAFKA_SSL_CA_LOCATION", None)],
            &[
                "Kafka's certificate",
                "not trusted",
                "KAFKA_SSL_CA_LOCATION",
            ],
        ),
        (
            vec![("CONNECT_PASSWORD", Some(wrong.into()))],
            &[
                "Kafka Connect at https://",
                "refused pipedemo",
                "CONNECT_PASSWORD",
            ],
        ),
        (
            vec![("CONNECT_CA_FILE", None)],
            &[
                "Kafka Connect's certificate",
                "not trusted",
                "CONNECT_CA_FILE",
            ],
        ),
        (
            vec![("POSTGRES_SSLMODE", Some("disable".into()))],
            &[
                "PostgreSQL",
                "accepts only encrypted connections",
                "POSTGRES_SSLMODE",
            ],
        ),
        (
            vec![("POSTGRES_SSLROOTCERT", None)],
            &[
                "PostgreSQL's certificate",
                "not trusted",
                "POSTGRES_SSLROOTCERT",
            ],
        ),
        (
            vec![("POSTGRES_PASSWORD", Some(wrong.into()))],
            &["PostgreSQL rejected the credentials", "POSTGRES_PASSWORD"],
        ),
        (
            vec![("MONGODB_URI", Some(mongo_wrong))],
            &[
                "MongoDB at",
                "refused pipedemo's credentials",
                "MONGODB_URI",
            ],
        ),
        (
            vec![("MONGODB_URI", Some(mongo_no_ca))],
            &["MongoDB's certificate", "not trusted", "tlsCAFile"],
        ),
    ];
    let secrets: Vec<String> = env
        .iter()
        .filter(|(k, _)| k.ends_with("PASSWORD"))
        .map(|(_, v)| v.clone())
        .chain([wrong.to_owned()])
        .collect();
    for (changes, expected) in cases {
        let mut c = secured("secfail", env);
        c.args(["setup", "--log-level", "debug"])
            .env("TOPIC_PREFIX", "pipedemo_sec_fail")
            .env("CONNECTOR_NAME", "pipedemo-sec-fail")
            .env("REPLICATION_SLOT", "pipedemo_sec_fail");
        for (var, value) in &changes {
            match value {
                Some(v) => c.env(var, v),
                None => c.env_remove(var),
            };
        }
        let o = c.output().unwrap();
        let out = text(&o);
        let what: Vec<&str> = changes.iter().map(|(k, _)| *k).collect();
        assert_eq!(o.status.code(), Some(2), "{what:?}: {out}");
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{what:?}: one error line expected:\n{out}");
        for e in expected {
            assert!(
                errors[0].contains(e),
                "{what:?}: {:?} should say {e:?}",
                errors[0]
            );
        }
        for s in &secrets {
            assert!(
                !out.contains(s.as_str()),
                "{what:?}: a password leaked:\n{out}"
            );
        }
        assert!(!out.contains("Setup complete"), "{out}");
        nothing_created(env).await;
    }
}
