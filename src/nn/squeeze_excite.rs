use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::{hard_sigmoid, relu};
use burn::tensor::backend::Backend;

use super::{FeatureMap, LayerInfo, LayerKind, PointwiseConv2d, PointwiseConv2dConfig};

/// Configuration of a [`SqueezeExcitation`].
#[derive(Config, Debug)]
pub struct SqueezeExcitationConfig {
    /// Channels of the feature map being re-weighted.
    pub channels: usize,
    /// Width of the bottleneck (torchvision's MobileNetV3: `make_divisible(channels / 4, 8)`).
    pub squeeze_channels: usize,
}

/// Squeeze-and-excitation with PyTorch's semantics (as in torchvision's MobileNetV3):
/// global average pool → 1×1 conv → ReLU → 1×1 conv → hard-sigmoid (`x / 6 + 0.5`,
/// clamped to [0, 1]) → channel-wise scale of the input.
///
/// - input: `[N, C, H, W]`
/// - output: `[N, C, H, W]`
#[derive(Module, Debug)]
pub struct SqueezeExcitation<B: Backend> {
    /// `C → squeeze_channels`, with bias.
    pub fc1: PointwiseConv2d<B>,
    /// `squeeze_channels → C`, with bias.
    pub fc2: PointwiseConv2d<B>,
}

impl SqueezeExcitationConfig {
    /// Builds the block. Panics on zero channels (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SqueezeExcitation<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid channel count.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<SqueezeExcitation<B>> {
        Ok(SqueezeExcitation {
            fc1: PointwiseConv2dConfig::new(self.channels, self.squeeze_channels)
                .try_init(device)?,
            fc2: PointwiseConv2dConfig::new(self.squeeze_channels, self.channels)
                .try_init(device)?,
        })
    }
}

impl<B: Backend> SqueezeExcitation<B> {
    /// This layer as its block lists it, at module path `path`.
    pub fn describe(&self, path: &str) -> LayerInfo {
        LayerInfo {
            path: path.to_string(),
            kind: LayerKind::SqueezeExcitation {
                channels: self.fc1.in_channels(),
                squeeze_channels: self.fc1.out_channels(),
            },
        }
    }

    /// Re-weights each channel of `input` by its gate.
    ///
    /// # Shapes
    /// - input: `[N, channels, H, W]`, a map in either layout (or an NCHW tensor)
    /// - output: `[N, channels, H, W]`, same layout
    pub fn forward(&self, input: impl Into<FeatureMap<B>>) -> FeatureMap<B> {
        let input = input.into();
        let squeezed = relu(self.fc1.forward_vectors(input.spatial_mean()));
        let scale = hard_sigmoid(self.fc2.forward_vectors(squeezed), 1.0 / 6.0, 0.5);
        input.scale_channels(scale)
    }
}
