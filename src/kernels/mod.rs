//! The depthwise convolution op as a Burn backend extension.
//!
//! Modules reach depthwise maths through one door, [`depthwise_conv2d`]. Behind it the
//! [`DepthwiseBackend`] trait is the seam between maths and speed: every method has a
//! default built on Burn's grouped `conv2d` (correct on any backend); CPU backends
//! override them with the crate's CPU kernels on slices, the CubeCL (GPU) backends with CubeCL
//! kernels of the crate's own. [`Autodiff`](burn::backend::Autodiff)
//! records one backward node per call that calls the inner backend's backward ops.
//!
//! The three op traits ([`DepthwiseBackend`], [`PointwiseBackend`], [`NormActBackend`])
//! are implemented for every Burn 0.21 backend family: `NdArray<E, I, Q>` and `Flex` (CPU
//! kernels for `f32`), `CubeBackend<R, F, I, BT>` for every CubeCL runtime (CubeCL kernels
//! for `f32`), `Fusion<B>`,
//! `Autodiff<B>`, and, behind their features, Candle, LibTorch, the router and Dispatch.
//! Generic code needs one bound, `B: DepthwiseBackend`.
//!
//! Layout is NCHW. A depthwise conv with depth multiplier `m` maps `C` input channels to
//! `C * m` output channels; output channel `o` reads input channel `o / m` (PyTorch's
//! `groups = C` convention). Weights are `[C * m, 1, kh, kw]`, bias `[C * m]`.

/// Declares modules public with the `internals` feature (the crate's tests and bench
/// harness) and crate-private otherwise.
macro_rules! internal_modules {
    ($($(#[$attr:meta])* $name:ident;)*) => {$(
        $(#[$attr])*
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    )*};
}

// The op traits, their option types and their defaults on Burn's ops.
mod activation;
mod norm_act;
mod pointwise;
// The CPU kernels on slices, and the trait implementations per backend family.
mod backends;
internal_modules! {
    fallback;
    cpu;
}
#[cfg(feature = "internals")]
pub mod reference;

pub use activation::Activation;
pub use norm_act::NormActBackend;
#[cfg(feature = "internals")]
pub use norm_act::{
    fallback_batch_norm_act, fallback_batch_norm_act_backward, fallback_channel_affine_act,
    reshape_dense,
};
#[cfg(not(feature = "internals"))]
pub(crate) use norm_act::{
    fallback_batch_norm_act, fallback_batch_norm_act_backward, fallback_channel_affine_act,
    reshape_dense,
};
pub use pointwise::{PointwiseBackend, pointwise_conv2d};
#[cfg(feature = "internals")]
pub use pointwise::{
    fallback_forward as fallback_pointwise_forward,
    fallback_weight_backward as fallback_pointwise_weight_backward,
    fallback_x_backward as fallback_pointwise_x_backward, rows_forward as pointwise_rows_forward,
    rows_weight_backward as pointwise_rows_weight_backward,
    rows_x_backward as pointwise_rows_x_backward,
};
#[cfg(not(feature = "internals"))]
#[allow(unused_imports)] // the CubeCL backends' (the `cubecl` feature's) choice
pub(crate) use pointwise::{
    fallback_forward as fallback_pointwise_forward,
    fallback_weight_backward as fallback_pointwise_weight_backward,
    fallback_x_backward as fallback_pointwise_x_backward, rows_forward as pointwise_rows_forward,
    rows_weight_backward as pointwise_rows_weight_backward,
    rows_x_backward as pointwise_rows_x_backward,
};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};

/// Stride, padding and dilation of a depthwise convolution, as `[height, width]` pairs.
///
/// The depth multiplier is not an option: it follows from the shapes
/// (`weight.dims()[0] / x.dims()[1]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DepthwiseOptions {
    /// Step between neighbouring output positions (non-zero).
    pub stride: [usize; 2],
    /// Zero padding added on each side (top and bottom, left and right).
    pub padding: [usize; 2],
    /// Spacing between kernel taps (non-zero).
    pub dilation: [usize; 2],
}

