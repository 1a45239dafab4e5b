//! Kafka plumbing: client settings, topic creation, consumer-group offsets, lag, and the
//! dead-letter producer.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaArgs;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Settings every client here shares: the brokers, the security settings and every `-X`
/// (applied last, so they win). Callers set their own client's properties after this.
pub fn client_config(args: &KafkaArgs) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap_servers)
        .set("client.id", "pipedemo")
        // Fail fast when the broker is down instead of retrying for minutes.
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("log_level", "3");
    for (k, v) in args.client_properties() {
        c.set(k, v);
    }
    c
}

/// A client context that keeps librdkafka's last error instead of logging it, so that a
/// failed call can say why: bad credentials, an untrusted certificate, the wrong protocol.
#[derive(Default)]
pub struct ProbeContext {
    last: std::sync::Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "librdkafka error");
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((error.rdkafka_error_code(), reason.to_owned()));
    }

    // librdkafka reports a failed connection (bad credentials, TLS, protocol) as a FAIL log
    // line from its own thread, while the caller waits in a blocking call: the only place the
    // cause shows in time.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(fac, message, "librdkafka");
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(level, L::Emerg | L::Alert | L::Critical | L::Error) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((None, message.to_owned()));
        }
    }
}

impl ConsumerContext for ProbeContext {}

impl ProbeContext {
    fn has_error(&self) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The error for a failed call `e`: a configuration error when librdkafka said the
    /// settings are wrong, else "unreachable".
    fn explain(&self, args: &KafkaArgs, e: impl std::fmt::Display) -> anyhow::Error {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(msg) = last.and_then(|(code, reason)| misconfigured(args, code, &reason)) {
            return crate::exit::config(msg);
        }
        // A TLS listener just waits when a plaintext client talks to it, and one that wants a
        // client certificate drops a client without one: librdkafka only sees the brokers
        // "down". A TLS handshake of our own tells these apart from a broker that is down.
        let no_cert = args.ssl_cert.is_none()
            && !args
                .options
                .iter()
                .any(|o| o.key.starts_with("ssl.certificate"));
        for addr in args.bootstrap_servers.split(',').map(str::trim) {
            match tls_probe(addr) {
                Some(_) if !args.uses_tls() => {
                    return crate::exit::config(format!(
                        "Kafka at {addr} expects TLS but pipedemo connects with {}: set \
                         KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (and the SASL settings its \
                         listener needs)",
                        args.security_protocol.as_str().to_uppercase()
                    ))
                }
                Some(Err(alert)) if no_cert && wants_client_cert(&alert) => {
                    if let Some(m) = misconfigured(args, None, &alert) {
                        return crate::exit::config(m.replace(&args.bootstrap_servers, addr));
                    }
                }
                _ => {}
            }
        }
        unreachable_hint(args, e)
    }
}

/// The error for a failed call on `c`. librdkafka queues its log and error events for the
/// next poll, so they are served first: they say why a connection failed.
fn failed(
    c: &BaseConsumer<ProbeContext>,
    args: &KafkaArgs,
    e: impl std::fmt::Display,
) -> anyhow::Error {
    for _ in 0..3 {
        if c.poll(Duration::from_millis(50)).is_none() && c.context().has_error() {
            break;
        }
    }
    c.context().explain(args, e)
}

/// What a TLS handshake with `addr` (host:port) gives, the certificate not checked: `None`
/// when nothing answers TLS, else the server's verdict, `Ok` or the alert it sent (a server
/// that wants a client certificate says so just after the handshake, on the first read).
fn tls_probe(addr: &str) -> Option<Result<(), String>> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use std::io::Read;
    use std::net::ToSocketAddrs;
    let sock = addr.to_socket_addrs().ok()?.next()?;
    let stream = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .ok()?;
    let mut b = SslConnector::builder(SslMethod::tls_client()).ok()?;
    b.set_verify(SslVerifyMode::NONE);
    let mut tls = b
        .build()
        .configure()
        .ok()?
        .verify_hostname(false)
        .use_server_name_indication(false)
        .connect("kafka", stream)
        .ok()?;
    let mut byte = [0u8; 1];
    match tls.read(&mut byte) {
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut =>
        {
            Some(Err(e.to_string()))
        }
        _ => Some(Ok(())),
    }
}

