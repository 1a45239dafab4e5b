//! Connection settings for every service, from flags with environment-variable fallbacks.
//!
//! Defaults match `docker-compose.yml` and `scripts/stack.sh`, so with either stack up every
//! command works with no flags. A `.env` file in the working directory is read first (see
//! `main`), so its values act as environment variables.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// A password: usable by the clients, never shown by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a client library. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// PostgreSQL holding the `event_outbox` table.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "PostgreSQL")]
pub struct PostgresArgs {
    /// PostgreSQL host.
    #[arg(
        global = true,
        long = "pg-host",
        env = "POSTGRES_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    /// PostgreSQL port.
    #[arg(
        global = true,
        long = "pg-port",
        env = "POSTGRES_PORT",
        default_value_t = 5432
    )]
    pub port: u16,
    /// Database holding event_outbox.
    #[arg(
        global = true,
        long = "pg-db",
        env = "POSTGRES_DB",
        default_value = "activity_db"
    )]
    pub db: String,
    /// PostgreSQL user (needs the REPLICATION attribute for Debezium).
    #[arg(
        global = true,
        long = "pg-user",
        env = "POSTGRES_USER",
        default_value = "pipedemo"
    )]
    pub user: String,
    /// PostgreSQL password (never printed).
    #[arg(
        global = true,
        long = "pg-password",
        env = "POSTGRES_PASSWORD",
        default_value = "pipedemo",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: Secret,
    /// TLS: `disable`, `prefer` (TLS when the server offers it, unverified), `require`
    /// (unverified, unless a CA file is given), `verify-ca` (the certificate chains to the CA),
    /// `verify-full` (and names the host), as libpq's sslmode.
    #[arg(
        global = true,
        long = "pg-sslmode",
        env = "POSTGRES_SSLMODE",
        value_enum,
        default_value_t = PgSslMode::Prefer
    )]
    pub sslmode: PgSslMode,
    /// CA certificate (PEM) that signed the server's certificate [default: the system's].
    #[arg(
        global = true,
        long = "pg-sslrootcert",
        env = "POSTGRES_SSLROOTCERT",
        value_name = "FILE"
    )]
    pub sslrootcert: Option<PathBuf>,
    /// A connection URL instead of the settings above:
    /// `postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=/ca.pem`.
    /// Its parts win over the separate settings. (Not `DATABASE_URL`: an application's shell
    /// often exports that one, and it would point pipedemo at the application's database.)
    #[arg(
        global = true,
        long = "pg-url",
        env = "POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: Option<Secret>,
}

/// libpq's `sslmode` values that pipedemo supports.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, without verifying the certificate.
    Prefer,
    /// TLS; the certificate is verified only when a CA file is given.
    Require,
    /// TLS, with a certificate signed by the CA.
    VerifyCa,
    /// TLS, with a certificate signed by the CA and naming the host.
    VerifyFull,
}

impl PgSslMode {
    /// The value as libpq and Debezium's `database.sslmode` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(s, true).ok()
    }
}

/// The parts of a `postgresql://` URL that pipedemo uses.
#[derive(Debug, PartialEq, Eq)]
pub struct PgUrl {
    /// Host.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Database.
    pub db: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// `sslmode`.
    pub sslmode: Option<PgSslMode>,
    /// `sslrootcert`.
    pub sslrootcert: Option<PathBuf>,
}

