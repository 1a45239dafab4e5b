//! What a run measured, as values: a phase, a capacity step and sweep, the whole show. The run
//! engine makes them; `show` renders them and the commands print them as JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::check::capacity::Verdict;
use crate::check::targets::Targets;
use crate::check::verify::VerifyReport;
use crate::config::Routing;
use crate::event::EventType;
use crate::pipeline::generator::Mix;
use crate::pipeline::writer::WriteModel;
use crate::telemetry::cpu::Service;
use crate::telemetry::gc::PausesIn;
use crate::telemetry::stats::{Latency, RunStats, Stage, Summary};

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// Phase name.
    pub name: String,
    /// Events asked for.
    pub events: u64,
    /// Events inserted: fewer than asked for when the run was interrupted.
    pub sent: u64,
    /// Outbox transactions they were written in.
    pub transactions: u64,
    /// How they were written.
    pub write: WriteModel,
    /// How the connector routed them to Kafka.
    pub routing: Routing,
    /// The rate they were offered at (open loop), events/s; `None`: as fast as they went.
    pub offered_eps: Option<f64>,
    /// The mix of types.
    pub mix: Mix,
    /// Metrics of this phase's events.
    pub stats: RunStats,
    /// Seconds spent inserting.
    pub insert_secs: f64,
    /// Seconds from the first insert until the last event was in MongoDB.
    pub wall_secs: f64,
    /// Event ids that never arrived (empty on success).
    pub missing: Vec<Uuid>,
    /// Events found in MongoDB that another consumer of the group applied (their latency is
    /// in that consumer's records).
    pub elsewhere: u64,
    /// For paced phases: T5 minus each event's scheduled insert time.
    pub from_schedule: Option<Latency>,
    /// Events of the phase that arrived before its inserts ended.
    pub arrived_while_inserting: u64,
    /// (seconds since the phase began, events inserted and not yet arrived) at each insert.
    pub backlog: Vec<(f64, f64)>,
    /// The phase in windows of ten seconds: rate, latency and memory over time.
    pub timeline: Vec<TimelinePoint>,
    /// The figures are the run's, merged over every process that reported the phase (false:
    /// this process's own, the results topic being out of reach).
    pub merged: bool,
    /// Each process's part: consumers' events and latency, generators' offered rate.
    pub processes: Vec<crate::telemetry::results::Share>,
    /// Events other generators offered that never arrived.
    pub missing_elsewhere: u64,
    /// Events of the phase that arrived (distinct: applied anywhere, or dead-lettered), over
    /// every generator of the run.
    pub arrived: u64,
    /// Events whose first application no process reported (a consumer killed before it
    /// published them): counted as delivered, their latency unknown and left out.
    pub unreported: u64,
    /// Generators of the run.
    pub generators: u32,
    /// The last problem the health line showed (the dashboard's DEGRADED cause) while the
    /// phase waited for its events: what a run whose events did not all arrive names as the
    /// cause.
    pub problem_while_waiting: Option<String>,
}

/// One window of a phase's timeline.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TimelinePoint {
    /// Seconds from the phase's start to the window's start.
    pub at_secs: i64,
    /// Events applied per second in the window.
    pub applied_eps: f64,
    /// End-to-end p50 of those events, ms.
    pub p50_ms: f64,
    /// End-to-end p99 of those events, ms.
    pub p99_ms: f64,
    /// pipedemo's resident memory, MB.
    pub rss_mb: Option<f64>,
}

