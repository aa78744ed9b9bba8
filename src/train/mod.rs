//! Training: a library function, generic over the autodiff backend, that trains a
//! [`crate::models::MobileNet`] on the synthetic shapes or an image folder and
//! writes everything a run produces into an artifact directory.
//!
//! ```text
//! artifact_dir/
//!   config.json       the full TrainingConfig
//!   metrics.csv       one row per epoch
//!   summary.json      TrainReport (final/best validation accuracy, throughput, history)
//!   curves.png        loss and accuracy against the epoch
//!   confusion.csv     validation confusion matrix of the last epoch
//!   checkpoint.bin    latest checkpoint: model, optimiser state, epoch, step
//!   best_model.bin    model of the epoch with the best validation accuracy
//!   classes.json      class names in label order
//! ```
//!
//! Randomness is a pure function of the seed: model initialisation, each epoch's shuffle
//! and augmentation, and dropout (the backend is re-seeded at each epoch), so a run
//! resumed from the checkpoint after epoch k continues exactly as the uninterrupted run.

mod checkpoint;
mod metrics;
mod schedule;

pub use checkpoint::{Checkpoint, CheckpointHeader, write_atomically};
pub use metrics::{
    ConfusionMatrix, EpochMetrics, TrainReport, metrics_csv, parse_metrics_csv, plot_curves,
    write_summary,
};
pub use schedule::cosine_with_warmup;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer, SgdConfig};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::data::{
    FolderDataset, FolderOptions, ImageBatch, ImageBatcher, ImageItem, Normalization,
    SyntheticConfig, augment,
};
use crate::kernels::DepthwiseBackend;
use crate::models::{MobileNet, MobileNetConfig};

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// SGD with momentum (no dampening, as PyTorch) and L2 weight decay.
    #[serde(rename = "sgd")]
    Sgd,
    /// AdamW with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW,
}

/// Where the images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    /// The procedural shapes of [`crate::data::SyntheticDataset`].
    Synthetic,
    /// An image folder (see [`crate::data::FolderDataset`]).
    Folder(PathBuf),
}

/// Everything that defines a training run (saved as `config.json`).
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// The network.
    pub model: MobileNetConfig,
    /// The images.
    #[config(default = "DataSource::Synthetic")]
    pub data: DataSource,
    /// Side of the (square) training images.
    #[config(default = 64)]
    pub image_size: usize,
    /// Synthetic training images.
    #[config(default = 5000)]
    pub train_size: usize,
    /// Synthetic validation images.
    #[config(default = 1000)]
    pub valid_size: usize,
    /// Epochs.
    #[config(default = 10)]
    pub epochs: usize,
    /// Images per optimisation step.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Optimiser.
    #[config(default = "OptimizerKind::AdamW")]
    pub optimizer: OptimizerKind,
    /// Peak learning rate (after warm-up).
    #[config(default = 0.005)]
    pub lr: f64,
    /// SGD momentum.
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Weight decay (L2 for SGD, decoupled for AdamW).
    #[config(default = 4e-5)]
    pub weight_decay: f64,
    /// Label smoothing of the training loss, in [0, 1).
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Epochs of linear learning-rate warm-up before the cosine decay.
    #[config(default = 1)]
    pub warmup_epochs: usize,
    /// Zero padding of the random-crop augmentation (0 turns cropping off).
    #[config(default = 4)]
    pub crop_padding: usize,
    /// Seed of everything random.
    #[config(default = 42)]
    pub seed: u64,
    /// Threads that prepare images (0: all cores).
    #[config(default = 0)]
    pub num_workers: usize,
    /// With an image folder: skip unreadable or non-image files with a warning instead of
    /// failing.
    #[config(default = false)]
    pub skip_bad_files: bool,
}

