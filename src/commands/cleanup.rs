//! `pipedemo cleanup`: removes what `setup` and the runs after it created, and nothing else:
//! the connector (with its replication slot and publication), the topics, the consumer group,
//! the outbox table, the read-model database, and the metrics, log and report files.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::config::Settings;
use crate::pipeline::store::ReadModels;
use crate::pipeline::{kafka, outbox};
use crate::provision::connector::Connect;
use crate::provision::ownership::{self, Found, Kind};

/// The flags of `pipedemo cleanup`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also remove an outbox table, read-model database, topic or connector that pipedemo did
    /// not create (cleanup refuses otherwise).
    #[arg(long)]
    pub force: bool,
}

/// Looks at what is there, asks, then removes what pipedemo created.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    if !a.yes && !std::io::stdin().is_terminal() {
        bail!("cleanup deletes data; pass --yes to run it without a terminal");
    }
    let pg = outbox::connect(&s.pg).await?;
    let store = ReadModels::connect(&s.mongo).await?;
    let connect = Connect::new(&s.connect)?;
    let found = ownership::survey(s, &pg, &store, &connect).await?;
    let things = found.for_cleanup();
    let refused = ownership::refusals(&things, a.force, "cleanup");
    if !refused.is_empty() {
        return Err(crate::exit::config(refused.join("\n")));
    }
    // Unmarked but empty: not refused, and not pipedemo's to remove either.
    let mine = |f: &Found| f.exists && (f.ours || a.force);
    for f in things.iter().filter(|f| f.exists && !mine(f)) {
        eprintln!("  left alone: {f}, not created by pipedemo");
    }
    let things: Vec<Found> = things.into_iter().filter(|f| mine(f)).collect();
    let files = files(s, &pg).await?;
    if things.is_empty() && files.is_empty() {
        eprintln!("Nothing to remove: pipedemo has created nothing here.");
        return Ok(ExitCode::SUCCESS);
    }
    let list: Vec<String> = things
        .iter()
        .map(|f| f.to_string())
        .chain(files.iter().map(|f| f.display().to_string()))
        .collect();
    eprintln!(
        "Removing what pipedemo created:\n  - {}",
        list.join("\n  - ")
    );
    if !a.yes && !confirm()? {
        eprintln!("cleanup cancelled; nothing deleted");
        return Ok(crate::exit::Exit::CheckFailed.into());
    }
    let has = mine;
    if has(&found.connector) {
        connect.delete().await?;
        drop_slot(&pg, &s.connect.slot).await?;
        eprintln!(
            "  ✓ connector {} removed, with slot {} and its publication",
            s.connect.connector_name, s.connect.slot
        );
    }
    let topics: Vec<String> = [
        (&found.topic, s.kafka.topic()),
        (&found.dlq, s.kafka.dlq_topic()),
    ]
    .into_iter()
    .filter(|(f, _)| has(f))
    .map(|(_, t)| t)
    .collect();
    if !topics.is_empty() {
        kafka::delete_topics(&s.kafka, &topics).await?;
        for t in &topics {
            ownership::forget(&pg, Kind::Topic, t, &found.cluster).await?;
        }
        eprintln!("  ✓ topics {} deleted", topics.join(", "));
    }
    if ownership::recorded(&pg, Kind::Group, &found.cluster)
        .await?
        .contains(&s.kafka.group)
    {
        kafka::delete_group(&s.kafka).await?;
        ownership::forget(&pg, Kind::Group, &s.kafka.group, &found.cluster).await?;
        eprintln!("  ✓ consumer group {} deleted", s.kafka.group);
    }
    if has(&found.read_models) {
        store.drop_all().await?;
        eprintln!(
            "  ✓ MongoDB database `{}` dropped",
            s.mongo.mongodb_database
        );
    }
    if has(&found.table) {
        pg.batch_execute("DROP TABLE event_outbox").await?;
        eprintln!("  ✓ table event_outbox dropped");
    }
    let host = ownership::host();
    for f in &files {
        match std::fs::remove_file(f) {
            Ok(()) => eprintln!("  ✓ removed {}", f.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot remove {}: {e}", f.display()),
        }
        ownership::forget(&pg, Kind::File, &ownership::file_name(f), &host).await?;
    }
    ownership::drop_registry_if_empty(&pg).await?;
    Ok(ExitCode::SUCCESS)
}

/// The files to remove that exist: the metrics file, `pipedemo.log` beside it, the default
/// report names, and every report file a run recorded on this machine.
async fn files(s: &Settings, pg: &tokio_postgres::Client) -> Result<Vec<PathBuf>> {
    let mut all = vec![
        s.output.metrics_file.clone(),
        s.output
            .metrics_file
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join("pipedemo.log"),
        PathBuf::from("demo_report.json"),
        PathBuf::from("demo_report.html"),
    ];
    all.extend(
        ownership::recorded(pg, Kind::File, &ownership::host())
            .await?
            .into_iter()
            .map(PathBuf::from),
    );
    let mut seen = std::collections::HashSet::new();
    Ok(all
        .into_iter()
        .filter(|f| f.is_file())
        .filter(|f| seen.insert(std::path::absolute(f).unwrap_or_else(|_| f.clone())))
        .collect())
}

/// Drops the connector's replication slot once Debezium lets go of it, and its publication.
/// A slot left behind would keep the server's WAL forever.
async fn drop_slot(pg: &tokio_postgres::Client, slot: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let row = pg
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        match row {
            None => break,
            Some(r) if !r.get::<_, bool>(0) => {
                pg.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await?;
                break;
            }
            Some(_) if started.elapsed() > Duration::from_secs(30) => bail!(
                "replication slot {slot} is still in use 30 s after the connector was removed; \
                 drop it with SELECT pg_drop_replication_slot('{slot}') once it is free"
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    pg.batch_execute(&format!(
        "DROP PUBLICATION IF EXISTS \"{}\"",
        format!("{slot}_pub").replace('"', "\"\"")
    ))
    .await?;
    Ok(())
}

/// Asks on the terminal whether to go on.
fn confirm() -> Result<bool> {
    eprint!("Remove all of it? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