/// Whether a TLS alert says the server wants a client certificate: TLS 1.3's "certificate
/// required", or the "bad certificate" Java's TLS sends for a missing one.
fn wants_client_cert(alert: &str) -> bool {
    alert.contains("certificate required") || alert.contains("alert bad certificate")
}

/// What librdkafka's error `code`/`reason` says about pipedemo's settings, if anything.
pub fn misconfigured(
    args: &KafkaArgs,
    code: Option<RDKafkaErrorCode>,
    reason: &str,
) -> Option<String> {
    let at = &args.bootstrap_servers;
    let reason = reason.trim();
    if code == Some(RDKafkaErrorCode::Authentication) || reason.contains("SASL authentication") {
        return Some(format!(
            "Kafka at {at} rejected the SASL credentials ({reason}): check KAFKA_SASL_USERNAME, \
             KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        ));
    }
    if reason.contains("certificate verify failed") {
        return Some(format!(
            "Kafka's certificate at {at} is not trusted ({reason}): set KAFKA_SSL_CA_LOCATION \
             (--kafka-ssl-ca) to the CA that signed it"
        ));
    }
    if args.ssl_cert.is_none() && wants_client_cert(reason) {
        return Some(format!(
            "Kafka at {at} requires a client certificate ({reason}): set \
             KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
        ));
    }
    if code == Some(RDKafkaErrorCode::SSL) || reason.contains("SSL handshake failed") {
        return Some(format!(
            "TLS with Kafka at {at} failed ({reason}): check KAFKA_SECURITY_PROTOCOL (does the \
             listener speak TLS?) and the KAFKA_SSL_* files"
        ));
    }
    if reason.contains("security.protocol") && !args.uses_tls() {
        return Some(format!(
            "Kafka at {at} does not accept {} connections ({reason}): set \
             KAFKA_SECURITY_PROTOCOL (e.g. SASL_SSL) and the SASL/TLS settings its listener needs",
            args.security_protocol.as_str().to_uppercase()
        ));
    }
    None
}

fn unreachable_hint(args: &KafkaArgs, e: impl std::fmt::Display) -> anyhow::Error {
    crate::exit::service(format!(
        "Kafka at {} is unreachable ({e}). Start the stack (scripts/stack.sh up, or docker compose \
         up -d --wait) or set KAFKA_BOOTSTRAP_SERVERS.",
        args.bootstrap_servers
    ))
}

/// An admin client with a [`ProbeContext`].
fn admin(args: &KafkaArgs) -> Result<AdminClient<ProbeContext>> {
    client_config(args)
        .create_with_context(ProbeContext::default())
        .context("creating a Kafka admin client")
}

/// The replication of topics pipedemo creates: `--replication-factor`, else the broker's
/// default (-1 asks the broker, KIP-464).
fn replication(args: &KafkaArgs) -> TopicReplication<'static> {
    TopicReplication::Fixed(args.replication_factor.unwrap_or(-1))
}

/// Partitions of `topic`, or `None` when it does not exist. Fails when Kafka is unreachable.
pub async fn partitions(args: &KafkaArgs, topic: &str) -> Result<Option<Vec<i32>>> {
    with_client(args, topic, false, partitions_with).await
}

fn partitions_with(
    c: &BaseConsumer<ProbeContext>,
    args: &KafkaArgs,
    topic: &str,
) -> Result<Option<Vec<i32>>> {
    let md = c
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| failed(c, args, e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => Ok(Some(t.partitions().iter().map(|p| p.id()).collect())),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => bail!(
            "Kafka reports topic {topic} as {:?}",
            RDKafkaErrorCode::from(e)
        ),
    }
}

/// Runs `f` on a blocking thread (librdkafka's metadata and offset calls block) with a fresh
/// client, in the consumer group when `in_group`.
async fn with_client<T, F>(args: &KafkaArgs, topic: &str, in_group: bool, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&BaseConsumer<ProbeContext>, &KafkaArgs, &str) -> Result<T> + Send + 'static,
{
    let args = args.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut config = client_config(&args);
        if in_group {
            config.set("group.id", &args.group);
        }
        let c: BaseConsumer<ProbeContext> = config
            .create_with_context(ProbeContext::default())
            .context("creating a Kafka client")?;
        f(&c, &args, &topic)
    })
    .await?
}

