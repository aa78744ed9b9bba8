//! Plain, obviously-correct depthwise convolution loops in `f64`: the oracle the tests
//! compare every backend and every fast kernel against.
//!
//! All slices are dense NCHW (`x`, `output_grad`) or `[C*m, 1, kh, kw]` (`weight`).

use super::DepthwiseShape;

/// Input coordinate read by output position `out` and kernel tap `tap` along one axis, or
/// `None` when it falls in the zero padding.
fn input_coord(s: &DepthwiseShape, axis: usize, out: usize, tap: usize) -> Option<usize> {
    let pos = (out * s.options.stride[axis] + tap * s.options.dilation[axis]) as isize
        - s.options.padding[axis] as isize;
    (pos >= 0 && (pos as usize) < s.input[axis]).then_some(pos as usize)
}

/// Calls `f(x_index, out_index, weight_index)` for every (output element, kernel tap)
/// pair that reads a real (non-padding) input element.
fn for_each_tap(s: &DepthwiseShape, mut f: impl FnMut(usize, usize, usize)) {
    let [in_h, in_w] = s.input;
    let [kh, kw] = s.kernel;
    let [out_h, out_w] = s.output;
    for n in 0..s.batch {
        for o in 0..s.out_channels() {
            let c = o / s.multiplier;
            for oh in 0..out_h {
                for ow in 0..out_w {
                    for i in 0..kh {
                        let Some(ih) = input_coord(s, 0, oh, i) else {
                            continue;
                        };
                        for j in 0..kw {
                            let Some(iw) = input_coord(s, 1, ow, j) else {
                                continue;
                            };
                            let x_index = ((n * s.channels + c) * in_h + ih) * in_w + iw;
                            let out_index = ((n * s.out_channels() + o) * out_h + oh) * out_w + ow;
                            let w_index = (o * kh + i) * kw + j;
                            f(x_index, out_index, w_index);
                        }
                    }
                }
            }
        }
    }
}

/// Forward: returns the `[N, C*m, out_h, out_w]` output.
pub fn forward(s: &DepthwiseShape, x: &[f64], weight: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let [out_h, out_w] = s.output;
    let plane = out_h * out_w;
    let mut out = vec![0.0; s.batch * s.out_channels() * plane];
    if let Some(bias) = bias {
        for (i, v) in out.iter_mut().enumerate() {
            *v = bias[(i / plane) % s.out_channels()];
        }
    }
    for_each_tap(s, |xi, oi, wi| out[oi] += x[xi] * weight[wi]);
    out
}

/// Input gradient: returns `[N, C, H, W]`.
pub fn x_backward(s: &DepthwiseShape, weight: &[f64], output_grad: &[f64]) -> Vec<f64> {
    let mut grad = vec![0.0; s.batch * s.channels * s.input[0] * s.input[1]];
    for_each_tap(s, |xi, oi, wi| grad[xi] += weight[wi] * output_grad[oi]);
    grad
}

/// Weight gradient: returns `[C*m, 1, kh, kw]`.
pub fn weight_backward(s: &DepthwiseShape, x: &[f64], output_grad: &[f64]) -> Vec<f64> {
    let mut grad = vec![0.0; s.out_channels() * s.kernel[0] * s.kernel[1]];
    for_each_tap(s, |xi, oi, wi| grad[wi] += x[xi] * output_grad[oi]);
    grad
}

/// Bias gradient: returns `[C*m]`.
pub fn bias_backward(s: &DepthwiseShape, output_grad: &[f64]) -> Vec<f64> {
    let plane = s.output[0] * s.output[1];
    let mut grad = vec![0.0; s.out_channels()];
    for (i, g) in output_grad.iter().enumerate() {
        grad[(i / plane) % s.out_channels()] += g;
    }
    grad
}
