//! Polls pipeline health once a second, off the hot path: consumer lag, the Debezium
//! connector's state and read-model document counts, into the live state.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::pipeline::kafka::LagProbe;
use crate::pipeline::outbox;
use crate::pipeline::store::ReadModels;
use crate::provision::connector::Connect;
use crate::telemetry::health::Health;
use crate::telemetry::live::Shared;

/// How long a probe waits for its answer: a service that does not answer within a second
/// (stopped, frozen, cut off) is a problem on the dashboard one poll later, not after a
/// client's own timeout of 10 s or more.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// `f`'s answer, or "no answer within 1 s".
async fn within<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(PROBE_WAIT, f).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!(
            "no answer within {} s",
            PROBE_WAIT.as_secs()
        )),
    }
}

/// Polls until `stop` is cancelled. A service that is down shows as the health problem and is
/// asked again at the next poll.
pub async fn poll(s: Settings, live: Shared, every: Duration, stop: CancellationToken) {
    let connect = Connect::new(&s.connect);
    let lag = LagProbe::new(&s.kafka, &s.kafka.topics());
    let mut store: Option<ReadModels> = None;
    let mut pg: Option<tokio_postgres::Client> = None;
    loop {
        let mut h = Health::default();
        let mut problems = Vec::new();
        // The three probes are independent; one slow service must not hold up the others.
        let (lag_r, connector_r, counts_r, pg_r) = tokio::join!(
            async {
                match &lag {
                    // A broker that does not answer holds librdkafka's call for its whole
                    // timeout (10 s): a broker stopped for 4 s was never noticed at all.
                    Ok(p) => within(p.lag()).await,
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                }
            },
            async {
                match &connect {
                    Ok(c) => within(c.status()).await,
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                }
            },
            async {
                let counts = |st: &ReadModels| {
                    let st = st.clone();
                    async move { within(async { Ok(st.counts().await?) }).await }
                };
                if let Some(st) = &store {
                    return (None, counts(st).await);
                }
                // Not connected yet (or never reached): try again, briefly, so the other
                // figures still refresh about once a second.
                match tokio::time::timeout(PROBE_WAIT, ReadModels::connect(&s.mongo)).await {
                    Ok(Ok(st)) => {
                        let c = counts(&st).await;
                        (Some(st), c)
                    }
                    _ => (
                        None,
                        Err(anyhow::anyhow!("unreachable at {}", s.mongo.describe())),
                    ),
                }
            },
            async {
                // The outbox's database: a restart shows here even between inserts.
                if pg.as_ref().is_none_or(|c| c.is_closed()) {
                    pg = Some(within(outbox::connect(&s.pg)).await?);
                }
                match &pg {
                    Some(c) => {
                        within(async { Ok(c.simple_query("SELECT 1").await.map(|_| ())?) }).await
                    }
                    None => Ok(()),
                }
            },
        );
        match lag_r {
            Ok(l) => h.lag = Some(l),
            Err(e) => problems.push(format!("Kafka: {e}")),
        }
        match connector_r {
            Ok(Some(st)) => {
                let health = st.health();
                if !health.ok() {
                    problems.push(format!("Debezium connector {}", st.describe()));
                }
                h.connector = Some(health);
            }
            Ok(None) => problems.push("Debezium connector not registered (run setup)".into()),
            Err(e) => problems.push(format!("Connect: {e}")),
        }
        let (connected, counts) = counts_r;
        if connected.is_some() {
            store = connected;
        }
        match counts {
            Ok(c) => h.mongo_counts = c,
            Err(e) => problems.push(format!(
                "MongoDB: {}",
                crate::pipeline::diagnose::first_line(&e.to_string())
            )),
        }
        if let Err(e) = pg_r {
            problems.push(format!(
                "PostgreSQL: {}",
                crate::pipeline::diagnose::first_line(&format!("{e:#}"))
            ));
        }
        h.problem = problems.into_iter().next();
        {
            let mut l = live.lock();
            l.health = h;
            if let Some(mb) = crate::telemetry::cpu::own_rss_mb() {
                l.sample_rss(mb);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
