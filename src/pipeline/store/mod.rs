//! The MongoDB read models: `users`, `activities` and `statistics`, written idempotently.
//!
//! Idempotency, so that replaying the topic changes nothing:
//! - users and activities are inserted with `_id` = aggregate id; a duplicate-key error from the
//!   same `source_event_id` means "already applied", from another event it is a conflict;
//! - a join is a conditional update that only matches while the activity's participant list has
//!   no entry with that `source_event_id`, so `$push`, `$inc` and `$addToSet` run at most once;
//! - statistics count each event once, for the Kafka message that created its write, with
//!   only increments guarded by how far each partition is counted ([`statistics`]), so any
//!   number of consumers, crashes and redeliveries leave them exact; per-activity counts use
//!   `$max`.
//!
//! Only features real MongoDB has are used (users of docker-compose run MongoDB 8).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document, RawDocument, RawDocumentBuf};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use crate::config::MongoArgs;
use crate::event::EventType;
use crate::pipeline::diagnose::first_line;
use crate::pipeline::handlers::{Source, WriteOp};
use crate::read_model::Collection as ReadModel;
use crate::telemetry::clock::now_us;

mod joins;
mod known;
pub mod statistics;

use known::KnownCounts;
use statistics::{Counted, Marks};

/// Duplicate key, the server's error code for an existing `_id`.
const DUPLICATE_KEY: i32 = 11000;

/// The read-model database.
#[derive(Clone)]
pub struct ReadModels {
    db: Database,
    users: Collection<Document>,
    activities: Collection<Document>,
    statistics: Collection<Document>,
    /// The statistics' counted marks as this consumer last read or wrote them.
    marks: Arc<Mutex<Option<Marks>>>,
    /// The participant counts this consumer last saw, so that joins need no read first.
    known: Arc<Mutex<KnownCounts>>,
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
    /// The stored write was made by this very message (now, or in an earlier delivery of it
    /// that did not get as far as the statistics): the event counts for this message.
    pub by_this_message: bool,
}

fn result(outcome: Outcome, acked_us: i64, participant_count: Option<i64>) -> WriteResult {
    WriteResult {
        by_this_message: outcome == Outcome::Applied,
        outcome,
        acked_us,
        participant_count,
    }
}