/// Parses a libpq-style URL. Errors name the part that is wrong, never the password.
pub fn parse_pg_url(url: &str) -> Result<PgUrl, String> {
    let redacted = redact_uri(url);
    let u = reqwest::Url::parse(url)
        .map_err(|e| format!("POSTGRES_URL `{redacted}` is not a URL ({e}); expected postgresql://user:password@host:5432/db?sslmode=require"))?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "POSTGRES_URL `{redacted}` must start with postgresql:// (or postgres://)"
        ));
    }
    let decode = |s: &str| -> Result<String, String> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|d| d.into_owned())
            .map_err(|_| format!("POSTGRES_URL `{redacted}` has a %-escape that is not UTF-8"))
    };
    let mut out = PgUrl {
        host: u
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()),
        port: u.port(),
        db: Some(u.path().trim_start_matches('/'))
            .filter(|d| !d.is_empty())
            .map(decode)
            .transpose()?,
        user: Some(u.username())
            .filter(|s| !s.is_empty())
            .map(decode)
            .transpose()?,
        password: u.password().map(decode).transpose()?.map(Secret::new),
        sslmode: None,
        sslrootcert: None,
    };
    for (k, v) in u.query_pairs() {
        match &*k {
            "sslmode" => {
                out.sslmode = Some(PgSslMode::parse(&v).ok_or_else(|| {
                    format!("POSTGRES_URL: sslmode `{v}` is not one of disable, prefer, require, verify-ca, verify-full")
                })?)
            }
            "sslrootcert" => out.sslrootcert = Some(PathBuf::from(&*v)),
            "host" => out.host = Some(v.into_owned()),
            "port" => {
                out.port = Some(v.parse().map_err(|_| format!("POSTGRES_URL: port `{v}` is not a number"))?)
            }
            "dbname" => out.db = Some(v.into_owned()),
            "user" => out.user = Some(v.into_owned()),
            "password" => out.password = Some(Secret::new(v.into_owned())),
            "application_name" | "connect_timeout" => {}
            other => {
                return Err(format!(
                    "POSTGRES_URL: parameter `{other}` is not supported (pipedemo reads host, port, dbname, user, password, sslmode, sslrootcert)"
                ))
            }
        }
    }
    Ok(out)
}

impl PostgresArgs {
    /// Folds `--pg-url` into the separate settings (its parts win). Called once, at start.
    pub fn resolve(&mut self) -> Result<(), String> {
        let Some(url) = self.url.take() else {
            return Ok(());
        };
        let u = parse_pg_url(url.expose())?;
        if let Some(h) = u.host {
            self.host = h;
        }
        if let Some(p) = u.port {
            self.port = p;
        }
        if let Some(d) = u.db {
            self.db = d;
        }
        if let Some(x) = u.user {
            self.user = x;
        }
        if let Some(x) = u.password {
            self.password = x;
        }
        if let Some(x) = u.sslmode {
            self.sslmode = x;
        }
        if let Some(x) = u.sslrootcert {
            self.sslrootcert = Some(x);
        }
        Ok(())
    }

    /// Where this connects, for messages: `user@host:port/db`, without the password.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.db)
    }

    /// A tokio-postgres configuration for these settings.
    pub fn client_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.db)
            .user(&self.user)
            .password(self.password.expose())
            .application_name("pipedemo")
            .options("-c client_min_messages=warning")
            .connect_timeout(Duration::from_secs(5))
            .ssl_mode(match self.sslmode {
                PgSslMode::Disable => tokio_postgres::config::SslMode::Disable,
                PgSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        c
    }
}

/// Kafka, the Debezium topic and the consumer group.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        global = true,
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// Debezium topic prefix (the connector's topic.prefix).
    #[arg(global = true, long, env = "TOPIC_PREFIX", default_value = "pipedemo")]
    pub topic_prefix: String,
    /// Topic with the outbox changes [default: <topic-prefix>.public.event_outbox].
    #[arg(global = true, long, env = "KAFKA_TOPIC")]
    pub topic: Option<String>,
    /// Dead-letter topic for messages that cannot be handled [default: <topic>.dlq].
    #[arg(global = true, long, env = "DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// Consumer group of the pipedemo consumer.
    #[arg(
        global = true,
        long,
        env = "CONSUMER_GROUP",
        default_value = "event-processor-group"
    )]
    pub group: String,
    /// How clients talk to the brokers.
    #[arg(
        global = true,
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value_t = KafkaSecurity::Plaintext
    )]
    pub security_protocol: KafkaSecurity,
    /// SASL mechanism (with SASL_SSL or SASL_PLAINTEXT).
    #[arg(
        global = true,
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(
        global = true,
        long = "kafka-sasl-username",
        env = "KAFKA_SASL_USERNAME"
    )]
    pub sasl_username: Option<String>,
    /// SASL password (never printed).
    #[arg(
        global = true,
        long = "kafka-sasl-password",
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<Secret>,
    /// CA certificate(s) (PEM) for the brokers' certificates [default: the system's].
    #[arg(
        global = true,
        long = "kafka-ssl-ca",
        env = "KAFKA_SSL_CA_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        global = true,
        long = "kafka-ssl-cert",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(
        global = true,
        long = "kafka-ssl-key",
        env = "KAFKA_SSL_KEY_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_key: Option<PathBuf>,
    /// Any librdkafka property, as kcat's -X (repeatable; applied after the settings above, so
    /// it wins over them). In the environment, separate entries with `;`. The settings that
    /// make pipedemo's guarantees (group.id, enable.auto.commit, acks, …) are set per client
    /// after these and cannot be overridden.
    #[arg(
        global = true,
        short = 'X',
        long = "kafka-option",
        env = "KAFKA_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        value_parser = KeyValue::parse,
        hide_env_values = true
    )]
    pub options: Vec<KeyValue>,
    /// Replication factor of the topics pipedemo creates [default: the broker's
    /// default.replication.factor].
    #[arg(
        global = true,
        long = "replication-factor",
        env = "KAFKA_REPLICATION_FACTOR",
        value_parser = clap::value_parser!(i32).range(1..=16)
    )]
    pub replication_factor: Option<i32>,
}

