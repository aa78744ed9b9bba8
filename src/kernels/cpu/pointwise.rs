//! Pointwise (1×1) convolution on dense NCHW `f32` slices, as matrix products.
//!
//! Image `n` of a `[N, C, H, W]` tensor is a `C × HW` matrix, so the forward pass is
//! `out[n] = W · x[n]`, the input gradient `dx[n] = Wᵀ · dy[n]` and the weight gradient
//! `dW = Σ_n dy[n] · x[n]ᵀ`. Transposes are strides handed to the GEMM, never copies, and
//! the weight gradient accumulates in place (no `[N, out, in]` intermediate). With 1×1
//! maps the batch itself is the matrix dimension: one product for the whole batch.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A matrix view: `rows × cols` elements of `data`, element `(i, j)` at
/// `i * row_stride + j * col_stride`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub(super) fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose: the same elements with the strides swapped.
    pub(super) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Offset of the last element of a `rows × cols` view with the given strides.
fn last_index(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    (rows - 1) * row_stride + (cols - 1) * col_stride
}

/// `c = a · b + beta · c`, where `c` is a dense row-major `a.rows × b.cols` matrix.
pub(super) fn gemm(a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    if a.cols == 0 {
        c.iter_mut().for_each(|v| *v *= beta);
    }
    gemm_raw(a, b, beta, c.as_mut_ptr(), c.len());
}

/// `c = a · b` into an output that need not be initialised: every element is written
/// (sgemm with `beta = 0` reads none of `c`).
pub(super) fn gemm_into(a: Mat, b: Mat, c: &mut [MaybeUninit<f32>]) {
    if a.cols == 0 {
        c.iter_mut().for_each(|v| {
            v.write(0.0);
        });
    }
    gemm_raw(a, b, 0.0, c.as_mut_ptr().cast(), c.len());
}

/// sgemm into `c_len` elements at `c` (see [`gemm`]); nothing to do when `a.cols == 0`.
fn gemm_raw(a: Mat, b: Mat, beta: f32, c: *mut f32, c_len: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert_eq!(c_len, m * n, "output size");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        a.data.len() > last_index(m, k, a.row_stride, a.col_stride),
        "lhs bounds"
    );
    assert!(
        b.data.len() > last_index(k, n, b.row_stride, b.col_stride),
        "rhs bounds"
    );
    // SAFETY: every element sgemm reads (`a`: m×k, `b`: k×n, at the given strides) and
    // writes (`c`: m×n, row-major, distinct elements) lies inside its slice, checked by
    // the asserts above; the slices do not overlap (`c` comes from a mutable borrow); with
    // `beta == 0` sgemm only writes `c`, so it may be uninitialised.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c,
            n as isize,
            1,
        );
    }
}

/// Geometry of a pointwise conv: `batch` images of `pixels` positions, `channels`
/// `[in, out]`.
#[derive(Clone, Copy, Debug)]
pub struct PointwiseShape {
    /// Batch size.
    pub batch: usize,
    /// `[in_channels, out_channels]`.
    pub channels: [usize; 2],
    /// `H * W`.
    pub pixels: usize,
}

/// `outputs[n] = a · inputs[n]` for every image: `inputs` `[N, a.cols, p]`, `outputs`
/// `[N, a.rows, p]`, images in parallel.
fn each_image(a: Mat, inputs: &[f32], outputs: &mut [MaybeUninit<f32>], p: usize) {
    outputs
        .par_chunks_mut(a.rows * p)
        .zip(inputs.par_chunks(a.cols * p))
        .for_each(|(out, x)| gemm_into(a, Mat::dense(x, a.cols, p), out));
}

/// Forward into `out` (`[N, out, HW]`, every element written, none read): `x [N, in, HW]`,
/// `weight [out, in]`.
pub fn forward(s: PointwiseShape, x: &[f32], weight: &[f32], out: &mut [MaybeUninit<f32>]) {
    let [cin, cout] = s.channels;
    let w = Mat::dense(weight, cout, cin);
    if s.pixels == 1 {
        // out as [N, out] = x [N, in] · Wᵀ.
        return gemm_into(Mat::dense(x, s.batch, cin), w.t(), out);
    }
    each_image(w, x, out, s.pixels);
}

/// Input gradient into `grad` (`[N, in, HW]`, every element written, none read).
pub fn x_backward(
    s: PointwiseShape,
    weight: &[f32],
    output_grad: &[f32],
    grad: &mut [MaybeUninit<f32>],
) {
    let [cin, cout] = s.channels;
    let w = Mat::dense(weight, cout, cin);
    if s.pixels == 1 {
        // dx as [N, in] = dy [N, out] · W.
        return gemm_into(Mat::dense(output_grad, s.batch, cout), w, grad);
    }
    each_image(w.t(), output_grad, grad, s.pixels);
}

/// Weight gradient into `grad` (`[out, in]`, fully overwritten).
pub fn weight_backward(s: PointwiseShape, x: &[f32], output_grad: &[f32], grad: &mut [f32]) {
    let [cin, cout] = s.channels;
    let p = s.pixels;
    if p == 1 || s.batch == 0 {
        // dW = dyᵀ [out, N] · x [N, in].
        let dy = Mat::dense(output_grad, s.batch, cout);
        return gemm(dy.t(), Mat::dense(x, s.batch, cin), 0.0, grad);
    }
    // One partial sum per chunk of images, accumulated in place, then reduced.
    let chunks = rayon::current_num_threads().clamp(1, s.batch);
    let per_chunk = s.batch.div_ceil(chunks);
    let mut partial = vec![0.0f32; chunks * cout * cin];
    partial
        .par_chunks_mut(cout * cin)
        .enumerate()
        .for_each(|(chunk, acc)| {
            for n in chunk * per_chunk..((chunk + 1) * per_chunk).min(s.batch) {
                let dy = Mat::dense(&output_grad[n * cout * p..][..cout * p], cout, p);
                let x = Mat::dense(&x[n * cin * p..][..cin * p], cin, p);
                gemm(dy, x.t(), 1.0, acc);
            }
        });
    super::sum_partials(&partial, grad);
}
