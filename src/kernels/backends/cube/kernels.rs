//! The depthwise conv as CubeCL kernels (`#[cube]`), generic over the runtime.
//!
//! Tensors are contiguous NCHW. With `m` the depth multiplier, output channel `o` reads
//! input channel `o / m`; weights are `[C * m, 1, kh, kw]`.
//!
//! Every kernel works on 2-D tiles: one unit computes `rows × cols` neighbouring elements
//! of one plane, loading each input row span those elements share once into registers
//! (a 3×3 stride-1 conv on a 1 × 16 tile: 3 rows of 18 loads for 144 multiply-adds instead
//! of 144 loads; a 4 × 4 map: 6 rows of 6 for all 16 outputs). The host side picks the
//! tiles (`mod.rs`: up to 16 columns, up to 4 rows, 16 elements for the forward and weight
//! gradient and 32 for the input gradient, as measured fastest on lavapipe).
//!
//! - forward and input gradient: one unit per tile of the result. The input gradient keeps,
//!   per element of the tile, only the taps that land on an output position (every stride,
//!   including strides wider than the dilated kernel); its tiles are a multiple of the
//!   stride in both directions and start on strides, so which taps those are is known at
//!   compile time ([`XGradAxis`]);
//! - weight and bias gradients: one launch per layer. `units` units per output channel each
//!   sum every `units`-th tile of the batch × output grid into their own partial sums
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
/// dilation (each `[height, width]`), depth multiplier, and the tile `[rows, cols]` of one
/// unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Geometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub multiplier: usize,
    pub tile: [usize; 2],
}

impl Geometry {
    /// Input rows (`axis` 0) or columns (1) a tile of outputs reads:
    /// `(tile − 1)·s + (k − 1)·d + 1`.
    pub fn input_span(&self, axis: usize) -> usize {
        (self.tile[axis] - 1) * self.stride[axis]
            + (self.kernel[axis] - 1) * self.dilation[axis]
            + 1
    }

    /// Kernel row `ky` of tile row `r` reads input row `r·s + ky·d` of the tile's span.
    pub fn reads_row(&self, r: usize, ky: usize, span_row: usize) -> bool {
        r * self.stride[0] + ky * self.dilation[0] == span_row
    }
}

/// One axis of the input gradient, for a tile of `tile` inputs starting at `i0`, a multiple
/// of the stride: the output-gradient positions it reads are `i0 / s + q` for `q` in
/// `[q_min, q_min + span)`, and tile position `t` takes tap `k` from `q` when
/// `t + p − k·d = q·s`; `taps` lists those as `(t, k, q − q_min)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct XGradAxis {
    /// `max(q_min, 0)` and `max(−q_min, 0)`: the span's first position is
    /// `i0 / s + first_plus − first_minus`.
    pub first_plus: usize,
    pub first_minus: usize,
    pub span: usize,
    pub taps: Vec<(usize, usize, usize)>,
}

