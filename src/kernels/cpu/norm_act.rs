//! Fused BatchNorm + activation kernels on dense NCHW `f32` slices.
//!
//! Burn's BatchNorm in training is about ten element-wise passes forward and more
//! backward, each a separate (single-threaded on ndarray) op with its own allocation;
//! here the forward is two passes (statistics, normalise + activate) and the backward two
//! (per-channel sums, input gradient), parallel over channels or planes with rayon.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::Activation;
use crate::kernels::activation::per_activation;

/// Planes per rayon work item, so that tiny maps (1×1, 2×2) do not make tiny tasks.
fn min_planes(plane: usize) -> usize {
    (4096 / plane.max(1)).max(1)
}

/// Geometry of an NCHW tensor for per-channel work.
#[derive(Clone, Copy, Debug)]
pub struct Planes {
    /// Batch size `N`.
    pub batch: usize,
    /// Channels `C`.
    pub channels: usize,
    /// `H * W`.
    pub plane: usize,
}

impl Planes {
    fn channel<'a>(&self, values: &'a [f32], n: usize, c: usize) -> &'a [f32] {
        &values[(n * self.channels + c) * self.plane..][..self.plane]
    }

    /// Plane `index` (`n * C + c`) of a dense NCHW tensor.
    fn plane<'a>(&self, values: &'a [f32], index: usize) -> &'a [f32] {
        &values[index * self.plane..][..self.plane]
    }

    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }
}

/// Per-channel mean and biased variance of `x` (two passes, f64 accumulation).
pub fn channel_stats(p: Planes, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    if p.plane == 1 {
        return rows::channel_stats(p, x, mean, var);
    }
    mean.par_iter_mut()
        .zip(var.par_iter_mut())
        .enumerate()
        .for_each(|(c, (mean, var))| {
            let sum: f64 = (0..p.batch)
                .map(|n| p.channel(x, n, c).iter().sum::<f32>() as f64)
                .sum();
            let m = sum / p.count();
            let mf = m as f32;
            let squares: f64 = (0..p.batch)
                .map(|n| {
                    p.channel(x, n, c)
                        .iter()
                        .map(|&v| (v - mf) * (v - mf))
                        .sum::<f32>() as f64
                })
                .sum();
            *mean = mf;
            *var = (squares / p.count()) as f32;
        });
}

/// Calls `f(plane_index, channel, out_plane)` for every `(n, c)` plane of `out`, in
/// parallel, with several tiny planes per task.
fn for_each_plane(
    p: Planes,
    out: &mut [MaybeUninit<f32>],
    f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) {
    out.par_chunks_mut(p.plane.max(1))
        .with_min_len(min_planes(p.plane))
        .enumerate()
        .for_each(|(index, out)| f(index, index % p.channels, out));
}

/// `out = act(x * scale[c] + shift[c])`.
pub fn affine_act(
    p: Planes,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    activation: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    if p.plane == 1 {
        return rows::map(p, x, out, activation, |c| (scale[c], shift[c]));
    }
    per_activation!(activation, |act, _deriv| {
        for_each_plane(p, out, |index, c, out| {
            let (a, b) = (scale[c], shift[c]);
            for (o, &v) in out.iter_mut().zip(p.plane(x, index)) {
                o.write(act(v * a + b));
            }
        })
    });
}

/// `1 / sqrt(var + eps)` per channel, computed the same way in forward and backward.
pub fn inverse_std(var: &[f32], epsilon: f64) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect()
}

#[allow(clippy::too_many_arguments)]
/// `out = act(((x - mean) * invstd) * gamma + beta)`: the training forward, written with
/// the same expression as the backward's recomputation so that both see the same
/// pre-activation at the activation's kinks.
pub fn normalize_act(
    p: Planes,
    x: &[f32],
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    activation: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    if p.plane == 1 {
        // (v - m) * s * g + b as v * (s * g) + (b - m * s * g) would round differently
        // from the backward's recomputation: keep the expression, per element.
        return rows::normalize_act(p, x, mean, invstd, gamma, beta, activation, out);
    }
    per_activation!(activation, |act, _deriv| {
        for_each_plane(p, out, |index, c, out| {
            let (m, s, g, b) = (mean[c], invstd[c], gamma[c], beta[c]);
            for (o, &v) in out.iter_mut().zip(p.plane(x, index)) {
                o.write(act((v - m) * s * g + b));
            }
        })
    });
}

/// Gradients of `y = act(gamma * (x - mean) / sqrt(var + eps) + beta)` with batch
/// statistics (`mean`, `var` of `x` itself): writes `dx` and returns
/// `(dgamma, dbeta)`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    p: Planes,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    activation: Activation,
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
) -> (Vec<f32>, Vec<f32>) {
    let invstd = inverse_std(var, epsilon);
    if p.plane == 1 {
        return rows::backward(p, x, gamma, beta, mean, &invstd, activation, dy, dx);
    }
    per_activation!(activation, |_act, deriv| {
        planes_backward(p, x, gamma, beta, mean, &invstd, deriv, dy, dx)
    })
}

