//! Pictures a person can look at: scatter plots of 2-D samples.

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
