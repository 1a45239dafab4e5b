//! Shared helpers of the integration tests, which run against the real stack.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use pipedemo::config::Settings;

/// Tests share one outbox table and connector, so they run one at a time.
pub fn serial() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Runs `scripts/stack.sh` with `args` and extra environment.
pub fn stack_sh(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/stack.sh runs")
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
        "the stack is not up ({} unreachable): run `scripts/stack.sh up` (or `docker compose up -d --wait`) before `cargo test`",
        down.join(", ")
    );
}

/// The metrics file of test `name` (shared by its [`settings`] and its [`pipedemo`] commands).
pub fn metrics_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pipedemo-test-{name}-{}.jsonl", std::process::id()))
}

/// `pipedemo` as a user runs it, in test `name`'s own world: its read-model database
/// (`pipedemo_test_NAME`), consumer group (`pipedemo-test-NAME`) and metrics file, so that
/// tests do not see each other's data. Add arguments and environment as needed.
pub fn pipedemo(name: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipedemo"));
    c.env("MONGODB_DATABASE", format!("pipedemo_test_{name}"))
        .env("CONSUMER_GROUP", format!("pipedemo-test-{name}"))
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

/// Targets of `full` for a test about the show rather than the machine: a phase of ten events
/// has its slowest event as its p95, and the seed's targets would let one hiccup of a busy
/// two-core machine decide the test. The seed's targets are the main job's and the unit tests'.
pub const LAX_TARGETS: [&str; 8] = [
    "--target-p50",
    "1s",
    "--target-p95",
    "2s",
    "--target-p99",
    "5s",
    "--target-success",
    "99%",
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

/// Default settings (as a user with the stack up has), with this test's own read-model
/// database, consumer group and metrics file so tests do not see each other's data.
pub fn settings(test: &str, extra: &[&str]) -> Settings {
    let metrics = metrics_file(test);
    let mut argv = vec![
        "pipedemo".to_owned(),
        format!("--mongodb-database=pipedemo_test_{test}"),
        format!("--group=pipedemo-test-{test}"),
        format!("--metrics-file={}", metrics.display()),
    ];
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
