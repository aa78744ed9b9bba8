//! Depthwise kernels on zero-bordered planes.
//!
//! At stride 1 every kernel tap reads the padded input at a fixed distance from the
//! output position once both use the padded row length `wp`: output `(oh, ow)` is element
//! `oh * wp + ow` of a flat run and tap `(i, j)` reads element
//! `oh * wp + ow + i * dh * wp + j * dw` of the padded plane. Copying a plane into a
//! zero-bordered buffer thus turns the whole plane into one run of [`LANES`]-wide blocks,
//! each summing every tap in registers: no padding checks, no per-row loops, and no
//! read-modify-write of the output per tap, so 4×4 and 8×8 maps vectorise as well as large
//! ones. The `wp - out_w` columns past each output row are computed and dropped.
//!
//! At stride `(sh, sw)` the padded plane is first split into its `sh * sw` stride phases
//! (phase `(a, b)` holds padded rows `a, a + sh, ...` and columns `b, b + sw, ...`, see
//! [`Phases`]): in phase coordinates every tap is again a fixed offset, into the phase its
//! `(i * dh, j * dw)` falls in, so the same blocks compute only the outputs there are.
//!
//! The input gradient is the same correlation, of the output gradient (bordered so that
//! the result has the input's size) with the kernel flipped; at stride > 1, one phase of
//! the input at a time, with the taps that reach it. The weight gradient is one dot product
//! per tap between the output gradient, laid out with the phases' row length and zeros in
//! the dropped columns, and the phase planes.

use rayon::prelude::*;

use crate::kernels::DepthwiseShape;

/// Width of the blocks summed in registers.
const LANES: usize = 8;

/// A plane of `rows × cols` placed in a zeroed buffer of `height × width` rows, its element
/// `(0, 0)` at `(top, left)`; negative offsets crop it (only ever parts no output reads).
#[derive(Clone, Copy, Debug)]
struct Border {
    height: usize,
    width: usize,
    top: isize,
    left: isize,
}

impl Border {
    /// Buffer length: the plane plus room for the last block's over-read.
    fn len(&self) -> usize {
        self.height * self.width + 2 * LANES
    }

    /// Writes `plane` (`rows × cols`, row-major) into `buffer`, zeros elsewhere. A buffer
    /// already filled through this border keeps its zeros: every plane of a call writes
    /// the same cells, so only the first fill clears it.
    fn fill(&self, plane: &[f32], rows: usize, cols: usize, buffer: &mut Vec<f32>) {
        if buffer.len() != self.len() {
            buffer.clear();
            buffer.resize(self.len(), 0.0);
        }
        let first_col = (-self.left).max(0) as usize;
        let dst_col = self.left.max(0) as usize;
        if first_col >= cols || dst_col >= self.width {
            return;
        }
        let count = (cols - first_col).min(self.width - dst_col);
        for r in 0..rows {
            let dst_row = r as isize + self.top;
            if dst_row < 0 || dst_row as usize >= self.height {
                continue;
            }
            let src = &plane[r * cols + first_col..][..count];
            buffer[dst_row as usize * self.width + dst_col..][..count].copy_from_slice(src);
        }
    }
}

/// For every tap `(i, j)`, in row-major order: its stride phase
/// `(i * dh % sh) * sw + j * dw % sw` and its shift `(i * dh / sh, j * dw / sw)` inside that
/// phase (at stride 1: phase 0 and the dilated tap position).
fn tap_phases(s: &DepthwiseShape) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let [kh, kw] = s.kernel;
    let [dh, dw] = s.options.dilation;
    let [sh, sw] = s.options.stride;
    (0..kh * kw).map(move |t| {
        let (r, c) = ((t / kw) * dh, (t % kw) * dw);
        ((r % sh) * sw + c % sw, r / sh, c / sw)
    })
}

/// The zero-padded input plane split into its stride phases, one after the other in one
/// buffer: phase `(a, b)` is the `rows × width` plane of padded rows `a + r * sh` and
/// columns `b + c * sw`. Output `(oh, ow)` is element `oh * width + ow` of a flat run, and
/// tap `(i, j)` reads that element of its phase shifted by `(i * dh / sh, j * dw / sw)`.
/// One phase, the padded plane itself, at stride 1.
#[derive(Clone, Copy, Debug)]
struct Phases {
    input: [usize; 2],
    padding: [usize; 2],
    stride: [usize; 2],
    rows: usize,
    width: usize,
}

