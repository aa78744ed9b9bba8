//! MobileNetV4 against timm: the committed fixtures (made by `scripts/gen_timm_fixtures.py`
//! with timm) hold random timm weights at width 0.25, inputs, eval logits, and for
//! conv-small and hybrid-medium the train-mode logits, loss and gradients of a
//! cross-entropy step; `v4_counts.json` holds timm's parameter and multiply-add counts.

use burn::backend::{Autodiff, NdArray};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dwconv::Error;
use dwconv::cost::mobilenet_cost;
use dwconv::data::{ImageBatch, ImageBatcher, Normalization, SyntheticConfig};
use dwconv::kernels::{DepthwiseBackend, Layout};
use dwconv::models::{Architecture, MobileNet, MobileNetConfig, StateDict};
use dwconv::nn::CrossEntropyLossConfig;
use dwconv::train::{RunOptions, TrainingConfig, files, run};

use crate::common::{
    assert_parameter_gradients, assert_relative, fixture, in_a_process_of_its_own, scratch_dir,
    test_on_every_backend, values,
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

fn read(name: &str) -> StateDict {
    StateDict::read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn tensor_of<B: Backend, const D: usize>(
    io: &StateDict,
    key: &str,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(io.tensors[key].clone(), device)
}

#[test]
fn parameter_and_multiply_add_counts_match_timm() {
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("v4_counts.json")).unwrap()).unwrap();
    let device = Default::default();
    for (architecture, _) in VARIANTS {
        let expected = &counts[architecture.name()];
        let model = MobileNetConfig::new(architecture, 1000).init::<NdArray>(&device);
        let report = mobilenet_cost(&model, [224, 224]);
        assert_eq!(
            report.params as u64,
            expected["params"].as_u64().unwrap(),
            "{architecture} parameters"
        );
        let macs = expected["macs"].as_u64().unwrap() as f64;
        let off = (report.macs as f64 - macs).abs() / macs;
        assert!(
            off <= 0.01,
            "{architecture}: {} multiply-adds, timm's hooks {macs} ({:.2}% off)",
            report.macs,
            off * 100.0
        );
    }
}

/// The layouts the V4 parity tests run on `B`: both where channels-last is the default
/// (the CPU backends), else the default only (channels-last on the CubeCL backends is
/// Burn's permutes around the same kernels, which the torchvision parity tests run, and
/// each layout costs lavapipe tens of seconds here).
fn layouts<B: DepthwiseBackend>() -> Vec<Layout> {
    match B::preferred_layout() {
        Layout::ChannelsLast => vec![Layout::ChannelsFirst, Layout::ChannelsLast],
        Layout::ChannelsFirst => vec![Layout::ChannelsFirst],
    }
}

/// Eval logits of all five variants within 1e-4 of timm's float64 values: in [`layouts`]
/// for the first two, the backend's preferred one for the others; the weights read from
/// the `.safetensors` file for every second variant and from the `.pth` file for the others
/// (the two hold the same tensors, see `pth_files_load_to_the_same_logits`).
fn v4_logits_match_timm<B: DepthwiseBackend>(backend: &str) {
    let device: B::Device = Default::default();
    for (index, (architecture, name)) in VARIANTS.into_iter().enumerate() {
        let format = if index % 2 == 0 { "safetensors" } else { "pth" };
        let weights = read(&format!("{name}.{format}"));
        let io = read(&format!("{name}_io.safetensors"));
        let layouts = match index < 2 {
            true => layouts::<B>(),
            false => vec![B::preferred_layout()],
        };
        let model = config(architecture)
            .init::<B>(&device)
            .load_torchvision(&weights)
            .unwrap();
        for layout in layouts {
            let model = model.clone().with_layout(Some(layout));
            let logits = values(model.forward(tensor_of::<B, 4>(&io, "input", &device)));
            assert_relative(
                &format!("{backend} {layout:?} {architecture} eval logits (.{format})"),
                &logits,
                &io.values("eval_logits").unwrap(),
                1e-4,
            );
        }
    }
}

/// Train-mode logits, the loss, the input gradient and a gradient per block kind and part
/// (see `GRADIENT_KEYS` in the script) of conv-small and hybrid-medium, within 1e-3 of
/// timm's float64 values.
fn v4_gradients_match_timm<B: DepthwiseBackend>(backend: &str) {
    for layout in layouts::<B>() {
        gradients_match_timm::<B>(&format!("{backend} {layout:?}"), layout);
    }
}