/// Creates `topic` with `partitions` partitions unless it exists. Returns its partition count.
pub async fn ensure_topic(args: &KafkaArgs, topic: &str, partitions_wanted: i32) -> Result<usize> {
    if let Some(p) = partitions(args, topic).await? {
        return Ok(p.len());
    }
    let admin = admin(args)?;
    let new = NewTopic::new(topic, partitions_wanted, replication(args));
    let res = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| admin.inner().context().explain(args, e))?;
    for r in res {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                return Err(crate::exit::config(format!(
                    "Kafka refused topic {t}'s replication factor ({}): set --replication-factor \
                     (KAFKA_REPLICATION_FACTOR) to at most the number of brokers",
                    args.replication_factor
                        .map_or("the broker's default".into(), |r| r.to_string())
                )))
            }
            Err((t, code)) => bail!("creating Kafka topic {t} failed: {code}"),
        }
    }
    // Metadata reaches the broker's cache shortly after creation.
    for _ in 0..50 {
        if let Some(p) = partitions(args, topic).await? {
            return Ok(p.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Kafka topic {topic} was created but does not show in metadata")
}

/// The Kafka cluster's id, which scopes what pipedemo records as its own there.
pub async fn cluster_id(args: &KafkaArgs) -> Result<String> {
    with_client(args, "", false, |c, args, _| {
        c.client()
            .fetch_cluster_id(TIMEOUT)
            .ok_or_else(|| failed(c, args, "no cluster id in the metadata"))
    })
    .await
}

/// Deletes `topics` (those that exist).
pub async fn delete_topics(args: &KafkaArgs, topics: &[String]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(args)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let res = admin
        .delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| admin.inner().context().explain(args, e))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, code)) => bail!("deleting Kafka topic {t} failed: {code}"),
        }
    }
    Ok(())
}

/// Deletes the consumer group `args.group` (it must have no running members).
pub async fn delete_group(args: &KafkaArgs) -> Result<()> {
    let admin = admin(args)?;
    let res = admin
        .delete_groups(
            &[&args.group],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| admin.inner().context().explain(args, e))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((g, code)) => bail!(
                "deleting consumer group {g} failed: {code}; stop any `pipedemo consume` in it first"
            ),
        }
    }
    Ok(())
}

/// Where `reset_group` moves the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// The first offset still in the topic: everything is consumed again.
    Earliest,
    /// The end: only messages produced from now on are consumed.
    End,
    /// The first message at or after this time (ms since the Unix epoch), or the end.
    Timestamp(i64),
}

