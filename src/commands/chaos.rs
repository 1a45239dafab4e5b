//! `pipedemo chaos`: a paced load while faults are injected one at a time, then `verify`;
//! per fault, when pipedemo noticed, the peak backlog, the recovery time, what was delivered
//! twice and what was lost.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::flags::{parse_duration, positive, ThresholdArgs, WriteArgs};
use super::output;
use super::signals::stop_on_signals;
use crate::check::figures::Kind;
use crate::check::verify;
use crate::config::Settings;
use crate::exit::Exit;
use crate::fault::Fault;
use crate::pipeline::consumer::ConsumerOptions;
use crate::run::chaos::{self, ChaosOptions, ChaosOutcome};
use crate::run::session::{Host, Session};
use crate::show::display::{DisplayArgs, Shown};
use crate::show::{demo_report, report};

/// The fault schedule's flags, shared by `chaos` and `full --chaos`.
#[derive(clap::Args, Clone, Debug)]
pub struct FaultArgs {
    /// The faults to inject, in order, comma-separated (default: every one available here;
    /// `pipedemo chaos --list` shows them and whether each can run).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Option<Vec<Fault>>,
    /// How long a stop, a pause or a second consumer lasts, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub fault_duration: Duration,
    /// Normal load before the first fault and after each recovery.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub gap: Duration,
    /// How long after clearing a fault the pipeline may take to recover (backlog back to
    /// its level before the fault and staying there for 2 s, p99 within the SLO); longer fails
    /// the run.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// The local stack's script, for the faults that stop its services.
    #[arg(long, value_name = "PATH", default_value = "scripts/stack.sh")]
    pub stack: PathBuf,
}

impl FaultArgs {
    /// The run's options at `rate` events/s.
    pub fn options(&self, rate: f64, slo_p99_ms: f64, write: &WriteArgs) -> ChaosOptions {
        ChaosOptions {
            rate,
            duration: None,
            faults: self.faults.clone(),
            fault_duration: self.fault_duration,
            gap: self.gap,
            recovery_timeout: self.recovery_timeout,
            slo_p99_ms,
            stack: Some(self.stack.clone()),
            write: write.model(),
            seed: None,
        }
    }
}

/// The flags of `pipedemo chaos`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Offered events/s, open loop, during the whole run.
    #[arg(long, default_value_t = 300.0, value_parser = positive)]
    pub rate: f64,
    /// The longest the load runs (default: until every fault has run and recovered); faults
    /// that no longer fit are skipped.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The p99 from schedule that a recovered pipeline is back within, e.g. `100ms` (a bare
    /// number is ms).
    #[arg(long, default_value = "100ms", value_parser = super::flags::latency_ms)]
    pub slo_p99: f64,
    /// The schedule.
    #[command(flatten)]
    pub faults: FaultArgs,
    /// How the load writes.
    #[command(flatten)]
    pub write: WriteArgs,
    /// Seed for reproducible fake data.
    #[arg(long)]
    pub seed: Option<u64>,
    /// List the faults, what each does and whether it can run here, and exit.
    #[arg(long)]
    pub list: bool,
    /// Clear a fault that a chaos run left in force when it was killed (it records each
    /// fault before injecting it), and exit. `chaos`, `setup`, `full` and `capacity` do this
    /// first by themselves.
    #[arg(long, conflicts_with = "list")]
    pub restore: bool,
    /// Gates on the run's figures (`recovery<30s`, `recovery.kafka-stop<40s`, `lost<=0`,
    /// `p99<…` over the whole run, faults included).
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML report (backlog and p99 over time, faults shaded) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

impl From<&Args> for ChaosOptions {
    fn from(a: &Args) -> Self {
        ChaosOptions {
            duration: a.duration,
            seed: a.seed,
            ..a.faults.options(a.rate, a.slo_p99, &a.write)
        }
    }
}

/// Clears, and says so, a fault that a chaos run left in force when it was killed: a
/// command that sets the pipeline up or breaks it must not start with a fault of an earlier
/// run still in force.
pub async fn restore_left(s: &Settings) -> Result<()> {
    if let Some(done) = chaos::restore(s).await? {
        eprintln!("{done}");
    }
    Ok(())
}

/// The faults that cannot run, each with why.
fn refused(available: &[(Fault, Option<String>)]) -> Vec<String> {
    available
        .iter()
        .filter_map(|(f, why)| why.as_ref().map(|w| format!("{f} ({w})")))
        .collect()
}

/// `pipedemo chaos`.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let o = ChaosOptions::from(&a);
    if a.list {
        print!("{}", report::fault_list(&chaos::available(s, &o).await?));
        return Ok(Exit::Success.into());
    }
    if a.restore {
        match chaos::restore(s).await? {
            Some(done) => println!("{done}"),
            None => println!(
                "no chaos fault was left in force (no {})",
                chaos::in_force::path(s).display()
            ),
        }
        return Ok(Exit::Success.into());
    }
    restore_left(s).await?;
    let thresholds = a.thresholds.list(Kind::Chaos, [])?;
    if o.faults.is_some() {
        // Faults asked for by name that cannot run here: a run that skipped them would pass
        // having tested nothing of what was asked.
        let refused = refused(&chaos::available(s, &o).await?);
        if !refused.is_empty() {
            return Err(crate::exit::config(format!(
                "cannot inject {}; `pipedemo chaos --list` shows what can run here",
                refused.join("; ")
            )));
        }
    }
    let stop = stop_on_signals();
    // The consumer processes stop when the session finishes, not on the signal: an
    // interrupted run still clears its fault and drains what it inserted.
    let opts = ConsumerOptions {
        retry_limit: None,
        ..ConsumerOptions::default()
    };
    let mut session =
        Session::start_on(s, opts, &CancellationToken::new(), Host::Children(None)).await?;
    let shown = Shown::start(session.live.clone(), a.display, &stop);
    let r = chaos::run(&mut session, s, &o, &stop).await;
    let finished = session.finish().await;
    shown.end().await;
    let mut outcome: ChaosOutcome = r?;
    finished?;
    match verify::run(s, false).await {
        Ok(v) => outcome.judge(&v),
        // A service a fault left down: the run has failed already, and says so below.
        Err(e) => outcome.unverified(&e),
    }
    let mut doc = output::document(Kind::Chaos, &outcome)?;
    let checked = output::gate(Kind::Chaos, &mut doc, &thresholds);
    if a.json {
        output::print_document(&doc)?;
    } else {
        print!("{}", report::chaos(&outcome));
    }
    output::human(a.json, &output::threshold_lines(&checked));
    if let Some(path) = &a.html {
        demo_report::write_chaos_html(path, &outcome)?;
        eprintln!("HTML report: {}", path.display());
    }
    Ok(if stop.is_cancelled() {
        Exit::Interrupted
    } else if !outcome.passed || checked.iter().any(|c| !c.passed) {
        Exit::CheckFailed
    } else {
        Exit::Success
    }
    .into())
}
