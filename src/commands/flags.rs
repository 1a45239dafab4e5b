//! Flags and flag parsers that several subcommands share.

use std::time::Duration;

use crate::run::session::PhaseOptions;

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

    fn pacing(batch_size: Option<u64>, rate: Option<f64>) -> PacingArgs {
        PacingArgs {
            batch_size,
            rate,
            batch_delay_ms: None,
            timeout_secs: 120,
        }
    }

    #[test]
    fn a_paced_phase_batches_about_5_ms_of_events_unless_told() {
        let p = pacing(None, None).phase(1000, Some(4000.0), 0, Some(7));
        assert_eq!((p.events, p.batch_size, p.rate), (1000, 20, Some(4000.0)));
        assert_eq!(p.seed, Some(7));
        assert_eq!(pacing(None, None).phase(10, None, 10, None).batch_size, 100);
        // --rate wins over the phase's own rate; --batch-size over the 5 ms rule.
        let p = pacing(Some(100), Some(50.0)).phase(10, Some(4000.0), 0, None);
        assert_eq!((p.batch_size, p.rate), (100, Some(50.0)));
        assert_eq!(
            pacing(None, None).phase(10, None, 10, None).batch_delay,
            Duration::from_millis(10)
        );
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
