//! Latency statistics over full-resolution HdrHistograms (µs, 3 significant digits), and the
//! aggregation of a run's metric events into per-stage and per-type summaries.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::event::EventType;
use crate::telemetry::metrics::{EventRecord, MetricEvent, Stages};

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    h: Histogram<u64>,
    /// Samples below zero (clock resolution: Kafka timestamps are whole milliseconds); they are
    /// recorded as 0 and counted here so the report can say so.
    pub negative: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            // 1 µs to 1 hour; values above are clamped to the top (saturating record).
            h: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            negative: 0,
        }
    }
}

/// The most points of a [`Latency::cdf`], about.
pub const CDF_POINTS: usize = 1000;

/// Percentiles and moments of one latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Standard deviation.
    pub stddev_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 75th percentile.
    pub p75_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Records one duration in µs.
    pub fn record(&mut self, us: i64) {
        if us < 0 {
            self.negative += 1;
        }
        self.h.saturating_record(us.max(1) as u64);
    }

    /// Adds `other`'s samples (same bounds, so nothing is lost).
    pub fn add(&mut self, other: &Latency) {
        let _ = self.h.add(&other.h);
        self.negative += other.negative;
    }

    /// The histogram in HdrHistogram's compressed V2 form (what other HDR tools read too).
    pub fn encode(&self) -> Vec<u8> {
        use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
        let mut out = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.h, &mut out)
            .expect("a histogram serialises into memory");
        out
    }

    /// A histogram [`Latency::encode`] wrote. Its samples are re-recorded into this type's own
    /// bounds, so a histogram of other bounds cannot make a later [`Latency::add`] fail.
    pub fn decode(bytes: &[u8], negative: u64) -> Result<Latency, String> {
        use hdrhistogram::serialization::Deserializer;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| format!("not an HDR histogram ({e:?})"))?;
        let mut l = Latency {
            negative,
            ..Latency::default()
        };
        if l.h.add(&h).is_err() {
            for v in h.iter_recorded() {
                l.h.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        Ok(l)
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// The sum of all samples, µs (from the histogram, so within its 3-digit precision).
    pub fn sum_us(&self) -> f64 {
        self.h.mean() * self.h.len() as f64
    }

    /// Samples per bucket for ascending upper bounds `bounds_us` (each bucket holds the
    /// samples above the previous bound up to its own), then one more bucket for the rest.
    pub fn bucket_counts(&self, bounds_us: &[u64]) -> Vec<u64> {
        // One pass over the recorded values (a count per bound would walk the histogram's
        // slots from 0 to the bound each time: the heat map asks this of every second).
        let mut out = vec![0; bounds_us.len() + 1];
        for v in self.h.iter_recorded() {
            let value = self.h.lowest_equivalent(v.value_iterated_to());
            out[bounds_us.partition_point(|b| *b < value)] += v.count_at_value();
        }
        out
    }

    /// The value at a quantile (0.0–1.0), ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.h.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// The summary.
    pub fn summary(&self) -> Summary {
        if self.h.is_empty() {
            return Summary::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Summary {
            count: self.h.len(),
            min_ms: ms(self.h.min()),
            mean_ms: self.h.mean() / 1000.0,
            stddev_ms: self.h.stdev() / 1000.0,
            p50_ms: ms(self.h.value_at_quantile(0.50)),
            p75_ms: ms(self.h.value_at_quantile(0.75)),
            p90_ms: ms(self.h.value_at_quantile(0.90)),
            p95_ms: ms(self.h.value_at_quantile(0.95)),
            p99_ms: ms(self.h.value_at_quantile(0.99)),
            p999_ms: ms(self.h.value_at_quantile(0.999)),
            max_ms: ms(self.h.max()),
        }
    }

    /// Each recorded value (µs) with its count, for plots.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        let total = self.h.len() as f64;
        let mut seen = 0u64;
        let all: Vec<(f64, f64)> = self
            .h
            .iter_recorded()
            .map(|v| {
                seen += v.count_since_last_iteration();
                (v.value_iterated_to() as f64 / 1000.0, seen as f64 / total)
            })
            .collect();
        // At most about CDF_POINTS, the last (the max) always kept: a plot's size must not
        // grow with a long run's spread of values.
        let every = all.len().div_ceil(CDF_POINTS).max(1);
        let last = all.len().saturating_sub(1);
        all.into_iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || *i == last)
            .map(|(_, p)| p)
            .collect()
    }
}

/// A histogram travels as base64 of its compressed V2 form, with its count of negative samples.
#[derive(Serialize, Deserialize)]
struct Encoded {
    hdr: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    negative: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        Encoded {
            hdr: base64::engine::general_purpose::STANDARD.encode(self.encode()),
            negative: self.negative,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let e = Encoded::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e.hdr.as_bytes())
            .map_err(serde::de::Error::custom)?;
        Latency::decode(&bytes, e.negative).map_err(serde::de::Error::custom)
    }
}

