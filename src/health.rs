//! Polls pipeline health once a second, off the hot path: consumer lag, the Debezium
//! connector's state and read-model document counts, into the live state.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::connect::Connect;
use crate::kafka;
use crate::live::{Health, Shared};
use crate::store::ReadModels;

/// Polls until `stop` is cancelled.
pub async fn poll(s: Settings, live: Shared, every: Duration, stop: CancellationToken) {
    let connect = Connect::new(&s.connect).ok();
    let store = ReadModels::connect(&s.mongo).await.ok();
    let topic = s.kafka.topic();
    loop {
        let mut h = Health::default();
        let mut problems = Vec::new();
        match kafka::group_lag(&s.kafka, &topic).await {
            Ok(l) => h.lag = Some(l),
            Err(e) => problems.push(format!("Kafka: {e}")),
        }
        if let Some(c) = &connect {
            match c.status().await {
                Ok(Some(st)) => {
                    if !st.running() {
                        problems.push(format!("Debezium connector {}", st.describe()));
                    }
                    h.connector = Some(st.short());
                }
                Ok(None) => problems.push("Debezium connector not registered (run setup)".into()),
                Err(e) => problems.push(format!("Connect: {e}")),
            }
        }
        if let Some(st) = &store {
            match st.counts().await {
                Ok(c) => h.mongo_counts = c,
                Err(e) => problems.push(format!(
                    "MongoDB: {}",
                    crate::diagnose::first_line(&e.to_string())
                )),
            }
        }
        h.problem = problems.into_iter().next();
        live.lock().expect("live state lock").health = h;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
