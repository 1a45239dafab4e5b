//! The reports of `pipedemo full`: `demo_report.json` (every figure and how it was measured)
//! and `demo_report.html` (one self-contained file with the same figures and plots).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::check::verify::pass_fail_text;
use crate::run::chaos::outcome::{ChaosOutcome, Verdict};
use crate::run::outcome::{CapacityReport, FullOutcome};
use crate::show::plots;
use crate::show::report::thousands;
use crate::telemetry::live::Live;
use crate::telemetry::stats::{self, Stage};

/// How the figures were measured, and on what.
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    /// Where each timestamp comes from.
    pub clocks: Vec<&'static str>,
    /// PostgreSQL server version.
    pub postgres: String,
    /// Kafka (Connect worker) version.
    pub kafka: String,
    /// Debezium connector version.
    pub debezium: String,
    /// MongoDB-protocol server version.
    pub mongo_server: String,
    /// Cores of this machine.
    pub machine_cores: usize,
    /// pipedemo version.
    pub pipedemo: &'static str,
}

impl Method {
    /// The standard description with the given versions.
    pub fn new(postgres: String, kafka: String, debezium: String, mongo_server: String) -> Self {
        Method {
            clocks: vec![
                "T0: event_outbox.created_at = clock_timestamp() per row (PostgreSQL)",
                "T1: Debezium envelope ts_us (Kafka Connect JVM clock)",
                "T2: Kafka record timestamp, producer create time, 1 ms resolution",
                "T3: consumer received the message; T4: handler started; T5: MongoDB acknowledged the write (pipedemo)",
                "all clocks are this host's; stages below zero from the 1 ms resolution of T2 are counted and recorded as 0",
            ],
            postgres,
            kafka,
            debezium,
            mongo_server,
            machine_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pipedemo: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    kind: crate::check::figures::Kind,
    schema_version: u64,
    /// The run that wrote the file (see [`crate::run_id`]).
    run_id: &'static str,
    generated_at: String,
    passed: bool,
    success_rate: f64,
    integrity_check: &'static str,
    total_events: u64,
    total_secs: f64,
    #[serde(flatten)]
    outcome: &'a FullOutcome,
    method: &'a Method,
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| {
        format!(
            "cannot write the report to {} (choose a writable path)",
            path.display()
        )
    })
}

/// Writes `demo_report.json`.
pub fn write_json(path: &Path, o: &FullOutcome, m: &Method) -> Result<()> {
    let r = JsonReport {
        kind: crate::check::figures::Kind::Full,
        schema_version: crate::check::figures::SCHEMA_VERSION,
        run_id: crate::run_id::run_id(),
        generated_at: chrono::Utc::now().to_rfc3339(),
        passed: o.passed(),
        success_rate: o.verification.success_rate,
        integrity_check: pass_fail_text(o.verification.integrity_passed),
        total_events: o.total_events,
        total_secs: o.total_secs,
        outcome: o,
        method: m,
    };
    write(path, &serde_json::to_string_pretty(&r)?)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes `demo_report.html`: summary tables and four plots, no external resources.
pub fn write_html(path: &Path, o: &FullOutcome, m: &Method, live: &Live) -> Result<()> {
    let v = &o.verification;
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"pipedemo-run-id\" content=\"RUN_ID\"><title>pipedemo report</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}\
         .pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}figure{margin:1em 0}</style></head><body>",
    )
    .replace("RUN_ID", crate::run_id::run_id());
    let verdict = if o.passed() {
        "<span class=pass>PASS</span>"
    } else {
        "<span class=fail>FAIL</span>"
    };
    h.push_str(&format!(
        "<h1>pipedemo: CDC pipeline report</h1><p>{} events in {:.1} s · {:.2}% verified · integrity {} · result {verdict}</p>",
        thousands(o.total_events),
        o.total_secs,
        v.success_rate,
        pass_fail_text(v.integrity_passed)
    ));
    if o.burst {
        h.push_str(
            "<p class=fail>Burst: the offered load exceeded what the pipeline sustains, so \
                    these latencies measure queueing, not the pipeline. The capacity section says \
                    what rate it sustains.</p>",
        );
    }
    h.push_str(&phases_section(o));
    h.push_str("</table><h2>Latency by stage (all phases)</h2><table><tr><th>stage</th><th>count</th><th>min</th><th>mean</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for (stage, s) in &v.latency {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            stage.label(), s.count, s.min_ms, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.p999_ms, s.max_ms
        ));
    }
    h.push_str("</table>");
    if !o.threshold_failures.is_empty() {
        h.push_str("<h2>Thresholds broken</h2><ul>");
        for f in &o.threshold_failures {
            h.push_str(&format!("<li class=fail>{}</li>", esc(f)));
        }
        h.push_str("</ul>");
    }
    if let Some(c) = &o.chaos {
        h.push_str(&chaos_section(c));
    }
    h.push_str(&figures(o, live));
    h.push_str("<h2>Method</h2><ul>");
    for c in &m.clocks {
        h.push_str(&format!("<li>{}</li>", esc(c)));
    }
    h.push_str(&format!(
        "</ul><p>PostgreSQL {} · Kafka {} · Debezium {} · MongoDB-protocol server {} · {} cores · pipedemo {}</p></body></html>",
        esc(&m.postgres), esc(&m.kafka), esc(&m.debezium), esc(&m.mongo_server), m.machine_cores, m.pipedemo
    ));
    write(path, &h)
}

