//! Setup: checks every service, prepares the outbox table, the Debezium connector, the topics,
//! the read-model indexes and the consumer group, refusing first what pipedemo did not
//! create. Safe to run again.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::connector::{
    connector_config, describe_config, publication_name, Connect, ConnectError, Tuning,
};
use super::ownership::{self, Doing, Kind};
use crate::config::{Routing, Settings};
use crate::pipeline::kafka::{self, ResetTo};
use crate::pipeline::outbox;
use crate::pipeline::store::ReadModels;

/// Options of `setup`.
#[derive(Clone, Debug)]
pub struct SetupOptions {
    /// Keep previous demo data (outbox rows, read models, metrics file).
    pub keep: bool,
    /// Point the consumer group at the start of the topic instead of its end.
    pub from_earliest: bool,
    /// Partitions of the outbox topic when it is created.
    pub partitions: i32,
    /// Latency tuning of the connector, or Debezium's defaults.
    pub tuning: Tuning,
    /// Take over things pipedemo did not create (`--force`).
    pub force: bool,
    /// Print the connector's configuration (secrets redacted); otherwise only the settings
    /// given with `--connector-config` are printed.
    pub show_connector_config: bool,
}

impl SetupOptions {
    /// What `full`, `capacity` and the tests start from: earlier demo data removed, the group
    /// at the end of the topic, the tuned connector.
    pub fn fresh(partitions: i32, force: bool) -> Self {
        SetupOptions {
            keep: false,
            from_earliest: false,
            partitions,
            tuning: Tuning::Tuned,
            force,
            show_connector_config: false,
        }
    }
}

/// Versions found while checking, for reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Versions {
    /// PostgreSQL server version.
    pub postgres: String,
    /// Debezium PostgreSQL connector version.
    pub debezium: String,
}

fn step(ok: bool, what: &str) {
    eprintln!("  {} {what}", if ok { "✓" } else { "✗" });
}

/// Checks every service; reports all problems at once rather than the first.
pub async fn check_services(s: &Settings) -> Result<Versions> {
    let topic = s.kafka.topic();
    let (pg, kafka_ok, connect, mongo) = tokio::join!(
        async {
            let c = outbox::connect(&s.pg).await?;
            outbox::check_logical_decoding(&c).await?;
            outbox::server_version(&c).await
        },
        kafka::partitions(&s.kafka, &topic),
        async { Connect::new(&s.connect)?.check_plugin().await },
        ReadModels::connect(&s.mongo),
    );
    let failed = [
        pg.is_err(),
        kafka_ok.is_err(),
        connect.is_err(),
        mongo.is_err(),
    ]
    .iter()
    .filter(|f| **f)
    .count();
    // One failure is the error line itself; several are listed, then summed up.
    let step = |ok: bool, what: &str| {
        if ok || failed > 1 {
            step(ok, what)
        }
    };
    let mut problems = Vec::new();
    let mut v = Versions::default();
    match pg {
        Ok(ver) => {
            step(
                true,
                &format!(
                    "PostgreSQL {ver} at {} (wal_level=logical)",
                    s.pg.describe()
                ),
            );
            v.postgres = ver;
        }
        Err(e) => {
            step(false, &format!("PostgreSQL: {e}"));
            problems.push(e);
        }
    }
    match kafka_ok {
        Ok(_) => step(true, &format!("Kafka at {}", s.kafka.bootstrap_servers)),
        Err(e) => {
            step(false, &format!("Kafka: {e}"));
            problems.push(e);
        }
    }
    match connect {
        Ok(ver) => {
            step(
                true,
                &format!(
                    "Kafka Connect at {} with Debezium PostgreSQL {ver}",
                    crate::config::redact_uri(&s.connect.connect_url)
                ),
            );
            v.debezium = ver;
        }
        Err(e) => {
            step(false, &format!("Kafka Connect: {e}"));
            problems.push(e);
        }
    }
    match mongo {
        Ok(_) => step(true, &format!("MongoDB at {}", s.mongo.describe())),
        Err(e) => {
            step(false, &format!("MongoDB: {e}"));
            problems.push(e);
        }
    }
    crate::exit::combine(problems).map(|()| v)
}

