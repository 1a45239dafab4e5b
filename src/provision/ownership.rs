//! What pipedemo created, and so may clear. `setup` marks everything it makes: the outbox
//! table (a table comment), the read-model database (a `_pipedemo` document), the connector (a
//! setting), and the topics, consumer group, replication slot, publication and report files
//! (rows of a `pipedemo_owned` table next to the outbox, topics and groups keyed by the Kafka
//! cluster's id, slots and publications by the database). Anything that exists without a mark
//! belongs to someone else: `setup` refuses to touch it and `cleanup` to remove it, unless
//! `--force`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio_postgres::Client;

use crate::config::{Routing, Settings};
use crate::pipeline::consumer::OwnTopics;
use crate::pipeline::kafka;
use crate::pipeline::store::ReadModels;
use crate::provision::connector::{is_marked, publication_name, Connect};

/// The comment that marks `event_outbox` as created by pipedemo.
pub const TABLE_MARK: &str = "created by pipedemo setup";

/// The registry of topics, groups and files pipedemo created.
const REGISTRY: &str = "pipedemo_owned";

/// What the registry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Kafka topic; scope: the cluster id.
    Topic,
    /// A consumer group; scope: the cluster id.
    Group,
    /// A report file; scope: the host name.
    File,
    /// A replication slot; scope: the database.
    Slot,
    /// A publication; scope: the database.
    Publication,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
            Kind::File => "file",
            Kind::Slot => "slot",
            Kind::Publication => "publication",
        }
    }
}

/// Something setup makes and may clear, as found on the services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// What it is, for messages: "MongoDB database `activity_read`".
    pub what: String,
    /// The setting that points pipedemo at it, for the refusal's hint.
    pub setting: &'static str,
    /// It exists.
    pub exists: bool,
    /// It carries pipedemo's mark.
    pub ours: bool,
    /// It holds something that clearing it would lose (an empty topic holds nothing).
    pub holds_data: bool,
    /// How much clearing it removes, for the "about to clear" line: `(1200, "rows")`.
    pub count: Option<(i64, &'static str)>,
}

impl Found {
    /// Something that does not exist yet.
    pub fn absent(what: String, setting: &'static str) -> Self {
        Found {
            what,
            setting,
            exists: false,
            ours: false,
            holds_data: false,
            count: None,
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            Some((n, unit)) => write!(f, "{} ({n} {unit})", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// What is about to be done to the things found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doing {
    /// `setup`: takes over (records as its own) and, unless keeping, clears.
    Setup,
    /// `setup --keep`: changes nothing that is not pipedemo's, even with `--force`.
    SetupKeeping,
    /// `cleanup`: removes; what is not pipedemo's and holds nothing is left alone.
    Cleanup,
}

/// Whether pipedemo may go ahead with `f`: it is absent or marked; or `force` says so (not
/// when keeping); for cleanup, also when it holds nothing to lose (it is then left alone).
/// Setup takes over nothing unmarked without `--force`, not even an empty topic: recording it
/// as pipedemo's would let a later cleanup delete it.
pub fn may_take(f: &Found, force: bool, doing: Doing) -> bool {
    let foreign_ok = match doing {
        Doing::Setup => force,
        Doing::SetupKeeping => false,
        Doing::Cleanup => force || !f.holds_data,
    };
    !f.exists || f.ours || foreign_ok
}

/// One line per thing pipedemo must not touch, naming it and the way out; empty when all
/// may be taken.
pub fn refusals(found: &[Found], force: bool, doing: Doing) -> Vec<String> {
    let (verb, way_out) = match doing {
        Doing::Setup => (
            "setup",
            "pass --force to let pipedemo take it over and clear it",
        ),
        Doing::SetupKeeping => (
            "setup --keep",
            "run setup without --keep and with --force to let pipedemo take it over (--keep \
             changes nothing that is not pipedemo's)",
        ),
        Doing::Cleanup => ("cleanup", "pass --force to let pipedemo remove it"),
    };
    found
        .iter()
        .filter(|f| !may_take(f, force, doing))
        .map(|f| {
            format!(
                "{verb} refused: {f} was not created by pipedemo. Point {} elsewhere, or \
                 {way_out}",
                f.setting
            )
        })
        .collect()
}

/// The things that exist and will be cleared, for the line printed before clearing (an empty
/// table is not worth a mention).
pub fn to_clear(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .filter(|f| f.exists && f.holds_data && f.count.is_none_or(|(n, _)| n > 0))
        .map(|f| f.to_string())
        .collect()
}

/// This machine's name, the scope of recorded report files.
pub fn host() -> String {
    crate::run_id::machine_host()
}

/// The outbox table: whether it exists, carries the mark, and how many rows it holds.
pub async fn table(pg: &Client) -> Result<Found> {
    table_named(pg, "event_outbox").await
}

/// A table setup makes (`event_outbox`, `pipedemo_sent_events`), as found. `name` is a
/// name from code.
async fn table_named(pg: &Client, name: &'static str) -> Result<Found> {
    let row = pg
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL,
                    coalesce(obj_description(to_regclass($1), 'pg_class'), '')",
            &[&name],
        )
        .await
        .with_context(|| format!("looking up table {name}"))?;
    let (exists, comment): (bool, String) = (row.get(0), row.get(1));
    let mut f = Found::absent(format!("table {name}"), "POSTGRES_DB");
    if exists {
        let rows: i64 = pg
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])
            .await?
            .get(0);
        f.exists = true;
        f.ours = comment == TABLE_MARK;
        // A table of the same name is someone's even when empty: its columns may differ.
        f.holds_data = true;
        f.count = Some((rows, "rows"));
    }
    Ok(f)
}

