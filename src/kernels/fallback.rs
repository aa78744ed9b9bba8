//! Depthwise conv through Burn's grouped `conv2d` ops: correct on every backend, and what
//! [`DepthwiseBackend`](super::DepthwiseBackend)'s default methods call. Fast backends use
//! it for inputs their kernels do not take (e.g. non-`f32` tensors).

// Some of these serve only one backend family (its feature) or the tests.
#![cfg_attr(not(feature = "internals"), allow(dead_code))]

use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Shape, Tensor, TensorMetadata, TensorPrimitive};

use super::{
    DepthwiseGrads, DepthwiseOptions, TO_NCHW, TO_NHWC, WantedGrads, permute, primitive_dims,
};

/// Forward (see [`DepthwiseBackend::depthwise_conv2d`](super::DepthwiseBackend::depthwise_conv2d)).
pub fn forward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let channels = primitive_dims::<B>(&x)[1];
    // Bias is added separately: some backends' depthwise kernels refuse a bias and fall
    // back to a slow direct convolution when given one.
    let out = B::conv2d(x, weight, None, options.to_conv_options(channels));
    match bias {
        Some(bias) => {
            let out_channels = bias.shape()[0];
            let bias = B::float_reshape(bias, Shape::new([1, out_channels, 1, 1]));
            B::float_add(out, bias)
        }
        None => out,
    }
}

/// Input gradient, `[N, C, H, W]`.
pub fn x_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let channels = primitive_dims::<B>(&x)[1];
    B::conv2d_x_backward(x, weight, output_grad, options.to_conv_options(channels))
}

/// Weight gradient, `[C*m, 1, kh, kw]`.
pub fn weight_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let channels = primitive_dims::<B>(&x)[1];
    B::conv2d_weight_backward(x, weight, output_grad, options.to_conv_options(channels))
}

/// Bias gradient, `[C*m]`.
pub fn bias_backward<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    let [_, out_channels, _, _] = primitive_dims::<B>(&output_grad);
    let summed = B::float_sum_dim(B::float_sum_dim(output_grad, 3), 2);
    let summed = B::float_sum_dim(summed, 0);
    B::float_reshape(summed, Shape::new([out_channels]))
}

/// [`x_backward`], except where a stride is wider than the dilated kernel: there the
/// gradient is that of the same conv at stride 1 fed the spread output gradient
/// ([`spread_to_unit_stride`]). Burn 0.21's CubeCL data-gradient kernel returns wrong zeros
/// for such geometries (the reference sweep catches it); backends that may run Burn's CubeCL
/// convs (the CubeCL family for non-`f32` dtypes, the router, Dispatch) take this path.
pub fn x_backward_spreading_wide_strides<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let [_, _, in_h, in_w] = primitive_dims::<B>(&x);
    let [_, _, kh, kw] = primitive_dims::<B>(&weight);
    let wide = [0, 1].map(|d| options.stride[d] > options.dilation[d] * ([kh, kw][d] - 1) + 1);
    if !wide.contains(&true) {
        return x_backward::<B>(x, weight, output_grad, options);
    }
    let g = spread_to_unit_stride::<B>(output_grad, [in_h, in_w], [kh, kw], options);
    let unit_stride = DepthwiseOptions::new([1, 1], options.padding, options.dilation);
    x_backward::<B>(x, weight, g, unit_stride)
}

