//! One training step on the backends of a default-feature Burn project.

use burn::backend::{Autodiff, NdArray, Wgpu};
use dwconv_downstream::train_step;

fn check(step: dwconv_downstream::Step) {
    assert_eq!(step.logits, [4, 5]);
    let (before, after) = (step.loss_before, step.loss_after);
    assert!(before.is_finite() && before > 0.0, "loss {before}");
    assert!(
        after.is_finite() && after != before,
        "loss {before} -> {after} after the step"
    );
}

#[test]
fn trains_on_ndarray() {
    check(train_step::<Autodiff<NdArray>>(&Default::default()));
}

#[test]
fn trains_on_default_feature_wgpu_which_is_fusion() {
    // Burn's default features make `Wgpu` a fusion backend: the case this crate exists for.
    let name = std::any::type_name::<Wgpu>();
    assert!(name.contains("Fusion"), "{name}");
    check(train_step::<Autodiff<Wgpu>>(&Default::default()));
}

#[test]
fn mobilenet_goes_to_burn_trains_supervised_training_as_is() {
    let dir =
        std::env::temp_dir().join(format!("dwconv-downstream-learner-{}", std::process::id()));
    let run = dwconv_downstream::learner_epochs::<Autodiff<NdArray>>(&dir, &Default::default());
    assert_ne!(
        run.digests.0, run.digests.1,
        "training left the weights as they were"
    );
    assert!(
        run.valid_loss.is_finite(),
        "validation loss {}",
        run.valid_loss
    );
    // burn-train's own artifacts of both epochs.
    for file in ["train/epoch-2/Loss.log", "valid/epoch-2/Loss.log"] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
