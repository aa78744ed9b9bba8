//! Fast depthwise conv2d kernels on dense NCHW `f32` slices.
//!
//! Stride 1 goes to [`cpu_unit_stride`]'s zero-bordered plane kernels; other strides use
//! the row kernels here. Work is split with rayon over `(batch, channel)` planes. Along the width each kernel
//! tap touches one contiguous run of output columns (computed once per call in
//! [`ColumnSpan`]), so the inner loops have no padding checks and, at stride 1, are plain
//! slice zips the compiler vectorises. The weight gradient reduces over the batch in
//! parallel chunks, so few-channel layers still use every thread.

use rayon::prelude::*;

use super::{DepthwiseShape, cpu_unit_stride};

/// For one kernel column tap: the output columns `[lo, hi)` whose input column is inside the
/// image, and the input column read by output column `lo`.
#[derive(Clone, Copy, Debug)]
struct ColumnSpan {
    lo: usize,
    hi: usize,
    input_start: usize,
}

/// Valid output range along one axis for tap `tap` (see [`ColumnSpan`]).
fn axis_span(input: usize, output: usize, stride: usize, pad: usize, offset: usize) -> ColumnSpan {
    // Input coordinate of output `o` is `o * stride + offset - pad`; keep `0 <= it < input`.
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    let hi = if input + pad > offset {
        ((input + pad - offset - 1) / stride + 1).min(output)
    } else {
        0
    };
    if hi <= lo {
        // The tap reads only padding: an empty span that touches nothing.
        return ColumnSpan {
            lo: 0,
            hi: 0,
            input_start: 0,
        };
    }
    ColumnSpan {
        lo,
        hi,
        input_start: (lo * stride + offset).saturating_sub(pad),
    }
}

fn column_spans(s: &DepthwiseShape) -> Vec<ColumnSpan> {
    (0..s.kernel[1])
        .map(|j| {
            axis_span(
                s.input[1],
                s.output[1],
                s.options.stride[1],
                s.options.padding[1],
                j * s.options.dilation[1],
            )
        })
        .collect()
}

/// Input row read by output row `oh` through kernel row `i`, if not in the padding.
#[inline]
fn input_row(s: &DepthwiseShape, oh: usize, i: usize) -> Option<usize> {
    let pos = oh * s.options.stride[0] + i * s.options.dilation[0];
    let pad = s.options.padding[0];
    (pos >= pad && pos - pad < s.input[0]).then(|| pos - pad)
}

/// `out[t] += w * x[t * stride]` for every `t` in `out`.
#[inline]
fn axpy_strided(out: &mut [f32], x: &[f32], stride: usize, w: f32) {
    if stride == 1 {
        let x = &x[..out.len()];
        for (o, &v) in out.iter_mut().zip(x) {
            *o += w * v;
        }
    } else {
        for (o, v) in out.iter_mut().zip(x.iter().step_by(stride)) {
            *o += w * v;
        }
    }
}

/// `x[t * stride] += w * g[t]` for every `t` in `g` (the scatter of the input gradient).
#[inline]
fn scatter_strided(x: &mut [f32], g: &[f32], stride: usize, w: f32) {
    if stride == 1 {
        for (v, &gv) in x[..g.len()].iter_mut().zip(g) {
            *v += w * gv;
        }
    } else {
        for (v, &gv) in x.iter_mut().step_by(stride).zip(g) {
            *v += w * gv;
        }
    }
}

