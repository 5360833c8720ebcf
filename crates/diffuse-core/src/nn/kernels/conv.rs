//! 2-D convolution over NCHW f32 batches as matrix products, forward and both gradients: each
//! image's patches are unrolled into a matrix (im2col) so that the convolution is one product
//! with the weights, and the input gradient is the product with the transposed weights folded
//! back onto the image (col2im) — Chellapilla et al. 2006, the lowering Caffe and PyTorch's CPU
//! path use. Images run in parallel; the weight gradient sums fixed chunks of the batch in a
//! fixed order, so the result does not depend on the number of threads.

use std::cell::Cell;
use std::ops::Range;

use rayon::prelude::*;

use super::matmul::{Mat, Threads, matmul};

/// Partial weight gradients summed at most: the batch is cut into this many contiguous chunks,
/// whatever the thread count, so the sum's order (and its rounding) is fixed.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// The geometry of one convolution (groups 1, dilation 1) over a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero rows above and columns left of the image.
    pub pad_begin: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl ConvShape {
    /// The geometry for `padding` given as (begin, end) per spatial axis; `None` when the kernel
    /// does not fit the padded input.
    pub fn new(
        [batch, in_channels, height, width]: [usize; 4],
        [out_channels, kernel_h, kernel_w]: [usize; 3],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
    ) -> Option<Self> {
        let input = [height, width];
        let kernel = [kernel_h, kernel_w];
        let mut output = [0; 2];
        for axis in 0..2 {
            let padded = input[axis] + padding[axis].0 + padding[axis].1;
            if padded < kernel[axis] || stride[axis] == 0 {
                return None;
            }
            output[axis] = (padded - kernel[axis]) / stride[axis] + 1;
        }
        Some(Self {
            batch,
            in_channels,
            out_channels,
            input,
            kernel,
            stride,
            pad_begin: [padding[0].0, padding[1].0],
            output,
        })
    }

    /// Rows of the patch matrix: C_in · k_h · k_w.
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per image: H_out · W_out.
    fn positions(&self) -> usize {
        self.output[0] * self.output[1]
    }

    pub fn input_len(&self) -> usize {
        self.in_channels * self.input[0] * self.input[1]
    }

    pub fn output_len(&self) -> usize {
        self.out_channels * self.positions()
    }

    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    /// A 1×1, stride-1, unpadded convolution: the image itself is the patch matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.output == self.input
    }

    /// Scratch floats for one image's patch matrix.
    fn patch_matrix_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.patch_len() * self.positions()
        }
    }

    /// The output columns whose tap `k` lands inside an input row of `len` (axis `axis`).
    fn valid_outputs(&self, axis: usize, k: usize, len: usize) -> Range<usize> {
        let (stride, pad, out) = (self.stride[axis], self.pad_begin[axis], self.output[axis]);
        // i = o·stride + k − pad must satisfy 0 ≤ i < len.
        let first = pad.saturating_sub(k).div_ceil(stride);
        let end = (len + pad).saturating_sub(k).div_ceil(stride);
        first.min(out)..end.min(out)
    }
}

/// The input columns from the first to the last that tap `kx` reads for the output columns
/// `valid` (every `stride`-th of them is read).
fn tap_positions(shape: &ConvShape, valid: &Range<usize>, kx: usize) -> Range<usize> {
    if valid.is_empty() {
        return 0..0;
    }
    let first = valid.start * shape.stride[1] + kx - shape.pad_begin[1];
    first..first + (valid.len() - 1) * shape.stride[1] + 1
}

