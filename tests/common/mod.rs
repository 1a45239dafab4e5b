//! Shared helpers of the integration tests, which run against the real stack.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::Duration;

use clap::Parser;
use pipedemo::config::Settings;

/// Runs `scripts/stack.sh` with `args` and extra environment.
pub fn stack_sh(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/stack.sh runs")
}

/// `scripts/stack.sh` of this checkout, copied to `dir` (as a checkout elsewhere would have
/// it), run there with `env`.
pub fn stack_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    let scripts = dir.join("scripts");
    if !scripts.exists() {
        let ok = std::process::Command::new("cp")
            .args(["-r", concat!(env!("CARGO_MANIFEST_DIR"), "/scripts")])
            .arg(&scripts)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying scripts/");
    }
    std::process::Command::new(scripts.join("stack.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Fails the test, saying how to start the stack, unless all four services listen where the
/// settings (flags' defaults, or the environment: POSTGRES_PORT, KAFKA_BOOTSTRAP_SERVERS,
/// CONNECT_URL, MONGODB_URI, …) say they are.
pub fn require_stack() {
    let s = settings("probe", &[]);
    let host_port = |url: &str| -> String {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.split(['/', '?', ','])
            .next()
            .unwrap_or(rest)
            .to_owned()
    };
    let services = [
        ("PostgreSQL", format!("{}:{}", s.pg.host, s.pg.port)),
        ("Kafka", host_port(&s.kafka.bootstrap_servers)),
        ("Kafka Connect", host_port(&s.connect.connect_url)),
        ("MongoDB", host_port(s.mongo.mongodb_uri.expose())),
    ];
    let down: Vec<String> = services
        .iter()
        .filter(|(_, addr)| {
            let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
                .map(|mut a| {
                    a.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
                })
                .unwrap_or(false);
            !reachable
        })
        .map(|(name, addr)| format!("{name} {addr}"))
        .collect();
    assert!(
        down.is_empty(),
        "the stack is not up ({} unreachable): run `scripts/stack.sh up` (or `docker compose up -d --wait`) before the tests",
        down.join(", ")
    );
}

/// The metrics file of test `name` (shared by its [`settings`] and its [`pipedemo`] commands),
/// in a directory of the world's own: pipedemo writes its log, reports and chaos record beside
/// it, and tests running at once must not read each other's.
pub fn metrics_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipedemo-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the test's files");
    dir.join("metrics.jsonl")
}

/// What makes test `name`'s world its own, as pipedemo's variables: a PostgreSQL database (so
/// its own `event_outbox`, publication and ownership records), topic prefix, connector,
/// replication slot, read-model database and consumer group. Tests in different worlds run at
/// the same time on one stack without seeing each other's rows, messages or documents.
pub fn world(name: &str) -> [(&'static str, String); 6] {
    let (under, dash) = (
        format!("pipedemo_test_{name}"),
        format!("pipedemo-test-{name}"),
    );
    [
        ("POSTGRES_DB", under.clone()),
        ("TOPIC_PREFIX", under.clone()),
        ("REPLICATION_SLOT", under.clone()),
        ("MONGODB_DATABASE", under),
        ("CONNECTOR_NAME", dash.clone()),
        ("CONSUMER_GROUP", dash),
    ]
}

/// [`world`]'s variables as `NAME=value ` words, for a command line run by a shell that does
/// not get the test's environment (tmux's server).
pub fn world_vars(name: &str) -> String {
    world(name)
        .iter()
        .map(|(k, v)| format!("{k}={v} "))
        .collect()
}

/// The flag of each of [`world`]'s variables.
const WORLD_FLAGS: [(&str, &str); 6] = [
    ("POSTGRES_DB", "--pg-db"),
    ("TOPIC_PREFIX", "--topic-prefix"),
    ("REPLICATION_SLOT", "--replication-slot"),
    ("MONGODB_DATABASE", "--mongodb-database"),
    ("CONNECTOR_NAME", "--connector-name"),
    ("CONSUMER_GROUP", "--group"),
];

/// `pipedemo` as a user runs it, in test `name`'s own [`world`] with its own metrics file, so
/// that tests do not see each other's data. Add arguments and environment as needed (a flag
/// wins over the world's variables).
pub fn pipedemo(name: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipedemo"));
    c.envs(world(name))
        .env("METRICS_FILE", metrics_file(name))
        .env("POSTGRES_PASSWORD", "pipedemo");
    c
}

/// Runs `tmux -L socket ARGS` (a server of the test's own) and returns its stdout.
pub fn tmux(socket: &str, args: &[&str]) -> String {
    let o = Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()
        .expect("tmux is installed (apt-get install tmux)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout and stderr of a finished command, as one text.
/// The DOM of the HTML file at `path` as headless Chromium renders it (Debian's `chromium`
/// package; `.ci/run` and `scripts/stack.sh test-tools` install it), with its network and
/// background services off: this machine reaches no web.
#[allow(dead_code)]
pub fn chromium_dom(path: &std::path::Path) -> String {
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "Chromium is not installed: scripts/stack.sh test-tools (or apt-get install chromium)",
        );
    let profile = std::env::temp_dir().join(format!("pipedemo-chromium-{}", std::process::id()));
    let o = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", path.canonicalize().unwrap().display()))
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(o.status.success(), "chromium: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Targets of `full` for a test about the show rather than the machine: a minute, which no
/// working pipeline misses, so that a busy two-core machine never decides a test (a phase of
/// ten events has its slowest event as its p95). The seed's targets are the main job's and the
/// unit tests'; how the pipeline does against them is `scripts/bench.sh --only show`.
pub const LAX_TARGETS: [&str; 8] = [
    "--target-p50",
    "30s",
    "--target-p95",
    "45s",
    "--target-p99",
    "60s",
    "--target-success",
    "99%",
];

/// A capacity SLO (p99, ms) for the same tests: the sweep's verdicts without the machine's.
pub const LAX_SLO_P99_MS: &str = "60000";

/// `full`'s capacity phase for the same tests: the lax SLO, and rates even a debug build on a
/// busy machine sustains (the phase, not the ceiling).
pub const LAX_CAPACITY: [&str; 6] = [
    "--slo-p99",
    LAX_SLO_P99_MS,
    "--capacity-start-rate",
    "20",
    "--capacity-max-rate",
    "80",
];

/// `full`'s chaos phase for the same tests: recovered within the lax SLO, given time to.
pub const LAX_CHAOS: [&str; 4] = [
    "--chaos-slo-p99",
    LAX_SLO_P99_MS,
    "--recovery-timeout",
    "300s",
];

/// Runs `pipedemo cleanup --yes` in a test's world when dropped, passed or not: a connector
/// left capturing `event_outbox` decodes every later test's rows too, and on a two-core machine
/// that slows every test after it (a soak measured against its offered rate above all).
pub struct Cleanup(pub fn() -> Command);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = (self.0)().args(["cleanup", "--yes"]).output();
    }
}

/// Why a run failed, most telling first: its exit status and the end of its stderr (where the
/// closing lines say which check broke), then the start of its stdout, so that a failure in a
/// long CI log shows its cause without scrolling past a report.
pub fn failure(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let head: String = stdout.chars().take(4000).collect();
    format!(
        "{}\n--- the last {} of {} stderr lines ---\n{tail}\n--- stdout, {} bytes ---\n{head}",
        o.status,
        lines.len().min(40),
        lines.len(),
        stdout.len()
    )
}

/// Polls `done` every 200 ms until it holds; fails after `within`, saying it waited for `what`.
/// A deadline of a test is a timeout that names what never came, never a verdict on speed.
pub fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process whose stderr the test reads as it runs: it waits for a line by its content, and
/// has every line for a failure message. Killed when dropped, like [`Spawned`].
pub struct Watched {
    proc: Spawned,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    /// Starts `c` with its stdout discarded and its stderr read.
    pub fn start(c: &mut Command) -> Watched {
        use std::io::BufRead;
        let mut proc = Spawned::start(
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
        );
        let stderr = proc.child().stderr.take().expect("stderr piped");
        let lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(l);
            }
        });
        Watched {
            proc,
            lines,
            reader: Some(reader),
        }
    }

    /// Everything it has written to stderr so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until it has written `count` lines containing `needle`; fails after `within`,
    /// saying it waited for `what`, with its log.
    pub fn wait_for(&self, needle: &str, count: usize, within: Duration, what: &str) {
        let seen = || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count()
        };
        let deadline = std::time::Instant::now() + within;
        while seen() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "waited {within:?} for {what} (`{needle}` ×{count}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (`-TERM`, `-KILL`, …) to it.
    pub fn signal(&mut self, signal: &str) {
        self.proc.signal(signal);
    }

    /// Stops it with SIGTERM and returns its status and log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.proc.signal("-TERM");
        let status = self.proc.child().wait().expect("waiting for the process");
        // The reader ends with the pipe, having kept every line.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.log())
    }
}