/// The pre-warm, and each phase against the targets.
fn phases_section(o: &FullOutcome) -> String {
    let mut h = String::new();
    if let Some(p) = &o.prewarm {
        let t = stats::total(&p.stages);
        h.push_str(&format!(
            "<p>Pre-warm: {} events at {} events/s warmed the JVMs before the show (not held to the targets): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms.</p>",
            thousands(p.events),
            p.offered_eps.map_or("?".into(), |r| format!("{r:.0}")),
            t.p50_ms,
            t.p95_ms,
            t.p99_ms
        ));
    }
    h.push_str(&format!(
        "<h2>Phases</h2><p>Targets per phase: {}</p><table><tr><th>phase</th><th>events</th><th>offered ev/s</th><th>duration s</th><th>events/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>errors</th><th>targets</th></tr>",
        esc(&o.targets.describe())
    ));
    for (p, missed) in o.phases.iter().zip(&o.targets_missed) {
        let t = stats::total(&p.stages);
        let verdict = if missed.is_empty() {
            "<span class=pass>met</span>".to_owned()
        } else {
            format!("<span class=fail>{}</span>", esc(&missed.join(", ")))
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{verdict}</td></tr>",
            esc(&p.phase), thousands(p.events), p.offered_eps.map_or("unpaced".into(), |r| format!("{r:.0}")),
            p.duration_secs, p.throughput_eps, t.p50_ms, t.p95_ms, t.p99_ms, p.errors
        ));
    }
    h
}

/// The capacity sweep: its answer, a table per step and the latency-versus-rate plot.
fn capacity_section(c: &CapacityReport) -> String {
    let mut h = format!(
        "<h2>Capacity</h2><p>{}</p><table><tr><th>offered ev/s</th><th>achieved ev/s</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>backlog ev/s</th><th>verdict</th></tr>",
        esc(&crate::show::report::capacity_answer(c))
    );
    let mut steps: Vec<_> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.offered_eps.total_cmp(&b.offered_eps));
    for s in &steps {
        h.push_str(&format!(
            "<tr><td>{:.0}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.0}</td><td>{}</td></tr>",
            s.offered_eps, s.achieved_eps, s.latency.p50_ms, s.latency.p99_ms, s.latency.p999_ms,
            s.latency.max_ms, s.backlog_slope_eps, esc(&s.verdict.reason)
        ));
    }
    h.push_str("</table>");
    let pts: Vec<(f64, f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_eps, s.latency.p50_ms, s.latency.p99_ms))
        .collect();
    h.push_str(&format!(
        "<figure id=\"latency-vs-rate\">{}</figure>",
        plots::latency_vs_rate(&pts, c.slo_p99_ms, c.sustained_eps)
    ));
    h
}

