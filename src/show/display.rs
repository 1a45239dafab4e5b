//! How a run is shown while it goes: the live dashboard on a terminal, or one plain line a
//! second on stderr.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::show::{dashboard, logsink};
use crate::telemetry::live::Shared;

/// How progress is shown.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct DisplayArgs {
    /// Plain progress lines instead of the live dashboard (automatic when not on a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Dashboard refresh interval, e.g. `500ms` or `1s` (a bare number is milliseconds).
    #[arg(long, visible_alias = "refresh-ms", default_value = "500ms", value_parser = refresh)]
    pub refresh: Duration,
}

/// `--refresh`: 50 ms to 10 s.
fn refresh(s: &str) -> Result<Duration, String> {
    let d = crate::numbers::millis_or_duration(s)?;
    if d < Duration::from_millis(50) || d > Duration::from_secs(10) {
        return Err(format!("`{s}` is out of range: 50ms to 10s"));
    }
    Ok(d)
}

/// Where log lines go while the dashboard is up (next to the metrics file); set once at start.
pub static DASHBOARD_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Whether the dashboard may use colour (`--color`, `NO_COLOR`); set once at start.
pub static DASHBOARD_COLOR: OnceLock<bool> = OnceLock::new();

/// A running display: the dashboard or headless progress lines.
pub struct Shown {
    /// Why the dashboard failed, if it did (printed once the terminal is back).
    task: tokio::task::JoinHandle<Option<String>>,
    done: CancellationToken,
    /// The dashboard (true) or plain lines.
    pub tui: bool,
}

impl Shown {
    /// Starts showing `live` until [`Shown::end`]; `stop` is cancelled when the user quits the
    /// dashboard.
    pub fn start(live: Shared, d: DisplayArgs, stop: &CancellationToken) -> Shown {
        let done = CancellationToken::new();
        let tui = dashboard::use_tui(d.no_tui);
        if tui {
            if let Some(path) = DASHBOARD_LOG.get() {
                if let Err(e) = logsink::divert(path) {
                    // Better a scribbled dashboard than no log lines at all.
                    tracing::warn!(error = %e, path = %path.display(), "log lines stay on the terminal");
                }
            }
        }
        let refresh = d.refresh;
        let (stop, done2) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            if tui {
                let colors = DASHBOARD_COLOR.get().copied().unwrap_or(true);
                if let Err(e) = dashboard::run(live, refresh, colors, stop, done2).await {
                    return Some(format!("dashboard failed: {e:#}"));
                }
            } else {
                dashboard::run_headless(live, Duration::from_secs(1), stop, done2).await;
            }
            None
        });
        Shown { task, done, tui }
    }

    /// Stops the display; the terminal is restored when this returns.
    pub async fn end(self) {
        self.done.cancel();
        let failed = self.task.await.ok().flatten();
        let diverted = logsink::restore();
        if let Some(e) = failed {
            eprintln!("{e}");
        }
        if let Some((path, lines)) = diverted {
            if lines > 0 {
                eprintln!(
                    "{lines} log line(s) of this run went to {} (kept off the dashboard)",
                    path.display()
                );
            }
        }
    }
}