/// Input gradient through a forward (grouped) correlation only, for backends without a
/// grouped transposed convolution (Candle): the output gradient spread to stride 1, padded
/// by `dilation * (k - 1) - padding` on each side (cropped where that is negative), and
/// correlated with the spatially flipped kernel, whose `[C * m, 1, kh, kw]` weights regroup
/// as `[C, m, kh, kw]`: each input channel sums its `m` output channels.
pub fn x_backward_by_correlation<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let [_, channels, in_h, in_w] = primitive_dims::<B>(&x);
    let [out_channels, _, kh, kw] = primitive_dims::<B>(&weight);
    let g = spread_to_unit_stride::<B>(output_grad, [in_h, in_w], [kh, kw], options);
    let mut g = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(g));
    for (axis, k) in [(2, kh), (3, kw)] {
        let d = axis - 2;
        let border = (options.dilation[d] * (k - 1)) as isize - options.padding[d] as isize;
        g = pad_or_crop(g, axis, border);
    }
    let weight = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(weight))
        .reshape([channels, out_channels / channels, kh, kw])
        .flip([2, 3]);
    B::conv2d(
        g.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        None,
        ConvOptions::new([1, 1], [0, 0], options.dilation, channels),
    )
}

/// Weight gradient as one forward grouped convolution, for backends whose conv weight
/// gradient fails on depthwise shapes (Candle): each input channel's `N` images form one
/// group of an `[1, C * N, H, W]` input, correlated with the output gradients as `N`-channel
/// kernels `[C * m, N, out_h, out_w]`, with stride and dilation swapped; the result, at
/// least `kh × kw`, is cropped to it.
pub fn weight_backward_by_correlation<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let [n, channels, h, w] = primitive_dims::<B>(&x);
    let [out_channels, _, kh, kw] = primitive_dims::<B>(&weight);
    let [_, _, out_h, out_w] = primitive_dims::<B>(&output_grad);
    let x = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x))
        .swap_dims(0, 1)
        .reshape([1, channels * n, h, w]);
    // Through a flat shape, so that backends that need contiguous kernels get one.
    let g = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(output_grad))
        .swap_dims(0, 1)
        .reshape([out_channels, n * out_h * out_w])
        .reshape([out_channels, n, out_h, out_w]);
    let swapped = ConvOptions::new(options.dilation, options.padding, options.stride, channels);
    let dw = B::conv2d(
        x.into_primitive().tensor(),
        g.into_primitive().tensor(),
        None,
        swapped,
    );
    Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(dw))
        .narrow(2, 0, kh)
        .narrow(3, 0, kw)
        .reshape([out_channels, 1, kh, kw])
        .into_primitive()
        .tensor()
}

/// The output gradient of a strided depthwise conv as that of the same conv at stride 1:
/// zeros between the elements, cropped or zero-extended to the stride-1 output size.
pub fn spread_to_unit_stride<B: Backend>(
    output_grad: FloatTensor<B>,
    input: [usize; 2],
    kernel: [usize; 2],
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let [n, o, out_h, out_w] = primitive_dims::<B>(&output_grad);
    let [sh, sw] = options.stride;
    let full =
        [0, 1].map(|d| input[d] + 2 * options.padding[d] - options.dilation[d] * (kernel[d] - 1));
    let g = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(output_grad));
    if options.stride == [1, 1] {
        return g.into_primitive().tensor();
    }
    // [n, o, out_h, 1, out_w, 1] zero-extended to [n, o, out_h, sh, out_w, sw].
    let g = g.reshape([n, o, out_h, 1, out_w, 1]);
    let g = fit_dim(fit_dim(g, 3, sh), 5, sw);
    let g = g.reshape([n, o, out_h * sh, out_w * sw]);
    fit_dim(fit_dim(g, 2, full[0]), 3, full[1])
        .into_primitive()
        .tensor()
}

/// Resizes dimension `dim` to `size`: crops the end, or appends zeros.
fn fit_dim<B: Backend, const D: usize>(t: Tensor<B, D>, dim: usize, size: usize) -> Tensor<B, D> {
    let current = t.dims()[dim];
    if current >= size {
        return t.narrow(dim, 0, size);
    }
    let mut zeros_shape = t.dims();
    zeros_shape[dim] = size - current;
    let zeros = Tensor::zeros(zeros_shape, (&t.device(), t.dtype()));
    Tensor::cat(vec![t, zeros], dim)
}

