//! Worlds for tests that run at the same time on one stack, and private stacks for the tests
//! that stop, kill or block a service, so that they never pull one from under another test.
//!
//! A world (see [`crate::shared::world`]) needs its PostgreSQL database to exist before
//! pipedemo connects to it: [`pipedemo`] and [`settings`] create it on first use. When the test's
//! process ends, passed or failed, every world it used is cleared with `pipedemo cleanup --yes`
//! and its database dropped: by then its consumers, in-process ones too, have left their
//! groups (cargo-nextest runs each test in a process of its own). A test that
//! breaks services holds a [`PrivateStack`] instead: the same four services, installed from the
//! same cache, on ports and in a directory of its own, stopped and removed when it drops.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Mutex, Once};

use pipedemo::config::Settings;

use crate::shared;

/// The worlds this process used, for [`clear_used`] to clear when it exits.
static USED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

thread_local! {
    /// The private stack this test (its thread) runs on, if any: its services' settings.
    static PRIVATE: RefCell<Option<Private>> = const { RefCell::new(None) };
}

/// A private stack's settings: for `scripts/stack.sh` (its directory and ports) and for
/// pipedemo (where its services listen).
#[derive(Clone)]
struct Private {
    script: Vec<(String, String)>,
    flags: Vec<String>,
}

fn private() -> Option<Private> {
    PRIVATE.with(|p| p.borrow().clone())
}

/// `pipedemo` in test `name`'s world (see [`shared::pipedemo`]), its database created first;
/// on the test's [`PrivateStack`] when it has one (and so are the `scripts/stack.sh` runs of
/// `pipedemo chaos`, which inherit its environment).
pub fn pipedemo(name: &str) -> Command {
    let mut c = shared::pipedemo(name);
    match private() {
        Some(p) => {
            c.envs(p.script).envs(flag_vars(&p.flags));
        }
        None => ensure(name),
    }
    c
}

/// Settings of test `name`'s world (see [`shared::settings`]), its database created first; on
/// the test's [`PrivateStack`] when it has one.
pub fn settings(name: &str, extra: &[&str]) -> Settings {
    match private() {
        Some(p) => {
            let mut all: Vec<&str> = p.flags.iter().map(String::as_str).collect();
            all.extend_from_slice(extra);
            shared::settings(name, &all)
        }
        None => {
            ensure(name);
            shared::settings(name, extra)
        }
    }
}

/// `scripts/stack.sh ARGS` (see [`shared::stack_sh`]), on the test's [`PrivateStack`] when it
/// has one.
pub fn stack_sh(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let mut all = private().map(|p| p.script).unwrap_or_default();
    all.extend_from_slice(env);
    shared::stack_sh(args, &all)
}

/// The `--flag=value` settings as pipedemo's variables.
fn flag_vars(flags: &[String]) -> Vec<(String, String)> {
    const VARS: [(&str, &str); 4] = [
        ("--pg-port", "POSTGRES_PORT"),
        ("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS"),
        ("--connect-url", "CONNECT_URL"),
        ("--mongodb-uri", "MONGODB_URI"),
    ];
    flags
        .iter()
        .filter_map(|f| f.split_once('='))
        .filter_map(|(flag, value)| {
            let (_, var) = VARS.iter().find(|(f, _)| *f == flag)?;
            Some((var.to_string(), value.to_owned()))
        })
        .collect()
}

/// The JVM options of a stack that lives for one test (see `scripts/stack.sh`'s JVM_GC_OPTS).
pub const TEST_JVM_OPTS: &str = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1";

/// The four services of the test's own, for a test that stops, kills or blocks them: other
/// tests go on undisturbed on the shared stack. While it lives, this test's [`pipedemo`],
/// [`settings`] and [`stack_sh`] point at it. Stopped and removed when dropped.
pub struct PrivateStack {
    script: Vec<(String, String)>,
    dir: std::path::PathBuf,
}