/// Everything setup makes, as found now.
#[derive(Clone, Debug)]
pub struct Survey {
    /// `event_outbox`.
    pub table: Found,
    /// `pipedemo_sent_events`, the record of events whose rows were deleted in their own
    /// transaction (`--outbox-delete`).
    pub sent: Found,
    /// `pipedemo_runs`, where the generators of a run meet (`load --generators N`).
    pub runs: Found,
    /// The read-model database.
    pub read_models: Found,
    /// The outbox topics of this routing (one, or one per aggregate type), with their names.
    pub topics: Vec<(String, Found)>,
    /// The other routing's outbox topics that pipedemo recorded as its own and that still
    /// exist: `cleanup` removes them too, whichever `--routing` it is given.
    pub other_topics: Vec<(String, Found)>,
    /// The dead-letter topic.
    pub dlq: Found,
    /// The results topic, where each process of a run publishes its figures.
    pub results: Found,
    /// The Debezium connector.
    pub connector: Found,
    /// The consumer group.
    pub group: Found,
    /// The connector's replication slot (its `slot.name`, else `REPLICATION_SLOT`).
    pub slot: Found,
    /// The connector's publication (its `publication.name`, else pipedemo's default).
    pub publication: Found,
    /// The slot's and publication's names.
    pub slot_name: String,
    /// See [`Self::slot_name`].
    pub publication_name: String,
    /// The Kafka cluster's id, the scope of recorded topics and groups.
    pub cluster: String,
    /// The PostgreSQL database, the scope of recorded slots and publications.
    pub database: String,
}

impl Survey {
    /// What `setup` clears, overwrites or takes over (the dead-letter topic is only ever
    /// appended to).
    pub fn for_setup(&self) -> Vec<Found> {
        vec![
            self.table.clone(),
            self.sent.clone(),
            self.runs.clone(),
            self.read_models.clone(),
        ]
        .into_iter()
        .chain(self.topics.iter().map(|(_, f)| f.clone()))
        .chain([
            self.connector.clone(),
            self.group.clone(),
            self.slot.clone(),
            self.publication.clone(),
        ])
        .collect()
    }

    /// What `cleanup` removes.
    pub fn for_cleanup(&self) -> Vec<Found> {
        let mut v = self.for_setup();
        v.extend(self.other_topics.iter().map(|(_, f)| f.clone()));
        v.push(self.dlq.clone());
        v.push(self.results.clone());
        v
    }
}

