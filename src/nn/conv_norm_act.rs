use burn::config::Config;
use burn::module::Module;
use burn::module::RunningState;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{
    Activation, ConvShape, DepthwiseConv2d, DepthwiseConv2dConfig, FeatureMap, LayerInfo,
    LayerKind, PointwiseConv2d, PointwiseConv2dConfig, WeightLayout,
};
use crate::kernels::{
    DepthwiseBackend, DepthwiseOptions, Layout, TO_NCHW, TO_NHWC, conv2d_nhwc, reshape_dense,
};

/// BatchNorm settings (torchvision's names and meaning).
#[derive(Config, Debug, Copy, PartialEq)]
pub struct NormConfig {
    /// Added to the variance for numerical stability.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the current batch in the running statistics.
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl NormConfig {
    pub(crate) fn init<B: Backend>(&self, channels: usize, device: &B::Device) -> BatchNorm<B> {
        BatchNormConfig::new(channels)
            .with_epsilon(self.epsilon)
            .with_momentum(self.momentum)
            .init(device)
    }
}

/// Configuration of a [`ConvNormAct`]: conv (no bias) → BatchNorm → activation, with
/// "same" padding `dilation * (kernel - 1) / 2`, as torchvision's `Conv2dNormActivation`.
#[derive(Config, Debug)]
pub struct ConvNormActConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size.
    pub kernel_size: usize,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Dilation.
    #[config(default = 1)]
    pub dilation: usize,
    /// Groups; `groups == in_channels` makes a depthwise conv.
    #[config(default = 1)]
    pub groups: usize,
    /// Activation after the norm.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
}

/// The convolution inside a [`ConvNormAct`], chosen by shape so that each runs on its
/// fastest path: depthwise through the crate's kernels, 1×1 as a matrix product, the rest
/// (e.g. the 3-channel stem) through Burn's `conv2d`.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ConvLayer<B: Backend> {
    /// A general (possibly grouped) convolution.
    Standard(Conv2d<B>),
    /// `groups == in_channels`.
    Depthwise(DepthwiseConv2d<B>),
    /// 1×1, stride 1, one group.
    Pointwise(PointwiseConv2d<B>),
}

impl<B: Backend> ConvLayer<B> {
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match self {
            ConvLayer::Standard(conv) => conv.weight.dims()[1] * conv.groups,
            ConvLayer::Depthwise(conv) => conv.in_channels(),
            ConvLayer::Pointwise(conv) => conv.in_channels(),
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        match self {
            ConvLayer::Standard(conv) => conv.weight.dims()[0],
            ConvLayer::Depthwise(conv) => conv.out_channels(),
            ConvLayer::Pointwise(conv) => conv.out_channels(),
        }
    }
}

impl<B: Backend> ConvLayer<B> {
    /// The convolution's geometry.
    pub fn shape(&self) -> ConvShape {
        match self {
            ConvLayer::Standard(conv) => {
                let [out_channels, in_per_group, kh, kw] = conv.weight.dims();
                let padding = match conv.padding {
                    PaddingConfig2d::Explicit(top, left, _, _) => [top, left],
                    _ => [0, 0],
                };
                ConvShape {
                    in_channels: in_per_group * conv.groups,
                    out_channels,
                    kernel: [kh, kw],
                    stride: conv.stride,
                    padding,
                    dilation: conv.dilation,
                    groups: conv.groups,
                    bias: conv.bias.is_some(),
                    layout: WeightLayout::Kernel,
                }
            }
            ConvLayer::Depthwise(conv) => {
                let options = conv.options();
                ConvShape {
                    in_channels: conv.in_channels(),
                    out_channels: conv.out_channels(),
                    kernel: conv.kernel_size(),
                    stride: options.stride,
                    padding: options.padding,
                    dilation: options.dilation,
                    groups: conv.in_channels(),
                    bias: conv.bias.is_some(),
                    layout: WeightLayout::Kernel,
                }
            }
            ConvLayer::Pointwise(conv) => ConvShape {
                in_channels: conv.in_channels(),
                out_channels: conv.out_channels(),
                kernel: [1, 1],
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
                groups: 1,
                bias: conv.bias.is_some(),
                layout: WeightLayout::Matrix,
            },
        }
    }
}

