//! Proof that the pipeline lost and duplicated nothing: [`verify`] traces every outbox event
//! into the read models; [`checksum`] fingerprints the read models for replay comparisons;
//! [`capacity`] decides which rates the pipeline sustains within its latency target;
//! [`targets`] and [`thresholds`] decide whether a run met what was asked of it, on the
//! [`figures`] of its document; [`compare`] sets two runs' figures side by side.

pub mod capacity;
pub mod checksum;
pub mod compare;
pub mod figures;
pub mod targets;
pub mod thresholds;
pub mod verify;
