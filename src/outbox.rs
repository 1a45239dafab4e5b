//! The PostgreSQL side: connecting with clear errors, the `event_outbox` table, batched inserts
//! and reading events back for verification.

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::config::PostgresArgs;
use crate::diagnose::root_cause;
use crate::generator::NewEvent;

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
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
)";

/// Connects, turning the usual failures into instructions.
pub async fn connect(args: &PostgresArgs) -> Result<Client> {
    let (client, conn) = args
        .client_config()
        .connect(NoTls)
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
    match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => anyhow!(
            "PostgreSQL rejected the credentials for {at}: check POSTGRES_USER and POSTGRES_PASSWORD"
        ),
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => anyhow!(
            "PostgreSQL database `{}` does not exist at {}:{}: create it or set POSTGRES_DB",
            args.db, args.host, args.port
        ),
        Some(c) => anyhow!("PostgreSQL at {at} refused the connection: {} ({})", e, c.code()),
        None => anyhow!(
            "PostgreSQL at {}:{} is unreachable ({}). Start the stack (scripts/stack.sh up, or \
             docker compose up -d --wait) or set POSTGRES_HOST/POSTGRES_PORT.",
            args.host,
            args.port,
            root_cause(e)
        ),
    }
}

/// Fails unless logical decoding is on, which Debezium needs.
pub async fn check_logical_decoding(client: &Client) -> Result<()> {
    let row = client.query_one("SHOW wal_level", &[]).await?;
    let level: String = row.get(0);
    if level != "logical" {
        bail!(
            "PostgreSQL wal_level is `{level}`, Debezium needs `logical`: set wal_level = logical \
             in postgresql.conf (or `-c wal_level=logical`) and restart PostgreSQL"
        );
    }
    Ok(())
}

/// Creates `event_outbox` if missing.
pub async fn create_table(client: &Client) -> Result<()> {
    client
        .batch_execute(CREATE_TABLE)
        .await
        .context("creating table event_outbox")?;
    Ok(())
}

/// Fails with a hint when `event_outbox` is missing.
pub async fn check_table(client: &Client) -> Result<()> {
    let row = client
        .query_one("SELECT to_regclass('public.event_outbox') IS NOT NULL", &[])
        .await?;
    if !row.get::<_, bool>(0) {
        bail!("table event_outbox does not exist; run `pipedemo setup` first");
    }
    Ok(())
}

/// Deletes all outbox rows.
pub async fn truncate(client: &Client) -> Result<()> {
    client
        .batch_execute("TRUNCATE event_outbox")
        .await
        .context("emptying event_outbox")?;
    Ok(())
}

/// Inserts events in one transaction with one multi-row INSERT. Returns how many were written.
pub async fn insert_batch(client: &mut Client, events: &[NewEvent]) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut sql = String::from(
        "INSERT INTO event_outbox (event_id, aggregate_id, aggregate_type, event_type, payload) VALUES ",
    );
    let payloads: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.payload)).collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(events.len() * 5);
    for (i, (e, p)) in events.iter().zip(&payloads).enumerate() {
        let b = i * 5;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(${},${},${},${},${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5
        ));
        params.push(&e.event_id);
        params.push(&e.aggregate_id);
        params.push(&e.aggregate_type);
        params.push(&e.event_type);
        params.push(p);
    }
    let tx = client.transaction().await?;
    let n = tx
        .execute(sql.as_str(), &params)
        .await
        .context("inserting into event_outbox")?;
    tx.commit().await.context("committing outbox rows")?;
    Ok(n)
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

/// Every outbox row.
pub async fn all_events(client: &Client) -> Result<Vec<StoredEvent>> {
    let rows = client
        .query(
            "SELECT event_id, aggregate_id, event_type FROM event_outbox ORDER BY created_at",
            &[],
        )
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