impl<B: DepthwiseBackend> ConvLayer<B> {
    /// The convolution.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, H', W']` (`H' = (H + 2 * padding - dilation * (k - 1) - 1) / stride + 1`)
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            ConvLayer::Standard(conv) => conv.forward(input),
            ConvLayer::Depthwise(conv) => conv.forward(input),
            ConvLayer::Pointwise(conv) => conv.forward(input),
        }
    }

    /// The convolution on channels-last maps. A dense convolution runs on
    /// [`conv2d_nhwc`] (the crate's kernels and backward on the CPU backends); a grouped or
    /// asymmetrically padded one through Burn's `conv2d` between permutes.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, H', W', out_channels]`
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            ConvLayer::Standard(conv) => {
                let padding = match conv.padding {
                    PaddingConfig2d::Valid => Some([0, 0]),
                    PaddingConfig2d::Explicit(top, left, bottom, right)
                        if top == bottom && left == right =>
                    {
                        Some([top, left])
                    }
                    _ => None,
                };
                match padding {
                    Some(padding) if conv.groups == 1 => conv2d_nhwc(
                        input,
                        conv.weight.val(),
                        conv.bias.as_ref().map(|b| b.val()),
                        DepthwiseOptions::new(conv.stride, padding, conv.dilation),
                    ),
                    _ => conv.forward(input.permute(TO_NCHW)).permute(TO_NHWC),
                }
            }
            ConvLayer::Depthwise(conv) => conv.forward_channels_last(input),
            ConvLayer::Pointwise(conv) => conv.forward_channels_last(input),
        }
    }

    /// Checked [`Self::forward`]: a wrong channel count, or an input smaller than the
    /// (padded, dilated) kernel, is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: Tensor<B, 4>) -> crate::Result<Tensor<B, 4>> {
        match self {
            ConvLayer::Depthwise(conv) => conv.try_forward(input),
            ConvLayer::Pointwise(conv) => conv.try_forward(input),
            ConvLayer::Standard(conv) => {
                let dims = input.dims();
                crate::nn::check_channels("Conv2d", dims, self.in_channels())?;
                let [_, _, kh, kw] = conv.weight.dims();
                let (top, left, bottom, right) = match conv.padding {
                    PaddingConfig2d::Explicit(top, left, bottom, right) => {
                        (top, left, bottom, right)
                    }
                    PaddingConfig2d::Valid => (0, 0, 0, 0),
                    // "Same" pads as much as the kernel needs.
                    _ => (kh, kw, kh, kw),
                };
                let span_h = conv.dilation[0] * (kh - 1) + 1;
                let span_w = conv.dilation[1] * (kw - 1) + 1;
                if dims[2] + top + bottom < span_h || dims[3] + left + right < span_w {
                    return Err(crate::Error::Input(format!(
                        "Conv2d: input {dims:?} is smaller than its {kh}x{kw} kernel"
                    )));
                }
                Ok(conv.forward(input))
            }
        }
    }
}

/// Convolution → BatchNorm → activation.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]` (odd kernels)
#[derive(Module, Debug)]
pub struct ConvNormAct<B: Backend> {
    /// The convolution (bias-free: the norm's shift replaces it).
    pub conv: ConvLayer<B>,
    /// Batch normalisation over the conv's output channels.
    pub norm: BatchNorm<B>,
    /// Activation applied last.
    pub activation: Activation,
    /// Whether the norm is folded into the convolution ([`Self::fuse_for_inference`]):
    /// then the conv weights carry the norm's scale, `norm.beta` its shift, and `norm`
    /// is otherwise the identity.
    pub folded: bool,
}