/// Commits offsets for `group` on every partition of `topic`. The group must have no running
/// members.
pub async fn reset_group(args: &KafkaArgs, topic: &str, to: ResetTo) -> Result<()> {
    let parts = partitions(args, topic).await?.ok_or_else(|| {
        crate::exit::service(format!(
            "topic {topic} does not exist; run `pipedemo setup` first"
        ))
    })?;
    let args = args.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer<ProbeContext> = client_config(&args)
            .set("group.id", &args.group)
            .set("enable.auto.commit", "false")
            .create_with_context(ProbeContext::default())
            .context("creating a Kafka consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            let (low, high) = c
                .fetch_watermarks(&topic, p, TIMEOUT)
                .map_err(|e| failed(&c, &args, e))?;
            let off = match to {
                ResetTo::Earliest => low,
                ResetTo::End | ResetTo::Timestamp(_) => high,
            };
            tpl.add_partition_offset(&topic, p, Offset::Offset(off))?;
        }
        if let ResetTo::Timestamp(ms) = to {
            let mut query = TopicPartitionList::new();
            for e in tpl.elements() {
                query.add_partition_offset(&topic, e.partition(), Offset::Offset(ms))?;
            }
            let found = c
                .offsets_for_times(query, TIMEOUT)
                .map_err(|e| failed(&c, &args, e))?;
            for e in found.elements() {
                if let Offset::Offset(o) = e.offset() {
                    tpl.set_partition_offset(&topic, e.partition(), Offset::Offset(o))?;
                }
            }
        }
        c.commit(&tpl, CommitMode::Sync).map_err(|e| {
            anyhow!(
                "cannot reset consumer group {} ({e}); stop any running `pipedemo consume` or \
                 `load` in that group and retry",
                args.group
            )
        })
    })
    .await?
}

/// Offsets of one partition: the first message still kept and the next one to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Partition id.
    pub partition: i32,
    /// First offset still in the partition.
    pub low: i64,
    /// Offset the next message will get.
    pub high: i64,
}

/// The watermarks of every partition of `topic` (empty when it does not exist).
pub async fn watermarks(args: &KafkaArgs, topic: &str) -> Result<Vec<Watermarks>> {
    with_client(args, topic, false, |c, args, topic| {
        let parts = partitions_with(c, args, topic)?.unwrap_or_default();
        watermarks_with(c, args, topic, &parts)
    })
    .await
}

fn watermarks_with(
    c: &BaseConsumer<ProbeContext>,
    args: &KafkaArgs,
    topic: &str,
    parts: &[i32],
) -> Result<Vec<Watermarks>> {
    parts
        .iter()
        .map(|&partition| {
            let (low, high) = c
                .fetch_watermarks(topic, partition, TIMEOUT)
                .map_err(|e| failed(c, args, e))?;
            Ok(Watermarks {
                partition,
                low,
                high,
            })
        })
        .collect()
}

/// Deletes every message now in `topic` (its partitions start again at their current end
/// offsets), so that "from the start" means from this demo on. Returns how many were deleted.
pub async fn clear_topic(args: &KafkaArgs, topic: &str) -> Result<i64> {
    let marks = watermarks(args, topic).await?;
    let doomed: i64 = marks.iter().map(|w| w.high - w.low).sum();
    if doomed == 0 {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    for w in &marks {
        tpl.add_partition_offset(topic, w.partition, Offset::Offset(w.high))?;
    }
    let admin = admin(args)?;
    let res = admin
        .delete_records(&tpl, &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(|e| anyhow!("deleting the old messages of Kafka topic {topic} failed: {e}"))?;
    for e in res.elements() {
        if let Err(err) = e.error() {
            bail!(
                "deleting the old messages of Kafka topic {topic} partition {} failed: {err}",
                e.partition()
            );
        }
    }
    Ok(doomed)
}

fn committed_with(
    c: &BaseConsumer<ProbeContext>,
    args: &KafkaArgs,
    topic: &str,
    parts: &[i32],
) -> Result<Vec<(i32, Option<i64>)>> {
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| failed(c, args, e))?;
    Ok(parts
        .iter()
        .map(|&p| {
            let off = match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            (p, off)
        })
        .collect())
}

/// Measures the consumer group's lag with one long-lived client, for callers that ask often
/// (the dashboard, every second) and should not open new broker connections each time.
pub struct LagProbe {
    client: std::sync::Arc<BaseConsumer<ProbeContext>>,
    args: KafkaArgs,
    topic: String,
}

impl LagProbe {
    /// A probe of `args.group` on `topic`. Connects lazily.
    pub fn new(args: &KafkaArgs, topic: &str) -> Result<Self> {
        let client = client_config(args)
            .set("group.id", &args.group)
            .create_with_context(ProbeContext::default())
            .context("creating a Kafka client")?;
        Ok(LagProbe {
            client: std::sync::Arc::new(client),
            args: args.clone(),
            topic: topic.to_owned(),
        })
    }

    /// Messages in the topic not yet committed by the group (0 when the topic does not exist).
    pub async fn lag(&self) -> Result<i64> {
        self.behind_of(None).await
    }

    /// Messages between the group's committed offsets and `ends` (watermarks taken earlier).
    pub async fn behind(&self, ends: &[Watermarks]) -> Result<i64> {
        self.behind_of(Some(ends.to_vec())).await
    }

    /// Messages waiting for a consumer at `positions` (see [`waiting`]).
    pub async fn waiting(&self, positions: Option<Vec<(i32, Option<i64>)>>) -> Result<i64> {
        let (c, args, topic) = (self.client.clone(), self.args.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let parts = partitions_with(&c, &args, &topic)?.unwrap_or_default();
            let ends = watermarks_with(&c, &args, &topic, &parts)?;
            let done = committed_with(&c, &args, &topic, &parts)?;
            Ok(waiting(&ends, &done, positions.as_deref()))
        })
        .await?
    }

    async fn behind_of(&self, ends: Option<Vec<Watermarks>>) -> Result<i64> {
        let (c, args, topic) = (self.client.clone(), self.args.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let parts = partitions_with(&c, &args, &topic)?.unwrap_or_default();
            let ends = match ends {
                Some(e) => e,
                None => watermarks_with(&c, &args, &topic, &parts)?,
            };
            let done = committed_with(&c, &args, &topic, &parts)?;
            Ok(behind(&ends, &done))
        })
        .await?
    }
}