/// One image's patch matrix [C_in·k_h·k_w, H_out·W_out]: row (c, ky, kx), column (oy, ox) holds
/// x[c, oy·s + ky − p, ox·s + kx − p], zero outside the image.
fn im2col(shape: &ConvShape, image: &[f32], patches: &mut [f32]) {
    let [height, width] = shape.input;
    let [out_h, out_w] = shape.output;
    let [kernel_h, kernel_w] = shape.kernel;
    let same_width = shape.stride == [1, 1] && out_w == width;
    let mut rows = patches.chunks_exact_mut(out_h * out_w);
    for plane in image.chunks_exact(height * width) {
        for ky in 0..kernel_h {
            let valid_y = shape.valid_outputs(0, ky, height);
            for kx in 0..kernel_w {
                let valid_x = shape.valid_outputs(1, kx, width);
                let row = rows.next().expect("one patch row per (channel, ky, kx)");
                if same_width {
                    shifted_plane(shape, plane, row, [ky, kx], [&valid_y, &valid_x]);
                } else {
                    gathered_plane(shape, plane, row, [ky, kx], [&valid_y, &valid_x]);
                }
            }
        }
    }
}

/// One patch row of a stride-1 convolution whose output rows are as wide as the input's: the
/// plane shifted by (ky − p_top)·W + (kx − p_left) as one copy, then the entries that wrapped
/// round a row edge or fall outside the image zeroed.
#[inline]
fn shifted_plane(
    shape: &ConvShape,
    plane: &[f32],
    row: &mut [f32],
    [ky, kx]: [usize; 2],
    [valid_y, valid_x]: [&Range<usize>; 2],
) {
    let width = shape.input[1];
    let shift =
        (ky * width + kx) as isize - (shape.pad_begin[0] * width + shape.pad_begin[1]) as isize;
    let rows = valid_y.start * width..valid_y.end * width;
    // Clip the copied range to the plane; what is clipped lies in wrapped columns (zeroed below).
    let first = rows.start.max((-shift).max(0) as usize);
    let end = rows
        .end
        .min((plane.len() as isize - shift).max(0) as usize)
        .max(first);
    row[..first].fill(0.0);
    row[end..].fill(0.0);
    let source = (first as isize + shift) as usize;
    row[first..end].copy_from_slice(&plane[source..source + end - first]);
    for out in row[rows].chunks_exact_mut(width) {
        out[..valid_x.start].fill(0.0);
        out[valid_x.end..].fill(0.0);
    }
}

/// One patch row of any convolution, output row by output row.
#[inline]
fn gathered_plane(
    shape: &ConvShape,
    plane: &[f32],
    row: &mut [f32],
    [ky, kx]: [usize; 2],
    [valid_y, valid_x]: [&Range<usize>; 2],
) {
    let width = shape.input[1];
    for (oy, out) in row.chunks_exact_mut(shape.output[1]).enumerate() {
        if !valid_y.contains(&oy) {
            out.fill(0.0);
            continue;
        }
        let iy = oy * shape.stride[0] + ky - shape.pad_begin[0];
        let source = &plane[iy * width..(iy + 1) * width];
        out[..valid_x.start].fill(0.0);
        out[valid_x.end..].fill(0.0);
        let taps = tap_positions(shape, valid_x, kx);
        let out = &mut out[valid_x.clone()];
        let taps = source[taps].iter().step_by(shape.stride[1]);
        out.iter_mut().zip(taps).for_each(|(o, &v)| *o = v);
    }
}

