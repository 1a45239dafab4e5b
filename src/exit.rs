//! pipedemo's exit codes, the same in every command (README, "Exit codes"):
//! 0 success, 1 a check or threshold failed, 2 usage or configuration error (pipedemo's own
//! settings: flags, credentials, TLS, a refusal to clear; a command run before its setup), 3 a
//! service unreachable or lacking what pipedemo needs, 130 interrupted.

use std::process::ExitCode;

/// Why pipedemo exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done and every check passed.
    Success,
    /// A check or threshold failed: missing events, verification, `--max-p95-ms`, `--min-rate`.
    CheckFailed,
    /// The command line or the configuration is wrong (clap uses 2 for usage errors too),
    /// including credentials or TLS settings a service refuses, and anything pipedemo would
    /// have to clear but did not create.
    Usage,
    /// A service is unreachable or lacks what pipedemo needs.
    Service,
    /// Stopped by Ctrl-C or SIGTERM (after a clean stop; a second Ctrl-C exits at once).
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::CheckFailed => 1,
            Exit::Usage => 2,
            Exit::Service => 3,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// A service that cannot be used: unreachable, or lacking what pipedemo needs (logical
/// decoding, the Debezium plugin, a database). The message says which and how to fix it. Exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

/// pipedemo's own settings do not fit the service: wrong credentials, TLS settings the server
/// refuses or a certificate not trusted, or something pipedemo did not create that it would
/// have to clear. The message names the setting to change. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// An [`anyhow::Error`] carrying a [`ConfigError`].
pub fn config(message: impl Into<String>) -> anyhow::Error {
    ConfigError(message.into()).into()
}

/// A command run before the setup it needs: what is missing is pipedemo's to create, so the
/// fix is the user's next command, named in the message. Exit code 2, like a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotSetUp(pub String);

/// An [`anyhow::Error`] carrying a [`NotSetUp`].
pub fn not_set_up(message: impl Into<String>) -> anyhow::Error {
    NotSetUp(message.into()).into()
}

/// An [`anyhow::Error`] carrying a [`ServiceError`].
pub fn service(message: impl Into<String>) -> anyhow::Error {
    ServiceError(message.into()).into()
}

/// The exit for an error that ended a command: [`Exit::Usage`] when any cause is a
/// [`ConfigError`]; else [`Exit::Service`] when any cause is a service's (a [`ServiceError`] or
/// a client library's error); else [`Exit::Usage`].
pub fn of_error(e: &anyhow::Error) -> Exit {
    if e.chain()
        .any(|c| c.is::<ConfigError>() || c.is::<NotSetUp>())
    {
        return Exit::Usage;
    }
    let from_service = e.chain().any(|c| {
        c.is::<ServiceError>()
            || c.is::<tokio_postgres::Error>()
            || c.is::<mongodb::error::Error>()
            || c.is::<rdkafka::error::KafkaError>()
            || c.is::<reqwest::Error>()
    });
    if from_service {
        Exit::Service
    } else {
        Exit::Usage
    }
}

/// The error for the service checks that failed, or `Ok` when none did. One failure is
/// returned as it is; several are listed in one error, a configuration error (2) only when
/// every one of them is pipedemo's own settings (credentials, TLS), else a service error (3).
pub fn combine(mut problems: Vec<anyhow::Error>) -> anyhow::Result<()> {
    if problems.len() < 2 {
        return problems.pop().map_or(Ok(()), Err);
    }
    let n = problems.len();
    let list = problems
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n  - ");
    if problems.iter().all(|e| of_error(e) == Exit::Usage) {
        Err(config(format!(
            "{n} services refuse pipedemo's settings:\n  - {list}"
        )))
    } else {
        Err(service(format!("{n} services are not usable:\n  - {list}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn service_errors_exit_3_wherever_they_are_in_the_chain() {
        let e = Err::<(), _>(service("Kafka at x is unreachable"))
            .context("setting up")
            .unwrap_err();
        assert_eq!(of_error(&e), Exit::Service);
        let kafka: anyhow::Error = rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
        )
        .into();
        assert_eq!(of_error(&kafka.context("listing topics")), Exit::Service);
    }

    #[test]
    fn configuration_wins_over_the_service_error_it_came_with() {
        let e = Err::<(), _>(config("Kafka rejected the SASL credentials"))
            .context(ServiceError("Kafka at x".into()))
            .context("setting up")
            .unwrap_err();
        assert_eq!(of_error(&e), Exit::Usage);
    }

    #[test]
    fn other_errors_are_usage() {
        assert_eq!(
            of_error(&anyhow::anyhow!("--batch-size must be at least 1")),
            Exit::Usage
        );
    }

    #[test]
    fn several_failed_checks_are_a_configuration_error_only_when_all_are() {
        assert!(combine(Vec::new()).is_ok());
        let one = combine(vec![service("Kafka at x is unreachable")]).unwrap_err();
        assert_eq!(one.to_string(), "Kafka at x is unreachable");
        assert_eq!(of_error(&one), Exit::Service);
        let all_config = combine(vec![
            config("PostgreSQL rejected the password"),
            config("MongoDB refused the credentials"),
        ])
        .unwrap_err();
        assert_eq!(of_error(&all_config), Exit::Usage);
        assert!(
            all_config
                .to_string()
                .starts_with("2 services refuse pipedemo's settings:\n  - PostgreSQL"),
            "{all_config}"
        );
        let mixed = combine(vec![
            config("PostgreSQL rejected the password"),
            service("Kafka at x is unreachable"),
            anyhow::Error::from(rdkafka::error::KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            )),
        ])
        .unwrap_err();
        assert_eq!(of_error(&mixed), Exit::Service);
        assert!(mixed.to_string().starts_with("3 services are not usable"));
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::CheckFailed,
            Exit::Usage,
            Exit::Service,
            Exit::Interrupted,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 130]);
    }
}
