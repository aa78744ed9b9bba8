//! Parity with torchvision: the committed fixtures (made by `scripts/gen_fixtures.py` with
//! PyTorch) hold random torchvision weights, an input batch, eval- and train-mode logits
//! and, for V2, the gradients of a cross-entropy step.

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dwconv::Error;
use dwconv::kernels::{DepthwiseBackend, Layout};
use dwconv::models::{Architecture, MobileNet, MobileNetConfig, StateDict};
use dwconv::nn::CrossEntropyLossConfig;

use crate::common::{
    assert_parameter_gradients, assert_relative, fixture, max_relative_diff, random_values,
    scratch_dir, test_on_every_backend, values,
};

struct Case {
    name: &'static str,
    config: MobileNetConfig,
}

fn cases() -> Vec<Case> {
    // Dropout 0 as in the fixtures, so that train-mode logits are deterministic.
    vec![
        Case {
            name: "v2_w050",
            config: MobileNetConfig::v2(10).with_width_mult(0.5),
        },
        Case {
            name: "v3_small_w050",
            config: MobileNetConfig::v3_small(10).with_width_mult(0.5),
        },
        Case {
            name: "v3_large_w035",
            config: MobileNetConfig::v3_large(10).with_width_mult(0.35),
        },
    ]
    .into_iter()
    .map(|mut case| {
        case.config.dropout = 0.0;
        case
    })
    .collect()
}

fn io(name: &str) -> StateDict {
    StateDict::read(&fixture(&format!("{name}_io.safetensors"))).expect("fixture io file")
}

fn input<B: Backend>(io: &StateDict, device: &B::Device) -> Tensor<B, 4> {
    let data = io.tensors["input"].clone();
    assert_eq!(data.shape.len(), 4, "input rank");
    Tensor::from_data(data, device)
}

/// Eval-mode logits (running statistics) on `B`, train-mode logits (batch statistics)
/// on `Autodiff<B>`.
fn fixture_logits_match_pytorch<B: DepthwiseBackend>(backend: &str) {
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        logits_match_pytorch::<B>(backend, layout);
    }
}

fn logits_match_pytorch<B: DepthwiseBackend>(backend: &str, layout: Layout) {
    let device: B::Device = Default::default();
    for case in cases() {
        let weights = StateDict::read(&fixture(&format!("{}.safetensors", case.name))).unwrap();
        let io = io(case.name);

        let model = case
            .config
            .init::<B>(&device)
            .load_torchvision(&weights)
            .unwrap()
            .with_layout(Some(layout));
        let eval = values(model.forward(input::<B>(&io, &device)));
        let what = format!("{backend} {layout:?} {} eval logits", case.name);
        assert_relative(&what, &eval, &io.values("eval_logits").unwrap(), 1e-4);

        let model = case
            .config
            .init::<Autodiff<B>>(&device)
            .load_torchvision(&weights)
            .unwrap()
            .with_layout(Some(layout));
        let train = values(model.forward(input::<Autodiff<B>>(&io, &device)));
        let what = format!("{backend} {layout:?} {} train logits", case.name);
        assert_relative(&what, &train, &io.values("train_logits").unwrap(), 1e-4);
        // The two modes really differ, so each comparison tests its own statistics.
        assert!(
            max_relative_diff(&train, &eval) > 1e-2,
            "{what}: same as eval"
        );
    }
}

/// Loss and gradients of one cross-entropy step on train-mode logits, each within 1e-3
/// relative of PyTorch's float64 values. The fixture's draw is one where float32 rounding
/// moves them by at most 1e-4 (see `stable` in `scripts/gen_fixtures.py`), so the bound
/// holds for any correct float32 implementation; a wrong gradient is off by O(1).
fn v2_gradients_match_pytorch<B: DepthwiseBackend>(backend: &str) {
    for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
        gradients_match_pytorch::<B>(&format!("{backend} {layout:?}"), layout);
    }
}

