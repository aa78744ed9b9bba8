//! Depthwise kernels on dense channels-last (`[N, H, W, C]`) `f32` slices.
//!
//! In NHWC the channels of one pixel are contiguous, so every kernel tap of one output
//! pixel is a multiply-add of two contiguous channel runs (input pixel × the tap's weights)
//! into an accumulator that stays in registers across the taps, up to 96 channels at a
//! time. Bounds checks are per pixel and tap, not per element, and there is no border
//! buffer: a tap that falls in the padding is simply skipped, which is what makes tiny
//! maps (4×4, 1×1) as fast per element as large ones. Work is split over output rows
//! (forward), input rows (input gradient, as a gather so that rows are independent) and a
//! fixed number of row chunks (weight and bias gradients, partial sums added in chunk
//! order, so that the result does not depend on how many threads ran them).
//!
//! Weights keep the module's `[C * m, 1, kh, kw]` layout at the interface and are
//! transposed to `[kh * kw, C * m]` (a few KB) inside. The depth multiplier `m > 1` takes
//! a plain per-element path.
//!
//! On x86-64 CPUs with AVX2 and FMA the loops are compiled a second time for them and
//! picked at run time (the crate is built for baseline x86-64).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::{Activation, DepthwiseShape};

/// Channels accumulated in registers at once (eight AVX2 vectors): a tap's multiply-add
/// on one vector waits for the previous tap's (4 cycles), so the wider the block, the
/// more of them overlap (16 channels at a time took 1.1–1.5× as long on the MobileNet
/// layers).
const BLOCK: usize = 64;

/// Twelve vectors, for channel counts it divides (96, 384, 576, 960 in MobileNets): the
/// 96-channel layers run 1.2–1.3× faster than as 64 + 32; as 96 + 48 the 144-channel
/// ones ran slower than as 64 + 64 + 16, so other counts keep [`BLOCK`].
const WIDE_BLOCK: usize = 96;

/// Work items the weight and bias gradients are split into: fixed, so that the partial
/// sums, and hence the bits of the result, do not depend on the thread count.
const REDUCTION_CHUNKS: usize = 32;

/// How a multiply-add is computed: fused where the CPU has FMA, plain otherwise (a
/// software `mul_add` would be slow). Fixed per machine, so results are reproducible.
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

struct Fused;
struct Plain;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Plain {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `out[c] = act(init[c] + Σ_taps a[tap.0 + c] * b[tap.1 + c])` for `c < out.len()`
/// (`init` zero when `None`), with the sums in registers: [`WIDE_BLOCK`] channels at a
/// time where they tile the channels, else [`BLOCK`] at a time, then 32, 16 and 8 for
/// what is left, then one by one. Each channel sums its taps in the same order whatever
/// the width. Writes every element of `out` and reads none.
#[inline(always)]
fn dot_taps<M: MulAdd>(
    init: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
    a: &[f32],
    b: &[f32],
    taps: &[(usize, usize)],
    activation: Activation,
) {
    let channels = out.len();
    let mut start = 0;
    if channels.is_multiple_of(WIDE_BLOCK) {
        while start < channels {
            dot_block::<M, WIDE_BLOCK>(init, out, a, b, taps, activation, start);
            start += WIDE_BLOCK;
        }
        return;
    }
    while start + BLOCK <= channels {
        dot_block::<M, BLOCK>(init, out, a, b, taps, activation, start);
        start += BLOCK;
    }
    if start + 32 <= channels {
        dot_block::<M, 32>(init, out, a, b, taps, activation, start);
        start += 32;
    }
    if start + 16 <= channels {
        dot_block::<M, 16>(init, out, a, b, taps, activation, start);
        start += 16;
    }
    if start + 8 <= channels {
        dot_block::<M, 8>(init, out, a, b, taps, activation, start);
        start += 8;
    }
    for c in start..channels {
        dot_block::<M, 1>(init, out, a, b, taps, activation, c);
    }
}

/// [`dot_taps`] for the `WIDTH` channels from `start`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dot_block<M: MulAdd, const WIDTH: usize>(
    init: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
    a: &[f32],
    b: &[f32],
    taps: &[(usize, usize)],
    activation: Activation,
    start: usize,
) {
    let mut block = [0.0f32; WIDTH];
    if let Some(init) = init {
        block.copy_from_slice(&init[start..start + WIDTH]);
    }
    for &(ia, ib) in taps {
        let a = &a[ia + start..ia + start + WIDTH];
        let b = &b[ib + start..ib + start + WIDTH];
        for l in 0..WIDTH {
            block[l] = M::mul_add(a[l], b[l], block[l]);
        }
    }
    for (o, v) in out[start..start + WIDTH].iter_mut().zip(block) {
        o.write(activation.apply_scalar(v));
    }
}

/// `acc[c] += a[c] * b[c]`.
#[inline(always)]
fn mul_acc<M: MulAdd>(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
        *o = M::mul_add(x, y, *o);
    }
}

