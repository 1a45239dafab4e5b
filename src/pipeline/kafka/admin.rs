//! Kafka administration for setup and cleanup: topics created, emptied and deleted, the
//! cluster id, consumer groups reset and deleted.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{client_config, failed, partitions, with_client, ProbeContext, TIMEOUT};
use super::lag::watermarks;
use crate::config::KafkaArgs;

/// An admin client with a [`ProbeContext`].
fn admin(args: &KafkaArgs) -> Result<AdminClient<ProbeContext>> {
    super::client::created(
        client_config(args).create_with_context(ProbeContext::default()),
        "creating a Kafka admin client",
    )
}

/// The replication of topics pipedemo creates: `--replication-factor`, else the broker's
/// default (-1 asks the broker, KIP-464).
fn replication(args: &KafkaArgs) -> TopicReplication<'static> {
    TopicReplication::Fixed(args.replication_factor.unwrap_or(-1))
}

/// The partitions of every topic the consumer reads (the outbox's one, or one per aggregate
/// type), in all; a topic that is not there is an error naming the setup that creates it.
pub async fn require_topics(args: &KafkaArgs) -> Result<usize> {
    let mut total = 0;
    for topic in args.topics() {
        let parts = partitions(args, &topic)
            .await?
            .ok_or_else(|| missing_topic(args, &topic))?;
        total += parts.len();
    }
    Ok(total)
}

/// `topic` does not exist: the setup of this routing creates it.
fn missing_topic(args: &KafkaArgs, topic: &str) -> anyhow::Error {
    crate::exit::not_set_up(format!(
        "Kafka topic {topic} does not exist; run `{}` first",
        args.routing.setup_command()
    ))
}

/// Creates `topic` with `partitions` partitions unless it exists. Returns its partition count.
pub async fn ensure_topic(args: &KafkaArgs, topic: &str, partitions_wanted: i32) -> Result<usize> {
    create_topic(args, topic, partitions_wanted, &[]).await
}

/// Creates a compacted topic unless it exists: each key keeps its latest message (the results
/// topic, whose updates each replace their process's last).
pub async fn ensure_compacted_topic(
    args: &KafkaArgs,
    topic: &str,
    partitions_wanted: i32,
) -> Result<usize> {
    create_topic(
        args,
        topic,
        partitions_wanted,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("segment.ms", "600000"),
        ],
    )
    .await
}

/// Creates a topic the Outbox Event Router writes to, unless it exists, with the broker's
/// append time as each record's timestamp: the router stamps its records with the capture time
/// (T1), which would otherwise pass for the time the record reached Kafka (T2).
pub async fn ensure_routed_topic(
    args: &KafkaArgs,
    topic: &str,
    partitions_wanted: i32,
) -> Result<usize> {
    create_topic(
        args,
        topic,
        partitions_wanted,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await
}

async fn create_topic(
    args: &KafkaArgs,
    topic: &str,
    partitions_wanted: i32,
    configs: &[(&str, &str)],
) -> Result<usize> {
    if let Some(p) = partitions(args, topic).await? {
        return Ok(p.len());
    }
    let admin = admin(args)?;
    let mut new = NewTopic::new(topic, partitions_wanted, replication(args));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let res = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| admin.inner().context().explain(args, e))?;
    for r in res {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                return Err(crate::exit::config(format!(
                    "Kafka refused topic {t}'s replication factor ({}): set --replication-factor \
                     (KAFKA_REPLICATION_FACTOR) to at most the number of brokers",
                    args.replication_factor
                        .map_or("the broker's default".into(), |r| r.to_string())
                )))
            }
            Err((t, code)) => bail!("creating Kafka topic {t} failed: {code}"),
        }
    }
    // Metadata reaches the broker's cache shortly after creation.
    for _ in 0..50 {
        if let Some(p) = partitions(args, topic).await? {
            return Ok(p.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Kafka topic {topic} was created but does not show in metadata")
}

/// The Kafka cluster's id, which scopes what pipedemo records as its own there.
pub async fn cluster_id(args: &KafkaArgs) -> Result<String> {
    with_client(args, "", false, |c, args, _| {
        c.client()
            .fetch_cluster_id(TIMEOUT)
            .ok_or_else(|| failed(c, args, "no cluster id in the metadata"))
    })
    .await
}

/// Deletes `topics` (those that exist).
pub async fn delete_topics(args: &KafkaArgs, topics: &[String]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(args)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let res = admin
        .delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| admin.inner().context().explain(args, e))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, code)) => bail!("deleting Kafka topic {t} failed: {code}"),
        }
    }
    Ok(())
}

/// A consumer group as the coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// `Empty` (offsets, no members), `Stable`, `PreparingRebalance`, …
    pub state: String,
    /// Members now.
    pub members: usize,
}

