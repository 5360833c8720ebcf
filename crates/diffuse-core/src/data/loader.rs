//! Shuffled batches assembled on a background thread, in an order fixed by the seed alone.
//!
//! Epoch `e` visits the samples in a permutation drawn from ChaCha8 (seed, stream e), so the
//! position in the data stream ([`DataOrder`]) is all a checkpoint needs to continue it exactly.
//! Random horizontal flips are drawn per (epoch, position), independent of the batch size.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Dataset;

/// Where the next batch starts in the seeded stream of epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataOrder {
    pub seed: u64,
    pub epoch: u64,
    /// Samples of `epoch` already handed out.
    pub position: usize,
}

impl DataOrder {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            epoch: 0,
            position: 0,
        }
    }
}

/// One batch on the host, row-major [batch, sample_shape…].
#[derive(Debug, Clone)]
pub struct Batch {
    pub size: usize,
    pub values: Vec<f32>,
    pub labels: Option<Vec<usize>>,
    /// The stream position after this batch: saving it resumes right after the batch.
    pub order_after: DataOrder,
}

/// The sample indices of `epoch`, a seeded permutation.
fn epoch_permutation(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng);
    order
}

/// Whether the sample at (epoch, position) is mirrored, drawn from its own stream.
fn flipped(seed: u64, epoch: u64, position: usize) -> bool {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f11b);
    rng.set_stream(epoch);
    rng.set_word_pos(position as u128 * 16);
    rand::Rng::random::<bool>(&mut rng)
}

/// Mirrors one [C, H, W] sample left-right in place.
fn flip_horizontally(sample: &mut [f32], width: usize) {
    for row in sample.chunks_mut(width) {
        row.reverse();
    }
}

/// Builds the batches in stream order; the loader thread and tests share it.
struct BatchAssembler {
    dataset: Arc<Dataset>,
    batch_size: usize,
    horizontal_flip: bool,
    order: DataOrder,
    permutation: Vec<usize>,
}

impl BatchAssembler {
    fn new(
        dataset: Arc<Dataset>,
        batch_size: usize,
        horizontal_flip: bool,
        order: DataOrder,
    ) -> Self {
        let permutation = epoch_permutation(order.seed, order.epoch, dataset.len());
        Self {
            dataset,
            batch_size,
            horizontal_flip,
            order,
            permutation,
        }
    }

    fn next_batch(&mut self) -> Batch {
        let width = self.dataset.sample_shape[2];
        let mut values = Vec::with_capacity(self.batch_size * self.dataset.sample_numel());
        let mut labels = self
            .dataset
            .labels
            .as_ref()
            .map(|_| Vec::with_capacity(self.batch_size));
        for _ in 0..self.batch_size {
            if self.order.position == self.permutation.len() {
                self.order.epoch += 1;
                self.order.position = 0;
                self.permutation =
                    epoch_permutation(self.order.seed, self.order.epoch, self.dataset.len());
            }
            let index = self.permutation[self.order.position];
            let start = values.len();
            values.extend_from_slice(self.dataset.sample(index));
            if self.horizontal_flip
                && flipped(self.order.seed, self.order.epoch, self.order.position)
            {
                flip_horizontally(&mut values[start..], width);
            }
            if let (Some(out), Some(all)) = (labels.as_mut(), self.dataset.labels.as_ref()) {
                out.push(all[index]);
            }
            self.order.position += 1;
        }
        Batch {
            size: self.batch_size,
            values,
            labels,
            order_after: self.order,
        }
    }
}

/// Batches prepared ahead on a background thread, so a training step never waits for them.
pub struct BatchLoader {
    receiver: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl BatchLoader {
    /// Starts handing out batches of `batch_size` from `order` on; `prefetch` batches wait ready.
    pub fn new(
        dataset: Arc<Dataset>,
        batch_size: usize,
        horizontal_flip: bool,
        order: DataOrder,
        prefetch: usize,
    ) -> Self {
        let (sender, receiver) = sync_channel(prefetch.max(1));
        let mut assembler = BatchAssembler::new(dataset, batch_size, horizontal_flip, order);
        let worker = std::thread::spawn(move || feed(&mut assembler, &sender));
        Self {
            receiver: Some(receiver),
            worker: Some(worker),
        }
    }

    /// The next batch in stream order.
    pub fn next_batch(&mut self) -> Batch {
        self.receiver
            .as_ref()
            .and_then(|r| r.recv().ok())
            .expect("the loader thread only stops when the loader is dropped")
    }
}

fn feed(assembler: &mut BatchAssembler, sender: &SyncSender<Batch>) {
    while sender.send(assembler.next_batch()).is_ok() {}
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, which ends it.
        drop(self.receiver.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataKind;

    fn numbered(len: usize) -> Arc<Dataset> {
        let values = (0..len).flat_map(|i| [i as f32, -(i as f32)]).collect();
        let labels = Some((0..len).map(|i| i % 3).collect());
        let names = vec!["a".into(), "b".into(), "c".into()];
        Arc::new(Dataset::new([1, 1, 2], values, labels, names, DataKind::Images).unwrap())
    }

    fn first_values(batch: &Batch) -> Vec<f32> {
        batch.values.chunks(2).map(|s| s[0]).collect()
    }

    #[test]
    fn every_epoch_visits_each_sample_once_in_a_new_order() {
        let data = numbered(10);
        let mut loader = BatchLoader::new(data, 5, false, DataOrder::new(7), 2);
        let epoch0: Vec<f32> = (0..2)
            .flat_map(|_| first_values(&loader.next_batch()))
            .collect();
        let epoch1: Vec<f32> = (0..2)
            .flat_map(|_| first_values(&loader.next_batch()))
            .collect();
        for epoch in [&epoch0, &epoch1] {
            let mut sorted = epoch.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, (0..10).map(|i| i as f32).collect::<Vec<_>>());
        }
        assert_ne!(epoch0, epoch1);
    }

    #[test]
    fn resuming_from_a_saved_order_continues_the_same_stream() {
        let data = numbered(7);
        let mut straight = BatchLoader::new(data.clone(), 3, true, DataOrder::new(1), 1);
        let all: Vec<Batch> = (0..6).map(|_| straight.next_batch()).collect();
        let mut resumed = BatchLoader::new(data, 3, true, all[2].order_after, 3);
        for expected in &all[3..] {
            let batch = resumed.next_batch();
            assert_eq!(batch.values, expected.values);
            assert_eq!(batch.labels, expected.labels);
        }
    }

    #[test]
    fn flips_mirror_rows_and_keep_labels() {
        let data = numbered(50);
        let mut loader = BatchLoader::new(data.clone(), 50, true, DataOrder::new(3), 1);
        let batch = loader.next_batch();
        let mut flips = 0;
        for (sample, label) in batch.values.chunks(2).zip(batch.labels.unwrap()) {
            let index = sample[0].abs();
            let original = data.sample(index as usize);
            assert_eq!(label, index as usize % 3);
            if sample != original {
                assert_eq!(sample, [original[1], original[0]]);
                flips += 1;
            }
        }
        assert!((10..40).contains(&flips), "{flips} of 50 flipped");
    }
}