impl TrainingConfig {
    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        self.model.validate()?;
        if self.epochs == 0 {
            return bad("epochs must be at least 1, got 0".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1, got 0".into());
        }
        if self.image_size < 32 {
            return bad(format!(
                "image_size must be at least 32 (the network's total stride), got {}",
                self.image_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if let DataSource::Folder(path) = &self.data
            && !path.is_dir()
        {
            return Err(Error::File {
                path: path.clone(),
                message: "image folder not found (expected a directory)".into(),
            });
        }
        Ok(())
    }
}

/// How to run (not part of the saved configuration).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where everything is written.
    pub artifact_dir: PathBuf,
    /// Continue from `artifact_dir/checkpoint.bin` (the configuration must match the saved
    /// one).
    pub resume: bool,
    /// Stop after this many completed epochs (as if interrupted); the checkpoint allows
    /// resuming.
    pub stop_after_epoch: Option<usize>,
    /// Show progress bars and print per-epoch lines and the confusion matrix.
    pub verbose: bool,
    /// Backend name recorded in the summary.
    pub backend_name: String,
}

impl RunOptions {
    /// Quiet options writing to `artifact_dir`.
    pub fn new(artifact_dir: impl Into<PathBuf>, backend_name: &str) -> Self {
        Self {
            artifact_dir: artifact_dir.into(),
            resume: false,
            stop_after_epoch: None,
            verbose: false,
            backend_name: backend_name.to_string(),
        }
    }
}

/// File names inside the artifact directory.
pub mod files {
    /// The training configuration.
    pub const CONFIG: &str = "config.json";
    /// Per-epoch metrics.
    pub const METRICS: &str = "metrics.csv";
    /// The run's summary.
    pub const SUMMARY: &str = "summary.json";
    /// Loss and accuracy curves.
    pub const CURVES: &str = "curves.png";
    /// Validation confusion matrix.
    pub const CONFUSION: &str = "confusion.csv";
    /// Latest checkpoint (model + optimiser + progress).
    pub const CHECKPOINT: &str = "checkpoint.bin";
    /// Best model so far.
    pub const BEST_MODEL: &str = "best_model.bin";
    /// Class names in label order (JSON array).
    pub const CLASSES: &str = "classes.json";
}

/// The data of a run: both splits, class names, normalisation.
struct RunData {
    train: Box<dyn Dataset<ImageItem>>,
    valid: Box<dyn Dataset<ImageItem>>,
    classes: Vec<String>,
    normalization: Normalization,
}

fn load_data(config: &TrainingConfig) -> crate::Result<RunData> {
    match &config.data {
        DataSource::Synthetic => {
            let synthetic = SyntheticConfig {
                image_size: config.image_size,
                num_classes: config.model.num_classes,
                train_size: config.train_size,
                valid_size: config.valid_size,
                seed: config.seed,
            };
            let train = synthetic.train()?;
            let classes = train.class_names();
            Ok(RunData {
                train: Box::new(train),
                valid: Box::new(synthetic.valid()?),
                classes,
                normalization: Normalization::CENTERED,
            })
        }
        DataSource::Folder(root) => {
            let folder = FolderDataset::load(
                root,
                &FolderOptions {
                    image_size: config.image_size,
                    skip_bad_files: config.skip_bad_files,
                    ..FolderOptions::default()
                },
            )?;
            if folder.class_names.len() != config.model.num_classes {
                return Err(Error::Config(format!(
                    "the model has {} classes but {} has {} class folders {:?}",
                    config.model.num_classes,
                    root.display(),
                    folder.class_names.len(),
                    folder.class_names
                )));
            }
            if folder.valid.is_empty() {
                return Err(Error::File {
                    path: root.clone(),
                    message: "no validation images (too few images per class)".into(),
                });
            }
            Ok(RunData {
                train: Box::new(folder.train),
                valid: Box::new(folder.valid),
                classes: folder.class_names,
                normalization: Normalization::IMAGENET,
            })
        }
    }
}

/// Loads the model saved in `path` (a checkpoint or best-model file) into a model built
/// from `config`; a file of another architecture is refused with both named.
pub fn load_model<B: Backend>(
    config: &MobileNetConfig,
    path: &Path,
    device: &B::Device,
) -> crate::Result<MobileNet<B>> {
    let checkpoint = Checkpoint::load(path)?;
    checkpoint.check_model(config, path)?;
    let record = BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(checkpoint.model, device)
        .map_err(|e| Error::File {
            path: path.to_path_buf(),
            message: format!("cannot decode the model record: {e}"),
        })?;
    Ok(config.try_init::<B>(device)?.load_record(record))
}

/// Seeds a generator for one (purpose, epoch, index) stream of a run.
fn stream(seed: u64, purpose: u64, epoch: usize, index: usize) -> StdRng {
    let mut h = seed ^ 0x243F_6A88_85A3_08D3;
    for v in [purpose, epoch as u64, index as u64] {
        h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    StdRng::seed_from_u64(h)
}

/// Trains as `config` says, writing the artifacts into `options.artifact_dir`.
///
/// Generic over the autodiff backend: `Autodiff<NdArray>`, `Autodiff<Flex>` or
/// `Autodiff<Wgpu>` (the depthwise ops' backward passes run on the inner backend).
pub fn run<B>(
    config: &TrainingConfig,
    options: &RunOptions,
    device: &B::Device,
) -> crate::Result<TrainReport>
where
    B: AutodiffBackend + DepthwiseBackend,
    B::InnerBackend: DepthwiseBackend,
{
    config.validate()?;
    match config.optimizer {
        OptimizerKind::Sgd => {
            let mut sgd = SgdConfig::new().with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0),
            ));
            if config.weight_decay > 0.0 {
                sgd =
                    sgd.with_weight_decay(Some(WeightDecayConfig::new(config.weight_decay as f32)));
            }
            train_with::<B, _>(config, options, device, sgd.init())
        }
        OptimizerKind::AdamW => {
            let adamw = AdamWConfig::new().with_weight_decay(config.weight_decay as f32);
            train_with::<B, _>(config, options, device, adamw.init())
        }
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn train_with<B, O>(
    config: &TrainingConfig,
    options: &RunOptions,
    device: &B::Device,
    mut optimizer: O,
) -> crate::Result<TrainReport>
where
    B: AutodiffBackend + DepthwiseBackend,
    B::InnerBackend: DepthwiseBackend,
    O: Optimizer<MobileNet<B>, B>,
{
    let dir = &options.artifact_dir;
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, format!("cannot create: {e}")))?;
    let data = load_data(config)?;
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let checkpoint_path = dir.join(files::CHECKPOINT);

