//! Plain-text renderings of run results, for terminals and logs.

use std::fmt::Write;

use std::collections::BTreeMap;

use crate::check::verify::{pass_fail_text, VerifyReport};
use crate::event::EventType;
use crate::run::outcome::{
    CapacityReport, FullOutcome, PhaseResult, PhaseSummary, Step, TimelinePoint,
};
use crate::telemetry::live::RecentEvent;
use crate::telemetry::stats::{self, Stage, Summary};

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

pub use crate::numbers::thousands;

/// The line for events whose times cannot be real.
fn implausible_line(n: u64) -> String {
    format!(
        "Timing implausible: {} events applied with times before 2000, over a minute in the \
         future or out of order; left out of every latency figure",
        thousands(n)
    )
}

/// The summary `load` prints.
pub fn load(r: &PhaseResult) -> String {
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
        "  inserted in {:.2} s ({:.0} events/s in {} transactions, {:.0}/s: {}); routing {}; {} of {} in MongoDB after {:.2} s: {:.0} events/s end to end",
        r.insert_secs,
        s.insert_rate_eps,
        thousands(s.transactions),
        s.transactions_per_sec,
        s.write_model,
        s.routing,
        thousands(s.delivered),
        thousands(r.sent),
        r.wall_secs,
        s.throughput_eps
    );
    if r.sent < r.events {
        let _ = writeln!(
            out,
            "  interrupted: {} of {} requested events were inserted; only those are checked",
            thousands(r.sent),
            thousands(r.events)
        );
    }
    let _ = writeln!(out, "  dead-lettered {}, missing {}", s.errors, s.missing);
    if s.timing_implausible > 0 {
        let _ = writeln!(out, "  {}", implausible_line(s.timing_implausible));
    }
    if s.merged && s.processes.len() > 1 {
        let hosts: std::collections::BTreeSet<&str> =
            s.processes.iter().map(|p| p.host.as_str()).collect();
        let _ = writeln!(
            out,
            "  figures of the whole run: {} processes on {} host(s) merged from the results topic \
             ({} events applied by the others are in every figure below)",
            s.processes.len(),
            hosts.len(),
            thousands(s.applied_elsewhere)
        );
    } else if s.applied_elsewhere > 0 {
        let _ = writeln!(
            out,
            "  {} applied by other consumers of the group: found in MongoDB; their figures did \
             not come in on the results topic, so their latency is not in the figures below",
            thousands(s.applied_elsewhere)
        );
    }
    if s.latency_unreported > 0 {
        let _ = writeln!(
            out,
            "  {} delivered by a consumer that stopped before publishing them (named below): \
             delivered and verified, their latency unknown and not in the figures",
            thousands(s.latency_unreported)
        );
    }
    out.push('\n');
    latency_table(&mut out, &s.stages, &s.by_type);
    if s.processes.len() > 1 {
        out.push_str(&processes(&s.processes));
    }
    if s.timeline.len() > 3 {
        out.push_str(&timeline(&s.timeline));
    }
    out
}

/// Each process's part of a merged phase: what it applied and its own p99, what it offered.
pub fn processes(shares: &[crate::telemetry::results::Share]) -> String {
    let mut out = String::from("\nProcesses of the run:\n");
    let _ = writeln!(
        out,
        "  {:<28}{:>9}{:>11}{:>10}{:>9}{:>13}{:>13}",
        "host/pid command", "applied", "redeliv.", "p99 ms", "dead", "offered", "achieved/s"
    );
    for p in shares {
        let _ = writeln!(
            out,
            "  {:<28}{:>9}{:>11}{:>10.1}{:>9}{:>13}{:>13}{}",
            crate::pipeline::bounded::prefix(&p.process, 27),
            thousands(p.applied),
            thousands(p.already_applied),
            p.p99_ms,
            p.dead_lettered,
            if p.offered > 0 {
                thousands(p.offered)
            } else {
                "-".into()
            },
            p.achieved_eps.map_or("-".into(), |r| format!("{r:.0}")),
            if !p.figures_sent {
                format!(
                    "  stopped before it sent its figures (silent for {:.0} s): its count is its \
                     heartbeat's, its latency unknown",
                    p.silent_secs
                )
            } else if p.stopped {
                format!(
                    "  stopped: silent for {:.0} s; its last figures are counted",
                    p.silent_secs
                )
            } else {
                String::new()
            }
        );
    }
    out
}

