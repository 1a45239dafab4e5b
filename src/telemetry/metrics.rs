//! Per-event timing records and the channel they travel on.
//!
//! The consumer's hot path only sends [`MetricEvent`]s on an unbounded channel; whoever holds
//! the receiver (the `load` command, the dashboard, the metrics-file writer) aggregates them.
//! One JSON line per processed event goes to the metrics file, which `verify` reads back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::event::EventType;
use crate::telemetry::tag::RunTag;

/// The timestamps of one event through the pipeline, µs since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timing {
    /// T0: the outbox row's `created_at` (`clock_timestamp()` at insert).
    pub t0_us: i64,
    /// When the row's transaction committed (Debezium `source.ts_us`).
    pub commit_us: Option<i64>,
    /// T1: Debezium processed the change (envelope `ts_us`).
    pub t1_us: i64,
    /// T2: the Kafka record's timestamp (producer create time; millisecond resolution).
    pub t2_us: i64,
    /// T3: the consumer received the message.
    pub t3_us: i64,
    /// T4: the handler started on it.
    pub t4_us: i64,
    /// T5: MongoDB acknowledged the write.
    pub t5_us: i64,
}

/// Stage durations derived from a [`Timing`], µs.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stages {
    /// CDC capture: T1 − T0.
    pub cdc_us: i64,
    /// Kafka delivery: T2 − T1.
    pub kafka_us: i64,
    /// Consumer poll: T3 − T2.
    pub poll_us: i64,
    /// Processing: T5 − T3 (parse, handler, MongoDB write).
    pub processing_us: i64,
    /// End to end: T5 − T0.
    pub total_us: i64,
}

/// 2000-01-01T00:00:00Z, µs: an event time before it is not a real one.
const YEAR_2000_US: i64 = 946_684_800_000_000;
/// How far an event time may lie after its MongoDB acknowledgement (T5): clocks of one
/// machine do not drift a minute.
const FUTURE_SLACK_US: i64 = 60_000_000;
/// How much a stage may come out negative: the Kafka timestamp (T2) has millisecond
/// resolution, so T2 − T1 can be up to 1 ms below zero.
const ROUNDING_US: i64 = 1_000;

impl Timing {
    /// The stage durations (saturating: a message with absurd times cannot overflow them).
    pub fn stages(&self) -> Stages {
        Stages {
            cdc_us: self.t1_us.saturating_sub(self.t0_us),
            kafka_us: self.t2_us.saturating_sub(self.t1_us),
            poll_us: self.t3_us.saturating_sub(self.t2_us),
            processing_us: self.t5_us.saturating_sub(self.t3_us),
            total_us: self.t5_us.saturating_sub(self.t0_us),
        }
    }

    /// Whether these times can be an event's journey: each after 2000, none more than a
    /// minute after T5, no stage negative beyond the Kafka timestamp's rounding. An event with
    /// implausible times (a producer's bad clock, a hand-written message) is still applied,
    /// but kept out of every latency figure and counted apart.
    pub fn plausible(&self) -> bool {
        let latest = self.t5_us.saturating_add(FUTURE_SLACK_US);
        let times = [
            self.t0_us, self.t1_us, self.t2_us, self.t3_us, self.t4_us, self.t5_us,
        ];
        let s = self.stages();
        times.iter().all(|t| (YEAR_2000_US..=latest).contains(t))
            && [s.cdc_us, s.kafka_us, s.poll_us, s.processing_us, s.total_us]
                .iter()
                .all(|d| *d >= -ROUNDING_US)
    }
}

/// One processed event: written now, or found already written (a replay).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    /// The outbox event id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: EventType,
    /// Its aggregate.
    pub aggregate_id: Uuid,
    /// A short human label (username, activity title, joining user).
    pub label: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// False when the read model already had this event (nothing was written).
    pub applied: bool,
    /// T0–T5.
    #[serde(flatten)]
    pub timing: Timing,
    /// Stage durations, for readers of the file.
    pub stages: Stages,
    /// The run and phase the row's generator tagged it with (none for rows pipedemo did not
    /// generate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<RunTag>,
}

/// A message that could not be handled; it went to the dead-letter topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorRecord {
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// The event id, when the message was readable that far.
    pub event_id: Option<Uuid>,
    /// The event type, when known.
    pub event_type: Option<String>,
    /// Why.
    pub reason: String,
    /// When it was dead-lettered, µs.
    pub at_us: i64,
    /// The run and phase of the event, when the message was readable that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<RunTag>,
}

/// Everything the consumer reports.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricEvent {
    /// An event reached its read model.
    Event(EventRecord),
    /// A message was dead-lettered.
    Error(ErrorRecord),
    /// A message was skipped on purpose (snapshot read, delete, tombstone, …).
    Skipped {
        /// Kafka partition.
        partition: i32,
        /// Kafka offset.
        offset: i64,
        /// Why it was skipped.
        reason: String,
    },
    /// MongoDB (or Kafka) is failing; the consumer is retrying and commits nothing
    /// meanwhile. Attempt 0 says the outage is over (Kafka answered again).
    Outage {
        /// The error.
        reason: String,
        /// Retry number (0: over).
        attempt: u32,
    },
}