/// `security.protocol`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaSecurity {
    /// No TLS, no authentication.
    #[value(name = "PLAINTEXT")]
    Plaintext,
    /// TLS (with a client certificate for mutual TLS).
    #[value(name = "SSL")]
    Ssl,
    /// SASL without TLS.
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS.
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(self, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// User name and password in the clear (use with SASL_SSL).
    #[value(name = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A `key=value` setting passed through to a client (`-X`, `--connector-config`). Its value is
/// shown as `***` when the key names a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The property.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl KeyValue {
    /// Parses `key=value` (the value may contain `=`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(KeyValue {
                key: k.trim().to_owned(),
                value: v.to_owned(),
            }),
            // Not echoed: a malformed pair may still hold a secret.
            _ => Err("expected KEY=VALUE (a property name, `=`, its value)".into()),
        }
    }

    /// `key=value` with the value redacted when the key names a secret.
    pub fn redacted(&self) -> String {
        format!("{}={}", self.key, redact_setting(&self.key, &self.value))
    }
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Whether a client property's value is a secret: passwords, keys, tokens, JAAS lines.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "credential"]
        .iter()
        .any(|w| k.contains(w))
        || k.ends_with(".key")
        || k.ends_with("key.pem")
        || k.ends_with("keystore.key")
}

/// `value`, or `***` when `key` names a secret.
pub fn redact_setting(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        "***".into()
    } else {
        value.to_owned()
    }
}

impl KafkaArgs {
    /// Checks that the security settings go together, with a message naming what is missing.
    pub fn validate(&self) -> Result<(), String> {
        if self.security_protocol.sasl() {
            let missing: Vec<&str> = [
                (
                    self.sasl_mechanism.is_none(),
                    "KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism)",
                ),
                (
                    self.sasl_username.is_none(),
                    "KAFKA_SASL_USERNAME (--kafka-sasl-username)",
                ),
                (
                    self.sasl_password.is_none(),
                    "KAFKA_SASL_PASSWORD (--kafka-sasl-password)",
                ),
            ]
            .iter()
            .filter(|(m, _)| *m)
            .map(|(_, n)| *n)
            .collect();
            let from_x = |k: &str| self.options.iter().any(|o| o.key == k);
            if !missing.is_empty() && !from_x("sasl.username") {
                return Err(format!(
                    "KAFKA_SECURITY_PROTOCOL={} needs {}",
                    self.security_protocol.as_str().to_uppercase(),
                    missing.join(", ")
                ));
            }
        } else if self.sasl_username.is_some() || self.sasl_mechanism.is_some() {
            return Err(format!(
                "SASL settings are given but KAFKA_SECURITY_PROTOCOL is {}: set it to SASL_SSL (or SASL_PLAINTEXT)",
                self.security_protocol.as_str().to_uppercase()
            ));
        }
        if self.ssl_cert.is_some() != self.ssl_key.is_some() {
            return Err(
                "mutual TLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
                    .into(),
            );
        }
        for f in [&self.ssl_ca, &self.ssl_cert, &self.ssl_key]
            .into_iter()
            .flatten()
        {
            if !f.is_file() {
                return Err(format!("Kafka TLS file {} does not exist", f.display()));
            }
        }
        Ok(())
    }