/// A long run over time: rate, latency and pipedemo's memory per window, so that a leak or
/// a slow drift shows.
pub fn timeline(points: &[TimelinePoint]) -> String {
    let mut out = String::from("\nOver time (10 s windows):\n");
    let _ = writeln!(
        out,
        "  {:>7}{:>11}{:>9}{:>9}{:>9}",
        "at s", "events/s", "p50 ms", "p99 ms", "RSS MB"
    );
    for p in points {
        let _ = writeln!(
            out,
            "  {:>7}{:>11.0}{:>9.1}{:>9.1}{:>9}",
            p.at_secs,
            p.applied_eps,
            p.p50_ms,
            p.p99_ms,
            p.rss_mb.map_or("-".into(), |m| format!("{m:.1}"))
        );
    }
    out
}

/// The latency table: one row per stage, then end-to-end per event type.
pub(crate) fn latency_table(
    out: &mut String,
    stages: &BTreeMap<Stage, Summary>,
    by_type: &BTreeMap<EventType, Summary>,
) {
    header(out);
    for stage in Stage::ALL {
        if let Some(st) = stages.get(&stage) {
            row(out, stage.label(), st);
        }
    }
    for (t, st) in by_type {
        row(out, t.as_str(), st);
    }
}

/// The table of phases `full` prints between and after phases.
pub fn phase_table(phases: &[PhaseSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<10}{:>9}{:>11}{:>11}{:>10}{:>10}{:>10}{:>8}",
        "phase", "events", "duration", "events/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for p in phases {
        let t = stats::total(&p.stages);
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

/// "p50 … · p95 … · p99 … ms" of a latency summary.
fn percentiles(t: &Summary) -> String {
    format!(
        "p50 {:.1} · p95 {:.1} · p99 {:.1} ms",
        t.p50_ms, t.p95_ms, t.p99_ms
    )
}

/// How every phase of `full` did against the targets.
pub fn assessment(o: &FullOutcome) -> String {
    let mut out = format!("\nTargets per phase: {}\n", o.targets.describe());
    if let Some(p) = &o.prewarm {
        let _ = writeln!(
            out,
            "  · {:<9} {:>7} events warmed the JVMs first (not held to the targets): {}",
            p.phase,
            thousands(p.events),
            percentiles(&stats::total(&p.stages))
        );
    }
    for (p, missed) in o.phases.iter().zip(&o.targets_missed) {
        let total = stats::total(&p.stages);
        let offered = p
            .offered_eps
            .map_or("unpaced".into(), |r| format!("{r:.0} ev/s offered"));
        let _ = writeln!(
            out,
            "  {} {:<9} {:>7} events, {offered:<17} {}{}",
            if missed.is_empty() { "✓" } else { "✗" },
            p.phase,
            thousands(p.events),
            percentiles(&total),
            if missed.is_empty() {
                String::new()
            } else {
                format!("  missed: {}", missed.join(", "))
            }
        );
        if let Some(u) = o.targets.unjudged(&total) {
            let _ = writeln!(out, "      {u}");
        }
    }
    let failed = o.targets_missed.iter().filter(|m| !m.is_empty()).count();
    let _ = writeln!(
        out,
        "Targets: {}",
        match (o.burst, failed) {
            (true, _) => "BURST - the offered load exceeded what the pipeline sustains; these \
                          latencies measure queueing, not the pipeline (targets not enforced)"
                .to_owned(),
            (false, 0) => "met by every phase".to_owned(),
            (false, n) => format!("missed by {n} phase(s)"),
        }
    );
    out
}

/// One row of the capacity table: offered and achieved rate, latency from schedule, backlog
/// slope, CPU and the verdict.
pub fn capacity_step(s: &Step) -> String {
    let cpu = s
        .cpu_pct
        .iter()
        .map(|(svc, pct)| format!("{} {pct:.0}%", svc.name()))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "  {:>9}{:>10}{:>8}{:>9.1}{:>9.1}{:>9.1}{:>9.1}{:>10.0}  {} {}  [{cpu}]",
        thousands(s.offered_eps.round() as u64),
        thousands(s.achieved_eps.round() as u64),
        thousands(s.transactions_per_sec.round() as u64),
        s.latency.p50_ms,
        s.latency.p99_ms,
        s.latency.p999_ms,
        s.latency.max_ms,
        s.backlog_slope_eps,
        if s.verdict.sustained { "✓" } else { "✗" },
        s.verdict.reason,
    ) + &gc_note(s)
}

