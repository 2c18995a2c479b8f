//! SVG charts of a bench run (`bench --svg DIR`): latency distributions as cumulative curves and
//! scaling curves, drawn with plotters' SVG backend (no fonts or native libraries needed).

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use crate::error::{Error, Result};

const SIZE: (u32, u32) = (800, 480);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named set of measured durations.
pub struct Series {
    pub label: String,
    pub samples: Vec<Duration>,
}

fn draw_failed(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("cannot draw {}: {e}", path.display()))
}

fn millis(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p`th percentile (0–100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Each series' empirical distribution: for every latency x (ms), the share of calls that took
/// at most x. Steeper and further left is better; the top of a curve is its tail.
pub fn latency_cdf(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let max = series
        .iter()
        .flat_map(|s| s.samples.iter().map(millis))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_failed(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max * 1.05, 0.0..100.0)
        .map_err(|e| draw_failed(path, e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("calls at or below (%)")
        .draw()
        .map_err(|e| draw_failed(path, e))?;
    for (n, s) in series.iter().enumerate() {
        let mut sorted = s.samples.clone();
        sorted.sort();
        let count = sorted.len().max(1) as f64;
        let points = sorted
            .iter()
            .enumerate()
            .map(|(i, d)| (millis(d), (i + 1) as f64 * 100.0 / count));
        let colour = COLOURS[n % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| draw_failed(path, e))?
            .label(format!("{} (n={})", s.label, sorted.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw_failed(path, e))?;
    root.present().map_err(|e| draw_failed(path, e))
}

/// How a latency scales with a size (volumes already in the store, callers …): the median and
/// the 90th percentile at each measured size, on a logarithmic size axis.
pub fn scaling(path: &Path, title: &str, x_desc: &str, points: &[(usize, Vec<Duration>)]) -> Result<()> {
    let summary: Vec<(f64, f64, f64)> = points
        .iter()
        .map(|(size, samples)| {
            let mut sorted = samples.clone();
            sorted.sort();
            (
                (*size).max(1) as f64,
                millis(&percentile(&sorted, 50.0)),
                millis(&percentile(&sorted, 90.0)),
            )
        })
        .collect();
    let x_max = summary.iter().map(|p| p.0).fold(1.0f64, f64::max) * 2.0;
    let y_max = summary.iter().map(|p| p.2).fold(0.0f64, f64::max).max(1e-3) * 1.2;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_failed(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.5..x_max).log_scale(), 0.0..y_max)
        .map_err(|e| draw_failed(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_label_formatter(&|x| format!("{}", x.round() as u64))
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| draw_failed(path, e))?;
    for (n, (label, pick)) in [("median", 1usize), ("90th percentile", 2)].into_iter().enumerate() {
        let colour = COLOURS[n];
        let line: Vec<(f64, f64)> = summary
            .iter()
            .map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
            .map_err(|e| draw_failed(path, e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| draw_failed(path, e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw_failed(path, e))?;
    root.present().map_err(|e| draw_failed(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(5));
        assert_eq!(percentile(&sorted, 90.0), ms(9));
        assert_eq!(percentile(&sorted, 100.0), ms(10));
        assert_eq!(percentile(&sorted, 0.0), ms(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