    B::seed(device, config.seed);
    let mut model = config.model.try_init::<B>(device)?;
    let mut history: Vec<EpochMetrics> = Vec::new();
    let (mut start_epoch, mut step, mut best) = (0usize, 0usize, (0.0f64, 0usize));
    if options.resume {
        let saved = TrainingConfig::load(dir.join(files::CONFIG))
            .map_err(|e| file_error(&dir.join(files::CONFIG), format!("cannot resume: {e}")))?;
        if saved.to_string() != config.to_string() {
            return Err(Error::Config(format!(
                "cannot resume: the configuration differs from the saved {}",
                dir.join(files::CONFIG).display()
            )));
        }
        let checkpoint = Checkpoint::load(&checkpoint_path)?;
        checkpoint.check_model(&config.model, &checkpoint_path)?;
        let record = recorder
            .load(checkpoint.model, device)
            .map_err(|e| file_error(&checkpoint_path, format!("cannot decode the model: {e}")))?;
        model = model.load_record(record);
        let record: O::Record = recorder.load(checkpoint.optimizer, device).map_err(|e| {
            file_error(
                &checkpoint_path,
                format!("cannot decode the optimiser: {e}"),
            )
        })?;
        optimizer = optimizer.load_record(record);
        start_epoch = checkpoint.header.epoch;
        step = checkpoint.header.step;
        let metrics_path = dir.join(files::METRICS);
        let text =
            std::fs::read_to_string(&metrics_path).map_err(|e| file_error(&metrics_path, e))?;
        history = parse_metrics_csv(&text, &metrics_path)?;
        history.truncate(start_epoch);
        best = history.iter().fold((f64::MIN, 0), |b, m| {
            if m.valid_accuracy > b.0 {
                (m.valid_accuracy, m.epoch)
            } else {
                b
            }
        });
    } else {
        let json = config.to_string();
        write_atomically(&dir.join(files::CONFIG), json.as_bytes())?;
        let classes = serde_json::to_vec(&data.classes).expect("strings encode");
        write_atomically(&dir.join(files::CLASSES), &classes)?;
        // A fresh run replaces an earlier one in the same directory.
        for stale in [
            files::CHECKPOINT,
            files::BEST_MODEL,
            files::METRICS,
            files::SUMMARY,
        ] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.num_workers)
        .build()
        .map_err(|e| {
            Error::Config(format!(
                "cannot start {} data workers: {e}",
                config.num_workers
            ))
        })?;
    let batcher = ImageBatcher::new(data.normalization);
    let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let warmup_steps = steps_per_epoch * config.warmup_epochs.min(config.epochs);
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((config.label_smoothing > 0.0).then_some(config.label_smoothing as f32))
        .init(device);
    let params = crate::cost::mobilenet_cost(&model, [config.image_size; 2]).params;
    let (mut trained_images, mut train_seconds) = (0usize, 0.0f64);
    let last_epoch = options
        .stop_after_epoch
        .map_or(config.epochs, |stop| stop.min(config.epochs));
    let mut confusion = ConfusionMatrix::new(data.classes.clone());
    // Eval mode (running statistics, no dropout) on the validation split.
    let validate = |model: &MobileNet<B>| {
        evaluate(
            &model.valid(),
            data.valid.as_ref(),
            &batcher,
            config.batch_size,
            &data.classes,
            device,
        )
    };

