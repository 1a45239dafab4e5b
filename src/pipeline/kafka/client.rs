//! The Kafka client settings every client shares, metadata, and the errors that say which
//! setting to change when a broker refuses pipedemo.

use std::time::Duration;

use anyhow::{bail, Result};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

use crate::config::KafkaArgs;

pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// Settings every client here shares: the brokers, the security settings and every `-X`
/// (applied last, so they win). Callers set their own client's properties after this.
pub fn client_config(args: &KafkaArgs) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap_servers)
        .set("client.id", "pipedemo")
        // Fail fast when the broker is down instead of retrying for minutes.
        .set("socket.connection.setup.timeout.ms", "5000")
        // A broker that is back is reconnected to within a second; librdkafka's default
        // backoff grows to 10 s, which a stopped broker's clients then waited out.
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3");
    for (k, v) in args.client_properties() {
        c.set(k, v);
    }
    c
}

/// A client creation's result, its error fit to print: librdkafka's refusal of a setting
/// names it, and rdkafka's message repeats its value, which may be a password (an
/// unsupported `sasl.oauthbearer.client.secret` printed the secret). The value is shown only
/// when its key names no secret, and taken out of librdkafka's own words otherwise.
pub fn created<T>(r: rdkafka::error::KafkaResult<T>, what: &str) -> Result<T> {
    r.map_err(|e| match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            let shown = crate::config::redact_setting(&key, &value);
            let desc = if shown != value && !value.is_empty() {
                desc.replace(&value, "***")
            } else {
                desc
            };
            crate::exit::config(format!(
                "{what}: the Kafka client setting `{key}` = `{shown}` was refused: {desc}"
            ))
        }
        e => anyhow::Error::new(e).context(what.to_owned()),
    })
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
    pub(super) fn explain(&self, args: &KafkaArgs, e: impl std::fmt::Display) -> anyhow::Error {
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
pub(super) fn failed(
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

/// Partitions of `topic`, or `None` when it does not exist. Fails when Kafka is unreachable.
pub async fn partitions(args: &KafkaArgs, topic: &str) -> Result<Option<Vec<i32>>> {
    with_client(args, topic, false, partitions_with).await
}

pub(super) fn partitions_with(
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
pub(super) async fn with_client<T, F>(
    args: &KafkaArgs,
    topic: &str,
    in_group: bool,
    f: F,
) -> Result<T>
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
        let c: BaseConsumer<ProbeContext> = created(
            config.create_with_context(ProbeContext::default()),
            "creating a Kafka client",
        )?;
        f(&c, &args, &topic)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_setting_is_named_without_its_secret() {
        let refusal = |key: &str, value: &str| {
            let mut c = ClientConfig::new();
            c.set(key, value);
            created(c.create::<BaseConsumer>(), "creating a Kafka client")
                .err()
                .expect("refused")
                .to_string()
        };
        // librdkafka of this build refuses the property; rdkafka's message repeats the value.
        let e = refusal("sasl.oauthbearer.client.secret", "s3cret-value");
        assert!(e.contains("sasl.oauthbearer.client.secret"), "{e}");
        assert!(!e.contains("s3cret-value"), "{e}");
        let e = refusal("socket.timeout.ms", "soon");
        assert!(
            e.contains("`socket.timeout.ms` = `soon`"),
            "not a secret: shown\n{e}"
        );
    }

    fn args(extra: &[&str]) -> KafkaArgs {
        crate::config::parse_args(&[&["--bootstrap-servers", "b:9093"], extra].concat())
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
}
