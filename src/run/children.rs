//! Consumers in child processes (`pipedemo consume`), for runs that break them on purpose
//! (`chaos`): a real SIGKILL needs a real process. Each child appends its records to a metrics
//! file of its own; a tail reads them back into this process's metrics channel, so the live
//! state, the run's metrics file and the reports see them as if the consumer ran here.
//!
//! A supervisor restarts the main consumer when it ends (as systemd or Kubernetes would), and
//! says meanwhile that it is down, so the dashboard turns DEGRADED with the cause.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::pipeline::consumer::Totals;
use crate::pipeline::kafka::admin;
use crate::telemetry::live::Shared;
use crate::telemetry::metrics::{MetricEvent, MetricsSender};

/// The consumer processes' log, next to the metrics file.
pub const LOG_FILE: &str = "pipedemo-consumers.log";

/// How long the supervisor waits before restarting a consumer that ended.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// How often the tails read their files and the supervisor looks at the main consumer.
const POLL: Duration = Duration::from_millis(50);

/// A handle on the run's consumer processes; clones share them.
#[derive(Clone)]
pub struct Children {
    inner: Arc<Mutex<Inner>>,
    live: Shared,
    supervisor: Arc<std::sync::Mutex<Option<Supervisor>>>,
}

/// The supervisor task and what stops it.
type Supervisor = (CancellationToken, JoinHandle<()>);

struct Inner {
    settings: Settings,
    tx: Option<MetricsSender>,
    main: Option<Proc>,
    extra: Option<Proc>,
    seq: u32,
    tails: Vec<Tail>,
    log: PathBuf,
    /// Consumers that ended without being asked to (crashes, kills), with how.
    ended: Vec<String>,
    /// Why the main consumer is not restarted: it refused its settings or found the pipeline
    /// not set up (exit 2), which a restart cannot change.
    gave_up: Option<String>,
}

struct Proc {
    child: tokio::process::Child,
    pid: u32,
}

struct Tail {
    stop: CancellationToken,
    task: JoinHandle<Totals>,
    file: PathBuf,
}