    /// The librdkafka properties for these settings, in the order they are applied: the
    /// security settings, then every `-X`.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = vec![(
            "security.protocol".into(),
            self.security_protocol.as_str().into(),
        )];
        if let Some(m) = self.sasl_mechanism {
            p.push(("sasl.mechanism".into(), m.as_str().into()));
        }
        if let Some(u) = &self.sasl_username {
            p.push(("sasl.username".into(), u.clone()));
        }
        if let Some(pw) = &self.sasl_password {
            p.push(("sasl.password".into(), pw.expose().to_owned()));
        }
        for (k, f) in [
            ("ssl.ca.location", &self.ssl_ca),
            ("ssl.certificate.location", &self.ssl_cert),
            ("ssl.key.location", &self.ssl_key),
        ] {
            if let Some(f) = f {
                p.push((k.into(), f.display().to_string()));
            }
        }
        p.extend(
            self.options
                .iter()
                .map(|o| (o.key.clone(), o.value.clone())),
        );
        p
    }

    /// Whether these settings use TLS (for messages).
    pub fn uses_tls(&self) -> bool {
        let proto = self
            .options
            .iter()
            .rev()
            .find(|o| o.key == "security.protocol")
            .map(|o| o.value.to_ascii_lowercase())
            .unwrap_or_else(|| self.security_protocol.as_str().to_owned());
        proto.ends_with("ssl")
    }

    /// The Debezium topic for `public.event_outbox`.
    pub fn topic(&self) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{}.public.event_outbox", self.topic_prefix))
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic()))
    }
}

/// Kafka Connect and the Debezium connector it runs.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Kafka Connect")]
pub struct ConnectArgs {
    /// Kafka Connect REST URL.
    #[arg(
        global = true,
        long,
        env = "CONNECT_URL",
        default_value = "http://127.0.0.1:8083"
    )]
    pub connect_url: String,
    /// Name of the Debezium connector.
    #[arg(
        global = true,
        long,
        env = "CONNECTOR_NAME",
        default_value = "pipedemo-outbox"
    )]
    pub connector_name: String,
    /// PostgreSQL host as Kafka Connect sees it [default: the PostgreSQL host].
    #[arg(global = true, long, env = "CONNECTOR_DATABASE_HOST")]
    pub connector_db_host: Option<String>,
    /// Logical replication slot used by the connector.
    #[arg(
        global = true,
        long = "replication-slot",
        env = "REPLICATION_SLOT",
        default_value = "pipedemo_outbox"
    )]
    pub slot: String,
    /// CA certificate (PEM) for an https Connect URL [default: the system's].
    #[arg(
        global = true,
        long = "connect-ca-file",
        env = "CONNECT_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// User for Connect's basic authentication.
    #[arg(
        global = true,
        id = "connect_username",
        long = "connect-username",
        env = "CONNECT_USERNAME"
    )]
    pub username: Option<String>,
    /// Password for Connect's basic authentication (never printed).
    #[arg(
        global = true,
        id = "connect_password",
        long = "connect-password",
        env = "CONNECT_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret>,
    /// A connector setting merged over pipedemo's (repeatable; `;`-separated in the
    /// environment), e.g. `database.sslrootcert=/etc/ssl/pg-ca.pem` when Connect keeps the CA
    /// elsewhere. `setup` prints the result, secrets redacted.
    #[arg(
        global = true,
        long = "connector-config",
        env = "CONNECTOR_CONFIG",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        value_parser = KeyValue::parse,
        hide_env_values = true
    )]
    pub connector_config: Vec<KeyValue>,
}

/// The MongoDB-protocol server with the read models.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "MongoDB")]
pub struct MongoArgs {
    /// MongoDB connection string (credentials in it are never printed).
    #[arg(
        global = true,
        long,
        env = "MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub mongodb_uri: Secret,
    /// Database holding the read models.
    #[arg(
        global = true,
        long,
        env = "MONGODB_DATABASE",
        default_value = "activity_read"
    )]
    pub mongodb_database: String,
}

impl MongoArgs {
    /// The URI with any password replaced, for messages.
    pub fn describe(&self) -> String {
        redact_uri(self.mongodb_uri.expose())
    }
}