/// The adjoint of [`im2col`]: adds every patch-matrix entry back onto the input position it
/// was read from.
fn col2im(shape: &ConvShape, patches: &[f32], image: &mut [f32]) {
    let [height, width] = shape.input;
    let [out_h, out_w] = shape.output;
    let [kernel_h, kernel_w] = shape.kernel;
    let mut rows = patches.chunks_exact(out_h * out_w);
    for plane in image.chunks_exact_mut(height * width) {
        for ky in 0..kernel_h {
            let valid_y = shape.valid_outputs(0, ky, height);
            for kx in 0..kernel_w {
                let valid_x = shape.valid_outputs(1, kx, width);
                let row = rows.next().expect("one patch row per (channel, ky, kx)");
                for oy in valid_y.clone() {
                    let iy = oy * shape.stride[0] + ky - shape.pad_begin[0];
                    let target = &mut plane[iy * width..(iy + 1) * width];
                    let out = &row[oy * out_w..(oy + 1) * out_w][valid_x.clone()];
                    let taps = tap_positions(shape, &valid_x, kx);
                    let target = target[taps].iter_mut().step_by(shape.stride[1]);
                    target.zip(out).for_each(|(t, &v)| *t += v);
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's patch-matrix buffer, kept between calls: a fresh one of a few MB per image
    /// would be a fresh mmap, and its first touch a page fault per 4 KiB.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `work` with this thread's scratch buffer of `len` floats (contents unspecified). The
/// buffer is taken out while in use, so a nested call (rayon may run another job on this thread
/// while `work` waits) gets a buffer of its own instead of a shared one.
pub(super) fn with_scratch<R>(len: usize, work: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = SCRATCH.take();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = work(&mut buffer[..len]);
    SCRATCH.set(buffer);
    result
}

/// Runs `work(n, out_n, scratch, threads)` for every image n, where `out_n` is image n's block
/// of `out`: images in parallel when there are enough of them, otherwise one after another with
/// each matrix product using every thread.
fn for_each_image<F>(out: &mut [f32], block: usize, scratch: usize, work: F)
where
    F: Fn(usize, &mut [f32], &mut [f32], Threads) + Sync,
{
    if block == 0 {
        return;
    }
    let images = out.len() / block;
    if images >= rayon::current_num_threads() {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(n, out_n)| {
                with_scratch(scratch, |patches| work(n, out_n, patches, Threads::Shared))
            });
    } else {
        with_scratch(scratch, |patches| {
            for (n, out_n) in out.chunks_mut(block).enumerate() {
                work(n, out_n, patches, Threads::Own);
            }
        });
    }
}

/// The patch matrix of image `n` of `x`, unrolled into `scratch` unless the image is its own.
fn patch_matrix<'a>(shape: &ConvShape, x: &'a [f32], n: usize, scratch: &'a mut [f32]) -> Mat<'a> {
    let image = &x[n * shape.input_len()..(n + 1) * shape.input_len()];
    if shape.is_pointwise() {
        return Mat::row_major(image, shape.patch_len(), shape.positions());
    }
    im2col(shape, image, scratch);
    Mat::row_major(scratch, shape.patch_len(), shape.positions())
}

/// y[n] = W · patches(x[n]) + b: `x` [N, C_in, H, W], `weight` [C_out, C_in, k_h, k_w],
/// `bias` [C_out]; returns y [N, C_out, H_out, W_out].
pub fn forward(shape: &ConvShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), shape.batch * shape.input_len(), "input size");
    let mut y = vec![0.0; shape.batch * shape.output_len()];
    let weights = Mat::row_major(weight, shape.out_channels, shape.patch_len());
    let scratch = shape.patch_matrix_len();
    for_each_image(
        &mut y,
        shape.output_len(),
        scratch,
        |n, y_n, patches, threads| {
            let patches = patch_matrix(shape, x, n, patches);
            if let Some(bias) = bias {
                for (row, &b) in y_n.chunks_exact_mut(shape.positions()).zip(bias) {
                    row.fill(b);
                }
            }
            matmul(y_n, weights, patches, bias.is_some(), threads);
        },
    );
    y
}

/// ∂L/∂x, [N, C_in, H, W]: for a stride-1 convolution, a convolution itself ([`transposed`]);
/// otherwise col2im(Wᵀ · ∂L/∂y[n]) per image.
pub fn input_grad(shape: &ConvShape, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(
        grad.len(),
        shape.batch * shape.output_len(),
        "gradient size"
    );
    if !shape.is_pointwise()
        && let Some(transposed) = transposed(shape)
    {
        return forward(&transposed, grad, &flipped_kernel(shape, weight), None);
    }
    let mut dx = vec![0.0; shape.batch * shape.input_len()];
    let weights_t = Mat::row_major(weight, shape.out_channels, shape.patch_len()).t();
    let scratch = shape.patch_matrix_len();
    for_each_image(
        &mut dx,
        shape.input_len(),
        scratch,
        |n, dx_n, patches, threads| {
            let grad_n = &grad[n * shape.output_len()..(n + 1) * shape.output_len()];
            let grad_n = Mat::row_major(grad_n, shape.out_channels, shape.positions());
            if shape.is_pointwise() {
                matmul(dx_n, weights_t, grad_n, false, threads);
            } else {
                matmul(patches, weights_t, grad_n, false, threads);
                col2im(shape, patches, dx_n);
            }
        },
    );
    dx
}

/// The convolution that maps ∂L/∂y to ∂L/∂x when the stride is 1: dx[i] = Σ_t w[t]·dy[i − t + p]
/// is a correlation of dy with the kernel flipped in space and its channel axes swapped, padded
/// by k − 1 − p at each end. `None` for other strides, or a padding wider than k − 1.
fn transposed(shape: &ConvShape) -> Option<ConvShape> {
    if shape.stride != [1, 1] {
        return None;
    }
    let flipped_padding = |axis: usize| {
        let k = shape.kernel[axis];
        let begin = shape.pad_begin[axis];
        let end = shape.output[axis] + k - 1 - shape.input[axis] - begin;
        Some(((k - 1).checked_sub(begin)?, (k - 1).checked_sub(end)?))
    };
    let padding = [flipped_padding(0)?, flipped_padding(1)?];
    let [out_h, out_w] = shape.output;
    ConvShape::new(
        [shape.batch, shape.out_channels, out_h, out_w],
        [shape.in_channels, shape.kernel[0], shape.kernel[1]],
        [1, 1],
        padding,
    )
}

/// W'[c_in, c_out, ky, kx] = W[c_out, c_in, k_h − 1 − ky, k_w − 1 − kx].
fn flipped_kernel(shape: &ConvShape, weight: &[f32]) -> Vec<f32> {
    let [kh, kw] = shape.kernel;
    let (c_in, c_out) = (shape.in_channels, shape.out_channels);
    let mut flipped = vec![0.0; weight.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            for ky in 0..kh {
                for kx in 0..kw {
                    flipped[((i * c_out + o) * kh + ky) * kw + kx] =
                        weight[((o * c_in + i) * kh + kh - 1 - ky) * kw + kw - 1 - kx];
                }
            }
        }
    }
    flipped
}

/// ∂L/∂W = Σ_n ∂L/∂y[n] · patches(x[n])ᵀ and ∂L/∂b = Σ_n Σ_positions ∂L/∂y[n]; returns
/// ([C_out, C_in, k_h, k_w], [C_out]).
pub fn weight_grad(shape: &ConvShape, x: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.batch * shape.input_len(), "input size");
    assert_eq!(
        grad.len(),
        shape.batch * shape.output_len(),
        "gradient size"
    );
    let chunks = batch_chunks(shape.batch);
    let threads = if chunks.len() >= rayon::current_num_threads() {
        Threads::Shared
    } else {
        Threads::Own
    };
    let partials: Vec<(Vec<f32>, Vec<f64>)> = chunks
        .into_par_iter()
        .map(|images| chunk_weight_grad(shape, x, grad, images, threads))
        .collect();
    let mut partials = partials.into_iter();
    let (mut dw, mut db) = partials
        .next()
        .unwrap_or_else(|| (vec![0.0; shape.weight_len()], vec![0.0; shape.out_channels]));
    for (chunk_dw, chunk_db) in partials {
        dw.iter_mut().zip(&chunk_dw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&chunk_db).for_each(|(a, b)| *a += b);
    }
    (dw, db.into_iter().map(|v| v as f32).collect())
}

