//! Charts for the HTML report, drawn by plotters as inline SVG.

use plotters::prelude::*;

use crate::telemetry::stats::Latency;

const W: u32 = 1200;
const H: u32 = 420;
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw(
    f: impl FnOnce(
        &DrawingArea<SVGBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Err(e) = f(&root) {
            tracing::warn!("plot failed: {e}");
        }
        let _ = root.present();
    }
    // As wide as the page: the viewBox keeps the proportions, the width follows the column.
    svg.replacen(
        &format!("width=\"{W}\" height=\"{H}\""),
        "width=\"100%\" preserveAspectRatio=\"xMidYMid meet\"",
        1,
    )
}

/// An over-time chart: seconds against a value.
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A named interval of an over-time plot's x axis (a phase, a fault), in its seconds.
pub type Band = (f64, f64, String);

/// Shades `bands` (alternating tints, so neighbours stay apart) and names each at the top.
fn draw_bands(
    c: &mut Chart<'_, '_>,
    bands: &[Band],
    ymax: f64,
    xmax: f64,
    color: RGBColor,
) -> Result<(), Box<dyn std::error::Error>> {
    c.draw_series(bands.iter().enumerate().map(|(i, (a, b, _))| {
        let tint = color.mix(if i % 2 == 0 { 0.10 } else { 0.20 });
        // A moment (a kill and restart) still gets a visible band.
        Rectangle::new([(*a, 0.0), (b.max(a + xmax / 300.0), ymax)], tint.filled())
    }))?;
    // A name goes on its band when the band is wide enough for it (about 7 px a character
    // across a plot about 1,100 px wide); neighbours take turns between two rows.
    let px_per_x = 1100.0 / xmax.max(1e-9);
    c.draw_series(
        bands
            .iter()
            .enumerate()
            .filter(|(_, (a, b, name))| (b - a) * px_per_x >= 7.0 * name.chars().count() as f64)
            .map(|(i, (a, _, name))| {
                let row = if i % 2 == 0 { 0.97 } else { 0.92 };
                Text::new(
                    name.clone(),
                    (*a, ymax * row),
                    ("sans-serif", 13).into_font().color(&color),
                )
            }),
    )?;
    Ok(())
}

/// A horizontal limit line (an SLO) with its legend entry.
fn draw_limit<'a, 'b: 'a>(
    c: &mut Chart<'a, 'b>,
    limit: Option<(f64, String)>,
    xmax: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some((y, label)) = limit {
        let color = PALETTE[3];
        c.draw_series(DashedLineSeries::new(
            [(0.0, y), (xmax, y)],
            8,
            5,
            color.stroke_width(2),
        ))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    Ok(())
}

/// One second of a latency plot: (seconds since the start, p50, p99, max), ms.
pub type SecondLatency = (f64, f64, f64, f64);

