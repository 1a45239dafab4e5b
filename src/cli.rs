//! The command line: the flags shared by every subcommand ([`Settings`]), the subcommand, and
//! running it with logging, fail points and an async runtime.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::commands::Command;
use crate::config::Settings;
use crate::show::display::DASHBOARD_LOG;

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

/// Runs the parsed command line to its exit code ([`crate::exit`]): 1 when a check failed,
/// 2 on a usage or configuration error, 3 when a service is unusable (errors are printed as
/// one line with their causes), 130 when interrupted.
pub fn run(mut cli: Cli) -> ExitCode {
    init_logging(&cli.settings);
    if let Err(e) = cli.settings.resolve() {
        eprintln!("error: {e}");
        return crate::exit::Exit::Usage.into();
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