fn gradients_match_timm<B: DepthwiseBackend>(backend: &str, layout: Layout) {
    let device: B::Device = Default::default();
    for (architecture, name) in &VARIANTS[..2] {
        let weights = read(&format!("{name}.safetensors"));
        let io = read(&format!("{name}_io.safetensors"));
        let model = config(*architecture)
            .init::<Autodiff<B>>(&device)
            .load_torchvision(&weights)
            .unwrap()
            .with_layout(Some(layout));
        let input = tensor_of::<Autodiff<B>, 4>(&io, "train_input", &device).require_grad();
        let logits = model.forward(input.clone());
        let what = format!("{backend} {architecture}");
        assert_relative(
            &format!("{what} train logits"),
            &values(logits.clone()),
            &io.values("train_logits").unwrap(),
            1e-4,
        );
        let target: Vec<i64> = io.tensors["target"].clone().into_vec::<i64>().unwrap();
        let batch = target.len();
        let target =
            Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(target, [batch]), &device);
        let loss = CrossEntropyLossConfig::new().init().forward(logits, target);
        assert_relative(
            &format!("{what} loss"),
            &values(loss.clone()),
            &io.values("loss").unwrap(),
            1e-4,
        );
        let mut grads = loss.backward();
        let input_grad = input.grad_remove(&mut grads).expect("the input's gradient");
        assert_relative(
            &format!("{what} input gradient"),
            &values(input_grad),
            &io.values("grad.input").unwrap(),
            1e-3,
        );
        assert_parameter_gradients(&what, &model, grads, &io);
    }
}

test_on_every_backend!(v4_logits_match_timm, v4_gradients_match_timm);

/// The `.pth` file of every variant holds the `.safetensors` file's tensors to the bit and
/// loads through the file entry point to timm's logits.
#[test]
fn pth_files_load_to_the_same_logits() {
    let device = Default::default();
    for (architecture, name) in &VARIANTS {
        let pth = read(&format!("{name}.pth"));
        let safetensors = read(&format!("{name}.safetensors"));
        assert_eq!(
            pth.tensors.keys().collect::<Vec<_>>(),
            safetensors.tensors.keys().collect::<Vec<_>>()
        );
        for (key, data) in &safetensors.tensors {
            assert_eq!(pth.tensors[key], *data, "{architecture} {key}");
        }
        let model = config(*architecture)
            .init_from_torchvision::<NdArray>(&fixture(&format!("{name}.pth")), &device)
            .unwrap();
        let io = read(&format!("{name}_io.safetensors"));
        let logits = values(model.forward(tensor_of::<NdArray, 4>(&io, "input", &device)));
        assert_relative(
            &format!("{architecture} from .pth"),
            &logits,
            &io.values("eval_logits").unwrap(),
            1e-4,
        );
    }
}

/// Import, export, import again: the same bits, under timm's keys, for every variant.
#[test]
fn export_then_reimport_is_bit_identical() {
    let device = Default::default();
    for (architecture, name) in VARIANTS {
        let weights = read(&format!("{name}.safetensors"));
        let model = config(architecture)
            .init::<NdArray>(&device)
            .load_torchvision(&weights)
            .unwrap();
        let exported = model.to_torchvision();
        assert_eq!(
            exported.tensors.keys().collect::<Vec<_>>(),
            weights.tensors.keys().collect::<Vec<_>>(),
            "{architecture}: key sets"
        );
        for key in weights
            .tensors
            .keys()
            .filter(|k| !k.ends_with("num_batches_tracked"))
        {
            assert_eq!(
                exported.values(key),
                weights.values(key),
                "{architecture} {key}"
            );
        }
        let bytes = exported.to_safetensors().unwrap();
        let reread = StateDict::from_safetensors(&bytes).unwrap();
        let again = config(architecture)
            .init::<NdArray>(&device)
            .load_torchvision(&reread)
            .unwrap()
            .to_torchvision();
        for (key, data) in &exported.tensors {
            assert_eq!(
                again.tensors[key], *data,
                "{architecture} {key} after a round trip"
            );
        }
    }
}