/// Looks at each thing setup makes. Creates nothing.
pub async fn survey(
    s: &Settings,
    pg: &Client,
    store: &ReadModels,
    connect: &Connect,
) -> Result<Survey> {
    let cluster = kafka::cluster_id(&s.kafka).await?;
    let topics = recorded(pg, Kind::Topic, &cluster).await?;
    let topic_state = |name: String| {
        let ours = topics.contains(&name);
        async move {
            let marks = kafka::watermarks(&s.kafka, &name).await?;
            let mut f = Found::absent(format!("Kafka topic {name}"), "KAFKA_TOPIC");
            if !marks.is_empty() {
                let held: i64 = marks.iter().map(|w| w.high - w.low).sum();
                f.exists = true;
                f.ours = ours;
                f.holds_data = held > 0;
                f.count = Some((held, "messages"));
            }
            anyhow::Ok(f)
        }
    };
    let mine = s.kafka.topics();
    let mut other_routing = s.kafka.clone();
    other_routing.routing = match s.kafka.routing {
        Routing::Raw => Routing::EventRouter,
        Routing::EventRouter => Routing::Raw,
    };
    // `--topic` is refused with the router; the other routing's names are the defaults then.
    other_routing.topic = None;
    let others: Vec<String> = other_routing
        .topics()
        .into_iter()
        .filter(|t| topics.contains(t) && !mine.contains(t))
        .collect();
    let all_topics = async {
        let mut found = Vec::new();
        for name in mine.iter().chain(&others) {
            found.push((name.clone(), topic_state(name.clone()).await?));
        }
        anyhow::Ok(found)
    };
    let (table, sent, runs, db, all_topics, mut dlq, results, config, group) = tokio::join!(
        table(pg),
        table_named(pg, "pipedemo_sent_events"),
        table_named(pg, crate::pipeline::outbox::RUNS_TABLE),
        store.ownership(),
        all_topics,
        topic_state(s.kafka.dlq_topic()),
        topic_state(s.kafka.results_topic()),
        connect.config(),
        kafka::group_state(&s.kafka, &s.kafka.group),
    );
    let mut read_models = Found::absent(
        format!("MongoDB database `{}`", s.mongo.mongodb_database),
        "MONGODB_DATABASE",
    );
    let (exists, ours) = db?;
    if exists {
        read_models.exists = true;
        read_models.ours = ours;
        read_models.holds_data = true;
    }
    let mut connector = Found::absent(
        format!("Kafka Connect connector {}", s.connect.connector_name),
        "CONNECTOR_NAME",
    );
    let config = config?;
    if let Some(c) = &config {
        connector.exists = true;
        connector.ours = is_marked(c);
        connector.holds_data = true;
    }
    if let Ok(d) = &mut dlq {
        d.setting = "DLQ_TOPIC";
    }
    let groups = recorded(pg, Kind::Group, &cluster).await?;
    let mut g = Found::absent(
        format!("Kafka consumer group {}", s.kafka.group),
        "CONSUMER_GROUP",
    );
    if let Some(state) = group? {
        g.exists = true;
        g.ours = groups.contains(&s.kafka.group);
        // Committed offsets (on any topic) are someone's position: clearing loses it.
        g.holds_data = true;
        g.count = (state.members > 0).then_some((state.members as i64, "members running"));
    }
    // The slot and publication the connector really uses: a changed REPLICATION_SLOT must
    // not point cleanup at another application's slot.
    let setting = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let slot_name = setting("slot.name").unwrap_or_else(|| s.connect.slot.clone());
    let publication_name =
        setting("publication.name").unwrap_or_else(|| publication_name(&s.connect));
    let database: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let (slot, publication) = replication(
        pg,
        &slot_name,
        &publication_name,
        &database,
        connector.exists && connector.ours,
    )
    .await?;
    let mut topics = all_topics?;
    let other_topics = topics
        .split_off(mine.len())
        .into_iter()
        .filter(|(_, f)| f.exists)
        .collect();
    Ok(Survey {
        table: table?,
        sent: sent?,
        runs: runs?,
        read_models,
        topics,
        other_topics,
        dlq: dlq?,
        results: results?,
        connector,
        group: g,
        slot,
        publication,
        slot_name,
        publication_name,
        cluster,
        database,
    })
}

