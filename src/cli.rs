//! The command line: the flags shared by every subcommand ([`Settings`]), the subcommand, and
//! running it with logging, fail points and an async runtime.

use std::process::ExitCode;

use clap::Parser;

use crate::commands::display::DASHBOARD_LOG;
use crate::commands::Command;
use crate::config::Settings;

/// Demonstrates and load-tests a CDC pipeline: PostgreSQL outbox → Debezium → Kafka → MongoDB.
///
/// Start the stack first (scripts/stack.sh up, or docker compose up -d --wait), then:
///   pipedemo setup && pipedemo load --events 1000 && pipedemo verify
#[derive(Parser, Debug)]
#[command(name = "pipedemo", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Where the services are and how to reach them.
    #[command(flatten)]
    pub settings: Settings,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Runs the parsed command line to its exit code: 1 when a check failed, 2 on an error (which
/// is printed as one line with its causes).
pub fn run(cli: Cli) -> ExitCode {
    init_logging(&cli.settings);
    let _ = DASHBOARD_LOG.set(
        cli.settings
            .metrics_file
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join("pipedemo.log"),
    );
    // Fault injection for the reliability tests (FAILPOINTS, see README "Reliability"); unset,
    // every fail point is off.
    let _failpoints = fail::FailScenario::setup();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(cli.command.run(&cli.settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(s: &Settings) {
    // librdkafka reports transient broker states as warnings that pipedemo retries anyway;
    // a plain level keeps them out unless asked for with a full filter.
    let directive = if s.log_level.contains('=') {
        s.log_level.clone()
    } else {
        format!("{},librdkafka=error", s.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::show::logsink::Writer::default)
        .with_target(false);
    if s.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
