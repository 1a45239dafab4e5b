//! Measures a MongoDB-protocol server with pipedemo's own read-model writes: correctness
//! (idempotent inserts and joins, duplicate-key reporting, statistics) and write speed.
//! Used to choose the server scripts/stack.sh runs (see README).
//!
//!   cargo run --release --example mongo_server_probe -- mongodb://127.0.0.1:27017 [events]

use std::time::Instant;

use clap::Parser;
use mongodb::bson::doc;
use pipedemo::config::Settings;
use pipedemo::pipeline::envelope::OutboxEvent;
use pipedemo::pipeline::generator;
use pipedemo::pipeline::handlers::{Registry, Source};
use pipedemo::pipeline::store::statistics::Counted;
use pipedemo::pipeline::store::{Outcome, ReadModels};

#[derive(Parser)]
struct Args {
    uri: String,
    #[arg(default_value_t = 10_000)]
    events: u64,
}

#[derive(Parser)]
struct S {
    #[command(flatten)]
    s: Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let s = S::try_parse_from([
        "x",
        "--mongodb-uri",
        &a.uri,
        "--mongodb-database",
        "pipedemo_probe",
    ])?
    .s;
    let store = ReadModels::connect(&s.mongo).await?;
    store.drop_all().await?;
    store.ensure_indexes().await?;
    let reg = Registry::standard();
    let ops: Vec<_> = generator::generate(a.events, Some(1))
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = Source {
                partition: 0,
                offset: i as i64,
            };
            reg.handle(&OutboxEvent::from_new(e, 1_795_000_000_000_000), at)
                .unwrap()
        })
        .collect();
    let mut checks = Vec::new();
    let t = Instant::now();
    let mut applied = 0;
    for chunk in ops.chunks(500) {
        let r = store.apply(chunk).await?;
        applied += r.iter().filter(|r| r.outcome == Outcome::Applied).count();
    }
    let first = t.elapsed().as_secs_f64();
    checks.push(("all writes applied", applied == ops.len()));
    let t = Instant::now();
    let mut again = 0;
    for chunk in ops.chunks(500) {
        let r = store.apply(chunk).await?;
        again += r
            .iter()
            .filter(|r| r.outcome == Outcome::AlreadyApplied)
            .count();
    }
    let replay = t.elapsed().as_secs_f64();
    checks.push(("replay applies nothing", again == ops.len()));
    let mix = generator::Mix::for_total(a.events);
    let db = store.database();
    let users = db
        .collection::<mongodb::bson::Document>("users")
        .count_documents(doc! {})
        .await?;
    checks.push(("user count", users == mix.users));
    checks.push((
        "participant total",
        store.participant_total().await? == mix.joins as i64,
    ));
    // Every event counted twice (a redelivery): the counted marks must make the second a no-op.
    let counted: Vec<Counted> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| Counted {
            lane: Default::default(),
            partition: 0,
            offset: i as i64,
            event_type: op.event_type(),
        })
        .collect();
    // The second round through a new client, which has to read the marks and have the
    // server hold the guard.
    for _ in 0..2 {
        let fresh = ReadModels::connect(&s.mongo).await?;
        for chunk in counted.chunks(500) {
            fresh.record_statistics(chunk, &Default::default()).await?;
        }
    }
    let g = db
        .collection::<mongodb::bson::Document>("statistics")
        .find_one(doc! {"_id": "global"})
        .await?
        .unwrap();
    checks.push((
        "statistics",
        g.get_document("events")?.get_i64("ParticipantJoined")? == mix.joins as i64,
    ));
    let sum = pipedemo::check::checksum::read_models(db).await.is_ok();
    checks.push(("checksum readable", sum));
    store.drop_all().await?;
    let ok = checks.iter().all(|c| c.1);
    for (name, pass) in &checks {
        println!("  {} {name}", if *pass { "PASS" } else { "FAIL" });
    }
    println!(
        "{}: {} writes in {:.2} s = {:.0} writes/s; replay {:.2} s = {:.0}/s; correctness {}",
        a.uri,
        ops.len(),
        first,
        ops.len() as f64 / first,
        replay,
        ops.len() as f64 / replay,
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(())
}