/// For a step that failed or was tried twice: the JVM pauses that came with it, so that a
/// stall can be told from a GC pause.
fn gc_note(s: &Step) -> String {
    let tried = std::iter::once(s).chain(s.first_try.as_deref());
    if s.verdict.sustained && s.first_try.is_none() {
        return String::new();
    }
    let pauses: Vec<String> = tried
        .flat_map(|t| &t.gc_pauses)
        .filter(|p| p.count > 0)
        .map(|p| {
            format!(
                "{} {} pauses, {:.0} ms in all, longest {:.0} ms ({})",
                p.jvm, p.count, p.total_ms, p.max_ms, p.max_cause
            )
        })
        .collect();
    let logs = s.gc_pauses.len();
    match (logs, pauses.is_empty()) {
        (0, _) => String::new(),
        (_, true) => "  · no JVM pause in the GC logs".into(),
        (_, false) => format!("  · JVM: {}", pauses.join("; ")),
    }
}

/// The capacity table and its answer.
pub fn capacity(c: &CapacityReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:>9}{:>10}{:>8}{:>9}{:>9}{:>9}{:>9}{:>10}  verdict  [CPU, % of a core]",
        "offered/s", "achieved", "tx/s", "p50 ms", "p99 ms", "p99.9", "max", "backlog/s"
    );
    let mut steps: Vec<&Step> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.offered_eps.total_cmp(&b.offered_eps));
    for s in steps {
        let _ = writeln!(out, "{}", capacity_step(s));
    }
    let _ = writeln!(out, "{}", capacity_answer(c));
    out
}

/// "This pipeline sustains N ev/s at p99 ≤ X ms", with the stage that limits it.
pub fn capacity_answer(c: &CapacityReport) -> String {
    let Some(rate) = c.sustained_eps else {
        return format!(
            "This pipeline sustained none of the rates offered at p99 ≤ {} ms ({} s steps).",
            c.slo_p99_ms, c.step_secs
        );
    };
    let limit = match (c.limiting_stage, c.limiting_growth_ms) {
        (Some(stage), Some(grew)) => format!(
            "; above it, {} grows first (p99 +{grew:.1} ms)",
            stage.label()
        ),
        _ => "; no higher rate was offered".into(),
    };
    let knee = c.knee_above_eps.map_or(String::new(), |k| {
        format!(
            " (not {}: the knee lies between, within {:.0} % above the figure)",
            thousands(k.round() as u64),
            c.uncertainty.unwrap_or_default() * 100.0
        )
    });
    let ceiling = match (c.ceiling_eps, c.overflow_eps) {
        (Some(flat), Some(grew)) => format!(
            "\nThroughput ceiling: the backlog kept up at {} ev/s and grew at {} ev/s (latency aside).",
            thousands(flat.round() as u64),
            thousands(grew.round() as u64)
        ),
        (Some(flat), None) => format!(
            "\nThroughput ceiling: at least {} ev/s (the backlog kept up with every rate offered).",
            thousands(flat.round() as u64)
        ),
        _ => String::new(),
    };
    let store = match c.steps.iter().find(|s| s.offered_eps == rate) {
        _ if c.fresh_store => format!(
            ", each step on empty read models after a {} s lead-in",
            crate::run::capacity::LEAD_IN.as_secs()
        ),
        Some(s) => format!(
            ", judged with {} events already in the read models",
            thousands(s.events_before)
        ),
        None => String::new(),
    };
    format!(
        "This pipeline sustains {} ev/s at p99 ≤ {} ms{knee} ({} s steps, latency from schedule{store}){limit}.{ceiling}",
        thousands(rate.round() as u64),
        c.slo_p99_ms,
        c.step_secs
    )
}

