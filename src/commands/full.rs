//! `pipedemo full`: the whole show on a display, then both reports and the closing lines. The
//! show itself is [`crate::run::full`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::flags::{parse_duration, PacingArgs, RetryArgs, ThresholdArgs};
use super::output::human;
use super::signals::stop_on_signals;
use crate::check::figures::Kind;
use crate::check::targets::Targets;
use crate::check::thresholds::{self, Threshold};
use crate::check::verify::pass_fail_text;
use crate::config::Settings;
use crate::pipeline::store::ReadModels;
use crate::provision::connector::Connect;
use crate::provision::ownership;
use crate::provision::setup::SetupOptions;
use crate::run::capacity::CapacityOptions;
use crate::run::full::{self, FullOptions, Observer};
use crate::run::outcome::{FullOutcome, PhaseResult, PhaseSummary, Step};
use crate::run::session;
use crate::show::display::{DisplayArgs, Shown};
use crate::show::{demo_report, report};
use crate::telemetry::live::Shared;

/// The flags of `pipedemo full`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Events per phase, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub phases: Vec<u64>,
    /// How long each phase lasts, comma-separated (the last repeats; a bare number is
    /// seconds): each phase is offered open loop at its events ÷ its duration, a rate this
    /// stack sustains.
    #[arg(long, visible_alias = "phase-secs", value_delimiter = ',', default_value = "5s,15s,30s,75s",
          value_parser = phase_duration, conflicts_with_all = ["rate", "burst"])]
    pub phase_durations: Vec<Duration>,
    /// The old overload show: unpaced 100-row batches every 10 ms, faster than the pipeline
    /// absorbs; the report says so, and latency targets are not enforced.
    #[arg(long)]
    pub burst: bool,
    /// How long each step of the closing capacity phase lasts, e.g. `5s` for a quick look
    /// (the default is `pipedemo capacity`'s, so that the two figures mean the same: 5 s steps
    /// at rates near the knee pass or fail by luck).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub capacity_step: Duration,
    /// The closing capacity phase's p99 target, e.g. `50ms` (a bare number is ms).
    #[arg(long, default_value = "50ms", value_parser = super::flags::latency_ms)]
    pub slo_p99: f64,
    /// The closing capacity phase's first rate, events/s (as `pipedemo capacity --start-rate`).
    #[arg(long, default_value_t = 500.0, value_parser = super::flags::positive)]
    pub capacity_start_rate: f64,
    /// The closing capacity phase's highest rate, events/s: the sweep goes no further, so that
    /// a shared cluster is never offered more (as `pipedemo capacity --max-rate`).
    #[arg(long, default_value_t = 20_000.0, value_parser = super::flags::positive)]
    pub capacity_max_rate: f64,
    /// Skip the closing capacity phase.
    #[arg(long)]
    pub no_capacity: bool,
    /// Keep every capacity step's events in the read models, as one long run would, instead
    /// of starting each step on empty ones (as `pipedemo capacity --growing-store`).
    #[arg(long)]
    pub growing_store: bool,
    /// Add a chaos phase at the end: faults one at a time under a paced load (see
    /// `pipedemo chaos`), every one recovered and nothing lost, or the show fails.
    #[arg(long)]
    pub chaos: bool,
    /// The chaos phase's offered events/s.
    #[arg(long, default_value_t = 300.0, requires = "chaos")]
    pub chaos_rate: f64,
    /// The p99 (from schedule) the chaos phase's pipeline must be back within after each
    /// fault, e.g. `100ms` (as `pipedemo chaos --slo-p99`).
    #[arg(long, default_value = "100ms", value_parser = super::flags::latency_ms)]
    pub chaos_slo_p99: f64,
    /// The chaos phase's schedule.
    #[command(flatten)]
    pub faults: super::chaos::FaultArgs,
    /// The latency and success targets every phase is held to.
    #[command(flatten)]
    pub targets: TargetArgs,
    /// How long to warm the JVMs (Kafka, Connect) at 400 events/s before the show, in a
    /// phase of its own that is not held to the targets; `0s` skips it.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub prewarm: Duration,
    /// How events are batched and paced.
    #[command(flatten)]
    pub pacing: PacingArgs,
    /// How long failures are retried.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Partitions of the outbox topic, when setup creates it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub partitions: i32,
    /// Take over an outbox table, read-model database, topic or connector that pipedemo did
    /// not create (setup refuses otherwise).
    #[arg(long)]
    pub force: bool,
    /// Gates on the show's figures (latency and stages: the slowest phase's, the capacity
    /// sweep left out; throughput: the last phase's; capacity: the sweep's sustained rate).
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Same as `--threshold 'p95<=Xms'`: fail when a phase's p95 end-to-end latency is above
    /// this, in ms.
    #[arg(long)]
    pub max_p95_ms: Option<f64>,
    /// Same as `--threshold 'throughput>=X'`: fail when the last phase's throughput is
    /// below this, in events/s.
    #[arg(long)]
    pub min_throughput: Option<f64>,
    /// Compare the run with this earlier `demo_report.json` (or `full --json`): a section
    /// in both reports, and exit 1 when a figure got worse beyond --max-regression.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: how much worse a figure may get, e.g. `10%`.
    #[arg(long, default_value = "10%", value_parser = crate::check::compare::parse_pct, requires = "baseline")]
    pub max_regression: f64,
    /// JSON report path.
    #[arg(long, default_value = "demo_report.json")]
    pub report_json: PathBuf,
    /// HTML report path.
    #[arg(long, default_value = "demo_report.html")]
    pub report_html: PathBuf,
    /// Print the final outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