/// Messages waiting for a consumer: past its own `positions` on the partitions it holds, or,
/// holding none (`positions` is `None`), past the group's `committed` offsets on every partition.
/// A partition with neither waits from its start.
pub fn waiting(
    ends: &[Watermarks],
    committed: &[(i32, Option<i64>)],
    positions: Option<&[(i32, Option<i64>)]>,
) -> i64 {
    let at = |list: &[(i32, Option<i64>)], p: i32| {
        list.iter().find(|(q, _)| *q == p).and_then(|(_, o)| *o)
    };
    let (ends, offsets): (Vec<Watermarks>, Vec<(i32, Option<i64>)>) = ends
        .iter()
        .filter(|w| positions.is_none_or(|pos| pos.iter().any(|(p, _)| *p == w.partition)))
        .map(|w| {
            let own = positions.and_then(|pos| at(pos, w.partition));
            (
                *w,
                (w.partition, own.or_else(|| at(committed, w.partition))),
            )
        })
        .unzip();
    behind(&ends, &offsets)
}

/// Messages between the `committed` offsets and the `ends` (a partition with nothing committed
/// is behind by all it holds).
pub fn behind(ends: &[Watermarks], committed: &[(i32, Option<i64>)]) -> i64 {
    ends.iter()
        .map(|w| {
            let done = committed
                .iter()
                .find(|(p, _)| *p == w.partition)
                .and_then(|(_, o)| *o)
                .unwrap_or(w.low);
            (w.high - done).max(0)
        })
        .sum()
}

