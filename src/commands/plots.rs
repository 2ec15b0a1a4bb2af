//! What every picture the CLI draws shares (plotters): the embedded font, the palette, the
//! legend, writing one drawing as both SVG and PNG, and [`LineChart`], the chart most
//! forecasting pictures are (lines, dashed references and a shaded p10-p90 band).

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// DejaVu Sans (free license in assets/fonts), embedded so PNG text needs no system fonts.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub const FAMILY: &str = "sans-serif";
pub const SIZE: (u32, u32) = (1000, 560);

fn register() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| anyhow!("the embedded plot font does not load"));
    });
    result
}

/// A drawing that works on any backend (SVG for documents, PNG for everything else).
pub trait Drawing {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `drawing` into `dir/stem.svg` and `dir/stem.png`; returns both paths.
pub fn write_svg_and_png(dir: &Path, stem: &str, drawing: &impl Drawing) -> Result<Vec<PathBuf>> {
    register()?;
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let failed =
        |path: &Path, e: &dyn std::fmt::Display| anyhow!("writing {}: {e}", path.display());
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        drawing.draw_on(&root)?;
        root.present().map_err(|e| failed(&svg, &e))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        drawing.draw_on(&root)?;
        root.present().map_err(|e| failed(&png, &e))?;
    }
    Ok(vec![svg, png])
}

pub fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 7] = [
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(255, 127, 14),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ];
    COLORS[i % COLORS.len()]
}

pub fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// The boxed legend every picture uses.
pub fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    /// A reference (a baseline): dashed.
    Dashed,
    /// Points joined by a thin line (one value per round or version).
    Marked,
}

#[derive(Clone, Debug)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub stroke: Stroke,
}

/// A shaded band between two quantiles (`lower` and `upper` at the same x values).
#[derive(Clone, Debug)]
pub struct Band {
    pub label: String,
    pub lower: Vec<(f64, f64)>,
    pub upper: Vec<(f64, f64)>,
    pub color: RGBColor,
}

/// Lines over shaded bands, with axis descriptions and a legend.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub bands: Vec<Band>,
    pub lines: Vec<Line>,
    /// Start the y axis at zero (errors, power of a consumer) rather than at the data.
    pub y_from_zero: bool,
    pub legend_at: SeriesLabelPosition,
}

impl LineChart {
    pub fn new(title: impl Into<String>, x_desc: &str, y_desc: &str) -> Self {
        Self {
            title: title.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            bands: Vec::new(),
            lines: Vec::new(),
            y_from_zero: false,
            legend_at: SeriesLabelPosition::UpperRight,
        }
    }

    pub fn line(
        mut self,
        label: impl Into<String>,
        color: RGBColor,
        stroke: Stroke,
        points: Vec<(f64, f64)>,
    ) -> Self {
        self.lines.push(Line {
            label: label.into(),
            points,
            color,
            stroke,
        });
        self
    }

    pub fn band(
        mut self,
        label: impl Into<String>,
        color: RGBColor,
        lower: Vec<(f64, f64)>,
        upper: Vec<(f64, f64)>,
    ) -> Self {
        self.bands.push(Band {
            label: label.into(),
            lower,
            upper,
            color,
        });
        self
    }

    fn ranges(&self) -> Option<((f64, f64), (f64, f64))> {
        let points = self
            .lines
            .iter()
            .flat_map(|l| &l.points)
            .chain(
                self.bands
                    .iter()
                    .flat_map(|b| b.lower.iter().chain(&b.upper)),
            )
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        let mut bounds: Option<((f64, f64), (f64, f64))> = None;
        for &(x, y) in points {
            let ((x0, x1), (y0, y1)) = bounds.get_or_insert(((x, x), (y, y)));
            *x0 = x0.min(x);
            *x1 = x1.max(x);
            *y0 = y0.min(y);
            *y1 = y1.max(y);
        }
        bounds
    }
}

