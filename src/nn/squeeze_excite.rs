use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::{hard_sigmoid, sigmoid};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::{Activation, FeatureMap, LayerInfo, LayerKind, PointwiseConv2d, PointwiseConv2dConfig};

/// The function that turns a squeeze-excitation's logits into channel gates in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SqueezeGate {
    /// `clamp(x / 6 + 0.5, 0, 1)` (MobileNetV3).
    #[default]
    HardSigmoid,
    /// `1 / (1 + e^-x)` (EfficientNet).
    Sigmoid,
}

impl SqueezeGate {
    /// Applies the gate element-wise.
    ///
    /// # Shapes
    /// - input: any shape
    /// - output: the input's shape
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            SqueezeGate::HardSigmoid => hard_sigmoid(x, 1.0 / 6.0, 0.5),
            SqueezeGate::Sigmoid => sigmoid(x),
        }
    }
}

/// Configuration of a [`SqueezeExcitation`].
#[derive(Config, Debug)]
pub struct SqueezeExcitationConfig {
    /// Channels of the feature map being re-weighted.
    pub channels: usize,
    /// Width of the bottleneck (torchvision's MobileNetV3: `make_divisible(channels / 4, 8)`;
    /// EfficientNet: a quarter of the block's input channels).
    pub squeeze_channels: usize,
    /// Activation between the two 1×1 convs (ReLU in MobileNetV3, SiLU in EfficientNet).
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Gate after the second 1×1 conv.
    #[config(default = "SqueezeGate::HardSigmoid")]
    pub gate: SqueezeGate,
}

/// Squeeze-and-excitation with PyTorch's semantics (torchvision's `SqueezeExcitation`):
/// global average pool → 1×1 conv → activation (ReLU) → 1×1 conv → gate (hard-sigmoid,
/// `x / 6 + 0.5` clamped to [0, 1]) → channel-wise scale of the input.
///
/// - input: `[N, C, H, W]`
/// - output: `[N, C, H, W]`
#[derive(Module, Debug)]
pub struct SqueezeExcitation<B: Backend> {
    /// `C → squeeze_channels`, with bias.
    pub fc1: PointwiseConv2d<B>,
    /// `squeeze_channels → C`, with bias.
    pub fc2: PointwiseConv2d<B>,
    /// Activation between the two convs (a constant).
    pub activation: Activation,
    /// Gate after the second conv (a constant).
    pub gate: SqueezeGate,
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
            activation: self.activation,
            gate: self.gate,
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
        let squeezed = self
            .activation
            .forward(self.fc1.forward_vectors(input.spatial_mean()));
        let scale = self.gate.forward(self.fc2.forward_vectors(squeezed));
        input.scale_channels(scale)
    }
}
