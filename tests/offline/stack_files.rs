//! The stack's own files, checked without starting it: the compose file matches the native
//! stack, and `scripts/stack.sh` never trusts a pid file that names another program.

use crate::common;

#[test]
fn docker_compose_matches_the_native_stack() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&text).expect("docker-compose.yml is valid YAML");
    let services = &docs[0]["services"];
    let stack =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh")).unwrap();
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
    // Kafka's request threads as the native stack sizes them.
    let kafka_env = &services["kafka"]["environment"];
    for (env, prop) in [
        ("KAFKA_NUM_NETWORK_THREADS", "num.network.threads"),
        ("KAFKA_NUM_IO_THREADS", "num.io.threads"),
    ] {
        let n = kafka_env[env]
            .as_i64()
            .unwrap_or_else(|| panic!("docker-compose.yml sets {env}"));
        assert!(
            stack.contains(&format!("\n{prop}={n}\n")),
            "stack.sh sets {prop}={n} as docker-compose.yml does"
        );
    }
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
    let o = common::stack_in(&dir, &["status"], &env);
    let out = common::text(&o);
    let mongo = out
        .lines()
        .find(|l| l.starts_with("mongo"))
        .unwrap_or_default();
    assert!(mongo.contains("down"), "{out}");
    let o = common::stack_in(&dir, &["stop", "mongo"], &env);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(
        other.try_wait().unwrap().is_none(),
        "stack.sh stopped a process that was not the stack's"
    );
    other.kill().unwrap();
    let _ = other.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// The compose file's `scale` profile: setup once, then consumers and N generators of one
/// run, with settings pipedemo really reads (a misspelt variable would silently fall back to a
/// default and point the containers at 127.0.0.1).
#[test]
fn the_scale_profile_runs_one_run_of_n_generators_and_any_number_of_consumers() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let services = &docs[0]["services"];
    let words = |svc: &str| -> Vec<String> {
        services[svc]["command"]
            .as_vec()
            .unwrap_or_else(|| panic!("{svc} has a command"))
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(words("pipedemo-setup")[0], "setup");
    assert_eq!(words("consumer"), vec!["consume"]);
    assert_eq!(words("generator")[0], "load");
    for svc in ["pipedemo-setup", "consumer", "generator"] {
        let profiles = services[svc]["profiles"].as_vec().unwrap();
        assert_eq!(
            profiles[0].as_str(),
            Some("scale"),
            "{svc} only with --profile scale"
        );
    }
    for svc in ["consumer", "generator"] {
        assert_eq!(
            services[svc]["depends_on"]["pipedemo-setup"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{svc} starts after setup"
        );
    }
    // As many generator replicas as the run is told it has.
    let env = services["generator"]["environment"].as_hash().unwrap();
    let get = |k: &str| {
        env[&yaml_rust2::Yaml::String(k.into())]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        services["generator"]["deploy"]["replicas"].as_str(),
        Some(get("PIPEDEMO_GENERATORS").as_str())
    );
    // Every variable is one pipedemo reads: `config` names it as the source.
    let mut config = std::process::Command::new(env!("CARGO_BIN_EXE_pipedemo"));
    config.env_clear().arg("config").arg("--json");
    let settings: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .filter(|(k, _)| !k.starts_with("PIPEDEMO_"))
        .collect();
    config.envs(settings.iter().map(|(k, v)| (k, v)));
    let o = config.output().unwrap();
    assert!(o.status.success(), "{}", common::text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    for (k, _) in &settings {
        assert!(
            shown.contains(&format!("\"env {k}\"")),
            "{k} is not a setting: {shown}"
        );
    }
    // The run's own variables are the flags of `load`.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_pipedemo"))
        .args(["load", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for k in ["PIPEDEMO_RUN", "PIPEDEMO_GENERATORS"] {
        assert!(help.contains(&format!("env: {k}")), "load reads {k}");
    }
}