/// One line per event of a small phase (the warm-up's detailed view).
pub fn event_lines(events: &[RecentEvent]) -> String {
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
    delivery(&mut out, r);
    out.push('\n');
    verify_latency(&mut out, r);
    let _ = writeln!(out, "Assessment: {}", r.verdict);
    if let Some(c) = &r.checksum {
        let _ = writeln!(out, "Read-model checksum: {c}");
    }
    let _ = writeln!(out, "{bar}\nRESULT: {}", pass_fail_text(r.passed));
    out
}

/// The run's one verdict, closing the show: `RESULT: PASS`, or `RESULT: FAIL` and each reason
/// ([`crate::run::outcome::FullOutcome::failures`]).
pub fn run_verdict(failures: &[String]) -> String {
    let bar = "=".repeat(60);
    if failures.is_empty() {
        return format!(
            "{bar}\nRESULT: PASS (every event delivered once, integrity held, every phase \
             within its targets, every threshold held)\n"
        );
    }
    let mut out = format!("{bar}\nRESULT: FAIL\n");
    for f in failures {
        let _ = writeln!(out, "  ✗ {f}");
    }
    out
}

/// What `full` prints of its verification: delivery and integrity of every event of the run.
/// No latency: the phases' own figures say that, each against its targets (every verified
/// event's would mix in the capacity sweep's overloaded steps), and no verdict: the run's one
/// verdict closes the show.
pub fn delivery_and_integrity(r: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DELIVERY AND INTEGRITY (every event of the run, the capacity sweep's included)"
    );
    delivery(&mut out, r);
    out
}

/// Events found, by type; missing, duplicated and extra; integrity; dead letters.
fn delivery(out: &mut String, r: &VerifyReport) {
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
    let _ = writeln!(out, "Integrity: {}", pass_fail_text(r.integrity_passed));
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
}

