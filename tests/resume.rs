//! Interrupted-then-resumed training equals uninterrupted training on ndarray.
//!
//! Its own test binary: Burn's ndarray random generator is process-wide, and another test
//! drawing from it mid-run would change this run's dropout masks.
//!
//! Equality is up to 1e-4, not bitwise: Burn 0.21's autodiff adds up the gradient
//! contributions of a tensor used several times in an order that varies from run to run
//! (two identical uninterrupted runs in one process already differ in the 7th digit), and
//! `metrics.csv`, which the resumed run reads back, keeps 6 decimals. The learning rate is
//! small so that such last-digit differences are not amplified by a chaotic trajectory.

use burn::backend::{Autodiff, NdArray};
use dwconv::models::MobileNetConfig;
use dwconv::train::{RunOptions, TrainingConfig, files, load_model, run};

fn config() -> TrainingConfig {
    TrainingConfig::new(
        MobileNetConfig::v3_small(3)
            .with_width_mult(0.35)
            .with_dropout(0.2),
    )
    .with_train_size(96)
    .with_valid_size(48)
    .with_epochs(3)
    .with_batch_size(32)
    .with_lr(0.002)
    .with_seed(11)
}

/// Metrics that must match (timings excluded).
fn learning_metrics(report: &dwconv::train::TrainReport) -> Vec<[f64; 5]> {
    report
        .history
        .iter()
        .map(|m| {
            [
                m.train_loss,
                m.train_accuracy,
                m.valid_loss,
                m.valid_accuracy,
                m.lr,
            ]
        })
        .collect()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let base = std::env::temp_dir().join(format!("dwconv-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let device = Default::default();
    let config = config();

    let whole = run::<Autodiff<NdArray>>(
        &config,
        &RunOptions::new(base.join("whole"), "ndarray"),
        &device,
    )
    .unwrap();

    let mut first = RunOptions::new(base.join("split"), "ndarray");
    first.stop_after_epoch = Some(1);
    let partial = run::<Autodiff<NdArray>>(&config, &first, &device).unwrap();
    assert_eq!(partial.history.len(), 1);
    let mut second = RunOptions::new(base.join("split"), "ndarray");
    second.resume = true;
    let resumed = run::<Autodiff<NdArray>>(&config, &second, &device).unwrap();

    assert_eq!(resumed.history.len(), 3);
    for (epoch, (a, b)) in learning_metrics(&resumed)
        .iter()
        .zip(learning_metrics(&whole))
        .enumerate()
    {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "epoch {}: {a:?} vs {b:?}",
                epoch + 1
            );
        }
    }
    // The final weights are the same too.
    let a = load_model::<NdArray>(
        &config.model,
        &base.join("whole").join(files::CHECKPOINT),
        &device,
    )
    .unwrap();
    let b = load_model::<NdArray>(
        &config.model,
        &base.join("split").join(files::CHECKPOINT),
        &device,
    )
    .unwrap();
    let x = burn::tensor::Tensor::<NdArray, 4>::ones([1, 3, 32, 32], &device);
    let (ya, yb) = (a.forward(x.clone()).into_data(), b.forward(x).into_data());
    ya.assert_approx_eq::<f32>(&yb, burn::tensor::Tolerance::absolute(1e-4));
    // And stopping really stopped: the partial run left a checkpoint of epoch 1 only.
    assert_eq!(partial.history.len(), 1);

    // Resuming with another configuration is refused.
    let mut other = RunOptions::new(base.join("split"), "ndarray");
    other.resume = true;
    let err = run::<Autodiff<NdArray>>(&config.clone().with_lr(0.01), &other, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs"), "{err}");
}
