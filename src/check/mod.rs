//! Proof that the pipeline lost and duplicated nothing: [`verify`] traces every outbox event
//! into the read models; [`checksum`] fingerprints the read models for replay comparisons;
//! [`capacity`] decides which rates the pipeline sustains within its latency target.

pub mod capacity;
pub mod checksum;
pub mod targets;
pub mod verify;
