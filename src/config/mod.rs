//! Connection settings for every service, from flags with environment-variable fallbacks, one
//! module per service.
//!
//! Defaults match `docker-compose.yml` and `scripts/stack.sh`, so with either stack up every
//! command works with no flags. A `.env` file in the working directory is read first (see
//! `main`), so its values act as environment variables.

mod connect;
mod kafka;
mod mongo;
mod output;
mod postgres;
mod secrets;

use clap::Args;

pub use connect::ConnectArgs;
pub use kafka::{KafkaArgs, KafkaSecurity, SaslMechanism};
pub use mongo::MongoArgs;
pub use output::{Color, OutputArgs};
pub use postgres::{parse_pg_url, PgSslMode, PgUrl, PostgresArgs};
pub use secrets::{is_secret_key, redact_setting, redact_uri, KeyValue, Secret};

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
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: OutputArgs,
    /// The settings given as flags, as the variables a child `pipedemo` process reads them
    /// from (filled by [`crate::cli::parse`]).
    #[arg(skip)]
    pub child_env: ChildEnv,
}

/// Settings given on the command line, as `(variable, value)`: a `pipedemo consume` started
/// by this process (chaos runs) gets them in its environment, never in its arguments, where
/// any user of the machine could read a password. Values from the environment or `.env`
/// are inherited anyway.
#[derive(Clone, Default)]
pub struct ChildEnv(pub Vec<(String, std::ffi::OsString)>);

impl std::fmt::Debug for ChildEnv {
    /// Names only: the values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
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
