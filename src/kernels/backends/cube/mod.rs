//! The CubeCL backend family: the kernel traits for `CubeBackend<R, F, I, BT>` over every
//! CubeCL runtime (wgpu, Vulkan, Metal, WebGPU, CUDA, ROCm, Burn's CubeCL CPU backend).
//!
//! The depthwise conv and its three gradients run the crate's own CubeCL kernels
//! ([`kernels`]) on `f32` tensors: Burn 0.21's grouped `conv2d` on CubeCL takes a direct
//! kernel for the forward and loops once per channel for the weight gradient (one launch
//! per channel), and its data-gradient kernel returns zeros when the stride is wider than
//! the dilated kernel. Other dtypes take the trait defaults (Burn's ops, with that stride
//! case worked around by [`fallback::x_backward_spreading_wide_strides`]).
//!
//! The pointwise conv and the fused BatchNorm + activation stay on Burn's ops (the trait
//! defaults): the first is one `matmul` (Burn's GEMM kernels), the second element-wise
//! work that Burn's fusion compiles into few kernels.

mod kernels;

use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Shape, TensorMetadata, ops::FloatTensor};
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::kernels::{
    DepthwiseBackend, DepthwiseOptions, NormActBackend, PointwiseBackend, fallback,
};
use kernels::{Geometry, REDUCE_CUBE_SIZE};

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
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        if !all_f32([Some(&x), Some(&weight), bias.as_ref()]) {
            return fallback::forward::<Self>(x, weight, bias, options);
        }
        forward(x, weight, bias, options)
    }

    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        if !all_f32([Some(&x), Some(&weight), Some(&output_grad)]) {
            return fallback::x_backward_spreading_wide_strides::<Self>(
                x,
                weight,
                output_grad,
                options,
            );
        }
        x_backward(x.shape(), weight, output_grad, options)
    }

    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        if !all_f32([Some(&x), Some(&weight), Some(&output_grad)]) {
            return fallback::weight_backward::<Self>(x, weight, output_grad, options);
        }
        let partial = weight_backward_partial(x, weight.shape(), output_grad, options);
        Self::float_reshape(sum_chunks::<Self>(partial), weight.shape())
    }

    fn depthwise_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if output_grad.dtype != DType::F32 {
            return fallback::bias_backward::<Self>(output_grad);
        }
        let out_channels = output_grad.shape()[1];
        let partial = bias_backward_partial(output_grad);
        Self::float_reshape(sum_chunks::<Self>(partial), Shape::new([out_channels]))
    }
}

/// Whether every present tensor holds `f32` (what the kernels are launched for).
fn all_f32<R: CubeRuntime, const N: usize>(tensors: [Option<&CubeTensor<R>>; N]) -> bool {
    tensors.iter().flatten().all(|t| t.dtype == DType::F32)
}

/// The kernels' compile-time geometry for a weight of shape `[C·m, 1, kh, kw]` over `channels`
/// input channels.
fn geometry(weight_shape: &Shape, channels: usize, options: DepthwiseOptions) -> Geometry {
    Geometry {
        kernel: [weight_shape[2], weight_shape[3]],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
        multiplier: weight_shape[0] / channels,
    }
}

/// A new contiguous `f32` tensor on `like`'s device, every element to be written by a
/// kernel (so left uninitialised).
fn empty_like_device<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, DType::F32)
}

/// Launch size for one unit per element of `output`.
fn elementwise_launch<R: CubeRuntime>(output: &CubeTensor<R>) -> (CubeCount, CubeDim) {
    let units = output.shape().num_elements();
    let cube_dim = CubeDim::new(&output.client, units);
    let cube_count = calculate_cube_count_elemwise(&output.client, units, cube_dim);
    (cube_count, cube_dim)
}

/// Launch size for `cubes` reduction cubes (the kernels read their linear `CUBE_POS` and
/// stop past `cubes`, so a count spread over several axes is fine).
fn reduction_launch<R: CubeRuntime>(
    client: &ComputeClient<R>,
    cubes: usize,
) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new_1d(REDUCE_CUBE_SIZE);
    let units = cubes * REDUCE_CUBE_SIZE as usize;
    (
        calculate_cube_count_elemwise(client, units, cube_dim),
        cube_dim,
    )
}

/// Positions of the batch × output grid each reduction cube sums: 16 per unit, so that
/// large layers spread over many cubes and small ones over one per tap.
fn reduction_chunks(positions: usize) -> (usize, usize) {
    let chunk_len = 16 * REDUCE_CUBE_SIZE as usize;
    (chunk_len, positions.div_ceil(chunk_len).max(1))
}

