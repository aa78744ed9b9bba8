use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::kernels::{DepthwiseBackend, DepthwiseOptions, depthwise_conv2d};

/// Configuration of a [`DepthwiseConv2d`].
#[derive(Config, Debug)]
pub struct DepthwiseConv2dConfig {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel_size: [usize; 2],
    /// Stride `[height, width]`.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Zero padding `[height, width]` added on both sides.
    #[config(default = "[0, 0]")]
    pub padding: [usize; 2],
    /// Dilation `[height, width]`.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Output channels per input channel: the layer maps `C` to `C * depth_multiplier`.
    #[config(default = 1)]
    pub depth_multiplier: usize,
    /// Whether the layer has a bias (off when a BatchNorm follows).
    #[config(default = true)]
    pub bias: bool,
    /// Weight initialiser (default: torchvision's Kaiming normal, fan-out).
    #[config(default = "crate::nn::kaiming_fan_out()")]
    pub initializer: Initializer,
}

/// Depthwise 2-D convolution: each input channel is convolved with its own
/// `depth_multiplier` filters (`groups = C`).
///
/// - input: `[N, C, H, W]`
/// - output: `[N, C * depth_multiplier, H', W']` with
///   `H' = (H + 2 * padding - dilation * (k - 1) - 1) / stride + 1`
#[derive(Module, Debug)]
pub struct DepthwiseConv2d<B: Backend> {
    /// Filters, `[C * depth_multiplier, 1, kh, kw]`.
    pub weight: Param<Tensor<B, 4>>,
    /// Bias, `[C * depth_multiplier]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Stride `[height, width]`.
    pub stride: [usize; 2],
    /// Padding `[height, width]`.
    pub padding: [usize; 2],
    /// Dilation `[height, width]`.
    pub dilation: [usize; 2],
    /// Output channels per input channel.
    pub depth_multiplier: usize,
}

impl DepthwiseConv2dConfig {
    /// Checks the configuration, naming the first bad value.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: String| Err(crate::Error::Config(what));
        if self.in_channels == 0 {
            return bad("depthwise conv channels must be at least 1, got 0".into());
        }
        if self.depth_multiplier == 0 {
            return bad("depthwise conv depth_multiplier must be at least 1, got 0".into());
        }
        for (name, value) in [
            ("kernel_size", self.kernel_size),
            ("stride", self.stride),
            ("dilation", self.dilation),
        ] {
            if value.contains(&0) {
                return bad(format!(
                    "depthwise conv {name} must be non-zero, got {value:?}"
                ));
            }
        }
        Ok(())
    }

    /// Builds the layer. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> DepthwiseConv2d<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the layer, or explains which configuration value is invalid.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<DepthwiseConv2d<B>> {
        self.validate()?;
        let out_channels = self.in_channels * self.depth_multiplier;
        let taps = self.kernel_size[0] * self.kernel_size[1];
        let shape = [out_channels, 1, self.kernel_size[0], self.kernel_size[1]];
        // Fans as PyTorch computes them for a `[out, in / groups, kh, kw]` weight.
        let (fan_in, fan_out) = (taps, out_channels * taps);
        let weight = self
            .initializer
            .init_with(shape, Some(fan_in), Some(fan_out), device);
        let bias = self.bias.then(|| {
            // PyTorch's conv bias default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            let bound = 1.0 / (fan_in as f64).sqrt();
            Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([out_channels], device)
        });
        Ok(DepthwiseConv2d {
            weight,
            bias,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            depth_multiplier: self.depth_multiplier,
        })
    }
}

impl<B: DepthwiseBackend> DepthwiseConv2d<B> {
    /// The depthwise convolution.
    ///
    /// # Shapes
    /// - input: `[N, C, H, W]`
    /// - output: `[N, C * depth_multiplier, H', W']` with
    ///   `H' = (H + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1` (likewise `W'`)
    ///
    /// # Panics
    /// On an input whose channels or size do not fit the layer (see [`Self::try_forward`]).
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        depthwise_conv2d(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            self.options(),
        )
    }

    /// Checked [`Self::forward`]: a wrong channel count or an input smaller than the kernel
    /// is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: Tensor<B, 4>) -> crate::Result<Tensor<B, 4>> {
        crate::kernels::try_depthwise_conv2d(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            self.options(),
        )
        .map_err(|msg| crate::Error::Input(format!("DepthwiseConv2d: {msg}")))
    }
}

impl<B: DepthwiseBackend> DepthwiseConv2d<B> {
    /// The same convolution on channels-last maps.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, H', W', out_channels]`
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        crate::kernels::depthwise_conv2d_nhwc(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            self.options(),
        )
    }

    /// [`Self::forward_channels_last`] with `bias` added (to the layer's own, if any) and
    /// `activation` applied in the same pass: inference of a layer with BatchNorm folded
    /// in.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - bias: `[out_channels]`
    /// - output: `[N, H', W', out_channels]`
    pub fn forward_channels_last_act(
        &self,
        input: Tensor<B, 4>,
        bias: Tensor<B, 1>,
        activation: crate::kernels::Activation,
    ) -> Tensor<B, 4> {
        let bias = match &self.bias {
            Some(own) => own.val() + bias,
            None => bias,
        };
        self.nhwc_act(input, self.weight.val(), bias, activation)
    }

    /// `activation(scale · conv(input) + shift)` per channel, on channels-last maps, in
    /// one pass: `scale` folded into this call's weights and bias (a BatchNorm's inference
    /// statistics), the kernel adding the shift and applying the activation as it stores.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - scale, shift: `[out_channels]`
    /// - output: `[N, H', W', out_channels]`
    pub fn forward_channels_last_scaled(
        &self,
        input: Tensor<B, 4>,
        scale: Tensor<B, 1>,
        shift: Tensor<B, 1>,
        activation: crate::kernels::Activation,
    ) -> Tensor<B, 4> {
        let out = scale.dims()[0];
        let weight = self.weight.val() * scale.clone().reshape([out, 1, 1, 1]);
        let bias = match &self.bias {
            Some(own) => own.val() * scale + shift,
            None => shift,
        };
        self.nhwc_act(input, weight, bias, activation)
    }

    /// The channels-last op with `weight`, `bias` and `activation`.
    fn nhwc_act(
        &self,
        input: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        bias: Tensor<B, 1>,
        activation: crate::kernels::Activation,
    ) -> Tensor<B, 4> {
        Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(
            B::depthwise_conv2d_nhwc_act(
                input.into_primitive().tensor(),
                weight.into_primitive().tensor(),
                Some(bias.into_primitive().tensor()),
                self.options(),
                activation,
            ),
        ))
    }
}

impl<B: Backend> DepthwiseConv2d<B> {
    /// Stride, padding and dilation of this layer.
    pub fn options(&self) -> DepthwiseOptions {
        DepthwiseOptions::new(self.stride, self.padding, self.dilation)
    }

    /// Input channels `C`.
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[0] / self.depth_multiplier()
    }

    /// Output channels `C * depth_multiplier`.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Kernel `[height, width]`.
    pub fn kernel_size(&self) -> [usize; 2] {
        let [_, _, kh, kw] = self.weight.dims();
        [kh, kw]
    }

    /// Output channels per input channel.
    pub fn depth_multiplier(&self) -> usize {
        self.depth_multiplier
    }
}
