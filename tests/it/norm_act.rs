//! The fused BatchNorm + activation op against Burn's own `BatchNorm` followed by the
//! activation (forward, gradients, running statistics), and the CPU kernels against the
//! tensor-op fallback that GPU backends use.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Tensor, TensorPrimitive};
use dwconv::kernels::{
    NormActBackend, fallback_batch_norm_act, fallback_batch_norm_act_backward,
    fallback_channel_affine_act,
};
use dwconv::nn::{Activation, batch_norm_act};

use crate::common::{max_relative_diff, random_values, tensor, values};

const ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::Relu6,
    Activation::HardSwish,
    Activation::Identity,
    Activation::Gelu,
    Activation::Silu,
];

type AD = Autodiff<NdArray>;

/// A BatchNorm with random affine parameters (so that activations see both signs and
/// the ReLU6 / hard-swish kinks).
fn norm(channels: usize, seed: u64) -> BatchNorm<AD> {
    let device = Default::default();
    let mut norm = BatchNormConfig::new(channels)
        .with_momentum(0.1)
        .init::<AD>(&device);
    let gamma: Vec<f32> = random_values(seed, channels)
        .iter()
        .map(|v| 2.0 + 2.0 * v)
        .collect();
    let beta: Vec<f32> = random_values(seed + 1, channels)
        .iter()
        .map(|v| 3.0 * v)
        .collect();
    norm.gamma = burn::module::Param::from_tensor(tensor::<AD, 1>(&gamma, [channels], &device));
    norm.beta = burn::module::Param::from_tensor(tensor::<AD, 1>(&beta, [channels], &device));
    norm
}

fn assert_near(what: &str, got: &[f32], expected: &[f32]) {
    let diff = max_relative_diff(got, expected);
    assert!(diff <= 1e-5, "{what}: relative difference {diff:.3e}");
}

#[test]
fn training_matches_burn_batch_norm_then_activation() {
    let device = Default::default();
    for (i, activation) in ACTIVATIONS.into_iter().enumerate() {
        for shape in [[3, 5, 4, 6], [7, 4, 1, 1], [2, 3, 9, 17]] {
            let [n, c, h, w] = shape;
            let len = n * c * h * w;
            let x_values: Vec<f32> = random_values(10 + i as u64, len)
                .iter()
                .map(|v| 4.0 * v + 0.5)
                .collect();
            let g_values = random_values(20 + i as u64, len);
            let ours_norm = norm(c, 30 + i as u64);
            let burn_norm = ours_norm.clone();

            let x = tensor::<AD, 4>(&x_values, shape, &device).require_grad();
            let out_grad = tensor::<AD, 4>(&g_values, shape, &device);
            let ours = batch_norm_act(x.clone(), &ours_norm, activation);
            let grads = (ours.clone() * out_grad.clone()).sum().backward();
            let ours_dx = values(x.grad(&grads).unwrap());
            let ours_dgamma = values(ours_norm.gamma.val().grad(&grads).unwrap());
            let ours_dbeta = values(ours_norm.beta.val().grad(&grads).unwrap());

            let x2 = tensor::<AD, 4>(&x_values, shape, &device).require_grad();
            let expected = activation.forward(burn_norm.forward(x2.clone()));
            let grads = (expected.clone() * out_grad).sum().backward();
            let what = format!("{activation:?} {shape:?}");
            assert_near(&format!("{what} output"), &values(ours), &values(expected));
            assert_near(
                &format!("{what} dx"),
                &ours_dx,
                &values(x2.grad(&grads).unwrap()),
            );
            assert_near(
                &format!("{what} dgamma"),
                &ours_dgamma,
                &values(burn_norm.gamma.val().grad(&grads).unwrap()),
            );
            assert_near(
                &format!("{what} dbeta"),
                &ours_dbeta,
                &values(burn_norm.beta.val().grad(&grads).unwrap()),
            );

            // Running statistics, PyTorch's rule: the mean as Burn's, the variance unbiased.
            let count = (n * h * w) as f64;
            let mut mean = vec![0f64; c];
            let mut var = vec![0f64; c];
            for (index, v) in x_values.iter().enumerate() {
                mean[(index / (h * w)) % c] += *v as f64 / count;
            }
            for (index, v) in x_values.iter().enumerate() {
                let ch = (index / (h * w)) % c;
                var[ch] += (*v as f64 - mean[ch]).powi(2) / (count - 1.0);
            }
            let expected_mean: Vec<f32> = mean.iter().map(|m| (0.1 * m) as f32).collect();
            let expected_var: Vec<f32> = var.iter().map(|v| (0.9 + 0.1 * v) as f32).collect();
            assert_near(
                &format!("{what} running mean"),
                &values(ours_norm.running_mean.value()),
                &expected_mean,
            );
            assert_near(
                &format!("{what} running var"),
                &values(ours_norm.running_var.value()),
                &expected_var,
            );

            // Inference with those statistics equals Burn's inference.
            let valid = ours_norm.valid();
            let x = tensor::<NdArray, 4>(&x_values, shape, &device);
            assert_near(
                &format!("{what} inference"),
                &values(batch_norm_act(x.clone(), &valid, activation)),
                &values(activation.forward(valid.forward(x))),
            );
        }
    }
}

