//! How generated events become outbox transactions: which events share a transaction, when
//! it is sent, and on how many PostgreSQL connections.
//!
//! Two write models:
//! - [`Shape::Window`] and the default [`Shape::Scaled`], the load tester's: one transaction
//!   per window of time holding that window's share of the rate, all of its events due when
//!   it is written (at 4,000 events/s in 20 ms windows, 80 rows 50 times a second; at 2
//!   events/s, one row every 0.5 s). No event waits in pipedemo before its write, so the
//!   latency counted from schedule is the pipeline's; the window bounds the transactions per
//!   second (Debezium's and PostgreSQL's cost per transaction). The default window grows with
//!   the rate ([`scaled_window`]): small windows are fastest while the machine has room, large
//!   ones once every transaction's cost competes for the cores.
//! - [`Shape::Rows`], an application's: N outbox rows per business transaction, all due at
//!   once (1 = one row per transaction).
//!
//! With several connections, transactions commit concurrently, in any order, as an
//! application's pool does. Each aggregate's events still commit in order, and an event
//! commits only after the events it refers to (an activity after its creator, a join after
//! its activity and its user): a transaction waits for the ones holding what it refers to.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinSet;
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

use crate::config::PostgresArgs;
use uuid::Uuid;

use crate::pipeline::generator::refers_to;
use crate::pipeline::outbox::{self, NewEvent, Retention};

/// Which events share a transaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Paced: one transaction per window of this length holding the window's events, all due
    /// at its first event's time. Unpaced: [`UNPACED_ROWS`] rows per transaction.
    Window(Duration),
    /// [`Shape::Window`] with the window [`scaled_window`] gives the rate.
    Scaled,
    /// This many rows per transaction, all due at the transaction's time.
    Rows(usize),
}

/// The window of [`Shape::Scaled`] at `rate` events/s: 5 ms up to 1,000 events/s, then in
/// proportion to the rate, 25 ms from 5,000 on. Measured (README, "The write model"): at 1,000
/// events/s 5 ms windows gave p50 8–10 ms against 12–14 ms for 25 ms ones; at 4,000 events/s
/// 25 ms windows gave p99 69–114 ms against 171–300 ms for 10 ms ones (200 transactions/s
/// compete with the events for the two cores).
pub fn scaled_window(rate: f64) -> Duration {
    Duration::from_secs_f64((0.005 * rate / 1000.0).clamp(0.005, 0.025))
}

/// Rows per transaction when nothing paces them, and the most a window takes.
pub const UNPACED_ROWS: usize = 100;

/// The largest transaction a window makes: beyond it a transaction is a burst.
const MAX_WINDOW_ROWS: usize = 1000;

/// How a phase writes its events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WriteModel {
    /// Which events share a transaction.
    pub shape: Shape,
    /// Concurrent PostgreSQL connections writing them.
    pub connections: usize,
    /// Whether rows stay in the outbox or are deleted in their own transaction.
    pub retention: Retention,
}

impl Default for WriteModel {
    fn default() -> Self {
        WriteModel {
            shape: Shape::Scaled,
            connections: 1,
            retention: Retention::Keep,
        }
    }
}

impl WriteModel {
    /// How it writes at `rate` (events/s; `None`: unpaced): the default's window at that rate.
    pub fn at_rate(&self, rate: Option<f64>) -> String {
        match (self.shape, rate) {
            (Shape::Scaled, Some(r)) => WriteModel {
                shape: Shape::Window(scaled_window(r)),
                ..*self
            }
            .to_string(),
            (Shape::Window(_) | Shape::Scaled, None) => WriteModel {
                shape: Shape::Rows(UNPACED_ROWS),
                ..*self
            }
            .to_string(),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for WriteModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            Shape::Window(w) => write!(f, "{} ms windows", w.as_secs_f64() * 1e3)?,
            Shape::Scaled => write!(f, "5–25 ms windows by rate")?,
            Shape::Rows(1) => write!(f, "1 row per transaction")?,
            Shape::Rows(n) => write!(f, "{n} rows per transaction")?,
        }
        let c = self.connections;
        write!(f, ", {c} connection{}", if c == 1 { "" } else { "s" })?;
        if self.retention == Retention::Delete {
            write!(f, ", rows deleted in their transaction")?;
        }
        Ok(())
    }
}