impl Phases {
    fn new(s: &DepthwiseShape) -> Self {
        let [ph, pw] = s.options.padding;
        let [sh, sw] = s.options.stride;
        Phases {
            input: s.input,
            padding: s.options.padding,
            stride: s.options.stride,
            rows: (s.input[0] + 2 * ph).div_ceil(sh),
            width: (s.input[1] + 2 * pw).div_ceil(sw),
        }
    }

    fn phase_len(&self) -> usize {
        self.rows * self.width
    }

    /// Buffer length: every phase plus room for the last block's over-read.
    fn len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.phase_len() + 2 * LANES
    }

    /// The flat offset of every tap: its phase's start plus its shift inside the phase.
    fn tap_offsets(&self, s: &DepthwiseShape) -> Vec<usize> {
        tap_phases(s)
            .map(|(phase, row, col)| phase * self.phase_len() + row * self.width + col)
            .collect()
    }

    /// Writes an input plane (`input[0] × input[1]`, row-major) into `buffer`, zeros
    /// elsewhere; as with [`Border::fill`], only the first fill of a buffer clears it.
    fn fill(&self, plane: &[f32], buffer: &mut Vec<f32>) {
        if buffer.len() != self.len() {
            buffer.clear();
            buffer.resize(self.len(), 0.0);
        }
        let [h, w] = self.input;
        let [ph, pw] = self.padding;
        let [sh, sw] = self.stride;
        if sh == 1 && sw == 1 {
            for (ih, row) in plane.chunks_exact(w).enumerate() {
                buffer[(ih + ph) * self.width + pw..][..w].copy_from_slice(row);
            }
            return;
        }
        for a in 0..sh {
            for b in 0..sw {
                let phase = &mut buffer[(a * sw + b) * self.phase_len()..][..self.phase_len()];
                // First phase column inside the image, and the input column it holds.
                let first = pw.saturating_sub(b).div_ceil(sw);
                let start = first * sw + b - pw;
                if start >= w {
                    continue;
                }
                for (r, dst) in phase.chunks_exact_mut(self.width).enumerate() {
                    let padded_row = r * sh + a;
                    if padded_row < ph || padded_row - ph >= h {
                        continue;
                    }
                    let src = &plane[(padded_row - ph) * w..][start..w];
                    for (d, &v) in dst[first..].iter_mut().zip(src.iter().step_by(sw)) {
                        *d = v;
                    }
                }
            }
        }
    }
}

/// Length of the flat run holding `rows × cols` outputs with row length `width`, rounded
/// up to whole blocks.
fn run_len(rows: usize, cols: usize, width: usize) -> usize {
    ((rows - 1) * width + cols).next_multiple_of(LANES)
}

/// `acc[q] = start[q] + sum_t weights[t] * padded[q + offsets[t]]` for every `q` in `acc`
/// (`acc.len()` a multiple of [`LANES`]), where `start` is `acc` itself when `accumulate`
/// and `init` otherwise.
fn correlate(
    padded: &[f32],
    offsets: &[usize],
    weights: &[f32],
    init: f32,
    accumulate: bool,
    acc: &mut [f32],
) {
    for (block, out) in acc.chunks_exact_mut(LANES).enumerate() {
        let base = block * LANES;
        let mut sum = [init; LANES];
        if accumulate {
            sum.copy_from_slice(out);
        }
        for (&offset, &w) in offsets.iter().zip(weights) {
            let x: &[f32; LANES] = padded[base + offset..][..LANES].try_into().unwrap();
            for k in 0..LANES {
                sum[k] += w * x[k];
            }
        }
        out.copy_from_slice(&sum);
    }
}

/// Makes `acc` `len` long; its values are left for the next [`correlate`] to overwrite.
fn size_acc(acc: &mut Vec<f32>, len: usize) {
    if acc.len() != len {
        acc.clear();
        acc.resize(len, 0.0);
    }
}

/// `sum_q a[q] * b[q]` with [`LANES`] partial sums (`a.len()` a multiple of [`LANES`]).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sum = [0.0f32; LANES];
    for (a, b) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for k in 0..LANES {
            sum[k] += a[k] * b[k];
        }
    }
    sum.iter().sum()
}

