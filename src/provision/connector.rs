//! Registering and watching the Debezium PostgreSQL connector over Kafka Connect's REST API.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{ConnectArgs, KafkaArgs, KeyValue, PostgresArgs, Routing};
use crate::pipeline::backoff::Backoff;
use crate::pipeline::diagnose::root_cause;
use crate::pipeline::routed::headers;
use crate::telemetry::health::{ConnectorHealth, ConnectorState};

const PLUGIN: &str = "io.debezium.connector.postgresql.PostgresConnector";

/// The connector setting that marks a connector as registered by pipedemo: only such a
/// connector is overwritten or deleted without `--force`. Connect and Debezium ignore
/// settings they do not define.
pub const OWNER_KEY: &str = "pipedemo.created.by";

/// Whether a connector's configuration carries pipedemo's mark (its setup registered it).
pub fn is_marked(config: &Value) -> bool {
    config.get(OWNER_KEY).is_some()
}

/// A Kafka Connect REST client.
pub struct Connect {
    http: reqwest::Client,
    base: String,
    name: String,
}

/// States of the connector and its tasks.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Status {
    /// The connector's state.
    pub connector: State,
    /// Each task's state.
    #[serde(default)]
    pub tasks: Vec<State>,
}

/// One state entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct State {
    /// RUNNING, PAUSED, FAILED, UNASSIGNED, …
    pub state: ConnectorState,
    /// Version of the plugin.
    #[serde(default)]
    pub version: Option<String>,
    /// Stack trace when FAILED.
    #[serde(default)]
    pub trace: Option<String>,
}

impl Status {
    /// The connector and all (at least one) tasks are RUNNING.
    pub fn running(&self) -> bool {
        self.health().ok()
    }

    /// The connector's state and how many of its tasks run, for the dashboard.
    pub fn health(&self) -> ConnectorHealth {
        ConnectorHealth {
            state: self.connector.state,
            tasks_running: self
                .tasks
                .iter()
                .filter(|t| t.state == ConnectorState::Running)
                .count(),
            tasks: self.tasks.len(),
        }
    }

    /// A one-line summary, e.g. `RUNNING (task 0 RUNNING)`.
    pub fn describe(&self) -> String {
        let tasks: Vec<String> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| format!("task {i} {}", t.state))
            .collect();
        format!(
            "{} ({})",
            self.connector.state,
            if tasks.is_empty() {
                "no tasks".into()
            } else {
                tasks.join(", ")
            }
        )
    }

    fn failure(&self) -> Option<String> {
        std::iter::once(&self.connector)
            .chain(&self.tasks)
            .find(|s| s.state == ConnectorState::Failed)
            .map(|s| {
                let trace = s.trace.as_deref().unwrap_or("no trace");
                // The first "Caused by" says more than the wrapper exception.
                trace
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("Caused by"))
                    .or_else(|| trace.lines().next())
                    .unwrap_or(trace)
                    .to_owned()
            })
    }
}

/// Why the connector is not running.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Kafka Connect did not answer; the message says how to fix it.
    #[error(transparent)]
    Unreachable(anyhow::Error),
    /// The connector FAILED because its stored offsets point at WAL that PostgreSQL no longer
    /// has (the slot was dropped, or PostgreSQL re-created): resetting the offsets fixes it.
    #[error("Debezium connector {name} FAILED: {cause}. Its stored offsets point at WAL no longer on the server; `pipedemo setup` resets them.")]
    OffsetsGone {
        /// The connector.
        name: String,
        /// The first cause in its trace.
        cause: String,
    },
    /// The connector or its task FAILED for another cause.
    #[error("Debezium connector {name} FAILED: {cause}. Check the PostgreSQL settings (host as seen from Connect, user with REPLICATION, wal_level=logical).")]
    Failed {
        /// The connector.
        name: String,
        /// The first cause in its trace.
        cause: String,
    },
    /// Still not RUNNING when the wait ended.
    #[error("Debezium connector {name} not RUNNING after {timeout:?} (last state {last})")]
    NotRunning {
        /// The connector.
        name: String,
        /// How long it was given.
        timeout: Duration,
        /// Its state then.
        last: String,
    },
}

