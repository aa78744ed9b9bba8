//! The CubeCL backend family: the kernel traits for `CubeBackend<R, F, I, BT>` over every
//! CubeCL runtime (wgpu, Vulkan, Metal, WebGPU, CUDA, ROCm, Burn's CubeCL CPU backend).
//!
//! The depthwise conv and its three gradients run the crate's own CubeCL kernels
//! ([`kernels`]) on `f32` tensors, one launch each (plus one Burn `sum_dim` for the two
//! reductions). Burn 0.21's grouped `conv2d` on CubeCL cannot use its implicit-GEMM kernels
//! for groups, and its data-gradient kernel returns zeros when the stride is wider than the
//! dilated kernel. Other dtypes take the trait defaults (Burn's ops, with that stride case
//! worked around by [`fallback::x_backward_spreading_wide_strides`]).
//!
//! The pointwise conv and the fused BatchNorm + activation stay on Burn's ops: the first is
//! Burn's `matmul` (its GEMM kernels; on small maps as one product over all positions,
//! measured 10–17× faster there on lavapipe), the second element-wise work that Burn's fusion compiles
//! into few kernels (the trait defaults).

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
    fallback_pointwise_forward, fallback_pointwise_weight_backward, fallback_pointwise_x_backward,
    pointwise_rows_forward, pointwise_rows_weight_backward, pointwise_rows_x_backward,
};
use kernels::{Geometry, XGradAxis};

/// Maps of at most this many positions take the pointwise conv as one GEMM over `N·H·W`
/// rows; larger ones the default `N` batched products (lavapipe, BENCHMARKS.md: the rows
/// form is 10.5× and 17× faster at 2×2 and 1×1, 0.84–0.87× as fast at 8×8 and 16×16).
const POINTWISE_ROWS_MAX_PLANE: usize = 16;

fn small_plane<R: CubeRuntime>(t: &CubeTensor<R>) -> bool {
    let [_, _, h, w] = t.shape().dims::<4>();
    h * w <= POINTWISE_ROWS_MAX_PLANE
}

/// Pointwise conv through Burn's `matmul`: batched per image on large maps, one GEMM over
/// all positions on small ones.
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> PointwiseBackend
    for CubeBackend<R, F, I, BT>
{
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        if small_plane(&x) {
            pointwise_rows_forward::<Self>(x, weight)
        } else {
            fallback_pointwise_forward::<Self>(x, weight)
        }
    }

    fn pointwise_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if small_plane(&output_grad) {
            pointwise_rows_x_backward::<Self>(weight, output_grad)
        } else {
            fallback_pointwise_x_backward::<Self>(weight, output_grad)
        }
    }

    fn pointwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if small_plane(&x) {
            pointwise_rows_weight_backward::<Self>(x, output_grad)
        } else {
            fallback_pointwise_weight_backward::<Self>(x, output_grad)
        }
    }
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

/// Columns per unit of the input gradient: up to 16, a multiple of the stride (tiles start
/// on strides).
fn tile_width(width: usize, stride: usize) -> usize {
    width.clamp(1, 16).div_ceil(stride) * stride
}

/// Columns per unit of the forward and weight gradient: as many as 16 whose shared input span
/// (loaded once into registers) stays within 18 values; fewer on narrower maps.
fn tile_width_spanning(width: usize, kernel_w: usize, options: DepthwiseOptions) -> usize {
    let reach = (kernel_w - 1) * options.dilation[1] + 1;
    let fitting = if reach >= 18 {
        1
    } else {
        (18 - reach) / options.stride[1] + 1
    };
    width.clamp(1, 16).min(fitting)
}

/// Rows per unit for `cols` columns: up to 4 and `elements` per tile, no more than the map
/// has, rounded up to a multiple of `stride` (the input gradient's tiles start on strides;
/// 1 elsewhere).
fn tile_height(height: usize, cols: usize, elements: usize, stride: usize) -> usize {
    height.min(elements / cols).clamp(1, 4).div_ceil(stride) * stride
}

/// The kernels' compile-time geometry for a weight of shape `[C·m, 1, kh, kw]` over
/// `channels` input channels, with `tile` `[rows, cols]` per unit.
fn geometry(
    weight_shape: &Shape,
    channels: usize,
    options: DepthwiseOptions,
    tile: [usize; 2],
) -> Geometry {
    Geometry {
        kernel: [weight_shape[2], weight_shape[3]],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
        multiplier: weight_shape[0] / channels,
        tile,
    }
}

/// The tile of the forward and the weight gradient for an `[out_h, out_w]` output.
fn output_tile(output: [usize; 2], kernel_w: usize, options: DepthwiseOptions) -> [usize; 2] {
    let cols = tile_width_spanning(output[1], kernel_w, options);
    // 16 elements: larger tiles measured slower on lavapipe (register spills).
    [tile_height(output[0], cols, 16, 1), cols]
}

/// A new contiguous `f32` tensor on `like`'s device, every element to be written by a
/// kernel (so left uninitialised).
fn empty_like_device<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, DType::F32)
}

/// Launch size for `units` units.
fn launch_size<R: CubeRuntime>(client: &ComputeClient<R>, units: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new(client, units);
    (
        calculate_cube_count_elemwise(client, units, cube_dim),
        cube_dim,
    )
}

