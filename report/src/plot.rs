//! PNG line charts for benchmark and training reports, drawn with plotters' bitmap backend.
//!
//! Text is rendered with DejaVu Sans embedded in the binary (the `dejavu` crate) through plotters' `ab_glyph`
//! backend, registered once as the "sans-serif" family: no system font lookup (font-kit / fontconfig), so a chart
//! looks the same on every machine and needs no fonts installed.

use dinonat_engine::io::write_atomic;
use dinonat_train::data::RgbImage;
use dinonat_train::grid::encode_png;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// Chart size in pixels.
const SIZE: (u32, u32) = (1024, 640);

/// Line colours (Tableau 10): distinguishable, readable on white, unlike a hue wheel's yellow.
const COLOURS: [RGBColor; 10] = [
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

/// Series with at most this many points get a dot at each point.
const MAX_DOTTED_POINTS: usize = 64;

/// One named line: (name, points (x, y)).
pub type Series<S> = (S, Vec<(f64, f64)>);

fn register_dejavu() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "plot: the embedded DejaVu Sans font did not parse".to_string())
        })
        .clone()
}

/// A tick label without trailing zeros: 100, 0.25, 1.5e6.
fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if v.abs() >= 1e6 || v.abs() < 1e-3 {
        return format!("{v:e}");
    }
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// (min, max) of the finite values; None when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn check_points<S: AsRef<str>>(series: &[Series<S>], positive: bool) -> Result<(), String> {
    if series.iter().all(|s| s.1.is_empty()) {
        return Err("plot: no points to draw".to_string());
    }
    for (name, points) in series {
        if let Some(&(x, y)) = points.iter().find(|&&(x, y)| {
            !x.is_finite() || !y.is_finite() || (positive && (x <= 0.0 || y <= 0.0))
        }) {
            let need = if positive {
                "positive and finite (log axes)"
            } else {
                "finite"
            };
            return Err(format!(
                "plot: series '{}' has the point ({x}, {y}); coordinates must be {need}",
                name.as_ref()
            ));
        }
    }
    Ok(())
}

/// A line chart on log-log axes, one line (with dots at the points) per series, a legend, and a labelled
/// vertical line at each marker x (e.g. the crossover of two curves). All coordinates must be positive.
pub fn line_chart_loglog<S: AsRef<str>, M: AsRef<str>>(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<S>],
    markers: &[(M, f64)],
) -> Result<(), String> {
    check_points(series, true)?;
    let all = || series.iter().flat_map(|s| s.1.iter());
    let markers_x = markers.iter().map(|m| m.1).filter(|&x| x > 0.0);
    let (x_lo, x_hi) = bounds(all().map(|p| p.0).chain(markers_x)).unwrap_or((1.0, 10.0));
    let (y_lo, y_hi) = bounds(all().map(|p| p.1)).unwrap_or((1.0, 10.0));
    // A margin of 10% of a decade-ish on each side; a single value gets a decade around it.
    let widen = |lo: f64, hi: f64| {
        if lo == hi {
            (lo / 3.0, hi * 3.0)
        } else {
            (lo / 1.2, hi * 1.2)
        }
    };
    let (x_lo, x_hi) = widen(x_lo, x_hi);
    let (y_lo, y_hi) = widen(y_lo, y_hi);
    draw(
        path,
        (title, x_label, y_label),
        series,
        markers,
        ((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale()),
        (y_lo, y_hi),
        SeriesLabelPosition::UpperLeft,
    )
}

/// The same chart on linear axes (training curves: loss or accuracy against step or epoch).
pub fn line_chart<S: AsRef<str>, M: AsRef<str>>(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<S>],
    markers: &[(M, f64)],
) -> Result<(), String> {
    check_points(series, false)?;
    let all = || series.iter().flat_map(|s| s.1.iter());
    let markers_x = markers.iter().map(|m| m.1);
    let (x_lo, x_hi) = bounds(all().map(|p| p.0).chain(markers_x)).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) = bounds(all().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let widen = |lo: f64, hi: f64| {
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            lo.abs().max(1.0) * 0.5
        };
        (lo - pad, hi + pad)
    };
    let (x_lo, x_hi) = widen(x_lo, x_hi);
    let (y_lo, y_hi) = widen(y_lo, y_hi);
    draw(
        path,
        (title, x_label, y_label),
        series,
        markers,
        (x_lo..x_hi, y_lo..y_hi),
        (y_lo, y_hi),
        SeriesLabelPosition::UpperRight,
    )
}

