//! The depthwise conv as CubeCL kernels (`#[cube]`), generic over the runtime.
//!
//! Tensors are contiguous NCHW. With `m` the depth multiplier, output channel `o` reads
//! input channel `o / m`; weights are `[C * m, 1, kh, kw]`.
//!
//! - forward and input gradient: one unit per element of the result, each summing its
//!   kernel window (the input gradient tests, per tap, whether the tap lands on an output
//!   position: every stride, including strides wider than the dilated kernel);
//! - weight and bias gradients: one launch per layer. Each cube reduces one weight tap (or
//!   one bias) over a chunk of the batch × output positions, first per unit, then as a tree
//!   in shared memory; the chunks' partial sums are added by one Burn `sum_dim`.
//!
//! The kernel size, stride, padding, dilation and depth multiplier are compile-time
//! values: the tap loops unroll and every division by them is by a constant. Divisions by
//! shapes use [`FastDivmod`] (multiply and shift): CPU Vulkan devices (lavapipe) have no
//! vector integer division, and a kernel dividing per element runs ~50× slower there.

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::std::FastDivmod;

/// Units per cube of the reduction kernels (a power of two: the tree halves it).
pub(super) const REDUCE_CUBE_SIZE: u32 = 256;

/// The compile-time geometry of one depthwise conv: kernel `[kh, kw]`, stride, padding,
/// dilation (each `[height, width]`) and depth multiplier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Geometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub multiplier: usize,
}

/// Forward: `out[n, o, oy, ox] = bias[o] + Σ x[n, o / m, oy·s + ky·d − p, ..] · w[o, ky, kx]`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    output: &mut Tensor<F>,
    out_w: FastDivmod<usize>,
    out_h: FastDivmod<usize>,
    out_channels: FastDivmod<usize>,
    #[comptime] geometry: Geometry,
    #[comptime] has_bias: bool,
) {
    if ABSOLUTE_POS >= output.len() {
        terminate!();
    }
    let kh = comptime![geometry.kernel[0]];
    let kw = comptime![geometry.kernel[1]];
    let stride_h = comptime![geometry.stride[0]];
    let stride_w = comptime![geometry.stride[1]];
    let pad_h = comptime![geometry.padding[0]];
    let pad_w = comptime![geometry.padding[1]];
    let dil_h = comptime![geometry.dilation[0]];
    let dil_w = comptime![geometry.dilation[1]];
    let multiplier = comptime![geometry.multiplier];

    let (rest, ox) = out_w.div_mod(ABSOLUTE_POS);
    let (rest, oy) = out_h.div_mod(rest);
    let (n, o) = out_channels.div_mod(rest);
    let (in_h, in_w) = (x.shape(2), x.shape(3));
    let x_base = (n * x.shape(1) + o / multiplier) * in_h * in_w;
    let w_base = o * kh * kw;

    let mut sum = F::new(0.0);
    #[unroll]
    for ky in 0..kh {
        // Padded row; the tap is inside the image when it is in [pad, pad + in_h).
        let row = oy * stride_h + ky * dil_h;
        let row_inside = row >= pad_h && row < pad_h + in_h;
        #[unroll]
        for kx in 0..kw {
            let col = ox * stride_w + kx * dil_w;
            if row_inside && col >= pad_w && col < pad_w + in_w {
                sum +=
                    x[x_base + (row - pad_h) * in_w + col - pad_w] * weight[w_base + ky * kw + kx];
            }
        }
    }
    if has_bias {
        sum += bias[o];
    }
    output[ABSOLUTE_POS] = sum;
}

/// Input gradient: `dx[n, c, iy, ix] = Σ_j Σ_taps dy[n, c·m + j, oy, ox] · w[c·m + j, ky, kx]`
/// over the taps where `iy + p − ky·d` is a multiple of the stride, `oy` its quotient,
/// inside the output.
#[cube(launch_unchecked)]
pub(super) fn x_backward_kernel<F: Float>(
    weight: &Tensor<F>,
    output_grad: &Tensor<F>,
    x_grad: &mut Tensor<F>,
    in_w: FastDivmod<usize>,
    in_h: FastDivmod<usize>,
    channels: FastDivmod<usize>,
    #[comptime] geometry: Geometry,
) {
    if ABSOLUTE_POS >= x_grad.len() {
        terminate!();
    }
    let kh = comptime![geometry.kernel[0]];
    let kw = comptime![geometry.kernel[1]];
    let stride_h = comptime![geometry.stride[0]];
    let stride_w = comptime![geometry.stride[1]];
    let pad_h = comptime![geometry.padding[0]];
    let pad_w = comptime![geometry.padding[1]];
    let dil_h = comptime![geometry.dilation[0]];
    let dil_w = comptime![geometry.dilation[1]];
    let multiplier = comptime![geometry.multiplier];

    let (rest, ix) = in_w.div_mod(ABSOLUTE_POS);
    let (rest, iy) = in_h.div_mod(rest);
    let (n, c) = channels.div_mod(rest);
    let (out_h, out_w) = (output_grad.shape(2), output_grad.shape(3));
    let row = iy + pad_h;
    let col = ix + pad_w;

    let mut sum = F::new(0.0);
    #[unroll]
    for j in 0..multiplier {
        let o = c * multiplier + j;
        let g_base = (n * output_grad.shape(1) + o) * out_h * out_w;
        let w_base = o * kh * kw;
        #[unroll]
        for ky in 0..kh {
            let tap_h = ky * dil_h;
            // `row - tap_h` wraps when negative; the first test rejects that case.
            let oy = (row - tap_h) / stride_h;
            let row_hit = row >= tap_h && (row - tap_h) == oy * stride_h && oy < out_h;
            #[unroll]
            for kx in 0..kw {
                let tap_w = kx * dil_w;
                let ox = (col - tap_w) / stride_w;
                if row_hit && col >= tap_w && (col - tap_w) == ox * stride_w && ox < out_w {
                    sum += output_grad[g_base + oy * out_w + ox] * weight[w_base + ky * kw + kx];
                }
            }
        }
    }
    x_grad[ABSOLUTE_POS] = sum;
}

