//! The pointwise (1×1) convolution op as a Burn backend extension.
//!
//! Burn has no 1×1 conv op of its own: its `conv2d` is a direct loop on some backends, and
//! a `matmul` of `[1, out, in]` weights with `[N, in, H*W]` inputs (what
//! [`PointwiseBackend`]'s defaults do) back-propagates through transposed copies and an
//! `[N, out, in]` weight-gradient intermediate. CPU backends override the defaults with
//! [`cpu::pointwise`](super::cpu::pointwise)'s strided GEMMs; `Autodiff<B>` records one
//! node per call.

// The `rows_` forms serve the CubeCL backends (their feature) and the tests.
#![cfg_attr(not(feature = "internals"), allow(dead_code))]

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// Pointwise conv on primitives, plus its backward ops. Every method has a default built
/// on Burn's `matmul`, so `impl PointwiseBackend for MyBackend {}` is a correct backend.
pub trait PointwiseBackend: Backend {
    /// `x [N, in, H, W]`, `weight [out, in]` → `[N, out, H, W]`.
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        fallback_forward::<Self>(x, weight)
    }

    /// Gradient with respect to the input, `[N, in, H, W]`, from `output_grad [N, out, H, W]`.
    fn pointwise_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback_x_backward::<Self>(weight, output_grad)
    }

    /// Gradient with respect to the weight, `[out, in]`.
    fn pointwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback_weight_backward::<Self>(x, output_grad)
    }
}

/// [`PointwiseBackend::pointwise_conv2d`] through Burn's `matmul`.
pub fn fallback_forward<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let weight = float::<B, 2>(weight);
    let out = weight.dims()[0];
    let y = weight.unsqueeze::<3>().matmul(x.reshape([n, c, h * w]));
    y.reshape([n, out, h, w]).into_primitive().tensor()
}

/// [`PointwiseBackend::pointwise_conv2d_x_backward`] through Burn's `matmul`.
pub fn fallback_x_backward<B: Backend>(
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let dy = float::<B, 4>(output_grad);
    let [n, out, h, w] = dy.dims();
    let weight = float::<B, 2>(weight);
    let c = weight.dims()[1];
    let dx = weight
        .transpose()
        .unsqueeze::<3>()
        .matmul(dy.reshape([n, out, h * w]));
    dx.reshape([n, c, h, w]).into_primitive().tensor()
}

/// [`PointwiseBackend::pointwise_conv2d_weight_backward`] through Burn's `matmul`.
pub fn fallback_weight_backward<B: Backend>(
    x: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let dy = float::<B, 4>(output_grad);
    let out = dy.dims()[1];
    let dw = dy
        .reshape([n, out, h * w])
        .matmul(x.reshape([n, c, h * w]).swap_dims(1, 2))
        .sum_dim(0);
    dw.reshape([out, c]).into_primitive().tensor()
}

/// `[N, C, H, W]` as `[N·H·W, C]` rows (a copy: the channels move last).
fn to_rows<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 2> {
    let t = float::<B, 4>(t);
    let [n, c, h, w] = t.dims();
    t.permute([0, 2, 3, 1]).reshape([n * h * w, c])
}

/// `[N·H·W, C]` rows back to `[N, C, H, W]` (a permuted view).
fn from_rows<B: Backend>(rows: Tensor<B, 2>, [n, h, w]: [usize; 3]) -> FloatTensor<B> {
    let c = rows.dims()[1];
    rows.reshape([n, h, w, c])
        .permute([0, 3, 1, 2])
        .into_primitive()
        .tensor()
}

/// [`PointwiseBackend::pointwise_conv2d`] as one GEMM over `N·H·W` rows:
/// `[N·H·W, in] × [in, out]`. Where maps are small (MobileNet's last stages: 4×4 down to
/// 1×1) this beats [`fallback_forward`]'s `N` batched products with `H·W` columns each (on
/// CubeCL: 10–17× on lavapipe, BENCHMARKS.md); on large maps the two permutes cost more
/// than they save.
pub fn rows_forward<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>) -> FloatTensor<B> {
    let [n, _, h, w] = super::primitive_dims::<B>(&x);
    let y = to_rows::<B>(x).matmul(float::<B, 2>(weight).transpose());
    from_rows(y, [n, h, w])
}

/// [`PointwiseBackend::pointwise_conv2d_x_backward`] as one GEMM over `N·H·W` rows
/// (see [`rows_forward`]).
pub fn rows_x_backward<B: Backend>(
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let [n, _, h, w] = super::primitive_dims::<B>(&output_grad);
    let dx = to_rows::<B>(output_grad).matmul(float::<B, 2>(weight));
    from_rows(dx, [n, h, w])
}

/// [`PointwiseBackend::pointwise_conv2d_weight_backward`] as one GEMM over `N·H·W` rows:
/// `dyᵀ [out, N·H·W] × x [N·H·W, in]` (see [`rows_forward`]).
pub fn rows_weight_backward<B: Backend>(
    x: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let dw = to_rows::<B>(output_grad)
        .transpose()
        .matmul(to_rows::<B>(x));
    dw.into_primitive().tensor()
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Pointwise 2-D convolution, the op behind the `PointwiseConv2d` module:
/// `x [N, in, H, W]`, `weight [out, in]` → `[N, out, H, W]`.
///
/// # Panics
/// When `weight`'s second dimension is not `x`'s channel count.
pub fn pointwise_conv2d<B: PointwiseBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 2>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let [out, expected] = weight.dims();
    assert_eq!(
        c, expected,
        "pointwise conv with [{out}, {expected}] weights expects {expected} input channels, got input [{n}, {c}, {h}, {w}]"
    );
    let y = B::pointwise_conv2d(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
    );
    float::<B, 4>(y)
}