impl ConnectError {
    /// The error to end a command with: Connect's own (unreachable, credentials refused) as it
    /// came, the connector's state as a service error (exit 3).
    pub fn into_error(self) -> anyhow::Error {
        match self {
            ConnectError::Unreachable(e) => e,
            other => crate::exit::service(other.to_string()),
        }
    }

    /// The error for a connector that FAILED with `cause` (the first "Caused by" of its trace).
    pub fn failed(name: &str, cause: String) -> ConnectError {
        // Debezium's PostgreSQL connector says so when the slot no longer holds the WAL
        // position it stored; its trace is the only place that tells.
        let name = name.to_owned();
        if cause.contains("no longer available on the server") {
            ConnectError::OffsetsGone { name, cause }
        } else {
            ConnectError::Failed { name, cause }
        }
    }
}

/// Whether the connector gets pipedemo's latency tuning or Debezium's defaults (for the
/// benchmark's comparison).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// Each record handed on as it is queued (max.batch.size 1), poll.interval.ms 10, a larger
    /// queue, producer linger 0.
    Tuned,
    /// Debezium's and Connect's defaults (poll.interval.ms 500, …).
    Defaults,
}

/// The most bytes of one partition's records in one produce request from Connect (`batch.size`,
/// within the producer's 1 MB `max.request.size`).
pub const PRODUCER_BATCH_BYTES: &str = "262144";

/// The connector configuration: pgoutput, `public.event_outbox` only, JSON without schemas,
/// no initial snapshot (only new events matter), deletes not emitted, records keyed by
/// `aggregate_id` so that each
/// aggregate's events stay in one partition, in order. Tuned for latency: Debezium hands each
/// record to Connect as soon as it is queued (`max.batch.size` 1), and Connect's producer sends
/// at once (linger 0, pinned: Kafka 4 made 5 ms the default).
///
/// Why a batch of one: Debezium's queue returns a poll only once `max.batch.size` records are
/// queued or `poll.interval.ms` is over, so with larger batches every event waited for the
/// interval (the Kafka stage's p50 was 3.9 ms at 5 ms); with one, the queue's enqueue wakes the
/// waiting poll. The interval is then only how long an idle poll and an idle WAL reader wait:
/// it is a trade between the idle cost (a whole millisecond of spinning per poll,
/// 1/(interval+1) of a core) and the p99 of capture (an event arriving while the WAL reader
/// sleeps waits for it). Measured at 1,000 ev/s with a batch of one (docs/performance.md):
/// 5 ms gave p99 11–14 ms and an idle Connect at 17.5 % of a core, 10 ms 14.5–15.4 ms and 9.8 %,
/// 20 ms 25 ms and 5.6 %.
pub fn connector_config(
    pg: &PostgresArgs,
    kafka: &KafkaArgs,
    c: &ConnectArgs,
    tuning: Tuning,
) -> Value {
    let mut config = json!({
        "connector.class": PLUGIN,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": c.connector_db_host.as_deref().unwrap_or(&pg.host),
        "database.port": pg.port.to_string(),
        "database.user": pg.user,
        "database.password": pg.password.expose(),
        "database.dbname": pg.db,
        "topic.prefix": kafka.topic_prefix,
        "table.include.list": "public.event_outbox",
        "slot.name": c.slot,
        "publication.name": publication_name(c),
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "no_data",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "message.key.columns": "public.event_outbox:aggregate_id",
        "heartbeat.interval.ms": "10000",
        // After a retriable failure (PostgreSQL restarted, the broker gone) Debezium restarts
        // the connector after this wait: 10 s by default, most of a PostgreSQL restart's
        // recovery time. A second still spares a database that is down from a reconnect storm.
        "retriable.restart.connector.wait.ms": "1000",
        // The replication slot is still held by the connection of a task that was killed (or
        // of a PostgreSQL that restarted) until the server notices: Debezium asks again every
        // 10 s by default, six times. Every second, sixty times: the same minute, found sooner.
        "slot.retry.delay.ms": "1000",
        "slot.max.retries": "60",
        // The outbox is insert-only: a delete is a row's retention ending (`--outbox-delete`
        // deletes each row in its own transaction), not an event; skipped here, neither it nor
        // its tombstone costs Kafka and the consumer a message (truncates were skipped already).
        "skipped.operations": "d,t",
        "tombstones.on.delete": "false",
        "topic.creation.default.replication.factor":
            kafka.replication_factor.unwrap_or(-1).to_string(),
        "topic.creation.default.partitions": "1",
        "database.sslmode": pg.sslmode.as_str(),
        OWNER_KEY: "pipedemo setup",
    });
    if let Some(ca) = &pg.sslrootcert {
        // The path is the one pipedemo uses; where Connect runs elsewhere, pass its own with
        // --connector-config database.sslrootcert=….
        config["database.sslrootcert"] = json!(ca.display().to_string());
    }
    if tuning == Tuning::Tuned {
        for (k, v) in [
            ("poll.interval.ms", "10"),
            ("max.batch.size", "1"),
            ("max.queue.size", "32768"),
            ("producer.override.linger.ms", "0"),
            // A produce request carries one batch per partition: at the default 16 KB, twelve
            // envelopes. Catching up after a broker outage, Connect sent 12 per request, five
            // requests in flight, and the backlog drained at 2,000 events/s. linger 0 still
            // sends a lone event at once; the size only caps what waited behind a request.
            ("producer.override.batch.size", PRODUCER_BATCH_BYTES),
            // Debezium puts four context headers on every record by default (connector name,
            // task, run id: 150 bytes). Connect wrote them, Kafka stored them and the consumer
            // copied and freed them, per event, for nothing anyone reads: 4 % of pipedemo's
            // CPU at 4,000 events/s.
            ("extended.headers.enabled", "false"),
        ] {
            config[k] = json!(v);
        }
    }
    if kafka.routing == Routing::EventRouter {
        for (k, v) in event_router(kafka) {
            config[k] = json!(v);
        }
    }
    for KeyValue { key, value } in &c.connector_config {
        config[key.as_str()] = json!(value);
    }
    config
}