/// The batch cut into at most [`WEIGHT_GRAD_CHUNKS`] contiguous, nearly equal ranges.
fn batch_chunks(batch: usize) -> Vec<Range<usize>> {
    let count = batch.min(WEIGHT_GRAD_CHUNKS);
    (0..count)
        .map(|i| i * batch / count..(i + 1) * batch / count)
        .collect()
}

/// The weight and bias gradients of the images in `images`, summed in order.
fn chunk_weight_grad(
    shape: &ConvShape,
    x: &[f32],
    grad: &[f32],
    images: Range<usize>,
    threads: Threads,
) -> (Vec<f32>, Vec<f64>) {
    let (positions, taps) = (shape.positions(), shape.patch_len());
    // ∂L/∂W with its columns in the position-major patches' (ky, kx, c) order.
    let mut dw_taps = vec![0.0; shape.weight_len()];
    let mut db = vec![0.0f64; shape.out_channels];
    let channels_last = shape.input_len();
    with_scratch(channels_last + positions * taps, |scratch| {
        let (channels_last, rows) = scratch.split_at_mut(channels_last);
        for (i, n) in images.enumerate() {
            let grad_n = &grad[n * shape.output_len()..(n + 1) * shape.output_len()];
            let image = &x[n * shape.input_len()..(n + 1) * shape.input_len()];
            let rows = position_major_patches(shape, image, channels_last, rows);
            let grad_mat = Mat::row_major(grad_n, shape.out_channels, positions);
            matmul(
                &mut dw_taps,
                grad_mat,
                Mat::row_major(rows, positions, taps),
                i > 0,
                threads,
            );
            for (sum, row) in db.iter_mut().zip(grad_n.chunks_exact(positions)) {
                *sum += row.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
        }
    });
    (channel_major_kernel(shape, &dw_taps), db)
}

/// One image's patches position by position, [H_out·W_out, k_h·k_w·C_in]: row (oy, ox) holds the
/// taps in (ky, kx, c) order, c fastest. A product that sums over positions packs this layout
/// fastest; [`im2col`]'s rows run along the summed axis. `channels_last` is scratch for the
/// image as [H·W, C_in]; for a 1×1 convolution that is the patch matrix itself.
fn position_major_patches<'a>(
    shape: &ConvShape,
    image: &[f32],
    channels_last: &'a mut [f32],
    rows: &'a mut [f32],
) -> &'a [f32] {
    let [height, width] = shape.input;
    let channels = shape.in_channels;
    for (c, plane) in image.chunks_exact(height * width).enumerate() {
        for (pixel, &v) in plane.iter().enumerate() {
            channels_last[pixel * channels + c] = v;
        }
    }
    if shape.is_pointwise() {
        return channels_last;
    }
    let [out_h, out_w] = shape.output;
    let kernel_w = shape.kernel[1];
    let row_len = shape.patch_len();
    for oy in 0..out_h {
        for ox in 0..out_w {
            let row = &mut rows[(oy * out_w + ox) * row_len..][..row_len];
            for (tap, taps) in row.chunks_exact_mut(channels).enumerate() {
                let (ky, kx) = (tap / kernel_w, tap % kernel_w);
                let iy = (oy * shape.stride[0] + ky).checked_sub(shape.pad_begin[0]);
                let ix = (ox * shape.stride[1] + kx).checked_sub(shape.pad_begin[1]);
                match (iy, ix) {
                    (Some(iy), Some(ix)) if iy < height && ix < width => {
                        let pixel = iy * width + ix;
                        taps.copy_from_slice(&channels_last[pixel * channels..][..channels]);
                    }
                    _ => taps.fill(0.0),
                }
            }
        }
    }
    rows
}

