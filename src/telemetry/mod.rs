//! Measuring the pipeline: per-event timing records travel on a channel ([`metrics`]) and are
//! folded into the run's live state ([`live`]) and latency histograms ([`stats`]). Nothing here
//! talks to a service: the pipeline sends, and `show` reads; the [`exporter`] serves the live
//! state to Prometheus.

pub mod clock;
pub mod cpu;
pub mod exporter;
pub mod gc;
pub mod health;
pub mod live;
pub mod metrics;
pub mod results;
pub mod results_file;
pub mod stall;
pub mod stats;
pub mod tag;
