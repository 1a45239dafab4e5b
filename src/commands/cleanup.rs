//! `pipedemo cleanup`: removes what `setup` and the runs after it created, and nothing else:
//! the connector (with its replication slot and publication), the topics, the consumer group,
//! the outbox table, the read-model database, and the metrics, log and report files.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::config::Settings;
use crate::pipeline::store::ReadModels;
use crate::pipeline::{kafka, outbox};
use crate::provision::connector::Connect;
use crate::provision::ownership::{self, Doing, Found, Kind};

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
    /// A report file outside the working directory to remove too (repeatable). Files are
    /// removed only from the working directory, or when named here, and only when the file
    /// carries the id of the pipedemo run that wrote it.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
}

/// Looks at what is there, asks, then removes what pipedemo created.
pub async fn command(s: &Settings, a: Args) -> Result<ExitCode> {
    if !a.yes && !std::io::stdin().is_terminal() {
        bail!("cleanup deletes data; pass --yes to run it without a terminal");
    }
    let pg = outbox::connect(&s.pg).await?;
    // Held until `pg` closes: another setup or cleanup cannot act between our look and ours.
    ownership::lock(&pg).await?;
    let store = ReadModels::connect(&s.mongo).await?;
    let connect = Connect::new(&s.connect)?;
    let found = ownership::survey(s, &pg, &store, &connect).await?;
    let things = found.for_cleanup();
    let refused = ownership::refusals(&things, a.force, Doing::Cleanup);
    if !refused.is_empty() {
        return Err(crate::exit::config(refused.join("\n")));
    }
    // Unmarked but empty: not refused, and not pipedemo's to remove either.
    let mine = |f: &Found| f.exists && (f.ours || a.force);
    for f in things.iter().filter(|f| f.exists && !mine(f)) {
        eprintln!("  left alone: {f}, not created by pipedemo");
    }
    let things: Vec<Found> = things.into_iter().filter(|f| mine(f)).collect();
    let files = files(s, &pg, &a.files).await?;
    if things.is_empty() && files.is_empty() {
        eprintln!("Nothing to remove: pipedemo has created nothing here.");
        return Ok(ExitCode::SUCCESS);
    }
    let list: Vec<String> = things
        .iter()
        .map(|f| f.to_string())
        .chain(files.iter().map(|(f, _)| f.display().to_string()))
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
    // The slot goes first, the connector last: a slot whose drop failed is found again by the
    // next cleanup through its connector, instead of holding the server's WAL forever.
    if has(&found.connector) {
        connect.stop().await?;
    }
    if has(&found.slot) {
        drop_slot(&pg, &found.slot_name).await?;
        ownership::forget(&pg, Kind::Slot, &found.slot_name, &found.database).await?;
        eprintln!("  ✓ replication slot {} dropped", found.slot_name);
    }
    if has(&found.publication) {
        pg.batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS \"{}\"",
            found.publication_name.replace('"', "\"\"")
        ))
        .await?;
        ownership::forget(
            &pg,
            Kind::Publication,
            &found.publication_name,
            &found.database,
        )
        .await?;
        eprintln!("  ✓ publication {} dropped", found.publication_name);
    }
    if has(&found.connector) {
        connect.delete().await?;
        eprintln!("  ✓ connector {} removed", s.connect.connector_name);
    }
    let topics: Vec<String> = found
        .topics
        .iter()
        .chain(&found.other_topics)
        .map(|(t, f)| (f, t.clone()))
        .chain([
            (&found.dlq, s.kafka.dlq_topic()),
            (&found.results, s.kafka.results_topic()),
        ])
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
    if has(&found.group) {
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
    if has(&found.sent) {
        pg.batch_execute("DROP TABLE pipedemo_sent_events").await?;
        eprintln!("  ✓ table pipedemo_sent_events dropped");
    }
    if has(&found.runs) {
        pg.batch_execute("DROP TABLE pipedemo_runs").await?;
        eprintln!("  ✓ table pipedemo_runs dropped");
    }
    let host = ownership::host();
    for (f, record) in &files {
        match std::fs::remove_file(f) {
            Ok(()) => eprintln!("  ✓ removed {}", f.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot remove {}: {e}", f.display()),
        }
        if let Some(record) = record {
            ownership::forget(&pg, Kind::File, record, &host).await?;
        }
    }
    ownership::drop_registry_if_empty(&pg).await?;
    Ok(ExitCode::SUCCESS)
}

/// The files to remove, with their registry record: the metrics file, `pipedemo.log` and
/// `pipedemo-consumers.log` beside it when they are pipedemo's (a metrics line, the log's header), and every report a
/// run recorded on this machine that is under the working directory or named with `--file`
/// and carries that run's id ([`ownership::may_remove_file`]). Anything else is left alone.
async fn files(
    s: &Settings,
    pg: &tokio_postgres::Client,
    named: &[PathBuf],
) -> Result<Vec<(PathBuf, Option<String>)>> {
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let cwd = absolute(&std::env::current_dir()?);
    let named: Vec<PathBuf> = named.iter().map(|p| absolute(p)).collect();
    let mut out: Vec<(PathBuf, Option<String>)> = Vec::new();
    let metrics = &s.output.metrics_file;
    if first_line(metrics)
        .is_some_and(|l| serde_json::from_str::<crate::telemetry::metrics::MetricEvent>(&l).is_ok())
    {
        out.push((metrics.clone(), None));
    }
    let results = crate::telemetry::results_file::path(metrics);
    if first_line(&results).is_some_and(|l| crate::telemetry::results_file::is_ours(&l)) {
        out.push((results, None));
    }
    for name in ["pipedemo.log", crate::run::children::LOG_FILE] {
        let log = metrics.parent().unwrap_or(Path::new("")).join(name);
        if first_line(&log).is_some_and(|l| l.starts_with(crate::run_id::LOG_HEADER_PREFIX)) {
            out.push((log, None));
        }
    }
    for record in ownership::recorded(pg, Kind::File, &ownership::host()).await? {
        let Some((run, path)) = ownership::parse_file_record(&record) else {
            continue;
        };
        let path = absolute(&path);
        let Ok(contents) = std::fs::read(&path) else {
            continue;
        };
        if ownership::may_remove_file(&path, run, &cwd, &named, &contents) {
            out.push((path, Some(record.clone())));
        }
    }
    let mut seen = std::collections::HashSet::new();
    Ok(out
        .into_iter()
        .filter(|(f, _)| f.is_file())
        .filter(|(f, _)| seen.insert(absolute(f)))
        .collect())
}

/// The first non-empty line of a file, if it can be read.
fn first_line(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find(|l| !l.trim().is_empty())
}

/// Drops the connector's replication slot (in this database) once Debezium lets go of it. A
/// slot left behind would keep the server's WAL forever.
async fn drop_slot(pg: &tokio_postgres::Client, slot: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let row = pg
            .query_opt(
                "SELECT active FROM pg_replication_slots
                 WHERE slot_name = $1 AND database = current_database()",
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
                "replication slot {slot} is still in use 30 s after its connector was stopped; \
                 the connector is kept so that `pipedemo cleanup` can try again (or drop the \
                 slot with SELECT pg_drop_replication_slot('{slot}') once it is free)"
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
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