impl DepthwiseOptions {
    /// Options with the given stride, padding and dilation.
    pub fn new(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> Self {
        Self {
            stride,
            padding,
            dilation,
        }
    }

    /// Output spatial size `[out_h, out_w]` for an input of `[in_h, in_w]` and a kernel of
    /// `[kh, kw]`, or `None` when the (padded) input is smaller than the dilated kernel.
    pub fn output_size(&self, input: [usize; 2], kernel: [usize; 2]) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for d in 0..2 {
            let span = self.dilation[d] * (kernel[d] - 1) + 1;
            let padded = input[d] + 2 * self.padding[d];
            if padded < span || self.stride[d] == 0 {
                return None;
            }
            out[d] = (padded - span) / self.stride[d] + 1;
        }
        Some(out)
    }

    /// The same convolution expressed as Burn's grouped-conv options.
    pub fn to_conv_options(&self, groups: usize) -> ConvOptions<2> {
        ConvOptions::new(self.stride, self.padding, self.dilation, groups)
    }
}

/// The geometry of one depthwise convolution call, derived from tensor shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseShape {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Depth multiplier: output channels per input channel.
    pub multiplier: usize,
    /// Input `[height, width]`.
    pub input: [usize; 2],
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Output `[height, width]`.
    pub output: [usize; 2],
    /// Stride, padding, dilation.
    pub options: DepthwiseOptions,
}

impl DepthwiseShape {
    /// Checks an input shape `[N, C, H, W]` against a weight shape `[C * m, 1, kh, kw]`.
    ///
    /// An [`Error::Input`](crate::Error::Input) names the offending value when they do not
    /// describe a valid depthwise convolution.
    pub fn new(
        input: [usize; 4],
        weight: [usize; 4],
        options: DepthwiseOptions,
    ) -> crate::Result<Self> {
        Self::validate(input, weight, options).map_err(crate::Error::Input)
    }

    fn validate(
        input: [usize; 4],
        weight: [usize; 4],
        options: DepthwiseOptions,
    ) -> Result<Self, String> {
        let [batch, channels, in_h, in_w] = input;
        let [out_channels, one, kh, kw] = weight;
        if options.stride.contains(&0) || options.dilation.contains(&0) {
            return Err(format!(
                "stride {:?} and dilation {:?} must be non-zero",
                options.stride, options.dilation
            ));
        }
        if channels == 0 || in_h == 0 || in_w == 0 || out_channels == 0 || kh == 0 || kw == 0 {
            return Err(format!(
                "depthwise conv needs non-empty channels, input and kernel, got input {input:?}, weight {weight:?}"
            ));
        }
        if one != 1 {
            return Err(format!(
                "depthwise weight must be [C * m, 1, kh, kw], got dimension 1 = {one} (weight {weight:?})"
            ));
        }
        if out_channels % channels != 0 {
            return Err(format!(
                "depthwise weight has {out_channels} output channels, not a multiple of the input's {channels} channels"
            ));
        }
        let output = options.output_size([in_h, in_w], [kh, kw]).ok_or_else(|| {
            format!(
                "input {in_h}x{in_w} with padding {:?} is smaller than the {kh}x{kw} kernel dilated by {:?}",
                options.padding, options.dilation
            )
        })?;
        Ok(Self {
            batch,
            channels,
            multiplier: out_channels / channels,
            input: [in_h, in_w],
            kernel: [kh, kw],
            output,
            options,
        })
    }

    /// Output channels (`channels * multiplier`).
    pub fn out_channels(&self) -> usize {
        self.channels * self.multiplier
    }

    /// Output tensor shape `[N, C * m, out_h, out_w]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [
            self.batch,
            self.out_channels(),
            self.output[0],
            self.output[1],
        ]
    }

    /// Weight tensor shape `[C * m, 1, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels(), 1, self.kernel[0], self.kernel[1]]
    }
}

