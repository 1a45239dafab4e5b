//! `pipedemo load`: generates events into the outbox while the consumer runs in this process,
//! until every one of them is in MongoDB.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::display::{DisplayArgs, Shown};
use super::session::{PhaseOptions, PhaseResult, Session};
use super::signals::stop_on_signals;
use crate::config::Settings;
use crate::exit::Exit;
use crate::pipeline::consumer::ConsumerOptions;
use crate::show::report;
use crate::telemetry::live::Shared;

/// How events are generated and paced: shared by `load` and `full`.
#[derive(clap::Args, Clone, Debug)]
pub struct PacingArgs {
    /// Rows per INSERT transaction [default: 100; with a rate, about 5 ms of events].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: Option<u64>,
    /// Target insert rate in events per second, open loop (default: as fast as batches go).
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Pause after each batch, in milliseconds [default: 0; 10 for `full --burst`].
    #[arg(long)]
    pub batch_delay_ms: Option<u64>,
    /// Seconds to wait, after a phase's last insert, for its events to reach MongoDB.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

impl PacingArgs {
    /// The options of a phase of `events` at `rate` (the flag's when `None`), with this
    /// command's default batch delay.
    pub fn phase(
        &self,
        events: u64,
        rate: Option<f64>,
        default_delay_ms: u64,
        seed: Option<u64>,
    ) -> PhaseOptions {
        let rate = self.rate.or(rate);
        PhaseOptions {
            events,
            // Paced, a batch holds a few milliseconds of events: a larger one would be a burst.
            batch_size: self
                .batch_size
                .map(|b| b as usize)
                .unwrap_or_else(|| rate.map_or(100, crate::check::capacity::batch_size)),
            rate,
            batch_delay: Duration::from_millis(self.batch_delay_ms.unwrap_or(default_delay_ms)),
            timeout: Duration::from_secs(self.timeout_secs),
            seed,
        }
    }
}

/// `--rate`: a positive, finite number of events per second.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err("must be a positive number of events per second".into()),
    }
}

/// The flags of `pipedemo load`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Number of events (50% UserCreated, 30% ActivityCreated, 20% ParticipantJoined).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..=10_000_000),
          required_unless_present = "duration", conflicts_with = "duration")]
    pub events: Option<u64>,
    /// Instead of --events: run this long at --rate, e.g. `10m` (a soak run; the report
    /// shows latency and memory over time).
    #[arg(long, value_parser = parse_duration, requires = "rate")]
    pub duration: Option<Duration>,
    /// How events are batched and paced.
    #[command(flatten)]
    pub pacing: PacingArgs,
    /// Seed for reproducible fake data.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

/// Options of `load`: one phase, and the consumer's tuning.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The events and their pacing.
    pub phase: PhaseOptions,
    /// Consumer tuning.
    pub consumer: ConsumerOptions,
}

impl Args {
    /// The events to generate: as asked, or `--rate` × `--duration`.
    pub fn event_count(&self) -> u64 {
        match (self.events, self.duration, self.pacing.rate) {
            (Some(n), _, _) => n,
            (None, Some(d), Some(rate)) => ((rate * d.as_secs_f64()).round() as u64).max(1),
            // clap requires one of the two; a run of one event is the harmless fallback.
            _ => 1,
        }
    }
}

/// A duration such as `90s`, `10m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 90s, 10m or 1h"))
}

impl From<&Args> for LoadOptions {
    fn from(a: &Args) -> Self {
        LoadOptions {
            phase: a.pacing.phase(a.event_count(), None, 0, a.seed),
            consumer: ConsumerOptions::default(),
        }
    }
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
    on_start(session.live.clone());
    let r = session.run_phase("load", &opts.phase, &stop).await;
    session.finish().await?;
    r
}

/// `pipedemo load`: the load on a display, then its summary.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let opts = LoadOptions::from(&a);
    let stop = stop_on_signals();
    let mut shown = None;
    let result = run_with(s, &opts, stop.clone(), |live| {
        shown = Some(Shown::start(live, a.display, &stop));
    })
    .await;
    if let Some(shown) = shown {
        shown.end().await;
    }
    let result = result?;
    if a.json {
        super::output::print_json(&result.summary())?;
    } else {
        print!("{}", report::load(&result));
    }
    if let Some(first) = result.missing.first() {
        eprintln!(
            "✗ {} of {} inserted events did not reach MongoDB within {} s (first: {first}); \
             check `scripts/stack.sh status` and the connector with `pipedemo setup --keep`",
            result.missing.len(),
            result.sent,
            a.pacing.timeout_secs,
        );
    }
    Ok(if stop.is_cancelled() {
        Exit::Interrupted
    } else if !result.missing.is_empty() {
        Exit::CheckFailed
    } else {
        Exit::Success
    }
    .into())
}
