//! Pipeline health as data: what the health poller finds once a second (lag, the connector's
//! state, read-model counts, the first problem) and what the dashboard, the progress lines and
//! the Prometheus exporter show of it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::read_model::Collection;

/// Pipeline health polled outside the hot path.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    /// Consumer-group lag on the outbox topic.
    pub lag: Option<i64>,
    /// The Debezium connector and its tasks, when Connect answered and it is registered.
    pub connector: Option<ConnectorHealth>,
    /// Documents per read-model collection.
    pub mongo_counts: BTreeMap<Collection, u64>,
    /// The first problem a health probe found.
    pub problem: Option<String>,
}

/// A Kafka Connect connector's or task's state, as its REST API reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConnectorState {
    /// Streaming.
    Running,
    /// Paused by a user: keeps its place, sends nothing.
    Paused,
    /// Stopped (Kafka 3.5+): no tasks, offsets kept.
    Stopped,
    /// Failed; the trace says why.
    Failed,
    /// Being restarted.
    Restarting,
    /// Not yet given to a worker.
    #[default]
    Unassigned,
    /// A state this version of pipedemo does not know.
    #[serde(other)]
    Unknown,
}

impl ConnectorState {
    /// Every state, as exported to Prometheus.
    pub const ALL: [ConnectorState; 7] = [
        ConnectorState::Running,
        ConnectorState::Paused,
        ConnectorState::Stopped,
        ConnectorState::Failed,
        ConnectorState::Restarting,
        ConnectorState::Unassigned,
        ConnectorState::Unknown,
    ];

    /// The name Kafka Connect uses.
    pub const fn name(self) -> &'static str {
        match self {
            ConnectorState::Running => "RUNNING",
            ConnectorState::Paused => "PAUSED",
            ConnectorState::Stopped => "STOPPED",
            ConnectorState::Failed => "FAILED",
            ConnectorState::Restarting => "RESTARTING",
            ConnectorState::Unassigned => "UNASSIGNED",
            ConnectorState::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for ConnectorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The connector's state and how many of its tasks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectorHealth {
    /// The connector's own state.
    pub state: ConnectorState,
    /// Tasks that are RUNNING.
    pub tasks_running: usize,
    /// All its tasks.
    pub tasks: usize,
}

impl ConnectorHealth {
    /// The connector and all (at least one) of its tasks run.
    pub fn ok(&self) -> bool {
        self.state == ConnectorState::Running && self.tasks > 0 && self.tasks_running == self.tasks
    }
}

impl fmt::Display for ConnectorHealth {
    /// `RUNNING 1/1`: the connector's state, then running/all tasks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.state, self.tasks_running, self.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_connect_writes_them_and_unknown_ones_do_not_fail() {
        let s: Vec<ConnectorState> =
            serde_json::from_str(r#"["RUNNING","FAILED","PAUSED","STOPPED","SOMETHING_NEW"]"#)
                .unwrap();
        assert_eq!(
            s,
            [
                ConnectorState::Running,
                ConnectorState::Failed,
                ConnectorState::Paused,
                ConnectorState::Stopped,
                ConnectorState::Unknown
            ]
        );
    }

    #[test]
    fn healthy_only_when_the_connector_and_every_task_run() {
        let h = |state, tasks_running, tasks| ConnectorHealth {
            state,
            tasks_running,
            tasks,
        };
        assert!(h(ConnectorState::Running, 1, 1).ok());
        assert!(!h(ConnectorState::Running, 0, 1).ok());
        assert!(!h(ConnectorState::Running, 0, 0).ok());
        assert!(!h(ConnectorState::Paused, 1, 1).ok());
        assert_eq!(h(ConnectorState::Running, 1, 1).to_string(), "RUNNING 1/1");
        assert_eq!(h(ConnectorState::Failed, 0, 1).to_string(), "FAILED 0/1");
    }
}