/// A JSON form of [`PhaseResult`].
#[derive(Serialize, Clone, Debug, Default)]
pub struct PhaseSummary {
    /// Phase name.
    pub phase: String,
    /// Events asked for.
    pub events: u64,
    /// Events inserted: fewer than asked for when the run was interrupted.
    pub sent: u64,
    /// Whether a signal stopped the inserts before all were sent.
    pub interrupted: bool,
    /// The rate offered (open loop), events/s; none when unpaced.
    pub offered_eps: Option<f64>,
    /// How the events were written: "20 ms windows, 1 connection", "1 row per transaction, 8
    /// connections".
    pub write_model: String,
    /// How the connector routed the events: `raw` (Debezium's change events on one topic) or
    /// `event-router` (the Outbox Event Router, a topic per aggregate type).
    pub routing: Routing,
    /// Outbox transactions written.
    pub transactions: u64,
    /// Transactions per second while inserting.
    pub transactions_per_sec: f64,
    /// Events found in MongoDB.
    pub delivered: u64,
    /// Of those, applied by another consumer of the group (no latency measured here).
    pub applied_elsewhere: u64,
    /// Applied with times that cannot be real: left out of the latency figures.
    pub timing_implausible: u64,
    /// Events missing.
    pub missing: usize,
    /// Dead-lettered messages.
    pub errors: u64,
    /// First insert to last write, s.
    pub duration_secs: f64,
    /// delivered / duration.
    pub throughput_eps: f64,
    /// Insert phase only, events/s.
    pub insert_rate_eps: f64,
    /// Seconds spent inserting.
    pub insert_secs: f64,
    /// Latency by stage.
    pub stages: BTreeMap<Stage, Summary>,
    /// End-to-end latency by type.
    pub by_type: BTreeMap<EventType, Summary>,
    /// For paced runs: latency from each event's scheduled insert time to its write
    /// (open-loop measurement, immune to coordinated omission).
    pub total_from_schedule: Option<Summary>,
    /// Rate, latency and pipedemo's memory in ten-second windows.
    pub timeline: Vec<TimelinePoint>,
    /// The figures cover every process of the run (merged from the results topic), not
    /// only this one.
    pub merged: bool,
    /// Events delivered whose first application no process reported (a consumer killed
    /// before publishing them): their latency is unknown and not in the figures.
    pub latency_unreported: u64,
    /// Generators of the run.
    pub generators: u32,
    /// Each process's part: host, events applied, its own p99, rows offered and rate.
    pub processes: Vec<crate::telemetry::results::Share>,
}

impl PhaseResult {
    /// Outbox transactions per second while inserting.
    pub fn transactions_per_sec(&self) -> f64 {
        if self.insert_secs > 0.0 {
            self.transactions as f64 / self.insert_secs
        } else {
            0.0
        }
    }

    /// The JSON summary.
    pub fn summary(&self) -> PhaseSummary {
        let delivered = self.arrived;
        PhaseSummary {
            phase: self.name.clone(),
            events: self.events,
            sent: self.sent,
            interrupted: self.sent < self.events,
            offered_eps: self.offered_eps,
            write_model: self.write.at_rate(self.offered_eps),
            routing: self.routing,
            transactions: self.transactions,
            transactions_per_sec: self.transactions_per_sec(),
            delivered,
            applied_elsewhere: self.elsewhere,
            timing_implausible: self.stats.implausible,
            missing: self.missing.len() + self.missing_elsewhere as usize,
            errors: self.stats.errors,
            duration_secs: self.wall_secs,
            throughput_eps: if self.wall_secs > 0.0 {
                delivered as f64 / self.wall_secs
            } else {
                0.0
            },
            insert_rate_eps: if self.insert_secs > 0.0 {
                self.sent as f64 / self.insert_secs
            } else {
                0.0
            },
            stages: self.stats.stages.summaries(),
            by_type: self.stats.by_type_summaries(),
            total_from_schedule: self.from_schedule.as_ref().map(|l| l.summary()),
            timeline: self.timeline.clone(),
            insert_secs: self.insert_secs,
            merged: self.merged,
            latency_unreported: self.unreported,
            generators: self.generators,
            processes: self.processes.clone(),
        }
    }
}

/// One step of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The rate offered, events/s.
    pub offered_eps: f64,
    /// Events that reached MongoDB while the step's inserts ran, per second.
    pub achieved_eps: f64,
    /// Outbox transactions per second while the step's inserts ran.
    pub transactions_per_sec: f64,
    /// Events of the step.
    pub events: u64,
    /// Events of the step's lead-in, its rate offered for
    /// [`LEAD_IN`](super::capacity::LEAD_IN) just before it, verified but not judged.
    pub lead_in_events: u64,
    /// Events this run had already written to the read models when the step began (earlier
    /// phases and steps, and the lead-in; on a fresh store the lead-in's alone): the MongoDB
    /// server's work per event grows with the read models' size, so a step is judged on the
    /// store the sweep's path left (docs/performance.md).
    pub events_before: u64,
    /// End-to-end latency from each event's scheduled insert time (open loop).
    pub latency: Summary,
    /// Latency of each stage (T1−T0 … T5−T3) and end to end (T5−T0).
    pub stages: BTreeMap<Stage, Summary>,
    /// How fast the backlog (inserted, not yet in MongoDB) grew, events/s.
    pub backlog_slope_eps: f64,
    /// CPU of each local process during the step, % of one core.
    pub cpu_pct: BTreeMap<Service, f64>,
    /// Sustained, and why (not).
    pub verdict: Verdict,
    /// The stack's JVM pauses (Kafka, Connect) during the step, from their GC logs (empty
    /// when none are found).
    pub gc_pauses: Vec<PausesIn>,
    /// A step that failed on latency alone is offered again: this was its first try.
    pub first_try: Option<Box<Step>>,
}

