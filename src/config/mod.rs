//! Connection settings for every service, from flags with environment-variable fallbacks, one
//! module per service.
//!
//! Defaults match `docker-compose.yml` and `scripts/stack.sh`, so with either stack up every
//! command works with no flags. A `.env` file in the working directory is read first (see
//! `main`), so its values act as environment variables.

mod connect;
pub mod file;
mod kafka;
pub mod layers;
mod mongo;
mod output;
mod postgres;
mod secrets;

use clap::Args;

pub use connect::ConnectArgs;
#[cfg(test)]
pub(crate) use kafka::parse_args;
pub use kafka::{KafkaArgs, KafkaSecurity, RoutePattern, Routing, SaslMechanism, ROUTED_BY_VALUE};
pub use mongo::MongoArgs;
pub use output::{Color, OutputArgs};
pub use postgres::{parse_pg_url, PgSslMode, PgUrl, PostgresArgs};
pub use secrets::{is_secret_key, redact_setting, redact_uri, KeyValue, Secret};

/// Every service's settings of the command line `x ARGS`, for tests.
#[cfg(test)]
pub(crate) fn parse_settings(args: &[&str]) -> Settings {
    #[derive(clap::Parser)]
    struct A {
        #[command(flatten)]
        s: Settings,
    }
    <A as clap::Parser>::parse_from(std::iter::once(&"x").chain(args)).s
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
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: OutputArgs,
    /// The settings given as flags, as the variables a child `pipedemo` process reads them
    /// from (filled by [`crate::cli::parse`]).
    #[arg(skip)]
    pub child_env: ChildEnv,
    /// A config file (`pipedemo.toml`, `--config FILE`), read before the flags: its values
    /// are the flags' defaults.
    #[arg(
        global = true,
        long,
        env = "PIPEDEMO_CONFIG",
        value_name = "FILE",
        help_heading = "Config"
    )]
    pub config: Option<std::path::PathBuf>,
    /// The `[profile.NAME]` section of the config file to use over its top level.
    #[arg(
        global = true,
        long,
        env = "PIPEDEMO_PROFILE",
        value_name = "NAME",
        help_heading = "Config"
    )]
    pub profile: Option<String>,
    /// Where each setting's value came from (filled by [`crate::cli::parse`]).
    #[arg(skip)]
    pub sources: Sources,
    /// Why `.env` or the config file could not be used: an error for every command that uses
    /// the settings, not for `--help`, `--version`, `completions`, `man` or `compare`.
    #[arg(skip)]
    pub deferred: Option<String>,
}

/// One setting's value and where it came from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SettingSource {
    /// The key: the flag's name with `_` (`pg_port`).
    pub key: String,
    /// The value, secrets as `***`.
    pub value: String,
    /// Where it came from.
    #[serde(serialize_with = "display")]
    pub source: file::Source,
}

fn display<S: serde::Serializer>(v: &file::Source, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Every setting's value and source, in flag order.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Sources(pub Vec<SettingSource>);

/// A setting's value as `pipedemo config` shows it: [`secrets::redact_value`], the one rule.
pub fn shown_value(key: &str, value: &str, secret: bool) -> String {
    secrets::redact_value(key, value, secret)
}

/// Every setting of this process, as `(variable, value)`: a `pipedemo consume` started by
/// this process (chaos runs) gets them in its environment (never in its arguments, where any
/// user of the machine could read a password), with every variable a setting reads removed
/// first and [`SETTINGS_FROM_PARENT`] set, so that it runs with exactly the parent's
/// settings: nothing inherited, nothing read again from `.env` or the config file.
#[derive(Clone, Default)]
pub struct ChildEnv {
    /// The settings' variables and values.
    pub vars: Vec<(String, std::ffi::OsString)>,
    /// Every variable a setting reads (with and without the `PIPEDEMO_` prefix).
    pub remove: Vec<String>,
}

/// Set in a child's environment: its settings come from the parent, whole, so it reads
/// neither `.env` nor the config file.
pub const SETTINGS_FROM_PARENT: &str = "PIPEDEMO_SETTINGS_FROM_PARENT";

/// Whether this process's settings were given whole by its parent.
pub fn settings_from_parent() -> bool {
    std::env::var_os(SETTINGS_FROM_PARENT).is_some_and(|v| v == "1")
}

impl std::fmt::Debug for ChildEnv {
    /// Names only: the values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(k, _)| k))
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
