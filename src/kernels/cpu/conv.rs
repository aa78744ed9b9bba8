//! Dense (`groups = 1`) convolution into channels-last rows, from an NCHW input (the
//! first layer of a channels-last network, on RGB images) or a channels-last one (the
//! dense k×k convs inside one: MobileNetV4's `cn` blocks, FusedMBConv), with its backward
//! pass for the channels-last input.
//!
//! Each output position is a row `[C_out]` of the `[N·OH·OW, C_out]` output, so the
//! convolution is `cols · Wᵀ` where `cols` is the im2col matrix (`[positions, C_in·kh·kw]`,
//! zeros where a tap falls in the padding). Blocks of 256 positions run in
//! parallel, each with its own columns and one GEMM: every output element is one dot
//! product over the whole `C_in·kh·kw`, so the bits do not depend on the thread count.
//! The input gradient is `dcols = dY · W` scattered back onto the input (col2im), one
//! image per task; the weight gradient `dW = Σ dYᵀ · cols`, one partial sum per chunk of
//! images, added in chunk order. Burn's `conv2d` on the CPU backends takes ~3 ms for the
//! 28 MFLOP stem of a batch of 64 32×32 images and returns NCHW, which the channels-last
//! path then copies; its backward on NdArray was most of a MobileNetV4 training step.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::pointwise::{Mat, gemm, gemm_into};
use crate::kernels::{DepthwiseOptions, Layout};

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
    /// Layout of the input: `[N, C_in, H, W]` or `[N, H, W, C_in]`.
    pub input_layout: Layout,
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

    /// Output positions per image, `OH·OW`.
    fn positions_per_image(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// The input row and column of tap `(i, j)` of output position `(oh, ow)`, `None` in
    /// the padding.
    fn tap_source(&self, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let o = self.options;
        let ih = (oh * o.stride[0] + i * o.dilation[0])
            .checked_sub(o.padding[0])
            .filter(|&ih| ih < self.input[0])?;
        let iw = (ow * o.stride[1] + j * o.dilation[1])
            .checked_sub(o.padding[1])
            .filter(|&iw| iw < self.input[1])?;
        Some((ih, iw))
    }

    /// Writes the im2col row of output position `position` (`(n, oh, ow)` row-major) into
    /// `row`, in the weight's `(c_in, i, j)` order.
    fn fill_column_row(&self, x: &[f32], position: usize, row: &mut [f32]) {
        let [h, w] = self.input;
        let [kh, kw] = self.kernel;
        let cin = self.channels[0];
        let per_image = self.positions_per_image();
        let (n, rest) = (position / per_image, position % per_image);
        let (oh, ow) = (rest / self.output[1], rest % self.output[1]);
        for i in 0..kh {
            for j in 0..kw {
                let tap = i * kw + j;
                let source = self.tap_source(oh, ow, i, j);
                match (self.input_layout, source) {
                    (_, None) => (0..cin).for_each(|c| row[c * kh * kw + tap] = 0.0),
                    (Layout::ChannelsFirst, Some((ih, iw))) => {
                        for c in 0..cin {
                            row[c * kh * kw + tap] = x[((n * cin + c) * h + ih) * w + iw];
                        }
                    }
                    (Layout::ChannelsLast, Some((ih, iw))) => {
                        let pixel = &x[((n * h + ih) * w + iw) * cin..][..cin];
                        for (c, &value) in pixel.iter().enumerate() {
                            row[c * kh * kw + tap] = value;
                        }
                    }
                }
            }
        }
    }

    /// The im2col rows of `rows` consecutive output positions from `first`.
    fn columns(&self, x: &[f32], first: usize, rows: usize, cols: &mut Vec<f32>) {
        let taps = self.taps();
        cols.resize(rows * taps, 0.0);
        for (r, row) in cols.chunks_mut(taps).enumerate() {
            self.fill_column_row(x, first + r, row);
        }
    }

    /// Adds the im2col row `row` of output position `position` of image `n` back onto
    /// that image's channels-last input gradient `image_grad` (`[H, W, C_in]`).
    fn scatter_column_row(&self, position: usize, row: &[f32], image_grad: &mut [f32]) {
        let [kh, kw] = self.kernel;
        let cin = self.channels[0];
        let (oh, ow) = (position / self.output[1], position % self.output[1]);
        for i in 0..kh {
            for j in 0..kw {
                if let Some((ih, iw)) = self.tap_source(oh, ow, i, j) {
                    let tap = i * kw + j;
                    let pixel = &mut image_grad[(ih * self.input[1] + iw) * cin..][..cin];
                    for (c, g) in pixel.iter_mut().enumerate() {
                        *g += row[c * kh * kw + tap];
                    }
                }
            }
        }
    }
}

