use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Activation, ConvNormAct, ConvNormActConfig, LayerInfo, NormConfig, TorchKeys};
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

impl<B: Backend> DepthwiseSeparableConv<B> {
    /// Its layers in order. torchvision has no MobileNetV1; the keys follow its V2 style:
    /// `conv.0` (depthwise conv + BN), `conv.1` (pointwise conv + BN).
    pub fn layers(&self) -> Vec<LayerInfo> {
        vec![
            self.depthwise
                .describe("depthwise", TorchKeys::conv_norm("conv.0")),
            self.pointwise
                .describe("pointwise", TorchKeys::conv_norm("conv.1")),
        ]
    }
}

impl<B: DepthwiseBackend> DepthwiseSeparableConv<B> {
    /// Depthwise, then pointwise.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        self.pointwise.forward(self.depthwise.forward(input))
    }

    /// [`Self::forward`] on channels-last maps.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, ceil(H / stride), ceil(W / stride), out_channels]`
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        self.pointwise
            .forward_channels_last(self.depthwise.forward_channels_last(input))
    }

    /// Checked [`Self::forward`]: a wrong channel count or an input smaller than the kernel
    /// is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: Tensor<B, 4>) -> crate::Result<Tensor<B, 4>> {
        Ok(self.pointwise.forward(self.depthwise.try_forward(input)?))
    }
}
