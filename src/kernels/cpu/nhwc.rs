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
//! order, so that the result does not depend on how many threads ran them). [`backward`]
//! computes all three gradients in one pass over those chunks, each taking the input rows
//! that match its output rows too.
//!
//! Weights keep the module's `[C * m, 1, kh, kw]` layout at the interface and are
//! transposed to `[kh * kw, C * m]` (a few KB) inside. The depth multiplier `m > 1` takes
//! a plain per-element path.
//!
//! On x86-64 the loops are compiled again for AVX2 + FMA and for AVX-512 and picked at run
//! time ([`CpuIsa`](super::CpuIsa); the crate is built for baseline x86-64).

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
    activation: impl Fn(f32) -> f32 + Copy,
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
    activation: impl Fn(f32) -> f32 + Copy,
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
        o.write(activation(v));
    }
}

/// `acc[c] += a[c] * b[c]`.
#[inline(always)]
fn mul_acc<M: MulAdd>(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
        *o = M::mul_add(x, y, *o);
    }
}

/// Defines `$name`, which runs `$body::<Fused>` compiled for AVX-512 or AVX2 (with FMA)
/// as [`CpuIsa::current`](super::CpuIsa::current) says, else `$body::<Plain>` for the
/// baseline target.
macro_rules! with_fma {
    ($name:ident => $body:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body::<Fused>($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body::<Fused>($($arg),*)
                }
                match super::CpuIsa::current() {
                    // SAFETY: `current` returns only instruction sets the CPU has.
                    super::CpuIsa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    super::CpuIsa::Avx2 => return unsafe { avx2($($arg),*) },
                    super::CpuIsa::Scalar => {}
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

/// One output row (`[out_w, C * m]`), with `activation` as a closure of its constant
/// variant so that the stores vectorise (a `match` per element does not).
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
    crate::kernels::activation::per_activation!(activation, |act, _deriv| {
        forward_row_with::<M>(s, x, wt, bias, act, r, out_row)
    })
}

#[inline(always)]
fn forward_row_with<M: MulAdd>(
    s: &DepthwiseShape,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    activation: impl Fn(f32) -> f32 + Copy,
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
                o.write(activation(v));
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
    let grads = Gradients {
        x: Some(grad),
        weight: None,
        bias: None,
    };
    backward(s, &[], weight, output_grad, grads);
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
            dot_taps::<M>(None, px, dy, wt, &taps, |v| v);
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
/// any thread count: `(rows per chunk, chunks)`.
fn row_chunking(rows: usize) -> (usize, usize) {
    let per_chunk = rows.div_ceil(REDUCTION_CHUNKS).max(1);
    (per_chunk, rows.div_ceil(per_chunk))
}

/// The gradients one [`backward`] call writes; `None` for those not wanted.
pub struct Gradients<'a> {
    /// Input gradient `[N, H, W, C]`: every element written, none read.
    pub x: Option<&'a mut [MaybeUninit<f32>]>,
    /// Weight gradient `[C * m, 1, kh, kw]`, overwritten.
    pub weight: Option<&'a mut [f32]>,
    /// Bias gradient `[C * m]`, overwritten.
    pub bias: Option<&'a mut [f32]>,
}

/// The input, weight and bias gradients of a forward on `x` (`[N, H, W, C]`) and `weight`
/// (`[C * m, 1, kh, kw]`), from `output_grad` (`[N, out_h, out_w, C * m]`), in one pass:
/// each work item takes a fixed run of output rows (the weight and bias partial sums, as
/// in [`weight_backward`] and [`bias_backward`], so the bits are theirs) and the matching
/// run of input rows (the input gradient, as in [`x_backward`]), interleaved so that the
/// rows of the output gradient the input gradient gathers are still in cache. On the
/// small late-stage maps every gradient is bound by memory traffic; one pass reads the
/// output gradient once instead of three times.
pub fn backward(
    s: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    output_grad: &[f32],
    grads: Gradients,
) {
    let (taps, oc) = (s.kernel[0] * s.kernel[1], s.out_channels());
    let (per_chunk, chunks) = row_chunking(s.batch * s.output[0]);
    let in_rows = s.batch * s.input[0];
    let in_per_chunk = in_rows.div_ceil(chunks).max(1);
    let in_row_len = s.input[1] * s.channels;
    let wt = match grads.x {
        Some(_) => taps_major(s, weight),
        None => Vec::new(),
    };
    let mut dx_parts: Vec<&mut [MaybeUninit<f32>]> = match grads.x {
        Some(dx) => dx.chunks_mut((in_per_chunk * in_row_len).max(1)).collect(),
        None => Vec::new(),
    };
    dx_parts.resize_with(chunks, Default::default);
    let (want_weight, want_bias) = (grads.weight.is_some(), grads.bias.is_some());
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(k, dx_part)| {
            let mut weight_acc = vec![0.0f32; if want_weight { taps * oc } else { 0 }];
            let mut bias_acc = vec![0.0f32; if want_bias { oc } else { 0 }];
            let chunk = Chunk {
                out_rows: k * per_chunk..((k + 1) * per_chunk).min(s.batch * s.output[0]),
                first_in_row: k * in_per_chunk,
            };
            let output = ChunkOutput {
                dx: dx_part,
                weight_acc: &mut weight_acc,
                bias_acc: &mut bias_acc,
            };
            backward_chunk_dispatch(s, x, &wt, output_grad, &chunk, output);
            (weight_acc, bias_acc)
        })
        .collect();
    if let Some(grad) = grads.weight {
        let mut sum = vec![0.0f32; taps * oc];
        add_in_order(&mut sum, partials.iter().map(|(w, _)| w));
        for (o, g) in grad.chunks_exact_mut(taps).enumerate() {
            for (t, v) in g.iter_mut().enumerate() {
                *v = sum[t * oc + o];
            }
        }
    }
    if let Some(grad) = grads.bias {
        grad.fill(0.0);
        add_in_order(grad, partials.iter().map(|(_, b)| b));
    }
}

/// One [`backward`] work item: its output rows (`n * out_h + oh`) and the first of its
/// input rows (`n * H + ih`).
struct Chunk {
    out_rows: std::ops::Range<usize>,
    first_in_row: usize,
}

/// What a [`backward`] work item writes: its rows of the input gradient, and its partial
/// weight and bias sums (empty when not wanted).
struct ChunkOutput<'a> {
    dx: &'a mut [MaybeUninit<f32>],
    weight_acc: &'a mut [f32],
    bias_acc: &'a mut [f32],
}

