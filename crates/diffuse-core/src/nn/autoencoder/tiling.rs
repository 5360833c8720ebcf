//! Tiled encoding and decoding for images larger than the autoencoder was built for, as
//! diffusers' `enable_tiling` does it: tiles of the config's sample size (the latent's at 1/f)
//! that overlap by a quarter run through the network one at a time, and each tile is blended
//! linearly into its upper and left neighbours across the overlap, in raster order, the already
//! blended neighbours feeding the next blend (diffusers blends in place). Memory then grows with
//! the tile, not the image.

use burn::tensor::{DType, Tensor, TensorData};

use super::{AutoencoderKL, DiagonalGaussian};
use crate::error::Result;
use crate::tensor_ops::to_host_f64;

/// diffusers' `tile_overlap_factor`.
const OVERLAP_FACTOR: f64 = 0.25;

/// A block [B, C, H, W] on the host.
#[derive(Debug, Clone)]
struct Block {
    values: Vec<f32>,
    dims: [usize; 4],
}

impl Block {
    fn from_tensor(tensor: Tensor<4>) -> Result<Self> {
        let dims = tensor.dims();
        let values = to_host_f64(tensor)?.into_iter().map(|v| v as f32).collect();
        Ok(Self { values, dims })
    }

    fn at(&self, b: usize, c: usize, y: usize, x: usize) -> usize {
        let [_, channels, height, width] = self.dims;
        ((b * channels + c) * height + y) * width + x
    }

    /// Row `y` of b ← a's row `a.h − extent + y`·(1 − y/extent) + b's row `y`·(y/extent) for the
    /// first `extent` rows (diffusers' `blend_v`); `blend_h` is the same across columns.
    fn blend_from(&mut self, above_or_left: &Block, extent: usize, vertical: bool) {
        let axis = if vertical { 2 } else { 3 };
        let extent = extent.min(above_or_left.dims[axis]).min(self.dims[axis]);
        let [batch, channels, height, width] = self.dims;
        for k in 0..extent {
            let weight = k as f64 / extent as f64;
            let (keep, take) = ((1.0 - weight) as f32, weight as f32);
            let source = above_or_left.dims[axis] - extent + k;
            for b in 0..batch {
                for c in 0..channels {
                    let across = if vertical { width } else { height };
                    for i in 0..across {
                        let (own, other) = if vertical {
                            (self.at(b, c, k, i), above_or_left.at(b, c, source, i))
                        } else {
                            (self.at(b, c, i, k), above_or_left.at(b, c, i, source))
                        };
                        self.values[own] =
                            above_or_left.values[other] * keep + self.values[own] * take;
                    }
                }
            }
        }
    }

    /// The top-left `rows × cols` corner (or less, where the block is smaller).
    fn corner(&self, rows: usize, cols: usize) -> Block {
        let [batch, channels, height, width] = self.dims;
        let (rows, cols) = (rows.min(height), cols.min(width));
        let mut values = Vec::with_capacity(batch * channels * rows * cols);
        for b in 0..batch {
            for c in 0..channels {
                for y in 0..rows {
                    let start = self.at(b, c, y, 0);
                    values.extend_from_slice(&self.values[start..start + cols]);
                }
            }
        }
        Block {
            values,
            dims: [batch, channels, rows, cols],
        }
    }
}

/// Runs `network` over `input` in tiles of `in_tile` stepping by ¾ of it, each producing an
/// output tile of `out_tile`, blends them over a quarter of `out_tile` and stitches the blended
/// tiles' top-left `out_tile − blend` corners together (diffusers' `_tiled_encode` and
/// `tiled_decode`).
fn run_tiled(
    input: Tensor<4>,
    [in_tile, out_tile]: [usize; 2],
    network: impl Fn(Tensor<4>) -> Tensor<4>,
) -> Result<Tensor<4>> {
    let [batch, channels, height, width] = input.dims();
    let step = ((in_tile as f64 * (1.0 - OVERLAP_FACTOR)) as usize).max(1);
    let blend = (out_tile as f64 * OVERLAP_FACTOR) as usize;
    let keep = out_tile - blend;
    let mut rows: Vec<Vec<Block>> = Vec::new();
    for y in (0..height).step_by(step) {
        let mut row: Vec<Block> = Vec::new();
        for x in (0..width).step_by(step) {
            let tile = input.clone().slice([
                0..batch,
                0..channels,
                y..(y + in_tile).min(height),
                x..(x + in_tile).min(width),
            ]);
            let mut tile = Block::from_tensor(network(tile))?;
            if let Some(above) = rows.last() {
                tile.blend_from(&above[row.len()], blend, true);
            }
            if let Some(left) = row.last() {
                tile.blend_from(left, blend, false);
            }
            row.push(tile);
        }
        rows.push(row);
    }
    Ok(stitch(&rows, keep, &input.device()))
}

/// The kept corners of every tile, side by side within a row and rows stacked.
fn stitch(rows: &[Vec<Block>], keep: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let corners: Vec<Vec<Block>> = rows
        .iter()
        .map(|row| row.iter().map(|tile| tile.corner(keep, keep)).collect())
        .collect();
    let [batch, channels, _, _] = corners[0][0].dims;
    let height: usize = corners.iter().map(|row| row[0].dims[2]).sum();
    let width: usize = corners[0].iter().map(|tile| tile.dims[3]).sum();
    let mut out = vec![0.0f32; batch * channels * height * width];
    let mut y0 = 0;
    for row in &corners {
        let mut x0 = 0;
        for tile in row {
            let [_, _, rows, cols] = tile.dims;
            for b in 0..batch {
                for c in 0..channels {
                    for y in 0..rows {
                        let from = tile.at(b, c, y, 0);
                        let to = ((b * channels + c) * height + y0 + y) * width + x0;
                        out[to..to + cols].copy_from_slice(&tile.values[from..from + cols]);
                    }
                }
            }
            x0 += cols;
        }
        y0 += row[0].dims[2];
    }
    let data = TensorData::new(out, [batch, channels, height, width]);
    Tensor::from_data(data, (device, DType::F32))
}

impl AutoencoderKL {
    /// The tile sides, image and latent: the config's sample size and that over the encoder's
    /// downsampling factor (diffusers' `tile_sample_min_size`, `tile_latent_min_size`).
    fn tiles(&self) -> [usize; 2] {
        let sample = self.config().sample_size.hw()[0];
        [sample, sample / self.config().downsampling_factor()]
    }

    /// [`AutoencoderKL::encode`] in overlapping tiles when the images are larger than the
    /// config's sample size (diffusers' `encode` with tiling enabled).
    pub fn encode_tiled(&self, images: Tensor<4>) -> Result<DiagonalGaussian> {
        let [sample_tile, latent_tile] = self.tiles();
        let [_, _, height, width] = images.dims();
        if height <= sample_tile && width <= sample_tile {
            return Ok(self.encode(images));
        }
        let moments = run_tiled(images, [sample_tile, latent_tile], |tile| {
            self.moments(tile)
        })?;
        Ok(self.posterior(moments))
    }

    /// [`AutoencoderKL::decode`] in overlapping tiles when the latents are larger than the
    /// config's sample size over f (diffusers' `decode` with tiling enabled).
    pub fn decode_tiled(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        let [sample_tile, latent_tile] = self.tiles();
        let [_, _, height, width] = latents.dims();
        if height <= latent_tile && width <= latent_tile {
            return Ok(self.decode(latents));
        }
        run_tiled(latents, [latent_tile, sample_tile], |tile| {
            self.decode(tile)
        })
    }
}
