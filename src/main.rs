//! The `pipedemo` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use pipedemo::config::Settings;
use pipedemo::consumer::{ConsumerOptions, Pipeline};
use pipedemo::{cleanup, load, metrics, report, setup, verify};

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

#[derive(Subcommand)]
enum Command {
    /// Check the services and prepare table, connector, topics, indexes and consumer group.
    Setup {
        /// Keep earlier demo data (outbox rows, read models, metrics file).
        #[arg(long)]
        keep: bool,
        /// Start the consumer group at the beginning of the topic instead of its end.
        #[arg(long)]
        from_earliest: bool,
        /// Partitions of the outbox topic, when setup creates it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=64))]
        partitions: i32,
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
    },
    /// Run the consumer alone until interrupted (Ctrl-C / SIGTERM).
    Consume {
        /// Treat snapshot reads (op r) as events instead of skipping them.
        #[arg(long)]
        include_snapshot: bool,
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
        .with_writer(std::io::stderr)
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
        } => {
            setup::run(
                s,
                &setup::SetupOptions {
                    keep,
                    from_earliest,
                    partitions,
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
        } => {
            if let Some(r) = rate {
                anyhow::ensure!(
                    r > 0.0 && r.is_finite(),
                    "--rate must be a positive number of events per second"
                );
            }
            let opts = load::LoadOptions {
                events,
                batch_size: batch_size as usize,
                rate,
                batch_delay: Duration::from_millis(batch_delay_ms),
                timeout: Duration::from_secs(timeout_secs),
                seed,
                consumer: ConsumerOptions::default(),
            };
            let result = load::run(s, &opts, stop_on_signals()).await?;
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

fn main() -> ExitCode {
    // .env values act as environment variables; a missing file is fine.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_logging(&cli.settings);
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
