//! The pointwise (1×1) conv op: forward and both gradients through `Autodiff<B>` against
//! naive float64 loops, on every backend and on both `matmul` formulations.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use burn::tensor::ops::FloatTensor;
use dwconv::kernels::{
    DepthwiseBackend, fallback_pointwise_forward, fallback_pointwise_weight_backward,
    fallback_pointwise_x_backward, pointwise_conv2d, pointwise_rows_forward,
    pointwise_rows_weight_backward, pointwise_rows_x_backward,
};

use crate::common::{assert_close, random_values, tensor, test_on_every_backend, values};

/// `[N, in, H, W]`, out channels: 1×1 maps (one GEMM for the batch), batch 1, channel
/// counts that are not multiples of any vector width, wide maps.
const CASES: [([usize; 4], usize); 7] = [
    ([2, 3, 4, 5], 4),
    ([1, 16, 8, 8], 24),
    ([5, 7, 1, 1], 9),
    ([3, 32, 1, 1], 1),
    ([4, 1, 3, 2], 6),
    ([2, 24, 16, 17], 40),
    ([6, 13, 2, 2], 11),
];

struct Expected {
    forward: Vec<f64>,
    x_grad: Vec<f64>,
    weight_grad: Vec<f64>,
}

/// Naive float64 loops: `y[n,o,p] = Σ_c w[o,c] x[n,c,p]` and its gradients for `dy`.
fn reference(input: [usize; 4], out: usize, x: &[f32], w: &[f32], dy: &[f32]) -> Expected {
    let [n, c, h, wd] = input;
    let p = h * wd;
    let mut e = Expected {
        forward: vec![0.0; n * out * p],
        x_grad: vec![0.0; n * c * p],
        weight_grad: vec![0.0; out * c],
    };
    for b in 0..n {
        for o in 0..out {
            for ci in 0..c {
                let wv = w[o * c + ci] as f64;
                for q in 0..p {
                    let xv = x[(b * c + ci) * p + q] as f64;
                    let g = dy[(b * out + o) * p + q] as f64;
                    e.forward[(b * out + o) * p + q] += wv * xv;
                    e.x_grad[(b * c + ci) * p + q] += wv * g;
                    e.weight_grad[o * c + ci] += g * xv;
                }
            }
        }
    }
    e
}

fn inputs(i: usize, input: [usize; 4], out: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [n, c, h, w] = input;
    let seed = 100 + 3 * i as u64;
    (
        random_values(seed, n * c * h * w),
        random_values(seed + 1, out * c),
        random_values(seed + 2, n * out * h * w),
    )
}

fn pointwise_matches_reference<B: DepthwiseBackend>(backend: &str) {
    let device: B::Device = Default::default();
    for (i, &(input, out)) in CASES.iter().enumerate() {
        let [n, _, h, w] = input;
        let (xv, wv, gv) = inputs(i, input, out);
        let e = reference(input, out, &xv, &wv, &gv);
        let x = tensor::<Autodiff<B>, 4>(&xv, input, &device).require_grad();
        let weight = tensor::<Autodiff<B>, 2>(&wv, [out, input[1]], &device).require_grad();
        let dy = tensor::<Autodiff<B>, 4>(&gv, [n, out, h, w], &device);
        let y = pointwise_conv2d(x.clone(), weight.clone());
        assert_eq!(y.dims(), [n, out, h, w]);
        let grads = (y.clone() * dy).sum().backward();
        let what = |t: &str| format!("{backend} {t} for {input:?} -> {out}");
        assert_close(&what("forward"), &values(y.inner()), &e.forward, 1e-5);
        assert_close(
            &what("input gradient"),
            &values(x.grad(&grads).unwrap()),
            &e.x_grad,
            1e-5,
        );
        assert_close(
            &what("weight gradient"),
            &values(weight.grad(&grads).unwrap()),
            &e.weight_grad,
            1e-5,
        );
    }
}

test_on_every_backend!(pointwise_matches_reference);

/// Both Burn-op formulations, on every case: `N` batched products (the trait defaults) and
/// one GEMM over `N·H·W` rows (what the CubeCL backends take on small maps).
#[test]
fn fallback_matches_reference() {
    type B = NdArray;
    type Op = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;
    /// Name, forward, input gradient, weight gradient.
    type Form = (&'static str, Op, Op, Op);
    let forms: [Form; 2] = [
        (
            "batched",
            fallback_pointwise_forward::<B>,
            fallback_pointwise_x_backward::<B>,
            fallback_pointwise_weight_backward::<B>,
        ),
        (
            "rows",
            pointwise_rows_forward::<B>,
            pointwise_rows_x_backward::<B>,
            pointwise_rows_weight_backward::<B>,
        ),
    ];
    let device = Default::default();
    let prim = |t: Tensor<B, 4>| t.into_primitive().tensor();
    for (form, forward, x_backward, weight_backward) in forms {
        for (i, &(input, out)) in CASES.iter().enumerate() {
            let [n, c, h, w] = input;
            let (xv, wv, gv) = inputs(i, input, out);
            let e = reference(input, out, &xv, &wv, &gv);
            let x = prim(tensor::<B, 4>(&xv, input, &device));
            let weight = tensor::<B, 2>(&wv, [out, c], &device)
                .into_primitive()
                .tensor();
            let dy = prim(tensor::<B, 4>(&gv, [n, out, h, w], &device));
            let y = forward(x.clone(), weight.clone());
            let dx = x_backward(weight, dy.clone());
            let dw = weight_backward(x, dy);
            let read = |t| {
                values(Tensor::<B, 4>::from_primitive(
                    burn::tensor::TensorPrimitive::Float(t),
                ))
            };
            let what = |t: &str| format!("{form} {t} for {input:?} -> {out}");
            assert_close(&what("forward"), &read(y), &e.forward, 1e-5);
            assert_close(&what("input gradient"), &read(dx), &e.x_grad, 1e-5);
            let dw = values(Tensor::<B, 2>::from_primitive(
                burn::tensor::TensorPrimitive::Float(dw),
            ));
            assert_close(&what("weight gradient"), &dw, &e.weight_grad, 1e-5);
        }
    }
}

/// A wrong channel count is a panic naming both shapes (modules check before calling).
#[test]
#[should_panic(expected = "expects 3 input channels, got input [1, 4, 2, 2]")]
fn channel_mismatch_names_the_shapes() {
    let device = Default::default();
    let x = Tensor::<NdArray, 4>::zeros([1, 4, 2, 2], &device);
    let w = Tensor::<NdArray, 2>::zeros([5, 3], &device);
    let _ = pointwise_conv2d(x, w);
}
