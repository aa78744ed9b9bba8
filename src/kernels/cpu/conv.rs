//! Dense (`groups = 1`) convolution of an NCHW input into channels-last rows: the first
//! layer of a channels-last network (the MobileNet stem on RGB images).
//!
//! Each output position is a row `[C_out]` of the `[N·OH·OW, C_out]` output, so the
//! convolution is `cols · Wᵀ` where `cols` is the im2col matrix (`[positions, C_in·kh·kw]`,
//! zeros where a tap falls in the padding). Blocks of 256 positions run in
//! parallel, each with its own columns and one GEMM: every output element is one dot
//! product over the whole `C_in·kh·kw`, so the bits do not depend on the thread count.
//! Burn's `conv2d` on the CPU backends takes ~3 ms for the 28 MFLOP stem of a batch of 64
//! 32×32 images and returns NCHW, which the channels-last path then copies.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::pointwise::{Mat, gemm_into};
use crate::kernels::DepthwiseOptions;

/// Output positions per task: 256 rows of 27 columns (the RGB 3×3 stem) are 27 KiB of
/// im2col, within L2 beside the weights.
const BLOCK_ROWS: usize = 256;

/// Geometry of a dense convolution.
#[derive(Clone, Copy, Debug)]
pub struct DenseConvShape {
    /// Batch size.
    pub batch: usize,
    /// `[in_channels, out_channels]`.
    pub channels: [usize; 2],
    /// Input `[H, W]`.
    pub input: [usize; 2],
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Output `[OH, OW]` (from [`DepthwiseOptions::output_size`]).
    pub output: [usize; 2],
    /// Stride, symmetric padding, dilation.
    pub options: DepthwiseOptions,
}

impl DenseConvShape {
    /// Output positions, `N·OH·OW`.
    fn positions(&self) -> usize {
        self.batch * self.output[0] * self.output[1]
    }

    /// Length of an im2col row, `C_in·kh·kw`.
    fn taps(&self) -> usize {
        self.channels[0] * self.kernel[0] * self.kernel[1]
    }

    /// Writes the im2col row of output position `position` (`(n, oh, ow)` row-major) into
    /// `row`, in the weight's `(c_in, i, j)` order.
    fn fill_column_row(&self, x: &[f32], position: usize, row: &mut [f32]) {
        let [h, w] = self.input;
        let [kh, kw] = self.kernel;
        let [oh_len, ow_len] = self.output;
        let (n, rest) = (position / (oh_len * ow_len), position % (oh_len * ow_len));
        let (oh, ow) = (rest / ow_len, rest % ow_len);
        let o = self.options;
        let mut taps = row.iter_mut();
        for c in 0..self.channels[0] {
            let plane = &x[(n * self.channels[0] + c) * h * w..][..h * w];
            for i in 0..kh {
                // Input row of this tap, `None` in the padding.
                let ih = (oh * o.stride[0] + i * o.dilation[0])
                    .checked_sub(o.padding[0])
                    .filter(|&ih| ih < h);
                for j in 0..kw {
                    let iw = (ow * o.stride[1] + j * o.dilation[1])
                        .checked_sub(o.padding[1])
                        .filter(|&iw| iw < w);
                    let value = match (ih, iw) {
                        (Some(ih), Some(iw)) => plane[ih * w + iw],
                        _ => 0.0,
                    };
                    *taps.next().expect("a row holds every tap") = value;
                }
            }
        }
    }
}

