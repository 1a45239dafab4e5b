//! Plain-text renderings of run results, for terminals and logs.

use std::fmt::Write;

use crate::load::LoadResult;
use crate::stats::Summary;
use crate::verify::VerifyReport;

const STAGES: [(&str, &str); 5] = [
    ("total", "end-to-end T5-T0"),
    ("1_cdc_capture", "CDC T1-T0"),
    ("2_kafka_delivery", "Kafka T2-T1"),
    ("3_consumer_poll", "poll T3-T2"),
    ("4_processing", "processing T5-T3"),
];

/// A table row of latency figures; 80 columns wide.
fn row(out: &mut String, name: &str, s: &Summary) {
    let _ = writeln!(
        out,
        " {name:<17}{:>6}{:>7.1}{:>7.1}{:>7.1}{:>7.1}{:>7.1}{:>7.1}{:>7.1}",
        s.count, s.min_ms, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.p999_ms, s.max_ms
    );
}

fn header(out: &mut String) {
    let _ = writeln!(
        out,
        " {:<17}{:>6}{:>7}{:>7}{:>7}{:>7}{:>7}{:>7}{:>7}",
        "latency (ms)", "count", "min", "mean", "p50", "p95", "p99", "p99.9", "max"
    );
}

/// Thousands separators: 10000 → 10,000.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary `load` prints.
pub fn load(r: &LoadResult) -> String {
    let s = r.summary();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} events ({} UserCreated, {} ActivityCreated, {} ParticipantJoined)",
        r.name,
        thousands(r.events),
        thousands(r.mix.users),
        thousands(r.mix.activities),
        thousands(r.mix.joins)
    );
    let _ = writeln!(
        out,
        "  inserted in {:.2} s ({:.0} events/s); {} of {} in MongoDB after {:.2} s: {:.0} events/s end to end",
        r.insert_secs,
        s.insert_rate_eps,
        thousands(s.delivered),
        thousands(r.events),
        r.wall_secs,
        s.throughput_eps
    );
    let _ = writeln!(out, "  dead-lettered {}, missing {}", s.errors, s.missing);
    out.push('\n');
    latency_table(&mut out, &s.stages, &s.by_type);
    out
}

/// The latency table: one row per stage, then end-to-end per event type.
fn latency_table(
    out: &mut String,
    stages: &std::collections::BTreeMap<&'static str, Summary>,
    by_type: &std::collections::BTreeMap<String, Summary>,
) {
    header(out);
    for (key, name) in STAGES {
        if let Some(st) = stages.get(key) {
            row(out, name, st);
        }
    }
    for (t, st) in by_type {
        row(out, t, st);
    }
}

/// The table of phases `full` prints between and after phases.
pub fn phase_table(phases: &[crate::load::LoadSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<10}{:>9}{:>11}{:>11}{:>10}{:>10}{:>10}{:>8}",
        "phase", "events", "duration", "events/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for p in phases {
        let t = p.stages.get("total").cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<10}{:>9}{:>10.2}s{:>11.0}{:>10.1}{:>10.1}{:>10.1}{:>8}",
            p.phase,
            thousands(p.events),
            p.duration_secs,
            p.throughput_eps,
            t.p50_ms,
            t.p95_ms,
            t.p99_ms,
            p.errors
        );
    }
    out
}

/// One line per event of a small phase (the warm-up's detailed view).
pub fn event_lines(events: &[crate::live::RecentEvent]) -> String {
    let mut out = String::new();
    for e in events {
        let _ = writeln!(
            out,
            "    {} {:<18} {:<40} {:>8.1} ms",
            if e.ok { "✓" } else { "✗" },
            e.event_type,
            e.label.chars().take(40).collect::<String>(),
            e.latency_ms
        );
    }
    out
}

/// The report `verify` prints, in the spirit of the seed's latency report.
pub fn verify(r: &VerifyReport) -> String {
    let mut out = String::new();
    let bar = "=".repeat(60);
    let _ = writeln!(out, "VERIFICATION REPORT\n{bar}");
    let _ = writeln!(
        out,
        "Events: {} in event_outbox, {} found in MongoDB ({:.2}%)",
        thousands(r.total_events),
        thousands(r.found_events),
        r.success_rate
    );
    for (t, c) in &r.by_type {
        let mark = if c.found == c.expected { "✓" } else { "✗" };
        let _ = writeln!(
            out,
            "  {mark} {t:<20} {:>8} / {:<8}",
            thousands(c.found),
            thousands(c.expected)
        );
    }
    if r.missing > 0 {
        let _ = writeln!(
            out,
            "Missing: {} event(s), first: {:?}",
            r.missing,
            &r.missing_ids[..r.missing_ids.len().min(5)]
        );
    }
    if !r.duplicated_ids.is_empty() {
        let _ = writeln!(
            out,
            "Duplicated: {} event(s) applied more than once",
            r.duplicated_ids.len()
        );
    }
    if r.extra > 0 {
        let _ = writeln!(
            out,
            "Note: {} read-model entries come from events no longer in event_outbox",
            r.extra
        );
    }
    let _ = writeln!(out, "Integrity: {}", r.integrity_check);
    for i in r.integrity_issues.iter().take(10) {
        let _ = writeln!(out, "  - {i}");
    }
    if r.dead_lettered > 0 {
        let _ = writeln!(
            out,
            "Dead-lettered messages (kept in the DLQ topic): {}",
            r.dead_lettered
        );
    }
    out.push('\n');
    if r.latency.get("total").map_or(0, |t| t.count) == 0 {
        let _ = writeln!(
            out,
            "Latency: no metrics recorded for these events (run `pipedemo load` with the same METRICS_FILE)"
        );
    } else {
        latency_table(&mut out, &r.latency, &r.latency_by_type);
        let timed = r.latency.get("total").map_or(0, |t| t.count);
        if timed < r.found_events {
            // Honest sample size: percentiles describe the timed events only.
            let _ = writeln!(
                out,
                "Note: latency covers {timed} of the {} events found; the others have no timing \
                 record (written by a consumer killed before it recorded them, or by \
                 `pipedemo replay`).",
                r.found_events
            );
        }
    }
    if r.throughput_eps > 0.0 {
        let _ = writeln!(
            out,
            "\nThroughput (first T0 to last T5): {:.0} events/s",
            r.throughput_eps
        );
    }
    if r.negative_samples > 0 {
        let _ = writeln!(
            out,
            "Note: {} stage samples were below 0 (Kafka timestamps have 1 ms resolution) and count as 0.",
            r.negative_samples
        );
    }
    let _ = writeln!(out, "Assessment: {}", r.verdict);
    if let Some(c) = &r.checksum {
        let _ = writeln!(out, "Read-model checksum: {c}");
    }
    let _ = writeln!(
        out,
        "{bar}\nRESULT: {}",
        if r.passed { "PASS" } else { "FAIL" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
