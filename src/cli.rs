//! The command line: the flags shared by every subcommand ([`Settings`]), the subcommand, and
//! running it with logging, fail points and an async runtime.

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::commands::Command;
use crate::config::Settings;
use crate::show::display::{DASHBOARD_COLOR, DASHBOARD_LOG};

/// The exit codes, the same for every command (README, "Exit codes").
const EXIT_CODES: &str = "Exit codes:
  0    success
  1    a check or threshold failed (missing events, verification, --max-p95-ms, --min-rate)
  2    usage or configuration error, including credentials or TLS settings a service refuses
       and setup/cleanup refusing what pipedemo did not create (without --force)
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

/// [`parse`] of `args` (the program name first).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    cli.settings.child_env = child_env(&cmd, &matches);
    Ok(cli)
}

/// The global flags given on the command line, as their environment variables.
fn child_env(cmd: &clap::Command, m: &clap::ArgMatches) -> crate::config::ChildEnv {
    let mut vars = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let (Some(var), id) = (arg.get_env(), arg.get_id().as_str()) else {
            continue;
        };
        if m.value_source(id) != Some(ValueSource::CommandLine) {
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
        vars.push((var.to_string_lossy().into_owned(), value));
    }
    crate::config::ChildEnv(vars)
}

/// Runs the parsed command line to its exit code ([`crate::exit`]): 1 when a check failed,
/// 2 on a usage or configuration error, 3 when a service is unusable (errors are printed as
/// one line with their causes), 130 when interrupted.
pub fn run(mut cli: Cli) -> ExitCode {
    init_logging(&cli.settings);
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
    let _ = DASHBOARD_LOG.set(
        cli.settings
            .output
            .metrics_file
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join("pipedemo.log"),
    );
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
    match rt.block_on(cli.command.run(&cli.settings, Cli::command())) {
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
/// application's data. A missing file is fine; a malformed one is an error.
pub fn read_dotenv() -> anyhow::Result<()> {
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
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
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(env["POSTGRES_PORT"], "5433");
        // Given after the subcommand too, and a list as the variable spells it.
        assert_eq!(env["POSTGRES_PASSWORD"], "s3cret");
        assert_eq!(env["KAFKA_OPTIONS"], "a=1;b=2");
        // Defaults and the command's own flags are not settings to pass on.
        assert!(!env.contains_key("KAFKA_BOOTSTRAP_SERVERS") && !env.contains_key("FAULTS"));
        // Debug output names the variables, never their values.
        let shown = format!("{:?}", cli.settings);
        assert!(
            shown.contains("POSTGRES_PASSWORD") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