/// The replication slot and publication as found in `database`. Either is pipedemo's when
/// recorded by a setup, or (made before such records were kept) when pipedemo's own connector
/// names it and, for the slot, it belongs to this database, for the publication, pipedemo's
/// user owns it. A slot of that name in another database is not this setup's at all.
pub async fn replication(
    pg: &Client,
    slot: &str,
    publication: &str,
    database: &str,
    connector_ours: bool,
) -> Result<(Found, Found)> {
    let row = pg
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots
                            WHERE slot_name = $1 AND database = current_database()),
                    EXISTS (SELECT 1 FROM pg_replication_slots
                            WHERE slot_name = $1 AND database IS DISTINCT FROM current_database()),
                    EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2),
                    EXISTS (SELECT 1 FROM pg_publication
                            WHERE pubname = $2 AND pg_get_userbyid(pubowner) = current_user)",
            &[&slot, &publication],
        )
        .await
        .context("looking up the replication slot and publication")?;
    let (slot_here, slot_elsewhere, pub_exists, pub_owned): (bool, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let slots = recorded(pg, Kind::Slot, database).await?;
    let pubs = recorded(pg, Kind::Publication, database).await?;
    let mut s = Found::absent(format!("replication slot {slot}"), "REPLICATION_SLOT");
    if slot_here || slot_elsewhere {
        s.exists = true;
        s.ours = slot_here && (slots.iter().any(|n| n == slot) || connector_ours);
        // Not pipedemo's: setup refuses to stream from it; cleanup leaves it alone rather
        // than refusing everything else (`--force` would then drop it).
        s.holds_data = false;
        if slot_elsewhere {
            s.what = format!("replication slot {slot} (of another database)");
        }
    }
    let mut p = Found::absent(
        format!("publication {publication}"),
        "--connector-config publication.name",
    );
    if pub_exists {
        p.exists = true;
        p.ours = pubs.iter().any(|n| n == publication) || (connector_ours && pub_owned);
        p.holds_data = false;
    }
    Ok((s, p))
}

/// The advisory lock that `setup` and `cleanup` hold on the outbox's database while they look
/// and act, so that two of them never interleave their checks and their changes.
const LOCK_KEY: i64 = 0x7069_7065_6465_6d6f; // "pipedemo"

/// Takes the lock for as long as `pg`'s session lasts, waiting up to 60 s for another
/// `setup` or `cleanup` to finish.
pub async fn lock(pg: &Client) -> Result<()> {
    for _ in 0..240 {
        let got: bool = pg
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .context("taking pipedemo's advisory lock")?
            .get(0);
        if got {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Err(crate::exit::service(
        "another pipedemo setup or cleanup has held this database's lock for 60 s; wait for it \
         to finish and run again",
    ))
}

/// Marks the outbox table and the record of sent events as pipedemo's.
pub async fn mark_table(pg: &Client) -> Result<()> {
    pg.batch_execute(&format!(
        "COMMENT ON TABLE event_outbox IS '{TABLE_MARK}'; \
         COMMENT ON TABLE pipedemo_sent_events IS '{TABLE_MARK}'; \
         COMMENT ON TABLE pipedemo_runs IS '{TABLE_MARK}'"
    ))
    .await
    .context("marking tables event_outbox, pipedemo_sent_events and pipedemo_runs as pipedemo's")
}

/// Creates the registry (once the refusals are settled, so that a refused setup creates
/// nothing).
pub async fn ensure_registry(pg: &Client) -> Result<()> {
    // Every record comes here first; the DDL (and its lock) only once.
    if registry_exists(pg).await? {
        return Ok(());
    }
    pg.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {REGISTRY} (
             kind text NOT NULL, name text NOT NULL, scope text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (kind, name, scope));
         COMMENT ON TABLE {REGISTRY} IS 'what pipedemo setup created; cleanup removes it'"
    ))
    .await
    .context("creating table pipedemo_owned")
}