/// Forward into `out` (`[N·OH·OW, C_out]` row-major, i.e. `[N, OH, OW, C_out]`; every
/// element written, none read): `x` in `s.input_layout`, `weight [C_out, C_in, kh, kw]`,
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
            let mut cols = Vec::new();
            s.columns(x, block * BLOCK_ROWS, rows, &mut cols);
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

/// Where [`backward_nhwc`] writes each wanted gradient.
pub struct DenseGradients<'a> {
    /// `[N, H, W, C_in]`, overwritten.
    pub x: Option<&'a mut [f32]>,
    /// `[C_out, C_in, kh, kw]`, overwritten.
    pub weight: Option<&'a mut [f32]>,
    /// `[C_out]`, overwritten.
    pub bias: Option<&'a mut [f32]>,
}

/// The gradients of [`forward_nhwc`] with a channels-last input (`x [N, H, W, C_in]`,
/// `weight [C_out, C_in, kh, kw]`, `output_grad [N, OH, OW, C_out]`).
pub fn backward_nhwc(
    s: &DenseConvShape,
    x: &[f32],
    weight: &[f32],
    output_grad: &[f32],
    grads: DenseGradients,
) {
    assert_eq!(s.input_layout, Layout::ChannelsLast, "channels-last input");
    let [cin, cout] = s.channels;
    let taps = s.taps();
    let per_image = s.positions_per_image();
    let image_len = s.input[0] * s.input[1] * cin;
    assert_eq!(
        output_grad.len(),
        s.positions() * cout,
        "output gradient size"
    );
    if let Some(grad) = grads.x {
        assert_eq!(grad.len(), s.batch * image_len, "input gradient size");
        let w = Mat::dense(weight, cout, taps);
        grad.par_chunks_mut(image_len.max(1))
            .enumerate()
            .for_each(|(n, image_grad)| {
                image_grad.fill(0.0);
                let mut dcols = vec![0.0f32; BLOCK_ROWS.min(per_image) * taps];
                for first in (0..per_image).step_by(BLOCK_ROWS) {
                    let rows = BLOCK_ROWS.min(per_image - first);
                    let dy = &output_grad[(n * per_image + first) * cout..][..rows * cout];
                    let dcols = &mut dcols[..rows * taps];
                    gemm(Mat::dense(dy, rows, cout), w, 0.0, dcols);
                    for (r, row) in dcols.chunks(taps).enumerate() {
                        s.scatter_column_row(first + r, row, image_grad);
                    }
                }
            });
    }
    if let Some(grad) = grads.weight {
        assert_eq!(grad.len(), cout * taps, "weight gradient size");
        // One partial sum per chunk of images, added in chunk order.
        let chunks = rayon::current_num_threads().clamp(1, s.batch.max(1));
        let per_chunk = s.batch.div_ceil(chunks);
        let mut partial = vec![0.0f32; chunks * cout * taps];
        partial
            .par_chunks_mut(cout * taps)
            .enumerate()
            .for_each(|(chunk, acc)| {
                let images = chunk * per_chunk..((chunk + 1) * per_chunk).min(s.batch);
                let positions = images.start * per_image..images.end * per_image;
                let mut cols = Vec::new();
                for first in positions.clone().step_by(BLOCK_ROWS) {
                    let rows = BLOCK_ROWS.min(positions.end - first);
                    s.columns(x, first, rows, &mut cols);
                    let dy = Mat::dense(&output_grad[first * cout..][..rows * cout], rows, cout);
                    gemm(dy.t(), Mat::dense(&cols, rows, taps), 1.0, acc);
                }
            });
        super::sum_partials(&partial, grad);
    }
    if let Some(grad) = grads.bias {
        super::nhwc::bias_backward(s.positions(), output_grad, grad);
    }
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
                input_layout: Layout::ChannelsFirst,
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

    /// The channels-last forward equals the NCHW one on the same values, and the three
    /// gradients equal direct loops over every output, tap and channel (in f64).
    #[test]
    fn channels_last_forward_and_backward_match_direct_loops() {
        let cases = [
            // (batch, [in, out], [h, w], [kh, kw], stride, padding, dilation)
            (2, [3, 5], [9, 7], [3, 3], [2, 2], [1, 1], [1, 1]),
            (1, [2, 4], [6, 8], [3, 2], [1, 2], [0, 1], [2, 1]),
            (3, [4, 3], [5, 5], [5, 5], [1, 1], [2, 2], [1, 1]),
            (2, [8, 16], [23, 17], [3, 3], [1, 1], [1, 1], [1, 1]),
        ];
        for (batch, channels, input, kernel, stride, padding, dilation) in cases {
            let options = DepthwiseOptions::new(stride, padding, dilation);
            let output = options.output_size(input, kernel).expect("valid case");
            let nhwc = DenseConvShape {
                batch,
                channels,
                input,
                kernel,
                output,
                options,
                input_layout: Layout::ChannelsLast,
            };
            let nchw = DenseConvShape {
                input_layout: Layout::ChannelsFirst,
                ..nhwc
            };
            let [cin, cout] = channels;
            let [h, w] = input;
            let value = |i: usize| ((i * 7919) % 997) as f32 / 997.0 - 0.5;
            let x: Vec<f32> = (0..batch * h * w * cin).map(value).collect();
            let x_nchw: Vec<f32> = (0..x.len())
                .map(|i| {
                    let (n, c, p) = (i / (cin * h * w), i / (h * w) % cin, i % (h * w));
                    x[(n * h * w + p) * cin + c]
                })
                .collect();
            let weight: Vec<f32> = (0..cout * nhwc.taps()).map(|i| value(i + 13)).collect();
            let run = |s: &DenseConvShape, x: &[f32]| {
                let mut out = vec![MaybeUninit::uninit(); s.positions() * cout];
                forward_nhwc(s, x, &weight, None, &mut out);
                out.into_iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect::<Vec<f32>>()
            };
            assert_eq!(run(&nhwc, &x), run(&nchw, &x_nchw), "{nhwc:?} forward");

            let dy: Vec<f32> = (0..nhwc.positions() * cout)
                .map(|i| value(i + 71))
                .collect();
            let mut dx = vec![f32::NAN; x.len()];
            let mut dw = vec![f32::NAN; weight.len()];
            let mut db = vec![f32::NAN; cout];
            let grads = DenseGradients {
                x: Some(&mut dx),
                weight: Some(&mut dw),
                bias: Some(&mut db),
            };
            backward_nhwc(&nhwc, &x, &weight, &dy, grads);
            let mut expected_dx = vec![0.0f64; x.len()];
            let mut expected_dw = vec![0.0f64; weight.len()];
            let mut expected_db = vec![0.0f64; cout];
            for n in 0..batch {
                for oh in 0..output[0] {
                    for ow in 0..output[1] {
                        for co in 0..cout {
                            let g = dy[((n * output[0] + oh) * output[1] + ow) * cout + co] as f64;
                            expected_db[co] += g;
                            for i in 0..kernel[0] {
                                for j in 0..kernel[1] {
                                    let Some((ih, iw)) = nhwc.tap_source(oh, ow, i, j) else {
                                        continue;
                                    };
                                    for ci in 0..cin {
                                        let xi = ((n * h + ih) * w + iw) * cin + ci;
                                        let wi = ((co * cin + ci) * kernel[0] + i) * kernel[1] + j;
                                        expected_dx[xi] += g * weight[wi] as f64;
                                        expected_dw[wi] += g * x[xi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for (what, got, expected) in [
                ("input", &dx, &expected_dx),
                ("weight", &dw, &expected_dw),
                ("bias", &db, &expected_db),
            ] {
                for (k, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
                    assert!(
                        (*g as f64 - e).abs() < 1e-4,
                        "{nhwc:?} {what} gradient {k}: {g} vs {e}"
                    );
                }
            }
        }
    }
}
