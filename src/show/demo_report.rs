//! The reports of `pipedemo full`: `demo_report.json` (every figure and how it was measured)
//! and `demo_report.html` (one self-contained file with the same figures and plots: a summary
//! card on top, then the tables, then full-width plots), and a chaos run's own HTML. The HTML
//! is written with maud's templates, which escape every value they are given.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::check::compare::{Change, Comparison};
use crate::check::thresholds::Checked;
use crate::check::verify::pass_fail_text;
use crate::config::Routing;
use crate::run::chaos::analysis;
use crate::run::chaos::outcome::{ChaosOutcome, Verdict};
use crate::run::outcome::{CapacityReport, FullOutcome};
use crate::show::plots::{self, Band};
use crate::show::report::thousands;
use crate::show::summary::{self, Item};
use crate::telemetry::live::{Live, HEAT_BOUNDS_US};
use crate::telemetry::stats::{self, Stage, Summary};

/// The most columns of the report's latency heat map.
const HEAT_COLUMNS: usize = 240;

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
    /// How the connector routed the outbox's events to Kafka.
    pub routing: Routing,
}

impl Method {
    /// The standard description with the given versions, for a run routed by `routing`.
    pub fn new(
        postgres: String,
        kafka: String,
        debezium: String,
        mongo_server: String,
        routing: Routing,
    ) -> Self {
        let (t1, t2) = match routing {
            Routing::Raw => (
                "T1: Debezium envelope ts_us (Kafka Connect JVM clock)",
                "T2: Kafka record timestamp, producer create time, 1 ms resolution",
            ),
            Routing::EventRouter => (
                "T1: Debezium envelope ts_us, copied to the pipedemo.captured_us header before the Outbox Event Router (Kafka Connect JVM clock); the commit time is not carried",
                "T2: Kafka record timestamp, the broker's log append time (the router's topics are created with LogAppendTime), 1 ms resolution",
            ),
        };
        Method {
            routing,
            clocks: vec![
                "T0: event_outbox.created_at = clock_timestamp() per row (PostgreSQL)",
                t1,
                t2,
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
    /// Why it failed (empty when it passed): the same sentences as the closing text's.
    failures: Vec<String>,
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
        failures: o.failures(),
        success_rate: o.verification.success_rate,
        integrity_check: pass_fail_text(o.verification.integrity_passed),
        total_events: o.total_events,
        total_secs: o.total_secs,
        outcome: o,
        method: m,
    };
    write(path, &serde_json::to_string_pretty(&r)?)
}

impl Method {
    /// The machine, and the stack on it: for the summary card.
    pub fn machine(&self) -> (String, String) {
        let cores = format!("{} cores", self.machine_cores);
        let stack = format!(
            "PostgreSQL {} · Kafka {} · Debezium {} ({}) · {} · pipedemo {}",
            self.postgres,
            self.kafka,
            self.debezium,
            match self.routing {
                Routing::Raw => "change events on one topic",
                Routing::EventRouter => "Outbox Event Router, a topic per aggregate",
            },
            self.mongo_server,
            self.pipedemo
        );
        (cores, stack)
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}\
main{max-width:1280px;margin:0 auto;padding:1.5em 2em;background:#fff}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}\
figure{margin:1.5em 0;width:100%}figure svg{display:block;width:100%;height:auto}\
#summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px;margin:1em 0 2em}\
#summary .item{border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:10px 14px;background:#fff}\
#summary .item.good{border-left-color:#1a7f37}#summary .item.bad{border-left-color:#c62828}\
#summary .label{font-size:.8em;text-transform:uppercase;color:#666;letter-spacing:.05em}\
#summary .value{font-size:1.5em;font-weight:600;margin:.2em 0}#summary .detail{font-size:.85em;color:#444}\
#summary .item.good .value{color:#1a7f37}#summary .item.bad .value{color:#c62828}";

/// A whole page around `body`.
fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="pipedemo-run-id" content=(crate::run_id::run_id());
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
    .into_string()
}

/// The summary card: one box per item, green or red when it is a verdict.
fn card(items: &[Item]) -> Markup {
    html! {
        section #summary aria-label="Summary" {
            @for i in items {
                @let class = match i.good { Some(true) => "item good", Some(false) => "item bad", None => "item" };
                div class=(class) id=(format!("summary-{}", i.label.to_lowercase().replace(' ', "-"))) {
                    div.label { (i.label) }
                    div.value { (i.value) }
                    @if !i.detail.is_empty() { div.detail { (i.detail) } }
                }
            }
        }
    }
}

fn verdict(passed: bool) -> Markup {
    html! {
        @if passed { span.pass { "PASS" } } @else { span.fail { "FAIL" } }
    }
}

/// Writes `demo_report.html`: the summary card, tables, and plots, no external resources.
pub fn write_html(path: &Path, o: &FullOutcome, m: &Method, live: &Live) -> Result<()> {
    let v = &o.verification;
    let body = html! {
        h1 { "pipedemo: CDC pipeline report" }
        (card(&summary::full(o, m.machine())))
        p {
            (thousands(o.total_events)) " events in the show's phases in "
            (format!("{:.1}", o.total_secs)) " s · "
            (format!("{:.2}", v.success_rate)) "% of the run's " (thousands(v.total_events))
            " events verified (the pre-warm's and the capacity sweep's included) · integrity "
            (pass_fail_text(v.integrity_passed)) " · result " (verdict(o.passed()))
        }
        @if o.burst {
            p.fail {
                "Burst: the offered load exceeded what the pipeline sustains, so these latencies \
                 measure queueing, not the pipeline. The capacity section says what rate it sustains."
            }
        }
        (phases_section(o))
        h2 { "Latency by stage, per phase" }
        p {
            "Each phase's own events (and each step of the capacity sweep's): figures of one \
             phase are never mixed with another's, the sweep's overloaded steps least of all."
        }
        table #stages {
            tr { th { "phase" } th { "stage" } th { "count" } th { "min" } th { "mean" } th { "p50" } th { "p95" } th { "p99" } th { "p99.9" } th { "max" } }
            @for (phase, stages) in stage_rows(o) {
                @for (stage, s) in stages {
                    tr {
                        td { (phase) } td { (stage.label()) } td { (s.count) }
                        @for x in [s.min_ms, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.p999_ms, s.max_ms] {
                            td { (format!("{x:.2}")) }
                        }
                    }
                }
            }
        }
        (thresholds_section(&o.thresholds, &o.threshold_failures))
        @if let Some(c) = &o.comparison { (comparison_section(c)) }
        @if let Some(c) = &o.capacity { (capacity_section(c)) }
        @if let Some(c) = &o.chaos { (chaos_section(c)) }
        (figures(o, live))
        h2 { "Method" }
        ul { @for c in &m.clocks { li { (c) } } }
        p {
            "PostgreSQL " (m.postgres) " · Kafka " (m.kafka) " · Debezium " (m.debezium)
            " · MongoDB-protocol server " (m.mongo_server) " · " (m.machine_cores) " cores · pipedemo " (m.pipedemo)
        }
    };
    write(path, &page("pipedemo report", body))
}

/// Every gate judged, and what else broke (phases that missed their targets).
/// Each phase's stage figures, named: the pre-warm (not judged), the phases, each step of the
/// capacity sweep.
fn stage_rows(o: &FullOutcome) -> Vec<(String, &BTreeMap<Stage, Summary>)> {
    let mut rows: Vec<(String, &BTreeMap<Stage, Summary>)> = Vec::new();
    if let Some(p) = &o.prewarm {
        rows.push((format!("{} (not judged)", p.phase), &p.stages));
    }
    rows.extend(o.phases.iter().map(|p| (p.phase.clone(), &p.stages)));
    if let Some(c) = &o.capacity {
        rows.extend(c.steps.iter().map(|s| {
            (
                format!(
                    "capacity step {} ev/s",
                    thousands(s.offered_eps.round() as u64)
                ),
                &s.stages,
            )
        }));
    }
    rows
}

fn thresholds_section(checked: &[Checked], failures: &[String]) -> Markup {
    let other: Vec<&String> = failures
        .iter()
        .filter(|f| !f.starts_with("threshold "))
        .collect();
    html! {
        @if !checked.is_empty() {
            h2 #thresholds { "Thresholds" }
            table {
                tr { th { "threshold" } th { "measured" } th { "result" } }
                @for c in checked {
                    tr {
                        td { (c.threshold) }
                        td { (c.actual.map_or("not measured".to_string(), |a| format!("{a:.2} {}", c.unit))) }
                        td { (verdict(c.passed)) }
                    }
                }
            }
        }
        @if !other.is_empty() {
            h2 { "Targets missed" }
            ul { @for f in other { li.fail { (f) } } }
        }
    }
}

/// The pre-warm, and each phase against the targets.
fn phases_section(o: &FullOutcome) -> Markup {
    html! {
        @if let Some(p) = &o.prewarm {
            @let t = stats::total(&p.stages);
            p {
                "Pre-warm: " (thousands(p.events)) " events at "
                (p.offered_eps.map_or("?".into(), |r| format!("{r:.0}")))
                " events/s warmed the JVMs before the show (not held to the targets): "
                (format!("p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms.", t.p50_ms, t.p95_ms, t.p99_ms))
            }
        }
        h2 { "Phases" }
        p { "Targets per phase: " (o.targets.describe()) }
        table #phases {
            tr {
                th { "phase" } th { "events" } th { "offered ev/s" } th { "duration s" } th { "events/s" }
                th { "p50 ms" } th { "p95 ms" } th { "p99 ms" } th { "errors" } th { "targets" }
            }
            @for (p, missed) in o.phases.iter().zip(&o.targets_missed) {
                @let t = stats::total(&p.stages);
                tr {
                    td { (p.phase) } td { (thousands(p.events)) }
                    td { (p.offered_eps.map_or("unpaced".into(), |r| format!("{r:.0}"))) }
                    td { (format!("{:.2}", p.duration_secs)) } td { (format!("{:.0}", p.throughput_eps)) }
                    td { (format!("{:.1}", t.p50_ms)) } td { (format!("{:.1}", t.p95_ms)) } td { (format!("{:.1}", t.p99_ms)) }
                    td { (p.errors) }
                    td {
                        @if missed.is_empty() { span.pass { "met" } } @else { span.fail { (missed.join(", ")) } }
                        @if let Some(u) = o.targets.unjudged(&t) { br; small { (u) } }
                    }
                }
            }
        }
    }
}

