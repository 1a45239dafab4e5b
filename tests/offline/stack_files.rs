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
