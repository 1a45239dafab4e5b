//! A one-phase load with the consumer in this process: what `load` runs on a display.

use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::outcome::PhaseResult;
use super::session::{PhaseOptions, RunPlan, Session};
use crate::config::Settings;
use crate::pipeline::consumer::ConsumerOptions;
use crate::telemetry::live::Shared;

/// Options of `load`: one phase, and the consumer's tuning.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The events and their pacing.
    pub phase: PhaseOptions,
    /// Consumer tuning.
    pub consumer: ConsumerOptions,
    /// The run it belongs to (one of several generators, or alone).
    pub run: RunPlan,
}

/// Runs a one-phase load with no display.
pub async fn run(s: &Settings, opts: &LoadOptions, stop: CancellationToken) -> Result<PhaseResult> {
    run_with(s, opts, stop, |_| {}).await
}

/// Like [`run`]; `on_start` gets the session's live state, for a display running meanwhile.
pub async fn run_with(
    s: &Settings,
    opts: &LoadOptions,
    stop: CancellationToken,
    on_start: impl FnOnce(Shared),
) -> Result<PhaseResult> {
    // The consumer outlives `stop`: an interrupted load stops inserting, then still waits
    // (up to 30 s) for what it inserted, so that it can tell whether that all arrived.
    let mut session = Session::start(s, opts.consumer.clone(), &CancellationToken::new()).await?;
    session.drain_on_stop = opts.phase.timeout.min(Duration::from_secs(30));
    session.run = opts.run.clone();
    on_start(session.live.clone());
    let r = session.run_phase("load", &opts.phase, &stop).await;
    session.finish().await?;
    r
}
