//! Fast depthwise conv2d kernels on dense NCHW `f32` slices, split with rayon over
//! `(batch, channel)` planes: the entry points for the CPU backends. The convolutions are
//! the `cpu_planes` module's zero-bordered plane kernels; the bias gradient is a per-channel
//! sum here.

use rayon::prelude::*;

use super::{DepthwiseShape, cpu_planes};

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
    cpu_planes::x_backward(s, weight, output_grad, grad);
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