/// Depthwise conv2d on primitives, plus its backward ops.
///
/// Every method has a default that delegates to Burn's grouped `conv2d` ops, so a backend
/// needs only empty `impl`s of it, [`NormActBackend`] and [`PointwiseBackend`] to take part; fast backends override
/// them. Shapes are checked once, in [`depthwise_conv2d`], before any method is called.
pub trait DepthwiseBackend: Backend + NormActBackend + PointwiseBackend {
    /// Forward: `x [N, C, H, W]`, `weight [C*m, 1, kh, kw]`, `bias [C*m]`
    /// → `[N, C*m, out_h, out_w]`.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        fallback::forward::<Self>(x, weight, bias, options)
    }

    /// Gradient with respect to the input: `[N, C, H, W]` (the shape of `x`).
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        fallback::x_backward::<Self>(x, weight, output_grad, options)
    }

    /// Gradient with respect to the weight: `[C*m, 1, kh, kw]`.
    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        fallback::weight_backward::<Self>(x, weight, output_grad, options)
    }

    /// Gradient with respect to the bias: `[C*m]`, the output gradient summed over batch
    /// and space.
    fn depthwise_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        fallback::bias_backward::<Self>(output_grad)
    }

    /// Channels-last forward: `x [N, H, W, C]`, `weight [C*m, 1, kh, kw]`, `bias [C*m]`
    /// → `[N, out_h, out_w, C*m]`. The default permutes to NCHW and back around
    /// [`Self::depthwise_conv2d`].
    fn depthwise_conv2d_nhwc(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let y = Self::depthwise_conv2d(permute::<Self>(x, TO_NCHW), weight, bias, options);
        permute::<Self>(y, TO_NHWC)
    }

    /// [`Self::depthwise_conv2d_nhwc`] followed by `activation`, for inference (no
    /// gradient; `Autodiff` takes the default): the CPU kernels apply it as they store each
    /// output, which saves a pass once BatchNorm is folded into the weights and bias.
    fn depthwise_conv2d_nhwc_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
        activation: Activation,
    ) -> FloatTensor<Self> {
        apply_activation::<Self>(
            Self::depthwise_conv2d_nhwc(x, weight, bias, options),
            activation,
        )
    }

    /// A dense (`groups = 1`) convolution of an NCHW input with a channels-last output:
    /// `x [N, C_in, H, W]`, `weight [C_out, C_in, kh, kw]`, `bias [C_out]` →
    /// `[N, OH, OW, C_out]`. The first layer of a channels-last network (the MobileNet
    /// stem on RGB images). The default is Burn's `conv2d` and a permute; the CPU kernels
    /// compute it as im2col GEMMs writing rows of channels. `Autodiff` takes the default
    /// (Burn's tracked `conv2d`), so the kernels serve inference.
    fn conv2d_nchw_to_nhwc(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        fallback::conv2d_nchw_to_nhwc::<Self>(x, weight, bias, options)
    }

    /// A dense (`groups = 1`) convolution on channels-last maps: `x [N, H, W, C_in]`,
    /// `weight [C_out, C_in, kh, kw]`, `bias [C_out]` → `[N, OH, OW, C_out]` (the k×k
    /// convs inside a channels-last network: MobileNetV4's `cn` blocks, FusedMBConv, and
    /// the stem, whose channels-last view of NCHW images the CPU kernels read as a copy).
    /// The default is Burn's `conv2d` between permutes; the CPU kernels compute it as
    /// im2col GEMMs; `Autodiff` tracks it with [`Self::conv2d_nhwc_backward`].
    fn conv2d_nhwc(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        fallback::conv2d_nhwc::<Self>(x, weight, bias, options)
    }

    /// The gradients `wanted` of [`Self::conv2d_nhwc`]: the input's `[N, H, W, C_in]`, the
    /// weight's `[C_out, C_in, kh, kw]`, the bias's `[C_out]`. The default is Burn's
    /// `conv2d` backward ops between permutes; the CPU kernels scatter `dY · W` back onto
    /// the input (col2im) and sum `dYᵀ · cols` for the weight.
    fn conv2d_nhwc_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
        wanted: WantedGrads,
    ) -> DepthwiseGrads<Self> {
        fallback::conv2d_nhwc_backward::<Self>(x, weight, output_grad, options, wanted)
    }

    /// Channels-last gradient with respect to the input: `[N, H, W, C]`.
    fn depthwise_conv2d_nhwc_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let dx = Self::depthwise_conv2d_x_backward(
            permute::<Self>(x, TO_NCHW),
            weight,
            permute::<Self>(output_grad, TO_NCHW),
            options,
        );
        permute::<Self>(dx, TO_NHWC)
    }

    /// Channels-last gradient with respect to the weight: `[C*m, 1, kh, kw]`.
    fn depthwise_conv2d_nhwc_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        Self::depthwise_conv2d_weight_backward(
            permute::<Self>(x, TO_NCHW),
            weight,
            permute::<Self>(output_grad, TO_NCHW),
            options,
        )
    }

    /// Channels-last gradient with respect to the bias: `[C*m]`, the output gradient
    /// `[N, out_h, out_w, C*m]` summed over batch and space.
    fn depthwise_conv2d_nhwc_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::depthwise_conv2d_bias_backward(permute::<Self>(output_grad, TO_NCHW))
    }

    /// The channels-last gradients `wanted` (input `[N, H, W, C]`, weight
    /// `[C*m, 1, kh, kw]`, bias `[C*m]`) in one call: what `Autodiff` calls in training.
    /// The CPU kernels compute them in one pass that reads each row of `output_grad` once
    /// (the three ops read it three times); the default calls the three ops.
    fn depthwise_conv2d_nhwc_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
        wanted: WantedGrads,
    ) -> DepthwiseGrads<Self> {
        DepthwiseGrads::each(
            wanted,
            || {
                Self::depthwise_conv2d_nhwc_x_backward(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    options,
                )
            },
            || {
                Self::depthwise_conv2d_nhwc_weight_backward(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    options,
                )
            },
            || Self::depthwise_conv2d_nhwc_bias_backward(output_grad.clone()),
        )
    }

    /// The activation layout this backend's models run fastest in, measured
    /// (BENCHMARKS.md): channels-last on the CPU kernels, channels-first elsewhere.
    fn preferred_layout() -> Layout {
        Layout::ChannelsFirst
    }
}