/// One planned transaction: `rows` events from `first` on, due (and sent) `due` after the
/// phase's start, every event of it alike (unpaced: sent at once).
#[derive(Clone, Debug, PartialEq)]
pub struct TxPlan {
    /// Index of its first event in the phase.
    pub first: u64,
    /// How many events it holds.
    pub rows: usize,
    /// When it and its events are due, after the phase's start; `None` unpaced.
    pub due: Option<Duration>,
}

/// The transactions of a phase of `total` events at `rate` (events/s; `None`: unpaced), in
/// order. A pure plan: it decides, the writer only follows it.
pub fn plan(total: u64, rate: Option<f64>, shape: Shape) -> impl Iterator<Item = TxPlan> {
    let mut first = 0u64;
    std::iter::from_fn(move || {
        if first >= total {
            return None;
        }
        let due_of = |i: u64, r: f64| Duration::from_secs_f64(i as f64 / r);
        let tx = match (rate, shape) {
            (None, _) => {
                let rows = match shape {
                    Shape::Rows(n) => n.max(1),
                    Shape::Window(_) | Shape::Scaled => UNPACED_ROWS,
                } as u64;
                let n = rows.min(total - first);
                TxPlan {
                    first,
                    rows: n as usize,
                    due: None,
                }
            }
            (Some(r), Shape::Window(_) | Shape::Scaled) => {
                let w = match shape {
                    Shape::Window(w) => w,
                    _ => scaled_window(r),
                };
                // The window holding event `first`, and every later event due in it.
                let per_window = r * w.as_secs_f64();
                let k = (first as f64 / per_window).floor();
                let end = (((k + 1.0) * per_window).ceil() as u64)
                    .clamp(first + 1, total)
                    .min(first + MAX_WINDOW_ROWS as u64);
                TxPlan {
                    first,
                    rows: (end - first) as usize,
                    due: Some(due_of(first, r)),
                }
            }
            (Some(r), Shape::Rows(n)) => {
                let rows = (n.max(1) as u64).min(total - first);
                TxPlan {
                    first,
                    rows: rows as usize,
                    due: Some(due_of(first, r)),
                }
            }
        };
        first += tx.rows as u64;
        Some(tx)
    })
}

/// For each transaction, the latest earlier transaction it must commit after: the last one
/// that touched an aggregate it refers to. Entries at or below the committed mark are
/// pruned, so the map holds only what is in flight.
#[derive(Default, Debug)]
pub struct Order {
    last: HashMap<Uuid, u64>,
}

impl Order {
    /// The transaction `seq` holding `events` must wait for the returned one (0: none).
    pub fn after(&mut self, seq: u64, events: &[NewEvent]) -> u64 {
        let mut after = 0;
        for e in events {
            for id in refers_to(e) {
                if let Some(&s) = self.last.get(&id) {
                    if s != seq {
                        after = after.max(s);
                    }
                }
                self.last.insert(id, seq);
            }
        }
        after
    }

    /// Forgets what committed at or below `mark`.
    pub fn prune(&mut self, mark: u64) {
        self.last.retain(|_, s| *s > mark);
    }
}

/// The committed low-water mark: every transaction up to it has committed, whatever order
/// they finished in.
#[derive(Debug, Default)]
pub struct Mark {
    mark: u64,
    done: BTreeSet<u64>,
}

impl Mark {
    /// Records that `seq` (numbered from 1) committed; returns the new mark.
    pub fn done(&mut self, seq: u64) -> u64 {
        self.done.insert(seq);
        while self.done.remove(&(self.mark + 1)) {
            self.mark += 1;
        }
        self.mark
    }
}

struct Job {
    seq: u64,
    after: u64,
    events: Vec<NewEvent>,
}

/// Connections writing transactions, in the order rules above.
pub struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: JoinSet<Result<()>>,
    committed: watch::Receiver<u64>,
    order: Order,
    seq: u64,
    serial: bool,
    /// Cancelled when a writer fails: the others stop waiting for what it would have
    /// committed, and the plan stops sending.
    failed: CancellationToken,
}

/// How a writer rides out a PostgreSQL restart: it reconnects and sends the transaction
/// again, for up to `limit`, as an application's outbox writer would.
#[derive(Clone, Debug)]
pub struct Reconnect {
    /// Where to reconnect.
    pub pg: PostgresArgs,
    /// How long to keep trying.
    pub limit: Duration,
}