with_fma!(backward_chunk_dispatch => backward_chunk(
    s: &DepthwiseShape, x: &[f32], wt: &[f32], dy: &[f32], chunk: &Chunk,
    output: ChunkOutput
));

/// A [`backward`] work item: the weight and bias sums of its output rows into
/// `weight_acc` and `bias_acc` (skipped where empty), and the input gradient of the
/// `dx.len() / (W * C)` input rows from `chunk.first_in_row` into `dx`.
#[inline(always)]
fn backward_chunk<M: MulAdd>(
    s: &DepthwiseShape,
    x: &[f32],
    wt: &[f32],
    dy: &[f32],
    chunk: &Chunk,
    output: ChunkOutput,
) {
    let ChunkOutput {
        dx,
        weight_acc,
        bias_acc,
    } = output;
    let in_row_len = s.input[1] * s.channels;
    let out_row_len = s.output[1] * s.out_channels();
    let in_count = dx.len().checked_div(in_row_len).unwrap_or(0);
    let out_count = chunk.out_rows.len();
    // A plain loop, not a closure: a closure that is not inlined is compiled without the
    // caller's target features (a software `fmaf` call per multiply-add: 14x slower).
    let mut done = 0;
    for (t, r) in chunk.out_rows.clone().enumerate() {
        if !weight_acc.is_empty() {
            weight_backward_rows::<M>(s, x, dy, r..r + 1, weight_acc);
        }
        if !bias_acc.is_empty() {
            add_pixels(bias_acc, &dy[r * out_row_len..][..out_row_len]);
        }
        // The input rows in step with the output rows (twice as many at stride 2), the last
        // ones after the last output row.
        let due = if t + 1 == out_count {
            in_count
        } else {
            ((t + 1) * in_count).div_ceil(out_count)
        };
        while done < due {
            let row = &mut dx[done * in_row_len..][..in_row_len];
            x_backward_row::<M>(s, wt, dy, chunk.first_in_row + done, row);
            done += 1;
        }
    }
}

/// Weight gradient into `grad` (`[C * m, 1, kh, kw]`, fully overwritten) from `x`
/// (`[N, H, W, C]`) and `output_grad` (`[N, out_h, out_w, C * m]`).
pub fn weight_backward(s: &DepthwiseShape, x: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let grads = Gradients {
        x: None,
        weight: Some(grad),
        bias: None,
    };
    backward(s, x, &[], output_grad, grads);
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

/// `acc[c] += Σ_pixels row[pixel * C + c]` over a run of `[pixels, C]` values, pixel by
/// pixel.
fn add_pixels(acc: &mut [f32], row: &[f32]) {
    for pixel in row.chunks_exact(acc.len()) {
        for (a, &v) in acc.iter_mut().zip(pixel) {
            *a += v;
        }
    }
}

/// Bias gradient of a channels-last output gradient `[rows, pixels, C]` (rows = `N *
/// out_h`) into `sums` (`[C]`, overwritten): partial sums over the same fixed runs of
/// rows as [`backward`], so that the bits are the same as its.
pub fn bias_backward(rows: usize, values: &[f32], sums: &mut [f32]) {
    let (per_chunk, chunks) = row_chunking(rows);
    let row_len = values.len() / rows.max(1);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![0.0f32; sums.len()];
            let range = k * per_chunk..((k + 1) * per_chunk).min(rows);
            add_pixels(
                &mut acc,
                &values[range.start * row_len..range.end * row_len],
            );
            acc
        })
        .collect();
    sums.fill(0.0);
    add_in_order(sums, &partials);
}

/// `total += Σ partials`, added one partial after the other (work-item order, so that the
/// bits do not depend on the thread count).
fn add_in_order<'a>(total: &mut [f32], partials: impl IntoIterator<Item = &'a Vec<f32>>) {
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
}
