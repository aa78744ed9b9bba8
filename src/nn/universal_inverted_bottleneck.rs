use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;

use super::residual::{check_drop_path, residual};
use super::{
    Activation, BodyBlock, BodyBlockConfig, ConvNormAct, ConvNormActConfig, FeatureMap, LayerInfo,
    LayerScale, LayerScaleConfig, NormConfig,
};
use crate::kernels::DepthwiseBackend;

/// Configuration of a [`UniversalInvertedBottleneck`].
///
/// The two optional depthwise convs give MobileNetV4's four forms (Qin et al. 2024,
/// figure 4): ExtraDW (both), IB (middle only: an inverted residual), ConvNeXt-like (start
/// only), FFN (neither).
#[derive(Config, Debug)]
pub struct UniversalInvertedBottleneckConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Channels after the 1×1 expansion.
    pub expanded_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel of the depthwise conv before the expansion (BatchNorm, no activation);
    /// `None` for none.
    #[config(default = "None")]
    pub start_kernel_size: Option<usize>,
    /// Kernel of the depthwise conv after the expansion; `None` for none.
    #[config(default = "None")]
    pub middle_kernel_size: Option<usize>,
    /// Stride: the middle depthwise conv's, else the start one's.
    #[config(default = 1)]
    pub stride: usize,
    /// Activation of the expansion and the middle depthwise conv.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
    /// Initial [`LayerScale`] factor on the branch; `None` for no layer scale.
    #[config(default = "None")]
    pub layer_scale: Option<f64>,
    /// Stochastic depth rate of the residual branch ([`super::drop_path`]).
    #[config(default = 0.0)]
    pub drop_path: f64,
}

/// Universal Inverted Bottleneck (MobileNetV4): optional start depthwise k×k → 1×1
/// expansion → optional middle depthwise k×k → linear 1×1 projection → optional layer
/// scale, plus the input when stride is 1 and the channel counts match.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
#[derive(Module, Debug)]
pub struct UniversalInvertedBottleneck<B: Backend> {
    /// Depthwise conv → BN on the input (`in → in`), no activation.
    pub start_depthwise: Option<ConvNormAct<B>>,
    /// 1×1 expansion (`in → expanded`).
    pub expand: ConvNormAct<B>,
    /// Depthwise conv → BN → activation (`expanded → expanded`).
    pub middle_depthwise: Option<ConvNormAct<B>>,
    /// Linear 1×1 projection (`expanded → out`), BN but no activation.
    pub project: ConvNormAct<B>,
    /// Per-channel factor on the branch.
    pub layer_scale: Option<LayerScale<B>>,
    /// Whether the input is added to the output.
    pub use_residual: bool,
    /// Stochastic depth rate of the branch (a constant).
    pub drop_path: f64,
}

impl UniversalInvertedBottleneckConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> UniversalInvertedBottleneck<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> crate::Result<UniversalInvertedBottleneck<B>> {
        check_drop_path("UniversalInvertedBottleneck", self.drop_path)?;
        if self.stride > 1 && self.start_kernel_size.is_none() && self.middle_kernel_size.is_none()
        {
            return Err(crate::Error::Config(format!(
                "UniversalInvertedBottleneck with stride {} needs a start or middle depthwise conv",
                self.stride
            )));
        }
        let (cin, mid) = (self.in_channels, self.expanded_channels);
        let depthwise = |channels: usize, kernel: usize, stride: usize, activation| {
            ConvNormActConfig::new(channels, channels, kernel)
                .with_stride(stride)
                .with_groups(channels)
                .with_activation(activation)
                .with_norm(self.norm)
                .try_init(device)
        };
        let start_stride = match self.middle_kernel_size {
            Some(_) => 1,
            None => self.stride,
        };
        Ok(UniversalInvertedBottleneck {
            start_depthwise: self
                .start_kernel_size
                .map(|k| depthwise(cin, k, start_stride, Activation::Identity))
                .transpose()?,
            expand: ConvNormActConfig::new(cin, mid, 1)
                .with_activation(self.activation)
                .with_norm(self.norm)
                .try_init(device)?,
            middle_depthwise: self
                .middle_kernel_size
                .map(|k| depthwise(mid, k, self.stride, self.activation))
                .transpose()?,
            project: ConvNormActConfig::new(mid, self.out_channels, 1)
                .with_activation(Activation::Identity)
                .with_norm(self.norm)
                .try_init(device)?,
            layer_scale: self.layer_scale.map(|init| {
                LayerScaleConfig::new(self.out_channels)
                    .with_init_value(init)
                    .init(device)
            }),
            use_residual: self.stride == 1 && cin == self.out_channels,
            drop_path: self.drop_path,
        })
    }
}

impl BodyBlockConfig for UniversalInvertedBottleneckConfig {
    fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = rate;
    }
}

impl<B: Backend> BodyBlock<B> for UniversalInvertedBottleneck<B> {
    /// Its layers in order: `start_depthwise` (if any), `expand`, `middle_depthwise` (if
    /// any), `project`, `layer_scale` (if any).
    fn layers(&self) -> Vec<LayerInfo> {
        let mut layers = Vec::with_capacity(5);
        if let Some(start) = &self.start_depthwise {
            layers.push(start.describe("start_depthwise"));
        }
        layers.push(self.expand.describe("expand"));
        if let Some(middle) = &self.middle_depthwise {
            layers.push(middle.describe("middle_depthwise"));
        }
        layers.push(self.project.describe("project"));
        if let Some(scale) = &self.layer_scale {
            layers.push(scale.describe("layer_scale"));
        }
        layers
    }

    fn fuse_for_inference(mut self) -> Self {
        self.start_depthwise = self.start_depthwise.map(ConvNormAct::fuse_for_inference);
        self.expand = self.expand.fuse_for_inference();
        self.middle_depthwise = self.middle_depthwise.map(ConvNormAct::fuse_for_inference);
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

impl<B: DepthwiseBackend> UniversalInvertedBottleneck<B> {
    /// Start depthwise, expand, middle depthwise, project, layer scale, plus the input
    /// when the shapes allow.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`, a map in either layout (or an NCHW tensor)
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`, same layout
    pub fn forward(&self, input: impl Into<FeatureMap<B>>) -> FeatureMap<B> {
        let input = input.into();
        let mut x = match &self.start_depthwise {
            Some(start) => start.forward_map(input.clone()),
            None => input.clone(),
        };
        x = self.expand.forward_map(x);
        if let Some(middle) = &self.middle_depthwise {
            x = middle.forward_map(x);
        }
        x = self.project.forward_map(x);
        if let Some(scale) = &self.layer_scale {
            x = scale.forward(x);
        }
        match self.use_residual {
            true => residual(x, input, self.drop_path),
            false => x,
        }
    }
}
