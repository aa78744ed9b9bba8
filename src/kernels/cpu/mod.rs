//! Fast depthwise conv2d kernels on dense NCHW `f32` slices, split with rayon over
//! `(batch, channel)` planes: the entry points for the CPU backends. The convolutions are
//! the `planes` module's zero-bordered plane kernels; the bias gradient is a per-channel
//! sum here.

use rayon::prelude::*;

use crate::kernels::DepthwiseShape;

pub mod conv;
pub(crate) mod gather;
pub mod nhwc;
pub mod norm_act;
mod planes;
pub mod pointwise;

pub use planes::{forward, weight_backward, x_backward};

/// Whether this CPU has AVX2 and FMA (x86-64; checked once, then cached by std).
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f` inlined into a function compiled for AVX2 and FMA where the CPU has them (the
/// crate is built for baseline x86-64, SSE2), else as built. The results are the same
/// either way for code without `mul_add` (Rust never contracts `a * b + c` on its own).
#[inline(always)]
pub(crate) fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn fast<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { fast(f) };
        }
    }
    f()
}

/// A vector of `len` elements that `fill` initialises, without zeroing them first (a
/// zero-filled output is a whole extra pass over memory at MobileNet sizes).
///
/// # Safety
/// `fill` must write every element of the slice it is given. The kernels that take a
/// `&mut [MaybeUninit<f32>]` output say so in their docs ("every element written").
pub(crate) unsafe fn uninit_vec(
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees that `fill` initialised all `len` elements.
    unsafe { values.set_len(len) };
    values
}

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
#[cfg_attr(not(feature = "internals"), allow(dead_code))] // the tests' and the bench's
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