/// A chaos run: the verdict, a table per fault, and backlog and p99 over time with the fault
/// intervals shaded.
pub fn chaos_section(c: &ChaosOutcome) -> String {
    let verdict = if c.passed {
        "<span class=pass>PASS</span>".to_owned()
    } else {
        format!(
            "<span class=fail>FAIL: {}</span>",
            esc(&c.failures.join("; "))
        )
    };
    let mut h = format!(
        "<h2 id=\"chaos\">Chaos</h2><p>{} events offered at {:.0} events/s while faults ran one \
         at a time; recovered = backlog back to its level before the fault and p99 (from \
         schedule) within {} ms, within {} s. Lost {} · duplicated {} · {verdict}</p>\
         <table id=\"chaos-faults\"><tr><th>fault</th><th>result</th><th>injected s</th><th>held s</th>\
         <th>noticed after s</th><th>peak backlog</th><th>recovery s</th><th>redelivered</th>\
         <th>lost</th><th>p99 during ms</th><th>p99 recovering ms</th><th>p99 after ms</th></tr>",
        thousands(c.load.sent),
        c.rate_eps,
        c.slo_p99_ms,
        c.recovery_timeout_secs,
        thousands(c.lost),
        thousands(c.duplicated),
    );
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
    for f in &c.faults {
        let (class, result) = match f.verdict {
            Verdict::Recovered => ("pass", "recovered".to_owned()),
            Verdict::Skipped => (
                "",
                format!("skipped: {}", f.reason.as_deref().unwrap_or("")),
            ),
            _ => ("fail", f.reason.clone().unwrap_or_default()),
        };
        h.push_str(&format!(
            "<tr><td title=\"{}\">{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            esc(f.what), f.fault, esc(&result), opt(f.injected_at_secs), opt(f.held_secs()),
            esc(f.noticed_cause.as_deref().unwrap_or("not noticed")), opt(f.noticed_after_secs),
            thousands(f.peak_backlog), opt(f.recovery_secs), thousands(f.redelivered),
            thousands(f.lost), f.latency_during.p99_ms, f.latency_recovering.p99_ms,
            f.latency_after.p99_ms
        ));
    }
    h.push_str("</table>");
    let bands: Vec<(f64, f64, String)> = c
        .faults
        .iter()
        .filter_map(|f| Some((f.injected_at_secs?, f.cleared_at_secs?, f.fault.to_string())))
        .collect();
    let backlog: Vec<(f64, f64)> = c
        .timeline
        .iter()
        .map(|s| (s.at_secs, s.backlog as f64))
        .collect();
    let p99: Vec<(f64, f64)> = c
        .timeline
        .iter()
        .filter_map(|s| Some((s.at_secs, s.p99_ms?)))
        .collect();
    h.push_str(&format!(
        "<figure id=\"chaos-backlog\">{}</figure><figure id=\"chaos-latency\">{}</figure>",
        plots::over_time_with_faults(
            "Backlog during the chaos run (faults shaded)",
            "events due, not yet in MongoDB",
            &backlog,
            &bands,
            None
        ),
        plots::over_time_with_faults(
            "p99 latency from schedule, per second (faults shaded)",
            "p99 (ms)",
            &p99,
            &bands,
            Some((c.slo_p99_ms, format!("SLO p99 {} ms", c.slo_p99_ms)))
        )
    ));
    h
}

/// Writes a chaos run's own HTML report.
pub fn write_chaos_html(path: &Path, c: &ChaosOutcome) -> Result<()> {
    let h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>pipedemo chaos report</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f3f3f3}}td:first-child{{text-align:left}}\
         .pass{{color:#1a7f37;font-weight:bold}}.fail{{color:#c62828;font-weight:bold}}</style></head><body>\
         <h1>pipedemo: chaos report</h1>{}<p>pipedemo {}</p></body></html>",
        chaos_section(c),
        env!("CARGO_PKG_VERSION")
    );
    write(path, &h)
}

/// The four plots, as inline SVG figures.
fn figures(o: &FullOutcome, live: &Live) -> String {
    let points: Vec<(i64, f64)> = live.points.iter().map(|p| (p.0, p.2)).collect();
    let mut per_second: std::collections::BTreeMap<i64, u64> = std::collections::BTreeMap::new();
    for p in &live.points {
        *per_second.entry(p.1.div_euclid(1_000_000)).or_default() += 1;
    }
    let per_second: Vec<(i64, u64)> = match (per_second.keys().next(), per_second.keys().last()) {
        (Some(&a), Some(&b)) => (a..=b)
            .map(|s| (s, per_second.get(&s).copied().unwrap_or(0)))
            .collect(),
        _ => Vec::new(),
    };
    let cdfs: Vec<(String, crate::telemetry::stats::Latency)> = live
        .phases
        .iter()
        .map(|p| (p.name.clone(), p.stats.stages.get(Stage::Total).clone()))
        .collect();
    let bars: Vec<(&str, f64, f64)> = Stage::PARTS
        .iter()
        .map(|stage| {
            let s = o
                .verification
                .latency
                .get(stage)
                .cloned()
                .unwrap_or_default();
            (stage.label(), s.p50_ms, s.p95_ms)
        })
        .collect();
    let mut h = String::from("<h2>Plots</h2>");
    if let Some(c) = &o.capacity {
        h.push_str(&capacity_section(c));
    }
    for (id, svg) in [
        ("latency-over-time", plots::latency_over_time(&points)),
        ("latency-cdf", plots::latency_cdf(&cdfs)),
        ("stage-breakdown", plots::stage_bars(&bars)),
        ("throughput", plots::throughput(&per_second)),
    ] {
        h.push_str(&format!("<figure id=\"{id}\">{svg}</figure>"));
    }
    h
}
