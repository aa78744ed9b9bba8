//! What a network's body asks of each block it is built from.

use burn::module::Module;
use burn::tensor::backend::Backend;

use super::{ConvNormAct, ConvNormActConfig, FeatureMap, LayerInfo};
use crate::kernels::DepthwiseBackend;

/// A block of a network's body: the one trait a block kind implements for the network
/// ([`crate::models::MobileNet`]) to run it, describe it and fold it. The network only
/// dispatches to it (see [`crate::models::spec::Block`]); the cost table, the weight key
/// schemes and the feature taps read [`BodyBlock::layers`].
pub trait BodyBlock<B: Backend>: Module<B> {
    /// Its layers in execution order, with module paths relative to the block.
    fn layers(&self) -> Vec<LayerInfo>;

    /// The block for inference, with every BatchNorm folded into the convolution before it
    /// (see [`ConvNormAct::fuse_for_inference`]).
    fn fuse_for_inference(self) -> Self;

    /// The block's forward pass on a map in either layout; the output keeps the layout.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
    fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
    where
        B: DepthwiseBackend;
}

/// What a network sets on a block's configuration besides its widths and norms: the
/// stochastic depth rate of its residual branch (timm's rule: rising linearly with the
/// block's index). Blocks without a residual connection have no such rate.
pub trait BodyBlockConfig {
    /// Sets the stochastic depth rate ([`super::drop_path`]) of the residual branch.
    fn set_drop_path(&mut self, rate: f64) {
        let _ = rate;
    }
}

impl BodyBlockConfig for ConvNormActConfig {}

/// A plain conv → BatchNorm → activation as a body block (MobileNetV4's `cn` rows).
impl<B: Backend> BodyBlock<B> for ConvNormAct<B> {
    fn layers(&self) -> Vec<LayerInfo> {
        vec![self.describe("")]
    }

    fn fuse_for_inference(self) -> Self {
        ConvNormAct::fuse_for_inference(self)
    }

    fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
    where
        B: DepthwiseBackend,
    {
        self.forward_map(input)
    }
}
