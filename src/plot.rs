//! One picture per analysed file: level over time, per-class score curves, detection spans.
//!
//! [`write_plot`] draws two stacked panels sharing the time axis (seconds from the file start):
//!
//! - top: the level curve (e.g. LAF in dBFS, or dB SPL when calibrated);
//! - bottom: one score curve (0..1) per class with a legend, and each class's on-threshold
//!   as a dashed line in the class colour.
//!
//! Detection spans are shaded, semi-transparent, in the class colour over both panels.
//! The picture is [`WIDTH_PX`] × [`HEIGHT_PX`] pixels; the file's extension picks the format:
//! `.svg` (always available, text is left to the viewer's fonts) or `.png` (text is rasterised
//! with a TrueType font read at run time, see [`PNG_FONT_PATHS`] and [`PNG_FONT_ENV`]).
//!
//! Drawing never panics on odd input: non-finite points are skipped, a zero or non-finite
//! duration falls back to the data's extent (or 1 s), spans are clipped to the time axis,
//! scores are clamped to 0..1 and levels to the panel's range.

use std::path::{Path, PathBuf};

use ab_glyph::FontArc;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

use png_text::TextBitMap;

/// Picture width in pixels (SVG user units or PNG pixels).
pub const WIDTH_PX: u32 = 1200;
/// Picture height in pixels (SVG user units or PNG pixels).
pub const HEIGHT_PX: u32 = 600;
/// Lowest level shown in the top panel, in the level's unit (dBFS or dB SPL): quieter points
/// are drawn at the panel's bottom edge.
pub const LEVEL_FLOOR_DB: f64 = -100.0;
/// TrueType fonts tried in order for PNG text (DejaVu Sans on Debian/Ubuntu
/// (`fonts-dejavu-core`), Arch and Fedora), unless [`PNG_FONT_ENV`] names one.
pub const PNG_FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
/// Environment variable naming the TrueType/OpenType font file (path) to use for PNG text
/// instead of [`PNG_FONT_PATHS`].
pub const PNG_FONT_ENV: &str = "EARSHOT_PLOT_FONT";

/// Everything one picture shows. Times are in seconds from the file start.
#[derive(Debug, Clone, Copy)]
pub struct PlotData<'a> {
    /// Picture title, e.g. the file name.
    pub title: &'a str,
    /// File duration in seconds: the time axis runs from 0 to this (or to the last data point
    /// if that is later, or to 1 s if there is neither).
    pub duration_s: f64,
    /// Level curve: (time in s, level in the unit of `level_label`, e.g. LAF in dBFS),
    /// e.g. every 10 ms or every patch, in time order.
    pub level: &'a [(f64, f64)],
    /// Label of the level axis with its unit, e.g. `"LAF, dBFS"` or `"LAF, dB SPL"`.
    pub level_label: &'a str,
    /// One score curve per class.
    pub scores: &'a [ScoreSeries<'a>],
    /// Per class name: its on-threshold (score 0..1), drawn dashed in the class colour.
    pub thresholds: &'a [(&'a str, f32)],
    /// Detections, shaded in the class colour over both panels.
    pub detections: &'a [Span<'a>],
}

/// One class's score curve.
#[derive(Debug, Clone, Copy)]
pub struct ScoreSeries<'a> {
    /// Class name, e.g. `"glass_break"`; shown in the legend.
    pub class: &'a str,
    /// (time in s, score 0..1), in time order.
    pub points: &'a [(f64, f32)],
}