/// Whether a failed write is worth sending again on a new connection: the connection is
/// gone, or the server is shutting down or not yet accepting (SQLSTATE classes 08 and 57).
fn connection_lost(client: &Client, e: &anyhow::Error) -> bool {
    if client.is_closed() {
        return true;
    }
    match e
        .chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
    {
        Some(pe) => pe
            .code()
            .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57")),
        None => false,
    }
}

/// A key that already exists: the transaction sent again had committed the first time (its
/// acknowledgement was lost with the connection).
fn already_committed(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|pe| pe.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
}

/// One writer's connection and the insert statement prepared on it (on first use).
struct Conn {
    client: Arc<Client>,
    insert: Option<Statement>,
}

impl Conn {
    /// Writes one transaction's rows: an `INSERT` of arrays when they are few (one round
    /// trip), `COPY` otherwise.
    async fn insert(&mut self, events: &[NewEvent], retention: Retention) -> Result<u64> {
        match retention {
            Retention::Delete => outbox::insert_batch_deleting(&self.client, events).await,
            Retention::Keep if outbox::by_copy(events.len()) => {
                outbox::insert_batch(&self.client, events).await
            }
            Retention::Keep => {
                let insert = match &self.insert {
                    Some(s) => s,
                    None => self
                        .insert
                        .insert(outbox::prepare_insert(&self.client).await?),
                };
                outbox::insert_prepared(&self.client, insert, events).await
            }
        }
    }
}