fn forward<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight: CubeTensor<R>,
    bias: Option<CubeTensor<R>>,
    options: DepthwiseOptions,
) -> CubeTensor<R> {
    let [n, channels, h, w] = x.shape().dims::<4>();
    let [out_channels, _, kh, kw] = weight.shape().dims::<4>();
    let [out_h, out_w] = options
        .output_size([h, w], [kh, kw])
        .expect("shapes checked by depthwise_conv2d");
    let geometry = geometry(&weight.shape(), channels, options);
    let output = empty_like_device(&x, Shape::new([n, out_channels, out_h, out_w]));
    let (cube_count, cube_dim) = elementwise_launch(&output);
    let has_bias = bias.is_some();
    // Without a bias the kernel never reads its bias argument; the weight stands in.
    let bias = bias.unwrap_or_else(|| weight.clone());
    // SAFETY: every index the kernel reads is derived from the tensors' own shapes and
    // strides and checked against them (padding taps are skipped), and each unit writes
    // only its own output element, guarded by `output.len()`.
    unsafe {
        kernels::forward_kernel::launch_unchecked::<f32, R>(
            &output.client,
            cube_count,
            cube_dim,
            into_contiguous(x).into_tensor_arg(),
            into_contiguous(weight).into_tensor_arg(),
            into_contiguous(bias).into_tensor_arg(),
            output.clone().into_tensor_arg(),
            out_w,
            out_h,
            out_channels,
            geometry,
            has_bias,
        )
    };
    output
}

fn x_backward<R: CubeRuntime>(
    x_shape: Shape,
    weight: CubeTensor<R>,
    output_grad: CubeTensor<R>,
    options: DepthwiseOptions,
) -> CubeTensor<R> {
    let [_, channels, in_h, in_w] = x_shape.dims::<4>();
    let geometry = geometry(&weight.shape(), channels, options);
    let x_grad = empty_like_device(&output_grad, x_shape);
    let (cube_count, cube_dim) = elementwise_launch(&x_grad);
    // SAFETY: as in `forward`: indices come from the tensors' shapes and strides, output
    // positions are bounds-checked by the kernel, each unit writes its own element.
    unsafe {
        kernels::x_backward_kernel::launch_unchecked::<f32, R>(
            &x_grad.client,
            cube_count,
            cube_dim,
            into_contiguous(weight).into_tensor_arg(),
            into_contiguous(output_grad).into_tensor_arg(),
            x_grad.clone().into_tensor_arg(),
            in_w,
            in_h,
            channels,
            geometry,
        )
    };
    x_grad
}

/// Weight-gradient partial sums `[C·m·kh·kw, chunks]`.
fn weight_backward_partial<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight_shape: Shape,
    output_grad: CubeTensor<R>,
    options: DepthwiseOptions,
) -> CubeTensor<R> {
    let [out_channels, _, kh, kw] = weight_shape.dims::<4>();
    let [n, _, out_h, out_w] = output_grad.shape().dims::<4>();
    let geometry = geometry(&weight_shape, x.shape()[1], options);
    let (chunk_len, chunks) = reduction_chunks(n * out_h * out_w);
    let rows = out_channels * kh * kw;
    let partial = empty_like_device(&x, Shape::new([rows, chunks]));
    let (cube_count, cube_dim) = reduction_launch(&partial.client, rows * chunks);
    // SAFETY: cube `CUBE_POS < rows · chunks` writes `partial[CUBE_POS]` only; reads are
    // bounds-checked against the input (padding) and the chunk's end.
    unsafe {
        kernels::weight_backward_kernel::launch_unchecked::<f32, R>(
            &partial.client,
            cube_count,
            cube_dim,
            into_contiguous(x).into_tensor_arg(),
            into_contiguous(output_grad).into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            out_w,
            out_h * out_w,
            chunk_len,
            geometry,
        )
    };
    partial
}

/// Bias-gradient partial sums `[C·m, chunks]`.
fn bias_backward_partial<R: CubeRuntime>(output_grad: CubeTensor<R>) -> CubeTensor<R> {
    let [n, out_channels, out_h, out_w] = output_grad.shape().dims::<4>();
    let (chunk_len, chunks) = reduction_chunks(n * out_h * out_w);
    let partial = empty_like_device(&output_grad, Shape::new([out_channels, chunks]));
    let (cube_count, cube_dim) = reduction_launch(&partial.client, out_channels * chunks);
    // SAFETY: as in `weight_backward_partial`.
    unsafe {
        kernels::bias_backward_kernel::launch_unchecked::<f32, R>(
            &partial.client,
            cube_count,
            cube_dim,
            into_contiguous(output_grad).into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            out_h * out_w,
            chunk_len,
        )
    };
    partial
}

/// Adds a `[rows, chunks]` tensor of partial sums along its chunks: `[rows, 1]`.
fn sum_chunks<B: FloatTensorOps<B> + burn::tensor::backend::Backend>(
    partial: FloatTensor<B>,
) -> FloatTensor<B> {
    if partial.shape()[1] == 1 {
        partial
    } else {
        B::float_sum_dim(partial, 1)
    }
}