/// The targets each phase of the show is held to: the seed's by default. A stack across a
/// network, or a team with its own objective, sets its own; the reports say which held.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct TargetArgs {
    /// A phase's end-to-end p50 must be below this, e.g. `30ms` (a bare number is ms).
    #[arg(long, default_value = "30ms", value_parser = super::flags::latency_ms)]
    pub target_p50: f64,
    /// A phase's end-to-end p95 must be below this.
    #[arg(long, default_value = "100ms", value_parser = super::flags::latency_ms)]
    pub target_p95: f64,
    /// A phase's end-to-end p99 must be below this.
    #[arg(long, default_value = "200ms", value_parser = super::flags::latency_ms)]
    pub target_p99: f64,
    /// At least this share of a phase's events must arrive within the phase, e.g. `99.9%`.
    #[arg(long, default_value = "99.9%", value_parser = success_pct)]
    pub target_success: f64,
}

impl From<TargetArgs> for Targets {
    fn from(a: TargetArgs) -> Self {
        Targets {
            p50_ms: a.target_p50,
            p95_ms: a.target_p95,
            p99_ms: a.target_p99,
            success_pct: a.target_success,
        }
    }
}

/// `--target-success`: a percentage up to 100.
fn success_pct(s: &str) -> Result<f64, String> {
    let p = crate::check::compare::parse_pct(s)?;
    if p > 100.0 {
        return Err(format!("`{s}` is above 100%"));
    }
    Ok(p)
}

/// `--phase-durations`: 1 s to a day each.
fn phase_duration(s: &str) -> Result<Duration, String> {
    let d = super::flags::secs_or_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(format!("`{s}` is out of range: a phase lasts 1s to 24h"));
    }
    Ok(d)
}

/// The pause after each batch of `--burst` when `--batch-delay-ms` is not given.
const BURST_BATCH_DELAY_MS: u64 = 10;

impl From<&Args> for FullOptions {
    fn from(a: &Args) -> Self {
        FullOptions {
            phases: a
                .phases
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    if a.burst {
                        return a.pacing.phase(n, None, BURST_BATCH_DELAY_MS, None);
                    }
                    let d = a.phase_durations.get(i).or(a.phase_durations.last());
                    let rate = d.map(|d| n as f64 / d.as_secs_f64());
                    a.pacing.phase(n, rate, 0, None)
                })
                .collect(),
            prewarm: session::prewarm(a.prewarm),
            burst: a.burst,
            targets: a.targets.into(),
            capacity: (!a.no_capacity).then_some(CapacityOptions {
                step: a.capacity_step,
                slo_p99_ms: a.slo_p99,
                start_rate: a.capacity_start_rate,
                max_rate: a.capacity_max_rate,
                growth: 2.0,
                refinements: 5,
                write: a.pacing.write.model(),
                fresh_store: !a.growing_store,
            }),
            chaos: a.chaos.then(|| {
                a.faults
                    .options(a.chaos_rate, a.chaos_slo_p99, &a.pacing.write)
            }),
            setup: SetupOptions::fresh(a.partitions, a.force),
            consumer: a.retry.consumer(),
            thresholds: a
                .thresholds
                .thresholds
                .iter()
                .cloned()
                .chain(a.max_p95_ms.map(Threshold::max_p95_ms))
                .chain(a.min_throughput.map(Threshold::min_throughput))
                .collect(),
            report_json: a.report_json.clone(),
            report_html: a.report_html.clone(),
        }
    }
}