/// The sending half, held by the consumer.
pub type MetricsSender = mpsc::UnboundedSender<MetricEvent>;
/// The receiving half.
pub type MetricsReceiver = mpsc::UnboundedReceiver<MetricEvent>;

/// A new metrics channel.
pub fn channel() -> (MetricsSender, MetricsReceiver) {
    mpsc::unbounded_channel()
}

/// Appends metric events to a JSON-lines file. Several processes may append to one file
/// (consumers scaled out in one directory): lines are buffered whole and written with one
/// `write` each time, so that an `O_APPEND` file never gets half a line between another
/// process's lines.
pub struct MetricsFile {
    file: File,
    buf: Vec<u8>,
}

/// Buffered bytes that make [`MetricsFile`] write them out.
const FLUSH_AT: usize = 64 * 1024;

impl MetricsFile {
    /// Opens `path` for appending, creating it if needed.
    pub fn append(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory of {}", path.display()))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot write the metrics file {} (set METRICS_FILE to a writable path)",
                    path.display()
                )
            })?;
        Ok(MetricsFile {
            file: f,
            buf: Vec::with_capacity(FLUSH_AT),
        })
    }

    /// Writes one event as a line.
    pub fn write(&mut self, ev: &MetricEvent) -> Result<()> {
        serde_json::to_writer(&mut self.buf, ev)?;
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered lines to the file, whole.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Drop for MetricsFile {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Reads a metrics file back. Lines that do not parse are counted, not fatal.
pub fn read_file(path: &Path) -> Result<(Vec<MetricEvent>, usize)> {
    let mut events = Vec::new();
    let bad = each_in_file(path, |ev| events.push(ev))?;
    Ok((events, bad))
}

/// Hands each record of a metrics file to `f` as it is read, holding one line at a time: a
/// long soak's file can be far larger than memory. Returns how many lines did not parse.
pub fn each_in_file(path: &Path, mut f: impl FnMut(MetricEvent)) -> Result<usize> {
    let file = File::open(path).with_context(|| {
        format!(
            "cannot read the metrics file {} (run `pipedemo load` first, or set METRICS_FILE)",
            path.display()
        )
    })?;
    let mut bad = 0;
    let mut line = String::new();
    let mut reader = BufReader::new(file);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(ev) => f(ev),
            Err(_) => bad += 1,
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_times_are_told_apart_and_never_overflow() {
        let now = 1_795_377_600_000_000;
        let ok = Timing {
            t0_us: now,
            commit_us: None,
            t1_us: now + 2_000,
            // T2 rounded down to the millisecond, 0.6 ms before T1.
            t2_us: now + 1_400,
            t3_us: now + 3_000,
            t4_us: now + 3_100,
            t5_us: now + 5_000,
        };
        assert!(ok.plausible());
        for bad in [
            Timing {
                t1_us: i64::MAX,
                ..ok
            },
            Timing { t0_us: -5, ..ok },
            Timing { t0_us: 0, ..ok },
            Timing {
                t0_us: YEAR_2000_US - 1,
                ..ok
            },
            Timing {
                t0_us: now + 5_000 + FUTURE_SLACK_US + 1,
                ..ok
            },
            Timing {
                t2_us: now - 2_000,
                ..ok
            },
            Timing {
                t1_us: i64::MIN,
                ..ok
            },
        ] {
            assert!(!bad.plausible(), "{bad:?}");
            // Saturating, never a panic or a wrap.
            let _ = bad.stages();
        }
        assert_eq!(
            Timing {
                t1_us: i64::MAX,
                t0_us: -1,
                ..ok
            }
            .stages()
            .cdc_us,
            i64::MAX
        );
    }

    #[test]
    fn stages_are_differences_of_the_timestamps() {
        let t = Timing {
            t0_us: 1_000,
            commit_us: Some(1_100),
            t1_us: 5_000,
            t2_us: 6_000,
            t3_us: 6_500,
            t4_us: 6_600,
            t5_us: 9_000,
        };
        let s = t.stages();
        assert_eq!(
            (s.cdc_us, s.kafka_us, s.poll_us, s.processing_us, s.total_us),
            (4_000, 1_000, 500, 2_500, 8_000)
        );
    }

    #[test]
    fn file_round_trips_events() {
        let dir = std::env::temp_dir().join(format!("pipedemo-metrics-{}", Uuid::new_v4()));
        let path = dir.join("m.jsonl");
        let ev = MetricEvent::Skipped {
            partition: 0,
            offset: 7,
            reason: "snapshot read".into(),
        };
        let mut f = MetricsFile::append(&path).unwrap();
        f.write(&ev).unwrap();
        f.flush().unwrap();
        std::fs::write(dir.join("other"), "").unwrap();
        let (events, bad) = read_file(&path).unwrap();
        assert_eq!((events, bad), (vec![ev], 0));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
