//! Flags and flag parsers that several subcommands share.

use std::time::Duration;

use crate::pipeline::writer::{Shape, WriteModel};
use crate::run::session::PhaseOptions;

/// How events become outbox transactions: shared by `load`, `full` and `capacity`.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct WriteArgs {
    /// Rows per outbox transaction, all due at once, as an application writes them (1: one
    /// row per transaction) [default: with a rate, the events due within each --tx-window;
    /// without, 100].
    #[arg(long, visible_alias = "batch-size", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub tx_rows: Option<u64>,
    /// With a rate and without --tx-rows: one transaction per window of this length, holding
    /// the window's share of the rate, all due when it is written [default: 5ms up to 1,000
    /// events/s, growing with the rate to 25ms at 5,000].
    #[arg(long, value_parser = parse_window, conflicts_with = "tx_rows")]
    pub tx_window: Option<Duration>,
    /// Concurrent PostgreSQL connections writing the transactions, as an application's pool
    /// (each aggregate's events still commit in order, a join after its activity and user).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub connections: u64,
}

impl WriteArgs {
    /// The write model these flags ask for.
    pub fn model(&self) -> WriteModel {
        WriteModel {
            shape: match self.tx_rows {
                Some(n) => Shape::Rows(n as usize),
                None => self.tx_window.map_or(Shape::Scaled, Shape::Window),
            },
            connections: self.connections.max(1) as usize,
        }
    }
}

/// `--tx-window`: a duration from 1 ms to 1 s.
fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(1) {
        return Err(format!("`{s}` is out of range: a window is 1ms to 1s"));
    }
    Ok(d)
}

/// How events are generated and paced: shared by `load` and `full`.
#[derive(clap::Args, Clone, Debug)]
pub struct PacingArgs {
    /// How events become transactions.
    #[command(flatten)]
    pub write: WriteArgs,
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
            write: self.write.model(),
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

/// A duration such as `90s`, `10m` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 90s, 10m or 1h"))
}

/// How long a run with an end keeps retrying what fails, shared by `load`, `full` and
/// `capacity`.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct RetryArgs {
    /// How long a failing MongoDB write or dead-letter send is retried (the run shows DEGRADED
    /// with the cause meanwhile) before the run fails with exit 3 naming it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub retry_limit: Duration,
}

impl RetryArgs {
    /// The consumer's options with this limit.
    pub fn consumer(&self) -> crate::pipeline::consumer::ConsumerOptions {
        crate::pipeline::consumer::ConsumerOptions {
            retry_limit: Some(self.retry_limit),
            ..Default::default()
        }
    }
}

/// A positive, finite number (a rate or a latency target).
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// A subcommand's flags parsed from `argv` (without the program name), for unit tests.
#[cfg(test)]
pub(crate) fn parse<A: clap::Args + clap::FromArgMatches>(argv: &[&str]) -> A {
    let cmd = A::augment_args(clap::Command::new("pipedemo"));
    let m = cmd
        .try_get_matches_from(std::iter::once("pipedemo").chain(argv.iter().copied()))
        .unwrap();
    A::from_arg_matches(&m).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacing(tx_rows: Option<u64>, rate: Option<f64>) -> PacingArgs {
        PacingArgs {
            write: WriteArgs {
                tx_rows,
                ..WriteArgs::default()
            },
            rate,
            batch_delay_ms: None,
            timeout_secs: 120,
        }
    }

    #[test]
    fn a_phase_writes_in_windows_unless_told_rows() {
        let p = pacing(None, None).phase(1000, Some(4000.0), 0, Some(7));
        assert_eq!((p.events, p.rate), (1000, Some(4000.0)));
        assert_eq!(p.write, WriteModel::default());
        assert_eq!(p.seed, Some(7));
        // --rate wins over the phase's own rate; --tx-rows over the window.
        let p = pacing(Some(100), Some(50.0)).phase(10, Some(4000.0), 0, None);
        assert_eq!((p.write.shape, p.rate), (Shape::Rows(100), Some(50.0)));
        assert_eq!(
            pacing(None, None).phase(10, None, 10, None).batch_delay,
            Duration::from_millis(10)
        );
    }

    #[test]
    fn write_flags_become_a_write_model() {
        let w: WriteArgs = parse(&["--tx-rows", "1", "--connections", "8"]);
        assert_eq!(
            w.model(),
            WriteModel {
                shape: Shape::Rows(1),
                connections: 8
            }
        );
        let w: WriteArgs = parse(&["--batch-size", "100"]);
        assert_eq!(w.model().shape, Shape::Rows(100));
        let w: WriteArgs = parse(&["--tx-window", "25ms"]);
        assert_eq!(w.model().shape, Shape::Window(Duration::from_millis(25)));
        assert!(parse_window("0s").is_err() && parse_window("2s").is_err());
    }

    #[test]
    fn durations_and_positive_numbers() {
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("90s, 10m or 1h"));
        assert_eq!(positive("2.5"), Ok(2.5));
        for bad in ["0", "-1", "inf", "NaN", "x"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert!(positive_rate("0").is_err());
    }
}