/// What a sweep found.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityReport {
    /// How the connector routed the events (`raw` or `event-router`).
    pub routing: Routing,
    /// Each step started on empty read models ([`super::capacity::CapacityOptions::fresh_store`]).
    pub fresh_store: bool,
    /// The highest rate sustained within the SLO, events/s (none: not even the lowest).
    pub sustained_eps: Option<f64>,
    /// The lowest rate above it that was not sustained: the knee lies between the two.
    pub knee_above_eps: Option<f64>,
    /// How far above the figure the knee may lie, as a fraction of the figure: the sweep's
    /// resolution there (`None`: no rate above the figure failed).
    pub uncertainty: Option<f64>,
    /// The throughput ceiling as far as the sweep saw it: the highest rate whose backlog
    /// stayed flat, whatever its latency.
    pub ceiling_eps: Option<f64>,
    /// The lowest rate whose backlog grew (none: the pipeline kept up with every rate).
    pub overflow_eps: Option<f64>,
    /// The latency target, ms (p99).
    pub slo_p99_ms: f64,
    /// Seconds each rate was offered.
    pub step_secs: f64,
    /// The stage whose p99 grew most from the highest sustained step to the next one up.
    pub limiting_stage: Option<Stage>,
    /// How much that stage's p99 grew, ms.
    pub limiting_growth_ms: Option<f64>,
    /// Every step, in the order offered.
    pub steps: Vec<Step>,
}

/// The whole result of `pipedemo capacity`, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct CapacityOutcome {
    /// The sweep.
    #[serde(flatten)]
    pub capacity: CapacityReport,
    /// Every event of the sweep traced in the read models.
    pub verification: VerifyReport,
    /// Why the run failed (empty when it passed).
    pub failures: Vec<String>,
}

/// What `full` measured.
#[derive(Debug, Serialize)]
pub struct FullOutcome {
    /// Per-phase summaries.
    pub phases: Vec<PhaseSummary>,
    /// The verification.
    pub verification: VerifyReport,
    /// Gates broken and phases that missed the targets, one sentence each (empty when all
    /// held).
    pub threshold_failures: Vec<String>,
    /// Every `--threshold` judged.
    pub thresholds: Vec<crate::check::thresholds::Checked>,
    /// Events over all phases.
    pub total_events: u64,
    /// Seconds the phases took (pre-warm and capacity phase apart).
    pub total_secs: f64,
    /// Unpaced overload: the latency is queueing, not the pipeline's.
    pub burst: bool,
    /// The targets each phase was held to.
    pub targets: Targets,
    /// Per phase, the targets it missed (empty when met).
    pub targets_missed: Vec<Vec<String>>,
    /// The pre-warm phase before the show, not held to the targets.
    pub prewarm: Option<PhaseSummary>,
    /// The closing capacity phase.
    pub capacity: Option<CapacityReport>,
    /// The chaos phase (`full --chaos`).
    pub chaos: Option<crate::run::chaos::outcome::ChaosOutcome>,
    /// This run against a baseline (`full --baseline`).
    pub comparison: Option<crate::check::compare::Comparison>,
}

impl FullOutcome {
    /// Judges `thresholds` on this outcome's figures (as its JSON document holds them).
    pub fn gate(&mut self, thresholds: &[crate::check::thresholds::Threshold]) {
        use crate::check::{figures, thresholds as gates};
        let doc = serde_json::to_value(&*self).unwrap_or_default();
        self.thresholds = gates::judge(thresholds, &figures::figures(figures::Kind::Full, &doc));
        self.threshold_failures.extend(
            self.thresholds
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.failure()),
        );
    }

    /// The run's one verdict: every reason it failed, one sentence each (empty: it passed).
    /// Delivery and integrity, the phases against their targets and the thresholds (with the
    /// baseline's regressions among them), the chaos phase. The closing text, the summary card
    /// and the JSON report all say this, so no line of the show contradicts another.
    pub fn failures(&self) -> Vec<String> {
        let mut why: Vec<String> = self.verification.failure().into_iter().collect();
        why.extend(self.threshold_failures.iter().cloned());
        if let Some(c) = self.chaos.as_ref().filter(|c| !c.passed) {
            why.extend(c.failures.iter().map(|f| format!("chaos: {f}")));
        }
        why
    }

    /// Nothing failed ([`Self::failures`]).
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }
}
