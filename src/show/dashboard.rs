//! The live terminal dashboard (ratatui + crossterm) and its headless counterpart.
//!
//! [`render`] draws one [`Snapshot`] and is pure, so tests render into ratatui's `TestBackend`.
//! [`run`] owns the terminal: it redraws every refresh interval from snapshots of the shared
//! live state, never touching the consumer, and `q`, Esc or Ctrl-C stop the run.

use std::io::IsTerminal;
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;
use tokio_util::sync::CancellationToken;

use crate::event::EventType;
use crate::fault::FaultState;
use crate::read_model::Collection;
use crate::show::report::thousands;
use crate::telemetry::health::Health;
use crate::telemetry::live::{ChaosView, RunState, Shared, Snapshot};
use crate::telemetry::stats::{Stage, Summary};

fn state_color(s: RunState) -> Color {
    match s {
        RunState::Running => Color::Green,
        RunState::Degraded => Color::Yellow,
        RunState::Error => Color::Red,
        RunState::Complete => Color::Blue,
    }
}

fn state_name(s: RunState) -> &'static str {
    match s {
        RunState::Running => "RUNNING",
        RunState::Degraded => "DEGRADED",
        RunState::Error => "ERROR",
        RunState::Complete => "COMPLETE",
    }
}

fn panel(title: &str, color: Color) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(color))
        .title(Span::styled(
            format!(" {title} "),
            Style::default().add_modifier(Modifier::BOLD),
        ))
}

fn hms(secs: f64) -> String {
    let s = secs as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.1}ms")
    }
}

/// Draws the whole dashboard.
pub fn render(f: &mut Frame, s: &Snapshot) {
    let color = state_color(s.state);
    let [header, row1, row2, row3] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Min(4),
    ])
    .areas(f.area());
    render_header(f, header, s, color);
    let [a, b] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(row1);
    render_throughput(f, a, s, color);
    render_latency(f, b, s, color);
    if let Some(c) = &s.chaos {
        // A chaos run's schedule takes the stage and recent-event panels' room: what breaks,
        // and whether it came back, is the story.
        let rest = Rect {
            height: row2.height + row3.height,
            ..row2
        };
        let [a, b] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .areas(rest);
        render_chaos(f, a, c, color);
        render_health(f, b, s, color);
        return;
    }
    let [a, b] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(row2);
    render_stages(f, a, s, color);
    render_types(f, b, s, color);
    let [a, b] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(row3);
    render_recent(f, a, s, color);
    render_health(f, b, s, color);
}