/// Sends messages that cannot be handled to the dead-letter topic, with the reason and the
/// original position in headers, and waits for Kafka to acknowledge each.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    /// A producer for `args.dlq_topic()`.
    pub fn new(args: &KafkaArgs) -> Result<Self> {
        let producer = client_config(args)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", "10485760")
            .create()
            .context("creating the dead-letter producer")?;
        Ok(DeadLetters {
            producer,
            topic: args.dlq_topic(),
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one message; returns once Kafka has it.
    pub async fn send(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        origin: (&str, i32, i64),
        reason: &str,
    ) -> Result<()> {
        let partition = origin.1.to_string();
        let offset = origin.2.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "pipedemo.error",
                value: Some(reason),
            })
            .insert(Header {
                key: "pipedemo.original.topic",
                value: Some(origin.0),
            })
            .insert(Header {
                key: "pipedemo.original.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "pipedemo.original.offset",
                value: Some(&offset),
            });
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        self.producer.send(rec, TIMEOUT).await.map_err(|(e, _)| {
            anyhow!(
                "dead-letter topic {} did not take the message: {e}",
                self.topic
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_partitions() -> [Watermarks; 3] {
        let w = |partition, low, high| Watermarks {
            partition,
            low,
            high,
        };
        [w(0, 0, 100), w(1, 40, 50), w(2, 0, 7)]
    }

    fn args(extra: &[&str]) -> KafkaArgs {
        #[derive(clap::Parser)]
        struct A {
            #[command(flatten)]
            k: KafkaArgs,
        }
        let argv = ["x", "--bootstrap-servers", "b:9093"].iter().chain(extra);
        <A as clap::Parser>::parse_from(argv).k
    }

    #[test]
    fn librdkafka_failures_are_told_as_the_setting_to_change() {
        let sasl = args(&[
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "scram-sha-512",
        ]);
        let m = misconfigured(
            &sasl,
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed",
        )
        .unwrap();
        assert!(
            m.contains("rejected the SASL credentials") && m.contains("KAFKA_SASL_PASSWORD"),
            "{m}"
        );
        let m = misconfigured(
            &sasl,
            None,
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
        )
        .unwrap();
        assert!(
            m.contains("not trusted") && m.contains("KAFKA_SSL_CA_LOCATION"),
            "{m}"
        );
        let m = misconfigured(&sasl, None, "SSL handshake failed: wrong version number").unwrap();
        assert!(m.contains("KAFKA_SECURITY_PROTOCOL"), "{m}");
        assert_eq!(
            misconfigured(
                &args(&[]),
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            None
        );
    }

    #[test]
    fn security_settings_become_librdkafka_properties_and_x_wins() {
        let a = args(&[
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "u",
            "--kafka-sasl-password",
            "p",
            "-X",
            "sasl.mechanism=SCRAM-SHA-256",
            "-X",
            "fetch.wait.max.ms=5",
        ]);
        assert_eq!(a.validate(), Ok(()));
        let props = a.client_properties();
        let last = |k: &str| {
            props
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(last("security.protocol"), Some("sasl_ssl"));
        assert_eq!(last("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(last("sasl.password"), Some("p"));
        assert_eq!(last("fetch.wait.max.ms"), Some("5"));
        assert!(format!("{a:?}").contains("***") && !format!("{a:?}").contains("\"p\""));
        let missing = args(&["--kafka-security-protocol", "SASL_SSL"])
            .validate()
            .unwrap_err();
        assert!(
            missing.contains("KAFKA_SASL_MECHANISM") && missing.contains("KAFKA_SASL_PASSWORD"),
            "{missing}"
        );
    }

    #[test]
    fn behind_counts_from_the_commit_or_the_start() {
        let ends = three_partitions();
        assert_eq!(behind(&ends, &[(0, Some(90)), (1, None)]), 10 + 10 + 7);
        // Committed past the end captured earlier: caught up, never negative.
        assert_eq!(
            behind(&ends, &[(0, Some(120)), (1, Some(50)), (2, Some(7))]),
            0
        );
    }

    #[test]
    fn waiting_counts_from_the_own_position_else_the_commit() {
        let ends = three_partitions();
        let committed = [(0, Some(60)), (1, Some(45)), (2, None)];
        // Holding partitions 0 and 1: its own position on 0, the commit on 1; 2 is not its own.
        assert_eq!(
            waiting(&ends, &committed, Some(&[(0, Some(90)), (1, None)])),
            10 + 5
        );
        // Holding none: the whole topic from the group's commits (2 from its start).
        assert_eq!(waiting(&ends, &committed, None), 40 + 5 + 7);
    }
}
