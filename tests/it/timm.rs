//! MobileNetV4 against timm: the committed fixtures (made by `scripts/gen_timm_fixtures.py`
//! with timm) hold random timm weights at width 0.25, inputs, eval logits, and for
//! conv-small and hybrid-medium the train-mode logits, loss and gradients of a
//! cross-entropy step; `v4_counts.json` holds timm's parameter and multiply-add counts.

use dwconv::kernels::DepthwiseBackend;
use dwconv::models::{Architecture, MobileNetConfig};
use dwconv::train::TrainingConfig;

use crate::common::{in_a_process_of_its_own, test_on_every_backend};
use crate::parity::{
    self, Case, counts_match, eval_logits_match, gradients_match, pth_files_hold_the_same_tensors,
    read,
};

/// The V4 variants, with their fixture names, the two with gradient fixtures first.
const VARIANTS: [(Architecture, &str); 5] = [
    (Architecture::V4ConvSmall, "v4_conv_small_w025"),
    (Architecture::V4HybridMedium, "v4_hybrid_medium_w025"),
    (Architecture::V4ConvMedium, "v4_conv_medium_w025"),
    (Architecture::V4ConvLarge, "v4_conv_large_w025"),
    (Architecture::V4HybridLarge, "v4_hybrid_large_w025"),
];

/// The fixtures' configuration: width 0.25, 10 classes, no dropout (timm's default).
fn config(architecture: Architecture) -> MobileNetConfig {
    MobileNetConfig::new(architecture, 10)
        .with_width_mult(0.25)
        .with_dropout(0.0)
}

fn cases() -> Vec<Case> {
    VARIANTS
        .iter()
        .map(|&(architecture, name)| Case {
            config: config(architecture),
            name,
            pth: true,
        })
        .collect()
}

#[test]
fn parameter_and_multiply_add_counts_match_timm() {
    let models: Vec<_> = VARIANTS
        .iter()
        .map(|(a, _)| (a.name().to_string(), MobileNetConfig::new(*a, 1000)))
        .collect();
    counts_match("v4_counts.json", &models);
}

/// Eval logits of all five variants within 1e-4 of timm's float64 values, the first two
/// in both layouts where the backend has two.
fn v4_logits_match_timm<B: DepthwiseBackend>(backend: &str) {
    eval_logits_match::<B>(backend, &cases(), 2);
}

/// Train-mode logits, the loss, the input gradient and a gradient per block kind and part
/// (see `GRADIENT_KEYS` in the script) of conv-small and hybrid-medium, within 1e-3 of
/// timm's float64 values.
fn v4_gradients_match_timm<B: DepthwiseBackend>(backend: &str) {
    gradients_match::<B>(backend, &cases()[..2]);
}

test_on_every_backend!(v4_logits_match_timm, v4_gradients_match_timm);

/// The `.pth` file of every variant holds the `.safetensors` file's tensors to the bit and
/// loads through the file entry point to timm's logits.
#[test]
fn pth_files_load_to_the_same_logits() {
    pth_files_hold_the_same_tensors(&cases());
}

/// Import, export, import again: the same bits, under timm's keys, for every variant.
#[test]
fn export_then_reimport_is_bit_identical() {
    parity::export_then_reimport_is_bit_identical(&cases());
}

/// A state dict that does not fit names every missing, unexpected and mis-shaped key.
#[test]
fn mismatched_timm_weights_are_reported_key_by_key() {
    parity::mismatches_are_reported_key_by_key(
        &config(Architecture::V4HybridMedium),
        read("v4_hybrid_medium_w025.safetensors"),
        [
            "blocks.2.4.attn.query.proj.weight",
            "blocks.9.0.extra.weight",
            "conv_stem.weight",
            "blocks.1.1.layer_scale.gamma",
        ],
        "timm MobileNet",
    );
}

/// A short synthetic run of V4 (width 0.25, 3 shape classes, 32×32), stochastic depth on.
fn v4_training_config(architecture: Architecture, drop_path: f64) -> TrainingConfig {
    parity::short_training_config(
        MobileNetConfig::new(architecture, 3)
            .with_width_mult(0.25)
            .with_drop_path_rate(drop_path),
    )
}

/// Eight AdamW steps on one synthetic batch, drop path 0.1, lower v4-conv-small's and
/// v4-hybrid-medium's training loss by at least 5% on each backend (see
/// [`parity::eight_steps_lower_the_loss`]).
fn v4_short_training_lowers_the_loss<B: DepthwiseBackend>(backend: &str) {
    let configs = [Architecture::V4ConvSmall, Architecture::V4HybridMedium].map(|a| {
        MobileNetConfig::new(a, 3)
            .with_width_mult(0.25)
            .with_dropout(0.0)
            .with_drop_path_rate(0.1)
    });
    parity::eight_steps_lower_the_loss::<B>(backend, &configs);
}

test_on_every_backend!(v4_short_training_lowers_the_loss);

/// Same seed, same bits, drop path included: two runs of the same configuration give the
/// same losses to the bit and the same final weights; another drop path rate does not.
#[test]
fn v4_runs_with_drop_path_repeat_to_the_bit() {
    in_a_process_of_its_own(
        "timm::v4_runs_with_drop_path_repeat_to_the_bit",
        v4_runs_with_drop_path_repeat_to_the_bit_here,
    );
}

fn v4_runs_with_drop_path_repeat_to_the_bit_here() {
    parity::runs_repeat_to_the_bit(|drop_path| {
        v4_training_config(Architecture::V4HybridMedium, drop_path)
    });
}