impl ConvNormActConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvNormAct<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<ConvNormAct<B>> {
        let (cin, cout, k, groups) = (
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.groups,
        );
        if cin == 0 || cout == 0 || k == 0 || self.stride == 0 || self.dilation == 0 || groups == 0
        {
            return Err(crate::Error::Config(format!(
                "ConvNormAct needs non-zero channels, kernel, stride, dilation and groups, got {self:?}"
            )));
        }
        if cin % groups != 0 || cout % groups != 0 {
            return Err(crate::Error::Config(format!(
                "ConvNormAct groups {groups} must divide in_channels {cin} and out_channels {cout}"
            )));
        }
        let padding = self.dilation * (k - 1) / 2;
        let conv = if k == 1 && self.stride == 1 && groups == 1 {
            ConvLayer::Pointwise(
                PointwiseConv2dConfig::new(cin, cout)
                    .with_bias(false)
                    .try_init(device)?,
            )
        } else if groups == cin {
            ConvLayer::Depthwise(
                DepthwiseConv2dConfig::new(cin, [k, k])
                    .with_stride([self.stride; 2])
                    .with_padding([padding; 2])
                    .with_dilation([self.dilation; 2])
                    .with_depth_multiplier(cout / cin)
                    .with_bias(false)
                    .try_init(device)?,
            )
        } else {
            ConvLayer::Standard(
                Conv2dConfig::new([cin, cout], [k, k])
                    .with_stride([self.stride; 2])
                    .with_dilation([self.dilation; 2])
                    .with_groups(groups)
                    .with_padding(PaddingConfig2d::Explicit(
                        padding, padding, padding, padding,
                    ))
                    .with_bias(false)
                    .with_initializer(super::kaiming_fan_out())
                    .init(device),
            )
        };
        Ok(ConvNormAct {
            conv,
            norm: self.norm.init(cout, device),
            activation: self.activation,
            folded: false,
        })
    }
}

impl<B: Backend> ConvNormAct<B> {
    /// This layer for inference with its BatchNorm folded into the convolution: each
    /// output channel's weights times `gamma / sqrt(running_var + eps)`, the shift
    /// `beta - running_mean * scale` as a bias. The forward is then conv → bias +
    /// activation (in the depthwise kernel itself on the channels-last CPU path), whether
    /// or not autodiff is on: a folded layer has no batch statistics to train with.
    pub fn fuse_for_inference(mut self) -> Self {
        if self.folded {
            return self;
        }
        let device = self.norm.gamma.device();
        let (scale, shift) = self.inference_scale_shift();
        let out = scale.dims()[0];
        self.conv = match self.conv {
            ConvLayer::Standard(mut conv) => {
                conv.weight = conv
                    .weight
                    .map(|w| w * scale.clone().reshape([out, 1, 1, 1]));
                ConvLayer::Standard(conv)
            }
            ConvLayer::Depthwise(mut conv) => {
                conv.weight = conv
                    .weight
                    .map(|w| w * scale.clone().reshape([out, 1, 1, 1]));
                ConvLayer::Depthwise(conv)
            }
            ConvLayer::Pointwise(mut conv) => {
                conv.weight = conv.weight.map(|w| w * scale.clone().reshape([out, 1]));
                ConvLayer::Pointwise(conv)
            }
        };
        self.norm.gamma = self.norm.gamma.map(|g| g.ones_like());
        self.norm.beta = self.norm.beta.map(|_| shift);
        self.norm.running_mean = RunningState::new(Tensor::zeros([out], &device));
        self.norm.running_var = RunningState::new(Tensor::ones([out], &device));
        self.folded = true;
        self
    }

    /// The inference BatchNorm as a per-channel `(scale, shift)`: `gamma / sqrt(var + eps)`
    /// and `beta - mean * scale`, from the running statistics.
    fn inference_scale_shift(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let norm = &self.norm;
        let device = norm.gamma.device();
        let mean = norm.running_mean.value().to_device(&device);
        let var = norm.running_var.value().to_device(&device);
        let scale = norm.gamma.val() / (var + norm.epsilon).sqrt();
        let shift = norm.beta.val() - mean * scale.clone();
        (scale, shift)
    }