/// A kernel with columns in (ky, kx, c) order back in burn's [C_out, C_in, k_h, k_w] layout.
fn channel_major_kernel(shape: &ConvShape, taps_last: &[f32]) -> Vec<f32> {
    let [kernel_h, kernel_w] = shape.kernel;
    let (channels, taps) = (shape.in_channels, kernel_h * kernel_w);
    let mut out = vec![0.0; taps_last.len()];
    for (out, from) in out
        .chunks_exact_mut(channels * taps)
        .zip(taps_last.chunks_exact(channels * taps))
    {
        for tap in 0..taps {
            for c in 0..channels {
                out[c * taps + tap] = from[tap * channels + c];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::kernels::test_values;

    /// The convolution and its gradients by definition, in f64: visits every (output, tap) pair.
    struct Reference {
        y: Vec<f64>,
        dx: Vec<f64>,
        dw: Vec<f64>,
        db: Vec<f64>,
    }

    // The definition indexes every tensor by its coordinates.
    #[allow(clippy::needless_range_loop)]
    fn reference(shape: &ConvShape, x: &[f32], w: &[f32], b: &[f32], g: &[f32]) -> Reference {
        let [h, wd] = shape.input;
        let [oh, ow] = shape.output;
        let [kh, kw] = shape.kernel;
        let mut r = Reference {
            y: vec![0.0; g.len()],
            dx: vec![0.0; x.len()],
            dw: vec![0.0; w.len()],
            db: vec![0.0; b.len()],
        };
        for n in 0..shape.batch {
            for co in 0..shape.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((n * shape.out_channels + co) * oh + oy) * ow + ox;
                        let gi = f64::from(g[yi]);
                        r.y[yi] += f64::from(b[co]);
                        r.db[co] += gi;
                        for ci in 0..shape.in_channels {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * shape.stride[0] + ky) as isize
                                        - shape.pad_begin[0] as isize;
                                    let ix = (ox * shape.stride[1] + kx) as isize
                                        - shape.pad_begin[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((n * shape.in_channels + ci) * h + iy as usize) * wd
                                        + ix as usize;
                                    let wi = ((co * shape.in_channels + ci) * kh + ky) * kw + kx;
                                    r.y[yi] += f64::from(x[xi]) * f64::from(w[wi]);
                                    r.dx[xi] += gi * f64::from(w[wi]);
                                    r.dw[wi] += gi * f64::from(x[xi]);
                                }
                            }
                        }
                    }
                }
            }
        }
        r
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let error = (f64::from(g) - w).abs();
            assert!(error <= 1e-4 * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
        }
    }

    /// 3×3 same-size, stride 2 with diffusers' right/bottom padding, 1×1, asymmetric padding and
    /// stride, a batch larger than the weight-gradient chunk count, asymmetric padding at stride
    /// 1 (the transposed-convolution input gradient), and a 1×1 kernel padded wider than k − 1
    /// (col2im).
    fn shapes() -> Vec<ConvShape> {
        vec![
            ConvShape::new([3, 2, 5, 6], [4, 3, 3], [1, 1], [(1, 1), (1, 1)]).unwrap(),
            ConvShape::new([2, 3, 7, 6], [2, 3, 3], [2, 2], [(0, 1), (0, 1)]).unwrap(),
            ConvShape::new([5, 4, 3, 3], [3, 1, 1], [1, 1], [(0, 0), (0, 0)]).unwrap(),
            ConvShape::new([1, 2, 4, 5], [3, 2, 3], [1, 2], [(2, 0), (1, 2)]).unwrap(),
            ConvShape::new([19, 1, 4, 4], [2, 3, 3], [1, 1], [(1, 1), (1, 1)]).unwrap(),
            ConvShape::new([2, 3, 5, 4], [2, 3, 2], [1, 1], [(2, 0), (0, 1)]).unwrap(),
            ConvShape::new([1, 2, 3, 3], [2, 1, 1], [1, 1], [(1, 1), (1, 1)]).unwrap(),
        ]
    }

    #[test]
    fn forward_and_gradients_match_the_definition() {
        for shape in shapes() {
            let x = test_values(shape.batch * shape.input_len(), 1, 1.0);
            let w = test_values(shape.weight_len(), 2, 1.0);
            let b = test_values(shape.out_channels, 3, 1.0);
            let g = test_values(shape.batch * shape.output_len(), 4, 1.0);
            let want = reference(&shape, &x, &w, &b, &g);
            assert_close(&forward(&shape, &x, &w, Some(&b)), &want.y, "y");
            assert_close(&input_grad(&shape, &w, &g), &want.dx, "dx");
            let (dw, db) = weight_grad(&shape, &x, &g);
            assert_close(&dw, &want.dw, "dw");
            assert_close(&db, &want.db, "db");
            let zero = vec![0.0; shape.out_channels];
            let unbiased = reference(&shape, &x, &w, &zero, &g);
            assert_close(
                &forward(&shape, &x, &w, None),
                &unbiased.y,
                "y without bias",
            );
        }
    }

    #[test]
    fn a_kernel_larger_than_the_padded_input_has_no_shape() {
        assert!(ConvShape::new([1, 1, 2, 2], [1, 5, 5], [1, 1], [(1, 1), (1, 1)]).is_none());
    }
}