/// Scratch buffers reused by the planes of one rayon work item.
type Scratch = (Vec<f32>, Vec<f32>);

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
    debug_assert_eq!(x.len(), s.batch * s.channels * in_h * in_w);
    debug_assert_eq!(out.len(), s.batch * s.out_channels() * out_h * out_w);
    let taps = s.kernel[0] * s.kernel[1];
    let m = s.multiplier;
    let phases = Phases::new(s);
    let offsets = phases.tap_offsets(s);
    let len = run_len(out_h, out_w, phases.width);
    // One work item per input plane: its `m` output planes are contiguous.
    out.par_chunks_mut(m * out_h * out_w)
        .enumerate()
        .for_each_init(Scratch::default, |(padded, acc), (plane, out_planes)| {
            phases.fill(&x[plane * in_h * in_w..][..in_h * in_w], padded);
            let c = plane % s.channels;
            for (k, out_plane) in out_planes.chunks_exact_mut(out_h * out_w).enumerate() {
                let o = c * m + k;
                size_acc(acc, len);
                let b = bias.map_or(0.0, |b| b[o]);
                correlate(padded, &offsets, &weight[o * taps..][..taps], b, false, acc);
                for (oh, row) in out_plane.chunks_exact_mut(out_w).enumerate() {
                    row.copy_from_slice(&acc[oh * phases.width..][..out_w]);
                }
            }
        });
}

/// Input gradient into `grad` (`[N, C, H, W]`, fully overwritten).
pub fn x_backward(s: &DepthwiseShape, weight: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    if s.options.stride == [1, 1] {
        x_backward_unit_stride(s, weight, output_grad, grad);
    } else {
        x_backward_phases(s, weight, output_grad, grad);
    }
}

/// The input gradient at stride 1: the output gradient, bordered, correlated with the
/// flipped kernel.
fn x_backward_unit_stride(
    s: &DepthwiseShape,
    weight: &[f32],
    output_grad: &[f32],
    grad: &mut [f32],
) {
    let [in_h, in_w] = s.input;
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let [dh, dw] = s.options.dilation;
    let [ph, pw] = s.options.padding;
    let taps = kh * kw;
    let m = s.multiplier;
    // Output gradient placed so that output (oh, ow) lands where the flipped kernel's
    // taps find it from every input position it was read by.
    let border = Border {
        height: in_h + (kh - 1) * dh,
        width: in_w + (kw - 1) * dw,
        top: ((kh - 1) * dh) as isize - ph as isize,
        left: ((kw - 1) * dw) as isize - pw as isize,
    };
    let offsets: Vec<usize> = tap_phases(s)
        .map(|(_, row, col)| row * border.width + col)
        .collect();
    let flipped: Vec<f32> = weight
        .chunks_exact(taps)
        .flat_map(|w| w.iter().rev().copied())
        .collect();
    let len = run_len(in_h, in_w, border.width);
    grad.par_chunks_mut(in_h * in_w).enumerate().for_each_init(
        Scratch::default,
        |(padded, acc), (plane, grad_plane)| {
            let (n, c) = (plane / s.channels, plane % s.channels);
            size_acc(acc, len);
            for (k, o) in (c * m..(c + 1) * m).enumerate() {
                let g = &output_grad[(n * s.out_channels() + o) * out_h * out_w..][..out_h * out_w];
                border.fill(g, out_h, out_w, padded);
                correlate(
                    padded,
                    &offsets,
                    &flipped[o * taps..][..taps],
                    0.0,
                    k > 0,
                    acc,
                );
            }
            for (ih, row) in grad_plane.chunks_exact_mut(in_w).enumerate() {
                row.copy_from_slice(&acc[ih * border.width..][..in_w]);
            }
        },
    );
}