/// Units per output channel of the gradient reductions, for `tiles` row tiles per channel:
/// at least 4 tiles each, and enough units over all `out_channels` (~64k) to fill a GPU.
fn reduction_units(tiles: usize, out_channels: usize) -> usize {
    tiles
        .div_ceil(4)
        .min((65_536 / out_channels).max(64))
        .max(1)
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
    let tile = output_tile([out_h, out_w], kw, options);
    let geometry = geometry(&weight.shape(), channels, options, tile);
    let output = empty_like_device(&x, Shape::new([n, out_channels, out_h, out_w]));
    let (tiles_h, tiles_w) = (out_h.div_ceil(tile[0]), out_w.div_ceil(tile[1]));
    let units = n * out_channels * tiles_h * tiles_w;
    let (cube_count, cube_dim) = launch_size(&output.client, units);
    let has_bias = bias.is_some();
    // Without a bias the kernel never reads its bias argument; the weight stands in.
    let bias = bias.unwrap_or_else(|| weight.clone());
    // SAFETY: the kernel reads inputs only at positions inside their shapes (padding taps
    // are skipped, not read) and each unit writes its own tile of the output, columns
    // checked against the width.
    unsafe {
        kernels::forward_kernel::launch_unchecked::<f32, R>(
            &output.client,
            cube_count,
            cube_dim,
            into_contiguous(x).into_tensor_arg(),
            into_contiguous(weight).into_tensor_arg(),
            into_contiguous(bias).into_tensor_arg(),
            output.clone().into_tensor_arg(),
            units,
            tiles_w,
            tiles_h,
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
    let [n, channels, in_h, in_w] = x_shape.dims::<4>();
    let cols = tile_width(in_w, options.stride[1]);
    let tile = [tile_height(in_h, cols, 32, options.stride[0]), cols];
    let geometry = geometry(&weight.shape(), channels, options, tile);
    let (along_h, along_w) = (XGradAxis::new(&geometry, 0), XGradAxis::new(&geometry, 1));
    let x_grad = empty_like_device(&output_grad, x_shape);
    let (tiles_h, tiles_w) = (in_h.div_ceil(tile[0]), in_w.div_ceil(tile[1]));
    let units = n * channels * tiles_h * tiles_w;
    let (cube_count, cube_dim) = launch_size(&x_grad.client, units);
    // SAFETY: as in `forward`: reads are checked against the output gradient's shape, each
    // unit writes its own tile of the input gradient.
    unsafe {
        kernels::x_backward_kernel::launch_unchecked::<f32, R>(
            &x_grad.client,
            cube_count,
            cube_dim,
            into_contiguous(weight).into_tensor_arg(),
            into_contiguous(output_grad).into_tensor_arg(),
            x_grad.clone().into_tensor_arg(),
            units,
            tiles_w,
            tiles_h,
            channels,
            geometry,
            along_h,
            along_w,
        )
    };
    x_grad
}

/// Weight-gradient partial sums `[C·m·kh·kw, units per channel]`.
fn weight_backward_partial<R: CubeRuntime>(
    x: CubeTensor<R>,
    weight_shape: Shape,
    output_grad: CubeTensor<R>,
    options: DepthwiseOptions,
) -> CubeTensor<R> {
    let [out_channels, _, kh, kw] = weight_shape.dims::<4>();
    let [n, _, out_h, out_w] = output_grad.shape().dims::<4>();
    let tile = output_tile([out_h, out_w], kw, options);
    let geometry = geometry(&weight_shape, x.shape()[1], options, tile);
    let (tiles_h, tiles_w) = (out_h.div_ceil(tile[0]), out_w.div_ceil(tile[1]));
    let tiles = n * tiles_h * tiles_w;
    let per_channel = reduction_units(tiles, out_channels);
    let units = out_channels * per_channel;
    let partial = empty_like_device(&x, Shape::new([out_channels * kh * kw, per_channel]));
    let (cube_count, cube_dim) = launch_size(&partial.client, units);
    // SAFETY: reads are checked against the input (padding) and the output width; unit
    // `(o, u)` writes only `partial[o·kh·kw + tap, u]`.
    unsafe {
        kernels::weight_backward_kernel::launch_unchecked::<f32, R>(
            &partial.client,
            cube_count,
            cube_dim,
            into_contiguous(x).into_tensor_arg(),
            into_contiguous(output_grad).into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            units,
            tiles,
            per_channel,
            per_channel,
            tiles_w,
            tiles_h,
            geometry,
        )
    };
    partial
}

/// Bias-gradient partial sums `[C·m, units per channel]`.
fn bias_backward_partial<R: CubeRuntime>(output_grad: CubeTensor<R>) -> CubeTensor<R> {
    const CHUNK: usize = 16;
    let [n, out_channels, out_h, out_w] = output_grad.shape().dims::<4>();
    let chunks_per_plane = (out_h * out_w).div_ceil(CHUNK);
    let chunks = n * chunks_per_plane;
    let per_channel = reduction_units(chunks, out_channels);
    let units = out_channels * per_channel;
    let partial = empty_like_device(&output_grad, Shape::new([out_channels, per_channel]));
    let (cube_count, cube_dim) = launch_size(&partial.client, units);
    // SAFETY: reads are checked against the plane size; unit `(o, u)` writes `partial[o, u]`.
    unsafe {
        kernels::bias_backward_kernel::launch_unchecked::<f32, R>(
            &partial.client,
            cube_count,
            cube_dim,
            into_contiguous(output_grad).into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            units,
            chunks,
            per_channel,
            per_channel,
            chunks_per_plane,
            CHUNK,
        )
    };
    partial
}

/// Adds a `[rows, units]` tensor of partial sums along its units: `[rows, 1]`.
fn sum_chunks<B: FloatTensorOps<B> + burn::tensor::backend::Backend>(
    partial: FloatTensor<B>,
) -> FloatTensor<B> {
    if partial.shape()[1] == 1 {
        partial
    } else {
        B::float_sum_dim(partial, 1)
    }
}
