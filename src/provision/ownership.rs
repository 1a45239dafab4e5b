//! What pipedemo created, and so may clear. `setup` marks everything it makes: the outbox
//! table (a table comment), the read-model database (a `_pipedemo` document), the connector (a
//! setting), and the topics, consumer group and report files (rows of a `pipedemo_owned` table
//! next to the outbox, topics keyed by the Kafka cluster's id). Anything that exists without a
//! mark belongs to someone else: `setup` and `cleanup` refuse to touch it unless `--force`.

use std::fmt;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use crate::config::Settings;
use crate::pipeline::kafka;
use crate::pipeline::store::ReadModels;
use crate::provision::connector::{Connect, OWNER_KEY};

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
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
            Kind::File => "file",
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

/// Whether pipedemo may clear or take over `f`: it is absent, marked, empty of anything to
/// lose, or `force` says so.
pub fn may_take(f: &Found, force: bool) -> bool {
    !f.exists || f.ours || !f.holds_data || force
}

/// One line per thing pipedemo must not touch, naming it and the way out; empty when all
/// may be taken.
pub fn refusals(found: &[Found], force: bool, doing: &str) -> Vec<String> {
    found
        .iter()
        .filter(|f| !may_take(f, force))
        .map(|f| {
            format!(
                "{doing} refused: {f} was not created by pipedemo. Point {} elsewhere, or pass \
                 --force to let pipedemo take it over and clear it",
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
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The outbox table: whether it exists, carries the mark, and how many rows it holds.
pub async fn table(pg: &Client) -> Result<Found> {
    let row = pg
        .query_one(
            "SELECT to_regclass('event_outbox') IS NOT NULL,
                    coalesce(obj_description(to_regclass('event_outbox'), 'pg_class'), '')",
            &[],
        )
        .await
        .context("looking up table event_outbox")?;
    let (exists, comment): (bool, String) = (row.get(0), row.get(1));
    let mut f = Found::absent("table event_outbox".into(), "POSTGRES_DB");
    if exists {
        let rows: i64 = pg
            .query_one("SELECT count(*) FROM event_outbox", &[])
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
    /// The read-model database.
    pub read_models: Found,
    /// The outbox topic.
    pub topic: Found,
    /// The dead-letter topic.
    pub dlq: Found,
    /// The Debezium connector.
    pub connector: Found,
    /// The Kafka cluster's id, the scope of recorded topics and groups.
    pub cluster: String,
}

impl Survey {
    /// What `setup` clears or overwrites (the dead-letter topic is only ever appended to).
    pub fn for_setup(&self) -> Vec<Found> {
        vec![
            self.table.clone(),
            self.read_models.clone(),
            self.topic.clone(),
            self.connector.clone(),
        ]
    }

    /// What `cleanup` removes.
    pub fn for_cleanup(&self) -> Vec<Found> {
        let mut v = self.for_setup();
        v.push(self.dlq.clone());
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
    let (table, db, topic, mut dlq, config) = tokio::join!(
        table(pg),
        store.ownership(),
        topic_state(s.kafka.topic()),
        topic_state(s.kafka.dlq_topic()),
        connect.config(),
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
    if let Some(c) = config? {
        connector.exists = true;
        connector.ours = c.get(OWNER_KEY).is_some();
        connector.holds_data = true;
    }
    if let Ok(d) = &mut dlq {
        d.setting = "DLQ_TOPIC";
    }
    Ok(Survey {
        table: table?,
        read_models,
        topic: topic?,
        dlq: dlq?,
        connector,
        cluster,
    })
}

/// Marks the outbox table as pipedemo's.
pub async fn mark_table(pg: &Client) -> Result<()> {
    pg.batch_execute(&format!("COMMENT ON TABLE event_outbox IS '{TABLE_MARK}'"))
        .await
        .context("marking table event_outbox as pipedemo's")
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

/// Records report files a command wrote, so that `cleanup` removes them wherever they are.
pub async fn record_files(s: &Settings, files: &[&std::path::Path]) -> Result<()> {
    let pg = crate::pipeline::outbox::connect(&s.pg).await?;
    let host = host();
    for f in files {
        record(&pg, Kind::File, &file_name(f), &host).await?;
    }
    Ok(())
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
    fn only_what_pipedemo_made_or_what_is_empty_is_taken_unless_forced() {
        assert!(may_take(&found(false, false, false), false));
        assert!(may_take(&found(true, true, true), false));
        assert!(may_take(&found(true, false, false), false));
        assert!(!may_take(&found(true, false, true), false));
        assert!(may_take(&found(true, false, true), true));
    }

    #[test]
    fn a_refusal_names_the_thing_the_setting_and_the_flag() {
        let r = refusals(
            &[found(true, false, true), found(true, true, true)],
            false,
            "setup",
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
        assert!(refusals(&[found(true, false, true)], true, "setup").is_empty());
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
