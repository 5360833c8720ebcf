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
    let to_byte = |v: f64| (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8;
    for (i, image) in images.chunks_exact(c * h * w).enumerate() {
        let (x0, y0) = ((i % columns) * (w + gap), (i / columns) * (h + gap));
        for y in 0..h {
            for x in 0..w {
                let channel = |k: usize| to_byte(image[(k * h + y) * w + x]);
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
