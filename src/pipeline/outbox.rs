//! The PostgreSQL side: connecting with clear errors, the `event_outbox` table, batched inserts
//! and reading events back for verification.

use anyhow::{bail, Context, Result};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, Type};
use tokio_postgres::{Client, Statement};
use uuid::Uuid;

use crate::config::{PgSslMode, PostgresArgs};
use crate::event::EventType;
use crate::pipeline::diagnose::root_cause;

/// The table DDL. `created_at` defaults to `clock_timestamp()`, the row's own creation time
/// (`now()` would give every row of a transaction the transaction's start time), so T0 is exact.
pub const CREATE_TABLE: &str = "
CREATE TABLE IF NOT EXISTS event_outbox (
    event_id       uuid PRIMARY KEY,
    aggregate_id   uuid NOT NULL,
    aggregate_type text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    status         text NOT NULL DEFAULT 'pending',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    run_tag        text
)";

/// Adds [`CREATE_TABLE`]'s `run_tag` to an outbox an older pipedemo made.
const ADD_RUN_TAG: &str = "ALTER TABLE event_outbox ADD COLUMN IF NOT EXISTS run_tag text";

/// The record of what was sent when rows are deleted in the transaction that inserted them
/// ([`Retention::Delete`]): the same columns, written in that transaction, so that `verify`
/// still proves every event exactly once while `event_outbox` stays empty. Debezium does not
/// capture it (the connector includes `event_outbox` only).
pub const SENT_TABLE: &str = "pipedemo_sent_events";

/// [`SENT_TABLE`]'s DDL.
pub const CREATE_SENT_TABLE: &str = "
CREATE TABLE IF NOT EXISTS pipedemo_sent_events (
    event_id       uuid PRIMARY KEY,
    aggregate_id   uuid NOT NULL,
    aggregate_type text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    status         text NOT NULL,
    created_at     timestamptz NOT NULL
)";

/// Where the generators of a run meet (`crate::run::members`): a row per generator and step.
pub const RUNS_TABLE: &str = "pipedemo_runs";

/// [`RUNS_TABLE`]'s DDL.
pub const CREATE_RUNS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS pipedemo_runs (
    run        text NOT NULL,
    step       text NOT NULL,
    member     uuid NOT NULL,
    host       text NOT NULL,
    joined_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run, step, member)
)";

/// What becomes of an outbox row once its transaction commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// It stays: the table grows with every event (the original design).
    #[default]
    Keep,
    /// It is deleted in the transaction that inserted it, as many teams run the outbox:
    /// Debezium captures the insert (and a delete it skips); the table stays empty.
    Delete,
}