/// A process the test started; killed when dropped, so a failing test leaves none behind.
pub struct Spawned(Option<Child>);

impl Spawned {
    /// Starts `c`.
    pub fn start(c: &mut Command) -> Spawned {
        Spawned(Some(c.spawn().expect("the process starts")))
    }

    /// The running child.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("not waited for yet")
    }

    /// Sends `signal` (`-TERM`, `-KILL`, `-INT`) to it.
    pub fn signal(&mut self, signal: &str) {
        let pid = self.child().id().to_string();
        let ok = Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid} failed");
    }

    /// Waits for it to end, with whatever output was piped.
    pub fn wait(mut self) -> Output {
        let child = self.0.take().expect("not waited for yet");
        child.wait_with_output().expect("waiting for the process")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    settings: Settings,
}

/// Default settings (as a user with the stack up has), in this test's own [`world`] with its
/// own metrics file so tests do not see each other's data; `extra` flags win over the world's.
pub fn settings(test: &str, extra: &[&str]) -> Settings {
    let metrics = metrics_file(test);
    let given = |flag: &str| {
        extra
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
    };
    let mut argv = vec![
        "pipedemo".to_owned(),
        format!("--metrics-file={}", metrics.display()),
    ];
    for ((_, value), (_, flag)) in world(test).into_iter().zip(WORLD_FLAGS) {
        if !given(flag) {
            argv.push(format!("{flag}={value}"));
        }
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    Args::try_parse_from(argv)
        .expect("valid test settings")
        .settings
}

/// `pipedemo setup` for a test: fresh data, group at the end, one partition, tuned connector.
pub async fn setup(s: &Settings) {
    use pipedemo::provision::setup::{run, SetupOptions};
    run(s, &SetupOptions::fresh(1, false)).await.expect("setup");
}

/// The end offset of partition 0 of `topic` (where the next message will go).
pub async fn end_offset(s: &Settings, topic: &str) -> i64 {
    let (s, topic) = (s.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer;
        let c: rdkafka::consumer::BaseConsumer = pipedemo::pipeline::kafka::client_config(&s.kafka)
            .create()
            .unwrap();
        c.fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap()
            .1
    })
    .await
    .unwrap()
}

