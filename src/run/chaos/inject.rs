//! The nemesis's hands: injecting and clearing each fault, on pipedemo's own consumer
//! processes, pipedemo's own connector (Connect's REST API) or the local stack's services.

use std::time::Duration;

use anyhow::{bail, Result};

use super::local::LocalStack;
use crate::fault::{Fault, Target};
use crate::provision::connector::Connect;
use crate::run::children::Children;

/// What the faults act through.
pub struct Hands {
    /// The run's consumer processes.
    pub children: Children,
    /// Connect's REST API, for pipedemo's connector.
    pub connect: Connect,
    /// The local stack.
    pub stack: LocalStack,
}

/// How long a restart may take before the fault counts as not cleared.
const RESTART_LIMIT: Duration = Duration::from_secs(60);

/// Why `fault` cannot run here, or `None`. Connector faults need the connector to be
/// pipedemo's (its setup's mark); stack faults a service of the local stack.
pub async fn refusal(fault: Fault, connect: &Connect, stack: &LocalStack) -> Option<String> {
    match fault.target() {
        Target::OwnProcess => None,
        Target::OwnConnector => match connect.is_ours().await {
            Ok(true) => None,
            Ok(false) => {
                Some("the connector is not pipedemo's (not registered by `pipedemo setup`)".into())
            }
            Err(e) => Some(format!("cannot ask Kafka Connect: {e:#}")),
        },
        Target::Stack(service) => stack.refusal(service),
    }
}

/// What injecting left to clear.
pub enum Injected {
    /// Nothing: clearing only waits for what restarts by itself.
    Nothing,
    /// The consumer process with this pid, to be replaced by the supervisor.
    Consumer(u32),
}

impl Hands {
    /// Why `fault` cannot run here, or `None`.
    pub async fn refusal(&self, fault: Fault) -> Option<String> {
        refusal(fault, &self.connect, &self.stack).await
    }

    /// Injects `fault`.
    pub async fn inject(&self, fault: Fault) -> Result<Injected> {
        Ok(match fault {
            Fault::ConsumerKill => {
                Injected::Consumer(self.children.signal_main(libc::SIGKILL).await?)
            }
            Fault::ConsumerCrash => {
                Injected::Consumer(self.children.signal_main(libc::SIGUSR1).await?)
            }
            Fault::Rebalance => {
                self.children.join_extra().await?;
                Injected::Nothing
            }
            Fault::ConnectorPause => {
                self.connect.set_paused(true).await?;
                Injected::Nothing
            }
            Fault::TaskRestart => {
                self.connect.restart_task(0).await?;
                Injected::Nothing
            }
            Fault::ConnectKill => self.stack_do("kill", fault).await?,
            Fault::KafkaStop | Fault::MongoStop | Fault::PostgresRestart => {
                self.stack_do("stop", fault).await?
            }
            Fault::ConnectFreeze
            | Fault::KafkaFreeze
            | Fault::MongoFreeze
            | Fault::PostgresFreeze => self.stack_do("freeze", fault).await?,
        })
    }

    async fn stack_do(&self, verb: &str, fault: Fault) -> Result<Injected> {
        let Target::Stack(service) = fault.target() else {
            bail!("{fault} is not a stack fault");
        };
        self.stack.run(verb, service).await?;
        Ok(Injected::Nothing)
    }

    /// Clears what a failed injection of `fault` may have left (a service stopped halfway, a
    /// pause that went through before its reply was lost): the same as a run that is gone.
    pub async fn clear_left(&self, fault: Fault) -> Result<()> {
        match super::in_force::undo(fault) {
            super::in_force::Undo::Nothing(_) => Ok(()),
            super::in_force::Undo::Resume => self.connect.resume(RESTART_LIMIT).await.map(drop),
            super::in_force::Undo::Start(service) => self.stack.run("start", service).await,
            super::in_force::Undo::Thaw(service) => self.stack.run("thaw", service).await,
        }
    }

    /// Clears `fault`: resumes, starts again, or waits for the restart.
    pub async fn clear(&self, fault: Fault, injected: Injected) -> Result<()> {
        match (fault, injected) {
            (_, Injected::Consumer(pid)) => {
                self.children.restarted(pid, RESTART_LIMIT).await?;
            }
            (Fault::Rebalance, _) => self.children.leave_extra().await?,
            (Fault::ConnectorPause, _) => {
                self.connect.resume(RESTART_LIMIT).await?;
            }
            (Fault::TaskRestart, _) => {
                self.connect
                    .wait_running(RESTART_LIMIT)
                    .await
                    .map_err(|e| e.into_error())?;
            }
            (f, _) => {
                let Target::Stack(service) = f.target() else {
                    bail!("{f} is not a stack fault");
                };
                let verb = if f.freezes() { "thaw" } else { "start" };
                self.stack.run(verb, service).await?;
            }
        }
        Ok(())
    }
}
