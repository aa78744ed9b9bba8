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

/// The instruction set the CPU kernels run on: each kernel is one generic source,
/// compiled for the baseline target (x86-64's SSE2, plain multiply then add) and again
/// for AVX2 + FMA and for AVX-512 (fused multiply-adds), and picked at run time.
///
/// The kernels vectorise over channels and sum every channel's terms in the same order on
/// every path, so AVX2 and AVX-512 give the same bits; `Scalar` (no FMA) rounds the
/// products separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuIsa {
    /// The baseline build.
    Scalar,
    /// AVX2 and FMA (256-bit vectors).
    Avx2,
    /// AVX-512F with AVX2 and FMA (512-bit vectors).
    Avx512,
}

/// The environment variable that forces a [`CpuIsa`] (`scalar`, `avx2`, `avx512`), for
/// tests and comparisons; read once per process.
pub const CPU_ISA_VARIABLE: &str = "DWCONV_CPU_ISA";

impl CpuIsa {
    /// Its name in [`CPU_ISA_VARIABLE`].
    pub fn name(self) -> &'static str {
        match self {
            CpuIsa::Scalar => "scalar",
            CpuIsa::Avx2 => "avx2",
            CpuIsa::Avx512 => "avx512",
        }
    }

    /// The instruction sets this CPU can run, from the baseline up.
    pub fn available() -> Vec<CpuIsa> {
        let mut isas = vec![CpuIsa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                isas.push(CpuIsa::Avx2);
                if std::is_x86_feature_detected!("avx512f") {
                    isas.push(CpuIsa::Avx512);
                }
            }
        }
        isas
    }

    /// The instruction set the kernels use: [`CPU_ISA_VARIABLE`]'s where it is set, else
    /// the widest this CPU has.
    ///
    /// # Panics
    /// When the variable names an instruction set that is unknown or that this CPU lacks.
    pub fn current() -> CpuIsa {
        static CURRENT: std::sync::OnceLock<CpuIsa> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| {
            let available = CpuIsa::available();
            let Some(wanted) = std::env::var_os(CPU_ISA_VARIABLE).filter(|v| !v.is_empty())
            else {
                return *available.last().expect("the baseline is always available");
            };
            let wanted = wanted.to_string_lossy();
            let names: Vec<&str> = available.iter().map(|isa| isa.name()).collect();
            available
                .iter()
                .copied()
                .find(|isa| isa.name() == wanted)
                .unwrap_or_else(|| {
                    panic!(
                        "{CPU_ISA_VARIABLE}={wanted}: expected one of this CPU's {}",
                        names.join(", ")
                    )
                })
        })
    }
}

/// Runs `f` inlined into a function compiled for [`CpuIsa::current`] (the crate is built
/// for baseline x86-64, SSE2). The results are the same on every path for code without
/// `mul_add` (Rust never contracts `a * b + c` on its own).
#[inline(always)]
pub(crate) fn with_isa<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match CpuIsa::current() {
            // SAFETY: `current` returns only instruction sets the CPU has.
            CpuIsa::Avx512 => return unsafe { avx512(f) },
            // SAFETY: as above.
            CpuIsa::Avx2 => return unsafe { avx2(f) },
            CpuIsa::Scalar => {}
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