fn prim<const D: usize>(t: Tensor<NdArray, D>) -> burn::tensor::ops::FloatTensor<NdArray> {
    t.into_primitive().tensor()
}

fn vals<const D: usize>(p: burn::tensor::ops::FloatTensor<NdArray>) -> Vec<f32> {
    values(Tensor::<NdArray, D>::from_primitive(
        TensorPrimitive::Float(p),
    ))
}

#[test]
fn cpu_kernels_match_the_tensor_op_fallback() {
    let device = Default::default();
    for (i, activation) in ACTIVATIONS.into_iter().enumerate() {
        // NCHW planes, and 1×1 maps: the row kernels of the channels-last path.
        for shape in [[4, 6, 5, 3], [90, 6, 1, 1]] {
            let len: usize = shape.iter().product();
            let x: Vec<f32> = random_values(50 + i as u64, len)
                .iter()
                .map(|v| 3.0 * v)
                .collect();
            let dy = random_values(60 + i as u64, len);
            let gamma: Vec<f32> = random_values(70, 6).iter().map(|v| 1.5 + v).collect();
            let beta = random_values(71, 6);
            let t4 = |v: &[f32]| prim(tensor::<NdArray, 4>(v, shape, &device));
            let t1 = |v: &[f32]| prim(tensor::<NdArray, 1>(v, [6], &device));

            let (y, mean, var) = <NdArray as NormActBackend>::batch_norm_act(
                t4(&x),
                t1(&gamma),
                t1(&beta),
                1e-3,
                activation,
            );
            let (y_ref, mean_ref, var_ref) =
                fallback_batch_norm_act::<NdArray>(t4(&x), t1(&gamma), t1(&beta), 1e-3, activation);
            let what = format!("{activation:?} {shape:?}");
            let (mean, var) = (vals::<1>(mean), vals::<1>(var));
            assert_near(&format!("{what} y"), &vals::<4>(y), &vals::<4>(y_ref));
            assert_near(&format!("{what} mean"), &mean, &vals::<1>(mean_ref));
            assert_near(&format!("{what} var"), &var, &vals::<1>(var_ref));

            let grads = <NdArray as NormActBackend>::batch_norm_act_backward(
                t4(&x),
                t1(&gamma),
                t1(&beta),
                t1(&mean),
                t1(&var),
                1e-3,
                activation,
                t4(&dy),
            );
            let grads_ref = fallback_batch_norm_act_backward::<NdArray>(
                t4(&x),
                t1(&gamma),
                t1(&beta),
                t1(&mean),
                t1(&var),
                1e-3,
                activation,
                t4(&dy),
            );
            assert_near(
                &format!("{what} dx"),
                &vals::<4>(grads.0),
                &vals::<4>(grads_ref.0),
            );
            assert_near(
                &format!("{what} dgamma"),
                &vals::<1>(grads.1),
                &vals::<1>(grads_ref.1),
            );
            assert_near(
                &format!("{what} dbeta"),
                &vals::<1>(grads.2),
                &vals::<1>(grads_ref.2),
            );

            let affine = <NdArray as NormActBackend>::channel_affine_act(
                t4(&x),
                t1(&gamma),
                t1(&beta),
                activation,
            );
            let affine_ref =
                fallback_channel_affine_act::<NdArray>(t4(&x), t1(&gamma), t1(&beta), activation);
            assert_near(
                &format!("{what} affine"),
                &vals::<4>(affine),
                &vals::<4>(affine_ref),
            );
        }
    }
}