    /// This layer as its block lists it, at module path `path`.
    pub fn describe(&self, path: &str) -> LayerInfo {
        LayerInfo {
            path: path.to_string(),
            kind: LayerKind::ConvNormAct(self.conv.shape()),
        }
    }

    /// Checks an input of `[N, C, H, W]` dims (whatever its layout) against the layer: its
    /// channel count, and a size that the (padded, dilated) kernel fits in.
    pub fn check_input(&self, module: &str, dims: [usize; 4]) -> crate::Result<()> {
        let shape = self.conv.shape();
        crate::nn::check_channels(module, dims, shape.in_channels)?;
        let fits = (0..2).all(|d| {
            let span = shape.dilation[d] * (shape.kernel[d] - 1) + 1;
            dims[2 + d] + 2 * shape.padding[d] >= span
        });
        if !fits {
            return Err(crate::Error::Input(format!(
                "{module}: input {dims:?} is smaller than its {}x{} kernel",
                shape.kernel[0], shape.kernel[1]
            )));
        }
        Ok(())
    }
}

impl<B: DepthwiseBackend> ConvNormAct<B> {
    /// Convolution, BatchNorm (batch statistics with autodiff, running ones without),
    /// activation.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]` (odd kernels)
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.conv.forward(input);
        if self.folded {
            return self.bias_act(x);
        }
        super::batch_norm_act(x, &self.norm, self.activation)
    }

    /// `activation(x + bias)` per channel of a folded layer's NCHW conv output (one pass;
    /// channels-last maps are viewed as `[N·H·W, C, 1, 1]` rows first).
    fn bias_act(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        Tensor::from_primitive(TensorPrimitive::Float(B::channel_affine_act(
            x.into_primitive().tensor(),
            self.norm.gamma.val().into_primitive().tensor(),
            self.norm.beta.val().into_primitive().tensor(),
            self.activation,
        )))
    }

    /// [`Self::forward`] or [`Self::forward_channels_last`], as the map's layout says.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]` as a map in either layout
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`, same layout
    pub fn forward_map(&self, input: FeatureMap<B>) -> FeatureMap<B> {
        match input.layout() {
            Layout::ChannelsFirst => input.map(|x| self.forward(x)),
            Layout::ChannelsLast => input.map(|x| self.forward_channels_last(x)),
        }
    }

    /// [`Self::forward`] on channels-last maps.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, ceil(H / stride), ceil(W / stride), out_channels]` (odd kernels)
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        if self.folded {
            if let ConvLayer::Depthwise(conv) = &self.conv {
                // Bias and activation applied by the kernel as it stores each output.
                return conv.forward_channels_last_act(
                    input,
                    self.norm.beta.val(),
                    self.activation,
                );
            }
            let x = self.conv.forward_channels_last(input);
            let [n, h, w, c] = x.dims();
            let rows = self.bias_act(reshape_dense(x, [n * h * w, c, 1, 1]));
            return reshape_dense(rows, [n, h, w, c]);
        }
        if let ConvLayer::Depthwise(conv) = &self.conv
            && !B::ad_enabled(&input.device())
        {
            // Inference: the running statistics folded into this call's weights (C·kh·kw
            // multiplies), the kernel adding the shift and applying the activation as it
            // stores: one pass over the map instead of two.
            let (scale, shift) = self.inference_scale_shift();
            return conv.forward_channels_last_scaled(input, scale, shift, self.activation);
        }
        let x = self.conv.forward_channels_last(input);
        super::batch_norm_act_channels_last(x, &self.norm, self.activation)
    }

    /// Checked [`Self::forward`] (see [`ConvLayer::try_forward`]).
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: Tensor<B, 4>) -> crate::Result<Tensor<B, 4>> {
        let x = self.conv.try_forward(input)?;
        if self.folded {
            return Ok(self.bias_act(x));
        }
        Ok(super::batch_norm_act(x, &self.norm, self.activation))
    }
}
