use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{
    Activation, ConvNormAct, ConvNormActConfig, LayerInfo, NormConfig, SqueezeExcitation,
    SqueezeExcitationConfig, TorchKeys,
};
use crate::kernels::DepthwiseBackend;

/// Configuration of an [`InvertedResidual`] (MobileNetV2/V3 bottleneck).
#[derive(Config, Debug)]
pub struct InvertedResidualConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Channels after the 1×1 expansion; equal to `in_channels` means no expansion layer.
    pub expanded_channels: usize,
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
    /// Bottleneck width of a squeeze-excitation after the depthwise conv; `None` for none.
    #[config(default = "None")]
    pub squeeze_channels: Option<usize>,
    /// Activation of the expansion and depthwise layers (the projection is linear).
    #[config(default = "Activation::Relu6")]
    pub activation: Activation,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
}

/// Inverted residual: optional 1×1 expand → depthwise k×k → optional squeeze-excitation →
/// linear 1×1 project, plus the input when stride is 1 and the channel counts match.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
#[derive(Module, Debug)]
pub struct InvertedResidual<B: Backend> {
    /// 1×1 expansion (`in → expanded`), absent when `expanded == in`.
    pub expand: Option<ConvNormAct<B>>,
    /// Depthwise k×k conv (`expanded → expanded`).
    pub depthwise: ConvNormAct<B>,
    /// Squeeze-excitation on the expanded features.
    pub squeeze_excite: Option<SqueezeExcitation<B>>,
    /// Linear 1×1 projection (`expanded → out`), BN but no activation.
    pub project: ConvNormAct<B>,
    /// Whether the input is added to the output.
    pub use_residual: bool,
}

impl InvertedResidualConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> InvertedResidual<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<InvertedResidual<B>> {
        let expanded = self.expanded_channels;
        let expand = (expanded != self.in_channels)
            .then(|| {
                ConvNormActConfig::new(self.in_channels, expanded, 1)
                    .with_activation(self.activation)
                    .with_norm(self.norm)
                    .try_init(device)
            })
            .transpose()?;
        let depthwise = ConvNormActConfig::new(expanded, expanded, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(expanded)
            .with_activation(self.activation)
            .with_norm(self.norm)
            .try_init(device)?;
        let squeeze_excite = self
            .squeeze_channels
            .map(|squeeze| SqueezeExcitationConfig::new(expanded, squeeze).try_init(device))
            .transpose()?;
        let project = ConvNormActConfig::new(expanded, self.out_channels, 1)
            .with_activation(Activation::Identity)
            .with_norm(self.norm)
            .try_init(device)?;
        Ok(InvertedResidual {
            expand,
            depthwise,
            squeeze_excite,
            project,
            use_residual: self.stride == 1 && self.in_channels == self.out_channels,
        })
    }
}

/// torchvision's two numberings of an inverted residual's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvertedResidualKeys {
    /// `mobilenetv2.py`: `conv.{j}` for the expansion (if any) and depthwise (conv + BN pairs), then the
    /// projection's conv and BN as two entries `conv.{j}`, `conv.{j+1}`.
    MobileNetV2,
    /// `mobilenetv3.py`: `block.{j}`, one entry per part: expansion (if any), depthwise,
    /// squeeze-excitation (if any), projection.
    MobileNetV3,
}

impl<B: Backend> InvertedResidual<B> {
    /// Its layers in order, with torchvision keys numbered as `keys` says.
    pub fn layers(&self, keys: InvertedResidualKeys) -> Vec<LayerInfo> {
        let list = match keys {
            InvertedResidualKeys::MobileNetV2 => "conv",
            InvertedResidualKeys::MobileNetV3 => "block",
        };
        let mut index = 0;
        let mut next = || {
            index += 1;
            format!("{list}.{}", index - 1)
        };
        let mut layers = Vec::with_capacity(4);
        if let Some(expand) = &self.expand {
            layers.push(expand.describe("expand", TorchKeys::conv_norm(&next())));
        }
        layers.push(
            self.depthwise
                .describe("depthwise", TorchKeys::conv_norm(&next())),
        );
        if let Some(se) = &self.squeeze_excite {
            layers.push(se.describe("squeeze_excite", &next()));
        }
        let project = match keys {
            InvertedResidualKeys::MobileNetV2 => TorchKeys::ConvNorm {
                conv: next(),
                norm: next(),
            },
            InvertedResidualKeys::MobileNetV3 => TorchKeys::conv_norm(&next()),
        };
        layers.push(self.project.describe("project", project));
        layers
    }
}

impl<B: DepthwiseBackend> InvertedResidual<B> {
    /// Expand, depthwise, squeeze-excite, project, plus the input when the shapes allow.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = match &self.expand {
            Some(expand) => expand.forward(input.clone()),
            None => input.clone(),
        };
        x = self.depthwise.forward(x);
        if let Some(se) = &self.squeeze_excite {
            x = se.forward(x);
        }
        x = self.project.forward(x);
        if self.use_residual { x + input } else { x }
    }

    /// [`Self::forward`] on channels-last maps.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, ceil(H / stride), ceil(W / stride), out_channels]`
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = match &self.expand {
            Some(expand) => expand.forward_channels_last(input.clone()),
            None => input.clone(),
        };
        x = self.depthwise.forward_channels_last(x);
        if let Some(se) = &self.squeeze_excite {
            x = se.forward_channels_last(x);
        }
        x = self.project.forward_channels_last(x);
        if self.use_residual { x + input } else { x }
    }

    /// Checked [`Self::forward`]: a wrong channel count or an input smaller than the kernel
    /// is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: Tensor<B, 4>) -> crate::Result<Tensor<B, 4>> {
        let in_channels = match &self.expand {
            Some(expand) => expand.conv.in_channels(),
            None => self.depthwise.conv.in_channels(),
        };
        crate::nn::check_channels("InvertedResidual", input.dims(), in_channels)?;
        let [_, _, h, w] = input.dims();
        if let crate::nn::ConvLayer::Depthwise(dw) = &self.depthwise.conv {
            let k = dw.kernel_size();
            if dw.options().output_size([h, w], k).is_none() {
                return Err(crate::Error::Input(format!(
                    "InvertedResidual: input {:?} is smaller than its {}x{} depthwise kernel",
                    input.dims(),
                    k[0],
                    k[1]
                )));
            }
        }
        Ok(self.forward(input))
    }
}