/// Every service's settings, shared by all subcommands.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pg: PostgresArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mongo: MongoArgs,
    /// Append one JSON line per processed event to this file.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        env = "METRICS_FILE",
        default_value = "pipedemo_metrics.jsonl"
    )]
    pub metrics_file: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        env = "LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Logs as JSON lines.
    #[arg(global = true, help_heading = "Output", long, env = "LOG_JSON")]
    pub log_json: bool,
    /// Serve the live figures as OpenMetrics at http://ADDR/metrics for Prometheus (load,
    /// full, capacity, consume, monitor), e.g. `127.0.0.1:9464`.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        env = "METRICS_LISTEN",
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Colour in log lines: `auto` only on a terminal and without `NO_COLOR` set.
    #[arg(
        global = true,
        help_heading = "Output",
        long,
        value_enum,
        default_value_t = Color::Auto
    )]
    pub color: Color,
}

impl Settings {
    /// Folds and checks the settings once, before any command runs: `--pg-url`, the Kafka
    /// security settings, the TLS files. The message says what to change.
    pub fn resolve(&mut self) -> Result<(), String> {
        self.pg.resolve()?;
        if let Some(f) = &self.pg.sslrootcert {
            if !f.is_file() {
                return Err(format!(
                    "POSTGRES_SSLROOTCERT {} does not exist",
                    f.display()
                ));
            }
        }
        self.kafka.validate()?;
        if let Some(f) = &self.connect.ca_file {
            if !f.is_file() {
                return Err(format!("CONNECT_CA_FILE {} does not exist", f.display()));
            }
        }
        if self.connect.username.is_some() != self.connect.password.is_some() {
            return Err(
                "Connect's basic authentication needs both CONNECT_USERNAME and CONNECT_PASSWORD"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `--color`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// On a terminal, unless `NO_COLOR` is set (https://no-color.org).
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

impl Color {
    /// Whether to write colour codes to a stream that is (or is not) a terminal, with
    /// `NO_COLOR` set to `no_color` (an empty value counts as unset, as the convention says).
    pub fn enabled(self, is_terminal: bool, no_color: Option<&str>) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => is_terminal && no_color.is_none_or(str::is_empty),
        }
    }
}

/// Replaces the password in `scheme://user:password@host` with `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_owned();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &uri[..scheme_end + 3], user, &rest[at..])
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_where_wanted() {
        assert!(Color::Auto.enabled(true, None));
        assert!(Color::Auto.enabled(true, Some("")));
        assert!(!Color::Auto.enabled(true, Some("1")));
        assert!(!Color::Auto.enabled(false, None));
        assert!(Color::Always.enabled(false, Some("1")));
        assert!(!Color::Never.enabled(true, None));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_pg_url_gives_every_part_and_tls() {
        let u = parse_pg_url(
            "postgresql://app%40x:p%3Ass@db.example.com:6543/orders?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(u.host.as_deref(), Some("db.example.com"));
        assert_eq!(u.port, Some(6543));
        assert_eq!(u.db.as_deref(), Some("orders"));
        assert_eq!(u.user.as_deref(), Some("app@x"));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("p:ss"));
        assert_eq!(u.sslmode, Some(PgSslMode::VerifyFull));
        assert_eq!(u.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        let e = parse_pg_url("postgresql://u:hunter2@h/db?sslmode=sometimes").unwrap_err();
        assert!(e.contains("sslmode `sometimes`"), "{e}");
        let e = parse_pg_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(e.contains("postgresql://") && !e.contains("hunter2"), "{e}");
        let e = parse_pg_url("postgresql://u:hunter2@h/db?gssencmode=x").unwrap_err();
        assert!(e.contains("gssencmode") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn secret_settings_are_redacted_and_others_shown() {
        for k in [
            "sasl.password",
            "database.password",
            "sasl.jaas.config",
            "ssl.key.pem",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "ssl.keystore.key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "security.protocol",
            "key.converter",
            "ssl.ca.location",
            "message.key.columns",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
        let kv = KeyValue::parse("sasl.password=a=b").unwrap();
        assert_eq!(
            (kv.key.as_str(), kv.value.as_str()),
            ("sasl.password", "a=b")
        );
        assert_eq!(format!("{kv:?}"), "sasl.password=***");
        assert!(!KeyValue::parse("novalue").unwrap_err().contains("novalue="));
    }

    #[test]
    fn uri_passwords_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://app:s3cret@db:27017/x?authSource=admin"),
            "mongodb://app:***@db:27017/x?authSource=admin"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
        assert_eq!(redact_uri("not a uri"), "not a uri");
    }
}
