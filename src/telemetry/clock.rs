//! Wall-clock timestamps in microseconds since the Unix epoch: the unit of T0–T5.
//!
//! Every timestamp of the pipeline comes from this machine's clock (PostgreSQL's
//! `clock_timestamp()`, Debezium's and Kafka's JVM clocks, and this process), so stage
//! differences need no clock-sync correction when the stack runs on one host.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
