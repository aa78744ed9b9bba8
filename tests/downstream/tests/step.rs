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