/// The settings that make the connector route outbox rows with Debezium's Outbox Event Router:
/// a topic per `aggregate_type`, `aggregate_id` the key, `payload` the value, the event id in the
/// `id` header and `event_type` and `created_at` (T0) in headers. Kafka's own `HeaderFrom` copies
/// the change event's `ts_us` (T1) to a header first, since the router keeps only the row: so T1
/// is measured, not inferred from the record timestamp. Both apply to the outbox's change events
/// only (a predicate on the topic): heartbeats have neither field.
fn event_router(kafka: &KafkaArgs) -> Vec<(&'static str, String)> {
    let outbox_topic = format!("{}.public.event_outbox", kafka.topic_prefix);
    vec![
        ("transforms", "pipedemoTiming,outbox".into()),
        ("predicates", "pipedemoOutboxRows".into()),
        (
            "predicates.pipedemoOutboxRows.type",
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches".into(),
        ),
        (
            "predicates.pipedemoOutboxRows.pattern",
            outbox_topic.replace('.', "\\."),
        ),
        (
            "transforms.pipedemoTiming.type",
            "org.apache.kafka.connect.transforms.HeaderFrom$Value".into(),
        ),
        ("transforms.pipedemoTiming.fields", "ts_us".into()),
        (
            "transforms.pipedemoTiming.headers",
            headers::CAPTURED_US.into(),
        ),
        ("transforms.pipedemoTiming.operation", "copy".into()),
        (
            "transforms.pipedemoTiming.predicate",
            "pipedemoOutboxRows".into(),
        ),
        (
            "transforms.outbox.type",
            "io.debezium.transforms.outbox.EventRouter".into(),
        ),
        ("transforms.outbox.predicate", "pipedemoOutboxRows".into()),
        ("transforms.outbox.table.field.event.id", "event_id".into()),
        (
            "transforms.outbox.table.field.event.key",
            "aggregate_id".into(),
        ),
        (
            "transforms.outbox.table.field.event.payload",
            "payload".into(),
        ),
        ("transforms.outbox.route.by.field", "aggregate_type".into()),
        (
            "transforms.outbox.route.topic.replacement",
            kafka.route_topic(),
        ),
        (
            "transforms.outbox.table.fields.additional.placement",
            format!(
                "event_type:header:{},created_at:header:{},run_tag:header:{}",
                headers::EVENT_TYPE,
                headers::CREATED_AT,
                headers::RUN_TAG
            ),
        ),
    ]
}

