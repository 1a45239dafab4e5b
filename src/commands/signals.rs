//! Stopping cleanly on Ctrl-C or SIGTERM, and at once on a second one.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C or SIGTERM came (as opposed to quitting the dashboard with `q`).
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

/// The exit code of a command that runs until stopped (`consume`, `monitor`): 130 when a
/// signal stopped it, 0 when it was quit from the dashboard.
pub fn stopped_code() -> std::process::ExitCode {
    if signalled() {
        crate::exit::Exit::Interrupted.into()
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// A token cancelled on Ctrl-C or SIGTERM, so that runs stop cleanly with offsets committed.
/// A second Ctrl-C or SIGTERM ends the process at once with exit code 130 (offsets not yet
/// committed are redelivered later: the read models are idempotent).
pub fn stop_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            // Without a SIGTERM handler Ctrl-C still works; SIGTERM then ends the process.
            let _ = tokio::signal::ctrl_c().await;
            SIGNALLED.store(true, Ordering::Relaxed);
            t.cancel();
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        SIGNALLED.store(true, Ordering::Relaxed);
        tracing::info!(
            "stopping: finishing the batch in hand and committing offsets (Ctrl-C again to quit at once)"
        );
        t.cancel();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("interrupted again: quitting at once");
        std::process::exit(i32::from(crate::exit::Exit::Interrupted.code()));
    });
    token
}