/// Writes one transaction, reconnecting as `reconnect` allows.
async fn write(
    conn: &mut Conn,
    events: &[NewEvent],
    reconnect: Option<&Reconnect>,
    retention: Retention,
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut resent = false;
    let mut pause = Duration::from_millis(100);
    loop {
        let written = conn.insert(events, retention).await;
        let client = &mut conn.client;
        let e = match written {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if resent && already_committed(&e) {
            return Ok(());
        }
        let Some(r) = reconnect.filter(|_| connection_lost(client, &e)) else {
            return Err(e);
        };
        if started.elapsed() > r.limit {
            return Err(e.context(format!(
                "PostgreSQL did not come back within {} s",
                r.limit.as_secs()
            )));
        }
        if !resent {
            tracing::warn!("PostgreSQL connection lost ({e:#}); reconnecting");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        if client.is_closed() {
            match outbox::connect(&r.pg).await {
                Ok(c) => {
                    *client = Arc::new(c);
                    conn.insert = None;
                    tracing::info!("PostgreSQL is back; sending the transaction again");
                }
                Err(_) => continue,
            }
        }
        resent = true;
    }
}

impl Pool {
    /// Starts one writer per client.
    pub fn start(clients: Vec<Arc<Client>>) -> Pool {
        Pool::start_with(clients, None, Retention::Keep)
    }

    /// Like [`Pool::start`]; the writers reconnect when PostgreSQL goes away, as `reconnect`
    /// says.
    pub fn start_with(
        clients: Vec<Arc<Client>>,
        reconnect: Option<Reconnect>,
        retention: Retention,
    ) -> Pool {
        let serial = clients.len() <= 1;
        // A short queue: a writer that cannot keep up holds the plan back (its events are
        // still due at their times, so the latency shows it) rather than filling memory.
        let (jobs, rx) = mpsc::channel::<Job>(clients.len().max(1) * 2);
        let rx = Arc::new(Mutex::new(rx));
        let (mark_tx, committed) = watch::channel(0u64);
        let mark = Arc::new(std::sync::Mutex::new(Mark::default()));
        let failed = CancellationToken::new();
        let mut workers = JoinSet::new();
        for client in clients {
            let reconnect = reconnect.clone();
            let (rx, mark, mark_tx, mut committed, failed) = (
                rx.clone(),
                mark.clone(),
                mark_tx.clone(),
                committed.clone(),
                failed.clone(),
            );
            workers.spawn(async move {
                let mut conn = Conn {
                    client,
                    insert: None,
                };
                let r: Result<()> = async {
                    loop {
                        let job = tokio::select! {
                            j = async { rx.lock().await.recv().await } => j,
                            _ = failed.cancelled() => None,
                        };
                        let Some(job) = job else { return Ok(()) };
                        if job.after > 0 {
                            tokio::select! {
                                r = committed.wait_for(|m| *m >= job.after) => {
                                    r.context("the outbox writers stopped")?;
                                }
                                // Another writer failed and reports why.
                                _ = failed.cancelled() => return Ok(()),
                            }
                        }
                        write(&mut conn, &job.events, reconnect.as_ref(), retention).await?;
                        let m = mark.lock().expect("mark lock").done(job.seq);
                        mark_tx.send_replace(m);
                    }
                }
                .await;
                if r.is_err() {
                    failed.cancel();
                }
                r
            });
        }
        Pool {
            jobs: Some(jobs),
            workers,
            committed,
            order: Order::default(),
            seq: 0,
            serial,
            failed,
        }
    }

    /// Queues one transaction; waits while every connection is busy and the queue is full.
    pub async fn send(&mut self, events: Vec<NewEvent>) -> Result<()> {
        self.seq += 1;
        let after = if self.serial {
            0
        } else {
            if self.seq % 1024 == 0 {
                self.order.prune(*self.committed.borrow());
            }
            self.order.after(self.seq, &events)
        };
        let job = Job {
            seq: self.seq,
            after,
            events,
        };
        let sent = match &self.jobs {
            Some(j) => tokio::select! {
                r = j.send(job) => r.is_ok(),
                _ = self.failed.cancelled() => false,
            },
            None => false,
        };
        if !sent {
            // Every writer ended: one failed; its error says why.
            self.jobs = None;
            return Err(self.failure().await);
        }
        Ok(())
    }

    async fn failure(&mut self) -> anyhow::Error {
        self.failed.cancel();
        while let Some(r) = self.workers.join_next().await {
            match r {
                Ok(Err(e)) => return e,
                Err(e) => return anyhow::anyhow!("outbox writer panicked: {e}"),
                Ok(Ok(())) => {}
            }
        }
        anyhow::anyhow!("the outbox writers stopped")
    }

    /// Waits until every queued transaction has committed; returns how many there were.
    pub async fn finish(mut self) -> Result<u64> {
        self.jobs = None;
        while let Some(r) = self.workers.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => anyhow::bail!("outbox writer panicked: {e}"),
            }
        }
        Ok(self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::pipeline::generator::generate;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_plan_covers_every_event_and_never_sends_early_or_late() {
        for (total, rate, w) in [
            (1000, 4000.0, 10),
            (7, 2.0, 10),
            (10_000, 133.0, 5),
            (50, 1e6, 10),
        ] {
            let txs: Vec<TxPlan> = plan(total, Some(rate), Shape::Window(ms(w))).collect();
            assert_eq!(txs.iter().map(|t| t.rows as u64).sum::<u64>(), total);
            let mut next = 0;
            for t in &txs {
                assert_eq!(t.first, next, "contiguous");
                next += t.rows as u64;
                // Due (and sent) when its first event's share of the rate is: no event
                // waits for a later one, none goes in before its time.
                let first_due = Duration::from_secs_f64(t.first as f64 / rate);
                assert_eq!(t.due, Some(first_due), "a transaction waited or went early");
                let last_due = Duration::from_secs_f64((next - 1) as f64 / rate);
                assert!(
                    last_due < first_due + ms(w),
                    "more than one window's events"
                );
                assert!(t.rows <= MAX_WINDOW_ROWS);
            }
        }
        // 4,000 ev/s in 10 ms windows: 40 rows, 100 transactions a second, each due (and
        // sent) at its window's start.
        let txs: Vec<TxPlan> = plan(4000, Some(4000.0), Shape::Window(ms(10))).collect();
        assert_eq!(txs.len(), 100);
        assert!(txs.iter().all(|t| t.rows == 40));
        assert_eq!(txs[3].due, Some(ms(30)));
        // 2 ev/s: each event is its own transaction, sent when due.
        let txs: Vec<TxPlan> = plan(3, Some(2.0), Shape::Window(ms(10))).collect();
        assert_eq!(txs.iter().map(|t| t.rows).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(txs[2].due, Some(ms(1000)));
        // Never more than one window's share: 7 events at 2 ev/s are 7 transactions.
        assert_eq!(plan(7, Some(2.0), Shape::Window(ms(25))).count(), 7);
    }

    #[test]
    fn the_default_window_grows_with_the_rate() {
        assert_eq!(scaled_window(2.0), ms(5));
        assert_eq!(scaled_window(1000.0), ms(5));
        assert_eq!(scaled_window(2000.0), ms(10));
        assert_eq!(scaled_window(4000.0), ms(20));
        assert_eq!(scaled_window(20_000.0), ms(25));
        // 4,000 ev/s: 80 rows 50 times a second.
        let txs: Vec<TxPlan> = plan(4000, Some(4000.0), Shape::Scaled).collect();
        assert_eq!(txs.len(), 50);
        assert!(txs.iter().all(|t| t.rows == 80));
    }

    #[test]
    fn rows_plan_is_an_applications_transactions() {
        let txs: Vec<TxPlan> = plan(10, Some(100.0), Shape::Rows(4)).collect();
        assert_eq!(txs.iter().map(|t| t.rows).collect::<Vec<_>>(), [4, 4, 2]);
        // All rows of a transaction are due together, at the transaction's time.
        assert_eq!(txs[1].due, Some(ms(40)));
        let one: Vec<TxPlan> = plan(3, Some(1000.0), Shape::Rows(1)).collect();
        assert_eq!(one.len(), 3);
        assert_eq!(one[2].due, Some(ms(2)));
    }

    #[test]
    fn unpaced_plans_fixed_transactions() {
        let txs: Vec<TxPlan> = plan(250, None, Shape::Window(ms(10))).collect();
        assert_eq!(
            txs.iter().map(|t| t.rows).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert!(txs.iter().all(|t| t.due.is_none()));
        let txs: Vec<TxPlan> = plan(5, None, Shape::Rows(1)).collect();
        assert_eq!(txs.len(), 5);
    }

    #[test]
    fn joins_wait_for_their_activity_and_user() {
        let evs = generate(200, Some(3));
        let mut order = Order::default();
        // One event per transaction: each must come after the ones that created what it
        // refers to (an activity's creator; a join's activity and user).
        let mut created: HashMap<Uuid, u64> = HashMap::new();
        let id =
            |e: &NewEvent, k: &str| -> Uuid { e.payload[k].as_str().unwrap().parse().unwrap() };
        for (k, e) in evs.iter().enumerate() {
            let seq = k as u64 + 1;
            let after = order.after(seq, std::slice::from_ref(e));
            let needs = match e.event_type {
                EventType::UserCreated => vec![],
                EventType::ActivityCreated => vec![created[&id(e, "creator_user_id")]],
                EventType::ParticipantJoined => {
                    vec![created[&e.aggregate_id], created[&id(e, "user_id")]]
                }
            };
            assert!(
                needs.iter().all(|n| after >= *n),
                "{:?} may commit first",
                e.event_type
            );
            assert!(after < seq);
            if e.event_type != EventType::ParticipantJoined {
                created.insert(e.aggregate_id, seq);
            }
        }
        // Pruning forgets only what committed.
        order.prune(150);
        assert!(order.last.values().all(|s| *s > 150));
    }

    #[test]
    fn the_mark_is_the_highest_seq_with_everything_below_done() {
        let mut m = Mark::default();
        assert_eq!(m.done(2), 0);
        assert_eq!(m.done(3), 0);
        assert_eq!(m.done(1), 3);
        assert_eq!(m.done(5), 3);
        assert_eq!(m.done(4), 5);
    }

    #[test]
    fn write_models_read_plainly_at_their_rate() {
        let d = WriteModel::default();
        assert_eq!(d.at_rate(Some(4000.0)), "20 ms windows, 1 connection");
        assert_eq!(d.at_rate(None), "100 rows per transaction, 1 connection");
        assert_eq!(
            WriteModel::default().to_string(),
            "5–25 ms windows by rate, 1 connection"
        );
        let app = WriteModel {
            shape: Shape::Rows(1),
            connections: 8,
            retention: Retention::Keep,
        };
        assert_eq!(app.to_string(), "1 row per transaction, 8 connections");
        let deleting = WriteModel {
            retention: Retention::Delete,
            ..app
        };
        assert_eq!(
            deleting.to_string(),
            "1 row per transaction, 8 connections, rows deleted in their transaction"
        );
    }
}