/// How long pipedemo asks a busy Kafka Connect again before taking its answer.
const BUSY_FOR: Duration = Duration::from_secs(30);

/// Whether Connect's answer says "not now" rather than "no": 409 while its workers rebalance
/// or after a concurrent config change ("Cannot complete request momentarily due to stale
/// configuration"), 500 when a request timed out inside a busy herder, 503 while it starts.
/// Every request pipedemo sends is safe to repeat (PUT, DELETE, GET, and restarts).
fn busy(status: reqwest::StatusCode) -> bool {
    use reqwest::StatusCode as S;
    matches!(
        status,
        S::CONFLICT | S::INTERNAL_SERVER_ERROR | S::SERVICE_UNAVAILABLE
    )
}

/// The publication the connector reads: `<slot>_pub`, or a `--connector-config
/// publication.name=…`.
pub fn publication_name(c: &ConnectArgs) -> String {
    c.connector_config
        .iter()
        .rev()
        .find(|kv| kv.key == "publication.name")
        .map_or_else(|| format!("{}_pub", c.slot), |kv| kv.value.clone())
}

/// The connector configuration as `key=value` lines, sorted, secrets as `***`.
pub fn describe_config(config: &Value) -> Vec<String> {
    let mut lines: Vec<String> = config
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            format!("{k}={}", crate::config::redact_setting(k, &v))
        })
        .collect();
    lines.sort();
    lines
}

