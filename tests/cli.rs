//! The commands as a user runs them: `pipedemo setup && pipedemo load && pipedemo verify`.

mod common;

use std::process::{Command, Output, Stdio};

use common::{text, Spawned};

/// `pipedemo ARGS` in this file's own world.
fn command(args: &[&str]) -> Command {
    let mut c = common::pipedemo("cli");
    c.args(args);
    c
}

fn pipedemo(args: &[&str]) -> Output {
    command(args).output().expect("pipedemo runs")
}

#[tokio::test]
async fn setup_load_verify_as_a_user_runs_them() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let o = pipedemo(&["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Setup complete"));

    let o = pipedemo(&["load", "--events", "200", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON summary");
    assert_eq!(summary["schema_version"], 1);
    assert_eq!(summary["delivered"], 200);
    assert_eq!(summary["sent"], 200);
    assert_eq!(summary["interrupted"], false);
    assert_eq!(summary["missing"], 0);
    assert!(summary["stages"]["total"]["p99_ms"].as_f64().unwrap() > 0.0);

    let report =
        std::env::temp_dir().join(format!("pipedemo-cli-report-{}.json", std::process::id()));
    let o = pipedemo(&["verify", "--report", report.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("RESULT: PASS") && out.contains("200 found"),
        "{out}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["success_rate"], 100.0);
    assert_eq!(r["integrity_check"], "PASS");

    // A row the consumer never sees makes verify fail with a non-zero exit.
    let pg = pipedemo::pipeline::outbox::connect(&common::settings("cli", &[]).pg)
        .await
        .unwrap();
    pg.execute(
        "INSERT INTO event_outbox (event_id, aggregate_id, aggregate_type, event_type, payload) VALUES (gen_random_uuid(), gen_random_uuid(), 'User', 'UserCreated', '{}')",
        &[],
    )
    .await
    .unwrap();
    let o = pipedemo(&["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Missing: 1 event"), "{}", text(&o));
    pg.execute("TRUNCATE event_outbox", &[]).await.unwrap();
}

/// Ctrl-C mid-load: the inserts stop, what was sent still arrives and is checked, the JSON
/// says sent vs requested, and the exit code is 130. Logs written to a file carry no colour
/// codes unless `--color always` asks for them.
#[tokio::test]
async fn an_interrupted_load_reports_what_it_sent_and_exits_130() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    assert!(pipedemo(&["setup"]).status.success());
    let log = std::env::temp_dir().join(format!("pipedemo-cli-{}.log", std::process::id()));
    let mut load = Spawned::start(
        command(&[
            "load", "--events", "100000", "--rate", "200", "--json", "--no-tui",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap()),
    );
    std::thread::sleep(std::time::Duration::from_secs(8));
    load.signal("-INT");
    let o = load.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(o.status.code(), Some(130), "{}{stderr}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(r["interrupted"], true, "{r}");
    assert_eq!(r["events"], 100_000);
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 100_000, "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(sent), "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert!(stderr.contains("interrupted: no more inserts"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a log file:\n{stderr}"
    );

    let o = command(&["load", "--events", "20", "--color", "always"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains('\x1b'),
        "--color always wrote no colour: {}",
        text(&o)
    );
}

#[test]
fn help_groups_connection_settings_and_every_subcommand_has_a_version() {
    let o = pipedemo(&["load", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{help}");
    let at = |heading: &str| {
        help.find(&format!("\n{heading}:\n"))
            .unwrap_or_else(|| panic!("no {heading} heading:\n{help}"))
    };
    // The command's own options come first, then one heading per service.
    let (own, pg, kafka, connect, mongo, output) = (
        help.find("--events").unwrap(),
        at("PostgreSQL"),
        at("Kafka"),
        at("Kafka Connect"),
        at("MongoDB"),
        at("Output"),
    );
    assert!(
        own < pg && pg < kafka && kafka < connect && connect < mongo,
        "{help}"
    );
    assert!(help[pg..kafka].contains("--pg-host"), "{help}");
    assert!(
        help[kafka..connect].contains("--bootstrap-servers"),
        "{help}"
    );
    assert!(help[output..].contains("--color"), "{help}");
    let o = pipedemo(&["--help"]);
    let top = String::from_utf8_lossy(&o.stdout);
    assert!(top.contains("Exit codes:") && top.contains("130"), "{top}");
    for sub in ["load", "verify", "capacity"] {
        let o = pipedemo(&[sub, "--version"]);
        assert!(o.status.success(), "{sub} --version: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with("pipedemo"),
            "{}",
            text(&o)
        );
    }
}

/// Completion scripts for the three shells, checked by the shells themselves where present.
#[test]
fn completions_generate_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef pipedemo"),
        ("fish", "complete -c pipedemo"),
    ] {
        let o = pipedemo(&["completions", shell]);
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{shell}: {}", text(&o));
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(
            script.contains("capacity") && script.contains("bootstrap-servers"),
            "{shell}:\n{script}"
        );
    }
    let o = pipedemo(&["completions", "bash"]);
    if std::process::Command::new("bash")
        .arg("--version")
        .output()
        .is_ok()
    {
        let file = std::env::temp_dir().join(format!("pipedemo-compl-{}.bash", std::process::id()));
        std::fs::write(&file, &o.stdout).unwrap();
        let check = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(". {} && complete -p pipedemo", file.display()))
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", text(&check));
    }
    let o = pipedemo(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `.env` is read from the working directory only, never from a parent directory.
#[test]
fn man_prints_the_page_and_writes_one_per_subcommand() {
    let o = pipedemo(&["man"]);
    assert!(o.status.success(), "{}", text(&o));
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH pipedemo 1"), "{page}");
    for sub in ["load", "chaos", "capacity", "verify", "cleanup"] {
        assert!(
            page.contains(&format!("pipedemo\\-{sub}(1)")),
            "{sub} missing:\n{page}"
        );
    }
    assert!(!page.contains("chaos\\-hooks"), "hidden flags stay hidden");
    let dir = std::env::temp_dir().join(format!("pipedemo-man-{}", std::process::id()));
    let o = pipedemo(&["man", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let chaos = std::fs::read_to_string(dir.join("pipedemo-chaos.1")).unwrap();
    assert!(chaos.contains("\\-\\-recovery\\-timeout"), "{chaos}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dotenv_is_read_from_the_working_directory_only() {
    let parent = std::env::temp_dir().join(format!("pipedemo-dotenv-{}", std::process::id()));
    let child = parent.join("inner");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(parent.join(".env"), "POSTGRES_PORT=not-a-port\n").unwrap();
    let run = |dir: &std::path::Path| {
        command(&["config"])
            .current_dir(dir)
            .env_remove("POSTGRES_PORT")
            .output()
            .unwrap()
    };
    let here = run(&parent);
    assert_eq!(
        here.status.code(),
        Some(2),
        "the working directory's .env is read"
    );
    assert!(text(&here).contains("not-a-port"), "{}", text(&here));
    let below = run(&child);
    assert!(
        below.status.success(),
        "a parent's .env was read: {}",
        text(&below)
    );
    let _ = std::fs::remove_dir_all(&parent);
}

/// A malformed `.env` or `pipedemo.toml` stops the commands that use the settings, with the
/// file named, and never `--help`, `--version`, `completions` or `man`.
#[test]
fn a_broken_dotenv_or_config_never_breaks_help() {
    let dir = std::env::temp_dir().join(format!("pipedemo-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text_of_it, named) in [
        (".env", "THIS IS NOT A DOTENV LINE\n", ".env"),
        ("pipedemo.toml", "pg_host = \n", "pipedemo.toml"),
    ] {
        let _ = std::fs::remove_file(dir.join(".env"));
        let _ = std::fs::remove_file(dir.join("pipedemo.toml"));
        std::fs::write(dir.join(file), text_of_it).unwrap();
        for args in [
            &["--help"][..],
            &["--version"],
            &["completions", "bash"],
            &["man"],
            &["load", "--help"],
        ] {
            let o = command(args).current_dir(&dir).output().unwrap();
            assert!(o.status.success(), "{file}: {args:?}: {}", text(&o));
        }
        let o = command(&["verify"]).current_dir(&dir).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{file}: {}", text(&o));
        assert!(
            text(&o).contains(named) && text(&o).contains("fix or remove it"),
            "{}",
            text(&o)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pipedemo.toml` in the working directory with a profile: its values reach the run, the
/// environment wins over them and a flag over that; `pipedemo config` says which is which.
#[test]
fn a_config_profile_reaches_the_run_and_config_shows_the_sources() {
    let dir = std::env::temp_dir().join(format!("pipedemo-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pipedemo.toml"),
        "pg_db = \"file_db\"\npg_password = \"hunter2\"\n[profile.broken]\npg_port = 1\n",
    )
    .unwrap();
    let o = command(&["--profile", "broken", "config", "--json"])
        .current_dir(&dir)
        .env("PIPEDEMO_POSTGRES_DB", "env_db")
        .env_remove("POSTGRES_DB")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = |k: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(row("pg_port")["value"], "1");
    assert!(row("pg_port")["source"]
        .as_str()
        .unwrap()
        .starts_with("profile broken"));
    assert_eq!(row("pg_db")["value"], "env_db");
    assert_eq!(row("pg_db")["source"], "env PIPEDEMO_POSTGRES_DB");
    assert_eq!(row("pg_password")["value"], "***");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("hunter2"));
    // The profile's port reaches the connection: nothing listens on 1.
    let o = command(&["--profile", "broken", "verify"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(":1"), "{}", text(&o));
    // Without the profile, or with a flag over it, the port is not 1.
    let o = command(&["--profile", "broken", "--pg-port", "5432", "config"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        text(&o).contains("pg_port") && !text(&o).contains("profile broken"),
        "{}",
        text(&o)
    );
    let o = command(&["--profile", "staging", "verify"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no [profile.staging] (profiles: broken)"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Thresholds on a real load, and `compare` on the documents it printed.
#[tokio::test]
async fn thresholds_gate_a_load_and_compare_finds_a_regression() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let o = pipedemo(&["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pipedemo(&[
        "load",
        "--events",
        "300",
        "--rate",
        "300",
        "--json",
        "--no-tui",
        "--threshold",
        "p99<60s",
        "--threshold",
        "success>=100%",
        "--threshold",
        "stage.cdc.p99<60s",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["kind"], "load");
    assert_eq!(doc["thresholds"].as_array().unwrap().len(), 3);
    assert!(doc["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["passed"] == true));
    assert!(
        text(&o).contains("✓ threshold p99<60s (p99 = "),
        "{}",
        text(&o)
    );
    let p99 = doc["thresholds"][0]["actual"].as_f64().unwrap();
    assert_eq!(
        Some(p99),
        doc["total_from_schedule"]["p99_ms"].as_f64(),
        "p99 from schedule"
    );

    // A gate nobody meets: exit 1, naming it.
    let o = pipedemo(&[
        "load",
        "--events",
        "50",
        "--no-tui",
        "--threshold",
        "p50<1us",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("✗ threshold p50<1us (p50 = "),
        "{}",
        text(&o)
    );
    // Bad or unmeasurable gates are usage errors, before anything runs.
    for bad in ["p99<fast", "capacity>=1000", "p98<1ms"] {
        let o = pipedemo(&["load", "--events", "10", "--threshold", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }

    // compare: the same document passes; twice the p99 is a regression; kinds must match.
    let dir = std::env::temp_dir().join(format!("pipedemo-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.json");
    std::fs::write(&base, serde_json::to_string(&doc).unwrap()).unwrap();
    let mut worse = doc.clone();
    worse["total_from_schedule"]["p99_ms"] = serde_json::json!(p99 * 2.0 + 1.0);
    let new = dir.join("new.json");
    std::fs::write(&new, serde_json::to_string(&worse).unwrap()).unwrap();
    let (b, n) = (base.to_str().unwrap(), new.to_str().unwrap());
    let o = pipedemo(&["compare", b, b]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("PASS: no figure regressed"),
        "{}",
        text(&o)
    );
    let o = pipedemo(&["compare", b, n, "--max-regression", "10%"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("✗ p99 went from"), "{}", text(&o));
    let o = pipedemo(&["compare", b, n, "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["passed"], false);
    let verify = dir.join("verify.json");
    let v = pipedemo(&["verify", "--json"]);
    std::fs::write(&verify, &v.stdout).unwrap();
    let o = pipedemo(&["compare", b, verify.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot compare a `load` document with a `verify` document"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let o = pipedemo(&["load", "--events", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--events"), "{}", text(&o));
    let o = pipedemo(&["load", "--events", "-5"]);
    assert_eq!(o.status.code(), Some(2));
    let o = pipedemo(&["cleanup"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
    // A duration no run can last is refused, not a panic.
    let o = pipedemo(&["replay", "--timeout", "1e30"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("longer than a year"), "{}", text(&o));
    // A file with no end is refused before it is read.
    let o = pipedemo(&["compare", "/dev/zero", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not a file"), "{}", text(&o));
    // A service that cannot be reached is 3, whichever command meets it.
    let o = pipedemo(&["load", "--events", "10", "--pg-port", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn a_route_topic_beyond_pipedemos_own_is_refused_before_anything_runs() {
    for (pattern, why) in [
        ("${routedByValue}", "no fixed prefix"),
        ("connect-${routedByValue}", "Kafka Connect's"),
        (
            "pipedemo.public.${routedByValue}",
            "matches the dead-letter topic",
        ),
        ("a.${routedByValue}.${routedByValue}", "more than one"),
    ] {
        for cmd in ["consume", "setup", "replay"] {
            // A port nothing listens on: a refusal must come before any connection.
            let o = pipedemo(&[
                "--routing",
                "event-router",
                "--route-topic",
                pattern,
                "--pg-port",
                "1",
                cmd,
            ]);
            assert_eq!(o.status.code(), Some(2), "{pattern} {cmd}: {}", text(&o));
            assert!(text(&o).contains(why), "{pattern} {cmd}: {}", text(&o));
        }
    }
}

/// Every secret of a configuration, wherever it was set (file, list, URL, flag), is never
/// printed by `config`, `config --json`, `--help` or an error.
#[test]
fn no_secret_is_printed_by_config_help_or_errors() {
    let dir = std::env::temp_dir().join(format!("pipedemo-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("pipedemo.toml"),
        r#"pg_password = "s3cret-file"
connector_config = ["snapshot.mode=never", "database.password=s3cret-list"]
kafka_option = ["sasl.oauthbearer.token.endpoint.url=https://idp/token", "sasl.oauthbearer.client.secret=s3cret-oauth"]
"#,
    )
    .unwrap();
    let secrets = [
        "s3cret-file",
        "s3cret-list",
        "s3cret-oauth",
        "s3cret-url",
        "s3cret-query",
        "s3cret-info",
    ];
    let runs = [
        vec!["config"],
        vec!["config", "--json"],
        vec!["--help"],
        vec!["setup", "--help"],
        vec![
            "--connector-config",
            "value.converter.schema.registry.url=https://r;value.converter.basic.auth.user.info=u:s3cret-info",
            "config",
        ],
        vec!["--pg-url", "postgresql://u:s3cret-url@h/db?password=s3cret-query", "config"],
        // Malformed: an unescaped `#` in the password makes the port unreadable.
        vec!["--pg-url", "postgresql://u:s3cret-url#x@h:5432/db", "verify"],
        vec!["--pg-url", "postgresql://u@h:99999/db?password=s3cret-query", "verify"],
    ];
    for args in runs {
        let o = command(&args).current_dir(&dir).output().unwrap();
        let out = text(&o);
        for secret in secrets {
            assert!(!out.contains(secret), "{args:?} printed {secret}:\n{out}");
        }
        if args == ["config"] {
            // The list reached its setting as two entries, not one value joined with `,`.
            assert!(out.contains("snapshot.mode=never"), "{out}");
            assert!(out.contains("database.password=***"), "{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_configuration_fails_in_one_line_without_secrets() {
    common::require_stack();
    // A topic that does not exist.
    let o = pipedemo(&["consume", "--topic", "no.such.topic"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o).contains("Kafka topic no.such.topic does not exist; run `pipedemo setup` first"),
        "{}",
        text(&o)
    );
    // An aggregate topic of the Event Router that does not exist: the hint names its setup.
    let o = pipedemo(&[
        "consume",
        "--routing",
        "event-router",
        "--topic-prefix",
        "no_such_prefix",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(
            ".outbox.event.User does not exist; run `pipedemo setup --routing event-router` first"
        ),
        "{}",
        text(&o)
    );
    // A report path that cannot be written.
    let o = pipedemo(&["verify", "--report", "/nonexistent-dir/report.json"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("cannot write the report to /nonexistent-dir/report.json"),
        "{}",
        text(&o)
    );
    // A wrong password, with debug logs on: the password appears nowhere.
    let secret = "s3cr3t-Pa55word-913";
    let o = command(&["setup", "--pg-password", secret, "--log-level", "debug"])
        .env(
            "MONGODB_URI",
            format!("mongodb://admin:{secret}@127.0.0.1:1/?serverSelectionTimeoutMS=500"),
        )
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("rejected the credentials"), "{out}");
    assert!(out.contains("mongodb://admin:***@127.0.0.1:1"), "{out}");
    assert!(!out.contains(secret), "the password leaked:\n{out}");
}

/// Runs `pipedemo monitor --observe --no-tui` for a few seconds, stops it with SIGTERM and
/// returns its exit status and output.
fn observe_for(secs: u64, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = Spawned::start(
        command(&["monitor", "--observe", "--no-tui"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    std::thread::sleep(std::time::Duration::from_secs(secs));
    child.signal("-TERM");
    let o = child.wait();
    (o.status, text(&o))
}

#[tokio::test]
async fn monitor_observe_reports_health_and_names_a_service_that_is_down() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let (status, out) = observe_for(4, &[]);
    assert_eq!(status.code(), Some(130), "{out}");
    let healthy = out
        .lines()
        .find(|l| l.starts_with("[RUNNING] observing · lag ") && !l.contains("lag ?"))
        .unwrap_or_else(|| panic!("no complete health line:\n{out}"));
    assert!(healthy.contains("Debezium RUNNING 1/1"), "{healthy}");
    assert!(
        healthy.contains("MongoDB activities ") && healthy.contains("users "),
        "{healthy}"
    );

    let (status, out) = observe_for(
        4,
        &[(
            "MONGODB_URI",
            "mongodb://u:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=300",
        )],
    );
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("[DEGRADED] observing")
            && l.contains("Debezium RUNNING")
            && l.contains("problem: MongoDB: unreachable at mongodb://u:***@127.0.0.1:1")),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "the password leaked:\n{out}");
}

#[tokio::test]
async fn replay_refuses_while_a_consumer_of_the_group_runs() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let o = pipedemo(&["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut consumer = Spawned::start(command(&["consume"]).stderr(Stdio::piped()));
    // Wait until it is a member of the group with its partition.
    let stderr = consumer.child().stderr.take().unwrap();
    let (joined_tx, joined) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("partitions assigned") {
                let _ = joined_tx.send(());
            }
        }
    });
    joined
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the consumer joined its group");
    let o = pipedemo(&["replay"]);
    consumer.signal("-TERM");
    let _ = consumer.wait();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot reset consumer group pipedemo-test-cli")
            && text(&o).contains("stop any running `pipedemo consume`"),
        "{}",
        text(&o)
    );
}

/// Secrets set the ways users set them (a librdkafka property, a connector setting, a URL's
/// query) never reach what a run prints, logs (at debug level), writes or serves.
#[tokio::test]
async fn secrets_never_reach_logs_reports_or_metrics() {
    use std::io::{Read, Write};
    common::require_stack();
    let _guard = common::serial().lock().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let secrets = ["s3cret-key", "s3cret-info", "s3cret-query"];
    let with_secrets = |args: &[&str]| {
        let mut c = command(args);
        c.env("LOG_LEVEL", "debug")
            .env("KAFKA_OPTIONS", "ssl.key.password=s3cret-key")
            .env(
                "CONNECTOR_CONFIG",
                "value.converter.basic.auth.user.info=u:s3cret-info",
            )
            .env(
                "MONGODB_URI",
                "mongodb://127.0.0.1:27017/?appName=pipedemo&authMechanismProperties=TOKEN:s3cret-query",
            );
        c
    };
    let o = with_secrets(&["setup"]).output().unwrap();
    let mut seen = text(&o);
    assert!(o.status.success(), "{seen}");
    let mut run = Spawned::start(
        with_secrets(&[
            "--metrics-listen",
            &listen,
            "load",
            "--events",
            "300",
            "--rate",
            "50",
            "--no-tui",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()),
    );
    // Scrape while it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let scraped = loop {
        if let Ok(mut c) = std::net::TcpStream::connect(&listen) {
            c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut body = String::new();
            let _ = c.read_to_string(&mut body);
            if body.contains("pipedemo_") {
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the metrics endpoint never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = run.child();
    let o = run.wait();
    assert!(o.status.success(), "{}", text(&o));
    seen.push_str(&text(&o));
    seen.push_str(&scraped);
    let s = common::settings("cli", &[]);
    seen.push_str(&std::fs::read_to_string(&s.output.metrics_file).unwrap_or_default());
    let log = s.output.metrics_file.parent().unwrap().join("pipedemo.log");
    seen.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    for secret in secrets {
        assert!(!seen.contains(secret), "{secret} was printed:\n{seen}");
    }
    // The connector got the setting (it is only hidden, not lost).
    let connect = pipedemo::provision::connector::Connect::new(&s.connect).unwrap();
    let config = connect.config().await.unwrap().unwrap();
    assert_eq!(
        config["value.converter.basic.auth.user.info"], "u:s3cret-info",
        "{config:?}"
    );
}

/// `replay --group` and `consume --topic` meet setup's ownership rules: a group or topic that
/// pipedemo did not create is refused, and nothing of it moves.
#[tokio::test]
async fn replay_and_consume_refuse_a_group_or_topic_that_is_not_pipedemos() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    common::require_stack();
    let _guard = common::serial().lock().await;
    let o = pipedemo(&["setup"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = common::settings("cli", &[]);
    let topic = s.kafka.topic();
    // Somebody else's group, with a position on pipedemo's topic.
    let group = format!("someone-elses-{}", std::process::id());
    let theirs: BaseConsumer = pipedemo::pipeline::kafka::client_config(&s.kafka)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(0))
        .unwrap();
    theirs.commit(&tpl, CommitMode::Sync).unwrap();
    drop(theirs);
    let o = pipedemo(&["--group", &group, "replay"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("replay refused") && text(&o).contains(&group),
        "{}",
        text(&o)
    );
    let mut k = s.kafka.clone();
    k.group = group.clone();
    assert_eq!(
        pipedemo::pipeline::kafka::committed(&k, &topic)
            .await
            .unwrap(),
        Some(vec![(0, 0)]),
        "their position did not move"
    );
    // A topic of pipedemo's shape that setup did not make.
    let foreign = format!("someone-elses-{}.public.event_outbox", std::process::id());
    pipedemo::pipeline::kafka::ensure_topic(&s.kafka, &foreign, 1)
        .await
        .unwrap();
    let o = pipedemo(&["--topic", &foreign, "consume"]);
    pipedemo::pipeline::kafka::delete_topics(&s.kafka, std::slice::from_ref(&foreign))
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{foreign} exists but pipedemo did not create it")),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn an_unusable_dead_letter_topic_shows_degraded_and_fails_the_run_in_bounded_time() {
    common::require_stack();
    let _guard = common::serial().lock().await;
    let name = "dlqfail";
    let o = common::pipedemo(name).arg("setup").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // A message that must be dead-lettered, to a dead-letter topic Kafka cannot take.
    let s = common::settings(name, &[]);
    let producer: rdkafka::producer::FutureProducer =
        pipedemo::pipeline::kafka::client_config(&s.kafka)
            .create()
            .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::<str, str>::to(&s.kafka.topic()).payload("not JSON"),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let o = common::pipedemo(name)
        .args(["load", "--events", "20", "--no-tui", "--retry-limit", "5s"])
        .env("DLQ_TOPIC", "pipedemo test: not a topic name!")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("the dead-letter topic pipedemo test: not a topic name! kept failing for 5 s"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("[DEGRADED]") && l.contains("the dead-letter topic")),
        "no DEGRADED progress line naming the cause:\n{out}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // Nothing was committed: with a usable dead-letter topic the message is dead-lettered
    // and the run goes on.
    let o = common::pipedemo(name)
        .args(["load", "--events", "20", "--no-tui"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
