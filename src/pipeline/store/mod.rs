//! The MongoDB read models: `users`, `activities` and `statistics`, written idempotently.
//!
//! Idempotency, so that replaying the topic changes nothing:
//! - users and activities are inserted with `_id` = aggregate id; a duplicate-key error from the
//!   same `source_event_id` means "already applied", from another event it is a conflict;
//! - a join is a conditional update that only matches while the activity's participant list has
//!   no entry with that `source_event_id`, so `$push`, `$inc` and `$addToSet` run at most once;
//! - statistics move only when a write was applied; per-activity counts use `$max`, and the
//!   global totals are recomputed from the collections when a consumer starts, which repairs a
//!   crash between a write and its statistics update.
//!
//! Only features real MongoDB has are used (users of docker-compose run MongoDB 8).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use crate::config::MongoArgs;
use crate::event::EventType;
use crate::pipeline::diagnose::first_line;
use crate::pipeline::handlers::WriteOp;
use crate::read_model::Collection as ReadModel;
use crate::telemetry::clock::now_us;

mod joins;

/// Duplicate key, the server's error code for an existing `_id`.
const DUPLICATE_KEY: i32 = 11000;

/// The read-model database.
#[derive(Clone)]
pub struct ReadModels {
    db: Database,
    users: Collection<Document>,
    activities: Collection<Document>,
    statistics: Collection<Document>,
}

/// What became of one write.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Written now.
    Applied,
    /// Found already written by the same event (a replay or a redelivery).
    AlreadyApplied,
    /// A join whose activity does not exist (yet).
    ActivityMissing,
    /// Rejected by the server for this document; retrying will not help.
    Rejected(String),
}

/// One write's outcome and when the server acknowledged it (T5, µs).
#[derive(Clone, Debug)]
pub struct WriteResult {
    /// What happened.
    pub outcome: Outcome,
    /// Acknowledgement time.
    pub acked_us: i64,
    /// For activity writes and joins: the activity's participant count after the write.
    pub participant_count: Option<i64>,
}

fn result(outcome: Outcome, acked_us: i64, participant_count: Option<i64>) -> WriteResult {
    WriteResult {
        outcome,
        acked_us,
        participant_count,
    }
}

pub use crate::read_model::OWNER_COLLECTION;

