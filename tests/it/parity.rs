//! Parity with PyTorch models through committed fixtures (`scripts/gen_timm_fixtures.py`,
//! `scripts/gen_efficientnet_fixtures.py`): each case is a configuration and a fixture
//! holding random weights (`<name>.safetensors`, `<name>.pth`), an input and PyTorch's
//! float64 eval logits, and for some a cross-entropy step's logits, loss and gradients
//! (`<name>_io.safetensors`). The families' test modules run these checks on their cases,
//! and the short training checks below on their models.

use burn::backend::{Autodiff, NdArray};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dwconv::data::{ImageBatch, ImageBatcher, Normalization, SyntheticConfig};
use dwconv::kernels::{DepthwiseBackend, Layout};
use dwconv::models::{MobileNet, MobileNetConfig, StateDict};
use dwconv::nn::CrossEntropyLossConfig;
use dwconv::train::{RunOptions, TrainingConfig, files, run};

use crate::common::{assert_parameter_gradients, assert_relative, fixture, scratch_dir, values};

/// A model configuration and the stem of its fixture files.
pub struct Case {
    /// The configuration the fixture's weights fit.
    pub config: MobileNetConfig,
    /// `tests/fixtures/<name>.safetensors` & co.
    pub name: &'static str,
    /// Whether `<name>.pth` exists.
    pub pth: bool,
}