/// Which gradients a [`DepthwiseBackend::depthwise_conv2d_nhwc_backward`] call computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WantedGrads {
    /// The input gradient.
    pub x: bool,
    /// The weight gradient.
    pub weight: bool,
    /// The bias gradient.
    pub bias: bool,
}

impl WantedGrads {
    /// All three.
    pub const ALL: Self = Self {
        x: true,
        weight: true,
        bias: true,
    };
}

/// The gradients of one depthwise call, `None` where not wanted.
#[derive(Debug)]
pub struct DepthwiseGrads<B: Backend> {
    /// With respect to the input, in the input's layout.
    pub x: Option<FloatTensor<B>>,
    /// With respect to the weight, in the weight's shape (`[C*m, 1, kh, kw]` for a
    /// depthwise conv).
    pub weight: Option<FloatTensor<B>>,
    /// With respect to the bias, `[C_out]`.
    pub bias: Option<FloatTensor<B>>,
}

impl<B: Backend> DepthwiseGrads<B> {
    /// Each wanted gradient from its own op.
    pub(crate) fn each(
        wanted: WantedGrads,
        x: impl FnOnce() -> FloatTensor<B>,
        weight: impl FnOnce() -> FloatTensor<B>,
        bias: impl FnOnce() -> FloatTensor<B>,
    ) -> Self {
        Self {
            x: wanted.x.then(x),
            weight: wanted.weight.then(weight),
            bias: wanted.bias.then(bias),
        }
    }
}

/// Memory layout of 4-D activations.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Layout {
    /// `[N, C, H, W]` (Burn's and PyTorch's default).
    #[default]
    ChannelsFirst,
    /// `[N, H, W, C]`: the channels of a pixel contiguous.
    ChannelsLast,
}

/// `activation` on a float primitive with Burn's ops.
pub(crate) fn apply_activation<B: Backend>(
    t: FloatTensor<B>,
    activation: Activation,
) -> FloatTensor<B> {
    activation
        .forward(Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(t)))
        .into_primitive()
        .tensor()
}

/// Axes that turn NHWC into NCHW.
pub const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
/// Axes that turn NCHW into NHWC.
pub const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

pub(crate) fn permute<B: Backend>(t: FloatTensor<B>, axes: [usize; 4]) -> FloatTensor<B> {
    B::float_permute(t, &axes)
}

/// The bound for training generic code: an autodiff backend over a [`DepthwiseBackend`],
/// itself one (`Autodiff<B>` for any `B: DepthwiseBackend`). Implemented for every such
/// backend; `B: AutodiffDepthwiseBackend` stands for `B: AutodiffBackend + DepthwiseBackend,
/// B::InnerBackend: DepthwiseBackend`, which a module's `AutodiffModule` impl needs.
pub trait AutodiffDepthwiseBackend:
    AutodiffBackend<InnerBackend: DepthwiseBackend> + DepthwiseBackend
{
}

impl<B> AutodiffDepthwiseBackend for B where
    B: AutodiffBackend<InnerBackend: DepthwiseBackend> + DepthwiseBackend
{
}

