//! Charts of a run, drawn with plotters into SVG files.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::metrics::KindStats;
use crate::RunOutput;

/// Colours of the lookup, get and probe series.
const COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Names of the series, in the order of the stats.
const NAMES: [&str; 3] = ["lookup", "get", "probe"];

/// Size of every chart in pixels.
const SIZE: (u32, u32) = (800, 500);

/// Draws every chart into `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn all(dir: &Path, out: &RunOutput, stats: &[KindStats]) -> Result<()> {
    bars(
        &dir.join("hops.svg"),
        "Hops per operation (share of operations)",
        "hops",
        stats,
        |s| &s.hops,
    )?;
    bars(
        &dir.join("messages.svg"),
        "Requests per operation (share of operations)",
        "requests",
        stats,
        |s| &s.requests,
    )?;
    latency(&dir.join("latency.svg"), stats)?;
    if !out.probes.is_empty() {
        retrievability(&dir.join("retrievability.svg"), out)?;
    }
    if let Some(g) = &out.gossip {
        spread(&dir.join("gossip.svg"), &crate::report::spread_points(g))?;
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Grouped bars: for each x, one bar per kind with its share of that kind's operations.
fn bars(
    path: &Path,
    title: &str,
    x_label: &str,
    stats: &[KindStats],
    hist: impl Fn(&KindStats) -> &Vec<u64>,
) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let len = stats
        .iter()
        .map(|s| hist(s).len())
        .max()
        .unwrap_or(0)
        .max(1);
    let shares: Vec<Vec<f64>> = stats
        .iter()
        .map(|s| {
            let h = hist(s);
            let total: u64 = h.iter().sum();
            h.iter()
                .map(|&c| {
                    if total == 0 {
                        0.0
                    } else {
                        c as f64 / total as f64
                    }
                })
                .collect()
        })
        .collect();
    let top = shares
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5f64..(len as f64 - 0.5), 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("share")
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    let width = 0.8 / stats.len().max(1) as f64;
    for (i, series) in shares.iter().enumerate() {
        if series.iter().all(|&v| v == 0.0) {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        let offset = -0.4 + width * i as f64;
        chart
            .draw_series(series.iter().enumerate().map(|(x, &y)| {
                let x0 = x as f64 + offset;
                Rectangle::new([(x0, 0.0), (x0 + width, y)], colour.filled())
            }))
            .map_err(err)?
            .label(NAMES[i % NAMES.len()])
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Latency CDF per kind.
fn latency(path: &Path, stats: &[KindStats]) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = stats
        .iter()
        .flat_map(|s| s.latency_ms.iter().map(|(_, v)| *v))
        .fold(1.0f64, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("Operation latency (virtual time), CDF", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max, 0f64..100f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("percentile")
        .draw()
        .map_err(err)?;
    for (i, s) in stats.iter().enumerate() {
        if s.count == 0 {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                s.latency_ms.iter().map(|&(p, v)| (v, p)),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label(NAMES[i % NAMES.len()])
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Fraction of stored records retrievable over churn time.
fn retrievability(path: &Path, out: &RunOutput) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let end = out
        .probes
        .last()
        .map_or(1.0, |p| p.at.as_secs_f64())
        .max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("Records retrievable under churn", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..end, 0f64..1.05f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("churn time (s)")
        .y_desc("fraction retrieved")
        .draw()
        .map_err(err)?;
    let points: Vec<(f64, f64)> = out
        .probes
        .iter()
        .filter(|p| p.finished > 0)
        .map(|p| {
            (
                p.at.as_secs_f64(),
                f64::from(p.retrieved) / f64::from(p.finished),
            )
        })
        .collect();
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            COLOURS[0].stroke_width(2),
        ))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 3, COLOURS[0].filled())),
        )
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Mean gossip coverage over time since announcement.
fn spread(path: &Path, points: &[(f64, f64)]) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let end = points.last().map_or(1.0, |p| p.0).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Gossip: mean coverage after announcement",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..end, 0f64..1.05f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since announcement (ms)")
        .y_desc("share of nodes reached")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            COLOURS[0].stroke_width(2),
        ))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Colours of a sweep's behaviours, in the order they first appear.
const SWEEP_COLOURS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A sweep's chart: GET success (left) and FIND_NODE success (right) against the share of
/// adversaries, one line per behaviour and `d`; the smallest `d` dashed, the others solid.
/// The honest point (fraction 0) of each `d` starts every behaviour's line.
///
/// # Errors
/// When the file cannot be written.
pub fn sweep(path: &Path, title: &str, points: &[crate::sweep::SweepPoint]) -> Result<()> {
    use crate::adversary::Behaviour;
    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 24)).map_err(err)?;
    let panels = root.split_evenly((1, 2));
    let mut behaviours: Vec<Behaviour> = Vec::new();
    let mut ds: Vec<usize> = Vec::new();
    for p in points {
        if let Some(b) = p.behaviour {
            if !behaviours.contains(&b) {
                behaviours.push(b);
            }
        }
        if !ds.contains(&p.disjoint_paths) {
            ds.push(p.disjoint_paths);
        }
    }
    ds.sort_unstable();
    let x_max = points
        .iter()
        .map(|p| p.fraction * 100.0)
        .fold(10.0f64, f64::max);
    type Metric = fn(&crate::sweep::SweepPoint) -> f64;
    let metrics: [(&str, Metric); 2] = [
        ("GET returns the value put (%)", |p| p.get_success_pct()),
        ("FIND_NODE finds the nearest honest node (%)", |p| {
            p.lookup_success_pct()
        }),
    ];
    for (panel, (y_label, metric)) in panels.iter().zip(metrics) {
        let y_min = points.iter().map(metric).fold(100.0f64, f64::min).min(90.0);
        let y_min = ((y_min - 5.0) / 10.0).floor().max(0.0) * 10.0;
        let mut chart = ChartBuilder::on(panel)
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(-1f64..x_max + 1.0, y_min..101f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("adversarial nodes (%)")
            .y_desc(y_label)
            .draw()
            .map_err(err)?;
        for (bi, b) in behaviours.iter().enumerate() {
            let colour = SWEEP_COLOURS[bi % SWEEP_COLOURS.len()];
            for &d in &ds {
                let mut line: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| {
                        p.disjoint_paths == d && (p.behaviour == Some(*b) || p.behaviour.is_none())
                    })
                    .map(|p| (p.fraction * 100.0, metric(p)))
                    .collect();
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
                let style = colour.stroke_width(2);
                let label = format!("{}, d = {d}", b.name());
                let dashed = d == ds[0] && ds.len() > 1;
                let drawn = if dashed {
                    chart.draw_series(DashedLineSeries::new(line.iter().copied(), 8, 5, style))
                } else {
                    chart.draw_series(LineSeries::new(line.iter().copied(), style))
                }
                .map_err(err)?;
                drawn.label(label).legend(move |(x, y)| {
                    if dashed {
                        PathElement::new(vec![(x, y), (x + 6, y)], colour.stroke_width(2))
                    } else {
                        PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2))
                    }
                });
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