/// The input gradient at stride `(sh, sw)`, one stride phase at a time. Padded input
/// position `(R * sh + a, C * sw + b)` is read by output `(oh, ow)` through tap `(i, j)`
/// exactly when `i * dh ≡ a (mod sh)`, `j * dw ≡ b (mod sw)` and
/// `(oh, ow) = (R - i * dh / sh, C - j * dw / sw)` (integer division): so phase `(a, b)` of
/// the gradient is a unit-stride correlation of the output gradient with that phase's taps.
/// The phases are computed over the whole padded grid and scattered back to the input.
fn x_backward_phases(s: &DepthwiseShape, weight: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let [in_h, in_w] = s.input;
    let [out_h, out_w] = s.output;
    let [kh, kw] = s.kernel;
    let [dh, dw] = s.options.dilation;
    let [ph, pw] = s.options.padding;
    let [sh, sw] = s.options.stride;
    let taps = kh * kw;
    let m = s.multiplier;
    let phases = sh * sw;
    let rows = (in_h + 2 * ph).div_ceil(sh);
    let cols = (in_w + 2 * pw).div_ceil(sw);
    // The output gradient shifted by the largest tap shift, so every offset is >= 0.
    let (top, left) = ((kh - 1) * dh / sh, (kw - 1) * dw / sw);
    let border = Border {
        height: rows + top,
        width: cols + left,
        top: top as isize,
        left: left as isize,
    };
    let len = run_len(rows, cols, border.width);
    // Each phase's taps and their offsets in the bordered output gradient.
    let mut classes = vec![(Vec::new(), Vec::new()); phases];
    for (t, (phase, row, col)) in tap_phases(s).enumerate() {
        let (tap_list, offsets) = &mut classes[phase];
        tap_list.push(t);
        offsets.push((top - row) * border.width + (left - col));
    }
    let class_weights: Vec<Vec<f32>> = (0..s.out_channels() * phases)
        .map(|i| {
            let (o, phase) = (i / phases, i % phases);
            classes[phase]
                .0
                .iter()
                .map(|&t| weight[o * taps + t])
                .collect()
        })
        .collect();
    grad.par_chunks_mut(in_h * in_w).enumerate().for_each_init(
        Scratch::default,
        |(padded, acc), (plane, grad_plane)| {
            let (n, c) = (plane / s.channels, plane % s.channels);
            size_acc(acc, phases * len);
            for (k, o) in (c * m..(c + 1) * m).enumerate() {
                let g = &output_grad[(n * s.out_channels() + o) * out_h * out_w..][..out_h * out_w];
                border.fill(g, out_h, out_w, padded);
                for (phase, run) in acc.chunks_exact_mut(len).enumerate() {
                    let offsets = &classes[phase].1;
                    let weights = &class_weights[o * phases + phase];
                    correlate(padded, offsets, weights, 0.0, k > 0, run);
                }
            }
            // Input row `ih` is row `(ih + ph) / sh` of phases `((ih + ph) % sh, b)`; its
            // columns `iw ≡ b - pw (mod sw)` are consecutive columns of phase `b`.
            for (ih, row) in grad_plane.chunks_exact_mut(in_w).enumerate() {
                let (a, r) = ((ih + ph) % sh, (ih + ph) / sh);
                for b in 0..sw {
                    let first = (b + sw - pw % sw) % sw;
                    if first >= in_w {
                        continue;
                    }
                    let start = (a * sw + b) * len + r * border.width + (first + pw) / sw;
                    for (value, &v) in row[first..].iter_mut().step_by(sw).zip(&acc[start..]) {
                        *value = v;
                    }
                }
            }
        },
    );
}

/// Weight gradient into `grad` (`[C*m, 1, kh, kw]`, fully overwritten).
pub fn weight_backward(s: &DepthwiseShape, x: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let [in_h, in_w] = s.input;
    let [out_h, out_w] = s.output;
    let taps = s.kernel[0] * s.kernel[1];
    let oc = s.out_channels();
    let phases = Phases::new(s);
    let offsets = phases.tap_offsets(s);
    let len = run_len(out_h, out_w, phases.width);
    // The output gradient with the phases' row length: zeros in the columns no output has.
    let spread = Border {
        height: out_h,
        width: phases.width,
        top: 0,
        left: 0,
    };
    // Split the batch so that there are several work items per thread even when the
    // layer has few channels; each item writes its own partial sums, reduced below.
    let threads = rayon::current_num_threads().max(1);
    let chunks = (4 * threads).div_ceil(oc).clamp(1, s.batch.max(1));
    let per_chunk = s.batch.div_ceil(chunks).max(1);
    let chunks = s.batch.div_ceil(per_chunk).max(1);
    let mut partial = vec![0.0f32; chunks * oc * taps];
    partial.par_chunks_mut(taps).enumerate().for_each_init(
        Scratch::default,
        |(padded, spread_grad), (item, acc)| {
            let (chunk, o) = (item / oc, item % oc);
            let c = o / s.multiplier;
            for n in chunk * per_chunk..((chunk + 1) * per_chunk).min(s.batch) {
                let x_plane = &x[(n * s.channels + c) * in_h * in_w..][..in_h * in_w];
                let g_plane = &output_grad[(n * oc + o) * out_h * out_w..][..out_h * out_w];
                phases.fill(x_plane, padded);
                spread.fill(g_plane, out_h, out_w, spread_grad);
                let g = &spread_grad[..len];
                for (a, &offset) in acc.iter_mut().zip(&offsets) {
                    *a += dot(g, &padded[offset..][..len]);
                }
            }
        },
    );
    super::sum_partials(&partial, grad);
}
