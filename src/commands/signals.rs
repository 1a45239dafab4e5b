//! Stopping cleanly on Ctrl-C or SIGTERM.

use tokio_util::sync::CancellationToken;

/// A token cancelled on Ctrl-C or SIGTERM, so that runs stop cleanly with offsets committed.
pub fn stop_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        let Ok(mut term) = term else {
            // Without a SIGTERM handler Ctrl-C still works; SIGTERM then ends the process.
            let _ = tokio::signal::ctrl_c().await;
            t.cancel();
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: finishing the batch in hand and committing offsets");
        t.cancel();
    });
    token
}
