//! `pipedemo consume`: the consumer alone, until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use anyhow::Result;

use super::signals::stop_on_signals;
use crate::config::Settings;
use crate::pipeline::consumer::{self, ConsumerOptions};
use crate::pipeline::kafka::results::Publisher;
use crate::telemetry::live::{self, Sink};
use crate::telemetry::metrics::{self, MetricsFile};
use crate::telemetry::results::{Book, ProcessId, SharedBook};
use std::sync::{Arc, Mutex};

/// The flags of `pipedemo consume`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Treat snapshot reads (op r) as events instead of skipping them.
    #[arg(long)]
    pub include_snapshot: bool,
    /// For the consumers a chaos run starts: SIGUSR1 makes the process crash after its next
    /// MongoDB write, before the offset commit. Such a consumer publishes no results: the
    /// chaos run tails its records and publishes them as its own.
    #[arg(long, hide = true)]
    pub chaos_hooks: bool,
    /// A static member id in the consumer group, stable across this consumer's restarts and
    /// unique in the group (a StatefulSet pod's name, a systemd unit's instance): a restart
    /// takes back its partitions at once instead of after the session timeout (10 s). A
    /// static member that stops leaves its partitions unread until it is back or its session
    /// ends; without an id the consumer leaves the group when it stops.
    #[arg(long, env = "PIPEDEMO_INSTANCE_ID", value_name = "ID")]
    pub instance_id: Option<String>,
}

/// A flag that SIGUSR1 sets.
fn arm_on_sigusr1() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let set = armed.clone();
    tokio::spawn(async move {
        if usr1.recv().await.is_some() {
            tracing::warn!("chaos: will crash after the next MongoDB write");
            set.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    Ok(armed)
}

/// Consumes until stopped, appending timing records to the metrics file.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    if let Some(id) = &a.instance_id {
        consumer::check_instance_id(id).map_err(crate::exit::config)?;
    }
    let stop = stop_on_signals();
    let (tx, rx) = metrics::channel();
    let book: SharedBook = Arc::new(Mutex::new(Book::new(ProcessId::this("consume"))));
    let publishing = !a.chaos_hooks;
    let mut sink = Sink {
        file: Some(MetricsFile::append(&s.output.metrics_file)?),
        book: publishing.then(|| book.clone()),
        ..Sink::default()
    };
    // Each second, the runs' figures this consumer measured go to the results topic, where
    // the process that owns a run merges them with every other consumer's.
    let publisher = publishing
        .then(|| Publisher::start(&s.kafka, book.clone()))
        .transpose()
        .map_err(|e| tracing::warn!(error = %e, "results are not published"))
        .ok()
        .flatten();
    // Served only when asked for: the live state (and the health poller that feeds the lag
    // into it) costs nothing otherwise.
    if let Some(addr) = s.output.metrics_listen {
        let live = live::Shared::default();
        crate::telemetry::exporter::serve(addr, live.clone())?;
        tokio::spawn(crate::run::health::poll(
            s.clone(),
            live.clone(),
            std::time::Duration::from_secs(1),
            stop.clone(),
        ));
        sink.live = Some(live);
    }
    let opts = ConsumerOptions {
        include_snapshot: a.include_snapshot,
        crash_armed: a.chaos_hooks.then(arm_on_sigusr1).transpose()?,
        instance_id: a.instance_id.clone(),
        ..ConsumerOptions::default()
    };
    let ours = crate::provision::ownership::own_topics(s).await?;
    let running = consumer::start(s, ours, opts, tx, &stop).await?;
    let writer = tokio::spawn(live::collect(rx, sink));
    tracing::info!(topics = %s.kafka.subscription(), routing = %s.kafka.routing, group = %s.kafka.group, "consuming; Ctrl-C to stop");
    let totals = running.join().await?;
    writer.await??;
    let last = match publisher {
        Some(p) => p.finish().await,
        None => book.lock().map(|mut b| b.last_word()).unwrap_or_default(),
    };
    let results = crate::telemetry::results_file::path(&s.output.metrics_file);
    if let Err(e) = crate::telemetry::results_file::append(&results, &last) {
        tracing::warn!(error = %e, "cannot keep this consumer's results");
    }
    eprintln!(
        "Consumed: {} applied, {} already applied, {} dead-lettered, {} skipped",
        totals.applied, totals.already_applied, totals.dead_lettered, totals.skipped
    );
    Ok(super::signals::stopped_code())
}
