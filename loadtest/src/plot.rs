//! SVG plots of a [`Report`]: latency over time (p50, p99 and max per
//! second) and the latency-by-percentile curve, on the log "1/(1-p)" axis
//! HdrHistogram plots use, so the tail is visible.

use crate::report::Report;
use anyhow::Context as _;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Writes `latency-over-time.svg` and `latency-percentiles.svg` into `dir`
/// and returns their paths.
pub fn write_plots(report: &Report, dir: &Path, title: &str) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let over_time = dir.join("latency-over-time.svg");
    let percentiles = dir.join("latency-percentiles.svg");
    latency_over_time(report, &over_time, title)
        .with_context(|| format!("drawing {}", over_time.display()))?;
    latency_percentiles(report, &percentiles, title)
        .with_context(|| format!("drawing {}", percentiles.display()))?;
    Ok(vec![over_time, percentiles])
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_over_time(report: &Report, path: &Path, title: &str) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let seconds = report.timeline.len().max(1) as f64;
    let top = report
        .timeline
        .iter()
        .map(|s| ms(s.max_us))
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: latency over time"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..seconds, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("second of the measured phase")
        .y_desc("latency (ms)")
        .draw()?;
    let series = [
        (
            "max",
            RED,
            (|s| s.max_us) as fn(&crate::report::SecondReport) -> u64,
        ),
        ("p99", BLUE, |s| s.p99_us),
        ("p50", GREEN, |s| s.p50_us),
    ];
    for (name, color, value) in series {
        chart
            .draw_series(LineSeries::new(
                report
                    .timeline
                    .iter()
                    .map(|s| (s.second as f64 + 0.5, ms(value(s)))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn latency_percentiles(report: &Report, path: &Path, title: &str) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = report
        .percentiles
        .iter()
        .map(|(_, us)| ms(*us))
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    // x = 1 / (1 - p): p0 at 1, p90 at 10, p99 at 100, p99.999 at 100 000.
    let position = |p: f64| 1.0 / (1.0 - p / 100.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: latency by percentile"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..200_000f64).log_scale(), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{}%", 100.0 - 100.0 / x))
        .draw()?;
    chart.draw_series(LineSeries::new(
        report
            .percentiles
            .iter()
            .map(|(p, us)| (position(*p), ms(*us))),
        BLUE.stroke_width(2),
    ))?;
    chart.draw_series(
        report
            .percentiles
            .iter()
            .map(|(p, us)| Circle::new((position(*p), ms(*us)), 3, BLUE.filled())),
    )?;
    root.present()?;
    Ok(())
}
