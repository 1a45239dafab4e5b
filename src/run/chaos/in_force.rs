//! The fault a chaos run has in force, on disk from just before it is injected until it is
//! cleared. A run that ends without clearing it (SIGKILL, a crash, a closed terminal) leaves
//! the means to undo it: `pipedemo chaos --restore`, and the next `chaos` or `setup`, read the
//! record and clear the fault. [`undo`] decides what clearing takes, apart from the I/O.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::fault::{Fault, Service, Target};

/// The record's file name, beside the run's metrics file and log.
pub const FILE: &str = "pipedemo-chaos-fault.json";

/// A fault in force, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InForce {
    /// The chaos run's process.
    pub pid: u32,
    /// The fault.
    pub fault: Fault,
    /// The local stack's script the run used (for stack faults).
    pub stack: Option<PathBuf>,
    /// The connector the run acted on (for connector faults).
    pub connector: String,
}

/// What clearing a fault left in force by a run that is gone takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    /// Nothing left to do, and why.
    Nothing(&'static str),
    /// Resume the connector.
    Resume,
    /// Start the local stack's service again.
    Start(Service),
    /// Let the local stack's frozen service go on.
    Thaw(Service),
}

/// What clearing `fault` takes once the run that injected it is gone.
pub fn undo(fault: Fault) -> Undo {
    match fault {
        Fault::ConsumerKill | Fault::ConsumerCrash | Fault::Rebalance => Undo::Nothing(
            "the run's consumer processes end with it (they get a signal when it dies)",
        ),
        Fault::TaskRestart => Undo::Nothing("a restarted task comes back by itself"),
        Fault::ConnectorPause => Undo::Resume,
        f => match f.target() {
            Target::Stack(service) if f.freezes() => Undo::Thaw(service),
            Target::Stack(service) => Undo::Start(service),
            _ => Undo::Nothing("nothing of it outlives the run"),
        },
    }
}

/// Faults this process has in force now (injected, not yet cleared).
static HELD: AtomicUsize = AtomicUsize::new(0);

/// A fault in force in this process, from injection until it is cleared: while one is held a
/// second Ctrl-C waits for the clearing instead of quitting at once (see
/// `commands::signals`).
pub struct Held(());

impl Held {
    /// Counts a fault in force until the guard is dropped.
    pub fn new() -> Self {
        HELD.fetch_add(1, Ordering::SeqCst);
        Held(())
    }
}

impl Default for Held {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether this process has a fault in force now.
pub fn held() -> bool {
    HELD.load(Ordering::SeqCst) > 0
}

/// Where the record of `s`'s runs is kept.
pub fn path(s: &Settings) -> PathBuf {
    s.output
        .metrics_file
        .parent()
        .unwrap_or(Path::new(""))
        .join(FILE)
}

/// Records `rec` before its fault is injected (written whole, then renamed into place, so a
/// crash never leaves half a record).
pub fn write(s: &Settings, rec: &InForce) -> Result<()> {
    let path = path(s);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(rec)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Forgets the record once its fault is cleared.
pub fn remove(s: &Settings) {
    let _ = std::fs::remove_file(path(s));
}

/// The record left in force, if any.
pub fn read(s: &Settings) -> Result<Option<InForce>> {
    let path = path(s);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a record of a chaos fault; remove it if it is not pipedemo's",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Whether process `pid` still runs (a run in progress owns its record).
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 checks that the process exists; nothing is sent.
    pid != std::process::id() && unsafe { libc::kill(pid as i32, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_left_in_force_has_its_undo() {
        assert_eq!(undo(Fault::ConnectorPause), Undo::Resume);
        assert_eq!(undo(Fault::KafkaStop), Undo::Start(Service::Kafka));
        assert_eq!(undo(Fault::MongoStop), Undo::Start(Service::Mongo));
        assert_eq!(undo(Fault::ConnectKill), Undo::Start(Service::Connect));
        assert_eq!(undo(Fault::PostgresRestart), Undo::Start(Service::Postgres));
        // A frozen service left frozen is let go on, never started a second time beside it.
        assert_eq!(undo(Fault::KafkaFreeze), Undo::Thaw(Service::Kafka));
        assert_eq!(undo(Fault::ConnectFreeze), Undo::Thaw(Service::Connect));
        assert_eq!(undo(Fault::MongoFreeze), Undo::Thaw(Service::Mongo));
        assert_eq!(undo(Fault::PostgresFreeze), Undo::Thaw(Service::Postgres));
        for f in [
            Fault::ConsumerKill,
            Fault::ConsumerCrash,
            Fault::Rebalance,
            Fault::TaskRestart,
        ] {
            assert!(matches!(undo(f), Undo::Nothing(_)), "{f}");
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let rec = InForce {
            pid: 42,
            fault: Fault::KafkaStop,
            stack: Some("scripts/stack.sh".into()),
            connector: "pipedemo-outbox".into(),
        };
        let text = serde_json::to_string(&rec).unwrap();
        assert!(text.contains("\"kafka-stop\""), "{text}");
        assert_eq!(serde_json::from_str::<InForce>(&text).unwrap(), rec);
        assert!(
            !alive(std::process::id()),
            "this process never owns a left record"
        );
    }
}
