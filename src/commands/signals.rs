//! Stopping cleanly on Ctrl-C, SIGTERM or SIGHUP, and at once on a second one (once any chaos
//! fault in force is cleared).

use std::sync::atomic::{AtomicBool, Ordering};

use std::io::Write as _;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::run::chaos::in_force;

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

/// The next Ctrl-C, SIGTERM or SIGHUP.
async fn next(term: &mut Signal, hup: &mut Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

/// A token cancelled on Ctrl-C, SIGTERM or SIGHUP (a closed terminal), so that runs stop
/// cleanly with offsets committed and any chaos fault cleared. A second signal ends the
/// process at once with exit code 130 (offsets not yet committed are redelivered later: the
/// read models are idempotent), except while a chaos fault is in force: then it waits for
/// the clearing and says so, and only a third quits at once (leaving the fault for
/// `pipedemo chaos --restore`).
pub fn stop_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            // Without these handlers Ctrl-C still works; SIGTERM then ends the process.
            let _ = tokio::signal::ctrl_c().await;
            SIGNALLED.store(true, Ordering::Relaxed);
            t.cancel();
            return;
        };
        next(&mut term, &mut hup).await;
        SIGNALLED.store(true, Ordering::Relaxed);
        tracing::info!(
            "stopping: finishing the batch in hand and committing offsets (Ctrl-C again to quit at once)"
        );
        t.cancel();
        next(&mut term, &mut hup).await;
        if in_force::held() {
            // A closed terminal makes writing fail: never let a message stop the clearing.
            let _ = writeln!(
                std::io::stderr(),
                "interrupted again: clearing the chaos fault in force first (Ctrl-C once more \
                 to quit at once and leave it for `pipedemo chaos --restore`)"
            );
            tokio::select! {
                _ = async {
                    while in_force::held() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                } => {}
                _ = next(&mut term, &mut hup) => {}
            }
        }
        let _ = writeln!(std::io::stderr(), "interrupted again: quitting at once");
        std::process::exit(i32::from(crate::exit::Exit::Interrupted.code()));
    });
    token
}