fn gradients_match_pytorch<B: DepthwiseBackend>(backend: &str, layout: Layout) {
    let device: B::Device = Default::default();
    let case = &cases()[0];
    let weights = StateDict::read(&fixture("v2_w050.safetensors")).unwrap();
    let io = io("v2_w050");
    let model = case
        .config
        .init::<Autodiff<B>>(&device)
        .load_torchvision(&weights)
        .unwrap()
        .with_layout(Some(layout));
    let logits = model.forward(input::<Autodiff<B>>(&io, &device));
    let target: Vec<i64> = io.tensors["target"].clone().into_vec::<i64>().unwrap();
    let target = Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(target, [2]), &device);
    let loss = CrossEntropyLossConfig::new().init().forward(logits, target);
    let loss_value = values(loss.clone());
    assert_relative(
        &format!("{backend} v2 loss"),
        &loss_value,
        &io.values("loss").unwrap(),
        1e-4,
    );

    assert_parameter_gradients(&format!("{backend} v2"), &model, loss.backward(), &io);
}

test_on_every_backend!(fixture_logits_match_pytorch, v2_gradients_match_pytorch);

#[test]
fn pth_and_safetensors_hold_the_same_weights() {
    let pth = StateDict::read(&fixture("v3_small_w050.pth")).unwrap();
    let safetensors = StateDict::read(&fixture("v3_small_w050.safetensors")).unwrap();
    assert_eq!(
        pth.tensors.keys().collect::<Vec<_>>(),
        safetensors.tensors.keys().collect::<Vec<_>>()
    );
    for key in safetensors.tensors.keys() {
        assert_eq!(pth.values(key), safetensors.values(key), "{key}");
    }
    // And the .pth loads through the file entry point.
    let config = MobileNetConfig::v3_small(10).with_width_mult(0.5);
    config
        .init_from_torchvision::<NdArray>(&fixture("v3_small_w050.pth"), &Default::default())
        .unwrap();
}

#[test]
fn export_of_an_imported_fixture_reproduces_it() {
    let device = Default::default();
    for case in cases() {
        let weights = StateDict::read(&fixture(&format!("{}.safetensors", case.name))).unwrap();
        let model = case
            .config
            .init::<NdArray>(&device)
            .load_torchvision(&weights)
            .unwrap();
        let exported = model.to_torchvision();
        assert_eq!(
            exported.tensors.keys().collect::<Vec<_>>(),
            weights.tensors.keys().collect::<Vec<_>>(),
            "{}: key sets",
            case.name
        );
        for (key, data) in &weights.tensors {
            let exported = &exported.tensors[key];
            assert_eq!(exported.shape, data.shape, "{key}");
            if data.dtype.is_float() {
                assert_eq!(exported.dtype, burn::tensor::DType::F32, "{key}");
                assert_eq!(
                    exported_values(exported),
                    weights.values(key).unwrap(),
                    "{key}"
                );
            }
        }
    }
}

fn exported_values(data: &TensorData) -> Vec<f32> {
    data.clone().into_vec::<f32>().unwrap()
}

/// A model whose BatchNorm running statistics have moved away from 0/1.
fn used_model(config: &MobileNetConfig, seed: u64) -> MobileNet<NdArray> {
    let device = Default::default();
    let model = config.init::<Autodiff<NdArray>>(&device);
    let images = random_values(seed, 2 * 3 * 32 * 32);
    let images = Tensor::from_data(TensorData::new(images, [2, 3, 32, 32]), &device);
    let _ = model.forward(images);
    model.valid()
}

