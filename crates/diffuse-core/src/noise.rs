//! Seeded Gaussian noise that does not depend on batch size or device.
//!
//! Sample i of a run with seed s draws all of its noise (x_T first, then one draw per stochastic
//! step) from its own ChaCha8 stream (key = s, stream = i), on the host. Splitting a run into
//! batches, or moving it to a GPU, therefore leaves every sample's noise unchanged.

use std::ops::Range;

use burn::tensor::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::tensor_ops::from_host_f64;

/// Where a stochastic sampler takes its step noise from.
pub trait NoiseSource {
    /// The next standard normal tensor shaped like `like`.
    fn next_like<const D: usize>(&mut self, like: &Tensor<D>) -> Tensor<D>;
}

/// One independent normal stream per sample of a batch.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    streams: Vec<ChaCha8Rng>,
}

impl SeededNoise {
    /// Streams for the samples with global indices `samples` of the run seeded by `seed`.
    pub fn new(seed: u64, samples: Range<usize>) -> Self {
        let streams = samples
            .map(|index| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(index as u64);
                rng
            })
            .collect();
        Self { streams }
    }

    /// How many samples (batch rows) these streams feed.
    pub fn batch_size(&self) -> usize {
        self.streams.len()
    }

    /// The next `per_sample` standard normals of every stream, on the host, row-major [B, per_sample].
    pub fn next_host(&mut self, per_sample: usize) -> Vec<f64> {
        self.next_host_with(per_sample, |rng| rng.sample(StandardNormal))
    }

    /// The next `per_sample` draws of `draw` from every stream, row-major [B, per_sample]:
    /// other distributions from the same per-sample streams.
    pub fn next_host_with(
        &mut self,
        per_sample: usize,
        mut draw: impl FnMut(&mut ChaCha8Rng) -> f64,
    ) -> Vec<f64> {
        self.streams
            .iter_mut()
            .flat_map(|rng| (0..per_sample).map(|_| draw(rng)).collect::<Vec<_>>())
            .collect()
    }

    /// The next standard normal tensor of `shape` (shape[0] must equal the batch size).
    pub fn next<const D: usize>(
        &mut self,
        shape: [usize; D],
        device: &Device,
        dtype: DType,
    ) -> Tensor<D> {
        assert_eq!(
            shape[0],
            self.batch_size(),
            "noise shape's batch dimension must match the number of streams"
        );
        let per_sample = shape[1..].iter().product();
        from_host_f64(self.next_host(per_sample), shape, device, dtype)
    }
}

impl NoiseSource for SeededNoise {
    fn next_like<const D: usize>(&mut self, like: &Tensor<D>) -> Tensor<D> {
        self.next(like.dims(), &like.device(), like.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_does_not_depend_on_batching() {
        let mut whole = SeededNoise::new(7, 0..4);
        let all = [whole.next_host(3), whole.next_host(3)];
        let mut first = SeededNoise::new(7, 0..1);
        let mut rest = SeededNoise::new(7, 1..4);
        let parts = [
            [first.next_host(3), rest.next_host(3)].concat(),
            [first.next_host(3), rest.next_host(3)].concat(),
        ];
        assert_eq!(all, parts);
    }

    #[test]
    fn different_seeds_differ() {
        let a = SeededNoise::new(1, 0..1).next_host(4);
        let b = SeededNoise::new(2, 0..1).next_host(4);
        assert_ne!(a, b);
    }
}
