use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;

use super::residual::{check_drop_path, residual};
use super::{
    Activation, BodyBlock, BodyBlockConfig, ConvNormAct, ConvNormActConfig, FeatureMap, LayerInfo,
    NormConfig,
};
use crate::kernels::DepthwiseBackend;

/// Configuration of a [`FusedInvertedBottleneck`].
#[derive(Config, Debug)]
pub struct FusedInvertedBottleneckConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Channels of the k×k expansion (equal to `out_channels` without a projection).
    pub expanded_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel of the expansion conv.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride of the expansion conv.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether a linear 1×1 projection follows the k×k conv; without one the k×k conv
    /// maps `in → out` with its activation (torchvision's FusedMBConv at expansion 1).
    #[config(default = true)]
    pub projection: bool,
    /// Activation after the expansion.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
    /// Stochastic depth rate of the residual branch ([`super::drop_path`]).
    #[config(default = 0.0)]
    pub drop_path: f64,
}

/// Fused inverted bottleneck (FusedIB; timm's `EdgeResidual`, EfficientNet-V2's
/// FusedMBConv): the expansion and the depthwise conv of an inverted residual fused into one
/// full k×k conv → linear 1×1 projection (optional), plus the input when stride is 1 and
/// the channel counts match. Cheaper than a depthwise pair on large early maps with few channels.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
#[derive(Module, Debug)]
pub struct FusedInvertedBottleneck<B: Backend> {
    /// Full k×k conv → BN → activation (`in → expanded`).
    pub expand: ConvNormAct<B>,
    /// Linear 1×1 projection (`expanded → out`), BN but no activation.
    pub project: Option<ConvNormAct<B>>,
    /// Whether the input is added to the output.
    pub use_residual: bool,
    /// Stochastic depth rate of the branch (a constant).
    pub drop_path: f64,
}

impl FusedInvertedBottleneckConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> FusedInvertedBottleneck<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> crate::Result<FusedInvertedBottleneck<B>> {
        check_drop_path("FusedInvertedBottleneck", self.drop_path)?;
        if !self.projection && self.expanded_channels != self.out_channels {
            return Err(crate::Error::Config(format!(
                "FusedInvertedBottleneck without a projection maps its input straight to \
                 out_channels ({}), got expanded_channels {}",
                self.out_channels, self.expanded_channels
            )));
        }
        Ok(FusedInvertedBottleneck {
            expand: ConvNormActConfig::new(
                self.in_channels,
                self.expanded_channels,
                self.kernel_size,
            )
            .with_stride(self.stride)
            .with_activation(self.activation)
            .with_norm(self.norm)
            .try_init(device)?,
            project: self
                .projection
                .then(|| {
                    ConvNormActConfig::new(self.expanded_channels, self.out_channels, 1)
                        .with_activation(Activation::Identity)
                        .with_norm(self.norm)
                        .try_init(device)
                })
                .transpose()?,
            use_residual: self.stride == 1 && self.in_channels == self.out_channels,
            drop_path: self.drop_path,
        })
    }
}

impl BodyBlockConfig for FusedInvertedBottleneckConfig {
    fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = rate;
    }
}

impl<B: Backend> BodyBlock<B> for FusedInvertedBottleneck<B> {
    /// Its layers in order: `expand`, `project` (if any).
    fn layers(&self) -> Vec<LayerInfo> {
        let mut layers = vec![self.expand.describe("expand")];
        if let Some(project) = &self.project {
            layers.push(project.describe("project"));
        }
        layers
    }

    fn fuse_for_inference(mut self) -> Self {
        self.expand = self.expand.fuse_for_inference();
        self.project = self.project.map(ConvNormAct::fuse_for_inference);
        self
    }

    fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
    where
        B: DepthwiseBackend,
    {
        self.forward(input)
    }
}

impl<B: DepthwiseBackend> FusedInvertedBottleneck<B> {
    /// Expand, project (if any), plus the input when the shapes allow.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`, a map in either layout (or an NCHW tensor)
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`, same layout
    pub fn forward(&self, input: impl Into<FeatureMap<B>>) -> FeatureMap<B> {
        let input = input.into();
        let mut x = self.expand.forward_map(input.clone());
        if let Some(project) = &self.project {
            x = project.forward_map(x);
        }
        match self.use_residual {
            true => residual(x, input, self.drop_path),
            false => x,
        }
    }
}