/// Where a fault stands, in a few words, with a countdown while it is held.
fn fault_text(state: &FaultState, now_us: i64) -> (String, Style) {
    let secs = |us: i64| (us as f64 / 1e6).max(0.0);
    match state {
        FaultState::Pending => ("pending".into(), Style::default().fg(Color::DarkGray)),
        FaultState::Active { until_us: Some(u) } => (
            format!("IN FORCE · cleared in {:.0} s", secs(u - now_us)),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        FaultState::Active { until_us: None } => (
            "IN FORCE · restarting".into(),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        FaultState::Recovering { since_us } => (
            format!("cleared {:.1} s ago · recovering", secs(now_us - since_us)),
            Style::default().fg(Color::Yellow),
        ),
        FaultState::Recovered(line) => (line.clone(), Style::default().fg(Color::Green)),
        FaultState::Failed(line) => (line.clone(), Style::default().fg(Color::Red)),
        FaultState::Skipped(why) => (
            format!("skipped: {why}"),
            Style::default().fg(Color::DarkGray),
        ),
    }
}

fn render_chaos(f: &mut Frame, area: Rect, c: &ChaosView, color: Color) {
    let block = panel("Chaos · faults one at a time", color);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [top, spark, list] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(1),
    ])
    .areas(inner);
    let backlog: Vec<u64> = c.backlog.iter().copied().collect();
    f.render_widget(
        Paragraph::new(format!(
            "backlog {} now · peak {} (last {} s)",
            thousands(backlog.last().copied().unwrap_or(0)),
            thousands(backlog.iter().copied().max().unwrap_or(0)),
            backlog.len()
        )),
        top,
    );
    let shown = &backlog[backlog.len().saturating_sub(spark.width as usize)..];
    f.render_widget(
        Sparkline::default()
            .data(shown)
            .style(Style::default().fg(Color::Yellow)),
        spark,
    );
    let now = crate::telemetry::clock::now_us();
    let lines: Vec<Line> = c
        .faults
        .iter()
        .map(|(fault, state)| {
            let (text, style) = fault_text(state, now);
            Line::from(vec![
                Span::raw(format!("{:<17} ", fault.name())),
                Span::styled(text, style),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), list);
}

fn render_header(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    let block = panel("pipedemo · CDC pipeline", color);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [line, gauge] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
    let remaining = s.target.saturating_sub(s.processed);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!(" {} ", state_name(s.state)),
                Style::default()
                    .fg(Color::Black)
                    .bg(color)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "  phase: {}  uptime: {}  ",
                s.phase,
                hms(s.uptime_secs)
            )),
            Span::styled(
                s.run_view
                    .as_ref()
                    .map(|v| format!("{}  ", v.text()))
                    .unwrap_or_default(),
                Style::default().fg(Color::Cyan),
            ),
            // Outages and probe failures go here: the health panel has no room to spare.
            Span::styled(
                if s.outage > 0 {
                    outage_text(s)
                } else {
                    s.process_problem
                        .clone()
                        .or_else(|| s.health.problem.clone())
                        .unwrap_or_default()
                },
                Style::default().fg(Color::Yellow),
            ),
        ])),
        line,
    );
    let (ratio, label) = if s.target > 0 {
        (
            (s.processed as f64 / s.target as f64).clamp(0.0, 1.0),
            format!(
                "{} / {} processed · {} remaining",
                thousands(s.processed),
                thousands(s.target),
                thousands(remaining)
            ),
        )
    } else {
        (0.0, format!("{} processed", thousands(s.processed)))
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(color).bg(Color::DarkGray))
            .ratio(ratio)
            .label(label),
        gauge,
    );
}

fn render_throughput(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    let err_style = if s.errors > 0 {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    };
    let lines = vec![
        Line::from(format!("Current  {:>8} ev/s", thousands(s.current_eps))),
        Line::from(format!(
            "Average  {:>8} ev/s",
            thousands(s.average_eps.round() as u64)
        )),
        Line::from(format!("Peak     {:>8} ev/s", thousands(s.peak_eps))),
        Line::styled(
            format!(
                "Errors   {:>8} ({:.2}%)",
                thousands(s.errors),
                s.error_rate * 100.0
            ),
            err_style,
        ),
    ];
    let block = panel("Throughput", color);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [text, spark] = Layout::vertical([Constraint::Length(4), Constraint::Min(0)]).areas(inner);
    f.render_widget(Paragraph::new(lines), text);
    f.render_widget(
        tail_sparkline(&s.eps_history, spark.width, Color::Cyan),
        spark,
    );
}

fn tail_sparkline(data: &[u64], width: u16, color: Color) -> Sparkline<'static> {
    let from = data.len().saturating_sub(width as usize);
    Sparkline::default()
        .data(data[from..].to_vec())
        .style(Style::default().fg(color))
}

fn render_latency(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    let t = &s.total;
    let lines = vec![
        Line::from(format!(
            "min {:>7}  mean {:>7}  max {:>7}",
            ms(t.min_ms),
            ms(t.mean_ms),
            ms(t.max_ms)
        )),
        Line::from(format!(
            "p50 {:>7}  p95  {:>7}  p99 {:>7}",
            ms(t.p50_ms),
            ms(t.p95_ms),
            ms(t.p99_ms)
        )),
        Line::styled("p95 per second:", Style::default().fg(Color::DarkGray)),
    ];
    let block = panel("Latency end-to-end (whole run)", color);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [text, spark] = Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(inner);
    f.render_widget(Paragraph::new(lines), text);
    f.render_widget(
        tail_sparkline(&s.p95_history, spark.width, Color::Magenta),
        spark,
    );
}