    for epoch in start_epoch..last_epoch {
        let epoch_start = Instant::now();
        B::seed(device, config.seed.wrapping_add(1 + epoch as u64));
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut stream(config.seed, 1, epoch, 0));
        let progress = progress_bar(options.verbose, steps_per_epoch, epoch, config.epochs);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = config.lr;
        for indices in order.chunks(config.batch_size) {
            let items: Vec<ImageItem> = pool.install(|| {
                indices
                    .par_iter()
                    .map(|&i| {
                        let item = data.train.get(i).expect("index within the dataset");
                        augment(
                            &item,
                            config.crop_padding,
                            &mut stream(config.seed, 2, epoch, i),
                        )
                    })
                    .collect()
            });
            let batch: ImageBatch<B> = batcher.batch(items, device);
            lr = cosine_with_warmup(config.lr, step, warmup_steps, total_steps);
            let logits = model.forward(batch.images);
            let loss = loss_fn.forward(logits.clone(), batch.targets.clone());
            let batch_loss: f64 = loss.clone().into_scalar().elem();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            step += 1;
            let batch_correct = count_correct(logits.inner(), batch.targets.inner());
            loss_sum += batch_loss * indices.len() as f64;
            correct += batch_correct;
            seen += indices.len();
            if let Some(bar) = &progress {
                bar.inc(1);
                bar.set_message(format!(
                    "loss {:.3} acc {:.3} {:.0} img/s",
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                    seen as f64 / epoch_start.elapsed().as_secs_f64()
                ));
            }
        }
        let epoch_train_seconds = epoch_start.elapsed().as_secs_f64();
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        let (valid_loss, valid_confusion) = validate(&model);
        confusion = valid_confusion;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            valid_loss,
            valid_accuracy: confusion.accuracy(),
            lr,
            train_images_per_second: seen as f64 / epoch_train_seconds,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        trained_images += seen;
        train_seconds += epoch_train_seconds;
        if options.verbose {
            println!(
                "epoch {:>3}/{}: train loss {:.4} acc {:.4} | valid loss {:.4} acc {:.4} | lr {:.2e} | {:.1} img/s",
                metrics.epoch,
                config.epochs,
                metrics.train_loss,
                metrics.train_accuracy,
                metrics.valid_loss,
                metrics.valid_accuracy,
                metrics.lr,
                metrics.train_images_per_second
            );
        }
        let header = CheckpointHeader {
            model: config.model.clone(),
            epoch: epoch + 1,
            step,
            best_valid_accuracy: best.0.max(metrics.valid_accuracy),
            backend: options.backend_name.clone(),
        };
        let model_bytes = recorder
            .record(model.clone().into_record(), ())
            .map_err(|e| file_error(&checkpoint_path, format!("cannot encode the model: {e}")))?;
        if history.is_empty() || metrics.valid_accuracy > best.0 {
            best = (metrics.valid_accuracy, metrics.epoch);
            Checkpoint {
                header: header.clone(),
                model: model_bytes.clone(),
                optimizer: Vec::new(),
            }
            .save(&dir.join(files::BEST_MODEL))?;
        }
        history.push(metrics);
        // Metrics first, then the checkpoint: a checkpoint never refers to epochs that the
        // metrics file lacks.
        write_atomically(&dir.join(files::METRICS), metrics_csv(&history).as_bytes())?;
        let optimizer_bytes = recorder.record(optimizer.to_record(), ()).map_err(|e| {
            file_error(
                &checkpoint_path,
                format!("cannot encode the optimiser: {e}"),
            )
        })?;
        Checkpoint {
            header,
            model: model_bytes,
            optimizer: optimizer_bytes,
        }
        .save(&checkpoint_path)?;
    }

    if start_epoch >= last_epoch && !history.is_empty() {
        // Nothing left to train: report the saved state.
        confusion = validate(&model).1;
    }
    let last = history
        .last()
        .ok_or_else(|| Error::Config("no epoch was run".into()))?;
    let report = TrainReport {
        model: config.model.architecture.name().to_string(),
        backend: options.backend_name.clone(),
        epochs: history.len(),
        final_valid_accuracy: last.valid_accuracy,
        best_valid_accuracy: best.0,
        best_epoch: best.1,
        train_images_per_second: if train_seconds > 0.0 {
            trained_images as f64 / train_seconds
        } else {
            last.train_images_per_second
        },
        train_seconds,
        params,
        history: history.clone(),
    };
    write_atomically(&dir.join(files::CONFUSION), confusion.to_csv().as_bytes())?;
    write_summary(&dir.join(files::SUMMARY), &report)?;
    plot_curves(&dir.join(files::CURVES), &history)?;
    if options.verbose {
        println!("validation confusion matrix (rows: true class, columns: predicted):");
        print!("{}", confusion.to_table());
    }
    Ok(report)
}