fn dashed(points: &[(f64, f64)], x_span: f64) -> Vec<Vec<(f64, f64)>> {
    // Dashes of 1% of the x range, split along each segment, so a flat reference reads as
    // dashed on any backend.
    let dash = (x_span / 100.0).max(f64::EPSILON);
    let mut out = Vec::new();
    for pair in points.windows(2) {
        let ((xa, ya), (xb, yb)) = (pair[0], pair[1]);
        let length = (xb - xa).abs().max(f64::EPSILON);
        let pieces = ((length / dash).ceil() as usize).clamp(1, 2000);
        for k in (0..pieces).step_by(2) {
            let at = |t: f64| (xa + (xb - xa) * t, ya + (yb - ya) * t);
            let (t0, t1) = (
                k as f64 / pieces as f64,
                ((k + 1) as f64 / pieces as f64).min(1.0),
            );
            out.push(vec![at(t0), at(t1)]);
        }
    }
    out
}

impl Drawing for LineChart {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let ((x0, x1), (y0, y1)) = self.ranges().unwrap_or(((0.0, 1.0), (0.0, 1.0)));
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let y0 = if self.y_from_zero { y0.min(0.0) } else { y0 };
        let pad = 0.06 * (y1 - y0).max(1e-6);
        let y_low = if self.y_from_zero && y0 >= 0.0 {
            0.0
        } else {
            y0 - pad
        };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y_low..y1 + pad)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style((FAMILY, 14))
            .draw()
            .map_err(err)?;
        for band in &self.bands {
            let color = band.color;
            let outline: Vec<(f64, f64)> = band
                .upper
                .iter()
                .copied()
                .chain(band.lower.iter().rev().copied())
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    color.mix(0.25).filled(),
                )))
                .map_err(err)?
                .label(band.label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.25).filled())
                });
        }
        for line in &self.lines {
            let color = line.color;
            let style = color.stroke_width(2);
            let annotation = match line.stroke {
                Stroke::Solid => chart
                    .draw_series(LineSeries::new(line.points.clone(), style))
                    .map_err(err)?,
                Stroke::Marked => {
                    chart
                        .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(1)))
                        .map_err(err)?;
                    chart
                        .draw_series(
                            line.points
                                .iter()
                                .map(|&p| Circle::new(p, 3, color.filled())),
                        )
                        .map_err(err)?
                }
                Stroke::Dashed => chart
                    .draw_series(
                        dashed(&line.points, x1 - x0)
                            .into_iter()
                            .map(|piece| PathElement::new(piece, style)),
                    )
                    .map_err(err)?,
            };
            annotation
                .label(line.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        legend(&mut chart, self.legend_at.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_written_as_svg_and_png_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        let points: Vec<(f64, f64)> = (0..48)
            .map(|i| (i as f64, (i as f64 / 4.0).sin()))
            .collect();
        let chart = LineChart::new("Test chart", "hour", "kW")
            .band(
                "p10-p90",
                palette(3),
                points.iter().map(|&(x, y)| (x, y - 0.5)).collect(),
                points.iter().map(|&(x, y)| (x, y + 0.5)).collect(),
            )
            .line("p50", palette(3), Stroke::Solid, points.clone())
            .line(
                "reference",
                palette(0),
                Stroke::Dashed,
                vec![(0.0, 0.2), (47.0, 0.2)],
            );
        let files = write_svg_and_png(dir.path(), "test", &chart).unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        for text in ["Test chart", "p10-p90", "p50", "reference", "hour", "kW"] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 10_000,
            "a 1000x560 chart, not a blank: {} bytes",
            png.len()
        );
    }

    #[test]
    fn dashes_cover_about_half_of_a_segment() {
        let pieces = dashed(&[(0.0, 1.0), (100.0, 1.0)], 100.0);
        let covered: f64 = pieces.iter().map(|p| p[1].0 - p[0].0).sum();
        assert!((covered - 50.0).abs() < 2.0, "{covered}");
    }
}
