//! Depthwise conv through Burn's grouped `conv2d` ops: correct on every backend, and what
//! [`DepthwiseBackend`](super::DepthwiseBackend)'s default methods call. Fast backends use
//! it for inputs their kernels do not take (e.g. non-`f32` tensors).

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};

use super::{DepthwiseOptions, primitive_dims};

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
