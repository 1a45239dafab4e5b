//! Worlds for tests that run at the same time on one stack, and the one lock that lets a test
//! stop a service without pulling it from under another.
//!
//! A world (see [`crate::shared::world`]) needs its PostgreSQL database to exist before
//! pipedemo connects to it: [`pipedemo`] and [`settings`] create it on first use. A test holds
//! [`shared_stack`] or [`stack_alone`] for its length; when that guard drops, passed or failed, every world
//! the test used is cleared with `pipedemo cleanup --yes` and its database dropped.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use pipedemo::config::Settings;

use crate::shared;

thread_local! {
    /// The worlds this test (its thread) used, for its guard to clear.
    static USED: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
}

/// `pipedemo` in test `name`'s world (see [`shared::pipedemo`]), its database created first.
pub fn pipedemo(name: &str) -> Command {
    ensure(name);
    shared::pipedemo(name)
}

/// Settings of test `name`'s world (see [`shared::settings`]), its database created first.
pub fn settings(name: &str, extra: &[&str]) -> Settings {
    ensure(name);
    shared::settings(name, extra)
}

/// Rows now in world `name`'s `event_outbox` (0 before setup made it): how far a load has got,
/// for a test that acts mid-load by count rather than by the clock.
fn outbox_rows(name: &str) -> i64 {
    let s = settings(name, &[]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let n = rt.block_on(async move {
            let pg = pipedemo::pipeline::outbox::connect(&s.pg).await.ok()?;
            let row = pg
                .query_one("SELECT count(*) FROM event_outbox", &[])
                .await
                .ok()?;
            Some(row.get::<_, i64>(0))
        });
        let _ = tx.send(n.unwrap_or(0));
    });
    rx.recv().unwrap_or(0)
}

/// Waits until world `name`'s outbox holds at least `rows` rows; fails after `within`, naming
/// what it waited for.
pub fn wait_for_outbox_rows(name: &str, rows: i64, within: std::time::Duration) {
    shared::wait_until(within, &format!("{rows} rows in {name}'s outbox"), || {
        outbox_rows(name) >= rows
    });
}

/// Creates world `name`'s PostgreSQL database unless it exists, and notes the world for the
/// test's guard to clear.
fn ensure(name: &str) {
    let fresh = USED.with(|u| u.borrow_mut().insert(name.to_owned()));
    if !fresh {
        return;
    }
    let db = format!("pipedemo_test_{name}");
    admin(move |pg| async move {
        let exists = pg
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .expect("listing databases")
            .is_some();
        if !exists {
            // Two tests may race to make a world of the same name: the loser finds it made.
            if let Err(e) = pg.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await {
                assert!(
                    e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                        || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
                    "creating database {db}: {e:#}"
                );
            }
        }
    });
}

/// Runs `f` with a connection to the stack's default database, on a thread of its own (tests
/// call this from inside their own runtime).
fn admin<F, Fut>(f: F)
where
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let s = shared::settings("admin", &["--pg-db=activity_db"]);
            let pg = pipedemo::pipeline::outbox::connect(&s.pg)
                .await
                .expect("PostgreSQL reachable (scripts/stack.sh up)");
            f(pg).await
        })
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A test's hold on the stack: shared with other tests, or alone. Dropping it clears the
/// test's worlds.
pub struct Hold {
    /// Kept open: the lock lives as long as the file.
    _lock: File,
}

/// For a test that leaves the services running: it runs beside other such tests.
pub fn shared_stack() -> Hold {
    hold(false)
}

/// For a test that stops, kills or restarts a service: it runs when no other test does.
pub fn stack_alone() -> Hold {
    hold(true)
}

fn hold(exclusive: bool) -> Hold {
    shared::require_stack();
    // Two locks make a writer-first lock of flock(2): a test that waits to run alone holds the
    // turnstile, so no new test slips in ahead of it while the ones running finish.
    let dir = std::env::temp_dir();
    let open = |name: &str| {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(name))
            .expect("a lock file in the temporary directory")
    };
    let (turnstile, lock) = (
        open("pipedemo-test-turnstile.lock"),
        open("pipedemo-test-stack.lock"),
    );
    flock(&turnstile, libc::LOCK_EX);
    flock(
        &lock,
        if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        },
    );
    drop(turnstile);
    USED.with(|u| u.borrow_mut().clear());
    Hold { _lock: lock }
}

fn flock(f: &File, how: libc::c_int) {
    // SAFETY: a descriptor this function's caller owns for the call.
    while unsafe { libc::flock(f.as_raw_fd(), how) } != 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "flock: {e}");
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let used: Vec<String> =
            USED.with(|u| std::mem::take(&mut *u.borrow_mut()).into_iter().collect());
        for name in used {
            clear(&name);
        }
    }
}

/// Clears world `name`: what pipedemo made there (`cleanup --yes`, which refuses what is not
/// its own), then its database, unless something pipedemo did not make still holds it.
fn clear(name: &str) {
    let _ = shared::pipedemo(name)
        .args(["cleanup", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let db = format!("pipedemo_test_{name}");
    let slot = db.clone();
    admin(move |pg| async move {
        // A slot on the database (the world's, if cleanup could not drop it) keeps it alive.
        // It is active for a moment after its connector is deleted.
        for _ in 0..20 {
            let left = pg
                .query(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE database = $1 AND slot_name = $2 AND NOT active",
                    &[&db, &slot],
                )
                .await
                .is_ok()
                && pg
                    .query_opt(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .is_ok_and(|r| r.is_some());
            if !left {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let _ = pg
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .await;
    });
    let _ = std::fs::remove_dir_all(shared::metrics_file(name).parent().unwrap());
}
