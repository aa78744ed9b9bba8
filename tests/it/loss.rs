//! The crate's cross-entropy against a float64 reference: its value, its gradient by
//! central finite differences of the reference, and the same gradient bits every time.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dwconv::nn::CrossEntropyLossConfig;

use crate::common::{random_values, test_on_every_backend, values};

const BATCH: usize = 37;
const CLASSES: usize = 10;

/// `-mean_i Σ_j q_ij log softmax(x_i)_j` in float64.
fn reference_loss(logits: &[f64], targets: &[usize], smoothing: f64) -> f64 {
    let mut total = 0.0;
    for (row, &target) in logits.chunks(CLASSES).zip(targets) {
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
        for (j, v) in row.iter().enumerate() {
            let q = smoothing / CLASSES as f64 + if j == target { 1.0 - smoothing } else { 0.0 };
            total -= q * (v - log_sum);
        }
    }
    total / targets.len() as f64
}

fn inputs() -> (Vec<f32>, Vec<usize>) {
    let logits: Vec<f32> = random_values(5, BATCH * CLASSES)
        .into_iter()
        .map(|v| 4.0 * v)
        .collect();
    let targets = (0..BATCH).map(|i| (i * 7 + 3) % CLASSES).collect();
    (logits, targets)
}

/// Loss value and logits gradient on backend `B` (with autodiff).
fn loss_and_gradient<B: Backend>(
    logits: &[f32],
    targets: &[usize],
    smoothing: f64,
) -> (f32, Vec<f32>) {
    let device = Default::default();
    let x = Tensor::<Autodiff<B>, 2>::from_data(
        TensorData::new(logits.to_vec(), [BATCH, CLASSES]),
        &device,
    )
    .require_grad();
    let targets: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
    let targets =
        Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(targets, [BATCH]), &device);
    let loss = CrossEntropyLossConfig::new()
        .with_smoothing(smoothing)
        .init()
        .forward(x.clone(), targets);
    let value = values(loss.clone())[0];
    let grads = loss.backward();
    (value, values(x.grad(&grads).unwrap()))
}

fn cross_entropy_matches_float64_reference<B: Backend>(backend: &str) {
    let (logits, targets) = inputs();
    let wide: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    for smoothing in [0.0, 0.1] {
        let (value, gradient) = loss_and_gradient::<B>(&logits, &targets, smoothing);
        let expected = reference_loss(&wide, &targets, smoothing);
        assert!(
            (value as f64 - expected).abs() <= 1e-6 * expected.abs(),
            "{backend}, smoothing {smoothing}: loss {value} vs {expected}"
        );
        // Central differences of the float64 reference, one logit at a time.
        let h = 1e-5;
        for (i, &g) in gradient.iter().enumerate() {
            let mut plus = wide.clone();
            plus[i] += h;
            let mut minus = wide.clone();
            minus[i] -= h;
            let numeric = (reference_loss(&plus, &targets, smoothing)
                - reference_loss(&minus, &targets, smoothing))
                / (2.0 * h);
            // Gradients are O(1 / BATCH); Burn's own loss misses this by ~1e-4 relative.
            assert!(
                (g as f64 - numeric).abs() <= 1e-6 / BATCH as f64 + 1e-6 * numeric.abs(),
                "{backend}, smoothing {smoothing}: d/dx[{i}] = {g}, finite differences {numeric}"
            );
        }
    }
}

fn cross_entropy_gradient_has_the_same_bits_every_time<B: Backend>(backend: &str) {
    let (logits, targets) = inputs();
    let (_, first) = loss_and_gradient::<B>(&logits, &targets, 0.0);
    let mut heap_noise = Vec::new();
    for round in 0..20 {
        // Shift where the next buffers land: results must not depend on alignment.
        heap_noise.push(vec![round as u8; 4 + 12 * round]);
        let (_, gradient) = loss_and_gradient::<B>(&logits, &targets, 0.0);
        let same = gradient
            .iter()
            .zip(&first)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{backend}: round {round} gave other gradient bits");
    }
}

test_on_every_backend!(
    cross_entropy_matches_float64_reference,
    cross_entropy_gradient_has_the_same_bits_every_time
);

#[test]
fn cross_entropy_rejects_smoothing_outside_the_unit_interval() {
    for smoothing in [1.0, -0.1, f64::NAN] {
        let err = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .try_init()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("smoothing") && err.contains(&smoothing.to_string()),
            "{err}"
        );
    }
}