/// Depthwise 2-D convolution: the one entry point the modules use.
///
/// - `x`: `[N, C, H, W]`
/// - `weight`: `[C * m, 1, kh, kw]` (`m` is the depth multiplier)
/// - `bias`: `[C * m]`
/// - returns `[N, C * m, out_h, out_w]` with
///   `out = (in + 2 * padding - dilation * (k - 1) - 1) / stride + 1`.
///
/// # Panics
/// When the shapes do not describe a depthwise convolution (see [`try_depthwise_conv2d`]
/// for the checked form); modules validate their inputs before calling this.
pub fn depthwise_conv2d<B: DepthwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: DepthwiseOptions,
) -> Tensor<B, 4> {
    try_depthwise_conv2d(x, weight, bias, options).unwrap_or_else(|msg| panic!("{msg}"))
}

/// Checked [`depthwise_conv2d`]: a shape mismatch is an `Err` naming the bad value.
pub fn try_depthwise_conv2d<B: DepthwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: DepthwiseOptions,
) -> crate::Result<Tensor<B, 4>> {
    let shape = DepthwiseShape::new(x.dims(), weight.dims(), options)?;
    check_bias(&bias, &shape)?;
    let out = B::depthwise_conv2d(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        options,
    );
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// Channels-last depthwise 2-D convolution.
///
/// - `x`: `[N, H, W, C]`
/// - `weight`: `[C * m, 1, kh, kw]` (the same weights as [`depthwise_conv2d`])
/// - `bias`: `[C * m]`
/// - returns `[N, out_h, out_w, C * m]`
///
/// # Panics
/// When the shapes do not describe a depthwise convolution (see
/// [`try_depthwise_conv2d_nhwc`]).
pub fn depthwise_conv2d_nhwc<B: DepthwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: DepthwiseOptions,
) -> Tensor<B, 4> {
    try_depthwise_conv2d_nhwc(x, weight, bias, options).unwrap_or_else(|msg| panic!("{msg}"))
}

/// Checked [`depthwise_conv2d_nhwc`]: a shape mismatch is an `Err` naming the bad value.
pub fn try_depthwise_conv2d_nhwc<B: DepthwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: DepthwiseOptions,
) -> crate::Result<Tensor<B, 4>> {
    let [n, h, w, c] = x.dims();
    let shape = DepthwiseShape::validate([n, c, h, w], weight.dims(), options).map_err(|msg| {
        crate::Error::Input(format!("{msg} (channels-last input {:?})", x.dims()))
    })?;
    check_bias(&bias, &shape)?;
    let out = B::depthwise_conv2d_nhwc(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        options,
    );
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// A dense (`groups = 1`) convolution of channels-last maps
/// ([`DepthwiseBackend::conv2d_nhwc`]), with the crate's backward under `Autodiff`.
/// Shapes are Burn's `conv2d`'s to check (it names a mismatch).
///
/// # Shapes
/// - x: `[N, H, W, C_in]`
/// - weight: `[C_out, C_in, kh, kw]`
/// - bias: `[C_out]`
/// - output: `[N, OH, OW, C_out]`
pub fn conv2d_nhwc<B: DepthwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: DepthwiseOptions,
) -> Tensor<B, 4> {
    let out = B::conv2d_nhwc(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        options,
    );
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// A dense (`groups = 1`) convolution of an NCHW input with its output channels-last
/// ([`DepthwiseBackend::conv2d_nchw_to_nhwc`]): the first layer of a channels-last network.
/// Shapes are Burn's `conv2d`'s to check (it names a mismatch).
///
/// # Shapes
/// - x: `[N, C_in, H, W]`
/// - weight: `[C_out, C_in, kh, kw]`
/// - bias: `[C_out]`
/// - output: `[N, OH, OW, C_out]`
pub fn conv2d_nchw_to_nhwc<B: DepthwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: DepthwiseOptions,
) -> Tensor<B, 4> {
    let out = B::conv2d_nchw_to_nhwc(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        options,
    );
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn check_bias<B: Backend>(
    bias: &Option<Tensor<B, 1>>,
    shape: &DepthwiseShape,
) -> crate::Result<()> {
    if let Some(bias) = bias {
        let [len] = bias.dims();
        if len != shape.out_channels() {
            return Err(crate::Error::Input(format!(
                "depthwise bias has {len} elements, expected {} (one per output channel)",
                shape.out_channels()
            )));
        }
    }
    Ok(())
}

/// Shape of a rank-4 float primitive as `[N, C, H, W]`.
pub(crate) fn primitive_dims<B: Backend>(tensor: &FloatTensor<B>) -> [usize; 4] {
    tensor.shape().dims::<4>()
}