/// Adds `value` over the cube in shared memory; unit 0 gets the sum.
#[cube]
fn cube_sum<F: Float>(value: F) -> F {
    let mut shared = SharedMemory::<F>::new(REDUCE_CUBE_SIZE as usize);
    let unit = UNIT_POS as usize;
    shared[unit] = value;
    sync_cube();
    // `CUBE_DIM` (= REDUCE_CUBE_SIZE) rather than the constant: CubeCL loops may only
    // mutate runtime values.
    let mut half = (CUBE_DIM / 2) as usize;
    while half > 0 {
        if unit < half {
            let other = shared[unit + half];
            shared[unit] += other;
        }
        sync_cube();
        half /= 2;
    }
    shared[0]
}

/// Weight-gradient partial sums: cube `row · chunks + chunk` (row = `o · kh·kw + tap`) sums
/// `dy[n, o, oy, ox] · x[n, o / m, oy·s + ky·d − p, ..]` over positions
/// `[chunk · chunk_len, (chunk + 1) · chunk_len)` of the batch × output grid, into
/// `partial[row, chunk]` (`[C·m·kh·kw, chunks]`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_backward_kernel<F: Float>(
    x: &Tensor<F>,
    output_grad: &Tensor<F>,
    partial: &mut Tensor<F>,
    out_w: FastDivmod<usize>,
    out_plane: FastDivmod<usize>,
    chunk_len: usize,
    #[comptime] geometry: Geometry,
) {
    let chunks = partial.shape(1);
    if CUBE_POS >= partial.shape(0) * chunks {
        terminate!();
    }
    let kh = comptime![geometry.kernel[0]];
    let kw = comptime![geometry.kernel[1]];
    let stride_h = comptime![geometry.stride[0]];
    let stride_w = comptime![geometry.stride[1]];
    let pad_h = comptime![geometry.padding[0]];
    let pad_w = comptime![geometry.padding[1]];
    let dil_h = comptime![geometry.dilation[0]];
    let dil_w = comptime![geometry.dilation[1]];
    let multiplier = comptime![geometry.multiplier];

    let row = CUBE_POS / chunks;
    let chunk = CUBE_POS % chunks;
    let o = row / (kh * kw);
    let tap = row % (kh * kw);
    let (tap_h, tap_w) = ((tap / kw) * dil_h, (tap % kw) * dil_w);
    let (in_h, in_w) = (x.shape(2), x.shape(3));
    let out_channels = output_grad.shape(1);
    let plane = output_grad.shape(2) * output_grad.shape(3);
    let positions = output_grad.shape(0) * plane;
    let mut end = chunk * chunk_len + chunk_len;
    if end > positions {
        end = positions;
    }
    let (channels, c) = (x.shape(1), o / multiplier);

    let mut sum = F::new(0.0);
    for p in range_stepped(
        chunk * chunk_len + UNIT_POS as usize,
        end,
        CUBE_DIM as usize,
    ) {
        let (n, s) = out_plane.div_mod(p);
        let (oy, ox) = out_w.div_mod(s);
        let row_in = oy * stride_h + tap_h;
        let col_in = ox * stride_w + tap_w;
        if row_in >= pad_h && row_in < pad_h + in_h && col_in >= pad_w && col_in < pad_w + in_w {
            let g = output_grad[(n * out_channels + o) * plane + s];
            let v = x[((n * channels + c) * in_h + row_in - pad_h) * in_w + col_in - pad_w];
            sum += g * v;
        }
    }
    let total = cube_sum::<F>(sum);
    if UNIT_POS == 0 {
        partial[CUBE_POS] = total;
    }
}

/// Bias-gradient partial sums: cube `o · chunks + chunk` sums `dy[n, o, .., ..]` over
/// positions `[chunk · chunk_len, (chunk + 1) · chunk_len)` of the batch × output grid, into
/// `partial[o, chunk]` (`[C·m, chunks]`).
#[cube(launch_unchecked)]
pub(super) fn bias_backward_kernel<F: Float>(
    output_grad: &Tensor<F>,
    partial: &mut Tensor<F>,
    out_plane: FastDivmod<usize>,
    chunk_len: usize,
) {
    let chunks = partial.shape(1);
    if CUBE_POS >= partial.shape(0) * chunks {
        terminate!();
    }
    let o = CUBE_POS / chunks;
    let chunk = CUBE_POS % chunks;
    let out_channels = output_grad.shape(1);
    let plane = output_grad.shape(2) * output_grad.shape(3);
    let positions = output_grad.shape(0) * plane;
    let mut end = chunk * chunk_len + chunk_len;
    if end > positions {
        end = positions;
    }

    let mut sum = F::new(0.0);
    for p in range_stepped(
        chunk * chunk_len + UNIT_POS as usize,
        end,
        CUBE_DIM as usize,
    ) {
        let (n, s) = out_plane.div_mod(p);
        sum += output_grad[(n * out_channels + o) * plane + s];
    }
    let total = cube_sum::<F>(sum);
    if UNIT_POS == 0 {
        partial[CUBE_POS] = total;
    }
}