/// [`backward`] on planes of more than one element, `deriv` the activation's derivative.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn planes_backward(
    p: Planes,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    deriv: impl Fn(f32) -> f32 + Copy + Sync,
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
) -> (Vec<f32>, Vec<f32>) {
    // Pass 1, per channel: dbeta = sum(dz), dgamma = sum(dz * xhat), dz = dy * act'(z).
    let sums: Vec<(f32, f32)> = (0..p.channels)
        .into_par_iter()
        .map(|c| {
            let (m, s, g, b) = (mean[c], invstd[c], gamma[c], beta[c]);
            let (mut sum_dz, mut sum_dz_xhat) = (0.0f64, 0.0f64);
            for n in 0..p.batch {
                let (mut a, mut bsum) = (0.0f32, 0.0f32);
                for (&v, &d) in p.channel(x, n, c).iter().zip(p.channel(dy, n, c)) {
                    let xhat = (v - m) * s;
                    let dz = d * deriv(xhat * g + b);
                    a += dz;
                    bsum += dz * xhat;
                }
                sum_dz += a as f64;
                sum_dz_xhat += bsum as f64;
            }
            (sum_dz as f32, sum_dz_xhat as f32)
        })
        .collect();
    // Pass 2: dx = gamma * invstd * (dz - mean(dz) - xhat * mean(dz * xhat)).
    let count = p.count() as f32;
    for_each_plane(p, dx, |index, c, dx| {
        let (m, s, g, b) = (mean[c], invstd[c], gamma[c], beta[c]);
        let (sum_dz, sum_dz_xhat) = sums[c];
        let (mean_dz, mean_dz_xhat) = (sum_dz / count, sum_dz_xhat / count);
        let k = g * s;
        let (x, dy) = (p.plane(x, index), p.plane(dy, index));
        for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
            let xhat = (v - m) * s;
            let dz = d * deriv(xhat * g + b);
            o.write(k * (dz - mean_dz - xhat * mean_dz_xhat));
        }
    });
    sums.into_iter().map(|(dz, dzx)| (dzx, dz)).unzip()
}

/// The same kernels for `plane == 1`: a dense `[rows, C]` matrix (`rows = N`), which is
/// how channels-last activations `[N, H, W, C]` reach them (as `[N * H * W, C, 1, 1]`), and
/// how 1×1 NCHW maps look. Per-channel work on planes of one element would stride through
/// the whole tensor once per channel; here every pass walks rows, the channels of a row
/// contiguous, and reductions keep per-chunk partial sums over a fixed number of row
/// chunks, added in chunk order (the bits do not depend on the thread count).
mod rows {
    use std::mem::MaybeUninit;

    use rayon::prelude::*;

    use super::Planes;
    use crate::kernels::Activation;
    use crate::kernels::activation::per_activation;

    /// Row chunks of the reductions (fixed, see the module doc).
    const CHUNKS: usize = 32;

    /// Rows per task of the element-wise passes.
    fn rows_per_task(channels: usize) -> usize {
        (16384 / channels.max(1)).max(1)
    }

