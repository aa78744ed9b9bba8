use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::kernels::{PointwiseBackend, pointwise_conv2d, reshape_dense};

/// Configuration of a [`PointwiseConv2d`].
#[derive(Config, Debug)]
pub struct PointwiseConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Whether the layer has a bias (off when a BatchNorm follows).
    #[config(default = true)]
    pub bias: bool,
    /// Weight initialiser (default: torchvision's Kaiming normal, fan-out).
    #[config(default = "crate::nn::kaiming_fan_out()")]
    pub initializer: Initializer,
}

/// 1×1 convolution that mixes channels, computed as a matrix product.
///
/// Burn's `conv2d` with a 1×1 kernel is a direct loop on some backends (20–800× slower than
/// `matmul` on ndarray), so this layer multiplies `[out, in]` weights with each image
/// viewed as `[in, H*W]`, through [`crate::kernels::pointwise_conv2d`] (strided GEMMs on
/// the CPU backends, Burn's `matmul` elsewhere).
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, H, W]`
#[derive(Module, Debug)]
pub struct PointwiseConv2d<B: Backend> {
    /// Weights `[out_channels, in_channels]` (PyTorch's `[out, in, 1, 1]` without the unit
    /// dimensions).
    pub weight: Param<Tensor<B, 2>>,
    /// Bias `[out_channels]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl PointwiseConv2dConfig {
    /// Builds the layer. Panics on zero channels (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> PointwiseConv2d<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the layer, or names the invalid channel count.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<PointwiseConv2d<B>> {
        let (in_channels, out_channels) = (self.in_channels, self.out_channels);
        if in_channels == 0 || out_channels == 0 {
            return Err(crate::Error::Config(format!(
                "pointwise conv channels must be non-zero, got in_channels {in_channels}, out_channels {out_channels}"
            )));
        }
        let weight = self.initializer.init_with(
            [out_channels, in_channels],
            Some(in_channels),
            Some(out_channels),
            device,
        );
        let bias = self.bias.then(|| {
            let bound = 1.0 / (in_channels as f64).sqrt();
            Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([out_channels], device)
        });
        Ok(PointwiseConv2d { weight, bias })
    }
}

impl<B: PointwiseBackend> PointwiseConv2d<B> {
    /// Mixes channels at every position.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, H, W]`
    ///
    /// # Panics
    /// On a wrong channel count (see [`Self::try_forward`]).
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = pointwise_conv2d(input, self.weight.val());
        match &self.bias {
            Some(bias) => {
                let out = self.out_channels();
                y + bias.val().reshape([1, out, 1, 1])
            }
            None => y,
        }
    }

    /// Checked [`Self::forward`]: a wrong channel count is an error naming the shape.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, input: Tensor<B, 4>) -> crate::Result<Tensor<B, 4>> {
        crate::nn::check_channels("PointwiseConv2d", input.dims(), self.in_channels())?;
        Ok(self.forward(input))
    }
}

impl<B: crate::kernels::DepthwiseBackend> PointwiseConv2d<B> {
    /// [`Self::forward`] or [`Self::forward_channels_last`], as the map's layout says.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]` as a map in either layout
    /// - output: `[N, out_channels, H, W]`, same layout
    pub fn forward_map(&self, input: super::FeatureMap<B>) -> super::FeatureMap<B> {
        match input.layout() {
            crate::kernels::Layout::ChannelsFirst => input.map(|x| self.forward(x)),
            crate::kernels::Layout::ChannelsLast => input.map(|x| self.forward_channels_last(x)),
        }
    }

    /// The same layer on channels-last maps: one matrix product over all `N·H·W`
    /// positions.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, H, W, out_channels]`
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, h, w, c] = input.dims();
        // `[N·H·W, C, 1, 1]` is the same memory as NCHW with 1×1 maps, which the op takes
        // as a single GEMM.
        let rows = reshape_dense(input, [n * h * w, c, 1, 1]);
        let out = self.out_channels();
        let y = reshape_dense(pointwise_conv2d(rows, self.weight.val()), [n, h, w, out]);
        match &self.bias {
            Some(bias) => y + bias.val().reshape([1, 1, 1, out]),
            None => y,
        }
    }
}

impl<B: Backend> PointwiseConv2d<B> {
    /// The same layer on per-image channel vectors (a 1×1 map).
    ///
    /// # Shapes
    /// - input: `[N, in_channels]`
    /// - output: `[N, out_channels]`
    pub fn forward_vectors(&self, input: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = input.matmul(self.weight.val().transpose());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze::<2>(),
            None => y,
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}