/// The latency part of the verification report, with the notes that keep it honest.
fn verify_latency(out: &mut String, r: &VerifyReport) {
    let timed = stats::total(&r.latency).count;
    if timed == 0 {
        let _ = writeln!(
            out,
            "Latency: no metrics recorded for these events (run `pipedemo load` with the same METRICS_FILE)"
        );
    } else {
        latency_table(out, &r.latency, &r.latency_by_type);
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
    if r.timing_implausible > 0 {
        let _ = writeln!(out, "{}", implausible_line(r.timing_implausible));
    }
}

/// `chaos --list`: each fault, what it does, and whether it can run here.
pub fn fault_list(faults: &[(crate::fault::Fault, Option<String>)]) -> String {
    let mut out = String::new();
    for (f, refusal) in faults {
        let _ = writeln!(
            out,
            "{:<17} {:<70} {}",
            f.name(),
            f.what(),
            refusal
                .as_ref()
                .map_or("available".to_owned(), |why| format!("skipped: {why}"))
        );
    }
    out
}

/// `text` cut to `n` characters, with an ellipsis when cut.
fn short(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A chaos run: one line per fault, then the load and the verdict.
pub fn chaos(c: &crate::run::chaos::ChaosOutcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Chaos: {} events offered at {:.0} ev/s, faults one at a time ({} {} ms, within {} s)",
        thousands(c.load.sent),
        c.rate_eps,
        crate::run::chaos::analysis::RECOVERED_MEANS,
        c.slo_p99_ms,
        c.recovery_timeout_secs
    );
    let _ = writeln!(
        out,
        "  {:<17}{:>9}{:>9}{:>10}{:>10}{:>10}{:>10}{:>8}{:>11}{:>11}  noticed as",
        "fault",
        "at s",
        "held s",
        "noticed",
        "moving",
        "peak",
        "recovery",
        "lost",
        "p99 during",
        "p99 after"
    );
    let opt = |v: Option<f64>, unit: &str| v.map_or("–".to_owned(), |v| format!("{v:.1}{unit}"));
    for f in &c.faults {
        if f.injected_at_secs.is_none() {
            let _ = writeln!(out, "  {:<17}{}", f.fault.name(), f.line());
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<17}{:>9}{:>9}{:>10}{:>10}{:>10}{:>10}{:>8}{:>11}{:>11}  {}",
            f.fault.name(),
            opt(f.injected_at_secs, ""),
            opt(f.held_secs(), ""),
            opt(f.noticed_after_secs, " s"),
            opt(f.first_event_after_secs, " s"),
            thousands(f.peak_backlog),
            match f.verdict {
                crate::run::chaos::Verdict::Recovered => opt(f.recovery_secs, " s"),
                _ => "NO".into(),
            },
            thousands(f.lost),
            format!("{:.0} ms", f.latency_during.p99_ms),
            format!("{:.0} ms", f.latency_after.p99_ms),
            short(f.noticed_cause.as_deref().unwrap_or("not noticed"), 70),
        );
        if f.redelivered > 0 {
            let _ = writeln!(
                out,
                "  {:<17}{} deliveries found already applied (absorbed)",
                "",
                thousands(f.redelivered)
            );
        }
    }
    let s = &c.load.from_schedule;
    let _ = writeln!(
        out,
        "Load: {} of {} written events arrived; whole run p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (from schedule, faults included)",
        thousands(c.load.delivered),
        thousands(c.load.sent),
        s.p50_ms,
        s.p99_ms,
        s.max_ms
    );
    let _ = writeln!(
        out,
        "Verified: lost {}, duplicated {} → {}",
        thousands(c.lost),
        thousands(c.duplicated),
        if c.passed {
            "PASS: every fault recovered and nothing was lost".to_owned()
        } else {
            format!("FAIL: {}", c.failures.join("; "))
        }
    );
    let _ = writeln!(
        out,
        "Consumer processes' log: {}{}",
        c.consumer_log.display(),
        if c.consumer_exits.is_empty() {
            String::new()
        } else {
            format!(" (restarted after: {})", c.consumer_exits.join("; "))
        }
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

    fn step(offered_eps: f64, sustained: bool, events_before: u64) -> Step {
        Step {
            offered_eps,
            achieved_eps: offered_eps,
            transactions_per_sec: 0.0,
            events: 0,
            lead_in_events: 0,
            events_before,
            latency: Summary::default(),
            stages: BTreeMap::new(),
            backlog_slope_eps: 0.0,
            cpu_pct: BTreeMap::new(),
            verdict: crate::check::capacity::Verdict {
                sustained,
                reason: String::new(),
                latency_ok: sustained,
                backlog_flat: true,
                complete: true,
            },
            gc_pauses: Vec::new(),
            first_try: None,
        }
    }

    #[test]
    fn the_answer_says_how_full_the_read_models_were_at_the_figures_step() {
        let mut c = CapacityReport {
            routing: Default::default(),
            fresh_store: false,
            sustained_eps: Some(2000.0),
            knee_above_eps: Some(2125.0),
            uncertainty: Some(0.0625),
            ceiling_eps: None,
            overflow_eps: None,
            slo_p99_ms: 50.0,
            step_secs: 15.0,
            limiting_stage: None,
            limiting_growth_ms: None,
            steps: vec![
                step(1000.0, true, 8_000),
                step(2000.0, true, 23_000),
                step(2125.0, false, 330_000),
            ],
        };
        let a = capacity_answer(&c);
        assert!(
            a.contains("judged with 23,000 events already in the read models"),
            "{a}"
        );
        c.fresh_store = true;
        let a = capacity_answer(&c);
        assert!(
            a.contains("(15 s steps, latency from schedule, each step on empty read models after a 1 s lead-in)"),
            "{a}"
        );
    }
}