/// Defines `$name`, which runs `$body::<Fused>` compiled for AVX2 + FMA where the CPU
/// has them, else `$body::<Plain>` for the baseline target.
macro_rules! with_fma {
    ($name:ident => $body:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn fast($($arg: $ty),*) {
                    $body::<Fused>($($arg),*)
                }
                if super::has_avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body::<Plain>($($arg),*)
        }
    };
}

with_fma!(forward_row_dispatch => forward_row(
    s: &DepthwiseShape, x: &[f32], wt: &[f32], bias: Option<&[f32]>,
    activation: Activation, r: usize, out_row: &mut [MaybeUninit<f32>]
));
with_fma!(x_backward_row_dispatch => x_backward_row(
    s: &DepthwiseShape, wt: &[f32], dy: &[f32], r: usize, grad_row: &mut [MaybeUninit<f32>]
));
with_fma!(weight_backward_rows_dispatch => weight_backward_rows(
    s: &DepthwiseShape, x: &[f32], dy: &[f32], rows: std::ops::Range<usize>, acc: &mut [f32]
));

/// Index of the input row or column that tap `k` of output `o` reads, if inside.
#[inline(always)]
fn source(o: usize, k: usize, stride: usize, pad: usize, dil: usize, len: usize) -> Option<usize> {
    (o * stride + k * dil).checked_sub(pad).filter(|&i| i < len)
}

/// Index of the output row or column whose tap `k` reads input `i`, if any.
#[inline(always)]
fn target(i: usize, k: usize, stride: usize, pad: usize, dil: usize, len: usize) -> Option<usize> {
    let t = (i + pad).checked_sub(k * dil)?;
    // Stride 1 (most layers) without the integer division, which cost more than the
    // multiply-adds of a 96-channel pixel.
    let o = if stride == 1 {
        t
    } else if t % stride == 0 {
        t / stride
    } else {
        return None;
    };
    (o < len).then_some(o)
}

/// `[C * m, 1, kh, kw]` weights as `[kh * kw, C * m]`.
fn taps_major(s: &DepthwiseShape, weight: &[f32]) -> Vec<f32> {
    let (taps, oc) = (s.kernel[0] * s.kernel[1], s.out_channels());
    let mut out = vec![0.0f32; taps * oc];
    for (o, w) in weight.chunks_exact(taps).enumerate() {
        for (t, &v) in w.iter().enumerate() {
            out[t * oc + o] = v;
        }
    }
    out
}

/// Forward into `out` (`[N, out_h, out_w, C * m]`, every element written, none read):
/// `x [N, H, W, C]`, `weight [C * m, 1, kh, kw]`, `bias [C * m]`, then `activation`
/// (fused: inference with BatchNorm folded into the weights and bias).
pub fn forward(
    s: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let wt = taps_major(s, weight);
    let row = s.output[1] * s.out_channels();
    out.par_chunks_mut(row.max(1))
        .enumerate()
        .for_each(|(r, out_row)| forward_row_dispatch(s, x, &wt, bias, activation, r, out_row));
}

#[inline(always)]
fn forward_row<M: MulAdd>(
    s: &DepthwiseShape,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    activation: Activation,
    r: usize,
    out_row: &mut [MaybeUninit<f32>],
) {
    let (c, oc, m) = (s.channels, s.out_channels(), s.multiplier);
    let [h, w] = s.input;
    let [kh, kw] = s.kernel;
    let o = &s.options;
    let (n, oh) = (r / s.output[0], r % s.output[0]);
    let mut taps = Vec::with_capacity(kh * kw);
    let mut sums = if m == 1 { Vec::new() } else { vec![0.0f32; oc] };
    for (ow, px) in out_row.chunks_exact_mut(oc).enumerate() {
        taps.clear();
        for i in 0..kh {
            let Some(ih) = source(oh, i, o.stride[0], o.padding[0], o.dilation[0], h) else {
                continue;
            };
            for j in 0..kw {
                if let Some(iw) = source(ow, j, o.stride[1], o.padding[1], o.dilation[1], w) {
                    taps.push((((n * h + ih) * w + iw) * c, (i * kw + j) * oc));
                }
            }
        }
        if m == 1 {
            dot_taps::<M>(bias, px, x, wt, &taps, activation);
        } else {
            match bias {
                Some(b) => sums.copy_from_slice(b),
                None => sums.fill(0.0),
            }
            for &(ix, iw) in &taps {
                for (co, acc) in sums.iter_mut().enumerate() {
                    *acc = M::mul_add(x[ix + co / m], wt[iw + co], *acc);
                }
            }
            for (o, &v) in px.iter_mut().zip(&sums) {
                o.write(activation.apply_scalar(v));
            }
        }
    }
}

/// Input gradient into `grad` (`[N, H, W, C]`, every element written, none read) from
/// `output_grad` (`[N, out_h, out_w, C * m]`).
pub fn x_backward(
    s: &DepthwiseShape,
    weight: &[f32],
    output_grad: &[f32],
    grad: &mut [MaybeUninit<f32>],
) {
    let wt = taps_major(s, weight);
    let row = s.input[1] * s.channels;
    grad.par_chunks_mut(row.max(1))
        .enumerate()
        .for_each(|(r, grad_row)| x_backward_row_dispatch(s, &wt, output_grad, r, grad_row));
}

