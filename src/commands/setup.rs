//! `pipedemo setup`: the flags, and [`crate::provision::setup`] run with them.

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Settings;
use crate::provision::connector::Tuning;
use crate::provision::setup::{self, SetupOptions};

/// The flags of `pipedemo setup`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Keep earlier demo data (outbox rows, the topic's messages, read models, metrics file).
    #[arg(long)]
    pub keep: bool,
    /// Start the consumer group at the beginning of the topic instead of its end.
    #[arg(long)]
    pub from_earliest: bool,
    /// Partitions of the outbox topic, when setup creates it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub partitions: i32,
    /// Register the connector with Debezium's default settings instead of pipedemo's
    /// latency tuning (for comparisons).
    #[arg(long)]
    pub debezium_defaults: bool,
    /// Take over (and, without --keep, clear) an outbox table, read-model database, topic or
    /// connector that pipedemo did not create. Without it, setup refuses and names it.
    #[arg(long)]
    pub force: bool,
}

impl From<&Args> for SetupOptions {
    fn from(a: &Args) -> Self {
        SetupOptions {
            keep: a.keep,
            from_earliest: a.from_earliest,
            partitions: a.partitions,
            tuning: if a.debezium_defaults {
                Tuning::Defaults
            } else {
                Tuning::Tuned
            },
            force: a.force,
            show_connector_config: true,
        }
    }
}

/// `pipedemo setup`.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    super::chaos::restore_left(s).await?;
    setup::run(s, &SetupOptions::from(&a)).await?;
    Ok(ExitCode::SUCCESS)
}