impl XGradAxis {
    pub fn new(geometry: &Geometry, axis: usize) -> Self {
        let (s, p, d) = (
            geometry.stride[axis] as i64,
            geometry.padding[axis] as i64,
            geometry.dilation[axis] as i64,
        );
        let k = geometry.kernel[axis] as i64;
        let q_min = (p - (k - 1) * d).div_euclid(s);
        let q_max = (geometry.tile[axis] as i64 - 1 + p).div_euclid(s);
        let mut taps = Vec::new();
        for t in 0..geometry.tile[axis] as i64 {
            for tap in 0..k {
                let offset = t + p - tap * d;
                if offset.rem_euclid(s) == 0 {
                    taps.push((t as usize, tap as usize, (offset / s - q_min) as usize));
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

    /// The `(t, k)` pairs of `taps` that read span position `i`.
    pub fn reads(&self, t: usize, k: usize, i: usize) -> bool {
        self.taps.contains(&(t, k, i))
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

/// Zeroed accumulators.
#[cube]
fn zeros<F: Float>(#[comptime] len: usize) -> Array<F> {
    let mut values = Array::<F>::new(len);
    #[unroll]
    for i in 0..len {
        values[i] = F::new(0.0);
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
    tiles_h: FastDivmod<usize>,
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
    let dil_w = comptime![geometry.dilation[1]];
    let multiplier = comptime![geometry.multiplier];
    let rows = comptime![geometry.tile[0]];
    let cols = comptime![geometry.tile[1]];
    let span_h = comptime![geometry.input_span(0)];
    let span_w = comptime![geometry.input_span(1)];

    let (rest, tx) = tiles_w.div_mod(ABSOLUTE_POS);
    let (rest, ty) = tiles_h.div_mod(rest);
    let (n, o) = out_channels.div_mod(rest);
    let (in_h, in_w) = (x.shape(2), x.shape(3));
    let (out_h, out_w) = (output.shape(2), output.shape(3));
    let x_plane = (n * x.shape(1) + o / multiplier) * in_h * in_w;
    let (oy0, ox0) = (ty * rows, tx * cols);

    let mut weights = Array::<F>::new(kh * kw);
    #[unroll]
    for k in 0..kh * kw {
        weights[k] = weight[o * kh * kw + k];
    }
    let mut sums = zeros::<F>(rows * cols);
    #[unroll]
    for i in 0..span_h {
        let xs = load_padded_span::<F>(
            x,
            x_plane,
            oy0 * stride_h + i,
            ox0 * stride_w,
            in_h,
            in_w,
            pad_h,
            pad_w,
            span_w,
        );
        #[unroll]
        for r in 0..rows {
            #[unroll]
            for ky in 0..kh {
                if comptime![geometry.reads_row(r, ky, i)] {
                    #[unroll]
                    for kx in 0..kw {
                        let w = weights[ky * kw + kx];
                        #[unroll]
                        for t in 0..cols {
                            sums[r * cols + t] += xs[t * stride_w + kx * dil_w] * w;
                        }
                    }
                }
            }
        }
    }
    let mut b = F::new(0.0);
    if has_bias {
        b = bias[o];
    }
    let out_plane = (n * output.shape(1) + o) * out_h * out_w;
    #[unroll]
    for r in 0..rows {
        #[unroll]
        for t in 0..cols {
            if oy0 + r < out_h && ox0 + t < out_w {
                output[out_plane + (oy0 + r) * out_w + ox0 + t] = sums[r * cols + t] + b;
            }
        }
    }
}

/// Input gradient: `dx[n, c, iy, ix] = Σ_j Σ_taps dy[n, c·m + j, oy, ox] · w[c·m + j, ky, kx]`
/// over the taps where `iy + p − ky·d` and `ix + p − kx·d` are multiples of the stride,
/// `(oy, ox)` the quotients, inside the output (see [`XGradAxis`]).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn x_backward_kernel<F: Float>(
    weight: &Tensor<F>,
    output_grad: &Tensor<F>,
    x_grad: &mut Tensor<F>,
    units: usize,
    tiles_w: FastDivmod<usize>,
    tiles_h: FastDivmod<usize>,
    channels: FastDivmod<usize>,
    #[comptime] geometry: Geometry,
    #[comptime] along_h: XGradAxis,
    #[comptime] along_w: XGradAxis,
) {
    if ABSOLUTE_POS >= units {
        terminate!();
    }
    let kh = comptime![geometry.kernel[0]];
    let kw = comptime![geometry.kernel[1]];
    let stride_h = comptime![geometry.stride[0]];
    let stride_w = comptime![geometry.stride[1]];
    let multiplier = comptime![geometry.multiplier];
    let rows = comptime![geometry.tile[0]];
    let cols = comptime![geometry.tile[1]];
    let span_h = comptime![along_h.span];
    let span_w = comptime![along_w.span];
    let n_taps_w = comptime![along_w.taps.len()];

    let (rest, tx) = tiles_w.div_mod(ABSOLUTE_POS);
    let (rest, ty) = tiles_h.div_mod(rest);
    let (n, c) = channels.div_mod(rest);
    let (out_h, out_w) = (output_grad.shape(2), output_grad.shape(3));
    let (height, width) = (x_grad.shape(2), x_grad.shape(3));
    let (iy0, ix0) = (ty * rows, tx * cols);
    // The spans' first output-gradient row and column, shifted by `first_minus` to stay
    // unsigned.
    let row_shifted = iy0 / stride_h + comptime![along_h.first_plus];
    let col_shifted = ix0 / stride_w + comptime![along_w.first_plus];
    let (row_minus, col_minus) = (
        comptime![along_h.first_minus],
        comptime![along_w.first_minus],
    );

    let mut sums = zeros::<F>(rows * cols);
    #[unroll]
    for j in 0..multiplier {
        let o = c * multiplier + j;
        let g_plane = (n * output_grad.shape(1) + o) * out_h * out_w;
        let mut weights = Array::<F>::new(kh * kw);
        #[unroll]
        for k in 0..kh * kw {
            weights[k] = weight[o * kh * kw + k];
        }
        #[unroll]
        for i in 0..span_h {
            let g_row = row_shifted + i;
            let row_inside = g_row >= row_minus && g_row - row_minus < out_h;
            let g_start = g_plane + (g_row - row_minus) * out_w;
            let mut gs = Array::<F>::new(span_w);
            #[unroll]
            for q in 0..span_w {
                let col = col_shifted + q;
                let mut value = F::new(0.0);
                if row_inside && col >= col_minus && col - col_minus < out_w {
                    value = output_grad[g_start + col - col_minus];
                }
                gs[q] = value;
            }
            #[unroll]
            for r in 0..rows {
                #[unroll]
                for ky in 0..kh {
                    if comptime![along_h.reads(r, ky, i)] {
                        #[unroll]
                        for k in 0..n_taps_w {
                            let (t, kx, q) = comptime![along_w.taps[k]];
                            sums[r * cols + t] += gs[q] * weights[ky * kw + kx];
                        }
                    }
                }
            }
        }
    }
    let x_plane = (n * x_grad.shape(1) + c) * height * width;
    #[unroll]
    for r in 0..rows {
        #[unroll]
        for t in 0..cols {
            if iy0 + r < height && ix0 + t < width {
                x_grad[x_plane + (iy0 + r) * width + ix0 + t] = sums[r * cols + t];
            }
        }
    }
}

/// Weight-gradient partial sums: unit `o · units + u` sums, over tiles `u, u + units, ...`
/// of the batch × output grid, `dy[n, o, oy, ox] · x[n, o / m, oy·s + ky·d − p, ..]` for
/// every tap, into `partial[o·kh·kw + tap, u]`.
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
    tiles_h: FastDivmod<usize>,
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
    let dil_w = comptime![geometry.dilation[1]];
    let multiplier = comptime![geometry.multiplier];
    let rows = comptime![geometry.tile[0]];
    let cols = comptime![geometry.tile[1]];
    let span_h = comptime![geometry.input_span(0)];
    let span_w = comptime![geometry.input_span(1)];

    let (o, u) = units_per_channel.div_mod(ABSOLUTE_POS);
    let (in_h, in_w) = (x.shape(2), x.shape(3));
    let (out_channels, out_h, out_w) = (
        output_grad.shape(1),
        output_grad.shape(2),
        output_grad.shape(3),
    );
    let (channels, c) = (x.shape(1), o / multiplier);

    let mut sums = zeros::<F>(kh * kw);
    for item in range_stepped(u, tiles, per_channel) {
        let (rest, tx) = tiles_w.div_mod(item);
        let (n, ty) = tiles_h.div_mod(rest);
        let (oy0, ox0) = (ty * rows, tx * cols);
        let g_plane = (n * out_channels + o) * out_h * out_w;
        let mut gs = Array::<F>::new(rows * cols);
        #[unroll]
        for r in 0..rows {
            #[unroll]
            for t in 0..cols {
                let mut value = F::new(0.0);
                if oy0 + r < out_h && ox0 + t < out_w {
                    value = output_grad[g_plane + (oy0 + r) * out_w + ox0 + t];
                }
                gs[r * cols + t] = value;
            }
        }
        let x_plane = (n * channels + c) * in_h * in_w;
        #[unroll]
        for i in 0..span_h {
            let xs = load_padded_span::<F>(
                x,
                x_plane,
                oy0 * stride_h + i,
                ox0 * stride_w,
                in_h,
                in_w,
                pad_h,
                pad_w,
                span_w,
            );
            #[unroll]
            for r in 0..rows {
                #[unroll]
                for ky in 0..kh {
                    if comptime![geometry.reads_row(r, ky, i)] {
                        #[unroll]
                        for kx in 0..kw {
                            let mut sum = sums[ky * kw + kx];
                            #[unroll]
                            for t in 0..cols {
                                sum += gs[r * cols + t] * xs[t * stride_w + kx * dil_w];
                            }
                            sums[ky * kw + kx] = sum;
                        }
                    }
                }
            }
        }
    }
    #[unroll]
    for k in 0..kh * kw {
        partial[(o * kh * kw + k) * per_channel + u] = sums[k];
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
