//! Kafka plumbing, one job a module: the [`client`] settings and the errors that name the
//! setting to change, [`admin`] for setup and cleanup, the group's [`lag`], and the
//! [`dead_letters`] and the results on a [`producer`] that sleeps between deliveries, and [`headers`] read whatever bytes they hold.

pub mod admin;
pub mod client;
pub mod dead_letters;
pub mod headers;
pub mod lag;
pub mod producer;
pub mod results;

pub use admin::{
    clear_topic, cluster_id, delete_group, delete_topics, ensure_compacted_topic,
    ensure_routed_topic, ensure_topic, group_state, require_topics, reset_group, GroupState,
    ResetTo,
};
pub use client::{client_config, misconfigured, partitions, ProbeContext};
pub use dead_letters::DeadLetters;
pub use lag::{
    behind, committed, waiting, watermarks, watermarks_of, LagProbe, Position, TopicEnds, Waiting,
    Watermarks,
};