impl Connect {
    /// A client for `args.connect_url`.
    pub fn new(args: &ConnectArgs) -> Result<Self> {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(15));
        if let Some(ca) = &args.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading CONNECT_CA_FILE {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                crate::exit::config(format!(
                    "CONNECT_CA_FILE {} is not a PEM certificate ({e})",
                    ca.display()
                ))
            })?;
            b = b.add_root_certificate(cert);
        }
        if let (Some(user), Some(pw)) = (&args.username, &args.password) {
            use base64::Engine;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pw.expose()));
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| crate::exit::config("CONNECT_USERNAME or CONNECT_PASSWORD has characters an HTTP header cannot carry"))?;
            // Kept out of reqwest's and hyper's debug output.
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            b = b.default_headers(headers);
        }
        Ok(Connect {
            http: b.build()?,
            base: args.connect_url.trim_end_matches('/').to_owned(),
            name: args.connector_name.clone(),
        })
    }

    /// The URL for messages, without a password in it.
    fn shown(&self) -> String {
        crate::config::redact_uri(&self.base)
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let cause = root_cause(&e);
        if cause.contains("certificate verify failed") || cause.contains("self-signed") {
            return crate::exit::config(format!(
                "Kafka Connect's certificate at {} is not trusted ({cause}): set CONNECT_CA_FILE \
                 (--connect-ca-file) to the CA that signed it",
                self.shown()
            ));
        }
        if cause.contains("wrong version number") || cause.contains("packet length too long") {
            return crate::exit::config(format!(
                "Kafka Connect at {} does not speak https ({cause}): use an http:// CONNECT_URL",
                self.shown()
            ));
        }
        crate::exit::service(format!(
            "Kafka Connect at {} is unreachable ({cause}). Start the stack (scripts/stack.sh up, \
             or docker compose up -d --wait) or set CONNECT_URL.",
            self.shown(),
        ))
    }

    /// Fails with a configuration error when Connect refused pipedemo's credentials.
    fn authorised(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        match resp.status() {
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                Err(crate::exit::config(format!(
                    "Kafka Connect at {} refused pipedemo ({}): check CONNECT_USERNAME and \
                     CONNECT_PASSWORD",
                    self.shown(),
                    resp.status()
                )))
            }
            _ => Ok(resp),
        }
    }

    /// Sends `req`: Connect unreachable, or refusing pipedemo's credentials, is an error here
    /// with its fix, for every call alike. A busy answer (see [`busy`]) is asked again for up
    /// to [`BUSY_FOR`]: on a Connect cluster that others change too, every change of theirs
    /// makes the workers rebalance, and a request in that moment is refused.
    async fn send(&self, mut req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let deadline = tokio::time::Instant::now() + BUSY_FOR;
        loop {
            // Every body pipedemo sends is in memory, so the request can be sent again.
            let again = req.try_clone();
            let resp = req.send().await.map_err(|e| self.unreachable(e))?;
            match again {
                Some(next) if busy(resp.status()) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(
                        status = %resp.status(),
                        "Kafka Connect is busy (a rebalance, or a change by another client); asking again"
                    );
                    tokio::time::sleep(backoff.next_delay()).await;
                    req = next;
                }
                _ => return self.authorised(resp),
            }
        }
    }

    /// `GET /connectors/<name>/<what>`, or `None` if the connector is not registered.
    async fn connector_get<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<Option<T>> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/connectors/{}/{what}", self.base, self.name)),
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(resp.error_for_status()?.json().await?))
    }

    /// The connector's stored configuration, or `None` if it is not registered.
    pub async fn config(&self) -> Result<Option<Value>> {
        self.connector_get("config").await
    }

    /// Deletes the connector (its stored offsets stay in Connect's offsets topic).
    pub async fn delete(&self) -> Result<()> {
        let resp = self
            .send(
                self.http
                    .delete(format!("{}/connectors/{}", self.base, self.name)),
            )
            .await?;
        if resp.status() != reqwest::StatusCode::NOT_FOUND {
            resp.error_for_status()?;
        }
        Ok(())
    }

    /// Checks Connect answers and has the Debezium PostgreSQL plugin. Returns its version.
    pub async fn check_plugin(&self) -> Result<String> {
        let plugins: Vec<Value> = self
            .send(self.http.get(format!("{}/connector-plugins", self.base)))
            .await?
            .error_for_status()
            .context("Kafka Connect /connector-plugins")?
            .json()
            .await?;
        plugins
            .iter()
            .find(|p| p["class"] == PLUGIN)
            .map(|p| p["version"].as_str().unwrap_or("?").to_owned())
            .ok_or_else(|| {
                crate::exit::service(format!(
                    "Kafka Connect at {} has no Debezium PostgreSQL plugin ({PLUGIN}); install \
                     debezium-connector-postgres on its plugin.path (scripts/stack.sh does) and restart Connect",
                    self.shown()
                ))
            })
    }

    /// The Kafka version of the Connect worker (its REST root), for reports.
    pub async fn kafka_version(&self) -> String {
        let v: Option<Value> = match self.http.get(&self.base).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        v.and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Creates or updates the connector (PUT is idempotent).
    pub async fn upsert(&self, config: &Value) -> Result<()> {
        let resp = self
            .send(
                self.http
                    .put(format!("{}/connectors/{}/config", self.base, self.name))
                    .json(config),
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            bail!(
                "Kafka Connect refused connector {} ({status}): {}",
                self.name,
                body["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(())
    }

    /// The connector's status, or `None` if it is not registered.
    pub async fn status(&self) -> Result<Option<Status>> {
        self.connector_get("status").await
    }

    /// Stops the connector (Kafka 3.5+: its tasks shut down, its offsets stay) and waits,
    /// up to 10 s, until Connect says STOPPED: its replication slot is then free to drop.
    pub async fn stop(&self) -> Result<()> {
        let url = format!("{}/connectors/{}", self.base, self.name);
        self.send(self.http.put(format!("{url}/stop")))
            .await?
            .error_for_status()?;
        for _ in 0..40 {
            if let Some(s) = self.status().await? {
                if s.connector.state == ConnectorState::Stopped {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// Forgets the connector's stored source offsets (stop, delete offsets, resume), so it
    /// starts from its replication slot again. Needed when the slot was dropped or PostgreSQL
    /// was re-created while Kafka kept the old offsets.
    pub async fn reset_offsets(&self) -> Result<()> {
        let url = format!("{}/connectors/{}", self.base, self.name);
        self.stop().await?;
        let resp = self
            .send(self.http.delete(format!("{url}/offsets")))
            .await?;
        if !resp.status().is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            bail!(
                "Kafka Connect could not reset the offsets of {}: {}",
                self.name,
                body["message"].as_str().unwrap_or("no message")
            );
        }
        self.send(self.http.put(format!("{url}/resume"))).await?;
        Ok(())
    }

    /// Whether the connector is pipedemo's: registered by its setup, which marks the config.
    /// A chaos run pauses and restarts nothing else.
    pub async fn is_ours(&self) -> Result<bool> {
        Ok(self.config().await?.is_some_and(|c| is_marked(&c)))
    }

    /// `PUT /connectors/<name>/pause` or `/resume`.
    pub async fn set_paused(&self, paused: bool) -> Result<()> {
        let verb = if paused { "pause" } else { "resume" };
        self.send(
            self.http
                .put(format!("{}/connectors/{}/{verb}", self.base, self.name)),
        )
        .await?
        .error_for_status()
        .with_context(|| format!("Kafka Connect refused to {verb} {}", self.name))?;
        Ok(())
    }

    /// Resumes a paused connector and waits until it and its task run: Connect answers the
    /// request before its worker applies it, so a caller that stopped at the answer (a chaos
    /// run quitting on a second Ctrl-C) would leave the connector PAUSED.
    pub async fn resume(&self, timeout: Duration) -> Result<Status> {
        self.set_paused(false).await?;
        self.wait_running(timeout).await.map_err(|e| e.into_error())
    }

    /// Restarts task `id` of the connector alone (`POST .../tasks/<id>/restart`).
    pub async fn restart_task(&self, id: u32) -> Result<()> {
        self.send(self.http.post(format!(
            "{}/connectors/{}/tasks/{id}/restart",
            self.base, self.name
        )))
        .await?
        .error_for_status()
        .with_context(|| {
            format!(
                "Kafka Connect refused to restart task {id} of {}",
                self.name
            )
        })?;
        Ok(())
    }

    /// Restarts the connector and its tasks (used after a config update and after failures).
    pub async fn restart(&self) -> Result<()> {
        self.send(self.http.post(format!(
            "{}/connectors/{}/restart?includeTasks=true&onlyFailed=false",
            self.base, self.name
        )))
        .await?;
        Ok(())
    }

    /// Waits until the connector and its task run; fails early with the cause if one FAILED.
    pub async fn wait_running(&self, timeout: Duration) -> Result<Status, ConnectError> {
        let start = Instant::now();
        let mut last = Status::default();
        while start.elapsed() < timeout {
            if let Some(s) = self.status().await.map_err(ConnectError::Unreachable)? {
                if s.running() {
                    return Ok(s);
                }
                if let Some(cause) = s.failure() {
                    return Err(ConnectError::failed(&self.name, cause));
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(ConnectError::NotRunning {
            name: self.name.clone(),
            timeout,
            last: last.describe(),
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_busy_connect_is_asked_again_and_a_refusal_is_final() {
        use reqwest::StatusCode as S;
        for status in [
            S::CONFLICT,
            S::INTERNAL_SERVER_ERROR,
            S::SERVICE_UNAVAILABLE,
        ] {
            assert!(busy(status), "{status}");
        }
        for status in [
            S::OK,
            S::NOT_FOUND,
            S::BAD_REQUEST,
            S::UNAUTHORIZED,
            S::FORBIDDEN,
        ] {
            assert!(!busy(status), "{status}");
        }
    }
    use super::*;

    #[test]
    fn the_event_router_is_configured_from_the_outbox_columns() {
        use crate::config::parse_settings;
        let s = parse_settings(&["--routing", "event-router", "--topic-prefix", "shop"]);
        let c = connector_config(&s.pg, &s.kafka, &s.connect, Tuning::Tuned);
        assert_eq!(c["transforms"], "pipedemoTiming,outbox");
        assert_eq!(
            c["transforms.outbox.type"],
            "io.debezium.transforms.outbox.EventRouter"
        );
        assert_eq!(c["transforms.outbox.table.field.event.id"], "event_id");
        assert_eq!(c["transforms.outbox.table.field.event.key"], "aggregate_id");
        assert_eq!(c["transforms.outbox.route.by.field"], "aggregate_type");
        assert_eq!(
            c["transforms.outbox.route.topic.replacement"],
            "shop.outbox.event.${routedByValue}"
        );
        assert_eq!(
            c["transforms.outbox.table.fields.additional.placement"],
            "event_type:header:event_type,created_at:header:created_at,run_tag:header:run_tag"
        );
        assert_eq!(c["transforms.pipedemoTiming.fields"], "ts_us");
        assert_eq!(
            c["predicates.pipedemoOutboxRows.pattern"],
            r"shop\.public\.event_outbox"
        );
        // The raw connector has no transforms; a --connector-config still wins over the router's.
        let raw = parse_settings(&[]);
        assert!(
            connector_config(&raw.pg, &raw.kafka, &raw.connect, Tuning::Tuned)
                .get("transforms")
                .is_none()
        );
        let mine = parse_settings(&[
            "--routing",
            "event-router",
            "--connector-config",
            "transforms.outbox.table.expand.json.payload=true",
        ]);
        let c = connector_config(&mine.pg, &mine.kafka, &mine.connect, Tuning::Tuned);
        assert_eq!(c["transforms.outbox.table.expand.json.payload"], "true");
        // A column name is not a secret, though its key ends in `.key`.
        assert!(!crate::config::is_secret_key(
            "transforms.outbox.table.field.event.key"
        ));
    }

    #[test]
    fn a_tuned_connector_hands_each_record_on_as_it_is_queued() {
        use crate::config::parse_settings;
        let raw = parse_settings(&[]);
        let tuned = connector_config(&raw.pg, &raw.kafka, &raw.connect, Tuning::Tuned);
        // A record goes on as soon as it is queued, not when a batch fills or the poll
        // interval is over; Debezium requires a queue larger than the batch.
        assert_eq!(tuned["max.batch.size"], "1");
        let queue: u64 = tuned["max.queue.size"].as_str().unwrap().parse().unwrap();
        assert!(queue > 1);
        // The interval is the idle-cost / capture-p99 trade documented on connector_config;
        // Connect's producer sends at once (Kafka 4's default linger is 5 ms).
        assert_eq!(tuned["poll.interval.ms"], "10");
        assert_eq!(tuned["producer.override.linger.ms"], "0");
        // Never Debezium's dispatch throttle: with a batch of one it would hand on one record
        // per interval (docs/performance.md).
        assert!(tuned.get("poll.dispatch.interval.ms").is_none());
        // No per-record context headers when tuned; Debezium's own defaults when not.
        assert_eq!(tuned["extended.headers.enabled"], "false");
        let stock = connector_config(&raw.pg, &raw.kafka, &raw.connect, Tuning::Defaults);
        for k in [
            "extended.headers.enabled",
            "max.batch.size",
            "poll.interval.ms",
            "producer.override.linger.ms",
        ] {
            assert!(stock.get(k).is_none(), "{k} set without tuning");
        }
    }

    fn failed(trace: &str) -> Status {
        Status {
            connector: State {
                state: ConnectorState::Running,
                ..State::default()
            },
            tasks: vec![State {
                state: ConnectorState::Failed,
                version: None,
                trace: Some(trace.into()),
            }],
        }
    }

    #[test]
    fn a_failure_is_told_by_its_first_cause_and_stale_offsets_are_recognised() {
        let gone = failed(
            "org.apache.kafka.connect.errors.ConnectException: An exception occurred\n\tat x\n\
             Caused by: io.debezium.DebeziumException: Saved offset LSN 0/1A2B is no longer available on the server\n\tat y",
        );
        assert!(!gone.running());
        let cause = gone.failure().unwrap();
        assert!(cause.starts_with("Caused by: io.debezium.DebeziumException"));
        assert!(matches!(
            ConnectError::failed("c", cause),
            ConnectError::OffsetsGone { .. }
        ));
        let other =
            failed("Caused by: org.postgresql.util.PSQLException: password authentication failed");
        let e = ConnectError::failed("c", other.failure().unwrap());
        assert!(matches!(e, ConnectError::Failed { .. }));
        assert!(e.to_string().contains("user with REPLICATION"), "{e}");
    }
}
