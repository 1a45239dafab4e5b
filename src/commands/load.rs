//! `pipedemo load`: generates events into the outbox while the consumer runs in this process,
//! until every one of them is in MongoDB.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::flags::{parse_duration, PacingArgs, RetryArgs, RunArgs, ThresholdArgs};
use super::output;
use super::signals::stop_on_signals;
use crate::check::figures::Kind;
use crate::config::Settings;
use crate::exit::Exit;
use crate::run::load::{run_with, LoadOptions};
use crate::show::display::{DisplayArgs, Shown};
use crate::show::report;

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
    /// The run this load is one generator of.
    #[command(flatten)]
    pub run: RunArgs,
    /// How long failures are retried.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Gates on the run's figures.
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

impl Args {
    /// The events to generate: as asked, or `--rate` × `--duration`.
    pub fn event_count(&self) -> u64 {
        match (self.events, self.duration, self.pacing.rate) {
            (Some(n), _, _) => n,
            (None, Some(d), Some(rate)) => crate::run::session::events_at(rate, d),
            // clap requires one of the two; a run of one event is the harmless fallback.
            _ => 1,
        }
    }
}

impl From<&Args> for LoadOptions {
    fn from(a: &Args) -> Self {
        LoadOptions {
            phase: a.pacing.phase(a.event_count(), None, 0, a.seed),
            consumer: a.retry.consumer(),
            run: a.run.plan(),
        }
    }
}

/// `pipedemo load`: the load on a display, then its summary.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let opts = LoadOptions::from(&a);
    let thresholds = a.thresholds.list(Kind::Load, [])?;
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
    let mut doc = output::document(Kind::Load, &result.summary())?;
    let checked = output::gate(Kind::Load, &mut doc, &thresholds);
    if a.json {
        output::print_document(&doc)?;
    } else {
        print!("{}", report::load(&result));
    }
    output::human(a.json, &output::threshold_lines(&checked));
    if let Some(first) = result.missing.first() {
        eprintln!(
            "✗ {} of {} inserted events did not reach MongoDB within {} (first: {first}); {}",
            result.missing.len(),
            result.sent,
            humantime::format_duration(a.pacing.timeout),
            crate::check::verify::missing_hint(result.problem_while_waiting.as_deref()),
        );
    }
    Ok(if stop.is_cancelled() {
        Exit::Interrupted
    } else if !result.missing.is_empty() || checked.iter().any(|c| !c.passed) {
        Exit::CheckFailed
    } else {
        Exit::Success
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::flags::parse;

    fn args(argv: &[&str]) -> Args {
        parse(argv)
    }

    fn rejected(argv: &[&str]) -> bool {
        let cmd = <Args as clap::Args>::augment_args(clap::Command::new("pipedemo"));
        cmd.try_get_matches_from(std::iter::once("pipedemo").chain(argv.iter().copied()))
            .is_err()
    }

    #[test]
    fn a_soak_is_its_rate_times_its_duration() {
        assert_eq!(args(&["--events", "1000"]).event_count(), 1000);
        assert_eq!(
            args(&["--duration", "3m", "--rate", "800"]).event_count(),
            144_000
        );
        assert!(rejected(&["--duration", "3m"]));
        assert!(rejected(&["--events", "5", "--duration", "3m"]));
    }

    #[test]
    fn a_paced_load_writes_in_windows_unless_told() {
        let o = LoadOptions::from(&args(&[
            "--events", "4000", "--rate", "4000", "--seed", "3",
        ]));
        assert_eq!(
            o.phase.write,
            crate::pipeline::writer::WriteModel::default()
        );
        assert_eq!(o.phase.seed, Some(3));
        assert_eq!(o.consumer.retry_limit, Some(Duration::from_secs(60)));
        let o = LoadOptions::from(&args(&[
            "--events",
            "40",
            "--tx-rows",
            "1",
            "--connections",
            "8",
        ]));
        assert_eq!(
            o.phase.write.to_string(),
            "1 row per transaction, 8 connections"
        );
    }
}