pub fn read(name: &str) -> StateDict {
    StateDict::read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn tensor_of<B: Backend, const D: usize>(
    io: &StateDict,
    key: &str,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(io.tensors[key].clone(), device)
}

/// The layouts the parity tests run on `B`: both where channels-last is the default (the
/// CPU backends), else the default only (channels-last on the CubeCL backends is Burn's
/// permutes around the same kernels, which the torchvision parity tests run, and each
/// layout costs lavapipe tens of seconds here).
pub fn layouts<B: DepthwiseBackend>() -> Vec<Layout> {
    match B::preferred_layout() {
        Layout::ChannelsLast => vec![Layout::ChannelsFirst, Layout::ChannelsLast],
        Layout::ChannelsFirst => vec![Layout::ChannelsFirst],
    }
}

/// Eval logits of every case within 1e-4 of PyTorch's float64 values: in [`layouts`] for
/// the first `in_both_layouts` cases, the backend's preferred one for the others; the
/// weights read from the `.pth` file for every second case that has one, from the
/// `.safetensors` file otherwise (the two hold the same tensors, see
/// [`pth_files_hold_the_same_tensors`]).
pub fn eval_logits_match<B: DepthwiseBackend>(
    backend: &str,
    cases: &[Case],
    in_both_layouts: usize,
) {
    let device: B::Device = Default::default();
    for (index, case) in cases.iter().enumerate() {
        let format = match index % 2 == 1 && case.pth {
            true => "pth",
            false => "safetensors",
        };
        let weights = read(&format!("{}.{format}", case.name));
        let io = read(&format!("{}_io.safetensors", case.name));
        let layouts = match index < in_both_layouts {
            true => layouts::<B>(),
            false => vec![B::preferred_layout()],
        };
        let model = case
            .config
            .init::<B>(&device)
            .load_torchvision(&weights)
            .unwrap();
        for layout in layouts {
            let model = model.clone().with_layout(Some(layout));
            let logits = values(model.forward(tensor_of::<B, 4>(&io, "input", &device)));
            assert_relative(
                &format!("{backend} {layout:?} {} eval logits (.{format})", case.name),
                &logits,
                &io.values("eval_logits").unwrap(),
                1e-4,
            );
        }
    }
}

/// Train-mode logits, the loss, the input gradient and the parameter gradients a fixture
/// holds, within 1e-3 of PyTorch's float64 values (logits and loss 1e-4), in every one of
/// [`layouts`].
pub fn gradients_match<B: DepthwiseBackend>(backend: &str, cases: &[Case]) {
    let device: B::Device = Default::default();
    for layout in layouts::<B>() {
        for case in cases {
            let weights = read(&format!("{}.safetensors", case.name));
            let io = read(&format!("{}_io.safetensors", case.name));
            let model = case
                .config
                .init::<Autodiff<B>>(&device)
                .load_torchvision(&weights)
                .unwrap()
                .with_layout(Some(layout));
            let input = tensor_of::<Autodiff<B>, 4>(&io, "train_input", &device).require_grad();
            let logits = model.forward(input.clone());
            let what = format!("{backend} {layout:?} {}", case.name);
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
}

/// The `.pth` file of every case that has one holds the `.safetensors` file's tensors to
/// the bit and loads through the file entry point to PyTorch's logits.
pub fn pth_files_hold_the_same_tensors(cases: &[Case]) {
    let device = Default::default();
    for case in cases.iter().filter(|case| case.pth) {
        let name = case.name;
        let pth = read(&format!("{name}.pth"));
        let safetensors = read(&format!("{name}.safetensors"));
        assert_eq!(
            pth.tensors.keys().collect::<Vec<_>>(),
            safetensors.tensors.keys().collect::<Vec<_>>()
        );
        for (key, data) in &safetensors.tensors {
            assert_eq!(pth.tensors[key], *data, "{name} {key}");
        }
        let model = case
            .config
            .init_from_torchvision::<NdArray>(&fixture(&format!("{name}.pth")), &device)
            .unwrap();
        let io = read(&format!("{name}_io.safetensors"));
        let logits = values(model.forward(tensor_of::<NdArray, 4>(&io, "input", &device)));
        assert_relative(
            &format!("{name} from .pth"),
            &logits,
            &io.values("eval_logits").unwrap(),
            1e-4,
        );
    }
}

/// Import, export, import again: the same bits under PyTorch's keys, for every case.
pub fn export_then_reimport_is_bit_identical(cases: &[Case]) {
    let device = Default::default();
    for case in cases {
        let name = case.name;
        let weights = read(&format!("{name}.safetensors"));
        let model = case
            .config
            .init::<NdArray>(&device)
            .load_torchvision(&weights)
            .unwrap();
        let exported = model.to_torchvision();
        assert_eq!(
            exported.tensors.keys().collect::<Vec<_>>(),
            weights.tensors.keys().collect::<Vec<_>>(),
            "{name}: key sets"
        );
        for key in weights
            .tensors
            .keys()
            .filter(|k| !k.ends_with("num_batches_tracked"))
        {
            assert_eq!(exported.values(key), weights.values(key), "{name} {key}");
        }
        let bytes = exported.to_safetensors().unwrap();
        let reread = StateDict::from_safetensors(&bytes).unwrap();
        let again = case
            .config
            .init::<NdArray>(&device)
            .load_torchvision(&reread)
            .unwrap()
            .to_torchvision();
        for (key, data) in &exported.tensors {
            assert_eq!(again.tensors[key], *data, "{name} {key} after a round trip");
        }
    }
}

/// Parameters and multiply-adds at 224×224 against the reference's figures in
/// `tests/fixtures/<counts_file>` (`{"name": {"params": .., "macs": ..}}`): parameters
/// exactly, multiply-adds within 1%.
pub fn counts_match(counts_file: &str, models: &[(String, MobileNetConfig)]) {
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(counts_file)).unwrap()).unwrap();
    let device = Default::default();
    for (name, config) in models {
        let expected = &counts[name.as_str()];
        let model = config.init::<NdArray>(&device);
        let report = dwconv::cost::mobilenet_cost(&model, [224, 224]);
        assert_eq!(
            report.params as u64,
            expected["params"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name} in {counts_file}")),
            "{name} parameters"
        );
        let macs = expected["macs"].as_u64().unwrap() as f64;
        let off = (report.macs as f64 - macs).abs() / macs;
        assert!(
            off <= 0.01,
            "{name}: {} multiply-adds, the reference's hooks {macs} ({:.2}% off)",
            report.macs,
            off * 100.0
        );
    }
}

/// A short synthetic run (3 shape classes, 32×32, 96 training images, 2 epochs, batch 16,
/// BatchNorm momentum 0.1) of `model`.
pub fn short_training_config(model: MobileNetConfig) -> TrainingConfig {
    TrainingConfig::new(model.with_norm_momentum(Some(0.1)))
        .with_image_size(32)
        .with_train_size(96)
        .with_valid_size(16)
        .with_epochs(2)
        .with_batch_size(16)
        .with_warmup_epochs(0)
}

/// Eight AdamW steps (lr 1e-3) on one synthetic batch (8 images of the shapes dataset,
/// 32×32) lower each model's training loss by at least 5%. The loss before and after is
/// taken with the backend's generator reseeded, so that both see the same drop path
/// masks. (The whole pipeline, `train::run`, is what [`runs_repeat_to_the_bit`] runs.)
pub fn eight_steps_lower_the_loss<B: DepthwiseBackend>(backend: &str, configs: &[MobileNetConfig]) {
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
    for config in configs {
        let mut model = config.init::<A<B>>(&device);
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
        let architecture = config.architecture;
        assert!(
            after.is_finite() && after < 0.95 * before,
            "{backend} {architecture}: loss {before} before eight steps, {after} after"
        );
    }
}

/// Same seed, same bits, drop path included: two `train::run`s of `config(0.3)` on
/// NdArray give the same losses to the bit and the same final weights; `config(0.0)` (no
/// drop path) gives other losses.
pub fn runs_repeat_to_the_bit(config: impl Fn(f64) -> TrainingConfig) {
    let run_once = |drop_path: f64, name: &str| {
        let dir = scratch_dir(name);
        let report = run::<Autodiff<NdArray>>(
            &config(drop_path),
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
    let first = run_once(0.3, "bits-a");
    let second = run_once(0.3, "bits-b");
    assert_eq!(first.0, second.0, "training losses");
    assert!(first.1 == second.1, "final weights differ");
    let without = run_once(0.0, "bits-c");
    assert_ne!(first.0, without.0, "drop path changed nothing");
}

/// `weights` with `removed` taken out, `extra` added (a copy of `copied`) and `misshaped`
/// replaced by three values, offered to `config`'s model: the error lists exactly one
/// missing, one unexpected and one mis-shaped key, names all three, and says what the file
/// looks like (`looks_like`).
pub fn mismatches_are_reported_key_by_key(
    config: &MobileNetConfig,
    mut weights: StateDict,
    [removed, extra, copied, misshaped]: [&str; 4],
    looks_like: &str,
) {
    weights.tensors.remove(removed).expect("a key of the file");
    let copy = weights.tensors[copied].clone();
    weights.tensors.insert(extra.into(), copy);
    let wrong = TensorData::new(vec![0.0f32; 3], [3]);
    weights.tensors.insert(misshaped.into(), wrong);
    let err = config
        .init::<NdArray>(&Default::default())
        .load_torchvision(&weights)
        .unwrap_err();
    let dwconv::Error::StateDict(mismatch) = &err else {
        panic!("expected a state dict mismatch, got {err}");
    };
    assert_eq!(mismatch.missing.len(), 1, "{err}");
    assert_eq!(mismatch.unexpected.len(), 1, "{err}");
    assert_eq!(mismatch.wrong_shape.len(), 1, "{err}");
    let text = err.to_string();
    for needle in [removed, extra, misshaped, looks_like] {
        assert!(text.contains(needle), "{needle} not in: {text}");
    }
}