fn render_stages(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    let none = Summary::default();
    let stages: Vec<(&str, &Summary)> = Stage::PARTS
        .iter()
        .map(|stage| {
            let name = match stage {
                Stage::Cdc => "CDC capture  T1-T0",
                Stage::Kafka => "Kafka        T2-T1",
                Stage::Poll => "Poll         T3-T2",
                Stage::Processing | Stage::Total => "Processing   T5-T3",
            };
            (name, s.stages.get(stage).unwrap_or(&none))
        })
        .collect();
    let worst = stages
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .1.p95_ms.total_cmp(&b.1 .1.p95_ms))
        .map(|(i, _)| i)
        .filter(|_| s.total.count > 0);
    let rows = stages.iter().enumerate().map(|(i, (name, st))| {
        let style = if Some(i) == worst {
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        Row::new(vec![name.to_string(), ms(st.p50_ms), ms(st.p95_ms)]).style(style)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(19),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(vec!["Stage", "p50", "p95"]).style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(panel("Stage breakdown", color));
    f.render_widget(table, area);
}

fn render_types(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    let mut lines: Vec<Line> = EventType::ALL
        .iter()
        .map(|t| {
            Line::from(format!(
                "{:<18}{:>8}",
                t.as_str(),
                thousands(s.by_type.get(t).copied().unwrap_or(0))
            ))
        })
        .collect();
    lines.push(Line::styled(
        format!("{:<18}{:>8}", "Errors", thousands(s.errors)),
        if s.errors > 0 {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        },
    ));
    f.render_widget(
        Paragraph::new(lines).block(panel("Events by type", color)),
        area,
    );
}

fn render_recent(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    // Type, latency and time are fixed; the label takes what width is left.
    let label_w = (area.width as usize)
        .saturating_sub(2 + 2 + 18 + 9 + 9)
        .max(4);
    let lines: Vec<Line> = s
        .recent
        .iter()
        .map(|e| {
            let time = chrono::DateTime::from_timestamp_micros(e.at_us)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default();
            let (mark, style) = if e.ok {
                ("✓", Style::default().fg(Color::Green))
            } else {
                ("✗", Style::default().fg(Color::Red))
            };
            let label: String = e.label.chars().take(label_w).collect();
            Line::from(vec![
                Span::styled(mark, style),
                Span::raw(format!(
                    " {:<17} {label:<label_w$}{:>9} {time}",
                    e.event_type.chars().take(17).collect::<String>(),
                    if e.ok { ms(e.latency_ms) } else { "-".into() }
                )),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(panel("Recent events", color)),
        area,
    );
}

fn render_health(f: &mut Frame, area: Rect, s: &Snapshot, color: Color) {
    let h = &s.health;
    let count = |c: Collection| h.mongo_counts.get(&c).map_or("?".into(), |n| thousands(*n));
    let connector_ok = h.connector.is_some_and(|c| c.ok());
    let lag = h.lag.map_or("?".into(), |l| thousands(l.max(0) as u64));
    let lines = vec![
        Line::from(format!("Consumer lag  {lag}")),
        Line::styled(
            format!("Debezium      {}", connector_text(h)),
            if connector_ok {
                Style::default()
            } else {
                Style::default().fg(Color::Yellow)
            },
        ),
        Line::from(format!("Users         {}", count(Collection::Users))),
        Line::from(format!("Activities    {}", count(Collection::Activities))),
    ];
    f.render_widget(
        Paragraph::new(lines).block(panel("Pipeline health", color)),
        area,
    );
}

/// Takes the colour out of a drawn frame (`NO_COLOR`, `--color never`): what a colour marked
/// by its background (the state badge, the gauge's filled part) is shown in reverse video
/// instead, so the frame says the same in black and white.
pub fn monochrome(buf: &mut ratatui::buffer::Buffer) {
    for cell in buf.content.iter_mut() {
        if !matches!(cell.bg, Color::Reset | Color::DarkGray) {
            cell.modifier.insert(Modifier::REVERSED);
        }
        cell.set_fg(Color::Reset);
        cell.set_bg(Color::Reset);
    }
}

/// Whether to draw the dashboard: a terminal on stdout and not `--no-tui`.
pub fn use_tui(no_tui: bool) -> bool {
    !no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Draws the dashboard (in colour when `colors`) until `done` or `stop` is cancelled; `q`, Esc
/// or Ctrl-C cancel `stop`.
/// The terminal is restored on return, also after a panic (ratatui's hook).
pub async fn run(
    live: Shared,
    refresh: Duration,
    colors: bool,
    stop: CancellationToken,
    done: CancellationToken,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()?;
    // A terminal without an alternate screen still shows what was on it: the first frame
    // only writes the cells it fills, so a line left from before would stay in a blank panel.
    terminal.clear()?;
    let result = async {
        loop {
            let snap = live.lock().snapshot();
            terminal.draw(|f| {
                render(f, &snap);
                if !colors {
                    monochrome(f.buffer_mut());
                }
            })?;
            if done.is_cancelled() || stop.is_cancelled() {
                break;
            }
            // Keyboard polling blocks, so it runs off the async threads.
            let key = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Event>> {
                if event::poll(refresh)? {
                    Ok(Some(event::read()?))
                } else {
                    Ok(None)
                }
            })
            .await??;
            if let Some(Event::Key(k)) = key {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if k.kind == KeyEventKind::Press
                    && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                {
                    stop.cancel();
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    ratatui::restore();
    result
}

/// One plain progress line, for headless runs (at most one a second).
pub fn progress_line(s: &Snapshot) -> String {
    if s.observing {
        return health_line(s);
    }
    if let Some(result) = &s.result {
        return format!("[{}] {result}", state_name(s.state));
    }
    // The phase's own events: a line that names the phase shows no other phase's figures
    // (the pre-warm's JVM stall in the extreme phase's line).
    let latency = s.phase_total.as_ref().unwrap_or(&s.total);
    let mut line = format!(
        "[{}] {} {}/{} · {} ev/s (avg {:.0}, peak {}) · p50 {} p95 {} p99 {} · errors {} · lag {}",
        state_name(s.state),
        s.phase,
        thousands(s.phase_done),
        thousands(s.phase_target),
        thousands(s.current_eps),
        s.average_eps,
        thousands(s.peak_eps),
        ms(latency.p50_ms),
        ms(latency.p95_ms),
        ms(latency.p99_ms),
        s.errors,
        s.health.lag.map_or("?".into(), |l| l.to_string()),
    );
    if let Some(v) = &s.run_view {
        line.push_str(" · ");
        line.push_str(&v.text());
    }
    if s.outage > 0 {
        line.push_str(" · ");
        line.push_str(&outage_text(s));
    } else if let Some(p) = s.process_problem.as_ref().or(s.health.problem.as_ref()) {
        line.push_str(" · problem: ");
        line.push_str(p);
    }
    if let Some(c) = &s.chaos {
        let now = crate::telemetry::clock::now_us();
        line.push_str(&format!(
            " · backlog {}",
            thousands(c.backlog.back().copied().unwrap_or(0))
        ));
        if let Some((fault, state)) = c.faults.iter().find(|(_, st)| {
            matches!(
                st,
                FaultState::Active { .. } | FaultState::Recovering { .. }
            )
        }) {
            line.push_str(&format!(" · {fault}: {}", fault_text(state, now).0));
        }
    }
    line
}

/// What is failing and for how many retries: the header's and the progress line's words.
fn outage_text(s: &Snapshot) -> String {
    format!(
        "{}, retry #{} (nothing committed)",
        s.outage_reason.as_deref().unwrap_or("MongoDB down"),
        s.outage
    )
}

/// The connector's state and running/all tasks, `?` while unknown.
fn connector_text(h: &Health) -> String {
    h.connector.map_or_else(|| "?".into(), |c| c.to_string())
}

/// The health-only line of `monitor --observe`: lag, connector and read-model counts.
fn health_line(s: &Snapshot) -> String {
    let h = &s.health;
    let counts: Vec<String> = h
        .mongo_counts
        .iter()
        .map(|(c, n)| format!("{c} {}", thousands(*n)))
        .collect();
    let mut line = format!(
        "[{}] observing · lag {} · Debezium {} · MongoDB {}",
        state_name(s.state),
        h.lag.map_or("?".into(), |l| thousands(l.max(0) as u64)),
        connector_text(h),
        if counts.is_empty() {
            "?".to_owned()
        } else {
            counts.join(", ")
        }
    );
    if let Some(p) = &h.problem {
        line.push_str(" · problem: ");
        line.push_str(p);
    }
    line
}

/// Prints a progress line every `every` until `done` or `stop`.
pub async fn run_headless(
    live: Shared,
    every: Duration,
    stop: CancellationToken,
    done: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.cancelled() => break,
            _ = stop.cancelled() => break,
        }
        let snap = live.lock().snapshot();
        eprintln!("{}", progress_line(&snap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::clock::now_us;
    use crate::telemetry::health::{ConnectorHealth, ConnectorState};
    use crate::telemetry::live::Live;
    use crate::telemetry::metrics::{ErrorRecord, EventRecord, MetricEvent, Timing};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use uuid::Uuid;

    fn screen(live: &Live, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        let snap = live.snapshot();
        t.draw(|f| render(f, &snap)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn fed() -> Live {
        let mut l = Live::default();
        let ids: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
        l.begin_phase("stress", ids.clone());
        let t0 = now_us() - 2_000_000;
        for (i, id) in ids.iter().take(30).enumerate() {
            let timing = Timing {
                t0_us: t0,
                commit_us: None,
                t1_us: t0 + 4_000,
                t2_us: t0 + 5_000,
                t3_us: t0 + 7_000,
                t4_us: t0 + 7_100,
                t5_us: t0 + 10_000 + i as i64 * 1000,
            };
            let (event_type, label) = match i % 3 {
                0 => (EventType::UserCreated, "ada_lovelace"),
                1 => (EventType::ActivityCreated, "Morning hike"),
                _ => (EventType::ParticipantJoined, "grace"),
            };
            l.fold(&applied(*id, event_type, label, i as i64, timing));
        }
        l.fold(&MetricEvent::Error(ErrorRecord {
            partition: 0,
            offset: 99,
            event_id: None,
            event_type: None,
            reason: "message value is not JSON".into(),
            at_us: now_us(),
            tag: None,
        }));
        l.health.lag = Some(10);
        l.health.connector = Some(ConnectorHealth {
            state: ConnectorState::Running,
            tasks_running: 1,
            tasks: 1,
        });
        l.health.mongo_counts.insert(Collection::Users, 10);
        l.health.mongo_counts.insert(Collection::Activities, 10);
        l
    }

    #[test]
    fn panels_show_the_numbers_fed_in() {
        let s = screen(&fed(), 100, 30);
        for want in [
            "ERROR",
            "phase: stress",
            "30 / 40 processed · 10 remaining",
            "Throughput",
            "Errors          1",
            "Latency end-to-end",
            "p50  24.0ms",
            "max  39.0ms",
            "CDC capture  T1-T0  4.0ms",
            "Processing   T5-T3",
            "UserCreated             10",
            "ParticipantJoined       10",
            "✗ error",
            "✓ ParticipantJoined grace",
            "Consumer lag  10",
            "Debezium      RUNNING 1/1",
            "Users         10",
        ] {
            assert!(s.contains(want), "{want:?} not on screen:\n{s}");
        }
    }

    #[test]
    fn a_run_of_several_processes_shows_its_merged_figures() {
        let mut l = fed();
        l.run_view = Some(crate::telemetry::live::RunView {
            processes: 5,
            hosts: 3,
            applied: 4812,
            p99_ms: 41.04,
            stopped: 1,
        });
        let s = screen(&l, 140, 30);
        let want = "run: 5 processes on 3 hosts · 4,812 applied · p99 41.0ms · 1 stopped";
        assert!(s.contains(want), "not on screen:\n{s}");
        assert!(progress_line(&l.snapshot()).contains(want));
    }

    #[test]
    fn fits_80x24_and_survives_tiny_terminals() {
        let s = screen(&fed(), 80, 24);
        assert!(
            s.contains("Pipeline health") && s.contains("Recent events"),
            "{s}"
        );
        for (w, h) in [(40, 10), (10, 3), (1, 1)] {
            screen(&fed(), w, h);
        }
    }

    #[test]
    fn a_chaos_run_shows_its_schedule_countdown_and_backlog_in_80x24() {
        use crate::fault::Fault;
        let mut l = fed();
        let now = crate::telemetry::clock::now_us();
        let mut c = crate::telemetry::live::ChaosView {
            faults: vec![
                (
                    Fault::ConsumerKill,
                    FaultState::Recovered("recovered in 11.2 s · peak backlog 3,212".into()),
                ),
                (
                    Fault::KafkaStop,
                    FaultState::Active {
                        until_us: Some(now + 7_400_000),
                    },
                ),
                (Fault::MongoStop, FaultState::Pending),
                (
                    Fault::PostgresRestart,
                    FaultState::Skipped("PostgreSQL is not the local stack's".into()),
                ),
            ],
            ..Default::default()
        };
        for n in [3, 5, 400, 2950] {
            c.push_backlog(n);
        }
        l.chaos = Some(c);
        l.process_problem = Some("consumer process 42 was killed (SIGKILL)".into());
        let s = screen(&l, 80, 24);
        for want in [
            "DEGRADED",
            "consumer process 42 was killed",
            "Chaos",
            "backlog 2,950 now · peak 2,950",
            "consumer-kill     recovered in 11.2 s",
            "kafka-stop        IN FORCE · cleared in 7 s",
            "mongo-stop        pending",
            "postgres-restart  skipped",
            "Pipeline health",
        ] {
            assert!(s.contains(want), "{want:?} missing:\n{s}");
        }
        let line = progress_line(&l.snapshot());
        assert!(
            line.contains("backlog 2,950 · kafka-stop: IN FORCE · cleared in 7 s"),
            "{line}"
        );
    }

    #[test]
    fn without_colour_the_frame_keeps_its_words_and_marks_the_state_in_reverse() {
        let backend = ratatui::backend::TestBackend::new(80, 24);
        let mut t = ratatui::Terminal::new(backend).unwrap();
        let snap = fed().snapshot();
        t.draw(|f| {
            render(f, &snap);
            monochrome(f.buffer_mut());
        })
        .unwrap();
        let buf = t.backend().buffer();
        assert!(buf
            .content
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
        let text: String = buf.content.iter().map(|c| c.symbol()).collect();
        let at = text.find(" ERROR ").expect("the state badge");
        let badge = &buf.content[text[..at].chars().count() + 1];
        assert!(badge.modifier.contains(Modifier::REVERSED));
    }

    /// Folds `n` applied events of the current phase, each `latency_ms` from T0 to T5.
    fn arrive(l: &mut Live, ids: &[Uuid], latency_ms: i64) {
        let t0 = now_us() - 2_000_000;
        for (i, id) in ids.iter().enumerate() {
            let timing = Timing {
                t0_us: t0,
                commit_us: None,
                t1_us: t0 + 1_000,
                t2_us: t0 + 2_000,
                t3_us: t0 + 3_000,
                t4_us: t0 + 3_100,
                t5_us: t0 + latency_ms * 1000,
            };
            l.fold(&applied(
                *id,
                EventType::UserCreated,
                "ada",
                i as i64,
                timing,
            ));
        }
    }

    /// An applied event's record.
    fn applied(
        id: Uuid,
        event_type: EventType,
        label: &str,
        offset: i64,
        timing: Timing,
    ) -> MetricEvent {
        MetricEvent::Event(EventRecord {
            event_id: id,
            event_type,
            aggregate_id: id,
            label: label.into(),
            partition: 0,
            offset,
            applied: true,
            stages: timing.stages(),
            timing,
            tag: None,
        })
    }

    #[test]
    fn the_progress_line_shows_the_phases_own_percentiles() {
        let mut l = Live::default();
        let warm: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
        l.begin_phase("pre-warm", warm.clone());
        arrive(&mut l, &warm, 600);
        let extreme: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
        l.begin_phase("extreme", extreme.clone());
        arrive(&mut l, &extreme[..20], 14);
        let line = progress_line(&l.snapshot());
        assert!(
            line.starts_with("[RUNNING] extreme 20/50") && line.contains("p99 14.0ms"),
            "{line}"
        );
        assert!(!line.contains("600"), "another phase's figures in {line}");
        // The whole run's figures are still what the run's own total says.
        assert!(l.snapshot().total.p99_ms > 500.0);
    }

    #[test]
    fn complete_runs_are_shown_as_complete() {
        let mut l = fed();
        l.complete = true;
        assert!(screen(&l, 80, 24).contains("COMPLETE"));
        assert!(progress_line(&l.snapshot()).starts_with("[COMPLETE] stress 30/40"));
    }

    #[test]
    fn a_complete_run_that_found_a_result_says_it_rather_than_its_last_step() {
        let mut l = fed();
        l.result = Some("capacity 2,000 events/s".into());
        // Not before it is over.
        assert!(progress_line(&l.snapshot()).starts_with("[ERROR] stress 30/40"));
        l.complete = true;
        assert_eq!(
            progress_line(&l.snapshot()),
            "[COMPLETE] capacity 2,000 events/s"
        );
    }
}
