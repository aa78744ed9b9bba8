//! Fast depthwise conv2d kernels on dense NCHW `f32` slices, split with rayon over
//! `(batch, channel)` planes: the entry points for the CPU backends. The convolutions are
//! the `planes` module's zero-bordered plane kernels; the bias gradient is a per-channel
//! sum here.

use rayon::prelude::*;

use crate::kernels::DepthwiseShape;

pub mod nhwc;
pub mod norm_act;
mod planes;
pub mod pointwise;

pub use planes::{forward, weight_backward, x_backward};

/// `out` = the sum of `partial`'s consecutive `out.len()`-long chunks (per-work-item
/// partial sums of a reduction).
pub(crate) fn sum_partials(partial: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for chunk in partial.chunks_exact(out.len()) {
        for (o, p) in out.iter_mut().zip(chunk) {
            *o += p;
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
