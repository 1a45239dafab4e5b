//! How far the consumer group is behind: watermarks, committed offsets, and a long-lived
//! probe for callers that ask every second.

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{client_config, failed, partitions_with, with_client, ProbeContext, TIMEOUT};
use crate::config::KafkaArgs;

/// Offsets of one partition: the first message still kept and the next one to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Partition id.
    pub partition: i32,
    /// First offset still in the partition.
    pub low: i64,
    /// Offset the next message will get.
    pub high: i64,
}

/// The watermarks of every partition of `topic` (empty when it does not exist).
pub async fn watermarks(args: &KafkaArgs, topic: &str) -> Result<Vec<Watermarks>> {
    with_client(args, topic, false, |c, args, topic| {
        let parts = partitions_with(c, args, topic)?.unwrap_or_default();
        watermarks_with(c, args, topic, &parts)
    })
    .await
}

fn watermarks_with(
    c: &BaseConsumer<ProbeContext>,
    args: &KafkaArgs,
    topic: &str,
    parts: &[i32],
) -> Result<Vec<Watermarks>> {
    parts
        .iter()
        .map(|&partition| {
            let (low, high) = c
                .fetch_watermarks(topic, partition, TIMEOUT)
                .map_err(|e| failed(c, args, e))?;
            Ok(Watermarks {
                partition,
                low,
                high,
            })
        })
        .collect()
}

/// The group's committed offset on each partition of `topic` that has one; `None` when it has
/// committed nothing there (or the topic does not exist).
pub async fn committed(args: &KafkaArgs, topic: &str) -> Result<Option<Vec<(i32, i64)>>> {
    with_client(args, topic, true, |c, args, topic| {
        let parts = partitions_with(c, args, topic)?.unwrap_or_default();
        let done: Vec<(i32, i64)> = committed_with(c, args, topic, &parts)?
            .into_iter()
            .filter_map(|(p, o)| o.map(|o| (p, o)))
            .collect();
        Ok((!done.is_empty()).then_some(done))
    })
    .await
}

fn committed_with(
    c: &BaseConsumer<ProbeContext>,
    args: &KafkaArgs,
    topic: &str,
    parts: &[i32],
) -> Result<Vec<(i32, Option<i64>)>> {
    let mut tpl = TopicPartitionList::new();
    for &p in parts {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| failed(c, args, e))?;
    Ok(parts
        .iter()
        .map(|&p| {
            let off = match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            (p, off)
        })
        .collect())
}

/// A topic's partitions as they were at one moment.
pub type TopicEnds = (String, Vec<Watermarks>);

/// A consumer's position on one partition it holds: topic, partition, next offset (if known).
pub type Position = (String, i32, Option<i64>);

/// The watermarks of every partition of each of `topics`.
pub async fn watermarks_of(args: &KafkaArgs, topics: &[String]) -> Result<Vec<TopicEnds>> {
    let mut all = Vec::with_capacity(topics.len());
    for t in topics {
        all.push((t.clone(), watermarks(args, t).await?));
    }
    Ok(all)
}

/// Measures the consumer group's lag with one long-lived client, for callers that ask often
/// (the dashboard, every second) and should not open new broker connections each time.
pub struct LagProbe {
    client: std::sync::Arc<BaseConsumer<ProbeContext>>,
    args: KafkaArgs,
    topics: Vec<String>,
}

impl LagProbe {
    /// A probe of `args.group` on `topics` (the outbox's one, or one per aggregate type).
    /// Connects lazily.
    pub fn new(args: &KafkaArgs, topics: &[String]) -> Result<Self> {
        let client = super::client::created(
            client_config(args)
                .set("group.id", &args.group)
                .create_with_context(ProbeContext::default()),
            "creating a Kafka client",
        )?;
        Ok(LagProbe {
            client: std::sync::Arc::new(client),
            args: args.clone(),
            topics: topics.to_vec(),
        })
    }

    /// Messages in the topics not yet committed by the group (0 for a topic that does not
    /// exist).
    pub async fn lag(&self) -> Result<i64> {
        self.behind_of(None).await
    }

    /// Messages between the group's committed offsets and `ends` (watermarks taken earlier).
    pub async fn behind(&self, ends: &[TopicEnds]) -> Result<i64> {
        self.behind_of(Some(ends.to_vec())).await
    }