impl PrivateStack {
    /// Starts the stack for test `name`'s world (its database is the stack's), with the
    /// shared stack's installation: the first start of a fresh directory takes seconds.
    pub fn up(name: &str) -> PrivateStack {
        shared::require_stack();
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("stack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
                .to_string()
        };
        let (pg, kafka, controller, connect, mongo) = (port(), port(), port(), port(), port());
        let script: Vec<(String, String)> = [
            ("STACK_DIR", dir.display().to_string()),
            ("PG_PORT", pg.clone()),
            ("KAFKA_PORT", kafka.clone()),
            ("KAFKA_CONTROLLER_PORT", controller),
            ("CONNECT_PORT", connect.clone()),
            ("MONGO_PORT", mongo.clone()),
            ("POSTGRES_DB", format!("pipedemo_test_{name}")),
            // JVMs that live for one test: the quick compiler only and a simple collector
            // spend far less CPU warming up, which the tests beside it feel on two cores.
            ("JVM_GC_OPTS", TEST_JVM_OPTS.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let stack = PrivateStack {
            script: script.clone(),
            dir,
        };
        let o = shared::stack_sh(&["up"], &script);
        assert!(
            o.status.success(),
            "starting a private stack failed: {}",
            shared::text(&o)
        );
        let flags = vec![
            format!("--pg-port={pg}"),
            format!("--bootstrap-servers=127.0.0.1:{kafka}"),
            format!("--connect-url=http://127.0.0.1:{connect}"),
            format!("--mongodb-uri=mongodb://127.0.0.1:{mongo}"),
        ];
        PRIVATE.with(|p| *p.borrow_mut() = Some(Private { script, flags }));
        stack
    }

    /// The port `service` (`mongo`, …) of this stack listens on.
    pub fn port(&self, service: &str) -> u16 {
        let var = match service {
            "postgres" => "PG_PORT",
            "kafka" => "KAFKA_PORT",
            "connect" => "CONNECT_PORT",
            "mongo" => "MONGO_PORT",
            other => panic!("no service {other}"),
        };
        self.script
            .iter()
            .find(|(k, _)| k == var)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap()
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        PRIVATE.with(|p| *p.borrow_mut() = None);
        let _ = shared::stack_sh(&["down"], &self.script);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    let fresh = USED.lock().unwrap().insert(name.to_owned());
    if !fresh {
        return;
    }
    static AT_EXIT: Once = Once::new();
    // SAFETY: registers a plain function, once.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(clear_used);
    });
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

/// For a test on the shared stack (one that leaves the services running): it runs beside
/// other such tests, each in its worlds. Fails, saying how to start it, when the stack is down.
pub fn shared_stack() {
    shared::require_stack();
}

/// Clears every world this process used; runs when it exits.
extern "C" fn clear_used() {
    let used = std::mem::take(&mut *USED.lock().unwrap_or_else(|e| e.into_inner()));
    for name in used {
        // A panic must not cross into C; a world left behind is taken over by the next run.
        let _ = std::panic::catch_unwind(|| clear(&name));
    }
}

/// Clears world `name`: what pipedemo made there (`cleanup --yes`, which leaves what is not its
/// own), then its database, unless cleanup failed.
fn clear(name: &str) {
    // A consumer killed by the test stays a member of its group until its session times out
    // (10 s), and Kafka deletes no group with members: cleanup is tried again until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let cleared = loop {
        let o = shared::pipedemo(name)
            .args(["cleanup", "--yes"])
            .output()
            .expect("pipedemo runs");
        let members_left = shared::text(&o).contains("stop any `pipedemo consume`");
        if o.status.success() || !members_left || std::time::Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    };
    if !cleared.status.success() {
        // The database keeps the records of what pipedemo made there: without them, the next
        // run would find its own group or topics and refuse them as somebody else's.
        eprintln!(
            "world {name} not cleared; its database stays for the next run to take over:\n{}",
            shared::text(&cleared)
        );
        return;
    }
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
