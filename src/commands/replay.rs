//! `pipedemo replay`: moves the consumer group back to the start of the topic and consumes
//! everything again, stopping once it has caught up with where the topic ended when the
//! replay began. With idempotent read models nothing changes: every event is found already
//! applied, which `verify --checksum` before and after proves. It also rebuilds read models
//! that were lost, from the topic alone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::signals::stop_on_signals;
use crate::config::Settings;
use crate::pipeline::consumer::{self, ConsumerOptions, Totals};
use crate::pipeline::kafka::{self, ResetTo};
use crate::telemetry::live::{self, Sink};
use crate::telemetry::metrics;

/// The flags of `pipedemo replay`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Give up when not caught up after this long, e.g. `10m` (a bare number is seconds).
    #[arg(long, visible_alias = "timeout-secs", default_value = "10m",
          value_parser = super::flags::secs_or_duration)]
    pub timeout: Duration,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipedemo replay`.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let r = run(s, a.timeout, stop_on_signals()).await?;
    if a.json {
        super::output::print_json(crate::check::figures::Kind::Replay, &r)?;
    } else {
        println!("{}", r.describe());
    }
    if !r.complete {
        bail!(
            "the replay stopped before reaching the end of {}; run `pipedemo replay` \
             again (replays are idempotent)",
            s.kafka.topics().join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a replay did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Messages in the topic when the replay began (all partitions).
    pub messages: i64,
    /// Events written now (missing from the read models before).
    pub applied: u64,
    /// Events found already written: nothing changed for them.
    pub already_applied: u64,
    /// Messages dead-lettered again.
    pub dead_lettered: u64,
    /// Messages skipped on purpose (snapshot reads, deletes, tombstones, …).
    pub skipped: u64,
    /// False when stopped (signal or timeout) before catching up.
    pub complete: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Replays the whole topic through the consumer. No other consumer of the group may run.
/// The events' timing records are not appended to the metrics file: a replayed event's
/// latency would be measured from its original insert, which says nothing about the pipeline.
pub async fn run(s: &Settings, timeout: Duration, stop: CancellationToken) -> Result<ReplayReport> {
    let started = Instant::now();
    kafka::require_topics(&s.kafka).await?;
    crate::provision::ownership::require_own_group(s, "replay").await?;
    let ours = crate::provision::ownership::own_topics(s).await?;
    ours.require(&s.kafka)?;
    let topics = s.kafka.topics();
    for topic in &topics {
        kafka::reset_group(&s.kafka, topic, ResetTo::Earliest).await?;
    }
    let ends = kafka::watermarks_of(&s.kafka, &topics).await?;
    let messages: i64 = ends
        .iter()
        .flat_map(|(_, w)| w)
        .map(|w| w.high - w.low)
        .sum();
    tracing::info!(topics = %topics.join(", "), messages, group = %s.kafka.group, "replaying from the start of the topics");

    let (tx, rx) = metrics::channel();
    let halt = stop.child_token();
    let consumer = consumer::start(s, ours, ConsumerOptions::default(), tx, &halt).await?;
    // The consumer logs outages itself; its per-event records are not kept (see above).
    let drain = tokio::spawn(live::collect(rx, Sink::default()));

    let probe = kafka::LagProbe::new(&s.kafka, &topics)?;
    let deadline = Instant::now() + timeout;
    let mut last_log = Instant::now();
    let mut complete = false;
    while !halt.is_cancelled() {
        let behind = probe.behind(&ends).await?;
        if behind == 0 {
            complete = true;
            break;
        }
        if consumer.is_finished() {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(behind, "replay timed out before catching up");
            break;
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            tracing::info!(replayed = messages - behind, messages, "replay in progress");
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let totals: Totals = consumer.finish().await?;
    drain.await??;
    Ok(ReplayReport {
        messages,
        applied: totals.applied,
        already_applied: totals.already_applied,
        dead_lettered: totals.dead_lettered,
        skipped: totals.skipped,
        complete,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl ReplayReport {
    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "Replayed {} messages in {:.1} s: {} applied, {} already applied (unchanged), {} \
             dead-lettered, {} skipped{}",
            self.messages,
            self.seconds,
            self.applied,
            self.already_applied,
            self.dead_lettered,
            self.skipped,
            if self.complete {
                ""
            } else {
                " (stopped before the end)"
            }
        )
    }
}
