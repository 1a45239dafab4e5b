//! Stop-the-world pauses of the stack's JVMs (Kafka, Connect), read from their unified GC
//! logs (`-Xlog:gc,safepoint:file=…:time,uptime`, as `scripts/stack.sh` starts them), so that a
//! capacity step that stalled can say whether a JVM pause came with the stall.

use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde::Serialize;

/// One stop-the-world pause.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pause {
    /// When it ended, µs since the epoch (the log line's time).
    pub at_us: i64,
    /// How long the JVM stood still, ms.
    pub ms: f64,
    /// What it was (a safepoint operation such as `G1CollectForAllocation`, or a GC pause).
    pub cause: String,
}

/// The pauses in a unified-logging text. Safepoint lines (every stop of the world, GC
/// included) are used when present; otherwise the GC pause lines.
pub fn parse(text: &str) -> Vec<Pause> {
    let mut safepoints = Vec::new();
    let mut gcs = Vec::new();
    for line in text.lines() {
        let Some(at_us) = line_time(line) else {
            continue;
        };
        if let Some(rest) = line.split("Safepoint \"").nth(1) {
            let cause = rest.split('"').next().unwrap_or("").to_owned();
            let total = rest
                .split("Total: ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok());
            if let Some(ns) = total {
                safepoints.push(Pause {
                    at_us,
                    ms: ns / 1e6,
                    cause,
                });
            }
        } else if line.contains(" Pause ") && line.trim_end().ends_with("ms") {
            let ms = line
                .trim_end()
                .trim_end_matches("ms")
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<f64>().ok());
            let cause = line
                .split(" Pause ")
                .nth(1)
                .and_then(|r| r.split(" (").next())
                .map(|k| format!("GC Pause {k}"))
                .unwrap_or_default();
            if let Some(ms) = ms {
                gcs.push(Pause { at_us, ms, cause });
            }
        }
    }
    if safepoints.is_empty() {
        gcs
    } else {
        safepoints
    }
}

/// The `[2026-11-30T07:40:01.123+0000]` decoration at the start of a line, in µs.
fn line_time(line: &str) -> Option<i64> {
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .ok()
        .map(|t| t.timestamp_micros())
}

/// What one JVM's pauses were within a span of time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PausesIn {
    /// The JVM (the log's name: `kafka`, `connect`).
    pub jvm: String,
    /// Pauses in the span.
    pub count: usize,
    /// Their sum, ms.
    pub total_ms: f64,
    /// The longest, ms (0 with none).
    pub max_ms: f64,
    /// The longest one's cause.
    pub max_cause: String,
}

/// Summarizes `pauses` of `jvm` that ended within `[from_us, to_us]`.
pub fn within(jvm: &str, pauses: &[Pause], from_us: i64, to_us: i64) -> PausesIn {
    let inside: Vec<&Pause> = pauses
        .iter()
        .filter(|p| p.at_us >= from_us && p.at_us <= to_us)
        .collect();
    let longest = inside.iter().max_by(|a, b| a.ms.total_cmp(&b.ms));
    PausesIn {
        jvm: jvm.to_owned(),
        count: inside.len(),
        total_ms: inside.iter().map(|p| p.ms).sum(),
        max_ms: longest.map_or(0.0, |p| p.ms),
        max_cause: longest.map_or(String::new(), |p| p.cause.clone()),
    }
}

/// The GC logs of the local stack: `logs/kafka-gc.log` and `logs/connect-gc.log` under
/// `STACK_DIR` (default `.stack` in the working directory), those that exist.
pub fn stack_logs() -> Vec<(String, PathBuf)> {
    let dir = std::env::var_os("STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".stack"));
    ["kafka", "connect"]
        .into_iter()
        .map(|jvm| {
            (
                jvm.to_owned(),
                dir.join("logs").join(format!("{jvm}-gc.log")),
            )
        })
        .filter(|(_, p)| p.is_file())
        .collect()
}

/// Each log's pauses within the span (logs that cannot be read are left out: this is a hint
/// for a stall, never a reason to fail a run).
pub fn pauses_between(logs: &[(String, PathBuf)], from_us: i64, to_us: i64) -> Vec<PausesIn> {
    logs.iter()
        .filter_map(|(jvm, path)| {
            let text = read_tail(path)?;
            Some(within(jvm, &parse(&text), from_us, to_us))
        })
        .collect()
}

/// The last 4 MB of a log: a step's pauses are at its end.
fn read_tail(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4 << 20))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[2026-11-30T07:40:01.100+0000][12.001s] Using G1
[2026-11-30T07:40:01.123+0000][12.024s] GC(3) Pause Young (Normal) (G1 Evacuation Pause) 51M->8M(768M) 3.012ms
[2026-11-30T07:40:01.124+0000][12.025s] Safepoint \"G1CollectForAllocation\", Time since last: 1000000 ns, Reaching safepoint: 20000 ns, Cleanup: 1000 ns, At safepoint: 3100000 ns, Total: 3121000 ns
[2026-11-30T07:40:05.500+0000][16.400s] Safepoint \"Cleanup\", Time since last: 4000000000 ns, Reaching safepoint: 50000 ns, Cleanup: 1000 ns, At safepoint: 40000 ns, Total: 91000 ns
[2026-11-30T07:40:09.000+0000][19.9s] truncated line";

    #[test]
    fn safepoints_are_every_pause_and_win_over_gc_lines() {
        let p = parse(LOG);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].cause, "G1CollectForAllocation");
        assert!((p[0].ms - 3.121).abs() < 1e-9);
        assert_eq!(p[0].at_us, 1_796_024_401_124_000);
    }

    #[test]
    fn gc_lines_are_used_without_safepoints() {
        let only_gc: String = LOG
            .lines()
            .filter(|l| !l.contains("Safepoint"))
            .collect::<Vec<_>>()
            .join("\n");
        let p = parse(&only_gc);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].cause, "GC Pause Young");
        assert!((p[0].ms - 3.012).abs() < 1e-9);
    }

    #[test]
    fn a_span_counts_only_its_pauses() {
        let p = parse(LOG);
        let first = p[0].at_us;
        let w = within("connect", &p, first - 1000, first + 1000);
        assert_eq!(
            (w.count, w.max_cause.as_str()),
            (1, "G1CollectForAllocation")
        );
        let none = within("kafka", &p, 0, 1000);
        assert_eq!((none.count, none.max_ms), (0, 0.0));
    }
}