/// The TLS connector for `args.sslmode`, as libpq does it: `prefer` and `require` encrypt
/// without checking the certificate (`require` checks it against a CA file when one is given),
/// `verify-ca` checks it chains to the CA, `verify-full` also that it names the host.
fn tls(args: &PostgresArgs) -> Result<postgres_openssl::MakeTlsConnector> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    let verify = match args.sslmode {
        PgSslMode::Disable | PgSslMode::Prefer => false,
        PgSslMode::Require => args.sslrootcert.is_some(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
    };
    if verify {
        match &args.sslrootcert {
            Some(ca) => b.set_ca_file(ca).map_err(|e| {
                crate::exit::config(format!(
                    "POSTGRES_SSLROOTCERT {} is not a PEM CA certificate ({e})",
                    ca.display()
                ))
            })?,
            None => {
                // The statically built OpenSSL does not know where Debian keeps its CAs.
                let found = openssl_probe::probe();
                if let Some(f) = found.cert_file {
                    b.set_ca_file(f)?;
                }
            }
        }
        b.set_verify(SslVerifyMode::PEER);
    } else {
        b.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = postgres_openssl::MakeTlsConnector::new(b.build());
    if args.sslmode != PgSslMode::VerifyFull {
        connector.set_callback(|c, _| {
            c.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// Connects, turning the usual failures into instructions.
pub async fn connect(args: &PostgresArgs) -> Result<Client> {
    let (client, conn) = args
        .client_config()
        .connect(tls(args)?)
        .await
        .map_err(|e| explain(args, &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

fn explain(args: &PostgresArgs, e: &tokio_postgres::Error) -> anyhow::Error {
    let at = args.describe();
    let cause = root_cause(e);
    let message = e.as_db_error().map(|d| d.message()).unwrap_or("");
    if message.contains("no encryption") {
        return crate::exit::config(format!(
            "PostgreSQL at {at} accepts only encrypted connections ({message}): set \
             POSTGRES_SSLMODE=require, or verify-full with POSTGRES_SSLROOTCERT"
        ));
    }
    if cause.contains("certificate verify failed") {
        return crate::exit::config(format!(
            "PostgreSQL's certificate at {}:{} is not trusted ({cause}): set POSTGRES_SSLROOTCERT \
             to the CA that signed it",
            args.host, args.port
        ));
    }
    if e.code().is_none() && cause.contains("server does not support TLS") {
        return crate::exit::config(format!(
            "PostgreSQL at {}:{} does not offer TLS but POSTGRES_SSLMODE is {}: turn on ssl in \
             postgresql.conf, or set POSTGRES_SSLMODE=prefer",
            args.host,
            args.port,
            args.sslmode.as_str()
        ));
    }
    if matches!(e.code(), Some(c) if *c == SqlState::INVALID_PASSWORD
        || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    {
        return crate::exit::config(format!(
            "PostgreSQL rejected the credentials for {at}: check POSTGRES_USER and POSTGRES_PASSWORD"
        ));
    }
    crate::exit::service(match e.code() {
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => format!(
            "PostgreSQL database `{}` does not exist at {}:{}: create it or set POSTGRES_DB",
            args.db, args.host, args.port
        ),
        Some(c) => format!(
            "PostgreSQL at {at} refused the connection: {} ({})",
            e,
            c.code()
        ),
        None => format!(
            "PostgreSQL at {}:{} is unreachable ({cause}). Start the stack (scripts/stack.sh up, \
             or docker compose up -d --wait) or set POSTGRES_HOST/POSTGRES_PORT.",
            args.host, args.port,
        ),
    })
}

/// Puts `event_outbox` back into the connector's publication when the publication exists
/// without it (the table was dropped and created again): Debezium creates the publication
/// only once, and a table missing from it is never captured.
pub async fn ensure_in_publication(client: &Client, publication: &str) -> Result<()> {
    let missing = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)
                AND NOT EXISTS (SELECT 1 FROM pg_publication_tables
                                WHERE pubname = $1 AND tablename = 'event_outbox')",
            &[&publication],
        )
        .await?
        .get::<_, bool>(0);
    if missing {
        client
            .batch_execute(&format!(
                "ALTER PUBLICATION \"{}\" ADD TABLE event_outbox",
                publication.replace('"', "\"\"")
            ))
            .await
            .with_context(|| format!("adding event_outbox to publication {publication}"))?;
    }
    Ok(())
}

/// Fails unless logical decoding is on, which Debezium needs.
pub async fn check_logical_decoding(client: &Client) -> Result<()> {
    let row = client.query_one("SHOW wal_level", &[]).await?;
    let level: String = row.get(0);
    if level != "logical" {
        return Err(crate::exit::service(format!(
            "PostgreSQL wal_level is `{level}`, Debezium needs `logical`: set wal_level = logical \
             in postgresql.conf (or `-c wal_level=logical`) and restart PostgreSQL"
        )));
    }
    Ok(())
}

/// Creates `event_outbox` and [`SENT_TABLE`] if missing.
pub async fn create_table(client: &Client) -> Result<()> {
    client
        .batch_execute(CREATE_TABLE)
        .await
        .context("creating table event_outbox")?;
    client
        .batch_execute(ADD_RUN_TAG)
        .await
        .context("adding column run_tag to event_outbox")?;
    client
        .batch_execute(CREATE_SENT_TABLE)
        .await
        .context("creating table pipedemo_sent_events")?;
    client
        .batch_execute(CREATE_RUNS_TABLE)
        .await
        .context("creating table pipedemo_runs")?;
    Ok(())
}

/// Whether `public.event_outbox` exists.
pub async fn table_exists(client: &Client) -> Result<bool> {
    let row = client
        .query_one("SELECT to_regclass('public.event_outbox') IS NOT NULL", &[])
        .await?;
    Ok(row.get(0))
}

/// Fails with a hint when `event_outbox` is missing.
pub async fn check_table(client: &Client) -> Result<()> {
    if !table_exists(client).await? {
        return Err(crate::exit::not_set_up(
            "table event_outbox does not exist; run `pipedemo setup` first",
        ));
    }
    let tagged = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'event_outbox' AND column_name = 'run_tag')",
            &[],
        )
        .await?;
    if !tagged.get::<_, bool>(0) {
        return Err(crate::exit::service(
            "table event_outbox has no run_tag column (an older pipedemo made it); run \
             `pipedemo setup --keep` to add it without clearing anything",
        ));
    }
    Ok(())
}

/// Deletes all outbox rows.
pub async fn truncate(client: &Client) -> Result<()> {
    clear_events(client).await?;
    client
        .batch_execute("TRUNCATE pipedemo_runs")
        .await
        .context("emptying pipedemo_runs")?;
    Ok(())
}

/// Empties `event_outbox` and `pipedemo_sent_events` only, mid-run (a capacity step's fresh
/// start): the run's registry stays, and Debezium skips truncates (`skipped.operations`).
pub async fn clear_events(client: &Client) -> Result<()> {
    client
        .batch_execute("TRUNCATE event_outbox, pipedemo_sent_events")
        .await
        .context("emptying event_outbox and pipedemo_sent_events")?;
    Ok(())
}

/// One row to insert into `event_outbox` (`created_at` comes from the table's default).
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Primary key.
    pub event_id: Uuid,
    /// The user or activity.
    pub aggregate_id: Uuid,
    /// The event type; the row's `aggregate_type` follows from it.
    pub event_type: EventType,
    /// The data.
    pub payload: serde_json::Value,
    /// The run, phase and due time it belongs to ([`crate::telemetry::tag::RunTag::encode`]).
    pub run_tag: Option<String>,
}

/// Inserts events in one transaction with `COPY … FROM STDIN BINARY`, the fastest way
/// PostgreSQL takes rows. `created_at` still comes from its `clock_timestamp()` default, per
/// row. Returns how many were written.
pub async fn insert_batch(client: &Client, events: &[NewEvent]) -> Result<u64> {
    insert_batch_into(client, "event_outbox", events).await
}

/// The most rows a transaction writes with [`insert_prepared`]; larger ones take `COPY`
/// ([`insert_batch`]). `COPY` costs three round trips (its statement prepared, then answered
/// before PostgreSQL takes the rows), which is most of a paced window's cost at 5 rows; an
/// `INSERT` of arrays is one, and with many rows `COPY`'s cheaper rows win.
pub const INSERT_ROWS: usize = 128;

/// Whether a transaction of `rows` rows goes by `COPY` rather than [`insert_prepared`].
pub fn by_copy(rows: usize) -> bool {
    rows > INSERT_ROWS
}

/// The statement [`insert_prepared`] runs, prepared once per connection.
pub async fn prepare_insert(client: &Client) -> Result<Statement> {
    prepare_insert_into(client, "event_outbox").await
}

/// [`prepare_insert`] into another table of the same shape (the benchmark's scratch table).
/// `table` is a name from code, never from input.
pub async fn prepare_insert_into(client: &Client, table: &str) -> Result<Statement> {
    plain_identifier(table)?;
    client
        .prepare(&format!(
            "INSERT INTO {table} (event_id, aggregate_id, aggregate_type, event_type, payload, run_tag) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::text[])"
        ))
        .await
        .with_context(|| format!("preparing the insert into {table}"))
}

/// Inserts events in one transaction, as [`insert_batch`] does, with one `INSERT` of arrays
/// (`insert`, from [`prepare_insert`] on the same connection): one round trip.
pub async fn insert_prepared(
    client: &Client,
    insert: &Statement,
    events: &[NewEvent],
) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let aggregates: Vec<Uuid> = events.iter().map(|e| e.aggregate_id).collect();
    let aggregate_types: Vec<&str> = events
        .iter()
        .map(|e| e.event_type.aggregate_type())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.payload)).collect();
    let tags: Vec<Option<&str>> = events.iter().map(|e| e.run_tag.as_deref()).collect();
    client
        .execute(
            insert,
            &[
                &ids,
                &aggregates,
                &aggregate_types,
                &types,
                &payloads,
                &tags,
            ],
        )
        .await
        .context("inserting outbox rows")
}

/// Inserts events as [`insert_batch`] does, then, in the same transaction, deletes them from
/// `event_outbox` and records them in [`SENT_TABLE`] (with their `created_at`, T0). A
/// transaction sent again after a lost connection that had committed fails on the sent
/// table's key, as a kept row fails on the outbox's.
pub async fn insert_batch_deleting(client: &Client, events: &[NewEvent]) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    client.batch_execute("BEGIN").await.context("BEGIN")?;
    let r = async {
        let n = insert_batch(client, events).await?;
        client
            .execute(
                "WITH gone AS (DELETE FROM event_outbox WHERE event_id = ANY($1) \
                   RETURNING event_id, aggregate_id, aggregate_type, event_type, payload, status, created_at) \
                 INSERT INTO pipedemo_sent_events SELECT * FROM gone",
                &[&ids],
            )
            .await
            .context("moving the transaction's rows from event_outbox to pipedemo_sent_events")?;
        client.batch_execute("COMMIT").await.context("COMMIT")?;
        Ok::<u64, anyhow::Error>(n)
    }
    .await;
    if r.is_err() && !client.is_closed() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    r
}