/// A failure of the server or the connection, as opposed to a rejected document: the same
/// writes can be retried as they are, since they are idempotent.
#[derive(Debug, thiserror::Error)]
#[error("MongoDB write failed: {0}")]
pub struct TransientError(#[from] pub mongodb::error::Error);

impl ReadModels {
    /// Connects and checks the server answers, with an error that says how to fix it.
    pub async fn connect(args: &MongoArgs) -> Result<Self> {
        let uri = args.mongodb_uri.expose();
        let mut opts = ClientOptions::parse(uri).await.map_err(|e| {
            anyhow::anyhow!(
                "MONGODB_URI `{}` is not a valid MongoDB connection string: {}. Expected e.g. mongodb://127.0.0.1:27017",
                args.describe(),
                first_line(&e.to_string())
            )
        })?;
        opts.app_name = Some("pipedemo".into());
        opts.server_selection_timeout = Some(Duration::from_secs(5));
        opts.connect_timeout = Some(Duration::from_secs(5));
        opts.max_pool_size = Some(64);
        let client = Client::with_options(opts)?;
        let db = client.database(&args.mongodb_database);
        // Listing collections needs an authenticated user where `ping` may not.
        db.list_collection_names().await.map_err(|e| {
            let msg = match &*e.kind {
                ErrorKind::Authentication { message, .. } => message.clone(),
                _ => first_line(&e.to_string()).to_owned(),
            };
            if matches!(*e.kind, ErrorKind::Authentication { .. })
                || msg.contains("requires authentication")
                || msg.contains("Unauthorized")
            {
                return crate::exit::config(format!(
                    "MongoDB at {} refused pipedemo's credentials ({msg}): put the right user and \
                     password in MONGODB_URI (mongodb://user:password@host/?authSource=admin)",
                    args.describe()
                ));
            }
            if msg.contains("invalid peer certificate") || msg.contains("UnknownIssuer") {
                return crate::exit::config(format!(
                    "MongoDB's certificate at {} is not trusted ({msg}): add tlsCAFile=/path/ca.pem \
                     to MONGODB_URI",
                    args.describe()
                ));
            }
            crate::exit::service(format!(
                "MongoDB at {} is unreachable or refused the connection ({}). Start the stack \
                 (scripts/stack.sh up, or docker compose up -d --wait) or set MONGODB_URI.",
                args.describe(),
                first_line(&e.to_string())
            ))
        })?;
        Ok(Self::new(db))
    }

    fn new(db: Database) -> Self {
        ReadModels {
            users: db.collection(ReadModel::Users.name()),
            activities: db.collection(ReadModel::Activities.name()),
            statistics: db.collection(ReadModel::Statistics.name()),
            db,
        }
    }

    /// The database, for verification queries.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Creates the indexes the consumer and `verify` rely on. Safe to repeat.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let unique = IndexOptions::builder().unique(true).build();
        self.users
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "metadata.source_event_id": 1 })
                    .options(unique.clone())
                    .build(),
            )
            .await
            .context("creating index users.metadata.source_event_id")?;
        self.activities
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "metadata.source_event_id": 1 })
                    .options(unique)
                    .build(),
            )
            .await
            .context("creating index activities.metadata.source_event_id")?;
        // No index on participants.list.source_event_id: joins find their activity by _id, and
        // a multikey index would be updated on every join.
        for key in ["creator_id"] {
            self.activities
                .create_index(IndexModel::builder().keys(doc! { key: 1 }).build())
                .await
                .with_context(|| format!("creating index activities.{key}"))?;
        }
        Ok(())
    }

    /// Drops the whole read-model database.
    /// Whether the database exists (holds any collection), and whether pipedemo's setup
    /// created it (it holds pipedemo's marker).
    pub async fn ownership(&self) -> Result<(bool, bool)> {
        let names = self.db.list_collection_names().await?;
        if names.is_empty() {
            return Ok((false, false));
        }
        let marked = names.iter().any(|n| n == OWNER_COLLECTION)
            && self
                .db
                .collection::<Document>(OWNER_COLLECTION)
                .find_one(doc! { "_id": "owner", "created_by": "pipedemo" })
                .await?
                .is_some();
        Ok((true, marked))
    }

    /// Marks the database as pipedemo's, so that later setups and cleanups may clear it.
    pub async fn mark(&self) -> Result<()> {
        self.db
            .collection::<Document>(OWNER_COLLECTION)
            .update_one(
                doc! { "_id": "owner" },
                doc! { "$set": { "created_by": "pipedemo" },
                "$setOnInsert": { "created_at": DateTime::now() } },
            )
            .upsert(true)
            .await
            .context("marking the read-model database as pipedemo's")?;
        Ok(())
    }

    /// Marks the database as pipedemo's when it does not exist yet (pipedemo is about to
    /// create it); an existing one is left as it is, marked or not.
    pub async fn mark_if_new(&self) -> Result<()> {
        if self.db.list_collection_names().await?.is_empty() {
            self.mark().await?;
        }
        Ok(())
    }

    /// Drops the whole read-model database, marker included.
    pub async fn drop_all(&self) -> Result<()> {
        self.db
            .drop()
            .await
            .context("dropping the read-model database")
    }

    /// Performs a batch of writes. Creates go first (so joins in the same batch find their
    /// activity); writes to one activity keep their order; everything else runs concurrently.
    /// Returns one result per input write, in input order.
    ///
    /// A batch is usually two round trips: the inserts together with the read of the joined
    /// activities, then one `update` for all joins. The read waits for the inserts only when a
    /// join targets an activity created in the same batch.
    pub async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, TransientError> {
        let mut results: Vec<Option<WriteResult>> = vec![None; ops.len()];
        let mut users = Vec::new();
        let mut activities = Vec::new();
        let mut by_activity: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                WriteOp::InsertUser(d) => users.push((i, d)),
                WriteOp::InsertActivity(d) => activities.push((i, d)),
                WriteOp::Join { activity_id, .. } => {
                    by_activity.entry(activity_id).or_default().push(i)
                }
            }
        }
        let created_here = activities.iter().any(|(_, d)| {
            d.get_str("_id")
                .is_ok_and(|id| by_activity.contains_key(id))
        });
        let inserts = async {
            let (u, a) = tokio::join!(
                insert_idempotent(&self.users, &users),
                insert_idempotent(&self.activities, &activities)
            );
            Ok::<_, TransientError>(u?.into_iter().chain(a?))
        };
        // The read may run beside the inserts unless it has to see one of them.
        let (inserted, existing) = if !by_activity.is_empty() && !created_here {
            let (inserted, existing) = tokio::join!(inserts, self.read_joined(&by_activity));
            (inserted?, Some(existing?))
        } else {
            let inserted = inserts.await?;
            let existing = match by_activity.is_empty() {
                true => None,
                false => Some(self.read_joined(&by_activity).await?),
            };
            (inserted, existing)
        };
        for (i, r) in inserted {
            results[i] = Some(r);
        }
        if let Some(existing) = existing {
            for (i, r) in self.apply_joins(ops, by_activity, existing).await? {
                results[i] = Some(r);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every write has a result"))
            .collect())
    }

    /// The participant state of the activities a batch joins, in one read.
    async fn read_joined(
        &self,
        by_activity: &BTreeMap<&str, Vec<usize>>,
    ) -> Result<HashMap<String, joins::Existing>, TransientError> {
        let ids: Vec<&str> = by_activity.keys().copied().collect();
        let mut existing = HashMap::new();
        let mut cur = self
            .activities
            .find(doc! { "_id": { "$in": &ids } })
            .projection(doc! { "participants.count": 1, "participants.list.source_event_id": 1 })
            .await?;
        while let Some(d) = cur.try_next().await? {
            let (id, state) = joins::Existing::of(&d);
            existing.insert(id, state);
        }
        Ok(existing)
    }

    /// All joins of a batch in one `update` command with a statement per activity
    /// ([`joins::plan`]), planned from `existing` ([`Self::read_joined`]). Each statement
    /// matches only while none of its events is in the list, so it runs at most once.
    async fn apply_joins(
        &self,
        ops: &[WriteOp],
        by_activity: BTreeMap<&str, Vec<usize>>,
        existing: HashMap<String, joins::Existing>,
    ) -> Result<Vec<(usize, WriteResult)>, TransientError> {
        let read_us = now_us();
        let plan = joins::plan(ops, by_activity, existing);
        let mut out: Vec<(usize, WriteResult)> = plan
            .settled
            .iter()
            .map(|(i, outcome, count)| (*i, result(outcome.clone(), read_us, *count)))
            .collect();
        if plan.statements.is_empty() {
            return Ok(out);
        }
        let reply = self
            .db
            .run_command(
                doc! { "update": self.activities.name(), "updates": &plan.statements, "ordered": false },
            )
            .await?;
        let acked_us = now_us();
        match joins::interpret(&reply, &plan) {
            joins::Reply::Settled(settled) => out.extend(
                settled
                    .into_iter()
                    .map(|(i, outcome, count)| (i, result(outcome, acked_us, Some(count)))),
            ),
            joins::Reply::Contended => {
                // Only another writer of the same activity between our read and our update can
                // get here (partitioning by aggregate makes that one consumer): settle each join
                // alone, which the guard keeps exact.
                for i in plan.statement_joins() {
                    out.push((i, self.join(&ops[i]).await?));
                }
            }
        }
        Ok(out)
    }

    async fn join(&self, op: &WriteOp) -> Result<WriteResult, TransientError> {
        let WriteOp::Join {
            activity_id,
            user_id,
            entry,
        } = op
        else {
            unreachable!("join() is called for joins only")
        };
        let event_id = entry.get_str("source_event_id").unwrap_or_default();
        let updated = self
            .activities
            .find_one_and_update(
                doc! { "_id": activity_id, "participants.list.source_event_id": { "$ne": event_id } },
                doc! {
                    "$push": { "participants.list": entry },
                    "$inc": { "participants.count": 1_i64 },
                    "$addToSet": { "allowed_users": user_id },
                    "$set": { "metadata.updated_at": entry.get("joined_at").cloned().unwrap_or(Bson::Null) },
                },
            )
            .return_document(ReturnDocument::After)
            .projection(doc! { "participants.count": 1 })
            .await;
        let acked_us = now_us();
        let updated = match updated {
            Ok(u) => u,
            Err(e) if is_document_error(&e) => {
                return Ok(result(
                    Outcome::Rejected(first_line(&e.to_string()).to_owned()),
                    acked_us,
                    None,
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let count = |d: &Document| {
            d.get_document("participants")
                .ok()
                .and_then(|p| p.get_i64("count").ok())
        };
        Ok(match updated {
            Some(d) => result(Outcome::Applied, acked_us, count(&d)),
            None => match self
                .activities
                .find_one(doc! { "_id": activity_id })
                .projection(doc! { "participants.count": 1 })
                .await?
            {
                Some(d) => result(Outcome::AlreadyApplied, acked_us, count(&d)),
                None => result(Outcome::ActivityMissing, acked_us, None),
            },
        })
    }

    /// Moves the statistics for a batch: global totals per event type by what was applied,
    /// and each touched activity's participant count (`$max`, so replays and reordering
    /// cannot lower or double it), in one round trip (the two writes run concurrently).
    pub async fn record_statistics(
        &self,
        applied_per_type: &BTreeMap<EventType, i64>,
        activity_counts: &BTreeMap<String, i64>,
    ) -> Result<(), TransientError> {
        let now = DateTime::now();
        let global = async {
            if applied_per_type.values().all(|n| *n == 0) {
                return Ok(());
            }
            let mut inc = Document::new();
            for (t, n) in applied_per_type {
                inc.insert(statistics_key(*t), *n);
            }
            self.statistics
                .update_one(
                    doc! { "_id": "global" },
                    doc! { "$inc": inc, "$set": { "updated_at": now } },
                )
                .upsert(true)
                .await
                .map(drop)
        };
        let per_activity = async {
            if activity_counts.is_empty() {
                return Ok(());
            }
            let statements: Vec<Document> = activity_counts
                .iter()
                .map(|(id, n)| {
                    doc! {
                        "q": { "_id": format!("activity:{id}") },
                        "u": { "$max": { "participant_count": n }, "$setOnInsert": { "activity_id": id } },
                        "upsert": true,
                    }
                })
                .collect();
            self.db
                .run_command(
                    doc! { "update": self.statistics.name(), "updates": statements, "ordered": false },
                )
                .await
                .map(drop)
        };
        let (g, a) = tokio::join!(global, per_activity);
        g?;
        a?;
        Ok(())
    }

    /// Sets the global totals from the collections themselves.
    pub async fn recompute_statistics(&self) -> Result<(), TransientError> {
        let users = self.users.count_documents(doc! {}).await? as i64;
        let activities = self.activities.count_documents(doc! {}).await? as i64;
        let joins = self.participant_total().await?;
        let mut set = doc! { "updated_at": DateTime::now() };
        for (t, n) in [
            (EventType::UserCreated, users),
            (EventType::ActivityCreated, activities),
            (EventType::ParticipantJoined, joins),
        ] {
            set.insert(statistics_key(t), n);
        }
        self.statistics
            .update_one(doc! { "_id": "global" }, doc! { "$set": set })
            .upsert(true)
            .await?;
        Ok(())
    }

    /// The sum of all activities' participant counts.
    pub async fn participant_total(&self) -> Result<i64, mongodb::error::Error> {
        let mut cur = self
            .activities
            .aggregate(vec![
                doc! { "$group": { "_id": Bson::Null, "n": { "$sum": "$participants.count" } } },
            ])
            .await?;
        Ok(match cur.try_next().await? {
            Some(d) => match d.get("n") {
                Some(Bson::Int64(n)) => *n,
                Some(Bson::Int32(n)) => *n as i64,
                Some(Bson::Double(n)) => *n as i64,
                _ => 0,
            },
            None => 0,
        })
    }
}

/// Where the global statistics document counts events of type `t`.
pub fn statistics_key(t: EventType) -> String {
    format!("events.{t}")
}

/// Inserts documents, unordered; a duplicate `_id` is "already applied" when the stored
/// document came from the same event, and a conflict otherwise.
async fn insert_idempotent(
    coll: &Collection<Document>,
    docs: &[(usize, &Document)],
) -> Result<Vec<(usize, WriteResult)>, TransientError> {
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let res = coll
        .insert_many(docs.iter().map(|(_, d)| *d))
        .ordered(false)
        .await;
    let acked_us = now_us();
    let mut outcomes = vec![Outcome::Applied; docs.len()];
    let err = match res {
        Ok(_) => None,
        Err(e) => match *e.kind {
            ErrorKind::InsertMany(ref ime) if ime.write_concern_error.is_none() => {
                Some(ime.write_errors.clone().unwrap_or_default())
            }
            _ => return Err(TransientError(e)),
        },
    };
    if let Some(write_errors) = err {
        let mut duplicates = Vec::new();
        for we in write_errors {
            if we.index >= docs.len() {
                continue;
            }
            if we.code == DUPLICATE_KEY {
                duplicates.push(we.index);
            } else {
                outcomes[we.index] =
                    Outcome::Rejected(format!("{} (code {})", we.message, we.code));
            }
        }
        if !duplicates.is_empty() {
            for (i, o) in settle_duplicates(coll, docs, duplicates).await? {
                outcomes[i] = o;
            }
        }
    }
    Ok(docs
        .iter()
        .zip(outcomes)
        .map(|((i, _), outcome)| (*i, result(outcome, acked_us, Some(0))))
        .collect())
}

/// Decides inserts that hit an existing `_id`: the same event's document is "already
/// applied"; another event's is a conflict.
async fn settle_duplicates(
    coll: &Collection<Document>,
    docs: &[(usize, &Document)],
    duplicates: Vec<usize>,
) -> Result<Vec<(usize, Outcome)>, TransientError> {
    let source = |d: &Document| {
        d.get_document("metadata")
            .and_then(|m| m.get_str("source_event_id"))
            .unwrap_or_default()
            .to_owned()
    };
    let ids: Vec<&str> = duplicates
        .iter()
        .map(|&i| docs[i].1.get_str("_id").unwrap_or_default())
        .collect();
    let stored: HashMap<String, String> = coll
        .find(doc! { "_id": { "$in": &ids } })
        .projection(doc! { "metadata.source_event_id": 1 })
        .await?
        .try_filter_map(|d| async move {
            Ok(d.get_str("_id").ok().map(|id| (id.to_owned(), source(&d))))
        })
        .try_collect()
        .await?;
    Ok(duplicates
        .into_iter()
        .map(|i| {
            let d = docs[i].1;
            let id = d.get_str("_id").unwrap_or_default();
            let ours = source(d);
            let outcome = match stored.get(id) {
                Some(theirs) if *theirs == ours => Outcome::AlreadyApplied,
                Some(theirs) => Outcome::Rejected(format!(
                    "{}/{id} already exists, created by event {theirs}",
                    coll.name()
                )),
                // A duplicate on the source_event_id index alone: same event, other _id.
                None => Outcome::Rejected(format!(
                    "event {ours} already created another {} document",
                    coll.name()
                )),
            };
            (i, outcome)
        })
        .collect())
}

/// Whether an error is about one document rather than the server or the connection.
fn is_document_error(e: &mongodb::error::Error) -> bool {
    matches!(
        *e.kind,
        ErrorKind::Write(WriteFailure::WriteError(_)) | ErrorKind::InsertMany(_)
    )
}

impl ReadModels {
    /// Approximate document counts per collection, for the dashboard (cheap: metadata only).
    pub async fn counts(&self) -> Result<BTreeMap<ReadModel, u64>, mongodb::error::Error> {
        let mut out = BTreeMap::new();
        for (name, c) in [
            (ReadModel::Users, &self.users),
            (ReadModel::Activities, &self.activities),
            (ReadModel::Statistics, &self.statistics),
        ] {
            out.insert(name, c.estimated_document_count().await?);
        }
        Ok(out)
    }

    /// The server's version (`buildInfo`), for reports.
    pub async fn server_version(&self) -> String {
        match self.db.run_command(doc! { "buildInfo": 1 }).await {
            Ok(d) => d.get_str("version").unwrap_or("unknown").to_owned(),
            Err(_) => "unknown".into(),
        }
    }
}
