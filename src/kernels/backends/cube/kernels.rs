//! The depthwise conv as CubeCL kernels (`#[cube]`), generic over the runtime.
//!
//! Tensors are contiguous NCHW. With `m` the depth multiplier, output channel `o` reads
//! input channel `o / m`; weights are `[C * m, 1, kh, kw]`.
//!
//! Every kernel works on row tiles: one unit computes `tile` neighbouring columns of one
//! row, loading the input span those columns share once into registers (for a 3×3
//! stride-1 conv and a tile of 4: 18 input loads for 36 multiply-adds instead of 36).
//!
//! - forward and input gradient: one unit per row tile of the result. The input gradient
//!   keeps, per column of the tile, only the taps that land on an output position (every
//!   stride, including strides wider than the dilated kernel); tiles are a multiple of the
//!   stride wide, so which taps those are is known at compile time ([`XGradColumns`]);
//! - weight and bias gradients: one launch per layer. `units` units per output channel each
//!   sum every `units`-th row tile of the batch × output grid into their own partial sums
//!   (`[C·m·kh·kw, units]`), which one Burn `sum_dim` adds: no shared memory, no barriers.
//!
//! Kernel size, stride, padding, dilation, depth multiplier and tile are compile-time
//! values: the tap loops unroll and divisions by them are by constants. Divisions by
//! shapes use [`FastDivmod`] (multiply and shift): CPU Vulkan devices (lavapipe) have no
//! vector integer division, and a kernel dividing per element runs several times slower
//! there.

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::std::FastDivmod;

/// The compile-time geometry of one depthwise conv: kernel `[kh, kw]`, stride, padding,
/// dilation (each `[height, width]`), depth multiplier, and the columns per unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Geometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub multiplier: usize,
    pub tile: usize,
}

impl Geometry {
    /// Input columns a tile of `tile` output columns reads: `(tile − 1)·s + (kw − 1)·d + 1`.
    pub fn input_span(&self) -> usize {
        (self.tile - 1) * self.stride[1] + (self.kernel[1] - 1) * self.dilation[1] + 1
    }
}

/// For the input gradient of a row tile starting at input column `ix0` (a multiple of the
/// stride): the output-gradient columns it reads are `ix0 / s + q` for `q` in
/// `[q_min, q_min + span)`, and column `t` of the tile takes tap `kx` from `q` when
/// `t + p − kx·d = q·s` (the taps listed in `taps` as `(t, kx, q − q_min)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct XGradColumns {
    /// `max(q_min, 0)` and `max(−q_min, 0)`: the span's first column is
    /// `ix0 / s + first_plus − first_minus`.
    pub first_plus: usize,
    pub first_minus: usize,
    pub span: usize,
    pub taps: Vec<(usize, usize, usize)>,
}

impl XGradColumns {
    pub fn new(geometry: &Geometry) -> Self {
        let (s, p, d) = (
            geometry.stride[1] as i64,
            geometry.padding[1] as i64,
            geometry.dilation[1] as i64,
        );
        let kw = geometry.kernel[1] as i64;
        let q_min = (p - (kw - 1) * d).div_euclid(s);
        let q_max = (geometry.tile as i64 - 1 + p).div_euclid(s);
        let mut taps = Vec::new();
        for t in 0..geometry.tile as i64 {
            for kx in 0..kw {
                let offset = t + p - kx * d;
                if offset.rem_euclid(s) == 0 {
                    taps.push((t as usize, kx as usize, (offset / s - q_min) as usize));
                }
            }
        }
        Self {
            first_plus: q_min.max(0) as usize,
            first_minus: (-q_min).max(0) as usize,
            span: (q_max - q_min + 1) as usize,
            taps,
        }
    }
}

/// Loads `span` values of row `row` (padded coordinates) of plane `plane` from padded column
/// `col0` on, zero outside the `height × width` image.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_padded_span<F: Float>(
    input: &Tensor<F>,
    plane: usize,
    row: usize,
    col0: usize,
    height: usize,
    width: usize,
    #[comptime] pad_h: usize,
    #[comptime] pad_w: usize,
    #[comptime] span: usize,
) -> Array<F> {
    let mut values = Array::<F>::new(span);
    let row_inside = row >= pad_h && row < pad_h + height;
    // Wraps when the row is outside; then never read.
    let start = plane + (row - pad_h) * width;
    #[unroll]
    for i in 0..span {
        let col = col0 + i;
        let mut value = F::new(0.0);
        if row_inside && col >= pad_w && col < pad_w + width {
            value = input[start + col - pad_w];
        }
        values[i] = value;
    }
    values
}

