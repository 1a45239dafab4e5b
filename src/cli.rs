//! The command line: the flags shared by every subcommand ([`Settings`]), the subcommand, and
//! running it with logging, fail points and an async runtime.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::commands::Command;
use crate::config::{layers, Settings};
use crate::show::display::{DASHBOARD_COLOR, DASHBOARD_LOG};

/// The exit codes, the same for every command (README, "Exit codes").
const EXIT_CODES: &str = "Exit codes:
  0    success
  1    a check or threshold failed (missing events, verification, a --threshold, a phase's
       targets, a fault not recovered, a figure worse than the baseline)
  2    usage or configuration error, including credentials or TLS settings a service refuses,
       a malformed .env or pipedemo.toml, setup/cleanup refusing what pipedemo did not
       create (without --force), and a command run before `pipedemo setup`
  3    a service unreachable or lacking what pipedemo needs (the message says which and how
       to fix it)
  130  interrupted (Ctrl-C or SIGTERM, after a clean stop; a second Ctrl-C quits at once)";

/// Demonstrates and load-tests a CDC pipeline: PostgreSQL outbox → Debezium → Kafka → MongoDB.
///
/// Start the stack first (scripts/stack.sh up, or docker compose up -d --wait), then:
///   pipedemo setup && pipedemo load --events 1000 && pipedemo verify
#[derive(Parser, Debug)]
#[command(
    name = "pipedemo",
    version,
    propagate_version = true,
    after_help = EXIT_CODES,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Cli {
    /// Where the services are and how to reach them.
    #[command(flatten)]
    pub settings: Settings,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line (exiting on a usage error, as clap does), keeping the settings
/// given as flags for child processes ([`crate::config::ChildEnv`]).
pub fn parse() -> Cli {
    parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse`] of `args` (the program name first): the config file's values and the
/// `PIPEDEMO_`-prefixed variables become the flags' defaults and variables first, so the
/// order is flag > environment > profile > file > default. A config file that cannot be used
/// is kept in [`Settings::deferred`] (an error only for commands that use the settings).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let original = Cli::command();
    let mut cmd = layers::prefixed_env(original.clone());
    let (path, profile) = layers::config_flags(&args);
    let mut deferred = None;
    // A child's settings are its parent's, whole (see `ChildEnv`): no file of its own.
    let file = if crate::config::settings_from_parent() {
        None
    } else {
        match crate::config::file::load(path.as_deref(), profile.as_deref()) {
            Ok(f) => f,
            Err(e) => {
                deferred = Some(e);
                None
            }
        }
    };
    if let Some(f) = &file {
        match layers::unknown_key(&cmd, f) {
            Some(e) => deferred = Some(e),
            None => cmd = layers::with_file_defaults(cmd, f),
        }
    }
    let matches = cmd.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    cli.settings.child_env = child_env(&cmd, &matches);
    cli.settings.sources = layers::sources(&cmd, &matches, file.as_ref(), &original);
    cli.settings.deferred = deferred;
    Ok(cli)
}

/// Every global setting that reads a variable, as that variable and this process's value
/// (from a flag, the environment, `.env`, a profile, the file or the default), and every such
/// variable to remove from a child's inherited environment.
fn child_env(cmd: &clap::Command, m: &clap::ArgMatches) -> crate::config::ChildEnv {
    let mut vars = Vec::new();
    let mut remove = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let (Some(var), id) = (arg.get_env(), arg.get_id().as_str()) else {
            continue;
        };
        let var = var.to_string_lossy();
        let plain = var.strip_prefix("PIPEDEMO_").unwrap_or(&var).to_owned();
        remove.push(format!("PIPEDEMO_{plain}"));
        remove.push(plain.clone());
        // The config file and profile are read by the parent only: their values are here.
        if matches!(plain.as_str(), "CONFIG" | "PROFILE") {
            continue;
        }
        if m.value_source(id).is_none() {
            continue;
        }
        let Some(raw) = m.get_raw(id) else { continue };
        let sep = arg.get_value_delimiter().unwrap_or(',').to_string();
        let mut value = std::ffi::OsString::new();
        for (i, v) in raw.enumerate() {
            if i > 0 {
                value.push(&sep);
            }
            value.push(v);
        }
        vars.push((plain, value));
    }
    crate::config::ChildEnv { vars, remove }
}

/// Runs the parsed command line to its exit code ([`crate::exit`]): 1 when a check failed,
/// 2 on a usage or configuration error, 3 when a service is unusable (errors are printed as
/// one line with their causes), 130 when interrupted.
pub fn run(mut cli: Cli) -> ExitCode {
    init_logging(&cli.settings);
    if let Some(e) = cli
        .settings
        .deferred
        .as_ref()
        .filter(|_| cli.command.uses_settings())
    {
        eprintln!("error: {e}");
        return crate::exit::Exit::Usage.into();
    }
    if let Err(e) = cli.settings.resolve() {
        eprintln!("error: {e}");
        return crate::exit::Exit::Usage.into();
    }
    {
        use std::io::IsTerminal;
        let _ = DASHBOARD_COLOR.set(cli.settings.output.color.enabled(
            std::io::stdout().is_terminal(),
            std::env::var("NO_COLOR").ok().as_deref(),
        ));
    }
    let log = cli
        .settings
        .output
        .metrics_file
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .join("pipedemo.log");
    // A run with a dashboard keeps its log lines off the terminal from the start: one logged
    // while the services are set up would otherwise sit on the screen the dashboard takes.
    let held = cli
        .command
        .display()
        .is_some_and(|d| crate::show::dashboard::use_tui(d.no_tui))
        && crate::show::logsink::hold(&log).is_ok();
    let _ = DASHBOARD_LOG.set(log);
    // Fault injection for the reliability tests (FAILPOINTS, see README "Reliability"), only
    // in a build with the `failpoints` feature: a release build ignores the variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // One thread runs every task: the generator, the writers, the consumer and the collector
    // hand work to each other many times per batch, and across threads each handoff was a
    // wakeup (futex, epoll) that cost more CPU than the work (perf at 4,000 events/s).
    // librdkafka's threads and the blocking pool are apart.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return crate::exit::Exit::Usage.into();
        }
    };
    let result = rt.block_on(cli.command.run(&cli.settings, Cli::command()));
    if held {
        if let Some((path, lines)) = crate::show::logsink::restore() {
            if lines > 0 {
                eprintln!("{lines} log line(s) are in {}", path.display());
            }
        }
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            crate::exit::of_error(&e).into()
        }
    }
}

/// Reads `.env` from the working directory, its values acting as environment variables
/// (the environment wins). Only the working directory: a `.env` found in a parent (an
/// application's repository around the checkout) must not point pipedemo at that
/// application's data. A missing file is fine; a malformed one is an error for the commands
/// that use the settings (never for `--help`, `--version` or `completions`).
pub fn read_dotenv() -> Result<(), String> {
    if crate::config::settings_from_parent() {
        return Ok(());
    }
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot read .env in the working directory: {e}; fix or remove it"
        )),
    }
}

fn init_logging(s: &Settings) {
    // librdkafka reports transient broker states as warnings that pipedemo retries anyway;
    // a plain level keeps them out unless asked for with a full filter.
    let directive = if s.output.log_level.contains('=') {
        s.output.log_level.clone()
    } else {
        format!("{},librdkafka=error", s.output.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = s.output.color.enabled(
        std::io::stderr().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(crate::show::logsink::Writer::default)
        .with_target(false);
    if s.output.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_given_as_flags_reach_child_processes_as_variables() {
        let cli = parse_from([
            "pipedemo",
            "--pg-port",
            "5433",
            "chaos",
            "--pg-password",
            "s3cret",
            "--kafka-option",
            "a=1",
            "--kafka-option",
            "b=2",
            "--faults",
            "kafka-stop",
        ])
        .unwrap();
        let env: std::collections::HashMap<String, String> = cli
            .settings
            .child_env
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(env["POSTGRES_PORT"], "5433");
        // Given after the subcommand too, and a list as the variable spells it.
        assert_eq!(env["POSTGRES_PASSWORD"], "s3cret");
        assert_eq!(env["KAFKA_OPTIONS"], "a=1;b=2");
        // Every setting goes, defaults too (a child reads no `.env` or file of its own); the
        // command's own flags are not settings.
        assert_eq!(env["KAFKA_BOOTSTRAP_SERVERS"], "127.0.0.1:9092");
        assert!(!env.contains_key("FAULTS"));
        // What the child would otherwise inherit or read again is removed first.
        let remove = &cli.settings.child_env.remove;
        for v in [
            "METRICS_LISTEN",
            "PIPEDEMO_METRICS_LISTEN",
            "PIPEDEMO_POSTGRES_PORT",
        ] {
            assert!(remove.iter().any(|r| r == v), "{v} in {remove:?}");
        }
        // Debug output names the variables, never their values.
        let shown = format!("{:?}", cli.settings);
        assert!(
            shown.contains("POSTGRES_PASSWORD") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    fn config_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pipedemo-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flag_beats_env_beats_profile_beats_file_beats_default() {
        use crate::config::file::Source;
        let path = config_file(
            "order.toml",
            "pg_host = \"file-host\"\npg_db = \"file-db\"\ntopic_prefix = \"file-prefix\"\n\
             dlq_topic = \"file-dlq\"\nphases = [1, 2]\n\
             [profile.p]\npg_host = \"profile-host\"\ndlq_topic = \"profile-dlq\"\n",
        );
        // No other test reads this variable.
        std::env::set_var("PIPEDEMO_DLQ_TOPIC", "env-dlq");
        let p = path.to_str().unwrap();
        let cli = parse_from([
            "pipedemo",
            "--config",
            p,
            "--profile",
            "p",
            "--pg-db",
            "flag-db",
            "full",
        ])
        .unwrap();
        std::env::remove_var("PIPEDEMO_DLQ_TOPIC");
        let s = &cli.settings;
        assert!(s.deferred.is_none(), "{:?}", s.deferred);
        assert_eq!(s.pg.db, "flag-db");
        assert_eq!(s.kafka.dlq_topic.as_deref(), Some("env-dlq"));
        assert_eq!(s.pg.host, "profile-host");
        assert_eq!(s.kafka.topic_prefix, "file-prefix");
        assert_eq!(s.pg.user, "pipedemo");
        // A subcommand's flag set in the file.
        let crate::commands::Command::Full(full) = &cli.command else {
            panic!("full")
        };
        assert_eq!(full.phases, [1, 2]);
        let source = |k: &str| {
            s.sources
                .0
                .iter()
                .find(|r| r.key == k)
                .map(|r| r.source.clone())
                .unwrap()
        };
        assert_eq!(source("pg_db"), Source::Flag);
        assert_eq!(
            source("dlq_topic"),
            Source::Env("PIPEDEMO_DLQ_TOPIC".into())
        );
        assert_eq!(source("pg_host"), Source::Profile("p".into(), path.clone()));
        assert_eq!(source("topic_prefix"), Source::File(path.clone()));
        assert_eq!(source("pg_user"), Source::Default);
        assert_eq!(source("phases"), Source::File(path.clone()));
        // The secret is never shown.
        let pw = s.sources.0.iter().find(|r| r.key == "pg_password").unwrap();
        assert_eq!(pw.value, "***");
    }

    #[test]
    fn a_broken_config_stops_only_the_commands_that_use_it() {
        let bad = config_file("bad.toml", "pg_host = \n");
        let p = bad.to_str().unwrap();
        let cli = parse_from(["pipedemo", "--config", p, "completions", "bash"]).unwrap();
        assert!(cli
            .settings
            .deferred
            .as_deref()
            .unwrap()
            .contains("bad.toml is not valid"));
        assert!(!cli.command.uses_settings());
        let cli = parse_from(["pipedemo", "--config", p, "verify"]).unwrap();
        assert!(cli.settings.deferred.is_some() && cli.command.uses_settings());
        let help = parse_from(["pipedemo", "--config", p, "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let typo = config_file("typo.toml", "pg_prot = 5433\n");
        let cli = parse_from(["pipedemo", "--config", typo.to_str().unwrap(), "verify"]).unwrap();
        let e = cli.settings.deferred.unwrap();
        assert!(e.contains("`pg_prot` is not a setting of pipedemo"), "{e}");
        let cli = parse_from(["pipedemo", "--profile", "nope", "verify"]).unwrap();
        assert!(cli.settings.deferred.unwrap().contains("--profile nope"));
    }
}