/// One detection: a class active from `start_s` to `end_s`.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    /// Class name, e.g. `"gunshot"`; picks the shading colour.
    pub class: &'a str,
    /// Start in seconds from the file start.
    pub start_s: f64,
    /// End in seconds from the file start.
    pub end_s: f64,
}

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The path's extension names no supported format.
    #[error("cannot plot to {}: unsupported extension (supported: .svg, .png)", path.display())]
    UnsupportedFormat {
        /// The path asked for.
        path: PathBuf,
    },
    /// Creating or writing the output file failed.
    #[error("cannot write plot {}: {source}", path.display())]
    Io {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// PNG text needs a TrueType font and none of the candidates could be read.
    #[error(
        "cannot draw PNG text: no readable font at {tried} (install fonts-dejavu-core, \
         set {PNG_FONT_ENV} to a .ttf file, or plot to .svg instead)"
    )]
    FontMissing {
        /// The font paths tried, comma-separated.
        tried: String,
    },
    /// The font file was read but is not a usable TrueType/OpenType font.
    #[error("font {} is not a usable TrueType/OpenType font", path.display())]
    FontInvalid {
        /// The font file.
        path: PathBuf,
    },
    /// The drawing library or the PNG encoder failed.
    #[error("drawing plot {} failed: {message}", path.display())]
    Draw {
        /// The output path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Draws `data` into `path`: SVG for a `.svg` extension, PNG for `.png` (case-insensitive),
/// [`WIDTH_PX`] × [`HEIGHT_PX`] pixels. The file is created (or replaced) only once drawing
/// has succeeded.
///
/// # Errors
/// [`PlotError::UnsupportedFormat`] for any other extension, [`PlotError::Io`] if the file
/// cannot be written, [`PlotError::FontMissing`] / [`PlotError::FontInvalid`] for PNG without
/// a usable font, [`PlotError::Draw`] if drawing fails.
pub fn write_plot(path: &Path, data: &PlotData<'_>) -> Result<(), PlotError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => write_svg(path, data),
        Some("png") => write_png(path, data),
        _ => Err(PlotError::UnsupportedFormat {
            path: path.to_path_buf(),
        }),
    }
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PlotError {
    PlotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_svg(path: &Path, data: &PlotData<'_>) -> Result<(), PlotError> {
    let prepared = Prepared::new(data);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw(&root, &prepared).map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    std::fs::write(path, svg).map_err(|e| io_error(path, e))
}

fn write_png(path: &Path, data: &PlotData<'_>) -> Result<(), PlotError> {
    let font = load_png_font()?;
    let prepared = Prepared::new(data);
    let mut rgb = vec![255u8; WIDTH_PX as usize * HEIGHT_PX as usize * 3];
    {
        let backend = TextBitMap::new(
            BitMapBackend::with_buffer(&mut rgb, (WIDTH_PX, HEIGHT_PX)),
            &font,
        );
        let root = backend.into_drawing_area();
        draw(&root, &prepared).map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| io_error(path, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH_PX, HEIGHT_PX);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| match e {
        png::EncodingError::IoError(e) => io_error(path, e),
        other => draw_error(path, other),
    };
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)
}

/// Reads the PNG text font: the file named by [`PNG_FONT_ENV`] if set, else the first
/// readable one of [`PNG_FONT_PATHS`].
fn load_png_font() -> Result<FontArc, PlotError> {
    let candidates: Vec<PathBuf> = match std::env::var_os(PNG_FONT_ENV) {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => PNG_FONT_PATHS.iter().map(PathBuf::from).collect(),
    };
    for path in &candidates {
        if let Ok(bytes) = std::fs::read(path) {
            return FontArc::try_from_vec(bytes)
                .map_err(|_| PlotError::FontInvalid { path: path.clone() });
        }
    }
    Err(PlotError::FontMissing {
        tried: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

// ---------------------------------------------------------------------------------------------
// Colours

/// Fixed colours of Earshot's known classes.
const KNOWN_COLOURS: &[(&str, RGBColor)] = &[
    ("glass_break", RGBColor(31, 119, 180)), // blue
    ("aggression", RGBColor(214, 39, 40)),   // red
    ("gunshot", RGBColor(148, 103, 189)),    // purple
    ("speech", RGBColor(44, 160, 44)),       // green
];

/// Colours of other classes, in order of first appearance (cycled).
const OTHER_COLOURS: &[RGBColor] = &[
    RGBColor(255, 127, 14),  // orange
    RGBColor(23, 190, 207),  // cyan
    RGBColor(140, 86, 75),   // brown
    RGBColor(227, 119, 194), // pink
    RGBColor(188, 189, 34),  // olive
    RGBColor(127, 127, 127), // grey
];

const LEVEL_COLOUR: RGBColor = RGBColor(50, 50, 50);

// ---------------------------------------------------------------------------------------------
// Input cleaning

/// At most this many points per curve are drawn; longer curves keep each bucket's min and max.
const MAX_POINTS: usize = 4 * WIDTH_PX as usize;

/// `PlotData` made safe to draw: finite points within the axes, fixed ranges, colours.
struct Prepared<'a> {
    title: &'a str,
    level_label: &'a str,
    x_max: f64,
    y_range: (f64, f64),
    level: Vec<(f64, f64)>,
    /// Every class in order of first appearance with its colour.
    classes: Vec<(&'a str, RGBColor)>,
    scores: Vec<(RGBColor, Vec<(f64, f64)>)>,
    thresholds: Vec<(RGBColor, f64)>,
    spans: Vec<(RGBColor, f64, f64)>,
}

impl<'a> Prepared<'a> {
    fn new(data: &PlotData<'a>) -> Self {
        let times = data.level.iter().map(|p| p.0).chain(
            data.scores
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let last_t = times
            .filter(|t| t.is_finite())
            .fold(0.0f64, |m, t| m.max(t));
        let duration = if data.duration_s.is_finite() {
            data.duration_s.max(0.0)
        } else {
            0.0
        };
        let mut x_max = duration.max(last_t);
        if x_max <= 1e-3 {
            x_max = if x_max > 0.0 { 1e-3 } else { 1.0 };
        }
        let in_x = |t: f64| t.is_finite() && (0.0..=x_max).contains(&t);

        let level_raw: Vec<(f64, f64)> = data
            .level
            .iter()
            .copied()
            .filter(|&(t, v)| in_x(t) && v.is_finite())
            .collect();
        let y_range = level_range(&level_raw);
        let level = decimate(
            level_raw
                .into_iter()
                .map(|(t, v)| (t, v.clamp(y_range.0, y_range.1)))
                .collect(),
            x_max,
        );

        let mut classes: Vec<(&'a str, RGBColor)> = Vec::new();
        let mut others = 0usize;
        let names = data
            .scores
            .iter()
            .map(|s| s.class)
            .chain(data.thresholds.iter().map(|t| t.0))
            .chain(data.detections.iter().map(|d| d.class));
        for name in names {
            if classes.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let colour = match KNOWN_COLOURS.iter().find(|(n, _)| *n == name) {
                Some((_, c)) => *c,
                None => {
                    let c = OTHER_COLOURS[others % OTHER_COLOURS.len()];
                    others += 1;
                    c
                }
            };
            classes.push((name, colour));
        }
        let colour_of = |name: &str| {
            classes
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(LEVEL_COLOUR, |(_, c)| *c)
        };

        let scores = data
            .scores
            .iter()
            .map(|s| {
                let points = s
                    .points
                    .iter()
                    .filter(|&&(t, v)| in_x(t) && v.is_finite())
                    .map(|&(t, v)| (t, f64::from(v.clamp(0.0, 1.0))))
                    .collect();
                (colour_of(s.class), decimate(points, x_max))
            })
            .collect();
        let thresholds = data
            .thresholds
            .iter()
            .filter(|(_, th)| th.is_finite() && (0.0..=1.0).contains(th))
            .map(|&(name, th)| (colour_of(name), f64::from(th)))
            .collect();
        let spans = data
            .detections
            .iter()
            .filter(|d| !d.start_s.is_nan() && !d.end_s.is_nan() && d.start_s <= d.end_s)
            .map(|d| {
                (
                    d.class,
                    d.start_s.clamp(0.0, x_max),
                    d.end_s.clamp(0.0, x_max),
                )
            })
            .filter(|&(_, s, e)| s < e || (s == e && s > 0.0 && s < x_max))
            .map(|(name, s, e)| (colour_of(name), s, e))
            .collect();

        Self {
            title: data.title,
            level_label: data.level_label,
            x_max,
            y_range,
            level,
            classes,
            scores,
            thresholds,
            spans,
        }
    }
}

/// Level axis range: the data's range with [`LEVEL_FLOOR_DB`] as the lowest bottom,
/// padded and rounded to whole dB, at least 10 dB tall.
fn level_range(points: &[(f64, f64)]) -> (f64, f64) {
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
            (lo.min(v), hi.max(v))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        return (-60.0, 0.0);
    }
    let lo = lo.max(LEVEL_FLOOR_DB).min(hi);
    let (mut lo, mut hi) = ((lo - 3.0).floor(), (hi + 3.0).ceil());
    if hi - lo < 10.0 {
        let mid = (lo + hi) / 2.0;
        lo = (mid - 5.0).floor();
        hi = (mid + 5.0).ceil();
    }
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        // Only for absurd magnitudes where ±3 dB is lost in rounding.
        return (-60.0, 0.0);
    }
    (lo, hi)
}

/// Thins a time-ordered curve to at most about [`MAX_POINTS`] points, keeping each time
/// bucket's minimum and maximum (in time order) so peaks survive.
fn decimate(points: Vec<(f64, f64)>, x_max: f64) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let buckets = MAX_POINTS / 2;
    let mut out = Vec::with_capacity(MAX_POINTS + 2);
    let bucket_of = |t: f64| ((t / x_max * buckets as f64) as usize).min(buckets - 1);
    let mut i = 0;
    while i < points.len() {
        let b = bucket_of(points[i].0);
        let (mut min_i, mut max_i) = (i, i);
        let mut j = i + 1;
        while j < points.len() && bucket_of(points[j].0) == b {
            if points[j].1 < points[min_i].1 {
                min_i = j;
            }
            if points[j].1 > points[max_i].1 {
                max_i = j;
            }
            j += 1;
        }
        let (first, second) = if min_i <= max_i {
            (min_i, max_i)
        } else {
            (max_i, min_i)
        };
        out.push(points[first]);
        if second != first {
            out.push(points[second]);
        }
        i = j;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Drawing

const FONT: FontFamily<'static> = FontFamily::SansSerif;
/// Left label area of both panels, in px: equal so the time axes line up.
const Y_LABEL_AREA_PX: u32 = 70;
/// Right margin of both panels, in px: room for the last time label.
const RIGHT_MARGIN_PX: u32 = 30;
/// Legend rows drawn at most.
const MAX_LEGEND_ROWS: usize = 16;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    p: &Prepared<'_>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let body = root.titled(p.title, (FONT, 22))?;
    let (top, bottom) = body.split_vertically(HEIGHT_PX * 2 / 5);
    let (y_lo, y_hi) = p.y_range;
    let x_decimals = match p.x_max {
        x if x >= 20.0 => 0,
        x if x >= 1.0 => 1,
        x if x >= 0.1 => 2,
        _ => 3,
    };
    let x_fmt = |x: &f64| format!("{x:.x_decimals$}");

    // Top panel: level.
    let mut level_chart = ChartBuilder::on(&top)
        .margin(10)
        .margin_right(RIGHT_MARGIN_PX)
        .margin_bottom(8)
        .x_label_area_size(0)
        .y_label_area_size(Y_LABEL_AREA_PX)
        .build_cartesian_2d(0.0..p.x_max, y_lo..y_hi)?;
    level_chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(5)
        .y_desc(p.level_label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    draw_spans(&mut level_chart, &p.spans, (y_lo, y_hi))?;
    level_chart.draw_series(LineSeries::new(p.level.iter().copied(), &LEVEL_COLOUR))?;

    // Bottom panel: scores, thresholds, legend.
    let mut score_chart = ChartBuilder::on(&bottom)
        .margin(10)
        .margin_right(RIGHT_MARGIN_PX)
        .margin_top(8)
        .x_label_area_size(40)
        .y_label_area_size(Y_LABEL_AREA_PX)
        .build_cartesian_2d(0.0..p.x_max, 0.0..1.0)?;
    score_chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(6)
        .x_desc("time, s")
        .x_label_formatter(&x_fmt)
        .y_desc("score (0..1)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    draw_spans(&mut score_chart, &p.spans, (0.0, 1.0))?;
    for &(colour, th) in &p.thresholds {
        score_chart.draw_series(DashedLineSeries::new(
            [(0.0, th), (p.x_max, th)],
            8,
            5,
            colour.stroke_width(1),
        ))?;
    }
    for &(colour, ref points) in &p.scores {
        score_chart.draw_series(LineSeries::new(
            points.iter().copied(),
            colour.stroke_width(2),
        ))?;
    }
    // One legend entry per class, whether it has a curve, a threshold or only detections.
    draw_legend(&score_chart.plotting_area().strip_coord_spec(), &p.classes)?;
    Ok(())
}

/// Draws the class legend in the upper right corner of `area`. Sized with the backend's own
/// text measure (plotters' built-in legend measures with its fontless estimate, too narrow for
/// the PNG font).
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    classes: &[(&str, RGBColor)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // More rows would not fit the panel anyway.
    let classes = &classes[..classes.len().min(MAX_LEGEND_ROWS)];
    if classes.is_empty() {
        return Ok(());
    }
    let style = TextStyle::from((FONT, 14).into_font())
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Left,
            text_anchor::VPos::Center,
        ));
    let (mut text_w, mut text_h) = (0i32, 0i32);
    for (name, _) in classes {
        let (w, h) = area.estimate_text_size(name, &style)?;
        text_w = text_w.max(i32::try_from(w).unwrap_or(i32::MAX / 4).min(i32::MAX / 4));
        text_h = text_h.max(i32::try_from(h).unwrap_or(100).min(100));
    }
    let (pad, swatch, gap) = (8, 24, 6);
    let row_h = text_h.max(14) + 4;
    let w = pad * 2 + swatch + gap + text_w;
    let h = pad * 2 + classes.len() as i32 * row_h;
    let (area_w, _) = area.dim_in_pixel();
    let x0 = area_w as i32 - w - 10;
    let y0 = 10;
    let corners = [(x0, y0), (x0 + w, y0 + h)];
    area.draw(&Rectangle::new(corners, WHITE.mix(0.85).filled()))?;
    area.draw(&Rectangle::new(corners, BLACK.mix(0.5)))?;
    for (i, &(name, colour)) in classes.iter().enumerate() {
        let yc = y0 + pad + i as i32 * row_h + row_h / 2;
        area.draw(&PathElement::new(
            [(x0 + pad, yc), (x0 + pad + swatch, yc)],
            colour.stroke_width(2),
        ))?;
        area.draw(&Text::new(name, (x0 + pad + swatch + gap, yc), &style))?;
    }
    Ok(())
}

fn draw_spans<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    spans: &[(RGBColor, f64, f64)],
    (y_lo, y_hi): (f64, f64),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart.draw_series(
        spans.iter().map(|&(colour, s, e)| {
            Rectangle::new([(s, y_lo), (e, y_hi)], colour.mix(0.2).filled())
        }),
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PNG text

mod png_text {
    //! A bitmap backend that draws its own text.

    use ab_glyph::{Font, FontArc, PxScale, ScaleFont};
    use plotters::prelude::{BitMapBackend, DrawingBackend};
    use plotters_backend::{
        text_anchor::{HPos, VPos},
        BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
    };

    /// A bitmap backend whose text is rasterised with an `ab_glyph` font read at run time, so
    /// plotters needs no font feature (the SVG backend leaves text to the viewer).
    pub(super) struct TextBitMap<'a, 'f> {
        inner: BitMapBackend<'a>,
        font: &'f FontArc,
    }

    impl<'a, 'f> TextBitMap<'a, 'f> {
        /// Wraps `inner`, drawing text with `font`.
        pub(super) fn new(inner: BitMapBackend<'a>, font: &'f FontArc) -> Self {
            Self { inner, font }
        }

        /// Width and height in px of `text` at `size_px`.
        fn layout(&self, text: &str, size_px: f64) -> (f32, f32) {
            let font = self.font.as_scaled(PxScale::from(size_px as f32));
            let mut width = 0.0f32;
            let mut prev = None;
            for c in text.chars() {
                let id = font.glyph_id(c);
                if let Some(p) = prev {
                    width += font.kern(p, id);
                }
                width += font.h_advance(id);
                prev = Some(id);
            }
            (width.max(0.0), (font.ascent() - font.descent()).max(0.0))
        }
    }

    impl DrawingBackend for TextBitMap<'_, '_> {
        type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

        fn get_size(&self) -> (u32, u32) {
            self.inner.get_size()
        }

        fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.ensure_prepared()
        }

        fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.present()
        }

        fn draw_pixel(
            &mut self,
            point: BackendCoord,
            color: BackendColor,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.draw_pixel(point, color)
        }

        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.draw_line(from, to, style)
        }

        fn draw_rect<S: BackendStyle>(
            &mut self,
            upper_left: BackendCoord,
            bottom_right: BackendCoord,
            style: &S,
            fill: bool,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.draw_rect(upper_left, bottom_right, style, fill)
        }

        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            path: I,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.draw_path(path, style)
        }

        fn draw_circle<S: BackendStyle>(
            &mut self,
            center: BackendCoord,
            radius: u32,
            style: &S,
            fill: bool,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.draw_circle(center, radius, style, fill)
        }

        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
            &mut self,
            vert: I,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.fill_polygon(vert, style)
        }

        fn blit_bitmap(
            &mut self,
            pos: BackendCoord,
            (iw, ih): (u32, u32),
            src: &[u8],
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.inner.blit_bitmap(pos, (iw, ih), src)
        }

        fn estimate_text_size<TStyle: BackendTextStyle>(
            &self,
            text: &str,
            style: &TStyle,
        ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
            let (w, h) = self.layout(text, style.size());
            Ok((w.ceil() as u32, h.ceil() as u32))
        }

        fn draw_text<TStyle: BackendTextStyle>(
            &mut self,
            text: &str,
            style: &TStyle,
            pos: BackendCoord,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            let color = style.color();
            if color.alpha == 0.0 || text.is_empty() {
                return Ok(());
            }
            let scale = PxScale::from(style.size() as f32);
            let (width, height) = self.layout(text, style.size());
            let (width, height) = (width.round() as i32, height.round() as i32);
            let anchor = style.anchor();
            let dx = match anchor.h_pos {
                HPos::Left => 0,
                HPos::Right => -width,
                HPos::Center => -width / 2,
            };
            let dy = match anchor.v_pos {
                VPos::Top => 0,
                VPos::Center => -height / 2,
                VPos::Bottom => -height,
            };
            let transform = style.transform();

            // Coverage of every glyph pixel, in text coordinates (top-left of the text box at 0, 0).
            let mut coverage: Vec<(i32, i32, f32)> = Vec::new();
            let font = self.font.as_scaled(scale);
            let mut caret = 0.0f32;
            let mut prev = None;
            for c in text.chars() {
                let id = font.glyph_id(c);
                if let Some(p) = prev {
                    caret += font.kern(p, id);
                }
                prev = Some(id);
                let glyph =
                    id.with_scale_and_position(scale, ab_glyph::point(caret, font.ascent()));
                caret += font.h_advance(id);
                if let Some(outline) = self.font.outline_glyph(glyph) {
                    let bounds = outline.px_bounds();
                    let (x0, y0) = (bounds.min.x as i32, bounds.min.y as i32);
                    outline.draw(|gx, gy, cov| {
                        if cov > 0.0 {
                            coverage.push((x0 + gx as i32, y0 + gy as i32, cov.min(1.0)));
                        }
                    });
                }
            }
            for (x, y, cov) in coverage {
                let (tx, ty) = transform.transform(x + dx, y + dy);
                let point = (pos.0.saturating_add(tx), pos.1.saturating_add(ty));
                let pixel = BackendColor {
                    alpha: color.alpha * f64::from(cov),
                    rgb: color.rgb,
                };
                self.inner.draw_pixel(point, pixel)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_synthetic(path: &Path) -> Result<(), PlotError> {
        let level: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                let t = i as f64 * 0.01;
                (t, -50.0 + 20.0 * (t * 3.0).sin())
            })
            .collect();
        let peak_at = |at: usize, peak: f32, base: f32| -> Vec<(f64, f32)> {
            (0..10)
                .map(|i| (i as f64 + 0.48, if i == at { peak } else { base }))
                .collect()
        };
        let (glass, gun) = (peak_at(4, 0.9, 0.05), peak_at(7, 0.8, 0.1));
        let scores = [
            ScoreSeries {
                class: "glass_break",
                points: &glass,
            },
            ScoreSeries {
                class: "gunshot",
                points: &gun,
            },
        ];
        let thresholds = [("glass_break", 0.5f32), ("gunshot", 0.6)];
        let detections = [
            Span {
                class: "glass_break",
                start_s: 4.0,
                end_s: 5.0,
            },
            Span {
                class: "my_custom_class",
                start_s: 8.5,
                end_s: 9.0,
            },
        ];
        let data = PlotData {
            title: "street <night> & day.wav",
            duration_s: 10.0,
            level: &level,
            level_label: "LAF, dBFS",
            scores: &scores,
            thresholds: &thresholds,
            detections: &detections,
        };
        write_plot(path, &data)
    }

    fn read_svg(path: &Path) -> String {
        let svg = std::fs::read_to_string(path).expect("svg written");
        assert!(
            svg.trim_start().starts_with("<svg"),
            "{}",
            &svg[..80.min(svg.len())]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        svg
    }

    #[test]
    fn svg_has_title_and_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        write_synthetic(&path).unwrap();
        let svg = read_svg(&path);
        for needle in [
            "street &lt;night&gt; &amp; day.wav",
            "glass_break",
            "gunshot",
            "my_custom_class",
            "LAF, dBFS",
            "time, s",
        ] {
            assert!(svg.contains(needle), "missing {needle:?}");
        }
        assert!(svg.contains(r#"width="1200""#) && svg.contains(r#"height="600""#));
    }

    #[test]
    fn svg_extension_is_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("PLOT.SVG");
        write_synthetic(&path).unwrap();
        read_svg(&path);
    }

    #[test]
    fn empty_data_still_draws() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.svg");
        let data = PlotData {
            title: "",
            duration_s: 0.0,
            level: &[],
            level_label: "",
            scores: &[],
            thresholds: &[],
            detections: &[],
        };
        for duration_s in [0.0, 1e-9, f64::NAN, 1e15] {
            write_plot(&path, &PlotData { duration_s, ..data }).unwrap();
            read_svg(&path);
        }
        // A class with an empty curve still gets a legend entry.
        let scores = [ScoreSeries {
            class: "speech",
            points: &[],
        }];
        write_plot(
            &path,
            &PlotData {
                scores: &scores,
                ..data
            },
        )
        .unwrap();
        assert!(read_svg(&path).contains("speech"));
    }

    #[test]
    fn non_finite_and_out_of_range_input_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let level = [
            (f64::NAN, -20.0),
            (0.0, f64::NAN),
            (0.5, f64::NEG_INFINITY),
            (1.0, f64::INFINITY),
            (f64::INFINITY, -30.0),
            (-1.0, -30.0),
            (1.5, -300.0),
            (2.0, -40.0),
        ];
        let points = [
            (0.0, f32::NAN),
            (0.5, f32::INFINITY),
            (1.0, 7.0),
            (1.5, -2.0),
            (f64::NAN, 0.5),
        ];
        let scores = [ScoreSeries {
            class: "aggression",
            points: &points,
        }];
        let thresholds = [("aggression", f32::NAN), ("speech", 3.0), ("x", 0.4)];
        let detections = [
            Span {
                class: "aggression",
                start_s: -5.0,
                end_s: 100.0,
            },
            Span {
                class: "gunshot",
                start_s: f64::NAN,
                end_s: 1.0,
            },
            Span {
                class: "gunshot",
                start_s: f64::NEG_INFINITY,
                end_s: f64::INFINITY,
            },
            Span {
                class: "gunshot",
                start_s: 2.0,
                end_s: 1.0,
            },
            Span {
                class: "gunshot",
                start_s: 50.0,
                end_s: 60.0,
            },
        ];
        for duration_s in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e-9, 3.0, 1e12] {
            let data = PlotData {
                title: "odd",
                duration_s,
                level: &level,
                level_label: "LAF, dBFS",
                scores: &scores,
                thresholds: &thresholds,
                detections: &detections,
            };
            let path = dir.path().join("odd.svg");
            write_plot(&path, &data).unwrap();
            read_svg(&path);
            if png_font_available() {
                let path = dir.path().join("odd.png");
                write_plot(&path, &data).unwrap();
            }
        }
        // Only absurd levels.
        let level = [(0.0, 1e300), (1.0, -1e300)];
        let data = PlotData {
            title: "absurd",
            duration_s: 1.0,
            level: &level,
            level_label: "dB",
            scores: &[],
            thresholds: &[],
            detections: &[],
        };
        let path = dir.path().join("absurd.svg");
        write_plot(&path, &data).unwrap();
        read_svg(&path);
    }

    #[test]
    fn level_range_has_floor_and_minimum_height() {
        assert_eq!(level_range(&[]), (-60.0, 0.0));
        let (lo, hi) = level_range(&[(0.0, -200.0), (1.0, -20.0)]);
        assert_eq!((lo, hi), (LEVEL_FLOOR_DB - 3.0, -17.0));
        let (lo, hi) = level_range(&[(0.0, -30.0)]);
        assert!(hi - lo >= 10.0 && lo < -30.0 && hi > -30.0);
    }

    #[test]
    fn long_curves_are_thinned_keeping_peaks() {
        let n = 100_000;
        let points: Vec<(f64, f64)> = (0..n)
            .map(|i| (i as f64 * 0.01, if i == 54_321 { 9.0 } else { 0.0 }))
            .collect();
        let x_max = n as f64 * 0.01;
        let thinned = decimate(points, x_max);
        assert!(thinned.len() <= MAX_POINTS + 2, "{}", thinned.len());
        assert!(thinned.iter().any(|p| p.1 == 9.0));
        assert!(thinned.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn unsupported_extension_names_path() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["plot.pdf", "plot"] {
            let path = dir.path().join(name);
            let err = write_synthetic(&path).unwrap_err();
            assert!(
                matches!(err, PlotError::UnsupportedFormat { .. }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(".svg") && msg.contains(".png"), "{msg}");
            assert!(!path.exists());
        }
    }

    #[test]
    fn io_error_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no_such_dir").join("plot.svg");
        let err = write_synthetic(&path).unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    fn png_font_available() -> bool {
        load_png_font().is_ok()
    }

    #[test]
    fn png_has_signature_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        let result = write_synthetic(&path);
        if !png_font_available() {
            // Without a font PNG must fail cleanly, naming where it looked.
            let err = result.unwrap_err();
            assert!(matches!(err, PlotError::FontMissing { .. }), "{err:?}");
            if std::env::var_os(PNG_FONT_ENV).is_none() {
                assert!(err.to_string().contains(PNG_FONT_PATHS[0]), "{err}");
            }
            assert!(!path.exists());
            return;
        }
        result.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (WIDTH_PX, HEIGHT_PX));
        // Decode and check that text and curves left non-white pixels.
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let title_strip = &buf[..WIDTH_PX as usize * 3 * 25];
        assert!(title_strip.iter().any(|&b| b < 128), "title text drawn");
    }
}