/// Forward into `out` (`[N·OH·OW, C_out]` row-major, i.e. `[N, OH, OW, C_out]`; every
/// element written, none read): `x [N, C_in, H, W]`, `weight [C_out, C_in, kh, kw]`,
/// `bias [C_out]`.
pub fn forward_nhwc(
    s: &DenseConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
) {
    let [_, cout] = s.channels;
    let taps = s.taps();
    assert_eq!(out.len(), s.positions() * cout, "output size");
    assert_eq!(weight.len(), cout * taps, "weight size");
    // out rows = cols [rows, taps] · Wᵀ (W is [C_out, taps]).
    let weight_t = Mat::dense(weight, cout, taps).t();
    out.par_chunks_mut(BLOCK_ROWS * cout)
        .enumerate()
        .for_each(|(block, out)| {
            let rows = out.len() / cout;
            let mut cols = vec![0.0f32; rows * taps];
            for (r, row) in cols.chunks_mut(taps).enumerate() {
                s.fill_column_row(x, block * BLOCK_ROWS + r, row);
            }
            gemm_into(Mat::dense(&cols, rows, taps), weight_t, out);
            if let Some(bias) = bias {
                for row in out.chunks_mut(cout) {
                    for (o, &b) in row.iter_mut().zip(bias) {
                        // SAFETY: `gemm_into` has just written every element of `out`.
                        let value = unsafe { o.assume_init() };
                        o.write(value + b);
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The im2col GEMM equals a direct loop over every output, tap and channel, with
    /// stride, asymmetric kernel, padding and dilation.
    #[test]
    fn forward_matches_a_direct_loop() {
        let cases = [
            // (batch, [in, out], [h, w], [kh, kw], stride, padding, dilation)
            (2, [3, 5], [9, 7], [3, 3], [2, 2], [1, 1], [1, 1]),
            (1, [2, 4], [6, 8], [3, 2], [1, 2], [0, 1], [2, 1]),
            (3, [1, 3], [5, 5], [5, 5], [1, 1], [2, 2], [1, 1]),
            (4, [3, 16], [23, 17], [3, 3], [2, 2], [1, 1], [1, 1]),
        ];
        for (batch, channels, input, kernel, stride, padding, dilation) in cases {
            let options = DepthwiseOptions::new(stride, padding, dilation);
            let output = options.output_size(input, kernel).expect("valid case");
            let s = DenseConvShape {
                batch,
                channels,
                input,
                kernel,
                output,
                options,
            };
            let [cin, cout] = channels;
            let value = |i: usize| ((i * 7919) % 997) as f32 / 997.0 - 0.5;
            let x: Vec<f32> = (0..batch * cin * input[0] * input[1]).map(value).collect();
            let weight: Vec<f32> = (0..cout * s.taps()).map(|i| value(i + 13)).collect();
            let bias: Vec<f32> = (0..cout).map(|i| value(i + 101)).collect();
            let mut out = vec![MaybeUninit::uninit(); s.positions() * cout];
            forward_nhwc(&s, &x, &weight, Some(&bias), &mut out);
            let out: Vec<f32> = out
                .into_iter()
                .map(|v| unsafe { v.assume_init() })
                .collect();
            for n in 0..batch {
                for oh in 0..output[0] {
                    for ow in 0..output[1] {
                        for co in 0..cout {
                            let mut expected = bias[co] as f64;
                            for ci in 0..cin {
                                for i in 0..kernel[0] {
                                    for j in 0..kernel[1] {
                                        let ih = (oh * stride[0] + i * dilation[0]) as isize
                                            - padding[0] as isize;
                                        let iw = (ow * stride[1] + j * dilation[1]) as isize
                                            - padding[1] as isize;
                                        if ih < 0
                                            || iw < 0
                                            || ih >= input[0] as isize
                                            || iw >= input[1] as isize
                                        {
                                            continue;
                                        }
                                        let xi = ((n * cin + ci) * input[0] + ih as usize)
                                            * input[1]
                                            + iw as usize;
                                        let wi = ((co * cin + ci) * kernel[0] + i) * kernel[1] + j;
                                        expected += x[xi] as f64 * weight[wi] as f64;
                                    }
                                }
                            }
                            let got = out[((n * output[0] + oh) * output[1] + ow) * cout + co];
                            assert!(
                                (got as f64 - expected).abs() < 1e-5,
                                "{s:?} at {n},{oh},{ow},{co}: {got} vs {expected}"
                            );
                        }
                    }
                }
            }
        }
    }
}