/// A table name cannot be a bind parameter, so anything but a plain identifier is refused
/// before it could reach SQL text.
fn plain_identifier(table: &str) -> Result<()> {
    let ok = table
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("`{table}` is not a plain lowercase table name");
    }
    Ok(())
}

/// [`insert_batch`] into another table of the same shape (the benchmark's scratch table).
/// `table` is a name from code, never from input.
pub async fn insert_batch_into(client: &Client, table: &str, events: &[NewEvent]) -> Result<u64> {
    plain_identifier(table)?;
    if events.is_empty() {
        return Ok(0);
    }
    // One COPY statement is one transaction by itself: atomic, without BEGIN/COMMIT round trips.
    let sink = client
        .copy_in(&format!(
            "COPY {table} (event_id, aggregate_id, aggregate_type, event_type, payload, run_tag) FROM STDIN BINARY"
        ))
        .await
        .with_context(|| format!("starting COPY into {table}"))?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::TEXT,
        ],
    );
    futures::pin_mut!(writer);
    for e in events {
        writer
            .as_mut()
            .write(&[
                &e.event_id,
                &e.aggregate_id,
                &e.event_type.aggregate_type(),
                &e.event_type.as_str(),
                &Json(&e.payload),
                &e.run_tag,
            ])
            .await
            .with_context(|| format!("writing outbox rows into {table}"))?;
    }
    writer
        .finish()
        .await
        .with_context(|| format!("finishing COPY into {table}"))
}