/// The capacity sweep: its answer, a table per step and the latency-versus-rate plot.
fn capacity_section(c: &CapacityReport) -> Markup {
    let mut steps: Vec<_> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.offered_eps.total_cmp(&b.offered_eps));
    let pts: Vec<(f64, f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_eps, s.latency.p50_ms, s.latency.p99_ms))
        .collect();
    html! {
        h2 #capacity { "Capacity" }
        p { (crate::show::report::capacity_answer(c)) }
        table {
            tr {
                th { "offered ev/s" } th { "achieved ev/s" } th { "p50 ms" } th { "p99 ms" } th { "p99.9 ms" }
                th { "max ms" } th { "backlog ev/s" } th { "verdict" }
            }
            @for s in &steps {
                tr {
                    td { (format!("{:.0}", s.offered_eps)) } td { (format!("{:.0}", s.achieved_eps)) }
                    @for x in [s.latency.p50_ms, s.latency.p99_ms, s.latency.p999_ms, s.latency.max_ms] {
                        td { (format!("{x:.1}")) }
                    }
                    td { (format!("{:.0}", s.backlog_slope_eps)) } td { (s.verdict.reason) }
                }
            }
        }
        figure #latency-vs-rate { (PreEscaped(plots::latency_vs_rate(&pts, c.slo_p99_ms, c.sustained_eps))) }
    }
}

