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
    DepthwiseBackend, DepthwiseOptions, NormActBackend, PointwiseBackend, fallback,
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
        fallback::x_backward_spreading_wide_strides::<Self>(x, weight, output_grad, options)
    }
}