/// A state dict that does not fit names every missing, unexpected and mis-shaped key.
#[test]
fn mismatched_timm_weights_are_reported_key_by_key() {
    let mut weights = read("v4_hybrid_medium_w025.safetensors");
    weights.tensors.remove("blocks.2.4.attn.query.proj.weight");
    let extra = weights.tensors["conv_stem.weight"].clone();
    weights
        .tensors
        .insert("blocks.9.0.extra.weight".into(), extra);
    let wrong = TensorData::new(vec![0.0f32; 3], [3]);
    weights
        .tensors
        .insert("blocks.1.1.layer_scale.gamma".into(), wrong);
    let err = config(Architecture::V4HybridMedium)
        .init::<NdArray>(&Default::default())
        .load_torchvision(&weights)
        .unwrap_err();
    let Error::StateDict(mismatch) = &err else {
        panic!("expected a state dict mismatch, got {err}");
    };
    assert_eq!(mismatch.missing.len(), 1, "{err}");
    assert_eq!(mismatch.unexpected.len(), 1, "{err}");
    assert_eq!(mismatch.wrong_shape.len(), 1, "{err}");
    let text = err.to_string();
    for needle in [
        "blocks.2.4.attn.query.proj.weight",
        "blocks.9.0.extra.weight",
        "blocks.1.1.layer_scale.gamma",
        "timm MobileNet",
    ] {
        assert!(text.contains(needle), "{needle} not in: {text}");
    }
}

/// A short synthetic run of V4 (width 0.25, 3 shape classes, 32×32), stochastic depth on.
fn v4_training_config(architecture: Architecture, drop_path: f64) -> TrainingConfig {
    TrainingConfig::new(
        MobileNetConfig::new(architecture, 3)
            .with_width_mult(0.25)
            .with_drop_path_rate(drop_path)
            .with_norm_momentum(Some(0.1)),
    )
    .with_image_size(32)
    .with_train_size(96)
    .with_valid_size(16)
    .with_epochs(2)
    .with_batch_size(16)
    .with_warmup_epochs(0)
}

/// Eight AdamW steps (lr 1e-3; at 5e-3 V4 from scratch oscillates) on one synthetic batch
/// (8 images of the shapes dataset, drop path 0.1) lower v4-conv-small's and
/// v4-hybrid-medium's training loss by at least 5% on each backend. The loss
/// before and after is taken with the backend's generator reseeded, so that both see
/// the same drop path masks. (The whole pipeline, `train::run`, trains V4 in
/// `v4_runs_with_drop_path_repeat_to_the_bit`; on lavapipe a run of it took minutes.)
fn v4_short_training_lowers_the_loss<B: DepthwiseBackend>(backend: &str) {
    type A<B> = Autodiff<B>;
    let device: B::Device = Default::default();
    let data = SyntheticConfig {
        image_size: 32,
        num_classes: 3,
        train_size: 8,
        valid_size: 8,
        seed: 7,
    }
    .train()
    .unwrap();
    let items = (0..8).filter_map(|i| data.get(i)).collect();
    let batch: ImageBatch<A<B>> = ImageBatcher::new(Normalization::CENTERED).batch(items, &device);
    for architecture in [Architecture::V4ConvSmall, Architecture::V4HybridMedium] {
        let mut model = MobileNetConfig::new(architecture, 3)
            .with_width_mult(0.25)
            .with_dropout(0.0)
            .with_drop_path_rate(0.1)
            .init::<A<B>>(&device);
        let loss = |model: &MobileNet<A<B>>| {
            A::<B>::seed(&device, 7);
            let (loss, _) = model.forward_loss(batch.images.clone(), batch.targets.clone());
            loss.into_scalar().elem::<f64>()
        };
        let before = loss(&model);
        let mut optimizer = AdamWConfig::new().init();
        for _ in 0..8 {
            let (loss, _) = model.forward_loss(batch.images.clone(), batch.targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
        }
        let after = loss(&model);
        assert!(
            after.is_finite() && after < 0.95 * before,
            "{backend} {architecture}: loss {before} before eight steps, {after} after"
        );
    }
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
    let run_once = |drop_path: f64, name: &str| {
        let dir = scratch_dir(name);
        let config = v4_training_config(Architecture::V4HybridMedium, drop_path).with_epochs(2);
        let report = run::<Autodiff<NdArray>>(
            &config,
            &RunOptions::new(&dir, "ndarray"),
            &Default::default(),
        )
        .unwrap();
        let losses: Vec<u64> = report
            .history
            .iter()
            .map(|m| m.train_loss.to_bits())
            .collect();
        let weights = std::fs::read(dir.join(files::CHECKPOINT)).unwrap();
        (losses, weights)
    };
    let first = run_once(0.3, "v4-bits-a");
    let second = run_once(0.3, "v4-bits-b");
    assert_eq!(first.0, second.0, "training losses");
    assert!(first.1 == second.1, "final weights differ");
    let without = run_once(0.0, "v4-bits-c");
    assert_ne!(first.0, without.0, "drop path changed nothing");
}