/// Two runs side by side (`compare`, `full --baseline`).
pub fn comparison_section(c: &Comparison) -> Markup {
    html! {
        h2 #comparison { "Against the baseline" }
        p {
            "Each figure of this run against the baseline's (a figure more than "
            (c.max_regression_pct) " % worse is a regression; lost, duplicated and dead-lettered events on any rise): "
            (verdict(c.passed))
        }
        @for w in &c.warnings { p.fail { (w) } }
        table #comparison-figures {
            tr { th { "figure" } th { "baseline" } th { "this run" } th { "change" } th { "verdict" } }
            @for r in &c.figures {
                tr {
                    td { (r.figure) }
                    td { (r.base.map_or("–".into(), |x| format!("{x:.2} {}", r.unit))) }
                    td { (r.new.map_or("–".into(), |x| format!("{x:.2} {}", r.unit))) }
                    td { (r.change_pct.map_or("–".into(), |p| format!("{p:+.1} %"))) }
                    td {
                        @match r.change {
                            Change::Regressed => span.fail { "worse" },
                            Change::Improved => span.pass { "better" },
                            Change::Within => "same",
                            Change::Unjudged => "",
                        }
                    }
                }
            }
        }
    }
}

/// A chaos run: the verdict, a table per fault, and backlog and p99 over time with the fault
/// intervals shaded.
pub fn chaos_section(c: &ChaosOutcome) -> Markup {
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
    let bands: Vec<Band> = c
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
    html! {
        h2 #chaos { "Chaos" }
        p {
            (thousands(c.load.sent)) " events offered at " (format!("{:.0}", c.rate_eps))
            " events/s while faults ran one at a time; " (analysis::RECOVERED_MEANS) " "
            (c.slo_p99_ms) " ms, within " (c.recovery_timeout_secs) " s. Lost " (thousands(c.lost)) " · duplicated "
            (thousands(c.duplicated)) " · "
            @if c.passed { span.pass { "PASS" } } @else { span.fail { "FAIL: " (c.failures.join("; ")) } }
        }
        table #chaos-faults {
            tr {
                th { "fault" } th { "result" } th { "injected s" } th { "held s" } th { "noticed after s" }
                th title="from clearing to the first event written after it" { "moving after s" }
                th { "peak backlog" } th { "recovery s" } th { "redelivered" } th { "lost" }
                th { "p99 during ms" } th { "p99 recovering ms" } th { "p99 after ms" }
            }
            @for f in &c.faults {
                @let (class, result) = match f.verdict {
                    Verdict::Recovered => ("pass", "recovered".to_owned()),
                    Verdict::Skipped => ("", format!("skipped: {}", f.reason.as_deref().unwrap_or(""))),
                    _ => ("fail", f.reason.clone().unwrap_or_default()),
                };
                tr {
                    td title=(f.what) { (f.fault) }
                    td class=(class) { (result) }
                    td { (opt(f.injected_at_secs)) } td { (opt(f.held_secs())) }
                    td title=(f.noticed_cause.as_deref().unwrap_or("not noticed")) { (opt(f.noticed_after_secs)) }
                    td { (opt(f.first_event_after_secs)) }
                    td { (thousands(f.peak_backlog)) } td { (opt(f.recovery_secs)) }
                    td { (thousands(f.redelivered)) } td { (thousands(f.lost)) }
                    td { (format!("{:.1}", f.latency_during.p99_ms)) }
                    td { (format!("{:.1}", f.latency_recovering.p99_ms)) }
                    td { (format!("{:.1}", f.latency_after.p99_ms)) }
                }
            }
        }
        figure #chaos-backlog {
            (PreEscaped(plots::over_time_with_faults(
                "Backlog during the chaos run (faults shaded)",
                "events due, not yet in MongoDB",
                &backlog,
                &bands,
                None,
            )))
        }
        figure #chaos-latency {
            (PreEscaped(plots::over_time_with_faults(
                "p99 latency from schedule, per second (faults shaded)",
                "p99 (ms)",
                &p99,
                &bands,
                Some((c.slo_p99_ms, format!("SLO p99 {} ms", c.slo_p99_ms))),
            )))
        }
    }
}

