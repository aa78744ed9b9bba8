use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;

use super::{
    Activation, BodyBlock, BodyBlockConfig, ConvNormAct, ConvNormActConfig, FeatureMap, LayerInfo,
    NormConfig, SqueezeExcitation, SqueezeExcitationConfig, SqueezeGate,
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
    /// Activation inside the squeeze-excitation (MobileNetV3's ReLU; EfficientNet's SiLU).
    #[config(default = "Activation::Relu")]
    pub squeeze_activation: Activation,
    /// Gate of the squeeze-excitation (MobileNetV3's hard-sigmoid; EfficientNet's sigmoid).
    #[config(default = "SqueezeGate::HardSigmoid")]
    pub squeeze_gate: SqueezeGate,
    /// Activation of the expansion and depthwise layers (the projection is linear).
    #[config(default = "Activation::Relu6")]
    pub activation: Activation,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
    /// Stochastic depth rate of the residual branch ([`super::drop_path`]).
    #[config(default = 0.0)]
    pub drop_path: f64,
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
    /// Stochastic depth rate of the branch (a constant).
    pub drop_path: f64,
}

impl InvertedResidualConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> InvertedResidual<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<InvertedResidual<B>> {
        super::residual::check_drop_path("InvertedResidual", self.drop_path)?;
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
            .map(|squeeze| {
                SqueezeExcitationConfig::new(expanded, squeeze)
                    .with_activation(self.squeeze_activation)
                    .with_gate(self.squeeze_gate)
                    .try_init(device)
            })
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
            drop_path: self.drop_path,
        })
    }
}

impl BodyBlockConfig for InvertedResidualConfig {
    fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = rate;
    }
}

impl<B: Backend> BodyBlock<B> for InvertedResidual<B> {
    /// Its layers in order: `expand` (if any), `depthwise`, `squeeze_excite` (if any),
    /// `project`.
    fn layers(&self) -> Vec<LayerInfo> {
        let mut layers = Vec::with_capacity(4);
        if let Some(expand) = &self.expand {
            layers.push(expand.describe("expand"));
        }
        layers.push(self.depthwise.describe("depthwise"));
        if let Some(se) = &self.squeeze_excite {
            layers.push(se.describe("squeeze_excite"));
        }
        layers.push(self.project.describe("project"));
        layers
    }

    /// The block with its BatchNorms folded into the convolutions (see
    /// [`ConvNormAct::fuse_for_inference`]).
    fn fuse_for_inference(mut self) -> Self {
        self.expand = self.expand.map(ConvNormAct::fuse_for_inference);
        self.depthwise = self.depthwise.fuse_for_inference();
        self.project = self.project.fuse_for_inference();
        self
    }

    fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
    where
        B: DepthwiseBackend,
    {
        self.forward(input)
    }
}

impl<B: DepthwiseBackend> InvertedResidual<B> {
    /// Expand, depthwise, squeeze-excite, project, plus the input when the shapes allow.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`, a map in either layout (or an NCHW tensor)
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`, same layout
    pub fn forward(&self, input: impl Into<FeatureMap<B>>) -> FeatureMap<B> {
        let input = input.into();
        let mut x = match &self.expand {
            Some(expand) => expand.forward_map(input.clone()),
            None => input.clone(),
        };
        x = self.depthwise.forward_map(x);
        if let Some(se) = &self.squeeze_excite {
            x = se.forward(x);
        }
        x = self.project.forward_map(x);
        match self.use_residual {
            true => super::residual::residual(x, input, self.drop_path),
            false => x,
        }
    }

    /// Checked [`Self::forward`]: a wrong channel count or an input smaller than the kernel
    /// is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: impl Into<FeatureMap<B>>) -> crate::Result<FeatureMap<B>> {
        let input = input.into();
        let dims = input.dims();
        let first = self.expand.as_ref().unwrap_or(&self.depthwise);
        crate::nn::check_channels("InvertedResidual", dims, first.conv.in_channels())?;
        // The depthwise conv sees the expanded channels at the input's size.
        let [n, _, h, w] = dims;
        let expanded = self.depthwise.conv.in_channels();
        self.depthwise
            .check_input("InvertedResidual", [n, expanded, h, w])?;
        Ok(self.forward(input))
    }
}
