//! The timeline as an SVG plot: the fleet's share on each release over
//! time, barriers and dead-ends marked in the legend, rollout starts and ends
//! as dashed lines; and the failing releases with and without the rollout
//! guard. SVG only: text in SVG needs no font files, while PNG
//! would need a font bundled into the binary.

use crate::Timeline;
use plotters::prelude::*;
use std::path::Path;

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The plot could not be drawn or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlotError {
    /// The file being written.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

impl PlotError {
    /// A short, fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        "plot"
    }
}

/// Write the plot; `title` heads it.
pub fn svg(timeline: &Timeline, title: &str, path: &Path) -> Result<(), PlotError> {
    let failed = |message: String| PlotError {
        path: path.display().to_string(),
        message,
    };
    let root = SVGBackend::new(path, (1100, 620)).into_drawing_area();
    draw(timeline, title, &root).map_err(|e| failed(e.to_string()))?;
    root.present().map_err(|e| failed(e.to_string()))
}

fn draw<DB: DrawingBackend>(
    timeline: &Timeline,
    title: &str,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let hours = |t: jiff::Timestamp| t.duration_since(timeline.start).as_secs_f64() / 3600.0;
    let span = timeline.times.last().map_or(1.0, |t| hours(*t)).max(1.0);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..span, 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "hours since {}",
            timeline.start.strftime("%Y-%m-%d %H:%M UTC")
        ))
        .y_desc("share of the fleet (%)")
        .draw()?;
    // Rollout windows that fall inside the plot.
    for line in &timeline.lines {
        let Some((start, end)) = line.rollout else {
            continue;
        };
        for (second, what) in [(Some(start), "start"), (end, "end")] {
            let Some(at) = second.and_then(|s| jiff::Timestamp::from_second(s).ok()) else {
                continue;
            };
            let x = hours(at);
            if (0.0..=span).contains(&x) && !(what == "start" && x == 0.0) {
                chart.draw_series(DashedLineSeries::new(
                    [(x, 0.0), (x, 100.0)],
                    6,
                    4,
                    BLACK.mix(0.35).stroke_width(1),
                ))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{} rollout {what}", line.version),
                    (x, 97.0),
                    ("sans-serif", 11),
                )))?;
            }
        }
    }
    for (n, line) in timeline.lines.iter().enumerate() {
        let color = PALETTE[n % PALETTE.len()];
        let mut label = line.version.clone();
        if line.barrier.is_some() {
            label.push_str(" (barrier)");
        }
        if line.deadend.is_some() {
            label.push_str(" (dead-end)");
        }
        let points: Vec<(f64, f64)> = timeline
            .times
            .iter()
            .zip(&line.shares)
            .map(|(t, s)| (hours(*t), s * 100.0))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::MiddleRight)
        .draw()?;
    Ok(())
}

/// Write the failing releases' plot: for each, the hosts that had rebooted
/// into it over time in every run of `runs` (a label and its timeline, for
/// example "with the guard" and "without the guard"), and the guard's halt
/// as a dashed line.
pub fn failures_svg(runs: &[(&str, &Timeline)], title: &str, path: &Path) -> Result<(), PlotError> {
    let failed = |message: String| PlotError {
        path: path.display().to_string(),
        message,
    };
    let root = SVGBackend::new(path, (1100, 620)).into_drawing_area();
    draw_failures(runs, title, &root).map_err(|e| failed(e.to_string()))?;
    root.present().map_err(|e| failed(e.to_string()))
}

fn draw_failures<DB: DrawingBackend>(
    runs: &[(&str, &Timeline)],
    title: &str,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let Some((_, first)) = runs.first() else {
        return Ok(());
    };
    let start = first.start;
    let hours = |t: jiff::Timestamp| t.duration_since(start).as_secs_f64() / 3600.0;
    let span = first.times.last().map_or(1.0, |t| hours(*t)).max(1.0);
    let most = runs
        .iter()
        .flat_map(|(_, t)| t.reports.iter())
        .filter(|r| r.fails.is_some())
        .map(|r| r.took)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..span, 0.0..most * 1.08)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "hours since {}",
            start.strftime("%Y-%m-%d %H:%M UTC")
        ))
        .y_desc("hosts that rebooted into the failing release")
        .y_label_formatter(&|hosts| format!("{hosts:.0}"))
        .draw()?;
    let failing: Vec<&str> = first
        .reports
        .iter()
        .filter(|r| r.fails.is_some())
        .map(|r| r.version.as_str())
        .collect();
    for (n, version) in failing.iter().enumerate() {
        let color = PALETTE[n % PALETTE.len()];
        for (k, (label, timeline)) in runs.iter().enumerate() {
            let Some(report) = timeline.reports.iter().find(|r| r.version == *version) else {
                continue;
            };
            let points: Vec<(f64, f64)> = timeline
                .times
                .iter()
                .zip(&report.took_over_time)
                .map(|(t, took)| (hours(*t), *took as f64))
                .collect();
            let name = format!("hosts that took {version}, {label}: {}", report.took);
            // The first run solid, the others dashed.
            let width = if k == 0 { 3 } else { 2 };
            if k == 0 {
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(width)))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3))
                    });
            } else {
                chart
                    .draw_series(DashedLineSeries::new(
                        points,
                        8,
                        5,
                        color.mix(0.7).stroke_width(width),
                    ))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 6, y)], color.stroke_width(2))
                    });
            }
            if let Some(halt) = &report.halt {
                let x = hours(halt.at);
                chart.draw_series(DashedLineSeries::new(
                    [(x, 0.0), (x, most * 1.08)],
                    4,
                    4,
                    BLACK.mix(0.5).stroke_width(1),
                ))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("guard halted {version}"),
                    (x, most * 1.04),
                    ("sans-serif", 12),
                )))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::MiddleRight)
        .draw()?;
    Ok(())
}