/// One dead letter as read back from the dead-letter topic.
#[derive(Debug)]
pub struct Letter {
    /// Its `pipedemo.error` header.
    pub reason: String,
    /// Its `pipedemo.dead_letter` header: `copy` or `reference`.
    pub form: String,
    /// Key, value and headers, bytes.
    pub bytes: usize,
}

/// Reads `n` messages of the dead-letter topic from `from`, returning their reasons; fails if
/// they do not come within 20 s each.
pub async fn dead_letter_reasons(s: &Settings, from: i64, n: usize) -> Vec<String> {
    dead_letters(s, from, n)
        .await
        .into_iter()
        .map(|l| l.reason)
        .collect()
}

/// Reads `n` messages of the dead-letter topic from `from`; fails if they do not come within
/// 20 s each, or if more come.
pub async fn dead_letters(s: &Settings, from: i64, n: usize) -> Vec<Letter> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let consumer: StreamConsumer = pipedemo::pipeline::kafka::client_config(&s.kafka)
        .set("group.id", "pipedemo-test-dlq-reader")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&s.kafka.dlq_topic(), 0, rdkafka::Offset::Offset(from))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut letters: Vec<Letter> = Vec::new();
    while letters.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} dead letters: {letters:#?}", letters.len()))
            .unwrap();
        let h = m.headers().expect("dead letters carry headers");
        assert!(h.iter().any(|h| h.key == "pipedemo.original.offset"));
        assert!(
            m.payload().is_some(),
            "the original bytes (or where they are) are kept"
        );
        let header = |name: &str| {
            h.iter()
                .filter(|h| h.key == name)
                .last()
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        letters.push(Letter {
            reason: header("pipedemo.error").expect("reason header"),
            form: header("pipedemo.dead_letter").unwrap_or_default(),
            bytes: m.key().map_or(0, <[u8]>::len)
                + m.payload().map_or(0, <[u8]>::len)
                + h.iter()
                    .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                    .sum::<usize>(),
        });
    }
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(
        extra.is_err(),
        "more dead letters than expected: {letters:#?}"
    );
    letters
}

/// `headers` with one more header whose name is any bytes (rdkafka's own `insert` takes only
/// UTF-8 names; Kafka does not care).
pub fn with_raw_header(
    headers: rdkafka::message::OwnedHeaders,
    name: &[u8],
    value: &[u8],
) -> rdkafka::message::OwnedHeaders {
    use rdkafka::bindings as rd;
    let p = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *mut rd::rd_kafka_headers_t;
    // SAFETY: a header list this test owns; librdkafka copies name and value.
    let err = unsafe {
        rd::rd_kafka_header_add(
            p,
            name.as_ptr().cast(),
            name.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    headers
}
