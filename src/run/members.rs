//! Where the generators of one run meet: a row each in `pipedemo_runs` (the run's own
//! PostgreSQL, no new service) per step (a phase), and each starts when all `N` have come.
//! The order they joined in gives each its index (its share of the rate and of the events,
//! and its generator number in the run tags); the last to join sets the start for all.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::pipeline::outbox::RUNS_TABLE as TABLE;

/// How long after the last generator joins they all start: time for every one to see it.
pub const LEAD: Duration = Duration::from_millis(500);

/// One generator's place in a step of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// Its index, 0‥`of`.
    pub index: u32,
    /// How many generators the run has.
    pub of: u32,
    /// When they all start, µs since the epoch.
    pub start_us: i64,
}

/// The place of `me` once `n` generators joined: `joined` are the step's rows (member, when it
/// joined in µs), in any order. `None` while fewer than `n` joined; an error when `me` came
/// after the first `n` (more generators started than the run was given).
pub fn place(joined: &[(Uuid, i64)], me: Uuid, n: u32) -> Result<Option<Place>, String> {
    if joined.len() < n as usize {
        return Ok(None);
    }
    let mut rows = joined.to_vec();
    rows.sort_by_key(|(m, at)| (*at, *m));
    rows.truncate(n as usize);
    let index = rows.iter().position(|(m, _)| *m == me).ok_or_else(|| {
        format!(
            "{} generator(s) had joined this step of the run before this one: start exactly \
             --generators ({n}) with the same --run; a run name used before needs a new one",
            joined.len() - 1
        )
    })?;
    let last = rows.iter().map(|(_, at)| *at).max().unwrap_or(0);
    Ok(Some(Place {
        index: index as u32,
        of: n,
        start_us: last + LEAD.as_micros() as i64,
    }))
}

/// `total` split over `of` shares, the first ones a unit larger when it does not divide.
pub fn share(total: u64, index: u32, of: u32) -> u64 {
    let of = u64::from(of.max(1));
    total / of + u64::from(u64::from(index) < total % of)
}

/// Joins `step` of `run` and waits until `n` generators have, for at most `wait`.
pub async fn meet(
    pg: &Client,
    run: &str,
    step: &str,
    me: Uuid,
    host: &str,
    n: u32,
    wait: Duration,
) -> Result<Place> {
    pg.execute(
        "INSERT INTO pipedemo_runs (run, step, member, host) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        &[&run, &step, &me, &host],
    )
    .await
    .with_context(|| {
        format!("joining run {run} in table {TABLE} (run `pipedemo setup --keep` to make it)")
    })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let rows = pg
            .query(
                "SELECT member, (extract(epoch FROM joined_at) * 1e6)::bigint FROM pipedemo_runs \
                 WHERE run = $1 AND step = $2",
                &[&run, &step],
            )
            .await
            .with_context(|| format!("reading who joined run {run}"))?;
        let joined: Vec<(Uuid, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if let Some(p) = place(&joined, me, n).map_err(crate::exit::config)? {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::exit::service(format!(
                "run {run}, {step}: {} of {n} generators joined within {}; start the others with \
                 the same --run and --generators, or raise --join-timeout",
                joined.len(),
                humantime::format_duration(wait)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_take_their_places_in_the_order_they_joined() {
        let (a, b, c) = (Uuid::from_u128(3), Uuid::from_u128(1), Uuid::from_u128(2));
        let rows = [(a, 100), (b, 300), (c, 200)];
        assert_eq!(place(&rows[..2], a, 3), Ok(None));
        let pa = place(&rows, a, 3).unwrap().unwrap();
        let pb = place(&rows, b, 3).unwrap().unwrap();
        let pc = place(&rows, c, 3).unwrap().unwrap();
        assert_eq!((pa.index, pc.index, pb.index), (0, 1, 2));
        // One start for all: the last join plus the lead.
        assert_eq!(pa.start_us, 300 + LEAD.as_micros() as i64);
        assert!(pa.start_us == pb.start_us && pb.start_us == pc.start_us);
    }

    #[test]
    fn one_generator_too_many_is_told_what_to_do() {
        let rows: Vec<(Uuid, i64)> = (0..3).map(|i| (Uuid::from_u128(i), i as i64)).collect();
        let late = place(&rows, Uuid::from_u128(2), 2).unwrap_err();
        assert!(late.contains("--generators (2)"), "{late}");
    }

    #[test]
    fn shares_add_up_to_the_whole() {
        for (total, of) in [(10_000u64, 3u32), (7, 2), (1, 4), (100, 1)] {
            let parts: Vec<u64> = (0..of).map(|i| share(total, i, of)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total, "{total} over {of}");
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
        }
    }
}
