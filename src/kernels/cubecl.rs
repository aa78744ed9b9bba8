//! `DepthwiseBackend` for the wgpu backend (`CubeBackend` over the wgpu runtime).
//!
//! Forward and weight gradient use the default methods (Burn's grouped `conv2d` and its
//! weight gradient on the GPU, the bias added as a separate broadcast because Burn's
//! depthwise GPU kernel refuses a bias).
//!
//! The input gradient works around a Burn 0.21 GPU bug: its data-gradient kernel returns
//! zeros when the stride is larger than the dilated kernel (input rows or columns that the
//! forward never reads), which the reference tests catch. For those geometries the
//! gradient is computed as that of the equivalent stride-1 conv, whose output gradient is
//! the original one spread out with zeros between its elements.

use burn::backend::wgpu::{BoolElement, CubeBackend, FloatElement, IntElement, WgpuRuntime};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{DepthwiseBackend, DepthwiseOptions, fallback, primitive_dims};

type Gpu<F, I, BT> = CubeBackend<WgpuRuntime, F, I, BT>;

/// Resizes dimension `dim` to `size`: crops the end, or appends zeros.
fn fit_dim<B: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<B, D>,
    dim: usize,
    size: usize,
) -> Tensor<B, D> {
    let current = t.dims()[dim];
    if current >= size {
        return t.narrow(dim, 0, size);
    }
    let mut zeros_shape = t.dims();
    zeros_shape[dim] = size - current;
    let zeros = Tensor::zeros(zeros_shape, &t.device());
    Tensor::cat(vec![t, zeros], dim)
}

/// Pointwise conv through the default (Burn `matmul`) implementations.
impl<F: FloatElement, I: IntElement, BT: BoolElement> super::PointwiseBackend for Gpu<F, I, BT> {}

/// Fused BatchNorm + activation through the default (Burn tensor op) implementations.
impl<F: FloatElement, I: IntElement, BT: BoolElement> super::NormActBackend for Gpu<F, I, BT> {}

impl<F: FloatElement, I: IntElement, BT: BoolElement> DepthwiseBackend for Gpu<F, I, BT> {
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let [_, _, in_h, in_w] = primitive_dims::<Self>(&x);
        let [n, o, out_h, out_w] = primitive_dims::<Self>(&output_grad);
        let [_, _, kh, kw] = primitive_dims::<Self>(&weight);
        let span = [
            options.dilation[0] * (kh - 1) + 1,
            options.dilation[1] * (kw - 1) + 1,
        ];
        if options.stride[0] <= span[0] && options.stride[1] <= span[1] {
            return fallback::x_backward::<Self>(x, weight, output_grad, options);
        }
        let [sh, sw] = options.stride;
        // Output size of the same conv at stride 1.
        let full = [
            in_h + 2 * options.padding[0] + 1 - span[0],
            in_w + 2 * options.padding[1] + 1 - span[1],
        ];
        // Spread: [n, o, out_h, 1, out_w, 1] padded with zeros to [n, o, out_h, sh, out_w, sw].
        let g = Tensor::<Self, 4>::from_primitive(TensorPrimitive::Float(output_grad));
        let g = g.reshape([n, o, out_h, 1, out_w, 1]);
        let g = fit_dim(fit_dim(g, 3, sh), 5, sw);
        let g = g.reshape([n, o, out_h * sh, out_w * sw]);
        let g = fit_dim(fit_dim(g, 2, full[0]), 3, full[1]);
        let unit_stride = DepthwiseOptions::new([1, 1], options.padding, options.dilation);
        fallback::x_backward::<Self>(x, weight, g.into_primitive().tensor(), unit_stride)
    }
}
