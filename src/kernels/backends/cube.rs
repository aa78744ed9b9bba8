//! The CubeCL backend family: the kernel traits for `CubeBackend<R, F, I, BT>` over every
//! CubeCL runtime (wgpu, Vulkan, Metal, WebGPU, CUDA, ROCm, Burn's CubeCL CPU backend).
//!
//! Forward and weight gradient use the default methods (Burn's grouped `conv2d` and its
//! weight gradient on the GPU, the bias added as a separate broadcast because Burn's
//! depthwise GPU kernel refuses a bias).
//!
//! The input gradient works around a Burn 0.21 CubeCL bug: its data-gradient kernel returns
//! zeros when the stride is larger than the dilated kernel (input rows or columns that the
//! forward never reads), which the reference tests catch. For those geometries the
//! gradient is computed as that of the equivalent stride-1 conv, whose output gradient is
//! the original one spread out with zeros between its elements
//! ([`fallback::spread_to_unit_stride`]).

use burn::tensor::ops::FloatTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::kernels::{
    DepthwiseBackend, DepthwiseOptions, NormActBackend, PointwiseBackend, fallback, primitive_dims,
};

/// Pointwise conv through the default (Burn `matmul`) implementations.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> PointwiseBackend
    for CubeBackend<R, F, I, BT>
{
}

/// Fused BatchNorm + activation through the default (Burn tensor op) implementations.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> NormActBackend
    for CubeBackend<R, F, I, BT>
{
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DepthwiseBackend
    for CubeBackend<R, F, I, BT>
{
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let [_, _, in_h, in_w] = primitive_dims::<Self>(&x);
        let [_, _, kh, kw] = primitive_dims::<Self>(&weight);
        let span = [
            options.dilation[0] * (kh - 1) + 1,
            options.dilation[1] * (kw - 1) + 1,
        ];
        if options.stride[0] <= span[0] && options.stride[1] <= span[1] {
            return fallback::x_backward::<Self>(x, weight, output_grad, options);
        }
        let g =
            fallback::spread_to_unit_stride::<Self>(output_grad, [in_h, in_w], [kh, kw], options);
        let unit_stride = DepthwiseOptions::new([1, 1], options.padding, options.dilation);
        fallback::x_backward::<Self>(x, weight, g, unit_stride)
    }
}