/// The display of `full`: phase tables between phases (headless) or after the run (TUI).
struct FullDisplay {
    args: DisplayArgs,
    stop: CancellationToken,
    shown: Option<Shown>,
    phases: Vec<PhaseSummary>,
    detail: Vec<String>,
    live: Option<Shared>,
}

impl Observer for FullDisplay {
    fn started(&mut self, live: Shared) {
        self.live = Some(live.clone());
        self.shown = Some(Shown::start(live, self.args, &self.stop));
    }

    fn phase_done(&mut self, r: &PhaseResult) {
        self.phases.push(r.summary());
        let detail = self.live.as_ref().and_then(|l| {
            let l = l.lock();
            l.phases
                .last()
                .filter(|p| !p.detail.is_empty())
                .map(|p| report::event_lines(&p.detail))
        });
        if self.shown.as_ref().is_some_and(|s| s.tui) {
            self.detail.extend(detail);
            return;
        }
        if let Some(d) = detail {
            eprint!("{d}");
        }
        eprintln!(
            "\nPhase {} done:\n{}",
            r.name,
            report::phase_table(&self.phases)
        );
    }

    fn capacity_step(&mut self, s: &Step) {
        if !self.shown.as_ref().is_some_and(|s| s.tui) {
            eprintln!("capacity step:{}", report::capacity_step(s));
        }
    }
}

