//! Kafka Connect settings: the REST URL and its TLS and authentication, the connector's name,
//! slot and extra settings.

use std::path::PathBuf;

use clap::Args;

use super::secrets::{KeyValue, Secret};

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
