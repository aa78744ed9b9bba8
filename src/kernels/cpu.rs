//! Fast depthwise conv2d kernels on dense NCHW `f32` slices, split with rayon over
//! `(batch, channel)` planes.
//!
//! The forward pass and the weight gradient (any stride), and the input gradient at stride
//! 1, are the `cpu_planes` module's zero-bordered plane kernels. The input gradient at larger
//! strides is a scatter by rows here: along the width each kernel tap touches one
//! contiguous run of output columns (computed once per call in `ColumnSpan`), so the
//! inner loops have no padding checks.

use rayon::prelude::*;

use super::{DepthwiseShape, cpu_planes};

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

/// Forward into `out` (`[N, C*m, out_h, out_w]`, fully overwritten).
pub fn forward(
    s: &DepthwiseShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    debug_assert_eq!(x.len(), s.batch * s.channels * s.input[0] * s.input[1]);
    debug_assert_eq!(
        out.len(),
        s.batch * s.out_channels() * s.output[0] * s.output[1]
    );
    cpu_planes::forward(s, x, weight, bias, out);
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
        return cpu_planes::x_backward(s, weight, output_grad, grad);
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
    cpu_planes::weight_backward(s, x, output_grad, grad);
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
