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
}

impl PostgresArgs {
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
            .connect_timeout(Duration::from_secs(5));
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
}

impl KafkaArgs {
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
