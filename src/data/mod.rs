//! Image datasets and batching: a procedural synthetic dataset that needs no files, image
//! folders, and the batcher that turns items into normalised tensors.

mod batcher;
mod folder;
mod synthetic;

pub use batcher::{ImageBatch, ImageBatcher, Normalization, augment};
pub use folder::{FolderDataset, FolderOptions, FolderSplit};
pub use synthetic::{SHAPE_NAMES, SyntheticConfig, SyntheticDataset};

/// One RGB image with its class.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageItem {
    /// Pixels in `[0, 1]`, channel-major: `[3, size, size]` flattened.
    pub pixels: Vec<f32>,
    /// Side length in pixels (images are square).
    pub size: usize,
    /// Class index.
    pub label: usize,
}