/// A stage of the pipeline, the same key in every report and table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// CDC capture, T1 − T0: from the outbox row to Debezium.
    #[serde(rename = "1_cdc_capture")]
    Cdc,
    /// Kafka delivery, T2 − T1: from Debezium to the Kafka record.
    #[serde(rename = "2_kafka_delivery")]
    Kafka,
    /// Consumer poll, T3 − T2: from the Kafka record to the consumer.
    #[serde(rename = "3_consumer_poll")]
    Poll,
    /// Processing, T5 − T3: decoding, the handler and the MongoDB write.
    #[serde(rename = "4_processing")]
    Processing,
    /// End to end, T5 − T0.
    #[serde(rename = "total")]
    Total,
}

impl Stage {
    /// The four stages that add up to [`Stage::Total`], in pipeline order.
    pub const PARTS: [Stage; 4] = [Stage::Cdc, Stage::Kafka, Stage::Poll, Stage::Processing];
    /// Every stage, end to end first (the order of the reports' tables).
    pub const ALL: [Stage; 5] = [
        Stage::Total,
        Stage::Cdc,
        Stage::Kafka,
        Stage::Poll,
        Stage::Processing,
    ];

    /// The key used in JSON and as a metric label (`"1_cdc_capture"` … `"total"`).
    pub const fn key(self) -> &'static str {
        match self {
            Stage::Cdc => "1_cdc_capture",
            Stage::Kafka => "2_kafka_delivery",
            Stage::Poll => "3_consumer_poll",
            Stage::Processing => "4_processing",
            Stage::Total => "total",
        }
    }

    /// The name in `--threshold` expressions and `compare` tables (`cdc` … `processing`,
    /// `e2e`).
    pub const fn short(self) -> &'static str {
        match self {
            Stage::Cdc => "cdc",
            Stage::Kafka => "kafka",
            Stage::Poll => "poll",
            Stage::Processing => "processing",
            Stage::Total => "e2e",
        }
    }

    /// A short name with its timestamps, for tables.
    pub const fn label(self) -> &'static str {
        match self {
            Stage::Cdc => "CDC T1-T0",
            Stage::Kafka => "Kafka T2-T1",
            Stage::Poll => "poll T3-T2",
            Stage::Processing => "processing T5-T3",
            Stage::Total => "end-to-end T5-T0",
        }
    }

    /// This stage's duration in an event's stage durations, µs.
    pub const fn of(self, s: &Stages) -> i64 {
        match self {
            Stage::Cdc => s.cdc_us,
            Stage::Kafka => s.kafka_us,
            Stage::Poll => s.poll_us,
            Stage::Processing => s.processing_us,
            Stage::Total => s.total_us,
        }
    }
}

/// Histograms for each stage of the pipeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageLatencies {
    /// In the order of [`Stage`]'s variants.
    by_stage: [Latency; 5],
}

impl StageLatencies {
    /// Records one event's stages.
    pub fn record(&mut self, r: &EventRecord) {
        let s = r.timing.stages();
        for stage in Stage::ALL {
            self.by_stage[stage as usize].record(stage.of(&s));
        }
    }

    /// The histogram of one stage.
    pub fn get(&self, stage: Stage) -> &Latency {
        &self.by_stage[stage as usize]
    }

    /// Adds `other`'s samples, stage by stage.
    pub fn add(&mut self, other: &StageLatencies) {
        for (mine, theirs) in self.by_stage.iter_mut().zip(&other.by_stage) {
            mine.add(theirs);
        }
    }

    /// Samples below zero over the four stages (clock resolution).
    pub fn negative(&self) -> u64 {
        Stage::PARTS.iter().map(|s| self.get(*s).negative).sum()
    }

    /// Summaries by stage.
    pub fn summaries(&self) -> BTreeMap<Stage, Summary> {
        Stage::ALL
            .iter()
            .map(|s| (*s, self.get(*s).summary()))
            .collect()
    }
}

/// The end-to-end summary of a stage table (empty when there is none).
pub fn total(stages: &BTreeMap<Stage, Summary>) -> Summary {
    stages.get(&Stage::Total).cloned().unwrap_or_default()
}

/// Aggregates a run's metric events. Every field adds up across processes ([`RunStats::add`]):
/// the figures of several consumers merged are the figures of one that saw every event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// Events applied now, by type.
    pub applied: BTreeMap<EventType, u64>,
    /// Events found already applied (replays), by type.
    pub already_applied: BTreeMap<EventType, u64>,
    /// Dead-lettered messages.
    pub errors: u64,
    /// Skipped messages (snapshot reads, deletes, tombstones).
    pub skipped: u64,
    /// Stage latencies of applied events.
    pub stages: StageLatencies,
    /// End-to-end latency of applied events, by type.
    pub by_type: BTreeMap<EventType, Latency>,
    /// Earliest T0 seen.
    pub first_t0_us: Option<i64>,
    /// Latest T5 seen.
    pub last_t5_us: Option<i64>,
    /// Events applied whose times cannot be real ([`crate::telemetry::metrics::Timing::plausible`]):
    /// counted here, kept out of every latency figure.
    pub implausible: u64,
}

