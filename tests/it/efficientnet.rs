//! EfficientNet (B0–B7, V2-S/M/L) and MnasNet against torchvision: the committed fixtures
//! (made by `scripts/gen_efficientnet_fixtures.py`) hold random torchvision weights of six
//! models, inputs, eval logits, and for EfficientNet-B0 and V2-S a cross-entropy step's
//! logits, loss and gradients; `torchvision_family_counts.json` holds torchvision's
//! parameter and multiply-add counts of every variant.

use burn::backend::NdArray;
use dwconv::kernels::{DepthwiseBackend, Layout};
use dwconv::models::{Architecture, MobileNetConfig};

use crate::common::{in_a_process_of_its_own, test_on_every_backend};
use crate::parity::{
    self, Case, counts_match, eval_logits_match, gradients_match, pth_files_hold_the_same_tensors,
    read,
};

/// A fixture's configuration: 10 classes, no dropout, no stochastic depth (the generator
/// turns both off so that train mode is deterministic).
fn config(architecture: Architecture, width_mult: f64) -> MobileNetConfig {
    MobileNetConfig::new(architecture, 10)
        .with_width_mult(width_mult)
        .with_dropout(0.0)
}

/// The fixtures, the two with gradients first (MBConv with squeeze-excitation; FusedMBConv
/// with and without projection), then one more size of each family.
fn cases() -> Vec<Case> {
    let case = |architecture, width_mult, name, pth| Case {
        config: config(architecture, width_mult),
        name,
        pth,
    };
    vec![
        case(
            Architecture::EfficientNetB0,
            0.5,
            "efficientnet_b0_w050",
            true,
        ),
        case(
            Architecture::EfficientNetV2S,
            0.25,
            "efficientnet_v2_s_w025",
            true,
        ),
        case(Architecture::MnasNet, 1.0, "mnasnet_w100", false),
        case(
            Architecture::EfficientNetB3,
            0.25,
            "efficientnet_b3_w025",
            true,
        ),
        case(Architecture::MnasNet, 0.5, "mnasnet_w050", true),
        case(
            Architecture::EfficientNetV2M,
            0.125,
            "efficientnet_v2_m_w0125",
            true,
        ),
    ]
}

/// Every EfficientNet at 1000 classes, and MnasNet at torchvision's four alphas: the
/// parameter count equals torchvision's, the multiply-adds are within 1% of its hooks.
#[test]
fn parameter_and_multiply_add_counts_match_torchvision() {
    let mut models = Vec::new();
    for architecture in Architecture::ALL {
        match architecture {
            Architecture::MnasNet => {
                for alpha in [0.5, 0.75, 1.0, 1.3] {
                    let config = MobileNetConfig::new(architecture, 1000).with_width_mult(alpha);
                    models.push((format!("mnasnet@{alpha:?}"), config));
                }
            }
            _ if architecture.name().starts_with("efficientnet") => {
                let config = MobileNetConfig::new(architecture, 1000);
                models.push((architecture.name().to_string(), config));
            }
            _ => {}
        }
    }
    assert_eq!(models.len(), 15, "eleven EfficientNets and four MnasNets");
    counts_match("torchvision_family_counts.json", &models);
}

/// Eval logits of the six fixtures within 1e-4 of torchvision's float64 values, the
/// first two in both layouts where the backend has two.
fn efficientnet_logits_match_torchvision<B: DepthwiseBackend>(backend: &str) {
    eval_logits_match::<B>(backend, &cases(), 2);
}

/// Train-mode logits, loss, input gradient and a gradient per block part of
/// EfficientNet-B0 within 1e-3 of torchvision's float64 values, and of V2-S on the CPU
/// backends (channels-last by default; its FusedMBConvs are conv-norm-act pairs, whose
/// CubeCL backward B0's stem and 1×1 convs and the V4 fixtures check, and each model costs
/// lavapipe about ten seconds).
fn efficientnet_gradients_match_torchvision<B: DepthwiseBackend>(backend: &str) {
    let count = match B::preferred_layout() {
        Layout::ChannelsLast => 2,
        Layout::ChannelsFirst => 1,
    };
    gradients_match::<B>(backend, &cases()[..count]);
}

test_on_every_backend!(
    efficientnet_logits_match_torchvision,
    efficientnet_gradients_match_torchvision
);

#[test]
fn pth_files_load_to_the_same_logits() {
    pth_files_hold_the_same_tensors(&cases());
}

/// Import, export, import again: the same bits, under torchvision's keys.
#[test]
fn export_then_reimport_is_bit_identical() {
    parity::export_then_reimport_is_bit_identical(&cases());
}

/// A state dict that does not fit names every missing, unexpected and mis-shaped key, and
/// says what the file looks like.
#[test]
fn mismatched_weights_are_reported_key_by_key() {
    parity::mismatches_are_reported_key_by_key(
        &config(Architecture::EfficientNetB0, 0.5),
        read("efficientnet_b0_w050.safetensors"),
        [
            "features.4.2.block.2.fc1.weight",
            "features.1.0.block.5.weight",
            "features.0.0.weight",
            "features.7.0.block.3.1.bias",
        ],
        "torchvision EfficientNet (B0-B7) with 16 blocks",
    );
    // MnasNet weights offered to an EfficientNet: every key differs, the file is named.
    let mnasnet = read("mnasnet_w050.safetensors");
    let err = config(Architecture::EfficientNetB0, 0.5)
        .init::<NdArray>(&Default::default())
        .load_torchvision(&mnasnet)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("torchvision MnasNet (stem 16 channels"),
        "{err}"
    );
}

/// Eight AdamW steps on one synthetic batch lower EfficientNet-B0's (width 0.25, its
/// reference stochastic depth 0.2) and MnasNet's (alpha 0.5) training loss by 5%, on the
/// CPU backends: on lavapipe the sixteen steps took 45 s, and the CubeCL backward of every
/// layer is checked against torchvision by the gradient test above.
fn efficientnet_short_training_lowers_the_loss<B: DepthwiseBackend>(backend: &str) {
    let configs = [
        MobileNetConfig::reference(Architecture::EfficientNetB0, 3)
            .with_width_mult(0.25)
            .with_dropout(0.0),
        MobileNetConfig::reference(Architecture::MnasNet, 3)
            .with_width_mult(0.5)
            .with_dropout(0.0),
    ];
    parity::eight_steps_lower_the_loss::<B>(backend, &configs);
}

mod efficientnet_short_training_lowers_the_loss {
    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray() {
        super::efficientnet_short_training_lowers_the_loss::<burn::backend::NdArray>("ndarray")
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex() {
        super::efficientnet_short_training_lowers_the_loss::<burn::backend::Flex>("flex")
    }
}

/// Same seed, same bits for EfficientNet-B0 through the whole training pipeline, drop
/// path included.
#[test]
fn efficientnet_runs_repeat_to_the_bit() {
    in_a_process_of_its_own(
        "efficientnet::efficientnet_runs_repeat_to_the_bit",
        efficientnet_runs_repeat_to_the_bit_here,
    );
}

fn efficientnet_runs_repeat_to_the_bit_here() {
    parity::runs_repeat_to_the_bit(|drop_path| {
        parity::short_training_config(
            MobileNetConfig::new(Architecture::EfficientNetB0, 3)
                .with_width_mult(0.25)
                .with_drop_path_rate(drop_path),
        )
    });
}