    /// Messages waiting for a consumer at `positions` (see [`waiting`]), and the group's
    /// committed offsets in all.
    pub async fn waiting(&self, positions: Option<Vec<Position>>) -> Result<Waiting> {
        let (c, args, topics) = (self.client.clone(), self.args.clone(), self.topics.clone());
        tokio::task::spawn_blocking(move || {
            let mut total = 0;
            let mut committed = 0;
            for topic in &topics {
                let parts = partitions_with(&c, &args, topic)?.unwrap_or_default();
                let ends = watermarks_with(&c, &args, topic, &parts)?;
                let done = committed_with(&c, &args, topic, &parts)?;
                let own: Option<Vec<(i32, Option<i64>)>> = positions.as_ref().map(|pos| {
                    pos.iter()
                        .filter(|(t, _, _)| t == topic)
                        .map(|(_, p, o)| (*p, *o))
                        .collect()
                });
                total += waiting(&ends, &done, own.as_deref());
                committed += done.iter().filter_map(|(_, o)| *o).sum::<i64>();
            }
            Ok(Waiting {
                messages: total,
                committed,
            })
        })
        .await?
    }

    async fn behind_of(&self, ends: Option<Vec<TopicEnds>>) -> Result<i64> {
        let (c, args, topics) = (self.client.clone(), self.args.clone(), self.topics.clone());
        tokio::task::spawn_blocking(move || {
            let mut total = 0;
            for topic in &topics {
                let parts = partitions_with(&c, &args, topic)?.unwrap_or_default();
                let ends = match ends.as_ref() {
                    Some(e) => e
                        .iter()
                        .find(|(t, _)| t == topic)
                        .map(|(_, w)| w.clone())
                        .unwrap_or_default(),
                    None => watermarks_with(&c, &args, topic, &parts)?,
                };
                let done = committed_with(&c, &args, topic, &parts)?;
                total += behind(&ends, &done);
            }
            Ok(total)
        })
        .await?
    }
}

/// What a quiet consumer sees of its group: the messages waiting for it, and the sum of the
/// group's committed offsets, which moves whenever any member commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Messages waiting (see [`waiting`]).
    pub messages: i64,
    /// The group's committed offsets, added up over the partitions that have one.
    pub committed: i64,
}

/// Messages waiting for a consumer: past its own `positions` on the partitions it holds, or,
/// holding none (`positions` is `None`), past the group's `committed` offsets on every partition.
/// A partition with neither waits from its start.
pub fn waiting(
    ends: &[Watermarks],
    committed: &[(i32, Option<i64>)],
    positions: Option<&[(i32, Option<i64>)]>,
) -> i64 {
    let at = |list: &[(i32, Option<i64>)], p: i32| {
        list.iter().find(|(q, _)| *q == p).and_then(|(_, o)| *o)
    };
    let (ends, offsets): (Vec<Watermarks>, Vec<(i32, Option<i64>)>) = ends
        .iter()
        .filter(|w| positions.is_none_or(|pos| pos.iter().any(|(p, _)| *p == w.partition)))
        .map(|w| {
            let own = positions.and_then(|pos| at(pos, w.partition));
            (
                *w,
                (w.partition, own.or_else(|| at(committed, w.partition))),
            )
        })
        .unzip();
    behind(&ends, &offsets)
}

/// Messages between the `committed` offsets and the `ends` (a partition with nothing committed
/// is behind by all it holds).
pub fn behind(ends: &[Watermarks], committed: &[(i32, Option<i64>)]) -> i64 {
    ends.iter()
        .map(|w| {
            let done = committed
                .iter()
                .find(|(p, _)| *p == w.partition)
                .and_then(|(_, o)| *o)
                .unwrap_or(w.low);
            (w.high - done).max(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_partitions() -> [Watermarks; 3] {
        let w = |partition, low, high| Watermarks {
            partition,
            low,
            high,
        };
        [w(0, 0, 100), w(1, 40, 50), w(2, 0, 7)]
    }

    #[test]
    fn behind_counts_from_the_commit_or_the_start() {
        let ends = three_partitions();
        assert_eq!(behind(&ends, &[(0, Some(90)), (1, None)]), 10 + 10 + 7);
        // Committed past the end captured earlier: caught up, never negative.
        assert_eq!(
            behind(&ends, &[(0, Some(120)), (1, Some(50)), (2, Some(7))]),
            0
        );
    }

    #[test]
    fn waiting_counts_from_the_own_position_else_the_commit() {
        let ends = three_partitions();
        let committed = [(0, Some(60)), (1, Some(45)), (2, None)];
        // Holding partitions 0 and 1: its own position on 0, the commit on 1; 2 is not its own.
        assert_eq!(
            waiting(&ends, &committed, Some(&[(0, Some(90)), (1, None)])),
            10 + 5
        );
        // Holding none: the whole topic from the group's commits (2 from its start).
        assert_eq!(waiting(&ends, &committed, None), 40 + 5 + 7);
    }
}