impl WriteResult {
    fn made_by(mut self, this_message: bool) -> Self {
        self.by_this_message |= this_message;
        self
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
            marks: Arc::default(),
            known: Arc::default(),
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

    /// Empty read models, as setup leaves them: the database dropped, then marked as
    /// pipedemo's again and its indexes made.
    pub async fn start_empty(&self) -> Result<()> {
        self.drop_all().await?;
        self.mark().await?;
        self.ensure_indexes().await
    }

    /// Performs a batch of writes. Creates go first (so joins in the same batch find their
    /// activity); writes to one activity keep their order. Returns one result per input
    /// write, in input order.
    ///
    /// A batch is at most three commands, one after the other: the users' inserts, the
    /// activities' inserts, then one `update` for all joins. An activity whose participant
    /// count this consumer does not know ([`known`]) is read first, beside the inserts unless
    /// it is created in the same batch. The two inserts went side by side until measured: one
    /// after the other cost the MongoDB-protocol server 0.87× and pipedemo 0.91× of the CPU
    /// per event at 1,000 ev/s, at the same latency (docs/performance.md); the joins sent
    /// beside the inserts too cost the server 1.20×.
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
        let created_here: Vec<&str> = activities
            .iter()
            .filter_map(|(_, d)| d.get_str("_id").ok())
            .filter(|id| by_activity.contains_key(id))
            .collect();
        let (mut existing, unknown) = self.known_states(by_activity.keys().copied());
        let (read_later, read_now): (Vec<&str>, Vec<&str>) = unknown
            .into_iter()
            .partition(|id| created_here.contains(id));
        // The documents are BSON already: the collections take them as they are.
        let (user_docs, activity_docs) = (
            self.users.clone_with_type::<RawDocumentBuf>(),
            self.activities.clone_with_type::<RawDocumentBuf>(),
        );
        // One after the other: commands side by side cost the server more (above).
        let inserts = async {
            let u = insert_idempotent(&user_docs, &users).await?;
            let a = insert_idempotent(&activity_docs, &activities).await?;
            Ok::<_, TransientError>((u, a))
        };
        let ((inserted_users, inserted_activities), read) = if read_now.is_empty() {
            (inserts.await?, HashMap::new())
        } else {
            let (inserted, read) = tokio::join!(inserts, self.read_joined(&read_now));
            (inserted?, read?)
        };
        existing.extend(read);
        self.know_created(&activities, &inserted_activities);
        let (known_now, still_unknown) = self.known_states(read_later);
        existing.extend(known_now);
        if !still_unknown.is_empty() {
            existing.extend(self.read_joined(&still_unknown).await?);
        }
        for (i, r) in inserted_users.into_iter().chain(inserted_activities) {
            results[i] = Some(r);
        }
        if !by_activity.is_empty() {
            for (i, r) in self.apply_joins(ops, by_activity, existing).await? {
                results[i] = Some(r);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every write has a result"))
            .collect())
    }

    /// The participant counts known are those seen under the consumer's `assignment` (its
    /// assignments so far); a new one forgets them ([`KnownCounts::since`]).
    pub fn known_since(&self, assignment: u64) {
        self.known().since(assignment);
    }

    fn known(&self) -> std::sync::MutexGuard<'_, KnownCounts> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The activities among `ids` whose participant count is known, as states to plan from,
    /// and the others.
    fn known_states<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> (HashMap<String, joins::Existing>, Vec<&'a str>) {
        let known = self.known();
        let mut states = HashMap::new();
        let mut unknown = Vec::new();
        for id in ids {
            match known.get(id) {
                Some(count) => {
                    states.insert(id.to_owned(), joins::Existing::counted(count));
                }
                None => unknown.push(id),
            }
        }
        (states, unknown)
    }

    /// Activities this batch created (its insert applied now) start with the count their
    /// document holds.
    fn know_created(
        &self,
        activities: &[(usize, &RawDocumentBuf)],
        inserted: &[(usize, WriteResult)],
    ) {
        let mut known = self.known();
        for ((_, d), (_, r)) in activities.iter().zip(inserted) {
            let count = d
                .get_document("participants")
                .ok()
                .and_then(|p| p.get_i64("count").ok());
            if let (Outcome::Applied, Ok(id), Some(count)) = (&r.outcome, d.get_str("_id"), count) {
                known.set(id, count);
            }
        }
    }

    /// The participant state of the activities `ids`, in one read; their counts become known.
    async fn read_joined(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, joins::Existing>, TransientError> {
        let mut existing = HashMap::new();
        let mut cur = self
            .activities
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! {
                "participants.count": 1,
                "participants.list.source_event_id": 1,
                "participants.list.source_partition": 1,
                "participants.list.source_offset": 1,
            })
            .await?;
        while let Some(d) = cur.try_next().await? {
            let (id, state) = joins::Existing::of(&d);
            existing.insert(id, state);
        }
        let mut known = self.known();
        for (id, state) in &existing {
            known.set(id, state.count);
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
            .map(|(i, outcome, count, mine)| {
                (*i, result(outcome.clone(), read_us, *count).made_by(*mine))
            })
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
        let reply = joins::interpret(&reply, &plan);
        self.know_joined(&plan, &reply);
        match reply {
            joins::Reply::Settled(settled) => out.extend(
                settled
                    .into_iter()
                    .map(|(i, outcome, count)| (i, result(outcome, acked_us, Some(count)))),
            ),
            joins::Reply::Contended { matched } => {
                // A count planned from was out of date (another consumer joined the activity
                // since this one last saw it: a rebalance), a join was listed already (a
                // redelivery), or another writer raced: a read tells which statements ran,
                // and the others' joins are settled one by one, which the guard keeps exact.
                let ids: Vec<&str> = plan.activities.iter().map(String::as_str).collect();
                let after = self.read_joined(&ids).await?;
                let ran = joins::matched_now(ops, &plan, &after, matched);
                for (k, (idxs, count)) in plan.pending.iter().enumerate() {
                    if ran.as_ref().is_some_and(|r| r[k]) {
                        out.extend(
                            idxs.iter()
                                .map(|&i| (i, result(Outcome::Applied, acked_us, Some(*count)))),
                        );
                        continue;
                    }
                    for &i in idxs {
                        out.push((i, self.join(&ops[i]).await?));
                    }
                }
            }
        }
        Ok(out)
    }

    /// After the joins' update: an activity whose statement ran has the count planned; one
    /// whose statement did not (contended, rejected) is read again at its next join.
    fn know_joined(&self, plan: &joins::Plan, reply: &joins::Reply) {
        let applied: std::collections::HashSet<usize> = match reply {
            joins::Reply::Settled(settled) => settled
                .iter()
                .filter(|(_, outcome, _)| *outcome == Outcome::Applied)
                .map(|(i, ..)| *i)
                .collect(),
            joins::Reply::Contended { .. } => Default::default(),
        };
        let mut known = self.known();
        for (activity, (idxs, after)) in plan.activities.iter().zip(&plan.pending) {
            match idxs.first().is_some_and(|i| applied.contains(i)) {
                true => known.set(activity, *after),
                false => known.forget(activity),
            }
        }
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
        if let Some(n) = updated.as_ref().and_then(count) {
            self.known().set(activity_id, n);
        }
        Ok(match updated {
            Some(d) => result(Outcome::Applied, acked_us, count(&d)),
            None => match self
                .activities
                .find_one(doc! { "_id": activity_id })
                .projection(doc! {
                    "participants.count": 1,
                    "participants.list.source_event_id": 1,
                    "participants.list.source_partition": 1,
                    "participants.list.source_offset": 1,
                })
                .await?
            {
                Some(d) => {
                    let (_, existing) = joins::Existing::of(&d);
                    let here = op.source();
                    let mine =
                        here.is_some() && existing.events.get(event_id).is_some_and(|m| *m == here);
                    result(Outcome::AlreadyApplied, acked_us, count(&d)).made_by(mine)
                }
                None => result(Outcome::ActivityMissing, acked_us, None),
            },
        })
    }

    /// Moves the statistics for a batch: the global totals by the events `counted`
    /// ([`statistics`]: increments only, guarded by each partition's counted mark), and each
    /// touched activity's participant count (`$max`), in one `update` command
    /// ([`statistics::statements`]). The marks are read only when not known (first batch, or
    /// another writer moved one of ours: a rebalance); when the guard misses, the totals are
    /// tallied again against the marks read anew (the participant counts, idempotent, go
    /// again with them).
    pub async fn record_statistics(
        &self,
        counted: &[Counted],
        activity_counts: &BTreeMap<String, i64>,
    ) -> Result<(), TransientError> {
        // A few rounds cover a rebalance's overlap; more means the server does not evaluate
        // the guard as MongoDB does.
        for _ in 0..20 {
            let marks = match self.known_marks() {
                Some(m) => m,
                None if counted.is_empty() => Marks::new(),
                None => {
                    let g = self
                        .statistics
                        .find_one(doc! { "_id": statistics::GLOBAL })
                        .await?;
                    let m = statistics::marks_of(g.as_ref());
                    *self.marks.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
                    m
                }
            };
            let t = if counted.is_empty() {
                statistics::Tally::default()
            } else {
                statistics::tally(counted, &marks)
            };
            let statements = statistics::statements(&t, activity_counts, DateTime::now());
            if statements.is_empty() {
                return Ok(());
            }
            let n = statements.len();
            let reply = self
                .db
                .run_command(
                    doc! { "update": self.statistics.name(), "updates": statements, "ordered": false },
                )
                .await?;
            if t.is_empty() {
                return Ok(());
            }
            let outcome = statistics::global_outcome(&reply, n);
            let mut cache = self.marks.lock().unwrap_or_else(|e| e.into_inner());
            match (outcome, cache.as_mut()) {
                (statistics::Global::Counted, Some(m)) => {
                    statistics::advance(m, &t);
                    return Ok(());
                }
                (statistics::Global::Counted, None) => return Ok(()),
                (statistics::Global::MarksMoved, _) => *cache = None,
                (statistics::Global::Refused(code, why), _) => {
                    return Err(TransientError(mongodb::error::Error::custom(format!(
                        "the statistics update was refused (code {code}): {why}"
                    ))))
                }
            }
        }
        Err(TransientError(mongodb::error::Error::custom(
            "the statistics' counted marks kept moving under the guarded update",
        )))
    }

    fn known_marks(&self) -> Option<Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Which of `events` (event id, type, aggregate id) the read models hold, whoever wrote
    /// them: how a run with several consumers in its group tells that an event it awaits was
    /// applied by another. Reads by `_id` only.
    pub async fn holding(
        &self,
        events: &[(uuid::Uuid, EventType, uuid::Uuid)],
    ) -> Result<Vec<uuid::Uuid>, mongodb::error::Error> {
        let ids_of = |pick: &dyn Fn(EventType) -> bool| -> Vec<String> {
            let mut v: Vec<String> = events
                .iter()
                .filter(|(_, t, _)| pick(*t))
                .map(|(_, _, a)| a.to_string())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let users = ids_of(&|t| t == EventType::UserCreated);
        let activities = ids_of(&|t| t != EventType::UserCreated);
        let mut found = std::collections::HashSet::new();
        for (coll, ids) in [(&self.users, users), (&self.activities, activities)] {
            if ids.is_empty() {
                continue;
            }
            let mut cur = coll
                .find(doc! { "_id": { "$in": ids } })
                .projection(doc! {
                    "metadata.source_event_id": 1,
                    "participants.list.source_event_id": 1,
                })
                .await?;
            while let Some(d) = cur.try_next().await? {
                if let Ok(id) = d
                    .get_document("metadata")
                    .and_then(|m| m.get_str("source_event_id"))
                {
                    found.insert(id.to_owned());
                }
                let (_, existing) = joins::Existing::of(&d);
                found.extend(existing.events.into_keys());
            }
        }
        Ok(events
            .iter()
            .filter(|(id, _, _)| found.contains(&id.to_string()))
            .map(|(id, _, _)| *id)
            .collect())
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

pub use statistics::statistics_key;

/// Inserts documents, unordered; a duplicate `_id` is "already applied" when the stored
/// document came from the same event, and a conflict otherwise.
async fn insert_idempotent(
    coll: &Collection<RawDocumentBuf>,
    docs: &[(usize, &RawDocumentBuf)],
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
    let mut mine = vec![false; docs.len()];
    let err = match res {
        Ok(_) => None,
        Err(e) => match *e.kind {
            ErrorKind::InsertMany(ref ime)
                if ime.write_concern_error.is_none() && is_document_error(&e) =>
            {
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
            for (i, o, by_this_message) in settle_duplicates(coll, docs, duplicates).await? {
                outcomes[i] = o;
                mine[i] = by_this_message;
            }
        }
    }
    Ok(docs
        .iter()
        .zip(outcomes.into_iter().zip(mine))
        .map(|((i, _), (outcome, m))| (*i, result(outcome, acked_us, Some(0)).made_by(m)))
        .collect())
}

/// Decides inserts that hit an existing `_id`: the same event's document is "already
/// applied" (and says whether this very message made it); another event's is a conflict.
async fn settle_duplicates(
    coll: &Collection<RawDocumentBuf>,
    docs: &[(usize, &RawDocumentBuf)],
    duplicates: Vec<usize>,
) -> Result<Vec<(usize, Outcome, bool)>, TransientError> {
    let source = |d: &RawDocument| {
        let m = d.get_document("metadata").ok();
        (
            m.and_then(|m| m.get_str("source_event_id").ok())
                .unwrap_or_default()
                .to_owned(),
            m.and_then(Source::of_raw),
        )
    };
    let ids: Vec<&str> = duplicates
        .iter()
        .map(|&i| docs[i].1.get_str("_id").unwrap_or_default())
        .collect();
    let stored: HashMap<String, (String, Option<Source>)> = coll
        .find(doc! { "_id": { "$in": &ids } })
        .projection(doc! {
            "metadata.source_event_id": 1,
            "metadata.source_partition": 1,
            "metadata.source_offset": 1,
        })
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
            let (ours, here) = source(d);
            match stored.get(id) {
                Some((theirs, made_at)) if *theirs == ours => (
                    i,
                    Outcome::AlreadyApplied,
                    here.is_some() && *made_at == here,
                ),
                Some((theirs, _)) => (
                    i,
                    Outcome::Rejected(format!(
                        "{}/{id} already exists, created by event {theirs}",
                        coll.name()
                    )),
                    false,
                ),
                // A duplicate on the source_event_id index alone: same event, other _id.
                None => (
                    i,
                    Outcome::Rejected(format!(
                        "event {ours} already created another {} document",
                        coll.name()
                    )),
                    false,
                ),
            }
        })
        .collect())
}

/// Whether an error is about one document rather than the server or the connection. A write
/// error with a server-state code (a shutdown, a failover) or the driver's
/// `RetryableWriteError` label is the server's, not the document's: retried, never
/// dead-lettered.
fn is_document_error(e: &mongodb::error::Error) -> bool {
    if e.contains_label(RETRYABLE_WRITE_ERROR) {
        return false;
    }
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(we)) => !server_state_code(we.code),
        ErrorKind::InsertMany(ime) => !ime
            .write_errors
            .iter()
            .flatten()
            .any(|we| server_state_code(we.code)),
        _ => false,
    }
}

/// The driver's label for an error the same write may be retried after.
const RETRYABLE_WRITE_ERROR: &str = "RetryableWriteError";

/// Whether a MongoDB error code says the server could not take writes just then (shutting
/// down, stepping down, failing over, unreachable), as opposed to refusing the document: the
/// retryable codes of MongoDB's retryable-writes specification, and the interruptions of a
/// shutdown or a replica-set state change.
pub fn server_state_code(code: i32) -> bool {
    matches!(
        code,
        6       // HostUnreachable
        | 7     // HostNotFound
        | 89    // NetworkTimeout
        | 91    // ShutdownInProgress
        | 134   // ReadConcernMajorityNotAvailableYet
        | 189   // PrimarySteppedDown
        | 262   // ExceededTimeLimit
        | 9001  // SocketException
        | 10107 // NotWritablePrimary
        | 11600 // InterruptedAtShutdown
        | 11601 // Interrupted
        | 11602 // InterruptedDueToReplStateChange
        | 13435 // NotPrimaryNoSecondaryOk
        | 13436 // NotPrimaryOrSecondary
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

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::error::{IndexedWriteError, InsertManyError, WriteError};

    fn write_error(code: i32) -> mongodb::error::Error {
        let we: WriteError =
            mongodb::bson::from_document(doc! { "code": code, "errmsg": "x" }).unwrap();
        ErrorKind::Write(WriteFailure::WriteError(we)).into()
    }

    fn insert_many_error(codes: &[i32]) -> mongodb::error::Error {
        let errors: Vec<IndexedWriteError> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                mongodb::bson::from_document(doc! { "index": i as i64, "code": c, "errmsg": "x" })
                    .unwrap()
            })
            .collect();
        let mut ime: InsertManyError = mongodb::bson::from_document(doc! {}).unwrap();
        ime.write_errors = Some(errors);
        ErrorKind::InsertMany(ime).into()
    }

    #[test]
    fn a_shutdown_or_failover_is_the_servers_not_the_documents() {
        // A document the server refuses stays refused.
        assert!(is_document_error(&write_error(DUPLICATE_KEY)));
        assert!(is_document_error(&write_error(121))); // DocumentValidationFailure
        assert!(is_document_error(&insert_many_error(&[121, DUPLICATE_KEY])));
        // A server going away is retried: InterruptedAtShutdown, NotWritablePrimary,
        // PrimarySteppedDown, ShutdownInProgress, InterruptedDueToReplStateChange.
        for code in [11600, 10107, 189, 91, 11602] {
            assert!(!is_document_error(&write_error(code)), "{code}");
            assert!(
                !is_document_error(&insert_many_error(&[DUPLICATE_KEY, code])),
                "{code}"
            );
        }
        // Not a write error at all: the connection's, as before.
        assert!(!is_document_error(&mongodb::error::Error::custom("io")));
    }
}