/// Forward: `out[n, o, oy, ox] = bias[o] + Σ x[n, o / m, oy·s + ky·d − p, ..] · w[o, ky, kx]`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    output: &mut Tensor<F>,
    units: usize,
    tiles_w: FastDivmod<usize>,
    out_h: FastDivmod<usize>,
    out_channels: FastDivmod<usize>,
    #[comptime] geometry: Geometry,
    #[comptime] has_bias: bool,
) {
    if ABSOLUTE_POS >= units {
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
    let tile = comptime![geometry.tile];
    let span = comptime![geometry.input_span()];

    let (rest, tx) = tiles_w.div_mod(ABSOLUTE_POS);
    let (rest, oy) = out_h.div_mod(rest);
    let (n, o) = out_channels.div_mod(rest);
    let (in_h, in_w) = (x.shape(2), x.shape(3));
    let (out_rows, out_w) = (output.shape(2), output.shape(3));
    let x_plane = (n * x.shape(1) + o / multiplier) * in_h * in_w;
    let ox0 = tx * tile;

    let mut sums = Array::<F>::new(tile);
    #[unroll]
    for t in 0..tile {
        sums[t] = F::new(0.0);
    }
    #[unroll]
    for ky in 0..kh {
        let xs = load_padded_span::<F>(
            x,
            x_plane,
            oy * stride_h + ky * dil_h,
            ox0 * stride_w,
            in_h,
            in_w,
            pad_h,
            pad_w,
            span,
        );
        #[unroll]
        for kx in 0..kw {
            let w = weight[(o * kh + ky) * kw + kx];
            #[unroll]
            for t in 0..tile {
                sums[t] += xs[t * stride_w + kx * dil_w] * w;
            }
        }
    }
    let mut b = F::new(0.0);
    if has_bias {
        b = bias[o];
    }
    let out_row = ((n * output.shape(1) + o) * out_rows + oy) * out_w;
    #[unroll]
    for t in 0..tile {
        if ox0 + t < out_w {
            output[out_row + ox0 + t] = sums[t] + b;
        }
    }
}

/// Input gradient: `dx[n, c, iy, ix] = Σ_j Σ_taps dy[n, c·m + j, oy, ox] · w[c·m + j, ky, kx]`
/// over the taps where `iy + p − ky·d` is a multiple of the stride, `oy` its quotient,
/// inside the output (and the same along the columns, see [`XGradColumns`]).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn x_backward_kernel<F: Float>(
    weight: &Tensor<F>,
    output_grad: &Tensor<F>,
    x_grad: &mut Tensor<F>,
    units: usize,
    tiles_w: FastDivmod<usize>,
    in_h: FastDivmod<usize>,
    channels: FastDivmod<usize>,
    #[comptime] geometry: Geometry,
    #[comptime] columns: XGradColumns,
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let kh = comptime![geometry.kernel[0]];
    let kw = comptime![geometry.kernel[1]];
    let stride_h = comptime![geometry.stride[0]];
    let stride_w = comptime![geometry.stride[1]];
    let pad_h = comptime![geometry.padding[0]];
    let dil_h = comptime![geometry.dilation[0]];
    let multiplier = comptime![geometry.multiplier];
    let tile = comptime![geometry.tile];
    let span = comptime![columns.span];
    let first_plus = comptime![columns.first_plus];
    let first_minus = comptime![columns.first_minus];
    let n_taps = comptime![columns.taps.len()];

    let (rest, tx) = tiles_w.div_mod(ABSOLUTE_POS);
    let (rest, iy) = in_h.div_mod(rest);
    let (n, c) = channels.div_mod(rest);
    let (out_h, out_w) = (output_grad.shape(2), output_grad.shape(3));
    let (rows, width) = (x_grad.shape(2), x_grad.shape(3));
    let ix0 = tx * tile;
    let row = iy + pad_h;
    // The span's first output-gradient column, shifted by `first_minus` to stay unsigned.
    let col_shifted = ix0 / stride_w + first_plus;

    let mut sums = Array::<F>::new(tile);
    #[unroll]
    for t in 0..tile {
        sums[t] = F::new(0.0);
    }
    #[unroll]
    for j in 0..multiplier {
        let o = c * multiplier + j;
        let g_plane = (n * output_grad.shape(1) + o) * out_h * out_w;
        #[unroll]
        for ky in 0..kh {
            let tap_h = ky * dil_h;
            // `row - tap_h` wraps when negative; the first test rejects that case.
            let oy = (row - tap_h) / stride_h;
            let row_hit = row >= tap_h && (row - tap_h) == oy * stride_h && oy < out_h;
            let g_row = g_plane + oy * out_w;
            let mut gs = Array::<F>::new(span);
            #[unroll]
            for i in 0..span {
                let col = col_shifted + i;
                let mut value = F::new(0.0);
                if row_hit && col >= first_minus && col - first_minus < out_w {
                    value = output_grad[g_row + col - first_minus];
                }
                gs[i] = value;
            }
            #[unroll]
            for k in 0..n_taps {
                let (t, kx, i) = comptime![columns.taps[k]];
                sums[t] += gs[i] * weight[(o * kh + ky) * kw + kx];
            }
        }
    }
    let x_row = ((n * x_grad.shape(1) + c) * rows + iy) * width;
    #[unroll]
    for t in 0..tile {
        if ix0 + t < width {
            x_grad[x_row + ix0 + t] = sums[t];
        }
    }
}

