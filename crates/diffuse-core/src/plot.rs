//! Pictures a person can look at: scatter plots of 2-D samples and image grids.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{DiffuseError, Result};
use crate::io::write_atomically;

/// One set of 2-D points (row-major x, y pairs) and the colour to draw it in.
pub struct ScatterLayer<'a> {
    pub points: &'a [f64],
    pub color: [u8; 3],
}

/// Draws side-by-side square panels, one per group of layers, over the square [−extent, extent]²,
/// and writes them as a PNG. Points outside the square are left out.
pub fn scatter_panels_png(
    path: &Path,
    panels: &[Vec<ScatterLayer<'_>>],
    extent: f64,
    panel_size: u32,
) -> Result<()> {
    let gap = 8;
    let width = panels.len() as u32 * (panel_size + gap) - gap;
    let mut img = RgbImage::from_pixel(width, panel_size, Rgb([255, 255, 255]));
    for (p, layers) in panels.iter().enumerate() {
        let x0 = p as u32 * (panel_size + gap);
        draw_frame(&mut img, x0, panel_size);
        for layer in layers {
            for xy in layer.points.chunks_exact(2) {
                let to_pixel = |v: f64| (v + extent) / (2.0 * extent) * (panel_size - 1) as f64;
                let (px, py) = (to_pixel(xy[0]), to_pixel(-xy[1]));
                if (0.0..(panel_size - 1) as f64).contains(&px)
                    && (0.0..(panel_size - 1) as f64).contains(&py)
                {
                    let (px, py) = (x0 + px as u32, py as u32);
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        img.put_pixel(px + dx, py + dy, Rgb(layer.color));
                    }
                }
            }
        }
    }
    write_png(path, &img)
}

/// Writes images [N, C, H, W] (row-major, values in [−1, 1], C = 1 or 3) as one PNG grid of
/// `columns` columns with a 2-pixel white gap.
pub fn image_grid_png(
    path: &Path,
    images: &[f64],
    shape: [usize; 4],
    columns: usize,
) -> Result<()> {
    let [n, c, h, w] = shape;
    if !matches!(c, 1 | 3) {
        return Err(DiffuseError::config(format!(
            "a PNG grid needs 1 or 3 channels, the images have {c}"
        )));
    }
    let columns = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(columns);
    let gap = 2;
    let (width, height) = (columns * (w + gap) - gap, rows * (h + gap) - gap);
    let mut img = RgbImage::from_pixel(width as u32, height as u32, Rgb([255, 255, 255]));
    for (i, image) in images.chunks_exact(c * h * w).enumerate() {
        let (x0, y0) = ((i % columns) * (w + gap), (i / columns) * (h + gap));
        for y in 0..h {
            for x in 0..w {
                let channel = |k: usize| pixel_byte(image[(k * h + y) * w + x]);
                let pixel = if c == 1 {
                    [channel(0); 3]
                } else {
                    [channel(0), channel(1), channel(2)]
                };
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, Rgb(pixel));
            }
        }
    }
    write_png(path, &img)
}

fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| DiffuseError::config(format!("encoding {}: {e}", path.display())))?;
    write_atomically(path, &bytes)
}

fn draw_frame(img: &mut RgbImage, x0: u32, size: u32) {
    let grey = Rgb([200, 200, 200]);
    for i in 0..size {
        for (x, y) in [
            (x0 + i, 0),
            (x0 + i, size - 1),
            (x0, i),
            (x0 + size - 1, i),
            (x0 + i, size / 2),
            (x0 + size / 2, i),
        ] {
            img.put_pixel(x, y, grey);
        }
    }
}

/// The font of plot labels, embedded so plots need no system fonts (DejaVu Sans Mono, see
/// assets/DejaVu-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF compiled into the binary; failure would be a build bug.
        if plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT)
            .is_err()
        {
            unreachable!("the embedded font parses");
        }
    });
}

/// Draws the loss line on a chart whose loss axis is `y` (linear or logarithmic).
fn draw_loss<DB: plotters::prelude::DrawingBackend, Y>(
    mut builder: plotters::prelude::ChartBuilder<'_, '_, DB>,
    x_max: f64,
    y: Y,
    y_desc: &str,
    points: &[(f64, f64)],
) -> std::result::Result<(), String>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    use plotters::prelude::*;
    let mut chart = builder
        .build_cartesian_2d(0.0..x_max, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.3}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(points.iter().copied(), &BLUE))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Plots (step, loss) points (a log loss axis when they span a decade) and writes the PNG.
pub fn loss_curve_png(path: &Path, points: &[(f64, f64)]) -> Result<()> {
    use plotters::prelude::*;
    register_font();
    let (width, height) = (800u32, 480u32);
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, l)| l.is_finite() && *l > 0.0)
        .collect();
    let plot_error =
        |e: &dyn std::fmt::Display| DiffuseError::bad_file(path, format!("plotting: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(&e))?;
        let x_max = finite.iter().map(|p| p.0).fold(1.0, f64::max);
        let (y_min, y_max) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let (y_min, y_max) = if y_min.is_finite() {
            (y_min * 0.9, y_max * 1.1)
        } else {
            (0.01, 1.0)
        };
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption("training loss", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        // A log axis only pays off when the loss spans more than a decade.
        if y_max / y_min > 10.0 {
            draw_loss(
                builder,
                x_max,
                (y_min..y_max).log_scale(),
                "loss (log scale)",
                &finite,
            )
        } else {
            draw_loss(builder, x_max, y_min..y_max, "loss", &finite)
        }
        .map_err(|e| plot_error(&e))?;
        root.present().map_err(|e| plot_error(&e))?;
    }
    let img =
        RgbImage::from_raw(width, height, buffer).expect("the buffer has width × height pixels");
    write_png(path, &img)
}

/// A value in [−1, 1] as the 8-bit level a saved image holds (values outside are clipped).
pub fn pixel_byte(v: f64) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}