impl RunStats {
    /// Takes one metric event into account. Only applied events count towards latency: a
    /// replayed event's "latency" would measure the replay, not the pipeline.
    pub fn record(&mut self, ev: &MetricEvent) {
        match ev {
            MetricEvent::Event(r) if r.applied && !r.timing.plausible() => {
                *self.applied.entry(r.event_type).or_default() += 1;
                self.implausible += 1;
            }
            MetricEvent::Event(r) if r.applied => {
                *self.applied.entry(r.event_type).or_default() += 1;
                self.stages.record(r);
                self.by_type
                    .entry(r.event_type)
                    .or_default()
                    .record(r.timing.stages().total_us);
                self.first_t0_us = Some(
                    self.first_t0_us
                        .map_or(r.timing.t0_us, |t| t.min(r.timing.t0_us)),
                );
                self.last_t5_us = Some(
                    self.last_t5_us
                        .map_or(r.timing.t5_us, |t| t.max(r.timing.t5_us)),
                );
            }
            MetricEvent::Event(r) => {
                *self.already_applied.entry(r.event_type).or_default() += 1;
            }
            MetricEvent::Error(_) => self.errors += 1,
            MetricEvent::Skipped { .. } => self.skipped += 1,
            MetricEvent::Outage { .. } => {}
        }
    }

    /// Adds another process's figures: counts add, histograms add bucket by bucket, the
    /// span takes the earliest start and the latest end.
    pub fn add(&mut self, o: &RunStats) {
        for (t, n) in &o.applied {
            *self.applied.entry(*t).or_default() += n;
        }
        for (t, n) in &o.already_applied {
            *self.already_applied.entry(*t).or_default() += n;
        }
        self.errors += o.errors;
        self.skipped += o.skipped;
        self.implausible += o.implausible;
        self.stages.add(&o.stages);
        for (t, l) in &o.by_type {
            self.by_type.entry(*t).or_default().add(l);
        }
        self.first_t0_us = match (self.first_t0_us, o.first_t0_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_t5_us = match (self.last_t5_us, o.last_t5_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// End-to-end latency summaries by type.
    pub fn by_type_summaries(&self) -> BTreeMap<EventType, Summary> {
        self.by_type
            .iter()
            .map(|(k, v)| (*k, v.summary()))
            .collect()
    }

    /// Events applied, all types.
    pub fn applied_total(&self) -> u64 {
        self.applied.values().sum()
    }

    /// Seconds from the first T0 to the last T5.
    pub fn span_secs(&self) -> f64 {
        match (self.first_t0_us, self.last_t5_us) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
            _ => 0.0,
        }
    }

    /// Applied events per second over [`Self::span_secs`].
    pub fn throughput(&self) -> f64 {
        let s = self.span_secs();
        if s > 0.0 {
            self.applied_total() as f64 / s
        } else {
            0.0
        }
    }
}

/// The seed's verdict on a p95 end-to-end latency.
pub fn verdict(p95_ms: f64) -> &'static str {
    if p95_ms < 50.0 {
        "EXCELLENT - 95% of events processed in < 50ms"
    } else if p95_ms < 100.0 {
        "GOOD - 95% of events processed in < 100ms"
    } else if p95_ms < 200.0 {
        "ACCEPTABLE - 95% of events processed in < 200ms"
    } else {
        "NEEDS OPTIMIZATION - high p95 latency"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_the_samples_without_losing_any() {
        let mut l = Latency::default();
        for ms in 1..=100 {
            l.record(ms * 1000);
        }
        let b = l.bucket_counts(&[10_000, 50_000, 200_000]);
        assert_eq!(b, vec![10, 40, 50, 0]);
        assert_eq!(Latency::default().bucket_counts(&[1, 2]), vec![0, 0, 0]);
        assert!((l.sum_us() / 1000.0 - 5050.0).abs() < 5.0, "{}", l.sum_us());
    }

    #[test]
    fn stage_keys_are_the_json_keys() {
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.key());
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::default();
        for ms in 1..=1000 {
            l.record(ms * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_ms, 1.0);
        assert!((s.p50_ms - 500.0).abs() <= 0.5, "{}", s.p50_ms);
        assert!((s.p95_ms - 950.0).abs() <= 0.5, "{}", s.p95_ms);
        assert!((s.p99_ms - 990.0).abs() <= 0.5, "{}", s.p99_ms);
        assert!((s.max_ms - 1000.0).abs() <= 0.5, "{}", s.max_ms);
        assert!((s.mean_ms - 500.5).abs() <= 0.5, "{}", s.mean_ms);
        assert!((s.stddev_ms - 288.7).abs() <= 1.0, "{}", s.stddev_ms);
    }

    #[test]
    fn negative_samples_are_counted_not_hidden() {
        let mut l = Latency::default();
        l.record(-300);
        l.record(2_000);
        assert_eq!(l.negative, 1);
        assert_eq!(l.count(), 2);
    }

    #[test]
    fn verdict_follows_the_seed_thresholds() {
        assert!(verdict(10.0).starts_with("EXCELLENT"));
        assert!(verdict(50.0).starts_with("GOOD"));
        assert!(verdict(150.0).starts_with("ACCEPTABLE"));
        assert!(verdict(250.0).starts_with("NEEDS"));
    }
}