#[inline(always)]
fn x_backward_row<M: MulAdd>(
    s: &DepthwiseShape,
    wt: &[f32],
    dy: &[f32],
    r: usize,
    grad_row: &mut [MaybeUninit<f32>],
) {
    let (c, oc, m) = (s.channels, s.out_channels(), s.multiplier);
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let o = &s.options;
    let (n, ih) = (r / s.input[0], r % s.input[0]);
    let mut taps = Vec::with_capacity(kh * kw);
    for (iw, px) in grad_row.chunks_exact_mut(c).enumerate() {
        taps.clear();
        for i in 0..kh {
            let Some(oh) = target(ih, i, o.stride[0], o.padding[0], o.dilation[0], out_h) else {
                continue;
            };
            for j in 0..kw {
                if let Some(ow) = target(iw, j, o.stride[1], o.padding[1], o.dilation[1], out_w) {
                    taps.push((((n * out_h + oh) * out_w + ow) * oc, (i * kw + j) * oc));
                }
            }
        }
        if m == 1 {
            dot_taps::<M>(None, px, dy, wt, &taps, Activation::Identity);
        } else {
            for (ci, out) in px.iter_mut().enumerate() {
                let mut acc = 0.0;
                for &(idy, iw) in &taps {
                    for co in ci * m..(ci + 1) * m {
                        acc = M::mul_add(dy[idy + co], wt[iw + co], acc);
                    }
                }
                out.write(acc);
            }
        }
    }
}

/// Splits `rows` rows into at most [`REDUCTION_CHUNKS`] consecutive ranges, the same for
/// any thread count.
fn row_chunks(rows: usize) -> impl IndexedParallelIterator<Item = std::ops::Range<usize>> {
    let per_chunk = rows.div_ceil(REDUCTION_CHUNKS).max(1);
    let chunks = rows.div_ceil(per_chunk);
    (0..chunks)
        .into_par_iter()
        .map(move |k| k * per_chunk..((k + 1) * per_chunk).min(rows))
}

/// Weight gradient into `grad` (`[C * m, 1, kh, kw]`, fully overwritten) from `x`
/// (`[N, H, W, C]`) and `output_grad` (`[N, out_h, out_w, C * m]`).
pub fn weight_backward(s: &DepthwiseShape, x: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let (taps, oc) = (s.kernel[0] * s.kernel[1], s.out_channels());
    let partials: Vec<Vec<f32>> = row_chunks(s.batch * s.output[0])
        .map(|rows| {
            let mut acc = vec![0.0f32; taps * oc];
            weight_backward_rows_dispatch(s, x, output_grad, rows, &mut acc);
            acc
        })
        .collect();
    let mut sum = vec![0.0f32; taps * oc];
    for partial in &partials {
        for (t, p) in sum.iter_mut().zip(partial) {
            *t += p;
        }
    }
    for (o, g) in grad.chunks_exact_mut(taps).enumerate() {
        for (t, v) in g.iter_mut().enumerate() {
            *v = sum[t * oc + o];
        }
    }
}

#[inline(always)]
fn weight_backward_rows<M: MulAdd>(
    s: &DepthwiseShape,
    x: &[f32],
    dy: &[f32],
    rows: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let (c, oc, m) = (s.channels, s.out_channels(), s.multiplier);
    let [h, w] = s.input;
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let o = &s.options;
    for r in rows {
        let (n, oh) = (r / out_h, r % out_h);
        for i in 0..kh {
            let Some(ih) = source(oh, i, o.stride[0], o.padding[0], o.dilation[0], h) else {
                continue;
            };
            for ow in 0..out_w {
                let g = &dy[(r * out_w + ow) * oc..][..oc];
                for j in 0..kw {
                    let Some(iw) = source(ow, j, o.stride[1], o.padding[1], o.dilation[1], w)
                    else {
                        continue;
                    };
                    let xs = &x[((n * h + ih) * w + iw) * c..][..c];
                    let a = &mut acc[(i * kw + j) * oc..][..oc];
                    if m == 1 {
                        mul_acc::<M>(a, xs, g);
                    } else {
                        for (co, v) in a.iter_mut().enumerate() {
                            *v = M::mul_add(xs[co / m], g[co], *v);
                        }
                    }
                }
            }
        }
    }
}

/// Column sums of a dense `[rows, channels]` matrix into `sums`: the bias gradient of a
/// channels-last output (`rows = N * H * W`).
pub fn row_sums(rows: usize, channels: usize, values: &[f32], sums: &mut [f32]) {
    let partials: Vec<Vec<f32>> = row_chunks(rows)
        .map(|range| {
            let mut acc = vec![0.0f32; channels];
            for r in range {
                for (a, &v) in acc.iter_mut().zip(&values[r * channels..][..channels]) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    sums.fill(0.0);
    for partial in &partials {
        for (s, p) in sums.iter_mut().zip(partial) {
            *s += p;
        }
    }
}
