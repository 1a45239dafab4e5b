//! `pipedemo monitor`: the dashboard without generating events.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::signals::stop_on_signals;
use crate::config::Settings;
use crate::pipeline::consumer::ConsumerOptions;
use crate::run::session::Session;
use crate::show::display::{DisplayArgs, Shown};
use crate::telemetry::live::{Live, Shared};

/// The flags of `pipedemo monitor`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Only watch lag, the connector and MongoDB counts; do not consume.
    #[arg(long)]
    pub observe: bool,
    /// How progress is shown.
    #[command(flatten)]
    pub display: DisplayArgs,
}

/// Shows the pipeline until stopped: consuming what arrives, or only watching it.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    let stop = stop_on_signals();
    if a.observe {
        let mut watching = Live::default();
        watching.observing = true;
        let live = Shared::new(watching);
        if let Some(addr) = s.output.metrics_listen {
            crate::telemetry::exporter::serve(addr, live.clone())?;
        }
        let poller = tokio::spawn(crate::run::health::poll(
            s.clone(),
            live.clone(),
            Duration::from_secs(1),
            stop.clone(),
        ));
        let shown = Shown::start(live, a.display, &stop);
        stop.cancelled().await;
        shown.end().await;
        let _ = poller.await;
        return Ok(super::signals::stopped_code());
    }
    let session = Session::start(s, ConsumerOptions::default(), &stop).await?;
    let shown = Shown::start(session.live.clone(), a.display, &stop);
    stop.cancelled().await;
    shown.end().await;
    let totals = session.finish().await?;
    eprintln!(
        "Monitor stopped: {} applied, {} already applied, {} dead-lettered, {} skipped",
        totals.applied, totals.already_applied, totals.dead_lettered, totals.skipped
    );
    Ok(super::signals::stopped_code())
}
