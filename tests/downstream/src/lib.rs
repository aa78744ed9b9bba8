//! A downstream Burn project: its own module embeds dwconv's `MobileNet` and a
//! `DepthwiseSeparableConv`, generic over `B: DepthwiseBackend`, and trains it.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};
use dwconv::kernels::{AutodiffDepthwiseBackend, DepthwiseBackend};
use dwconv::models::{MobileNet, MobileNetConfig};
use dwconv::nn::{CrossEntropyLossConfig, DepthwiseSeparableConv, DepthwiseSeparableConvConfig};

/// The user's model: a separable stem in front of a MobileNetV3-Small.
#[derive(Module, Debug)]
pub struct Classifier<B: DepthwiseBackend> {
    stem: DepthwiseSeparableConv<B>,
    backbone: MobileNet<B>,
}

impl<B: DepthwiseBackend> Classifier<B> {
    /// A classifier of 3-channel images into `num_classes`.
    pub fn new(num_classes: usize, device: &B::Device) -> Self {
        Self {
            stem: DepthwiseSeparableConvConfig::new(3, 3).init(device),
            backbone: MobileNetConfig::v3_small(num_classes)
                .with_width_mult(0.35)
                .init(device),
        }
    }

    /// `images [N, 3, H, W]` → logits `[N, num_classes]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.backbone.forward(self.stem.forward(images).into_nchw())
    }
}

/// What one training step reports.
#[derive(Debug)]
pub struct Step {
    /// Logits' shape.
    pub logits: [usize; 2],
    /// Cross-entropy on the batch before the step.
    pub loss_before: f32,
    /// Cross-entropy on the same batch after the step.
    pub loss_after: f32,
}

/// One Adam step on a random batch of 4 32×32 images, 5 classes, and the loss on that
/// batch before and after it.
pub fn train_step<B: AutodiffDepthwiseBackend>(device: &B::Device) -> Step {
    B::seed(device, 7);
    let model = Classifier::<B>::new(5, device);
    let images = Tensor::<B, 4>::random([4, 3, 32, 32], Distribution::Default, device);
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::from([0i64, 1, 2, 4]), device);
    let criterion = CrossEntropyLossConfig::new().init();
    let logits = model.forward(images.clone());
    let dims = logits.dims();
    let loss = criterion.forward(logits, targets.clone());
    let loss_before = loss.clone().into_scalar().elem::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = AdamConfig::new().init().step(1e-2, model, grads);
    let loss_after = criterion
        .forward(model.forward(images), targets)
        .into_scalar()
        .elem::<f32>();
    Step {
        logits: dims,
        loss_before,
        loss_after,
    }
}

/// What [`learner_epochs`] reports.
#[derive(Debug)]
pub struct LearnerRun {
    /// `weights_digest` of the model before and after training.
    pub digests: (u64, u64),
    /// Mean validation cross-entropy of the trained model (its `InferenceStep`).
    pub valid_loss: f64,
}

/// Trains dwconv's `MobileNet` for two epochs with burn-train's `SupervisedTraining`,
/// handed the model as is (dwconv's `train` feature implements `TrainStep` and
/// `InferenceStep` for it) with the user's own data loaders, optimiser and metrics.
pub fn learner_epochs<B: AutodiffDepthwiseBackend>(
    artifact_dir: &std::path::Path,
    device: &B::Device,
) -> LearnerRun {
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::Dataset;
    use burn::train::metric::{AccuracyMetric, LossMetric};
    use burn::train::{InferenceStep, Learner, SupervisedTraining};
    use dwconv::data::{ImageBatch, ImageBatcher, Normalization, SyntheticConfig};
    use dwconv::train::learner::weights_digest;

    B::seed(device, 5);
    let synthetic = SyntheticConfig {
        image_size: 32,
        num_classes: 3,
        train_size: 96,
        valid_size: 48,
        seed: 5,
    };
    let batcher = ImageBatcher::new(Normalization::CENTERED);
    let train = DataLoaderBuilder::new(batcher.clone())
        .batch_size(16)
        .shuffle(5)
        .build(synthetic.train().unwrap());
    let valid_set = synthetic.valid().unwrap();
    let valid = DataLoaderBuilder::new(batcher.clone())
        .batch_size(16)
        .build(valid_set.clone());
    let model = MobileNetConfig::v3_small(3)
        .with_width_mult(0.35)
        .init::<B>(device);
    let before = weights_digest(&model);
    let result = SupervisedTraining::new(artifact_dir, train, valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .num_epochs(2)
        .launch(Learner::new(model, AdamConfig::new().init(), 5e-3));
    let items = (0..valid_set.len())
        .map(|i| valid_set.get(i).unwrap())
        .collect();
    let batch: ImageBatch<B::InnerBackend> = batcher.batch(items, device);
    LearnerRun {
        digests: (before, weights_digest(&result.model)),
        valid_loss: InferenceStep::step(&result.model, batch)
            .loss
            .into_scalar()
            .elem::<f64>(),
    }
}

/// The same step on `burn::backend::Cuda`: compiled by `cargo check --features cuda`,
/// which proves the bounds hold for Burn's default-feature CUDA backend.
#[cfg(feature = "cuda")]
pub fn cuda_step() -> Step {
    train_step::<burn::backend::Autodiff<burn::backend::Cuda>>(&Default::default())
}

/// The same step on `burn::backend::LibTorch` (type-checked only, see Cargo.toml).
#[cfg(feature = "tch")]
pub fn libtorch_step() -> Step {
    train_step::<burn::backend::Autodiff<burn::backend::LibTorch>>(&Default::default())
}
