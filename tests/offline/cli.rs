//! The command line without the stack: help, completions, man pages, `.env` and
//! `pipedemo.toml` layering, refusals of bad arguments and of route topics, and no secret in
//! anything `config`, `--help` or an error prints.

use std::process::{Command, Output};

use crate::common;
use crate::common::text;

/// `pipedemo ARGS` in this file's own world.
fn command(args: &[&str]) -> Command {
    let mut c = common::pipedemo("cli_offline");
    c.args(args);
    c
}

fn pipedemo(args: &[&str]) -> Output {
    command(args).output().expect("pipedemo runs")
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
    // A fault asked for by name that cannot run here is refused, not skipped by a run that
    // would then pass having broken nothing.
    let o = pipedemo(&[
        "chaos",
        "--faults",
        "consumer-kill,kafka-stop",
        "--stack",
        "/nonexistent/stack.sh",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o)
            .contains("cannot inject kafka-stop (no local stack: /nonexistent/stack.sh not found")
            && text(&o).contains("`pipedemo chaos --list`")
            && !text(&o).contains("consumer-kill ("),
        "{}",
        text(&o)
    );
}

#[test]
fn a_route_topic_beyond_pipedemos_own_is_refused_before_anything_runs() {
    for (pattern, why) in [
        ("${routedByValue}", "no fixed prefix"),
        ("connect-${routedByValue}", "Kafka Connect's"),
        (
            "pipedemo_test_cli_offline.public.${routedByValue}",
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
