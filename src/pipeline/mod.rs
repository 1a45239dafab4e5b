//! The pipeline, in the order data flows through it: generated events are written to the
//! PostgreSQL outbox, Debezium (running in Kafka Connect) captures them into Kafka, and the
//! consumer decodes each envelope, lets a handler describe the write, and the store performs it
//! in MongoDB. Preparing what it runs on (connector, ownership marks) is
//! [`crate::provision`]'s job.

pub mod backoff;
pub mod bounded;
pub mod consumer;
pub mod diagnose;
pub mod envelope;
pub mod generator;
pub mod handlers;
pub mod kafka;
pub mod outbox;
pub mod routed;
pub mod store;
pub mod writer;