    /// Per-chunk sums of `f(row, channel_values, sums)` over the rows, added in chunk
    /// order into `C` f64 totals.
    fn reduce(p: Planes, width: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f64> {
        let rows = p.batch;
        let per_chunk = rows.div_ceil(CHUNKS).max(1);
        let partials: Vec<Vec<f32>> = (0..rows.div_ceil(per_chunk))
            .into_par_iter()
            .map(|k| {
                let mut acc = vec![0.0f32; width];
                for r in k * per_chunk..((k + 1) * per_chunk).min(rows) {
                    f(r, &mut acc);
                }
                acc
            })
            .collect();
        let mut total = vec![0.0f64; width];
        for partial in &partials {
            for (t, &v) in total.iter_mut().zip(partial) {
                *t += v as f64;
            }
        }
        total
    }

    pub(super) fn channel_stats(p: Planes, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
        let c = p.channels;
        let count = p.count();
        let sums = reduce(p, c, |r, acc| {
            for (a, &v) in acc.iter_mut().zip(&x[r * c..][..c]) {
                *a += v;
            }
        });
        for (m, s) in mean.iter_mut().zip(&sums) {
            *m = (s / count) as f32;
        }
        let means: &[f32] = mean;
        let squares = reduce(p, c, |r, acc| {
            for ((a, &v), &m) in acc.iter_mut().zip(&x[r * c..][..c]).zip(means) {
                *a += (v - m) * (v - m);
            }
        });
        for (v, s) in var.iter_mut().zip(&squares) {
            *v = (s / count) as f32;
        }
    }

    /// Calls `f(row, input_row, output_row)` for every row, in parallel, each call
    /// compiled for the current `CpuIsa`: the closures given to it (and to
    /// `with_isa`) are `#[inline(always)]`, as a closure that
    /// is not inlined is compiled for the baseline target (SSE2) whatever its caller.
    fn each_row(
        p: Planes,
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        f: impl Fn(usize, &[f32], &mut [MaybeUninit<f32>]) + Sync,
    ) {
        let c = p.channels.max(1);
        out.par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .enumerate()
            .with_min_len(rows_per_task(c))
            .for_each(|(r, (o, x))| {
                super::super::with_isa(
                    #[inline(always)]
                    || f(r, x, o),
                )
            });
    }

    /// `out = act(x * a[c] + b[c])` with `(a[c], b[c]) = coefficients(c)`.
    pub(super) fn map(
        p: Planes,
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        activation: Activation,
        coefficients: impl Fn(usize) -> (f32, f32),
    ) {
        let (a, b): (Vec<f32>, Vec<f32>) = (0..p.channels).map(coefficients).unzip();
        per_activation!(activation, |act, _deriv| {
            each_row(
                p,
                x,
                out,
                #[inline(always)]
                |_, x, o| {
                    let (x, a, b) = (&x[..o.len()], &a[..o.len()], &b[..o.len()]);
                    for c in 0..o.len() {
                        o[c].write(act(x[c] * a[c] + b[c]));
                    }
                },
            )
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn normalize_act(
        p: Planes,
        x: &[f32],
        mean: &[f32],
        invstd: &[f32],
        gamma: &[f32],
        beta: &[f32],
        activation: Activation,
        out: &mut [MaybeUninit<f32>],
    ) {
        per_activation!(activation, |act, _deriv| {
            each_row(
                p,
                x,
                out,
                #[inline(always)]
                |_, x, o| {
                    let n = o.len();
                    let (x, m, s, g, b) =
                        (&x[..n], &mean[..n], &invstd[..n], &gamma[..n], &beta[..n]);
                    for c in 0..n {
                        o[c].write(act((x[c] - m[c]) * s[c] * g[c] + b[c]));
                    }
                },
            )
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        p: Planes,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        invstd: &[f32],
        activation: Activation,
        dy: &[f32],
        dx: &mut [MaybeUninit<f32>],
    ) -> (Vec<f32>, Vec<f32>) {
        let c = p.channels;
        let (g, b, m, s) = (&gamma[..c], &beta[..c], &mean[..c], &invstd[..c]);
        // Pass 1: dbeta = sum(dz) and dgamma = sum(dz * xhat), side by side per chunk.
        let sums = per_activation!(activation, |_act, deriv| {
            reduce(p, 2 * c, |r, acc| {
                super::super::with_isa(
                    #[inline(always)]
                    || {
                        let (sum_dz, sum_dz_xhat) = acc.split_at_mut(c);
                        let (x, dy) = (&x[r * c..][..c], &dy[r * c..][..c]);
                        // Local copies of the captured slices: read through the closure's
                        // environment they are reloaded after every store, and the loop
                        // does not vectorise.
                        let (g, b, m, s) = (&g[..c], &b[..c], &m[..c], &s[..c]);
                        for ch in 0..c {
                            let xhat = (x[ch] - m[ch]) * s[ch];
                            let dz = dy[ch] * deriv(xhat * g[ch] + b[ch]);
                            sum_dz[ch] += dz;
                            sum_dz_xhat[ch] += dz * xhat;
                        }
                    },
                )
            })
        });
        let dbeta: Vec<f32> = sums[..c].iter().map(|&v| v as f32).collect();
        let dgamma: Vec<f32> = sums[c..].iter().map(|&v| v as f32).collect();
        // Pass 2: dx = gamma * invstd * (dz - mean(dz) - xhat * mean(dz * xhat)).
        let count = p.count() as f32;
        let mean_dz: Vec<f32> = dbeta.iter().map(|v| v / count).collect();
        let mean_dz_xhat: Vec<f32> = dgamma.iter().map(|v| v / count).collect();
        let (mdz, mdzx) = (&mean_dz[..c], &mean_dz_xhat[..c]);
        per_activation!(activation, |_act, deriv| {
            each_row(
                p,
                dy,
                dx,
                #[inline(always)]
                |r, dy, dx| {
                    let x = &x[r * c..][..c];
                    let dy = &dy[..c];
                    // Local copies of the captured slices (see pass 1).
                    let (g, b, m, s) = (&g[..c], &b[..c], &m[..c], &s[..c]);
                    let (mdz, mdzx) = (&mdz[..c], &mdzx[..c]);
                    for ch in 0..c {
                        let xhat = (x[ch] - m[ch]) * s[ch];
                        let dz = dy[ch] * deriv(xhat * g[ch] + b[ch]);
                        dx[ch].write(g[ch] * s[ch] * (dz - mdz[ch] - xhat * mdzx[ch]));
                    }
                },
            )
        });
        (dgamma, dbeta)
    }
}
