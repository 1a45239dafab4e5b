//! Flags and flag parsers that several subcommands share.

use std::time::Duration;

use crate::pipeline::outbox::Retention;
use crate::pipeline::writer::{Shape, WriteModel};

pub use crate::numbers::{millis_or_duration, parse_duration, secs_or_duration};
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
    /// Delete each outbox row in the transaction that inserted it, as many teams run the
    /// outbox (Debezium captures the insert; the table stays empty); what was sent is kept in
    /// pipedemo_sent_events for `verify`.
    #[arg(long)]
    pub outbox_delete: bool,
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
            retention: if self.outbox_delete {
                Retention::Delete
            } else {
                Retention::Keep
            },
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
    /// Pause after each batch, e.g. `10ms` (a bare number is milliseconds) [default: 0; 10ms
    /// for `full --burst`].
    #[arg(long, visible_alias = "batch-delay-ms", value_parser = millis_or_duration)]
    pub batch_delay: Option<Duration>,
    /// How long to wait, after a phase's last insert, for its events to reach MongoDB, e.g.
    /// `2m` (a bare number is seconds).
    #[arg(long, visible_alias = "timeout-secs", default_value = "120s", value_parser = secs_or_duration)]
    pub timeout: Duration,
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
            batch_delay: self
                .batch_delay
                .unwrap_or(Duration::from_millis(default_delay_ms)),
            timeout: self.timeout,
            seed,
        }
    }
}

/// Which run a generator belongs to: several `load` processes (on any hosts) with the same
/// `--run` and `--generators` make one run, one schedule and one report.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// The run's name, the same on every generator of the run [default: a new id per process].
    #[arg(long = "run", env = "PIPEDEMO_RUN", value_name = "NAME", value_parser = run_name)]
    pub name: Option<String>,
    /// Generators of the run: each one started with the same --run waits for the others,
    /// then offers its share of --events and --rate on its own open-loop schedule.
    #[arg(long, env = "PIPEDEMO_GENERATORS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024), requires = "name")]
    pub generators: u32,
    /// How long a generator waits for the others to join.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub join_timeout: Duration,
}

impl RunArgs {
    /// The run these flags name.
    pub fn plan(&self) -> crate::run::session::RunPlan {
        let d = crate::run::session::RunPlan::default();
        crate::run::session::RunPlan {
            name: self.name.as_deref().map_or(d.name, Into::into),
            generators: self.generators,
            join_timeout: self.join_timeout,
            named: self.name.is_some(),
        }
    }
}

/// `--run`: a name that fits in a run tag.
fn run_name(s: &str) -> Result<String, String> {
    match crate::telemetry::tag::name_problem(s) {
        Some(why) => Err(format!("the run name {why}")),
        None => Ok(s.to_owned()),
    }
}

/// `--rate`: a positive, finite number of events per second.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err("must be a positive number of events per second".into()),
    }
}

/// A latency in milliseconds: `50`, `50ms` or `0.05s`.
pub fn latency_ms(s: &str) -> Result<f64, String> {
    let ms = match s.trim().parse::<f64>() {
        Ok(n) => n,
        Err(_) => parse_duration(s)?.as_secs_f64() * 1000.0,
    };
    if ms > 0.0 && ms.is_finite() {
        Ok(ms)
    } else {
        Err(format!("`{s}` is not a positive latency (e.g. 50ms)"))
    }
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
            batch_delay: None,
            timeout: Duration::from_secs(120),
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
                connections: 8,
                retention: Retention::Keep,
            }
        );
        let w: WriteArgs = parse(&["--outbox-delete"]);
        assert_eq!(w.model().retention, Retention::Delete);
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

    #[test]
    fn time_flags_take_durations_and_the_old_names_bare_numbers() {
        let p: PacingArgs = parse(&["--timeout", "2m", "--batch-delay", "10ms"]);
        assert_eq!(
            (p.timeout, p.batch_delay),
            (Duration::from_secs(120), Some(Duration::from_millis(10)))
        );
        let p: PacingArgs = parse(&["--timeout-secs", "90", "--batch-delay-ms", "5"]);
        assert_eq!(
            (p.timeout, p.batch_delay),
            (Duration::from_secs(90), Some(Duration::from_millis(5)))
        );
        assert_eq!(latency_ms("50"), Ok(50.0));
        assert_eq!(latency_ms("0.1s"), Ok(100.0));
        assert!(latency_ms("0").is_err() && latency_ms("soon").is_err());
    }
}

/// `--threshold`: gates on what a command measured, shared by `load`, `full`, `capacity` and
/// `chaos`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ThresholdArgs {
    /// Fail (exit 1) unless this holds, k6-style: `p99<50ms`, `p95<=100ms`,
    /// `success>=99.9%`, `throughput>=1000`, `stage.cdc.p99<20ms`, `capacity>=2000`,
    /// `recovery<30s`, `lost<=0`. Repeatable; each is printed with its verdict.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = crate::check::thresholds::parse)]
    pub thresholds: Vec<crate::check::thresholds::Threshold>,
}

impl ThresholdArgs {
    /// These gates and those of the old flags, refused when `kind` does not measure one.
    pub fn list(
        &self,
        kind: crate::check::figures::Kind,
        old: impl IntoIterator<Item = crate::check::thresholds::Threshold>,
    ) -> anyhow::Result<Vec<crate::check::thresholds::Threshold>> {
        let all: Vec<_> = self.thresholds.iter().cloned().chain(old).collect();
        crate::check::thresholds::check_measurable(&all, kind).map_err(crate::exit::config)?;
        Ok(all)
    }
}