/// Writes `pipedemo compare --html`: the comparison alone.
pub fn write_comparison_html(path: &Path, c: &Comparison, base: &str, new: &str) -> Result<()> {
    let body = html! {
        h1 { "pipedemo: " (c.kind) " runs compared" }
        p { "Baseline: " code { (base) } " · this run: " code { (new) } }
        (comparison_section(c))
    };
    write(path, &page("pipedemo comparison", body))
}

/// Writes a chaos run's own HTML report.
pub fn write_chaos_html(path: &Path, c: &ChaosOutcome) -> Result<()> {
    let body = html! {
        h1 { "pipedemo: chaos report" }
        (card(&summary::chaos(c)))
        (chaos_section(c))
        p { "pipedemo " (env!("CARGO_PKG_VERSION")) }
    };
    write(path, &page("pipedemo chaos report", body))
}

/// The five plots, full width, the over-time ones with each phase shaded and the latency
/// target drawn.
fn figures(o: &FullOutcome, live: &Live) -> Markup {
    // The heaviest phase of the show: one phase's own events, never mixed with the sweep's.
    let last = o.phases.last();
    let bars: Vec<(&str, f64, f64)> = Stage::PARTS
        .iter()
        .map(|stage| {
            let s = last
                .and_then(|p| p.stages.get(stage))
                .cloned()
                .unwrap_or_default();
            (stage.label(), s.p50_ms, s.p95_ms)
        })
        .collect();
    let of = last.map_or_else(
        || "no phase".to_owned(),
        |p| format!("the {} phase", p.phase),
    );
    let target = (!o.burst).then(|| {
        (
            o.targets.p99_ms,
            format!("target p99 < {} ms", o.targets.p99_ms),
        )
    });
    let plots = plots_of(live, &bars, &of, target);
    html! {
        h2 #plots { "Plots" }
        @for (id, svg) in &plots {
            figure id=(id) { (PreEscaped(svg)) }
        }
    }
}