/// Weight-gradient partial sums: unit `o · units + u` sums, over row tiles `u, u + units,
/// ...` of the batch × output grid, `dy[n, o, oy, ox] · x[n, o / m, oy·s + ky·d − p, ..]`
/// for every tap, into `partial[o·kh·kw + tap, u]`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_backward_kernel<F: Float>(
    x: &Tensor<F>,
    output_grad: &Tensor<F>,
    partial: &mut Tensor<F>,
    units: usize,
    tiles: usize,
    per_channel: usize,
    units_per_channel: FastDivmod<usize>,
    tiles_w: FastDivmod<usize>,
    out_h: FastDivmod<usize>,
    #[comptime] geometry: Geometry,
) {
    if ABSOLUTE_POS >= units {
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
    let tile = comptime![geometry.tile];
    let span = comptime![geometry.input_span()];
    let taps = comptime![geometry.kernel[0] * geometry.kernel[1]];

    let (o, u) = units_per_channel.div_mod(ABSOLUTE_POS);
    let (in_h, in_w) = (x.shape(2), x.shape(3));
    let (out_channels, out_rows, out_w) = (
        output_grad.shape(1),
        output_grad.shape(2),
        output_grad.shape(3),
    );
    let (channels, c) = (x.shape(1), o / multiplier);

    let mut sums = Array::<F>::new(taps);
    #[unroll]
    for k in 0..taps {
        sums[k] = F::new(0.0);
    }
    for item in range_stepped(u, tiles, per_channel) {
        let (rest, tx) = tiles_w.div_mod(item);
        let (n, oy) = out_h.div_mod(rest);
        let ox0 = tx * tile;
        let g_row = ((n * out_channels + o) * out_rows + oy) * out_w;
        let mut gs = Array::<F>::new(tile);
        #[unroll]
        for t in 0..tile {
            let mut value = F::new(0.0);
            if ox0 + t < out_w {
                value = output_grad[g_row + ox0 + t];
            }
            gs[t] = value;
        }
        let x_plane = (n * channels + c) * in_h * in_w;
        #[unroll]
        for ky in 0..kh {
            let xs = load_padded_span::<F>(
                x,
                x_plane,
                oy * stride_h + ky * dil_h,
                ox0 * stride_w,
                in_h,
                in_w,
                pad_h,
                pad_w,
                span,
            );
            #[unroll]
            for kx in 0..kw {
                let mut sum = sums[ky * kw + kx];
                #[unroll]
                for t in 0..tile {
                    sum += gs[t] * xs[t * stride_w + kx * dil_w];
                }
                sums[ky * kw + kx] = sum;
            }
        }
    }
    #[unroll]
    for k in 0..taps {
        partial[(o * taps + k) * per_channel + u] = sums[k];
    }
}

/// Bias-gradient partial sums: unit `o · units + u` sums `dy[n, o, .., ..]` over chunks
/// `u, u + units, ...` of `chunk` consecutive elements of its planes into `partial[o, u]`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn bias_backward_kernel<F: Float>(
    output_grad: &Tensor<F>,
    partial: &mut Tensor<F>,
    units: usize,
    chunks: usize,
    per_channel: usize,
    units_per_channel: FastDivmod<usize>,
    chunks_per_plane: FastDivmod<usize>,
    #[comptime] chunk: usize,
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let (o, u) = units_per_channel.div_mod(ABSOLUTE_POS);
    let out_channels = output_grad.shape(1);
    let plane = output_grad.shape(2) * output_grad.shape(3);

    let mut sum = F::new(0.0);
    for item in range_stepped(u, chunks, per_channel) {
        let (n, k) = chunks_per_plane.div_mod(item);
        let start = k * chunk;
        let base = (n * out_channels + o) * plane + start;
        #[unroll]
        for i in 0..chunk {
            if start + i < plane {
                sum += output_grad[base + i];
            }
        }
    }
    partial[ABSOLUTE_POS] = sum;
}
