//! The faults a chaos run injects ([`Fault`]), what each acts on ([`Target`]), and where each
//! stands during the run ([`FaultState`]): the vocabulary shared by the run that injects them,
//! the live state and the displays.

use std::fmt;

use serde::Serialize;

/// One fault of a chaos run.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The consumer process is killed (SIGKILL) and restarted.
    ConsumerKill,
    /// The consumer crashes after a batch's MongoDB write, before its offsets are committed.
    ConsumerCrash,
    /// A second consumer joins the group and leaves it (two rebalances).
    Rebalance,
    /// pipedemo's connector is paused, then resumed (Connect's REST API).
    ConnectorPause,
    /// pipedemo's connector task is restarted (Connect's REST API).
    TaskRestart,
    /// The local stack's Kafka Connect is killed (SIGKILL) and started again.
    ConnectKill,
    /// The local stack's Kafka broker is stopped, then started again.
    KafkaStop,
    /// The local stack's MongoDB server is stopped, then started again.
    MongoStop,
    /// The local stack's PostgreSQL is stopped and started again.
    PostgresRestart,
    /// The local stack's Kafka Connect is frozen (SIGSTOP), then let go on (SIGCONT).
    ConnectFreeze,
    /// The local stack's Kafka broker is frozen: alive, connections open, nothing answered.
    KafkaFreeze,
    /// The local stack's MongoDB server is frozen.
    MongoFreeze,
    /// The local stack's PostgreSQL (every process of it) is frozen.
    PostgresFreeze,
}

/// A service of the local stack (`scripts/stack.sh`), by the name the script uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// PostgreSQL.
    Postgres,
    /// The Kafka broker.
    Kafka,
    /// Kafka Connect with Debezium.
    Connect,
    /// The MongoDB-protocol server.
    Mongo,
}

impl Service {
    /// The name `scripts/stack.sh` knows it by.
    pub const fn stack_name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Kafka => "kafka",
            Service::Connect => "connect",
            Service::Mongo => "mongo",
        }
    }

    /// Its name for people.
    pub const fn title(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Kafka => "Kafka",
            Service::Connect => "Kafka Connect",
            Service::Mongo => "MongoDB",
        }
    }
}

/// What a fault acts on, which decides where it can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// pipedemo's own consumer processes: anywhere.
    OwnProcess,
    /// pipedemo's own connector, through Connect's REST API: anywhere, staging included.
    OwnConnector,
    /// A service the local stack runs, through `scripts/stack.sh`.
    Stack(Service),
}

impl Fault {
    /// Every fault, in the order a chaos run injects them: the gentle ones first.
    pub const ALL: [Fault; 13] = [
        Fault::ConsumerKill,
        Fault::ConsumerCrash,
        Fault::Rebalance,
        Fault::ConnectorPause,
        Fault::TaskRestart,
        Fault::ConnectKill,
        Fault::KafkaStop,
        Fault::MongoStop,
        Fault::PostgresRestart,
        Fault::ConnectFreeze,
        Fault::KafkaFreeze,
        Fault::MongoFreeze,
        Fault::PostgresFreeze,
    ];

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::ConsumerKill => "consumer-kill",
            Fault::ConsumerCrash => "consumer-crash",
            Fault::Rebalance => "rebalance",
            Fault::ConnectorPause => "connector-pause",
            Fault::TaskRestart => "task-restart",
            Fault::ConnectKill => "connect-kill",
            Fault::KafkaStop => "kafka-stop",
            Fault::MongoStop => "mongo-stop",
            Fault::PostgresRestart => "postgres-restart",
            Fault::ConnectFreeze => "connect-freeze",
            Fault::KafkaFreeze => "kafka-freeze",
            Fault::MongoFreeze => "mongo-freeze",
            Fault::PostgresFreeze => "postgres-freeze",
        }
    }

    /// What it does, in a sentence.
    pub const fn what(self) -> &'static str {
        match self {
            Fault::ConsumerKill => "SIGKILL the consumer process; the supervisor restarts it",
            Fault::ConsumerCrash => {
                "crash the consumer after a MongoDB write, before the offset commit"
            }
            Fault::Rebalance => "a second consumer joins the group, then leaves",
            Fault::ConnectorPause => "pause pipedemo's connector, then resume it",
            Fault::TaskRestart => "restart pipedemo's connector task",
            Fault::ConnectKill => "SIGKILL Kafka Connect, then start it again",
            Fault::KafkaStop => "stop the Kafka broker, then start it again",
            Fault::MongoStop => "stop the MongoDB server, then start it again",
            Fault::PostgresRestart => "stop PostgreSQL, then start it again",
            Fault::ConnectFreeze => "freeze Kafka Connect (SIGSTOP), then let it go on (SIGCONT)",
            Fault::KafkaFreeze => "freeze the Kafka broker (SIGSTOP), then let it go on",
            Fault::MongoFreeze => "freeze the MongoDB server (SIGSTOP), then let it go on",
            Fault::PostgresFreeze => "freeze PostgreSQL (SIGSTOP), then let it go on",
        }
    }

    /// What it acts on.
    pub const fn target(self) -> Target {
        match self {
            Fault::ConsumerKill | Fault::ConsumerCrash | Fault::Rebalance => Target::OwnProcess,
            Fault::ConnectorPause | Fault::TaskRestart => Target::OwnConnector,
            Fault::ConnectKill | Fault::ConnectFreeze => Target::Stack(Service::Connect),
            Fault::KafkaStop | Fault::KafkaFreeze => Target::Stack(Service::Kafka),
            Fault::MongoStop | Fault::MongoFreeze => Target::Stack(Service::Mongo),
            Fault::PostgresRestart | Fault::PostgresFreeze => Target::Stack(Service::Postgres),
        }
    }

    /// Whether it lasts `--fault-duration` (a stop, a pause, a second member); otherwise it
    /// is a moment (a kill and restart, a crash) cleared as soon as the restart is done.
    pub const fn holds(self) -> bool {
        matches!(
            self,
            Fault::Rebalance
                | Fault::ConnectorPause
                | Fault::KafkaStop
                | Fault::MongoStop
                | Fault::ConnectFreeze
                | Fault::KafkaFreeze
                | Fault::MongoFreeze
                | Fault::PostgresFreeze
        )
    }

    /// Whether it leaves its service alive but silent (a gray failure: nothing refused,
    /// nothing answered), cleared by letting it go on rather than starting it again.
    pub const fn freezes(self) -> bool {
        matches!(
            self,
            Fault::ConnectFreeze | Fault::KafkaFreeze | Fault::MongoFreeze | Fault::PostgresFreeze
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one fault of the schedule stands, for the live view.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultState {
    /// Not yet injected.
    Pending,
    /// Injected; cleared at `until_us` (held faults) or when its restart is done.
    Active {
        /// When it is due to be cleared, µs (held faults).
        until_us: Option<i64>,
    },
    /// Cleared; waiting for the backlog and p99 to come back.
    Recovering {
        /// When it was cleared, µs.
        since_us: i64,
    },
    /// Done: its result line.
    Recovered(String),
    /// Not recovered within the timeout, or not injected or cleared: why.
    Failed(String),
    /// Not run here: why.
    Skipped(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn command_line_names_are_the_report_names() {
        for f in Fault::ALL {
            assert_eq!(f.to_possible_value().unwrap().get_name(), f.name());
            assert_eq!(
                serde_json::to_value(f).unwrap(),
                serde_json::json!(f.name())
            );
        }
        assert_eq!(Fault::value_variants().len(), Fault::ALL.len());
    }
}
