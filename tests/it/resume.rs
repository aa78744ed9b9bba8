//! Interrupted-then-resumed training equals uninterrupted training on ndarray, bit for
//! bit, through the library API (`tests/it/reproducibility.rs` does the same with the
//! example binary and SIGKILL).
//!
//! In its own process: Burn's ndarray random generator is process-wide, and another test
//! drawing from it mid-run would change this run's dropout masks. The test runs this test
//! binary again with only itself selected (a test binary of its own linked all of Burn
//! again, a minute of every CI build).

use burn::backend::{Autodiff, NdArray};
use dwconv::models::MobileNetConfig;
use dwconv::train::{RunOptions, TrainingConfig, files, load_model, run};

use crate::common::in_a_process_of_its_own;

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
    in_a_process_of_its_own(
        "resume::resumed_run_equals_uninterrupted_run",
        resumed_run_equals_uninterrupted_run_here,
    );
}

fn resumed_run_equals_uninterrupted_run_here() {
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
    assert_eq!(learning_metrics(&resumed), learning_metrics(&whole));
    // The final weights and optimiser state are the same too, byte for byte, and so are
    // the logits of the saved models.
    let checkpoint = |run: &str| std::fs::read(base.join(run).join(files::CHECKPOINT)).unwrap();
    assert!(
        checkpoint("whole") == checkpoint("split"),
        "checkpoints differ"
    );
    let logits = |run: &str| {
        let model = load_model::<NdArray>(
            &config.model,
            &base.join(run).join(files::CHECKPOINT),
            &device,
        )
        .unwrap();
        let x = burn::tensor::Tensor::<NdArray, 4>::ones([1, 3, 32, 32], &device);
        model.forward(x).into_data()
    };
    assert_eq!(logits("whole"), logits("split"));
    // And stopping really stopped: the partial run left a checkpoint of epoch 1 only.
    assert_eq!(partial.history.len(), 1);

    // Resuming with another configuration is refused.
    let mut other = RunOptions::new(base.join("split"), "ndarray");
    other.resume = true;
    let err = run::<Autodiff<NdArray>>(&config.clone().with_lr(0.01), &other, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs"), "{err}");
    std::fs::remove_dir_all(&base).unwrap();
}