/// Runs the whole setup. Checks every service, then what is already there, and refuses
/// before creating anything when it would clear what pipedemo did not create.
pub async fn run(s: &Settings, opts: &SetupOptions) -> Result<Versions> {
    let started = Instant::now();
    eprintln!("Checking services…");
    let versions = check_services(s).await?;

    let pg = outbox::connect(&s.pg).await?;
    // Held until `pg` closes: another setup or cleanup cannot act between our look and ours.
    ownership::lock(&pg).await?;
    let store = ReadModels::connect(&s.mongo).await?;
    let connect = Connect::new(&s.connect)?;
    let mut found = ownership::survey(s, &pg, &store, &connect).await?;
    let publication = publication_name(&s.connect);
    if found.slot_name != s.connect.slot || found.publication_name != publication {
        // The connector moves to another slot or publication: those are what setup takes.
        (found.slot, found.publication) =
            ownership::replication(&pg, &s.connect.slot, &publication, &found.database, false)
                .await?;
    }
    let doing = if opts.keep {
        Doing::SetupKeeping
    } else {
        Doing::Setup
    };
    let refused = ownership::refusals(&found.for_setup(), opts.force, doing);
    if !refused.is_empty() {
        return Err(crate::exit::config(refused.join("\n")));
    }
    if !opts.keep {
        let doomed = ownership::to_clear(
            &[
                found.table.clone(),
                found.sent.clone(),
                found.runs.clone(),
                found.read_models.clone(),
            ]
            .into_iter()
            .chain(found.topics.iter().map(|(_, f)| f.clone()))
            .collect::<Vec<_>>(),
        );
        if !doomed.is_empty() {
            eprintln!("  Clearing: {}", doomed.join(", "));
        }
    }

    if found.table.exists && !found.table.ours && !opts.keep {
        // Someone else's table of that name (reached only with --force): its columns may
        // differ from the outbox's, so it is replaced rather than emptied.
        pg.batch_execute("DROP TABLE event_outbox").await?;
        step(
            true,
            "table event_outbox, not pipedemo's, dropped (--force)",
        );
    }
    if found.runs.exists && !found.runs.ours && !opts.keep {
        pg.batch_execute("DROP TABLE pipedemo_runs").await?;
        step(
            true,
            "table pipedemo_runs, not pipedemo's, dropped (--force)",
        );
    }
    if found.sent.exists && !found.sent.ours && !opts.keep {
        pg.batch_execute("DROP TABLE pipedemo_sent_events").await?;
        step(
            true,
            "table pipedemo_sent_events, not pipedemo's, dropped (--force)",
        );
    }
    outbox::create_table(&pg).await?;
    ownership::mark_table(&pg).await?;
    outbox::ensure_in_publication(&pg, &publication).await?;
    ownership::ensure_registry(&pg).await?;
    step(true, "table event_outbox ready");

    if !opts.keep {
        outbox::truncate(&pg).await?;
        store.drop_all().await?;
        // The results file only when its first line shows pipedemo wrote it.
        let results = crate::telemetry::results_file::path(&s.output.metrics_file);
        let results_ours = std::fs::read_to_string(&results)
            .is_ok_and(|t| crate::telemetry::results_file::is_ours(t.lines().next().unwrap_or("")));
        let files = [
            Some(&s.output.metrics_file),
            results_ours.then_some(&results),
        ];
        for file in files.into_iter().flatten() {
            match std::fs::remove_file(file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
            }
        }
        step(
            true,
            "previous demo data removed (outbox rows, read models, metrics and results files; topic below)",
        );
    }
    store.mark().await?;
    store.ensure_indexes().await?;
    step(
        true,
        &format!("MongoDB indexes ready in `{}`", s.mongo.mongodb_database),
    );
    prepare_topics(s, opts, &pg, &found.cluster).await?;
    start_connector(s, opts, &pg).await?;
    // The connector made them if they were missing; either way they are this setup's now.
    ownership::record(&pg, Kind::Slot, &s.connect.slot, &found.database).await?;
    ownership::record(&pg, Kind::Publication, &publication, &found.database).await?;

    let topics = s.kafka.topics();
    let to = if opts.from_earliest {
        ResetTo::Earliest
    } else {
        ResetTo::End
    };
    for topic in &topics {
        kafka::reset_group(&s.kafka, topic, to).await?;
    }
    ownership::record(&pg, Kind::Group, &s.kafka.group, &found.cluster).await?;
    step(
        true,
        &format!(
            "consumer group {} set to the {} of {}",
            s.kafka.group,
            if opts.from_earliest { "start" } else { "end" },
            topics.join(", ")
        ),
    );
    eprintln!(
        "Setup complete in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(versions)
}

/// Creates the outbox topics (one, or one per aggregate type when routed) and the dead-letter
/// topic, and (unless keeping) empties the outbox topics.
async fn prepare_topics(
    s: &Settings,
    opts: &SetupOptions,
    pg: &tokio_postgres::Client,
    cluster: &str,
) -> Result<()> {
    let mut made = Vec::new();
    let mut cleared = 0;
    for topic in s.kafka.topics() {
        let parts = match s.kafka.routing {
            Routing::Raw => kafka::ensure_topic(&s.kafka, &topic, opts.partitions).await?,
            Routing::EventRouter => {
                kafka::ensure_routed_topic(&s.kafka, &topic, opts.partitions).await?
            }
        };
        ownership::record(pg, Kind::Topic, &topic, cluster).await?;
        // The outbox rows and read models are gone, so their messages go too: otherwise a
        // replay "from the start" would rebuild read models of events verify no longer knows.
        // Dead letters stay: they are the record of what could not be handled.
        if !opts.keep {
            cleared += kafka::clear_topic(&s.kafka, &topic).await?;
        }
        made.push(format!("{topic} ({parts} partition(s))"));
    }
    let dlq = s.kafka.dlq_topic();
    if kafka::partitions(&s.kafka, &dlq).await?.is_none() {
        kafka::ensure_topic(&s.kafka, &dlq, 1).await?;
        ownership::record(pg, Kind::Topic, &dlq, cluster).await?;
    }
    let results = s.kafka.results_topic();
    if kafka::partitions(&s.kafka, &results).await?.is_none() {
        kafka::ensure_compacted_topic(&s.kafka, &results, 1).await?;
        ownership::record(pg, Kind::Topic, &results, cluster).await?;
    }
    step(
        true,
        &format!(
            "topics {}{}, {dlq} and {results}{}",
            made.join(", "),
            if cleared > 0 {
                format!(", {cleared} old messages deleted")
            } else {
                String::new()
            },
            match s.kafka.routing {
                Routing::Raw => String::new(),
                Routing::EventRouter => " (Outbox Event Router: a topic per aggregate type)".into(),
            }
        ),
    );
    Ok(())
}

/// Registers or updates the connector and waits until it streams from its slot.
async fn start_connector(
    s: &Settings,
    opts: &SetupOptions,
    pg: &tokio_postgres::Client,
) -> Result<()> {
    let connect = Connect::new(&s.connect)?;
    let config = connector_config(&s.pg, &s.kafka, &s.connect, opts.tuning);
    if opts.show_connector_config || !s.connect.connector_config.is_empty() {
        let lines = if opts.show_connector_config {
            describe_config(&config)
        } else {
            s.connect
                .connector_config
                .iter()
                .map(|kv| kv.redacted())
                .collect()
        };
        eprintln!(
            "  connector {} settings{}:\n    {}",
            s.connect.connector_name,
            if opts.show_connector_config {
                ""
            } else {
                " given with --connector-config"
            },
            lines.join("\n    ")
        );
    }
    connect.upsert(&config).await?;
    let status = match connect.wait_running(Duration::from_secs(60)).await {
        Ok(st) => st,
        Err(ConnectError::OffsetsGone { .. }) => {
            // Connect remembers a WAL position from a slot that is gone (PostgreSQL re-created,
            // or the slot dropped): start again from the new slot.
            step(
                true,
                "stored connector offsets point at WAL no longer on the server; resetting them",
            );
            connect.reset_offsets().await?;
            connect.restart().await?;
            connect
                .wait_running(Duration::from_secs(60))
                .await
                .map_err(ConnectError::into_error)?
        }
        Err(ConnectError::Unreachable(e)) => return Err(e),
        Err(_) => {
            // A connector that failed before (say, PostgreSQL was down) stays FAILED until restarted.
            connect.restart().await?;
            connect
                .wait_running(Duration::from_secs(60))
                .await
                .map_err(ConnectError::into_error)?
        }
    };
    wait_slot_active(pg, &s.connect.slot).await?;
    step(
        true,
        &format!(
            "Debezium connector {} {} streaming from slot {}",
            s.connect.connector_name,
            status.describe(),
            s.connect.slot
        ),
    );
    Ok(())
}

/// Debezium's task is RUNNING a little before its replication stream is; rows inserted in
/// between are still captured (the slot exists), but waiting makes the first latencies honest.
async fn wait_slot_active(pg: &tokio_postgres::Client, slot: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let row = pg
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        if let Some(r) = row {
            if r.get::<_, bool>(0) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("replication slot {slot} is not active after 30 s: check the Kafka Connect log")
}
