//! The `pipedemo` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use pipedemo::config::Settings;
use pipedemo::connect::Tuning;
use pipedemo::consumer::{ConsumerOptions, Pipeline};
use pipedemo::live::{Live, Shared};
use pipedemo::load::LoadResult;
use pipedemo::{cleanup, dashboard, demo_report, full, load, metrics, report, setup, verify};

/// Demonstrates and load-tests a CDC pipeline: PostgreSQL outbox → Debezium → Kafka → MongoDB.
///
/// Start the stack first (scripts/stack.sh up, or docker compose up -d --wait), then:
///   pipedemo setup && pipedemo load --events 1000 && pipedemo verify
#[derive(Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

/// How progress is shown.
#[derive(clap::Args, Clone, Copy)]
struct DisplayArgs {
    /// Plain progress lines instead of the live dashboard (automatic when not on a terminal).
    #[arg(long)]
    no_tui: bool,
    /// Dashboard refresh interval, milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=10_000))]
    refresh_ms: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Check the services and prepare table, connector, topics, indexes and consumer group.
    Setup {
        /// Keep earlier demo data (outbox rows, the topic's messages, read models, metrics file).
        #[arg(long)]
        keep: bool,
        /// Start the consumer group at the beginning of the topic instead of its end.
        #[arg(long)]
        from_earliest: bool,
        /// Partitions of the outbox topic, when setup creates it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
        partitions: i32,
        /// Register the connector with Debezium's default settings instead of pipedemo's
        /// latency tuning (for comparisons).
        #[arg(long)]
        debezium_defaults: bool,
    },
    /// Generate events into the outbox and consume them until all are in MongoDB.
    Load {
        /// Number of events (50% UserCreated, 30% ActivityCreated, 20% ParticipantJoined).
        #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        events: u64,
        /// Rows per INSERT transaction.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch_size: u64,
        /// Target insert rate in events per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Pause after each batch, in milliseconds.
        #[arg(long, default_value_t = 0)]
        batch_delay_ms: u64,
        /// Seconds to wait after the last insert for all events to reach MongoDB.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
        /// Seed for reproducible fake data.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        display: DisplayArgs,
    },
    /// The live dashboard without generating events: consume what arrives until stopped.
    Monitor {
        /// Only watch lag, the connector and MongoDB counts; do not consume.
        #[arg(long)]
        observe: bool,
        #[command(flatten)]
        display: DisplayArgs,
    },
    /// The whole show: setup, phases of growing load, verification and reports.
    Full {
        /// Events per phase, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        phases: Vec<u64>,
        /// Rows per INSERT transaction.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch_size: u64,
        /// Pause after each batch, in milliseconds.
        #[arg(long, default_value_t = 10)]
        batch_delay_ms: u64,
        /// Target insert rate in events per second (default: as fast as batches go).
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds to wait per phase after its last insert.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
        /// Partitions of the outbox topic, when setup creates it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
        partitions: i32,
        /// Fail (exit 1) when the p95 end-to-end latency is above this, in ms.
        #[arg(long)]
        max_p95_ms: Option<f64>,
        /// Fail (exit 1) when the last phase's throughput is below this, in events/s.
        #[arg(long)]
        min_throughput: Option<f64>,
        /// JSON report path.
        #[arg(long, default_value = "demo_report.json")]
        report_json: PathBuf,
        /// HTML report path.
        #[arg(long, default_value = "demo_report.html")]
        report_html: PathBuf,
        /// Print the final outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        display: DisplayArgs,
    },
    /// Run the consumer alone until interrupted (Ctrl-C / SIGTERM).
    Consume {
        /// Treat snapshot reads (op r) as events instead of skipping them.
        #[arg(long)]
        include_snapshot: bool,
    },
    /// Consume the whole topic again from its start (the group must have no running consumer),
    /// then stop. Idempotent read models stay as they were: compare `verify --checksum`.
    Replay {
        /// Give up when not caught up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check that every outbox event is in MongoDB exactly once, and report latency.
    Verify {
        /// Write the JSON report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the JSON report on stdout instead of the text report.
        #[arg(long)]
        json: bool,
        /// Also compute a checksum of all read models.
        #[arg(long)]
        checksum: bool,
    },
    /// Delete demo data: outbox rows, the read-model database, metrics and report files.
    Cleanup {
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

fn init_logging(s: &Settings) {
    // librdkafka reports transient broker states as warnings that pipedemo retries anyway;
    // a plain level keeps them out unless asked for with a full filter.
    let directive = if s.log_level.contains('=') {
        s.log_level.clone()
    } else {
        format!("{},librdkafka=error", s.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(pipedemo::logsink::Writer::default)
        .with_target(false);
    if s.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancels the token on Ctrl-C or SIGTERM, so runs stop cleanly with offsets committed.
fn stop_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: finishing the batch in hand and committing offsets");
        t.cancel();
    });
    token
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let s = &cli.settings;
    match cli.command {
        Command::Setup {
            keep,
            from_earliest,
            partitions,
            debezium_defaults,
        } => {
            setup::run(
                s,
                &setup::SetupOptions {
                    keep,
                    from_earliest,
                    partitions,
                    tuning: if debezium_defaults {
                        Tuning::Defaults
                    } else {
                        Tuning::Tuned
                    },
                },
            )
            .await?;
        }
        Command::Load {
            events,
            batch_size,
            rate,
            batch_delay_ms,
            timeout_secs,
            seed,
            json,
            display,
        } => {
            check_rate(rate)?;
            let opts = load::LoadOptions {
                phase: load::PhaseOptions {
                    events,
                    batch_size: batch_size as usize,
                    rate,
                    batch_delay: Duration::from_millis(batch_delay_ms),
                    timeout: Duration::from_secs(timeout_secs),
                    seed,
                },
                consumer: ConsumerOptions::default(),
            };
            let stop = stop_on_signals();
            let mut shown = None;
            let result = load::run_with(s, &opts, stop.clone(), |live| {
                shown = Some(Shown::start(live, display, &stop));
            })
            .await;
            if let Some(shown) = shown {
                shown.end().await;
            }
            let result = result?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result.summary())?);
            } else {
                print!("{}", report::load(&result));
            }
            if !result.missing.is_empty() {
                anyhow::bail!(
                    "{} of {} events did not reach MongoDB within {timeout_secs} s (first: {}); \
                     check `scripts/stack.sh status` and the connector with `pipedemo setup --keep`",
                    result.missing.len(),
                    events,
                    result.missing[0]
                );
            }
        }
        Command::Monitor { observe, display } => monitor(s, observe, display).await?,
        Command::Full {
            phases,
            batch_size,
            rate,
            batch_delay_ms,
            timeout_secs,
            partitions,
            max_p95_ms,
            min_throughput,
            report_json,
            report_html,
            json,
            display,
        } => {
            check_rate(rate)?;
            let opts = full::FullOptions {
                phases,
                batch_size: batch_size as usize,
                batch_delay: Duration::from_millis(batch_delay_ms),
                rate,
                timeout: Duration::from_secs(timeout_secs),
                setup: setup::SetupOptions {
                    keep: false,
                    from_earliest: false,
                    partitions,
                    tuning: Tuning::Tuned,
                },
                max_p95_ms,
                min_throughput,
                report_json,
                report_html,
            };
            return run_full(s, &opts, display, json).await;
        }
        Command::Consume { include_snapshot } => {
            let (tx, mut rx) = metrics::channel();
            let mut file = metrics::MetricsFile::append(&s.metrics_file)?;
            let opts = ConsumerOptions {
                include_snapshot,
                ..ConsumerOptions::default()
            };
            let (pipeline, _assigned) = Pipeline::new(s, opts, tx).await?;
            let stop = stop_on_signals();
            let consumer = tokio::spawn(pipeline.run(stop.clone()));
            let writer = tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(ev) = rx.recv().await {
                    file.write(&ev)?;
                    n += 1;
                    if n % 1000 == 0 || rx.is_empty() {
                        file.flush()?;
                    }
                }
                file.flush()
            });
            tracing::info!(topic = %s.kafka.topic(), group = %s.kafka.group, "consuming; Ctrl-C to stop");
            let totals = consumer.await??;
            writer.await??;
            eprintln!(
                "Consumed: {} applied, {} already applied, {} dead-lettered, {} skipped",
                totals.applied, totals.already_applied, totals.dead_lettered, totals.skipped
            );
        }
        Command::Replay { timeout_secs, json } => {
            let r = pipedemo::replay::run(s, Duration::from_secs(timeout_secs), stop_on_signals())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", r.describe());
            }
            if !r.complete {
                anyhow::bail!(
                    "the replay stopped before reaching the end of {}; run `pipedemo replay` \
                     again (replays are idempotent)",
                    s.kafka.topic()
                );
            }
        }
        Command::Verify {
            report: path,
            json,
            checksum,
        } => {
            let r = verify::run(s, checksum).await?;
            if let Some(p) = &path {
                verify::write_report(&r, p)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", report::verify(&r));
                if let Some(p) = &path {
                    println!("Report written to {}", p.display());
                }
            }
            if !r.passed {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Cleanup { yes } => {
            cleanup::confirm(s, yes)?;
            let files = vec![
                s.metrics_file.clone(),
                PathBuf::from("demo_report.json"),
                PathBuf::from("demo_report.html"),
            ];
            cleanup::run(s, &files).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_rate(rate: Option<f64>) -> Result<()> {
    if let Some(r) = rate {
        anyhow::ensure!(
            r > 0.0 && r.is_finite(),
            "--rate must be a positive number of events per second"
        );
    }
    Ok(())
}

/// A running display: the dashboard or headless progress lines.
struct Shown {
    task: tokio::task::JoinHandle<()>,
    done: CancellationToken,
    tui: bool,
}

/// Where log lines go while the dashboard is up: next to the metrics file.
static DASHBOARD_LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

impl Shown {
    fn start(live: Shared, d: DisplayArgs, stop: &CancellationToken) -> Shown {
        let done = CancellationToken::new();
        let tui = dashboard::use_tui(d.no_tui);
        if tui {
            if let Some(path) = DASHBOARD_LOG.get() {
                if let Err(e) = pipedemo::logsink::divert(path) {
                    // Better a scribbled dashboard than no log lines at all.
                    tracing::warn!(error = %e, path = %path.display(), "log lines stay on the terminal");
                }
            }
        }
        let refresh = Duration::from_millis(d.refresh_ms);
        let (stop, done2) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            if tui {
                if let Err(e) = dashboard::run(live, refresh, stop, done2).await {
                    eprintln!("dashboard failed: {e:#}");
                }
            } else {
                dashboard::run_headless(live, Duration::from_secs(1), stop, done2).await;
            }
        });
        Shown { task, done, tui }
    }

    /// Stops the display; the terminal is restored when this returns.
    async fn end(self) {
        self.done.cancel();
        let _ = self.task.await;
        if let Some((path, lines)) = pipedemo::logsink::restore() {
            if lines > 0 {
                eprintln!(
                    "{lines} log line(s) written during the dashboard are in {}",
                    path.display()
                );
            }
        }
    }
}

/// The display of `full`: phase tables between phases (headless) or after the run (TUI).
struct FullDisplay {
    args: DisplayArgs,
    stop: CancellationToken,
    shown: Option<Shown>,
    phases: Vec<load::LoadSummary>,
    detail: Vec<String>,
    live: Option<Shared>,
}

impl full::Display for FullDisplay {
    fn started(&mut self, live: Shared) {
        self.live = Some(live.clone());
        self.shown = Some(Shown::start(live, self.args, &self.stop));
    }

    fn phase_done(&mut self, r: &LoadResult) {
        self.phases.push(r.summary());
        let detail = self.live.as_ref().and_then(|l| {
            let l = l.lock().expect("live state lock");
            l.phases
                .last()
                .filter(|p| !p.detail.is_empty())
                .map(|p| report::event_lines(&p.detail))
        });
        if self.shown.as_ref().is_some_and(|s| s.tui) {
            if let Some(d) = detail {
                self.detail.push(d);
            }
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
}

async fn run_full(
    s: &Settings,
    o: &full::FullOptions,
    d: DisplayArgs,
    json: bool,
) -> Result<ExitCode> {
    let stop = stop_on_signals();
    let mut display = FullDisplay {
        args: d,
        stop: stop.clone(),
        shown: None,
        phases: Vec::new(),
        detail: Vec::new(),
        live: None,
    };
    let result = full::run(s, o, &mut display, stop.clone()).await;
    if let Some(shown) = display.shown.take() {
        let tui = shown.tui;
        shown.end().await;
        if tui {
            for d in &display.detail {
                print!("Warm-up events:\n{d}");
            }
            println!("\nPhases:\n{}", report::phase_table(&display.phases));
        }
    }
    let (outcome, live, versions) = result?;
    let connect = pipedemo::connect::Connect::new(&s.connect)?;
    let store = pipedemo::store::ReadModels::connect(&s.mongo).await?;
    let method = demo_report::Method::new(
        versions.postgres,
        connect.kafka_version().await,
        versions.debezium,
        store.server_version().await,
    );
    demo_report::write_json(&o.report_json, &outcome, &method)?;
    {
        let l = live.lock().expect("live state lock");
        demo_report::write_html(&o.report_html, &outcome, &method, &l)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print!("{}", report::verify(&outcome.verification));
    }
    for f in &outcome.threshold_failures {
        println!("✗ threshold: {f}");
    }
    let v = &outcome.verification;
    println!(
        "\n{} Demo complete! {} events processed in {:.1} s ({:.0} events/s overall)",
        if outcome.passed() { "✅" } else { "❌" },
        report::thousands(outcome.total_events),
        outcome.total_secs,
        if outcome.total_secs > 0.0 {
            outcome.total_events as f64 / outcome.total_secs
        } else {
            0.0
        }
    );
    println!(
        "   Success rate: {:.2}% ({} of {} verified) · integrity {}",
        v.success_rate,
        report::thousands(v.found_events),
        report::thousands(v.total_events),
        v.integrity_check
    );
    println!(
        "   Reports: {} and {}",
        o.report_json.display(),
        o.report_html.display()
    );
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn monitor(s: &Settings, observe: bool, d: DisplayArgs) -> Result<()> {
    let stop = stop_on_signals();
    if observe {
        let live: Shared = std::sync::Arc::new(std::sync::Mutex::new(Live {
            observing: true,
            ..Live::default()
        }));
        let poller = tokio::spawn(pipedemo::health::poll(
            s.clone(),
            live.clone(),
            Duration::from_secs(1),
            stop.clone(),
        ));
        let shown = Shown::start(live, d, &stop);
        stop.cancelled().await;
        shown.end().await;
        let _ = poller.await;
        return Ok(());
    }
    let session = load::Session::start(s, ConsumerOptions::default(), &stop).await?;
    let shown = Shown::start(session.live.clone(), d, &stop);
    stop.cancelled().await;
    shown.end().await;
    let totals = session.finish().await?;
    eprintln!(
        "Monitor stopped: {} applied, {} already applied, {} dead-lettered, {} skipped",
        totals.applied, totals.already_applied, totals.dead_lettered, totals.skipped
    );
    Ok(())
}

fn main() -> ExitCode {
    // .env values act as environment variables; a missing file is fine.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_logging(&cli.settings);
    let _ = DASHBOARD_LOG.set(
        cli.settings
            .metrics_file
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join("pipedemo.log"),
    );
    // Fault injection for the reliability tests (FAILPOINTS, see README "Reliability"); unset,
    // every fail point is off.
    let _failpoints = fail::FailScenario::setup();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
