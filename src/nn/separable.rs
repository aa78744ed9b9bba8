use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;

use super::{
    Activation, BodyBlock, BodyBlockConfig, ConvNormAct, ConvNormActConfig, FeatureMap, LayerInfo,
    NormConfig,
};
use crate::kernels::DepthwiseBackend;

/// Configuration of a [`DepthwiseSeparableConv`].
#[derive(Config, Debug)]
pub struct DepthwiseSeparableConvConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square depthwise kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride of the depthwise conv.
    #[config(default = 1)]
    pub stride: usize,
    /// Dilation of the depthwise conv.
    #[config(default = 1)]
    pub dilation: usize,
    /// Activation after each of the two norms.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
}

/// Depthwise-separable convolution (MobileNetV1's block): depthwise k×k → BN → act →
/// pointwise 1×1 → BN → act. Costs about `1/N + 1/k²` of a standard k×k conv with `N`
/// output channels.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
#[derive(Module, Debug)]
pub struct DepthwiseSeparableConv<B: Backend> {
    /// Depthwise k×k conv → BN → act (`in → in` channels).
    pub depthwise: ConvNormAct<B>,
    /// Pointwise 1×1 conv → BN → act (`in → out` channels).
    pub pointwise: ConvNormAct<B>,
}

impl DepthwiseSeparableConvConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> DepthwiseSeparableConv<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> crate::Result<DepthwiseSeparableConv<B>> {
        if self.in_channels == 0 {
            return Err(crate::Error::Config(
                "DepthwiseSeparableConv in_channels must be at least 1, got 0".into(),
            ));
        }
        let depthwise =
            ConvNormActConfig::new(self.in_channels, self.in_channels, self.kernel_size)
                .with_stride(self.stride)
                .with_dilation(self.dilation)
                .with_groups(self.in_channels)
                .with_activation(self.activation)
                .with_norm(self.norm);
        let depthwise = depthwise.try_init(device)?;
        let pointwise = ConvNormActConfig::new(self.in_channels, self.out_channels, 1)
            .with_activation(self.activation)
            .with_norm(self.norm)
            .try_init(device)?;
        Ok(DepthwiseSeparableConv {
            depthwise,
            pointwise,
        })
    }
}

/// No residual connection, so no stochastic depth.
impl BodyBlockConfig for DepthwiseSeparableConvConfig {}

impl<B: Backend> BodyBlock<B> for DepthwiseSeparableConv<B> {
    /// Its layers in order: `depthwise`, `pointwise`.
    fn layers(&self) -> Vec<LayerInfo> {
        vec![
            self.depthwise.describe("depthwise"),
            self.pointwise.describe("pointwise"),
        ]
    }

    /// The block with its BatchNorms folded into the convolutions (see
    /// [`ConvNormAct::fuse_for_inference`]).
    fn fuse_for_inference(self) -> Self {
        Self {
            depthwise: self.depthwise.fuse_for_inference(),
            pointwise: self.pointwise.fuse_for_inference(),
        }
    }

    fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
    where
        B: DepthwiseBackend,
    {
        self.forward(input)
    }
}

impl<B: DepthwiseBackend> DepthwiseSeparableConv<B> {
    /// Depthwise, then pointwise.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`, a map in either layout (or an NCHW tensor)
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`, same layout
    pub fn forward(&self, input: impl Into<FeatureMap<B>>) -> FeatureMap<B> {
        self.pointwise
            .forward_map(self.depthwise.forward_map(input.into()))
    }

    /// Checked [`Self::forward`]: a wrong channel count or an input smaller than the kernel
    /// is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: impl Into<FeatureMap<B>>) -> crate::Result<FeatureMap<B>> {
        let input = input.into();
        self.depthwise
            .check_input("DepthwiseSeparableConv", input.dims())?;
        Ok(self.forward(input))
    }
}
