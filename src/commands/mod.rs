//! One module per subcommand, each owning its flags (`Args`), the options they become, and
//! what it prints; the runs themselves are [`crate::run`]'s, what they show
//! [`crate::show`]'s. [`flags`] holds the flags several subcommands share.

pub mod capacity;
pub mod chaos;
pub mod cleanup;
pub mod compare;
pub mod completions;
pub mod config;
pub mod consume;
pub mod flags;
pub mod full;
pub mod load;
pub mod man;
pub mod merge;
pub mod monitor;
pub mod output;
pub mod replay;
pub mod setup;
pub mod signals;
pub mod verify;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::config::Settings;

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the services and prepare table, connector, topics, indexes and consumer group.
    Setup(setup::Args),
    /// Generate events into the outbox and consume them until all are in MongoDB.
    Load(load::Args),
    /// The live dashboard without generating events: consume what arrives until stopped.
    Monitor(monitor::Args),
    /// The whole show: setup, phases of growing load, verification and reports.
    Full(Box<full::Args>),
    /// The highest rate the pipeline sustains within a p99 latency target: an open-loop
    /// rate sweep, every event verified.
    Capacity(capacity::Args),
    /// Break the pipeline while it runs: a paced load while faults (consumer kill, broker,
    /// Connect, MongoDB and PostgreSQL outages, connector pause…) run one at a time, then
    /// verification; recovery time per fault, and exit 1 on any loss.
    Chaos(chaos::Args),
    /// Run the consumer alone until interrupted (Ctrl-C / SIGTERM).
    Consume(consume::Args),
    /// Two runs' figures side by side (the JSON of `load`, `full`, `capacity`, `chaos` or
    /// `verify`): the change of each, and exit 1 when one got worse beyond --max-regression.
    Compare(compare::Args),
    /// Consume the whole topic again from its start (the group must have no running consumer),
    /// then stop. Idempotent read models stay as they were: compare `verify --checksum`.
    Replay(replay::Args),
    /// Add up the results files of a run's processes (`pipedemo_results.jsonl`, one per
    /// process directory or host): one run's exact figures, as the run's owner merges them.
    Merge(merge::Args),
    /// Check that every outbox event is in MongoDB exactly once, and report latency.
    Verify(verify::Args),
    /// Delete demo data: outbox rows, the read-model database, metrics and report files.
    Cleanup(cleanup::Args),
    /// Every setting's value and where it came from (flag, environment, profile, config
    /// file, default), secrets as ***.
    Config(config::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
    /// Print the manual page (roff: `pipedemo man | man -l -`), or write one per subcommand.
    Man(man::Args),
}

impl Command {
    /// How it shows progress, for the commands that have a dashboard.
    pub fn display(&self) -> Option<crate::show::display::DisplayArgs> {
        match self {
            Command::Load(a) => Some(a.display),
            Command::Full(a) => Some(a.display),
            Command::Capacity(a) => Some(a.display),
            Command::Chaos(a) => Some(a.display),
            Command::Monitor(a) => Some(a.display),
            _ => None,
        }
    }

    /// Whether it reaches services with the settings, so that a broken `.env` or config file
    /// must stop it (help and documents do not).
    pub fn uses_settings(&self) -> bool {
        !matches!(
            self,
            Command::Completions(_) | Command::Man(_) | Command::Compare(_) | Command::Merge(_)
        )
    }

    /// Runs the subcommand; the exit code says whether its checks passed. `cli` is the whole
    /// command line's definition, for the completion script.
    pub async fn run(self, s: &Settings, cli: clap::Command) -> Result<ExitCode> {
        match self {
            Command::Setup(a) => setup::command(s, a).await,
            Command::Load(a) => load::command(s, a).await,
            Command::Monitor(a) => monitor::command(s, a).await,
            Command::Full(a) => full::command(s, *a).await,
            Command::Capacity(a) => capacity::command(s, a).await,
            Command::Chaos(a) => chaos::command(s, a).await,
            Command::Compare(a) => compare::command(&a),
            Command::Merge(a) => merge::command(&a),
            Command::Consume(a) => consume::command(s, a).await,
            Command::Replay(a) => replay::command(s, a).await,
            Command::Verify(a) => verify::command(s, a).await,
            Command::Cleanup(a) => cleanup::command(s, a).await,
            Command::Config(a) => config::command(s, &a),
            Command::Completions(a) => completions::command(&a, cli),
            Command::Man(a) => man::command(&a, cli),
        }
    }
}