/// The group `group`, or `None` when the coordinator does not know it (`Dead`: no members
/// and no committed offsets on any topic).
pub async fn group_state(args: &KafkaArgs, group: &str) -> Result<Option<GroupState>> {
    with_client(args, group, false, |c, args, group| {
        let list = c
            .fetch_group_list(Some(group), TIMEOUT)
            .map_err(|e| failed(c, args, e))?;
        Ok(list
            .groups()
            .iter()
            .find(|g| g.name() == group)
            .filter(|g| g.state() != "Dead")
            .map(|g| GroupState {
                state: g.state().to_owned(),
                members: g.members().len(),
            }))
    })
    .await
}

/// Deletes the consumer group `args.group` (it must have no running members).
pub async fn delete_group(args: &KafkaArgs) -> Result<()> {
    let admin = admin(args)?;
    let res = admin
        .delete_groups(
            &[&args.group],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| admin.inner().context().explain(args, e))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((g, code)) => bail!(
                "deleting consumer group {g} failed: {code}; stop any `pipedemo consume` in it first"
            ),
        }
    }
    Ok(())
}

/// Where `reset_group` moves the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// The first offset still in the topic: everything is consumed again.
    Earliest,
    /// The end: only messages produced from now on are consumed.
    End,
    /// The first message at or after this time (ms since the Unix epoch), or the end.
    Timestamp(i64),
}

/// Commits offsets for `group` on every partition of `topic`. The group must have no running
/// members.
pub async fn reset_group(args: &KafkaArgs, topic: &str, to: ResetTo) -> Result<()> {
    let parts = partitions(args, topic)
        .await?
        .ok_or_else(|| missing_topic(args, topic))?;
    let args = args.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut config = client_config(&args);
        config
            .set("group.id", &args.group)
            .set("enable.auto.commit", "false");
        let c: BaseConsumer<ProbeContext> = super::client::created(
            config.create_with_context(ProbeContext::default()),
            "creating a Kafka consumer",
        )?;
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            let (low, high) = c
                .fetch_watermarks(&topic, p, TIMEOUT)
                .map_err(|e| failed(&c, &args, e))?;
            let off = match to {
                ResetTo::Earliest => low,
                ResetTo::End | ResetTo::Timestamp(_) => high,
            };
            tpl.add_partition_offset(&topic, p, Offset::Offset(off))?;
        }
        if let ResetTo::Timestamp(ms) = to {
            let mut query = TopicPartitionList::new();
            for e in tpl.elements() {
                query.add_partition_offset(&topic, e.partition(), Offset::Offset(ms))?;
            }
            let found = c
                .offsets_for_times(query, TIMEOUT)
                .map_err(|e| failed(&c, &args, e))?;
            for e in found.elements() {
                if let Offset::Offset(o) = e.offset() {
                    tpl.set_partition_offset(&topic, e.partition(), Offset::Offset(o))?;
                }
            }
        }
        // A member killed a moment ago stays in the group until its session times out (10 s
        // for pipedemo's consumers, 30 s for a static one: `consume --instance-id`, a chaos
        // run's), and the group refuses a reset meanwhile: wait that long before telling the
        // user a consumer still runs.
        let deadline = std::time::Instant::now() + MEMBER_GONE_WITHIN;
        loop {
            match c.commit(&tpl, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(e) if still_member(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(anyhow!(
                        "cannot reset consumer group {} ({e}); stop any running `pipedemo \
                         consume` or `load` in that group and retry",
                        args.group
                    ))
                }
            }
        }
    })
    .await?
}

/// How long a dead member can keep a group from being reset: a static member's session
/// timeout and some slack.
const MEMBER_GONE_WITHIN: Duration = Duration::from_secs(35);

/// Whether a commit failed because the group has (or just had) members.
fn still_member(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
        )
    )
}

/// Deletes every message now in `topic` (its partitions start again at their current end
/// offsets), so that "from the start" means from this demo on. Returns how many were deleted.
pub async fn clear_topic(args: &KafkaArgs, topic: &str) -> Result<i64> {
    let marks = watermarks(args, topic).await?;
    let doomed: i64 = marks.iter().map(|w| w.high - w.low).sum();
    if doomed == 0 {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    for w in &marks {
        tpl.add_partition_offset(topic, w.partition, Offset::Offset(w.high))?;
    }
    let admin = admin(args)?;
    let res = admin
        .delete_records(&tpl, &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .map_err(|e| anyhow!("deleting the old messages of Kafka topic {topic} failed: {e}"))?;
    for e in res.elements() {
        if let Err(err) = e.error() {
            bail!(
                "deleting the old messages of Kafka topic {topic} partition {} failed: {err}",
                e.partition()
            );
        }
    }
    Ok(doomed)
}