fn progress_bar(
    verbose: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
) -> Option<indicatif::ProgressBar> {
    verbose.then(|| {
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
        bar
    })
}

/// Number of rows whose arg-max equals the target.
fn count_correct<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> usize {
    let predictions = logits.argmax(1).squeeze_dim::<1>(1);
    let correct: i64 = predictions.equal(targets).int().sum().into_scalar().elem();
    correct as usize
}

/// Mean cross-entropy and the confusion matrix of `model` (eval mode) on `dataset`.
pub fn evaluate<B: DepthwiseBackend>(
    model: &MobileNet<B>,
    dataset: &dyn Dataset<ImageItem>,
    batcher: &ImageBatcher,
    batch_size: usize,
    classes: &[String],
    device: &B::Device,
) -> (f64, ConfusionMatrix) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut confusion = ConfusionMatrix::new(classes.to_vec());
    let mut loss_sum = 0.0f64;
    let indices: Vec<usize> = (0..dataset.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let items: Vec<ImageItem> = chunk
            .par_iter()
            .map(|&i| dataset.get(i).expect("index within the dataset"))
            .collect();
        let batch: ImageBatch<B> = batcher.batch(items, device);
        let logits = model.forward(batch.images);
        let loss: f64 = loss_fn
            .forward(logits.clone(), batch.targets.clone())
            .into_scalar()
            .elem();
        loss_sum += loss * chunk.len() as f64;
        let predictions = logits.argmax(1).into_data().convert::<i64>();
        let targets = batch.targets.into_data().convert::<i64>();
        let predictions = predictions.as_slice::<i64>().expect("i64 data");
        for (p, t) in predictions
            .iter()
            .zip(targets.as_slice::<i64>().expect("i64 data"))
        {
            confusion.add(*t as usize, *p as usize);
        }
    }
    (loss_sum / dataset.len().max(1) as f64, confusion)
}