/// Draws the chart on given axes; marker lines run from `y_lo` to `y_hi`.
fn draw<S, M, X, Y>(
    path: &Path,
    (title, x_label, y_label): (&str, &str, &str),
    series: &[Series<S>],
    markers: &[(M, f64)],
    (x_axis, y_axis): (X, Y),
    (y_lo, y_hi): (f64, f64),
    legend: SeriesLabelPosition,
) -> Result<(), String>
where
    S: AsRef<str>,
    M: AsRef<str>,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    register_dejavu()?;
    let failed = |e: &dyn std::fmt::Display| format!("plot: drawing {}: {e}", path.display());
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .draw()
        .map_err(|e| failed(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLOURS[i % COLOURS.len()];
        let line = LineSeries::new(points.iter().copied(), color.stroke_width(2));
        let key = move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2));
        let drawn = chart.draw_series(line).map_err(|e| failed(&e))?;
        drawn.label(name.as_ref()).legend(key);
        if points.len() <= MAX_DOTTED_POINTS {
            let dots = points.iter().map(|&p| Circle::new(p, 3, color.filled()));
            chart.draw_series(dots).map_err(|e| failed(&e))?;
        }
    }
    let grey = RGBColor(90, 90, 90);
    for (label, x) in markers {
        let rule = PathElement::new(vec![(*x, y_lo), (*x, y_hi)], grey.stroke_width(1));
        chart
            .draw_series(std::iter::once(rule))
            .map_err(|e| failed(&e))?;
        let font = ("sans-serif", 14).into_font().color(&grey);
        let text = Text::new(format!(" {}", label.as_ref()), (*x, y_hi), font);
        chart
            .draw_series(std::iter::once(text))
            .map_err(|e| failed(&e))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    drop(chart);
    drop(root);
    // Encoded in memory, then written atomically: a full disk or a kill leaves the old PNG.
    let image = RgbImage::new(SIZE.0 as usize, SIZE.1 as usize, pixels);
    let png = encode_png(&image).map_err(|e| failed(&e))?;
    write_atomic(path, &png).map_err(|e| failed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_png(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("dinonat-plot-{}-{name}.png", std::process::id()))
    }

    #[test]
    fn loglog_chart_writes_a_png() {
        let tokens = [64.0, 256.0, 1024.0, 4096.0, 16384.0];
        let series: Vec<Series<String>> = [7.0f64, 13.0]
            .iter()
            .map(|&k| {
                (
                    format!("NA k={k}"),
                    tokens.iter().map(|&n| (n, n * k * k * 1e-6)).collect(),
                )
            })
            .chain(std::iter::once((
                "full attention".to_string(),
                tokens.iter().map(|&n| (n, n * n * 1e-6)).collect(),
            )))
            .collect();
        let path = temp_png("loglog");
        line_chart_loglog(
            &path,
            "Attention time",
            "tokens",
            "ms",
            &series,
            &[("k=13 crossover", 169.0)],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    }

    #[test]
    fn linear_chart_writes_a_png_and_rejects_bad_points() {
        let loss: Vec<(f64, f64)> = (0..50)
            .map(|s| (s as f64, 8.0 * (-0.05 * s as f64).exp()))
            .collect();
        let path = temp_png("linear");
        line_chart(
            &path,
            "DINO loss",
            "step",
            "loss",
            &[("train", loss)],
            &[] as &[(&str, f64)],
        )
        .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).ok();
        assert!(size > 5_000, "{size} bytes");
        let bad = [("zero", vec![(0.0, 1.0)])];
        assert!(line_chart_loglog(&path, "t", "x", "y", &bad, &[] as &[(&str, f64)]).is_err());
        let nan = [("nan", vec![(1.0, f64::NAN)])];
        assert!(line_chart(&path, "t", "x", "y", &nan, &[] as &[(&str, f64)]).is_err());
        assert!(!path.exists());
    }
}