/// An outbox row as `verify` needs it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Primary key.
    pub event_id: Uuid,
    /// Aggregate.
    pub aggregate_id: Uuid,
    /// Type.
    pub event_type: String,
}

/// Every event written: the outbox's rows, and those deleted in their own transaction and
/// kept in [`SENT_TABLE`] (when it exists).
pub async fn all_events(client: &Client) -> Result<Vec<StoredEvent>> {
    let sent = client
        .query_one(
            "SELECT to_regclass('pipedemo_sent_events') IS NOT NULL",
            &[],
        )
        .await
        .context("looking up pipedemo_sent_events")?
        .get::<_, bool>(0);
    let sql = if sent {
        "SELECT event_id, aggregate_id, event_type, created_at FROM event_outbox \
         UNION ALL SELECT event_id, aggregate_id, event_type, created_at FROM pipedemo_sent_events \
         ORDER BY created_at"
    } else {
        "SELECT event_id, aggregate_id, event_type FROM event_outbox ORDER BY created_at"
    };
    let rows = client
        .query(sql, &[])
        .await
        .context("reading event_outbox")?;
    Ok(rows
        .iter()
        .map(|r| StoredEvent {
            event_id: r.get(0),
            aggregate_id: r.get(1),
            event_type: r.get(2),
        })
        .collect())
}

/// The server's version string.
pub async fn server_version(client: &Client) -> Result<String> {
    Ok(client.query_one("SHOW server_version", &[]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::{by_copy, plain_identifier, INSERT_ROWS};

    #[test]
    fn a_paced_window_is_one_insert_and_a_burst_of_hundreds_a_copy() {
        assert!(!by_copy(5), "1,000 ev/s: 5 rows per 5 ms window");
        assert!(!by_copy(100), "unpaced: 100 rows per transaction");
        assert!(!by_copy(INSERT_ROWS));
        assert!(by_copy(INSERT_ROWS + 1));
        assert!(by_copy(600));
    }

    #[test]
    fn only_plain_table_names_reach_sql() {
        assert!(plain_identifier("event_outbox").is_ok());
        assert!(plain_identifier("bench_outbox2").is_ok());
        for bad in [
            "",
            "1abc",
            "Event",
            "a b",
            "x; DROP TABLE y",
            "t\"",
            "public.t",
        ] {
            assert!(plain_identifier(bad).is_err(), "{bad:?} accepted");
        }
    }
}