#[test]
fn export_then_import_is_exact_for_every_architecture() {
    let device = Default::default();
    let dir = scratch_dir("export");
    for (i, config) in [
        MobileNetConfig::v1(7).with_width_mult(0.25),
        MobileNetConfig::v2(7).with_width_mult(0.35),
        MobileNetConfig::v3_small(7).with_width_mult(0.75),
        MobileNetConfig::v3_large(7).with_width_mult(0.5),
    ]
    .iter()
    .enumerate()
    {
        let model = used_model(config, i as u64);
        let exported = model.to_torchvision();
        let path = dir.join(format!("{}.safetensors", config.architecture));
        exported.write_safetensors(&path).unwrap();
        let reloaded = config
            .init_from_torchvision::<NdArray>(&path, &device)
            .unwrap();
        let again = reloaded.to_torchvision();
        assert_eq!(again.tensors.len(), exported.tensors.len());
        for (key, data) in &exported.tensors {
            assert_eq!(again.tensors[key], *data, "{}: {key}", config.architecture);
        }
        // The running statistics travelled (they are not at their initial 0/1).
        let var_key = exported
            .tensors
            .keys()
            .find(|k| k.ends_with("running_var"))
            .unwrap();
        assert!(exported.values(var_key).unwrap().iter().any(|v| *v != 1.0));
        // Same logits, bit for bit.
        let images = random_values(40 + i as u64, 3 * 32 * 32);
        let images = || Tensor::from_data(TensorData::new(images.clone(), [1, 3, 32, 32]), &device);
        assert_eq!(
            values(model.forward(images())),
            values(reloaded.forward(images())),
            "{}",
            config.architecture
        );
    }
}

fn mismatch_message(state: &StateDict, config: &MobileNetConfig) -> String {
    match config
        .init::<NdArray>(&Default::default())
        .load_torchvision(state)
    {
        Err(e @ Error::StateDict(_)) => e.to_string(),
        Err(e) => panic!("expected a state dict mismatch, got {e}"),
        Ok(_) => panic!("a mismatched state dict loaded"),
    }
}

#[test]
fn mismatched_state_dicts_name_the_keys() {
    let config = MobileNetConfig::v2(10).with_width_mult(0.5);
    let weights = StateDict::read(&fixture("v2_w050.safetensors")).unwrap();

    let mut missing = weights.clone();
    missing.tensors.remove("features.5.conv.1.0.weight");
    let message = mismatch_message(&missing, &config);
    assert!(
        message.contains("1 missing: features.5.conv.1.0.weight [96, 1, 3, 3]"),
        "{message}"
    );

    let mut extra = weights.clone();
    extra.tensors.insert(
        "features.19.weight".into(),
        TensorData::new(vec![0f32; 4], [2, 2]),
    );
    let message = mismatch_message(&extra, &config);
    assert!(
        message.contains("1 unexpected: features.19.weight [2, 2]"),
        "{message}"
    );

    let mut wrong = weights.clone();
    wrong.tensors.insert(
        "classifier.1.weight".into(),
        TensorData::new(vec![0f32; 1280 * 7], [7, 1280]),
    );
    let message = mismatch_message(&wrong, &config);
    assert!(
        message.contains("classifier.1.weight: expected [10, 1280], found [7, 1280]"),
        "{message}"
    );
    assert!(message.contains("7 classes"), "{message}");

    // Another architecture's file says what it looks like.
    let v3 = StateDict::read(&fixture("v3_small_w050.safetensors")).unwrap();
    let message = mismatch_message(&v3, &config);
    assert!(
        message.contains("do not fit a v2 (10 classes)"),
        "{message}"
    );
    assert!(
        message.contains("looks like torchvision MobileNetV3-Small (stem 8 channels, 10 classes)"),
        "{message}"
    );
    // Another width: shapes are named.
    let message = mismatch_message(&weights, &MobileNetConfig::v2(10));
    assert!(
        message.contains("features.0.0.weight: expected [32, 3, 3, 3], found [16, 3, 3, 3]"),
        "{message}"
    );
    // Architecture enum is part of the public API the message relies on.
    assert_eq!(Architecture::V2.name(), "v2");
}

#[test]
fn bad_weight_files_name_the_file() {
    let dir = scratch_dir("bad-weights");
    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(fixture("v3_small_w050.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = StateDict::read(&truncated).unwrap_err().to_string();
    assert!(message.contains("truncated.safetensors"), "{message}");

    let odd = dir.join("weights.onnx");
    std::fs::write(&odd, b"x").unwrap();
    let message = StateDict::read(&odd).unwrap_err().to_string();
    assert!(
        message.contains("unknown weight file extension \"onnx\""),
        "{message}"
    );

    let garbage = dir.join("garbage.pth");
    std::fs::write(&garbage, b"not a pickle").unwrap();
    let message = StateDict::read(&garbage).unwrap_err().to_string();
    assert!(message.contains("garbage.pth"), "{message}");
}