impl Children {
    /// Starts the main consumer; its records go to `tx`.
    pub async fn start(s: &Settings, tx: MetricsSender, live: Shared) -> Result<Children> {
        let dir = s
            .output
            .metrics_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut inner = Inner {
            settings: s.clone(),
            tx: Some(tx),
            main: None,
            extra: None,
            seq: 0,
            tails: Vec::new(),
            log: dir.join(LOG_FILE),
            ended: Vec::new(),
            gave_up: None,
        };
        inner.main = Some(inner.spawn(Slot::Main)?);
        let children = Children {
            inner: Arc::new(Mutex::new(inner)),
            live,
            supervisor: Arc::default(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(children.clone().supervise(stop.clone()));
        *children.supervisor.lock().expect("supervisor lock") = Some((stop, task));
        Ok(children)
    }

    /// Where the consumers' logs go.
    pub async fn log(&self) -> PathBuf {
        self.inner.lock().await.log.clone()
    }

    /// Restarts the main consumer whenever it ends, after [`RESTART_DELAY`].
    async fn supervise(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let ended = {
                let mut inner = self.inner.lock().await;
                match inner.main.as_mut().map(|p| (p.pid, p.child.try_wait())) {
                    Some((pid, Ok(Some(status)))) => {
                        inner.main = None;
                        let how = format!("consumer process {pid} {}", ended_how(status));
                        inner.ended.push(how.clone());
                        if status.code() == Some(i32::from(crate::exit::Exit::Usage.code())) {
                            let why = last_error(&inner.log).unwrap_or(how);
                            tracing::error!("{why}; the consumer is not restarted");
                            self.live.lock().process_problem = Some(why.clone());
                            inner.gave_up = Some(why);
                            return;
                        }
                        Some(how)
                    }
                    _ => None,
                }
            };
            let Some(how) = ended else { continue };
            tracing::warn!("{how}; restarting it in {} s", RESTART_DELAY.as_secs());
            self.live.lock().process_problem = Some(how);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RESTART_DELAY) => {}
            }
            let mut inner = self.inner.lock().await;
            match inner.spawn(Slot::Main) {
                Ok(p) => {
                    tracing::info!(pid = p.pid, "consumer restarted");
                    inner.main = Some(p);
                    self.live.lock().process_problem = None;
                }
                Err(e) => {
                    tracing::error!("cannot restart the consumer: {e:#}");
                    self.live.lock().process_problem =
                        Some(format!("consumer cannot be restarted: {e:#}"));
                }
            }
        }
    }

    /// The main consumer's process id, while one runs.
    pub async fn main_pid(&self) -> Option<u32> {
        self.inner.lock().await.main.as_ref().map(|p| p.pid)
    }

    /// Sends `signal` to the main consumer (SIGKILL: a crash; SIGUSR1: crash after the next
    /// batch's MongoDB write, before its offsets are committed). Returns its pid.
    pub async fn signal_main(&self, signal: i32) -> Result<u32> {
        let inner = self.inner.lock().await;
        let p = inner
            .main
            .as_ref()
            .context("no consumer process is running")?;
        send(p.pid, signal)?;
        Ok(p.pid)
    }

    /// Waits until the main consumer has ended (and the supervisor seen it) and a new one
    /// runs, up to `limit`. Returns when the new one started.
    pub async fn restarted(&self, old_pid: u32, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pid) = self.main_pid().await {
                if pid != old_pid {
                    return Ok(Instant::now());
                }
            }
            if Instant::now() > deadline {
                bail!("no new consumer process within {} s", limit.as_secs());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts a second consumer in the group (a rebalance).
    pub async fn join_extra(&self) -> Result<u32> {
        let mut inner = self.inner.lock().await;
        if inner.extra.is_some() {
            bail!("a second consumer already runs");
        }
        let p = inner.spawn(Slot::Extra)?;
        let pid = p.pid;
        inner.extra = Some(p);
        Ok(pid)
    }

    /// Stops the second consumer cleanly (SIGTERM: it commits and leaves the group).
    pub async fn leave_extra(&self) -> Result<()> {
        let p = self.inner.lock().await.extra.take();
        if let Some(p) = p {
            stop(p, Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    /// Waits until the group has at least `members` consumers and is stable.
    pub async fn wait_members(&self, members: usize, limit: Duration) -> Result<()> {
        let kafka = self.inner.lock().await.settings.kafka.clone();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(why) = self.gave_up().await {
                return Err(crate::exit::config(format!(
                    "the consumer process stopped: {why}"
                )));
            }
            if let Ok(Some(g)) = admin::group_state(&kafka, &kafka.group).await {
                if g.state == "Stable" && g.members >= members {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the consumer group {} did not reach {members} running member(s) within {} s \
                     (see {})",
                    kafka.group,
                    limit.as_secs(),
                    self.log().await.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Why the main consumer was given up (it exited 2: settings refused, or the pipeline not
    /// set up), in its own words; the run cannot go on.
    pub async fn gave_up(&self) -> Option<String> {
        self.inner.lock().await.gave_up.clone()
    }

    /// Consumer processes that ended without being asked to, and how.
    pub async fn ended(&self) -> Vec<String> {
        self.inner.lock().await.ended.clone()
    }

    /// Stops every consumer cleanly, reads their last records and removes their files.
    pub async fn finish(self) -> Result<Totals> {
        let sup = self.supervisor.lock().expect("supervisor lock").take();
        if let Some((stop, task)) = sup {
            stop.cancel();
            let _ = task.await;
        }
        let mut inner = self.inner.lock().await;
        let procs: Vec<Proc> = inner
            .main
            .take()
            .into_iter()
            .chain(inner.extra.take())
            .collect();
        for p in procs {
            stop(p, Duration::from_secs(30)).await?;
        }
        let mut totals = Totals::default();
        for t in inner.tails.drain(..) {
            t.stop.cancel();
            let got = t.task.await.context("metrics tail")?;
            totals.applied += got.applied;
            totals.already_applied += got.already_applied;
            totals.dead_lettered += got.dead_lettered;
            totals.skipped += got.skipped;
            let _ = std::fs::remove_file(&t.file);
        }
        inner.tx = None;
        Ok(totals)
    }
}

/// Which consumer a child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// The one the supervisor restarts: a static group member, so that its restart takes
    /// back its partitions at once (the killed one's session is not waited out).
    Main,
    /// The second member of a rebalance: dynamic, so that its leaving hands its partitions
    /// back at once.
    Extra,
}

/// The main consumer's static member id: the same for every restart of this run, another
/// for every run (so that two runs on one group never fence each other).
fn main_instance_id(group: &str) -> String {
    let safe: String = group
        .chars()
        .map(|c| {
            if crate::pipeline::consumer::instance_id_char(c) {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    format!("{safe}-chaos-{}", std::process::id())
}

impl Inner {
    /// Starts `pipedemo consume` with this run's settings (through the environment) and a
    /// metrics file of its own, and tails that file.
    fn spawn(&mut self, slot: Slot) -> Result<Proc> {
        let tx = self.tx.clone().context("the run is over")?;
        self.seq += 1;
        let dir = self.log.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = dir.join(format!(
            "pipedemo-consumer-{}-{}.jsonl",
            std::process::id(),
            self.seq
        ));
        // A file left by an earlier process with this pid would be read as this one's.
        let _ = std::fs::remove_file(&file);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot write {}", self.log.display()))?;
        if log.metadata().is_ok_and(|m| m.len() == 0) {
            // The header that lets `cleanup` tell the file is pipedemo's.
            use std::io::Write;
            log.write_all(crate::run_id::log_header().as_bytes())?;
        }
        let exe = std::env::current_exe().context("cannot find the pipedemo executable")?;
        let mut cmd = tokio::process::Command::new(exe);
        own_group_dying_with_parent(&mut cmd);
        // Exactly the parent's settings: none of the variables a setting reads is inherited
        // (nor read again from `.env` or the config file), each is given as the parent has it.
        for name in &self.settings.child_env.remove {
            cmd.env_remove(name);
        }
        let child = cmd
            .args(["consume", "--chaos-hooks"])
            .args(match slot {
                Slot::Main => vec![
                    "--instance-id".to_owned(),
                    main_instance_id(&self.settings.kafka.group),
                ],
                Slot::Extra => Vec::new(),
            })
            // A user's id for their own consumers is not this run's children's.
            .env_remove("PIPEDEMO_INSTANCE_ID")
            .envs(self.settings.child_env.vars.iter().map(|(k, v)| (k, v)))
            .env(crate::config::SETTINGS_FROM_PARENT, "1")
            .env("METRICS_FILE", &file)
            .env("NO_COLOR", "1")
            // The port is this process's.
            .env_remove("METRICS_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `pipedemo consume`")?;
        let pid = child.id().context("the consumer process ended at once")?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(tail(file.clone(), tx, stop.clone()));
        self.tails.push(Tail { stop, task, file });
        Ok(Proc { child, pid })
    }
}

/// Puts a child in a process group of its own, so that a Ctrl-C at the terminal reaches only
/// pipedemo (which stops its children itself, after clearing any fault), and has the kernel
/// send it SIGTERM when pipedemo dies, so that no consumer goes on consuming and committing
/// after a killed parent. The runtime is single-threaded: the thread that spawns is the
/// process's main thread, whose end is the process's (the parent-death signal follows the
/// spawning thread).
pub fn own_group_dying_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the signal was asked for: do as it would have done.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        });
    }
}

/// The last `error:` line of the consumers' log, bounded: what a consumer that gave up said.
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let tail = &text[text.len().saturating_sub(16 * 1024)..];
    let line = String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error:").map(|e| e.trim().to_owned()))?;
    Some(crate::pipeline::bounded::prefix(&line, crate::pipeline::bounded::ECHO_LIMIT).into_owned())
}

/// How a process ended, in words.
fn ended_how(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(9)) => "was killed (SIGKILL)".into(),
        (_, Some(6)) => "crashed (SIGABRT)".into(),
        (_, Some(s)) => format!("ended by signal {s}"),
        (Some(c), _) => format!("exited with status {c}"),
        _ => "ended".into(),
    }
}

fn send(pid: u32, signal: i32) -> Result<()> {
    // SAFETY: kill(2) with a pid this process started and still holds (not yet reaped).
    if unsafe { libc::kill(pid as i32, signal) } != 0 {
        bail!(
            "cannot signal consumer process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(mut p: Proc, grace: Duration) -> Result<()> {
    if p.child.try_wait()?.is_some() {
        return Ok(());
    }
    send(p.pid, libc::SIGTERM)?;
    match tokio::time::timeout(grace, p.child.wait()).await {
        Ok(r) => {
            r?;
        }
        Err(_) => {
            tracing::warn!(
                pid = p.pid,
                "consumer did not stop within {grace:?}; killing it"
            );
            p.child.kill().await?;
        }
    }
    Ok(())
}

/// Follows a child's metrics file, sending each whole line's record to `tx`, until `stop`
/// (then reads to the end once more). A line cut short by a crash is left out.
async fn tail(path: PathBuf, tx: MetricsSender, stop: CancellationToken) -> Totals {
    use std::io::{Read, Seek, SeekFrom};
    let mut totals = Totals::default();
    let mut pos = 0u64;
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let last = stop.is_cancelled();
        if let Ok(mut f) = std::fs::File::open(&path) {
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(pos)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                pos += buf.len() as u64;
                partial.extend_from_slice(&buf);
                let whole = partial
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                for line in partial[..whole].split(|b| *b == b'\n') {
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<MetricEvent>(line) {
                        Ok(ev) => {
                            count(&mut totals, &ev);
                            let _ = tx.send(ev);
                        }
                        Err(e) => tracing::debug!(error = %e, "unreadable consumer record"),
                    }
                }
                partial.drain(..whole);
            }
        }
        if last {
            return totals;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

fn count(t: &mut Totals, ev: &MetricEvent) {
    match ev {
        MetricEvent::Event(r) if r.applied => t.applied += 1,
        MetricEvent::Event(_) => t.already_applied += 1,
        MetricEvent::Error(_) => t.dead_lettered += 1,
        MetricEvent::Skipped { .. } => t.skipped += 1,
        MetricEvent::Outage { .. } => {}
    }
}