/// `pipedemo full`: the show on a display, both reports, and the closing lines.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let o = FullOptions::from(&a);
    thresholds::check_measurable(&o.thresholds, Kind::Full).map_err(crate::exit::config)?;
    // Read before the run: a wrong file is better said now than after the show.
    let baseline = a
        .baseline
        .as_deref()
        .map(|p| super::compare::read_of(p, Kind::Full))
        .transpose()?;
    super::chaos::restore_left(s).await?;
    let stop = stop_on_signals();
    let mut display = FullDisplay {
        args: a.display,
        stop: stop.clone(),
        shown: None,
        phases: Vec::new(),
        detail: Vec::new(),
        live: None,
    };
    let result = full::run(s, &o, &mut display, stop.clone()).await;
    if let Some(shown) = display.shown.take() {
        let tui = shown.tui;
        shown.end().await;
        if tui {
            let mut tables = String::new();
            for d in &display.detail {
                tables += &format!("Warm-up events:\n{d}");
            }
            tables += &format!("\nPhases:\n{}\n", report::phase_table(&display.phases));
            human(a.json, &tables);
        }
    }
    let (mut outcome, live, versions) = result?;
    if let Some(base) = &baseline {
        let doc = super::output::document(Kind::Full, &outcome)?;
        let c = crate::check::compare::compare(base, &doc, a.max_regression)
            .map_err(crate::exit::config)?;
        outcome.threshold_failures.extend(
            c.regressions
                .iter()
                .map(|r| format!("against the baseline: {r}")),
        );
        outcome.comparison = Some(c);
    }
    let connect = Connect::new(&s.connect)?;
    let store = ReadModels::connect(&s.mongo).await?;
    let method = demo_report::Method::new(
        versions.postgres,
        connect.kafka_version().await,
        versions.debezium,
        store.server_version().await,
        s.kafka.routing,
    );
    demo_report::write_json(&o.report_json, &outcome, &method)?;
    demo_report::write_html(&o.report_html, &outcome, &method, &live.lock())?;
    ownership::record_files(s, &[&o.report_json, &o.report_html]).await?;
    if a.json {
        super::output::print_json(Kind::Full, &outcome)?;
    } else {
        print!("{}", report::delivery_and_integrity(&outcome.verification));
    }
    human(a.json, &closing_lines(&outcome, &o));
    Ok(if stop.is_cancelled() {
        crate::exit::Exit::Interrupted.into()
    } else if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The assessment of every phase against the targets, the capacity, the thresholds that
/// broke, the verdict, the success rate and where the reports are.
fn closing_lines(outcome: &FullOutcome, o: &FullOptions) -> String {
    let mut out = String::new();
    out += &report::assessment(outcome);
    if let Some(c) = &outcome.capacity {
        out += &format!("{}\n", report::capacity_answer(c));
    }
    if let Some(c) = &outcome.chaos {
        out += &report::chaos(c);
    }
    out += &super::output::threshold_lines(&outcome.thresholds);
    if let Some(c) = &outcome.comparison {
        for r in &c.regressions {
            out += &format!("✗ against the baseline: {r}\n");
        }
        if c.passed {
            out += "✓ no figure worse than the baseline\n";
        }
    }
    let v = &outcome.verification;
    let rate = if outcome.total_secs > 0.0 {
        outcome.total_events as f64 / outcome.total_secs
    } else {
        0.0
    };
    let failures = outcome.failures();
    out += &format!(
        "\n{} Demo complete! {} events in the show's phases in {:.1} s ({rate:.0} events/s over \
         them; the pre-warm and the capacity sweep apart)\n",
        if failures.is_empty() { "✅" } else { "❌" },
        report::thousands(outcome.total_events),
        outcome.total_secs,
    );
    out += &format!(
        "   Success rate: {:.2}% ({} of {} events of the whole run verified, the sweep's \
         included) · integrity {}\n",
        v.success_rate,
        report::thousands(v.found_events),
        report::thousands(v.total_events),
        pass_fail_text(v.integrity_passed)
    );
    out += &format!(
        "   Reports: {} and {}\n",
        o.report_json.display(),
        o.report_html.display()
    );
    out += &report::run_verdict(&failures);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(argv: &[&str]) -> FullOptions {
        FullOptions::from(&crate::commands::flags::parse::<Args>(argv))
    }

    #[test]
    fn each_phase_is_offered_at_its_events_over_its_seconds() {
        let o = options(&[]);
        let rates: Vec<Option<f64>> = o.phases.iter().map(|p| p.rate).collect();
        assert_eq!(
            rates,
            [
                Some(2.0),
                Some(100.0 / 15.0),
                Some(1000.0 / 30.0),
                Some(10000.0 / 75.0)
            ]
        );
        assert!(o.prewarm.is_some() && o.capacity.is_some() && !o.burst);
        // The last duration repeats for phases beyond the list.
        let o = options(&["--phases", "10,20,30", "--phase-secs", "5"]);
        let rates: Vec<Option<f64>> = o.phases.iter().map(|p| p.rate).collect();
        assert_eq!(rates, [Some(2.0), Some(4.0), Some(6.0)]);
    }

    #[test]
    fn the_targets_are_the_seeds_unless_set() {
        assert_eq!(options(&[]).targets, Targets::default());
        let o = options(&[
            "--target-p50",
            "1s",
            "--target-p95",
            "2000",
            "--target-p99",
            "5s",
            "--target-success",
            "99%",
        ]);
        assert_eq!(
            o.targets,
            Targets {
                p50_ms: 1000.0,
                p95_ms: 2000.0,
                p99_ms: 5000.0,
                success_pct: 99.0
            }
        );
        for bad in [
            ["--target-p99", "fast"],
            ["--target-p95", "0"],
            ["--target-success", "101%"],
        ] {
            let cmd = <Args as clap::Args>::augment_args(clap::Command::new("pipedemo"));
            let argv = ["pipedemo"].iter().chain(&bad).copied();
            assert!(cmd.try_get_matches_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_burst_is_unpaced_with_a_pause_and_flags_become_options() {
        let o = options(&[
            "--burst",
            "--no-capacity",
            "--prewarm",
            "0s",
            "--max-p95-ms",
            "90",
        ]);
        assert!(o.phases.iter().all(|p| p.rate.is_none()
            && p.write == crate::pipeline::writer::WriteModel::default()
            && p.batch_delay == Duration::from_millis(BURST_BATCH_DELAY_MS)));
        assert!(o.burst && o.capacity.is_none() && o.prewarm.is_none());
        assert_eq!(o.thresholds, [Threshold::max_p95_ms(90.0)]);
        let o = options(&["--threshold", "p99<50ms", "--min-throughput", "100"]);
        let t: Vec<String> = o.thresholds.iter().map(|t| t.to_string()).collect();
        assert_eq!(t, ["p99<50ms", "throughput>=100"]);
    }
}