/// End-to-end latency per second of the run (when written): p50, p99 and max lines, each
/// phase shaded, the latency target dashed. A fixed cost per second, whatever the rate: the
/// per-event data stays in the metrics file. `seconds`: (seconds since the start, p50, p99,
/// max), ms. The y axis ends above the highest p99, so that a stall's max does not flatten
/// the rest; a max above it runs along the top.
pub fn latency_bands(
    seconds: &[SecondLatency],
    phases: &[Band],
    limit: Option<(f64, String)>,
) -> String {
    draw(|root| {
        let xmax = seconds
            .iter()
            .map(|p| p.0)
            .chain(phases.iter().map(|b| b.1))
            .fold(1.0, f64::max);
        let ymax = seconds
            .iter()
            .map(|p| p.2)
            .chain(limit.iter().map(|l| l.0))
            .fold(1.0, f64::max)
            * 1.15;
        let mut c = ChartBuilder::on(root)
            .caption(
                "End-to-end latency per second: p50, p99, max (phases shaded)",
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        c.configure_mesh()
            .x_desc("seconds since the run started (events by when they were written)")
            .y_desc("latency (ms)")
            .draw()?;
        draw_bands(&mut c, phases, ymax, xmax, PALETTE[0])?;
        let lines = [
            (
                "max",
                PALETTE[5],
                seconds.iter().map(|p| p.3).collect::<Vec<_>>(),
            ),
            ("p99", PALETTE[3], seconds.iter().map(|p| p.2).collect()),
            ("p50", PALETTE[0], seconds.iter().map(|p| p.1).collect()),
        ];
        for (name, color, ys) in lines {
            c.draw_series(LineSeries::new(
                seconds.iter().zip(ys).map(|(p, y)| (p.0, y.min(ymax))),
                color.stroke_width(if name == "max" { 1 } else { 2 }),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        // The limit's legend, when there is one, lists these lines too.
        if limit.is_some() {
            draw_limit(&mut c, limit, xmax)?;
        } else {
            c.configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
        Ok(())
    })
}

/// One column of the latency heat map: its x span (seconds since the start) and its events
/// per latency bucket.
pub type HeatColumn = (f64, f64, Vec<u64>);

/// How latency is spread over time: a column per stretch of the run, a cell per latency
/// bucket (`bounds_ms`, upper bounds, then the slower rest), darker for a larger share of the
/// column's events. Shows what percentile lines cannot: two populations at once (a stall's
/// late events among prompt ones).
pub fn latency_heat(columns: &[HeatColumn], bounds_ms: &[f64], phases: &[Band]) -> String {
    draw(|root| {
        let xmax = columns
            .iter()
            .map(|c| c.1)
            .chain(phases.iter().map(|b| b.1))
            .fold(1.0, f64::max);
        let rows = bounds_ms.len() + 1;
        let mut c = ChartBuilder::on(root)
            .caption(
                "Latency heat map: share of each stretch's events per latency bucket",
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..xmax, 0.0..rows as f64)?;
        let label = |y: &f64| {
            let i = y.floor() as usize;
            match bounds_ms.get(i) {
                Some(b) if *b >= 1000.0 => format!("≤ {} s", b / 1000.0),
                Some(b) => format!("≤ {b} ms"),
                None => format!("> {} s", bounds_ms.last().copied().unwrap_or(0.0) / 1000.0),
            }
        };
        c.configure_mesh()
            .disable_mesh()
            .y_labels(rows)
            .y_label_formatter(&label)
            .x_desc("seconds since the run started (events by when they were written)")
            .y_desc("end-to-end latency")
            .draw()?;
        draw_bands(&mut c, phases, rows as f64, xmax, PALETTE[2])?;
        c.draw_series(columns.iter().flat_map(|(x0, x1, counts)| {
            let total = counts.iter().sum::<u64>().max(1) as f64;
            counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(i, n)| {
                    let share = *n as f64 / total;
                    Rectangle::new(
                        [(*x0, i as f64), (*x1, i as f64 + 1.0)],
                        PALETTE[0].mix(0.15 + 0.85 * share).filled(),
                    )
                })
        }))?;
        Ok(())
    })
}

/// Cumulative distribution of end-to-end latency, one line per phase.
pub fn latency_cdf(phases: &[(String, Latency)]) -> String {
    draw(|root| {
        let xmax = phases
            .iter()
            .map(|(_, l)| l.quantile_ms(1.0))
            .fold(1.0, f64::max)
            * 1.05;
        let mut c = ChartBuilder::on(root)
            .caption("Latency CDF per phase", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..1.0)?;
        c.configure_mesh()
            .x_desc("end-to-end latency (ms)")
            .y_desc("fraction of events")
            .draw()?;
        for (i, (name, l)) in phases.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            c.draw_series(LineSeries::new(l.cdf(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// p50 and p95 of each stage as bars.
pub fn stage_bars(stages: &[(&str, f64, f64)], of: &str) -> String {
    draw(|root| {
        let ymax = stages.iter().map(|s| s.2).fold(1.0, f64::max) * 1.1;
        let n = stages.len() as f64;
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("Stage breakdown of {of} (p50 and p95)"),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n, 0.0..ymax)?;
        let names: Vec<String> = stages.iter().map(|s| s.0.to_owned()).collect();
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(stages.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("ms")
            .draw()?;
        for (i, (_, p50, p95)) in stages.iter().enumerate() {
            let x = i as f64;
            c.draw_series([
                Rectangle::new([(x + 0.1, 0.0), (x + 0.45, *p50)], PALETTE[0].filled()),
                Rectangle::new([(x + 0.55, 0.0), (x + 0.9, *p95)], PALETTE[1].filled()),
            ])?;
        }
        c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("p50")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], PALETTE[0].filled()));
        c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("p95")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], PALETTE[1].filled()));
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Events written per second (seconds from `t0_s`), each phase shaded.
pub fn throughput(per_second: &[(i64, u64)], t0_s: i64, phases: &[Band]) -> String {
    draw(|root| {
        let xs: Vec<(f64, f64)> = per_second
            .iter()
            .map(|(s, n)| ((s - t0_s) as f64, *n as f64))
            .collect();
        let xmax = xs
            .iter()
            .map(|p| p.0)
            .chain(phases.iter().map(|b| b.1))
            .fold(1.0, f64::max);
        let ymax = xs.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
        let mut c = ChartBuilder::on(root)
            .caption("Throughput per second (phases shaded)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        c.configure_mesh()
            .x_desc("seconds since the run started")
            .y_desc("events written / s")
            .draw()?;
        draw_bands(&mut c, phases, ymax, xmax, PALETTE[0])?;
        c.draw_series(LineSeries::new(xs, PALETTE[2].stroke_width(2)))?;
        Ok(())
    })
}

/// Latency against offered rate, from a capacity sweep: p50 and p99 (from schedule) per
/// step, the SLO as a line, and the knee (the highest sustained rate) marked.
pub fn latency_vs_rate(steps: &[(f64, f64, f64)], slo_ms: f64, knee: Option<f64>) -> String {
    draw(|root| {
        let mut pts = steps.to_vec();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
        let ymax = pts.iter().map(|p| p.2).fold(slo_ms, f64::max) * 1.1;
        let mut c = ChartBuilder::on(root)
            .caption(
                "Latency versus offered rate (capacity sweep)",
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        c.configure_mesh()
            .x_desc("offered rate (events/s)")
            .y_desc("latency from schedule (ms)")
            .draw()?;
        for (i, (name, pick)) in [("p50", 1usize), ("p99", 2usize)].into_iter().enumerate() {
            let line: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }))
                .collect();
            let color = PALETTE[i];
            c.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            c.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        let slo = PALETTE[3];
        c.draw_series(LineSeries::new(
            [(0.0, slo_ms), (xmax, slo_ms)],
            slo.stroke_width(1),
        ))?
        .label(format!("SLO p99 {slo_ms} ms"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], slo));
        if let Some(k) = knee {
            let knee_color = PALETTE[2];
            c.draw_series(LineSeries::new(
                [(k, 0.0), (k, ymax)],
                knee_color.stroke_width(1),
            ))?
            .label(format!("sustained {k:.0} ev/s"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], knee_color));
        }
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        Ok(())
    })
}

/// One figure over a chaos run's seconds (backlog, or p99), with each fault's interval, from
/// injection to clearing, shaded and labelled, and an optional limit line (the SLO).
pub fn over_time_with_faults(
    title: &str,
    y_desc: &str,
    series: &[(f64, f64)],
    faults: &[Band],
    limit: Option<(f64, String)>,
) -> String {
    draw(|root| {
        let xmax = series
            .iter()
            .map(|p| p.0)
            .chain(faults.iter().map(|f| f.1))
            .fold(1.0, f64::max);
        let ymax = series
            .iter()
            .map(|p| p.1)
            .chain(limit.iter().map(|l| l.0))
            .fold(1.0, f64::max)
            * 1.15;
        let mut c = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        c.configure_mesh()
            .x_desc("seconds since the load started")
            .y_desc(y_desc)
            .draw()?;
        draw_bands(&mut c, faults, ymax, xmax, PALETTE[3])?;
        c.draw_series(LineSeries::new(series.to_vec(), PALETTE[0].stroke_width(2)))?;
        draw_limit(&mut c, limit, xmax)?;
        Ok(())
    })
}