/// Adds `border` zeros at both ends of dimension `dim`, or crops `-border` from both ends.
fn pad_or_crop<B: Backend>(t: Tensor<B, 4>, dim: usize, border: isize) -> Tensor<B, 4> {
    let len = t.dims()[dim];
    if border < 0 {
        let cut = border.unsigned_abs();
        return t.narrow(dim, cut, len - 2 * cut);
    }
    if border == 0 {
        return t;
    }
    let mut zeros_shape = t.dims();
    zeros_shape[dim] = border as usize;
    let zeros = Tensor::<B, 4>::zeros(zeros_shape, (&t.device(), t.dtype()));
    Tensor::cat(vec![zeros.clone(), t, zeros], dim)
}

/// Channels-last forward, `[N, out_h, out_w, C*m]`, through [`forward`] and two permutes.
pub fn nhwc_forward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let y = forward::<B>(permute::<B>(x, TO_NCHW), weight, bias, options);
    permute::<B>(y, TO_NHWC)
}

/// Channels-last input gradient, `[N, H, W, C]`.
pub fn nhwc_x_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let (x, dy) = (permute::<B>(x, TO_NCHW), permute::<B>(output_grad, TO_NCHW));
    permute::<B>(x_backward::<B>(x, weight, dy, options), TO_NHWC)
}

/// Channels-last weight gradient, `[C*m, 1, kh, kw]`.
pub fn nhwc_weight_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let (x, dy) = (permute::<B>(x, TO_NCHW), permute::<B>(output_grad, TO_NCHW));
    weight_backward::<B>(x, weight, dy, options)
}

/// Channels-last bias gradient, `[C*m]`.
pub fn nhwc_bias_backward<B: Backend>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    bias_backward::<B>(permute::<B>(output_grad, TO_NCHW))
}

/// The channels-last gradients `wanted`, each through the ops above.
pub fn nhwc_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
    wanted: WantedGrads,
) -> DepthwiseGrads<B> {
    DepthwiseGrads::each(
        wanted,
        || nhwc_x_backward::<B>(x.clone(), weight.clone(), output_grad.clone(), options),
        || nhwc_weight_backward::<B>(x.clone(), weight.clone(), output_grad.clone(), options),
        || nhwc_bias_backward::<B>(output_grad.clone()),
    )
}

/// [`DepthwiseBackend::conv2d_nchw_to_nhwc`](super::DepthwiseBackend::conv2d_nchw_to_nhwc)
/// as Burn's `conv2d` (`groups = 1`) and a permute to `[N, OH, OW, C_out]`.
pub fn conv2d_nchw_to_nhwc<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    permute::<B>(
        B::conv2d(x, weight, bias, options.to_conv_options(1)),
        TO_NHWC,
    )
}

/// [`DepthwiseBackend::conv2d_nhwc`](super::DepthwiseBackend::conv2d_nhwc) as Burn's
/// `conv2d` (`groups = 1`) between permutes.
pub fn conv2d_nhwc<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    conv2d_nchw_to_nhwc::<B>(permute::<B>(x, TO_NCHW), weight, bias, options)
}

/// [`DepthwiseBackend::conv2d_nhwc_backward`](super::DepthwiseBackend::conv2d_nhwc_backward)
/// as Burn's `conv2d` backward ops between permutes.
pub fn conv2d_nhwc_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
    wanted: WantedGrads,
) -> DepthwiseGrads<B> {
    let conv = options.to_conv_options(1);
    let (x, dy) = (permute::<B>(x, TO_NCHW), permute::<B>(output_grad, TO_NCHW));
    DepthwiseGrads::each(
        wanted,
        || {
            let dx = B::conv2d_x_backward(x.clone(), weight.clone(), dy.clone(), conv.clone());
            permute::<B>(dx, TO_NHWC)
        },
        || B::conv2d_weight_backward(x.clone(), weight.clone(), dy.clone(), conv.clone()),
        || bias_backward::<B>(dy.clone()),
    )
}
