//! Items to tensors: normalisation, and the training-only augmentation.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;

use super::ImageItem;

/// Per-channel normalisation `(x - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Per-channel mean (RGB).
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet statistics, for photographs (and torchvision weights).
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Maps `[0, 1]` to about `[-1, 1]`, for the synthetic shapes (uniform random colours).
    pub const CENTERED: Normalization = Normalization {
        mean: [0.5, 0.5, 0.5],
        std: [0.5, 0.5, 0.5],
    };
}

/// A batch: images `[N, 3, H, W]` and class indices `[N]`.
#[derive(Clone, Debug)]
pub struct ImageBatch<B: Backend> {
    /// Normalised images `[N, 3, H, W]`.
    pub images: Tensor<B, 4>,
    /// Class indices `[N]`.
    pub targets: Tensor<B, 1, Int>,
}

/// Stacks [`ImageItem`]s into an [`ImageBatch`], normalising each channel.
#[derive(Clone, Debug)]
pub struct ImageBatcher {
    normalization: Normalization,
}

impl ImageBatcher {
    /// A batcher with the given normalisation.
    pub fn new(normalization: Normalization) -> Self {
        Self { normalization }
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    /// Items must all have the same size (the datasets guarantee it).
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        let n = items.len();
        let size = items.first().map_or(0, |item| item.size);
        let plane = size * size;
        let mut pixels = Vec::with_capacity(n * 3 * plane);
        let mut labels = Vec::with_capacity(n);
        for item in &items {
            assert_eq!(item.size, size, "all images in a batch must have one size");
            for c in 0..3 {
                let (mean, std) = (self.normalization.mean[c], self.normalization.std[c]);
                pixels.extend(
                    item.pixels[c * plane..][..plane]
                        .iter()
                        .map(|v| (v - mean) / std),
                );
            }
            labels.push(item.label as i64);
        }
        ImageBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

/// Training augmentation: a random `size × size` crop of the image zero-padded by
/// `padding` on every side, then a horizontal flip with probability 1/2. Deterministic in
/// the state of `rng`.
pub fn augment(item: &ImageItem, padding: usize, rng: &mut impl Rng) -> ImageItem {
    let size = item.size;
    let plane = size * size;
    let dy = rng.random_range(0..=2 * padding) as isize - padding as isize;
    let dx = rng.random_range(0..=2 * padding) as isize - padding as isize;
    let flip = rng.random_bool(0.5);
    let mut pixels = vec![0.0f32; item.pixels.len()];
    for c in 0..3 {
        for y in 0..size {
            let sy = y as isize + dy;
            if sy < 0 || sy >= size as isize {
                continue;
            }
            for x in 0..size {
                let xx = if flip { size - 1 - x } else { x };
                let sx = xx as isize + dx;
                if sx < 0 || sx >= size as isize {
                    continue;
                }
                pixels[c * plane + y * size + x] =
                    item.pixels[c * plane + sy as usize * size + sx as usize];
            }
        }
    }
    ImageItem {
        pixels,
        size,
        label: item.label,
    }
}