/// Records `name` as created by pipedemo.
pub async fn record(pg: &Client, kind: Kind, name: &str, scope: &str) -> Result<()> {
    ensure_registry(pg).await?;
    pg.execute(
        &format!(
            "INSERT INTO {REGISTRY} (kind, name, scope) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        ),
        &[&kind.as_str(), &name, &scope],
    )
    .await
    .with_context(|| format!("recording {} {name} as pipedemo's", kind.as_str()))?;
    Ok(())
}

async fn registry_exists(pg: &Client) -> Result<bool> {
    Ok(pg
        .query_one(
            &format!("SELECT to_regclass('{REGISTRY}') IS NOT NULL"),
            &[],
        )
        .await?
        .get(0))
}

/// How a report file is recorded: its absolute path.
pub fn file_name(f: &std::path::Path) -> String {
    std::path::absolute(f)
        .unwrap_or_else(|_| f.to_path_buf())
        .display()
        .to_string()
}

/// The names of `kind` recorded in `scope` (none when there is no registry).
pub async fn recorded(pg: &Client, kind: Kind, scope: &str) -> Result<Vec<String>> {
    if !registry_exists(pg).await? {
        return Ok(Vec::new());
    }
    let rows = pg
        .query(
            &format!("SELECT name FROM {REGISTRY} WHERE kind = $1 AND scope = $2 ORDER BY name"),
            &[&kind.as_str(), &scope],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The topics setup recorded as pipedemo's in the cluster `s.kafka` reaches: the consumer
/// reads nothing else.
pub async fn own_topics(s: &Settings) -> Result<OwnTopics> {
    let pg = crate::pipeline::outbox::connect(&s.pg).await?;
    let cluster = kafka::cluster_id(&s.kafka).await?;
    Ok(OwnTopics::new(recorded(&pg, Kind::Topic, &cluster).await?))
}

/// Refuses to go on when the consumer group exists and setup did not record it as
/// pipedemo's: rewinding it (`replay`) would move somebody else's position. Setup's rule,
/// without a way to force it: point `--group` at a group of pipedemo's.
pub async fn require_own_group(s: &Settings, doing: &str) -> Result<()> {
    let Some(state) = kafka::group_state(&s.kafka, &s.kafka.group).await? else {
        return Ok(());
    };
    let pg = crate::pipeline::outbox::connect(&s.pg).await?;
    let cluster = kafka::cluster_id(&s.kafka).await?;
    if recorded(&pg, Kind::Group, &cluster)
        .await?
        .contains(&s.kafka.group)
    {
        return Ok(());
    }
    Err(crate::exit::config(format!(
        "{doing} refused: Kafka consumer group {} ({}, {} member(s)) was not created by \
         pipedemo, and {doing} would move its committed offsets. Point --group \
         (CONSUMER_GROUP) at a group of pipedemo's, e.g. the one `pipedemo setup` made",
        s.kafka.group, state.state, state.members
    )))
}

/// Records report files a command wrote (each carries this run's id), so that `cleanup` can
/// find them.
pub async fn record_files(s: &Settings, files: &[&std::path::Path]) -> Result<()> {
    let pg = crate::pipeline::outbox::connect(&s.pg).await?;
    let host = host();
    for f in files {
        record(&pg, Kind::File, &file_record(f), &host).await?;
    }
    Ok(())
}

/// How a written file is recorded: the run that wrote it, a space, its absolute path.
pub fn file_record(f: &Path) -> String {
    format!("{} {}", crate::run_id::run_id(), file_name(f))
}

/// A file record's run id and path; `None` for a record without a run id (written before
/// files carried one: such a file cannot prove it is pipedemo's, and is left alone).
pub fn parse_file_record(record: &str) -> Option<(&str, PathBuf)> {
    let (run, path) = record.split_once(' ')?;
    (uuid::Uuid::parse_str(run).is_ok() && Path::new(path).is_absolute())
        .then(|| (run, PathBuf::from(path)))
}

/// Whether `cleanup` may delete the recorded file at `path`, written by run `run`: only a
/// file under the working directory `cwd` or named on cleanup's command line (`named`), and
/// only when its `contents` carry that run's id. A database row alone proves nothing: anyone
/// who can write the registry could otherwise point cleanup at any file, and a checkout next
/// door has report files of the same names.
pub fn may_remove_file(
    path: &Path,
    run: &str,
    cwd: &Path,
    named: &[PathBuf],
    contents: &[u8],
) -> bool {
    let allowed = path.starts_with(cwd) || named.iter().any(|n| n == path);
    allowed && !run.is_empty() && contents.windows(run.len()).any(|w| w == run.as_bytes())
}

/// Forgets `name` (it was removed).
pub async fn forget(pg: &Client, kind: Kind, name: &str, scope: &str) -> Result<()> {
    if registry_exists(pg).await? {
        pg.execute(
            &format!("DELETE FROM {REGISTRY} WHERE kind = $1 AND name = $2 AND scope = $3"),
            &[&kind.as_str(), &name, &scope],
        )
        .await?;
    }
    Ok(())
}

/// Drops the registry once it records nothing more (other topic prefixes or groups set up in
/// the same database keep it).
pub async fn drop_registry_if_empty(pg: &Client) -> Result<()> {
    pg.batch_execute(&format!(
        "DO $$ BEGIN
           IF to_regclass('{REGISTRY}') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {REGISTRY}) THEN
             DROP TABLE {REGISTRY};
           END IF;
         END $$"
    ))
    .await
    .context("dropping table pipedemo_owned")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(exists: bool, ours: bool, holds_data: bool) -> Found {
        Found {
            what: "MongoDB database `app`".into(),
            setting: "MONGODB_DATABASE",
            exists,
            ours,
            holds_data,
            count: Some((3, "collections")),
        }
    }

    #[test]
    fn setup_takes_nothing_unmarked_without_force_and_nothing_at_all_when_keeping() {
        use Doing::*;
        assert!(may_take(&found(false, false, false), false, Setup));
        assert!(may_take(&found(true, true, true), false, Setup));
        // An empty topic someone else made is still theirs.
        assert!(!may_take(&found(true, false, false), false, Setup));
        assert!(!may_take(&found(true, false, true), false, Setup));
        assert!(may_take(&found(true, false, true), true, Setup));
        assert!(!may_take(&found(true, false, true), true, SetupKeeping));
        assert!(may_take(&found(true, true, true), true, SetupKeeping));
    }

    #[test]
    fn cleanup_refuses_foreign_data_and_leaves_empty_foreign_things_alone() {
        use Doing::*;
        assert!(may_take(&found(true, false, false), false, Cleanup));
        assert!(!may_take(&found(true, false, true), false, Cleanup));
        assert!(may_take(&found(true, false, true), true, Cleanup));
    }

    #[test]
    fn a_refusal_names_the_thing_the_setting_and_the_flag() {
        let r = refusals(
            &[found(true, false, true), found(true, true, true)],
            false,
            Doing::Setup,
        );
        assert_eq!(r.len(), 1);
        assert!(
            r[0].starts_with(
                "setup refused: MongoDB database `app` (3 collections) was not created by pipedemo"
            ),
            "{}",
            r[0]
        );
        assert!(
            r[0].contains("MONGODB_DATABASE") && r[0].contains("--force"),
            "{}",
            r[0]
        );
        assert!(refusals(&[found(true, false, true)], true, Doing::Setup).is_empty());
        let keep = refusals(&[found(true, false, true)], true, Doing::SetupKeeping);
        assert!(
            keep[0].starts_with("setup --keep refused") && keep[0].contains("without --keep"),
            "{keep:?}"
        );
    }

    #[test]
    fn a_file_is_removed_only_where_allowed_and_when_it_carries_its_run_id() {
        let run = "0b0e4b5c-3b1c-4f6e-9a55-0c8e2c1d9f00";
        let cwd = Path::new("/home/u/demo");
        let report = Path::new("/home/u/demo/demo_report.json");
        let ours = format!("{{\"run_id\": \"{run}\", \"passed\": true}}");
        assert!(may_remove_file(report, run, cwd, &[], ours.as_bytes()));
        // Someone else's file of that name, or one a registry row points at.
        assert!(!may_remove_file(
            report,
            run,
            cwd,
            &[],
            b"{\"passed\": true}"
        ));
        let etc = Path::new("/etc/passwd");
        assert!(!may_remove_file(etc, run, cwd, &[], ours.as_bytes()));
        // Another checkout's report, unless named on the command line.
        let next_door = Path::new("/home/u/other/demo_report.json");
        assert!(!may_remove_file(next_door, run, cwd, &[], ours.as_bytes()));
        assert!(may_remove_file(
            next_door,
            run,
            cwd,
            &[next_door.to_path_buf()],
            ours.as_bytes()
        ));
        assert!(!may_remove_file(report, "", cwd, &[], ours.as_bytes()));
    }

    #[test]
    fn file_records_carry_the_run_and_old_ones_are_not_trusted() {
        let rec = file_record(Path::new("/tmp/r.json"));
        let (run, path) = parse_file_record(&rec).unwrap();
        assert_eq!(run, crate::run_id::run_id());
        assert_eq!(path, PathBuf::from("/tmp/r.json"));
        assert_eq!(parse_file_record("/tmp/r.json"), None);
        assert_eq!(parse_file_record("not-a-uuid /tmp/r.json"), None);
    }

    #[test]
    fn only_existing_things_with_data_are_listed_for_clearing() {
        let list = to_clear(&[
            found(true, true, true),
            found(false, false, false),
            found(true, true, false),
        ]);
        assert_eq!(list, ["MongoDB database `app` (3 collections)"]);
    }
}
