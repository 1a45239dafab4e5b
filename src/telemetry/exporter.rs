//! `--metrics-listen ADDR`: the live figures as an OpenMetrics `/metrics` endpoint, for
//! Prometheus and whatever reads it (Grafana), so that soak runs can be watched with the tools
//! operators already have. Every scrape reads the same live state the dashboard draws.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::event::EventType;
use crate::telemetry::health::ConnectorState;
use crate::telemetry::live::{Live, Shared};
use crate::telemetry::stats::{Latency, Stage};

/// Upper bounds of the latency histograms' buckets, µs (1 ms to 30 s).
const BOUNDS_US: [u64; 16] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 50_000, 75_000, 100_000, 200_000, 300_000,
    500_000, 1_000_000, 2_000_000, 5_000_000, 30_000_000,
];

/// How long one encoding of the figures serves every scrape.
const FRESH: std::time::Duration = std::time::Duration::from_millis(200);

/// Serves `GET /metrics` on `addr` from `live` on a thread of its own, for the rest of the
/// process. Fails at once when the address cannot be bound (in use, no permission).
pub fn serve(addr: SocketAddr, live: Shared) -> Result<SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("--metrics-listen {addr}: cannot listen there"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .context("the metrics endpoint is not on an IP address")?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(LiveCollector(live)));
    std::thread::Builder::new()
        .name("metrics-listen".into())
        .spawn(move || {
            // Encoding holds the run's lock: however often it is scraped, at most once per
            // FRESH, and every other scrape meanwhile gets the same text.
            let mut cached: Option<(std::time::Instant, String)> = None;
            for request in server.incoming_requests() {
                let response = if request.url().split('?').next() == Some("/metrics") {
                    let fresh = cached.as_ref().filter(|(at, _)| at.elapsed() < FRESH);
                    let encoded = match fresh {
                        Some((_, body)) => Ok(body.clone()),
                        None => {
                            let mut body = String::new();
                            prometheus_client::encoding::text::encode(&mut body, &registry).map(
                                |()| {
                                    cached = Some((std::time::Instant::now(), body.clone()));
                                    body
                                },
                            )
                        }
                    };
                    match encoded {
                        Ok(body) => tiny_http::Response::from_string(body).with_header(
                            tiny_http::Header::from_bytes(
                                "Content-Type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .expect("a valid header"),
                        ),
                        Err(e) => {
                            tiny_http::Response::from_string(e.to_string()).with_status_code(500)
                        }
                    }
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    tracing::info!(address = %bound, "OpenMetrics endpoint at http://{bound}/metrics");
    Ok(bound)
}

#[derive(Debug)]
struct LiveCollector(Shared);

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = self.0.lock();
        encode_live(&live, &mut encoder)
    }
}

/// Writes every figure of `live`.
fn encode_live(live: &Live, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let stats = &live.all;
    for (name, help, per_type) in [
        (
            "pipedemo_events_applied",
            "Events written to the read models, by type.",
            &stats.applied,
        ),
        (
            "pipedemo_events_already_applied",
            "Events found already in the read models (redelivered), by type.",
            &stats.already_applied,
        ),
    ] {
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for t in EventType::ALL {
            let n = per_type.get(&t).copied().unwrap_or(0);
            ConstCounter::new(n).encode(m.encode_family(&[("type", t.as_str())])?)?;
        }
    }
    for (name, help, n) in [
        (
            "pipedemo_events_dead_lettered",
            "Messages that could not be handled, kept on the dead-letter topic.",
            stats.errors,
        ),
        (
            "pipedemo_events_skipped",
            "Messages skipped on purpose (tombstones, snapshot reads, other tables).",
            stats.skipped,
        ),
        (
            "pipedemo_events_timing_implausible",
            "Events applied whose times cannot be real (before 2000, over a minute ahead, stages below zero): left out of the latency histograms.",
            stats.implausible,
        ),
    ] {
        let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(n).encode(m)?;
    }
    let mut m = encoder.encode_descriptor(
        "pipedemo_stage_latency",
        "Latency of each stage: T1-T0 CDC, T2-T1 Kafka, T3-T2 poll, T5-T3 processing (they add up to the end-to-end latency, which is its own histogram).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for stage in Stage::PARTS {
        histogram(
            stats.stages.get(stage),
            m.encode_family(&[("stage", stage.key())])?,
        )?;
    }
    let (from, e2e) = end_to_end(live);
    let mut m = encoder.encode_descriptor(
        "pipedemo_end_to_end_latency",
        "End-to-end latency: from each event's scheduled insert to its MongoDB write when the load is paced (from=\"schedule\", open loop: a stalled writer cannot hide it), else T5-T0 (from=\"insert\").",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    histogram(&e2e, m.encode_family(&[("from", from)])?)?;
    if !live.phases.is_empty() {
        let m = encoder.encode_descriptor(
            "pipedemo_events_offered",
            "Events handed to the outbox writers by this process's generator.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(live.offered).encode(m)?;
        let backlog: u64 = live.phases.iter().map(|p| p.waiting.len() as u64).sum();
        let m = encoder.encode_descriptor(
            "pipedemo_backlog",
            "Events inserted into the outbox by this process and not yet in the read models.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(backlog as i64).encode(m)?;
    }
    if let Some(lag) = live.health.lag {
        let m = encoder.encode_descriptor(
            "pipedemo_consumer_lag",
            "Messages on the outbox topic not yet committed by the consumer group.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(lag).encode(m)?;
    }
    if let Some(c) = live.health.connector {
        let mut m = encoder.encode_descriptor(
            "pipedemo_connector_state",
            "pipedemo's Debezium connector: 1 for the state Kafka Connect reports, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for state in ConnectorState::ALL {
            ConstGauge::new(i64::from(c.state == state))
                .encode(m.encode_family(&[("state", state.name())])?)?;
        }
        let m = encoder.encode_descriptor(
            "pipedemo_connector_tasks_running",
            "Tasks of pipedemo's connector that are RUNNING.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(c.tasks_running as i64).encode(m)?;
    }
    let m = encoder.encode_descriptor(
        "pipedemo_build",
        "pipedemo's version.",
        None,
        MetricType::Info,
    )?;
    prometheus_client::metrics::info::Info::new(vec![("version", env!("CARGO_PKG_VERSION"))])
        .encode(m)?;
    Ok(())
}

/// The end-to-end histogram and what it is measured from: the paced phases' latency from
/// schedule when there are any, else T5 − T0 of every event.
fn end_to_end(live: &Live) -> (&'static str, Latency) {
    let mut paced = live.phases.iter().filter(|p| p.paced).peekable();
    if paced.peek().is_none() {
        return ("insert", live.all.stages.get(Stage::Total).clone());
    }
    let mut l = Latency::default();
    for p in paced {
        l.add(&p.from_schedule);
    }
    ("schedule", l)
}

fn histogram(
    l: &Latency,
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let counts = l.bucket_counts(&BOUNDS_US);
    let buckets: Vec<(f64, u64)> = BOUNDS_US
        .iter()
        .map(|b| *b as f64 / 1e6)
        .chain([f64::MAX])
        .zip(counts)
        .collect();
    encoder.encode_histogram::<NoLabelSet>(l.sum_us() / 1e6, l.count(), &buckets, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::RunStats;

    #[test]
    fn the_text_has_counters_by_type_and_stage_histograms() {
        let mut live = Live::default();
        let mut stats = RunStats::default();
        stats.applied.insert(EventType::UserCreated, 3);
        stats.errors = 1;
        live.all = stats;
        live.health.lag = Some(7);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(LiveCollector(Shared::new(live))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("pipedemo_events_applied_total{type=\"UserCreated\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("pipedemo_events_dead_lettered_total 1"),
            "{text}"
        );
        assert!(text.contains("pipedemo_consumer_lag 7"), "{text}");
        // The parts only: a sum over `stage` must not count the end to end twice.
        assert!(!text.contains("stage=\"total\""), "{text}");
        assert!(
            text.contains(
                "pipedemo_stage_latency_seconds_bucket{le=\"+Inf\",stage=\"1_cdc_capture\"} 0"
            ),
            "{text}"
        );
        // Not generating here: T5 − T0, and neither offered events nor a backlog.
        assert!(
            text.contains("pipedemo_end_to_end_latency_seconds_count{from=\"insert\"} 0"),
            "{text}"
        );
        assert!(
            !text.contains("pipedemo_backlog") && !text.contains("offered"),
            "{text}"
        );
        assert!(text.contains("pipedemo_build_info{version="), "{text}");
        assert!(!text.contains("pipedemo_connector_state"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_paced_run_exports_latency_from_schedule_offered_events_and_the_connector() {
        let mut live = Live::default();
        live.begin_phase_of("load", 3);
        live.await_ids([uuid::Uuid::new_v4(), uuid::Uuid::new_v4()], Some(1));
        live.phases[0].from_schedule.record(40_000);
        live.health.connector = Some(crate::telemetry::health::ConnectorHealth {
            state: ConnectorState::Paused,
            tasks_running: 0,
            tasks: 1,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(LiveCollector(Shared::new(live))));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "pipedemo_end_to_end_latency_seconds_count{from=\"schedule\"} 1",
            "pipedemo_end_to_end_latency_seconds_bucket{le=\"0.05\",from=\"schedule\"} 1",
            "pipedemo_events_offered_total 2",
            "pipedemo_backlog 2",
            "pipedemo_connector_state{state=\"PAUSED\"} 1",
            "pipedemo_connector_state{state=\"RUNNING\"} 0",
            "pipedemo_connector_tasks_running 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