/// The report's plots of a run: per second and per phase, never per event, so that their size
/// does not grow with the rate (a one-hour soak's stays under 2 MB; the per-event data is in
/// the metrics file).
fn plots_of(
    live: &Live,
    bars: &[(&str, f64, f64)],
    bars_of: &str,
    target: Option<(f64, String)>,
) -> [(&'static str, String); 5] {
    let seconds = live.seconds();
    let t0_us = seconds
        .iter()
        .map(|s| s.sec * 1_000_000)
        .chain(live.phases.iter().map(|p| p.started_us))
        .min()
        .unwrap_or(0);
    // The capacity sweep's steps are one band: a dozen short steps would be unreadable.
    let mut bands: Vec<Band> = Vec::new();
    for p in &live.phases {
        let (start, end) = (
            (p.started_us - t0_us) as f64 / 1e6,
            (p.finished_us.unwrap_or(p.started_us) - t0_us) as f64 / 1e6,
        );
        let name = if p.name.starts_with(crate::run::capacity::STEP_PREFIX) {
            "capacity sweep".to_string()
        } else {
            p.name.clone()
        };
        match bands.last_mut() {
            Some(last) if last.2 == name => last.1 = end.max(last.1),
            _ => bands.push((start, end, name)),
        }
    }
    let at = |sec: i64| (sec * 1_000_000 - t0_us) as f64 / 1e6;
    let latency: Vec<plots::SecondLatency> = seconds
        .iter()
        .filter(|s| s.latency.count > 0)
        .map(|s| {
            (
                at(s.sec),
                s.latency.p50_ms,
                s.latency.p99_ms,
                s.latency.max_ms,
            )
        })
        .collect();
    let per_second: Vec<(i64, u64)> = match (seconds.first(), seconds.last()) {
        (Some(a), Some(b)) => {
            let by: std::collections::BTreeMap<i64, u64> =
                seconds.iter().map(|s| (s.sec, s.events)).collect();
            (a.sec..=b.sec)
                .map(|s| (s, by.get(&s).copied().unwrap_or(0)))
                .collect()
        }
        _ => Vec::new(),
    };
    // At most HEAT_COLUMNS columns, each a stretch of whole seconds: the map's size is fixed.
    let per_column = seconds.len().div_ceil(HEAT_COLUMNS).max(1);
    let heat: Vec<plots::HeatColumn> = seconds
        .chunks(per_column)
        .map(|chunk| {
            let mut counts = vec![0; HEAT_BOUNDS_US.len() + 1];
            for s in chunk {
                for (c, n) in counts.iter_mut().zip(&s.heat) {
                    *c += n;
                }
            }
            let (first, last) = (chunk[0].sec, chunk[chunk.len() - 1].sec);
            (at(first), at(last) + 1.0, counts)
        })
        .collect();
    let bounds_ms: Vec<f64> = HEAT_BOUNDS_US.iter().map(|b| *b as f64 / 1000.0).collect();
    let cdfs: Vec<(String, crate::telemetry::stats::Latency)> = live
        .phases
        .iter()
        .map(|p| (p.name.clone(), p.stats.stages.get(Stage::Total).clone()))
        .collect();
    [
        (
            "latency-over-time",
            plots::latency_bands(&latency, &bands, target),
        ),
        (
            "latency-heat",
            plots::latency_heat(&heat, &bounds_ms, &bands),
        ),
        ("latency-cdf", plots::latency_cdf(&cdfs)),
        ("stage-breakdown", plots::stage_bars(bars, bars_of)),
        (
            "throughput",
            plots::throughput(&per_second, t0_us.div_euclid(1_000_000), &bands),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::telemetry::metrics::{EventRecord, MetricEvent, Timing};

    /// A one-hour run at 10 events/s: 36,000 events in two phases, latency 5–600 ms (the plots
    /// are per second: their size does not depend on the rate).
    fn hour() -> Live {
        let mut l = Live::default();
        let t0 = 1_700_000_000_000_000;
        for (phase, from, to) in [("soak", 0, 1800), ("soak-2", 1800, 3600)] {
            l.begin_phase_of(phase, (to - from) as u64 * 10);
            if let Some(p) = l.phases.last_mut() {
                p.started_us = t0 + from * 1_000_000;
            }
            for sec in from..to {
                for k in 0..10 {
                    let at = t0 + sec * 1_000_000 + k * 100_000;
                    let latency = 5_000 + (sec * 7 + k * 13) % 595_000;
                    let timing = Timing {
                        t0_us: at,
                        commit_us: None,
                        t1_us: at + 1_000,
                        t2_us: at + 2_000,
                        t3_us: at + 3_000,
                        t4_us: at + 3_100,
                        t5_us: at + latency,
                    };
                    let id = uuid::Uuid::new_v4();
                    l.fold(&MetricEvent::Event(EventRecord {
                        event_id: id,
                        event_type: EventType::UserCreated,
                        aggregate_id: id,
                        label: "ada".into(),
                        partition: 0,
                        offset: sec * 10 + k,
                        applied: true,
                        stages: timing.stages(),
                        timing,
                        tag: None,
                    }));
                }
            }
        }
        l
    }

    #[test]
    fn a_one_hour_runs_plots_stay_small_and_cover_every_second() {
        let l = hour();
        let plots = plots_of(
            &l,
            &[("CDC", 1.0, 2.0)],
            "the soak phase",
            Some((100.0, "target".into())),
        );
        let bytes: usize = plots.iter().map(|(_, svg)| svg.len()).sum();
        eprintln!("a one-hour run's plots: {bytes} bytes");
        // The whole report is these plots and a few tables: 2 MB is the report's bound.
        assert!(bytes < 1_500_000, "{bytes} bytes of plots");
        // Per second, not per event: one line vertex per second and line.
        let latency = &plots[0].1;
        assert!(latency.contains("p99") && latency.contains("max"), "legend");
        // Events written up to 0.6 s after their second: 3,600 seconds, and the one after.
        assert!((3600..=3601).contains(&l.seconds().len()));
        assert_eq!(l.seconds().iter().map(|s| s.events).sum::<u64>(), 36_000);
    }
}