/// `sum_t g[t] * x[t * stride]`, with eight partial sums so the stride-1 case vectorises.
#[inline]
fn dot_strided(g: &[f32], x: &[f32], stride: usize) -> f32 {
    if stride == 1 {
        let x = &x[..g.len()];
        let mut acc = [0.0f32; 8];
        let gc = g.chunks_exact(8);
        let xc = x.chunks_exact(8);
        let tail: f32 = gc
            .remainder()
            .iter()
            .zip(xc.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (ga, xa) in gc.zip(xc) {
            for k in 0..8 {
                acc[k] += ga[k] * xa[k];
            }
        }
        acc.iter().sum::<f32>() + tail
    } else {
        g.iter()
            .zip(x.iter().step_by(stride))
            .map(|(a, b)| a * b)
            .sum()
    }
}

/// Forward into `out` (`[N, C*m, out_h, out_w]`, fully overwritten).
pub fn forward(
    s: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let [in_h, in_w] = s.input;
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let oc = s.out_channels();
    let sw = s.options.stride[1];
    debug_assert_eq!(x.len(), s.batch * s.channels * in_h * in_w);
    debug_assert_eq!(out.len(), s.batch * oc * out_h * out_w);
    if out.is_empty() {
        return;
    }
    if s.options.stride == [1, 1] {
        return cpu_unit_stride::forward(s, x, weight, bias, out);
    }
    let spans = column_spans(s);
    out.par_chunks_mut(out_h * out_w)
        .enumerate()
        .for_each(|(plane, out_plane)| {
            let (n, o) = (plane / oc, plane % oc);
            let c = o / s.multiplier;
            let x_plane = &x[(n * s.channels + c) * in_h * in_w..][..in_h * in_w];
            let w = &weight[o * kh * kw..][..kh * kw];
            out_plane.fill(bias.map_or(0.0, |b| b[o]));
            for (oh, out_row) in out_plane.chunks_exact_mut(out_w).enumerate() {
                for i in 0..kh {
                    let Some(ih) = input_row(s, oh, i) else {
                        continue;
                    };
                    let x_row = &x_plane[ih * in_w..][..in_w];
                    for (j, span) in spans.iter().enumerate() {
                        axpy_strided(
                            &mut out_row[span.lo..span.hi],
                            &x_row[span.input_start..],
                            sw,
                            w[i * kw + j],
                        );
                    }
                }
            }
        });
}

/// Input gradient into `grad` (`[N, C, H, W]`, fully overwritten).
pub fn x_backward(s: &DepthwiseShape, weight: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let [in_h, in_w] = s.input;
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let oc = s.out_channels();
    let sw = s.options.stride[1];
    if grad.is_empty() {
        return;
    }
    if s.options.stride == [1, 1] {
        return cpu_unit_stride::x_backward(s, weight, output_grad, grad);
    }
    let spans = column_spans(s);
    grad.par_chunks_mut(in_h * in_w)
        .enumerate()
        .for_each(|(plane, grad_plane)| {
            let (n, c) = (plane / s.channels, plane % s.channels);
            grad_plane.fill(0.0);
            for o in c * s.multiplier..(c + 1) * s.multiplier {
                let g_plane = &output_grad[(n * oc + o) * out_h * out_w..][..out_h * out_w];
                let w = &weight[o * kh * kw..][..kh * kw];
                for (oh, g_row) in g_plane.chunks_exact(out_w).enumerate() {
                    for i in 0..kh {
                        let Some(ih) = input_row(s, oh, i) else {
                            continue;
                        };
                        let x_row = &mut grad_plane[ih * in_w..][..in_w];
                        for (j, span) in spans.iter().enumerate() {
                            scatter_strided(
                                &mut x_row[span.input_start..],
                                &g_row[span.lo..span.hi],
                                sw,
                                w[i * kw + j],
                            );
                        }
                    }
                }
            }
        });
}

/// Weight gradient into `grad` (`[C*m, 1, kh, kw]`, fully overwritten).
pub fn weight_backward(s: &DepthwiseShape, x: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let [in_h, in_w] = s.input;
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let oc = s.out_channels();
    if s.options.stride == [1, 1] {
        return cpu_unit_stride::weight_backward(s, x, output_grad, grad);
    }
    let sw = s.options.stride[1];
    let spans = column_spans(s);
    let taps = kh * kw;
    // Split the batch so that there are several work items per thread even when the
    // layer has few channels; each item writes its own partial sums, reduced below.
    let threads = rayon::current_num_threads().max(1);
    let chunks = (4 * threads).div_ceil(oc).clamp(1, s.batch.max(1));
    let per_chunk = s.batch.div_ceil(chunks).max(1);
    let chunks = s.batch.div_ceil(per_chunk).max(1);
    let mut partial = vec![0.0f32; chunks * oc * taps];
    partial
        .par_chunks_mut(taps)
        .enumerate()
        .for_each(|(item, acc)| {
            let (chunk, o) = (item / oc, item % oc);
            let c = o / s.multiplier;
            for n in chunk * per_chunk..((chunk + 1) * per_chunk).min(s.batch) {
                let x_plane = &x[(n * s.channels + c) * in_h * in_w..][..in_h * in_w];
                let g_plane = &output_grad[(n * oc + o) * out_h * out_w..][..out_h * out_w];
                for (oh, g_row) in g_plane.chunks_exact(out_w).enumerate() {
                    for i in 0..kh {
                        let Some(ih) = input_row(s, oh, i) else {
                            continue;
                        };
                        let x_row = &x_plane[ih * in_w..][..in_w];
                        for (j, span) in spans.iter().enumerate() {
                            acc[i * kw + j] += dot_strided(
                                &g_row[span.lo..span.hi],
                                &x_row[span.input_start..],
                                sw,
                            );
                        }
                    }
                }
            }
        });
    grad.fill(0.0);
    for chunk in partial.chunks_exact(oc * taps) {
        for (g, p) in grad.iter_mut().zip(chunk) {
            *g += p;
        }
    }
}

/// Bias gradient into `grad` (`[C*m]`): the output gradient summed over batch and space.
pub fn bias_backward(s: &DepthwiseShape, output_grad: &[f32], grad: &mut [f32]) {
    let plane = s.output[0] * s.output[1];
    bias_sums(s.batch, s.out_channels(), plane, output_grad, grad);
}

/// Per-channel sums of a dense `[batch, channels, plane]` tensor into `sums` (`[channels]`).
pub fn bias_sums(batch: usize, channels: usize, plane: usize, values: &[f32], sums: &mut [f32]) {
    sums.par_iter_mut().enumerate().for_each(|(c, sum)| {
        *sum = (0..batch)
            .map(|n| {
                values[(n * channels + c) * plane..][..plane]
                    .iter()
                    .sum::<f32>()
            })
            .sum();
    });
}
