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
//! A run is a pure function of its configuration (seed included) and the thread count:
//! model initialisation, each epoch's shuffle and augmentation, and dropout (the backend is
//! re-seeded at each epoch) come from the seed; every reduction in the crate's kernels has
//! a fixed order for a given thread count; the loss's gradient is exact (see
//! [`CrossEntropyLoss`](crate::nn::CrossEntropyLoss)); and checkpoints hold tensors by module path, not by Burn's
//! random parameter ids. Two runs of the same command write the same bytes (timings
//! aside), and a run killed at any point and resumed from its checkpoint continues exactly
//! as the uninterrupted one.

mod checkpoint;
#[cfg(feature = "train")]
pub mod learner;
mod metrics;
#[cfg(feature = "train")]
mod node_link;
mod schedule;

use crate::atomic_write::write_atomically;

pub use checkpoint::{
    Checkpoint, CheckpointHeader, decode_model, decode_optimizer, encode_model, encode_optimizer,
};
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
use burn::module::{AutodiffModule, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer, SgdConfig};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use hashbrown::HashMap;
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
use crate::nn::CrossEntropyLossConfig;

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
    checkpoint::decode_model(config.try_init::<B>(device)?, &checkpoint.model)
        .map_err(|e| e.in_file(path))
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
        OptimizerKind::Sgd => train_with::<B, _, _>(config, options, device, sgd(config).init()),
        OptimizerKind::AdamW => {
            train_with::<B, _, _>(config, options, device, adamw(config).init())
        }
    }
}

/// SGD as `config` says: momentum without dampening (as PyTorch), L2 weight decay.
fn sgd(config: &TrainingConfig) -> SgdConfig {
    let sgd = SgdConfig::new().with_momentum(Some(
        MomentumConfig::new()
            .with_momentum(config.momentum)
            .with_dampening(0.0),
    ));
    if config.weight_decay > 0.0 {
        sgd.with_weight_decay(Some(WeightDecayConfig::new(config.weight_decay as f32)))
    } else {
        sgd
    }
}

/// AdamW as `config` says (decoupled weight decay).
fn adamw(config: &TrainingConfig) -> AdamWConfig {
    AdamWConfig::new().with_weight_decay(config.weight_decay as f32)
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Where a run stands between epochs: everything a checkpoint restores.
struct TrainState<B: AutodiffBackend, O> {
    model: MobileNet<B>,
    optimizer: O,
    /// Optimisation steps completed.
    step: usize,
    /// One row per completed epoch.
    history: Vec<EpochMetrics>,
}

impl<B: AutodiffBackend + DepthwiseBackend, O> TrainState<B, O> {
    /// Before the first step: the model initialised from the run's seed.
    fn initial(config: &TrainingConfig, device: &B::Device, optimizer: O) -> crate::Result<Self> {
        B::seed(device, config.seed);
        Ok(TrainState {
            model: config
                .model
                .try_init::<B>(device)?
                .with_label_smoothing(config.label_smoothing)?,
            optimizer,
            step: 0,
            history: Vec::new(),
        })
    }
}

impl<B: AutodiffBackend, O> TrainState<B, O> {
    /// Epochs completed.
    fn epoch(&self) -> usize {
        self.history.len()
    }

    /// `(accuracy, epoch)` of the first epoch with the best validation accuracy.
    fn best(&self) -> Option<(f64, usize)> {
        self.history.iter().fold(None, |best, m| match best {
            Some((accuracy, _)) if m.valid_accuracy <= accuracy => best,
            _ => Some((m.valid_accuracy, m.epoch)),
        })
    }
}

/// The learning-rate schedule's step counts.
struct Schedule {
    steps_per_epoch: usize,
    warmup_steps: usize,
    total_steps: usize,
}

impl Schedule {
    fn new(config: &TrainingConfig, train_len: usize) -> Self {
        let steps_per_epoch = train_len.div_ceil(config.batch_size);
        Self {
            steps_per_epoch,
            warmup_steps: steps_per_epoch * config.warmup_epochs.min(config.epochs),
            total_steps: steps_per_epoch * config.epochs,
        }
    }

    fn lr(&self, config: &TrainingConfig, step: usize) -> f64 {
        cosine_with_warmup(config.lr, step, self.warmup_steps, self.total_steps)
    }
}

/// Trains with `optimizer` (an optimiser adaptor, whose record is its per-parameter state):
/// set up or resume, one epoch at a time with a checkpoint after each, then the report.
fn train_with<B, O, R>(
    config: &TrainingConfig,
    options: &RunOptions,
    device: &B::Device,
    optimizer: O,
) -> crate::Result<TrainReport>
where
    B: AutodiffBackend + DepthwiseBackend,
    B::InnerBackend: DepthwiseBackend,
    O: Optimizer<MobileNet<B>, B, Record = HashMap<ParamId, R>>,
    R: Record<B>,
{
    let dir = &options.artifact_dir;
    prepare_artifact_dir(dir)?;
    let data = load_data(config)?;
    let mut state = if options.resume {
        resume(config, dir, device, optimizer)?
    } else {
        start(config, dir, &data, device, optimizer)?
    };
    let last_epoch = options
        .stop_after_epoch
        .map_or(config.epochs, |stop| stop.min(config.epochs));
    let mut run = EpochRunner::new(config, options, &data, device)?;
    let mut confusion = None;
    for epoch in state.epoch()..last_epoch {
        let (trained, metrics, valid_confusion) = run.epoch(state, epoch);
        state = trained;
        confusion = Some(valid_confusion);
        save_epoch(config, options, &mut state, metrics)?;
    }
    let confusion = match confusion {
        Some(confusion) => confusion,
        // Nothing left to train: report the saved state.
        None => run.validate(&state.model).1,
    };
    finish(config, options, &state, &run, confusion)
}

/// Creates the artifact directory and removes temporary files that a killed run left.
fn prepare_artifact_dir(dir: &Path) -> crate::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, format!("cannot create: {e}")))?;
    let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if crate::atomic_write::is_temporary_file(&name.to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A fresh run: the seeded model, the configuration and class names on disk, and the
/// files of an earlier run in the same directory removed.
fn start<B, O>(
    config: &TrainingConfig,
    dir: &Path,
    data: &RunData,
    device: &B::Device,
    optimizer: O,
) -> crate::Result<TrainState<B, O>>
where
    B: AutodiffBackend + DepthwiseBackend,
{
    let state = TrainState::initial(config, device, optimizer)?;
    write_atomically(&dir.join(files::CONFIG), config.to_string().as_bytes())?;
    let classes = serde_json::to_vec(&data.classes).expect("strings encode");
    write_atomically(&dir.join(files::CLASSES), &classes)?;
    for stale in [
        files::CHECKPOINT,
        files::BEST_MODEL,
        files::METRICS,
        files::SUMMARY,
    ] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    Ok(state)
}

/// The state saved in `dir`'s checkpoint, after checking that `config` is the one the run
/// was started with. Without a checkpoint (killed during its first epoch) the run starts
/// over.
fn resume<B, O, R>(
    config: &TrainingConfig,
    dir: &Path,
    device: &B::Device,
    optimizer: O,
) -> crate::Result<TrainState<B, O>>
where
    B: AutodiffBackend + DepthwiseBackend,
    O: Optimizer<MobileNet<B>, B, Record = HashMap<ParamId, R>>,
    R: Record<B>,
{
    check_saved_config(config, dir)?;
    let checkpoint_path = dir.join(files::CHECKPOINT);
    let metrics_path = dir.join(files::METRICS);
    // Built as a fresh run is, so that a run without a checkpoint starts over exactly.
    let initial = TrainState::initial(config, device, optimizer)?;
    if !checkpoint_path.exists() {
        return Ok(initial);
    }
    let checkpoint = Checkpoint::load(&checkpoint_path)?;
    checkpoint.check_model(&config.model, &checkpoint_path)?;
    let model = checkpoint::decode_model(initial.model, &checkpoint.model)
        .map_err(|e| e.in_file(&checkpoint_path))?;
    let record = checkpoint::decode_optimizer(&model, checkpoint.optimizer, device)
        .map_err(|e| e.in_file(&checkpoint_path))?;
    // The metrics file is written before the checkpoint: it may hold one more epoch, which
    // is trained again.
    let text = std::fs::read_to_string(&metrics_path).map_err(|e| file_error(&metrics_path, e))?;
    let mut history = parse_metrics_csv(&text, &metrics_path)?;
    if history.len() < checkpoint.header.epoch {
        return Err(file_error(
            &metrics_path,
            format!(
                "has {} epochs, the checkpoint {}",
                history.len(),
                checkpoint.header.epoch
            ),
        ));
    }
    history.truncate(checkpoint.header.epoch);
    Ok(TrainState {
        model,
        optimizer: initial.optimizer.load_record(record),
        step: checkpoint.header.step,
        history,
    })
}

/// Checks that `config` is the one saved in `dir` (a run to resume).
fn check_saved_config(config: &TrainingConfig, dir: &Path) -> crate::Result<()> {
    let config_path = dir.join(files::CONFIG);
    let saved = TrainingConfig::load(&config_path)
        .map_err(|e| file_error(&config_path, format!("cannot resume: {e}")))?;
    if saved.to_string() != config.to_string() {
        return Err(Error::Config(format!(
            "cannot resume: the configuration differs from the saved {}",
            config_path.display()
        )));
    }
    Ok(())
}

/// What every epoch of a run uses: data, workers, batcher, loss, schedule.
struct EpochRunner<'a, B: Backend> {
    config: &'a TrainingConfig,
    options: &'a RunOptions,
    data: &'a RunData,
    device: &'a B::Device,
    workers: rayon::ThreadPool,
    batcher: ImageBatcher,
    schedule: Schedule,
    /// Images trained and seconds spent training in this process.
    trained: (usize, f64),
}

impl<'a, B> EpochRunner<'a, B>
where
    B: AutodiffBackend + DepthwiseBackend,
    B::InnerBackend: DepthwiseBackend,
{
    fn new(
        config: &'a TrainingConfig,
        options: &'a RunOptions,
        data: &'a RunData,
        device: &'a B::Device,
    ) -> crate::Result<Self> {
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(config.num_workers)
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot start {} data workers: {e}",
                    config.num_workers
                ))
            })?;
        Ok(Self {
            config,
            options,
            data,
            device,
            workers,
            batcher: ImageBatcher::new(data.normalization),
            schedule: Schedule::new(config, data.train.len()),
            trained: (0, 0.0),
        })
    }

    /// The augmented training batch of `indices` in `epoch`: each image's crop and flip
    /// come from its own seeded stream, so the batch does not depend on the workers.
    fn train_batch(&self, epoch: usize, indices: &[usize]) -> ImageBatch<B> {
        let config = self.config;
        let items: Vec<ImageItem> = self.workers.install(|| {
            indices
                .par_iter()
                .map(|&i| {
                    let item = self.data.train.get(i).expect("index within the dataset");
                    augment(
                        &item,
                        config.crop_padding,
                        &mut stream(config.seed, 2, epoch, i),
                    )
                })
                .collect()
        });
        self.batcher.batch(items, self.device)
    }

    /// Trains epoch `epoch` (0-based) from `state` and validates: the trained state, the
    /// epoch's metrics and the validation confusion matrix.
    fn epoch<O: Optimizer<MobileNet<B>, B>>(
        &mut self,
        mut state: TrainState<B, O>,
        epoch: usize,
    ) -> (TrainState<B, O>, EpochMetrics, ConfusionMatrix) {
        let config = self.config;
        let start = Instant::now();
        // Dropout draws from the backend's generator: one seed per epoch, so a resumed run
        // draws what the uninterrupted one did.
        B::seed(self.device, config.seed.wrapping_add(1 + epoch as u64));
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        order.shuffle(&mut stream(config.seed, 1, epoch, 0));
        let progress = progress_bar(
            self.options.verbose,
            self.schedule.steps_per_epoch,
            epoch,
            config.epochs,
        );
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = config.lr;
        for indices in order.chunks(config.batch_size) {
            let batch = self.train_batch(epoch, indices);
            lr = self.schedule.lr(config, state.step);
            let (loss, logits) = state
                .model
                .forward_loss(batch.images, batch.targets.clone());
            let batch_loss: f64 = loss.clone().into_scalar().elem();
            let grads = GradientsParams::from_grads(loss.backward(), &state.model);
            state.model = state.optimizer.step(lr, state.model, grads);
            state.step += 1;
            loss_sum += batch_loss * indices.len() as f64;
            correct += count_correct(logits.inner(), batch.targets.inner());
            seen += indices.len();
            if let Some(bar) = &progress {
                bar.inc(1);
                bar.set_message(format!(
                    "loss {:.3} acc {:.3} {:.0} img/s",
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                    seen as f64 / start.elapsed().as_secs_f64()
                ));
            }
        }
        let train_seconds = start.elapsed().as_secs_f64();
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        self.trained.0 += seen;
        self.trained.1 += train_seconds;
        let (valid_loss, confusion) = self.validate(&state.model);
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            valid_loss,
            valid_accuracy: confusion.accuracy(),
            lr,
            train_images_per_second: seen as f64 / train_seconds,
            seconds: start.elapsed().as_secs_f64(),
        };
        if self.options.verbose {
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
        (state, metrics, confusion)
    }

    /// Eval mode (running statistics, no dropout) on the validation split.
    fn validate(&self, model: &MobileNet<B>) -> (f64, ConfusionMatrix) {
        evaluate(
            &model.valid(),
            self.data.valid.as_ref(),
            &self.batcher,
            self.config.batch_size,
            &self.data.classes,
            self.device,
        )
    }
}

/// Records a finished epoch: the best model when it is the best so far, the metrics, then
/// the checkpoint. Each file is replaced atomically and the metrics go first, so a run
/// killed at any point leaves a checkpoint whose epochs the metrics file has.
fn save_epoch<B, O, R>(
    config: &TrainingConfig,
    options: &RunOptions,
    state: &mut TrainState<B, O>,
    metrics: EpochMetrics,
) -> crate::Result<()>
where
    B: AutodiffBackend,
    O: Optimizer<MobileNet<B>, B, Record = HashMap<ParamId, R>>,
    R: Record<B>,
{
    let dir = &options.artifact_dir;
    let checkpoint_path = dir.join(files::CHECKPOINT);
    let is_best = state
        .best()
        .is_none_or(|(accuracy, _)| metrics.valid_accuracy > accuracy);
    state.history.push(metrics);
    let header = CheckpointHeader {
        model: config.model.clone(),
        epoch: state.epoch(),
        step: state.step,
        best_valid_accuracy: state.best().map_or(0.0, |best| best.0),
        backend: options.backend_name.clone(),
    };
    let model = checkpoint::encode_model(&state.model).map_err(|e| e.in_file(&checkpoint_path))?;
    if is_best {
        Checkpoint {
            header: header.clone(),
            model: model.clone(),
            optimizer: Vec::new(),
        }
        .save(&dir.join(files::BEST_MODEL))?;
    }
    write_atomically(
        &dir.join(files::METRICS),
        metrics_csv(&state.history).as_bytes(),
    )?;
    let optimizer = checkpoint::encode_optimizer(&state.model, state.optimizer.to_record())
        .map_err(|e| e.in_file(&checkpoint_path))?;
    Checkpoint {
        header,
        model,
        optimizer,
    }
    .save(&checkpoint_path)
}

/// The report, confusion matrix, summary and curves of a run.
fn finish<B, O>(
    config: &TrainingConfig,
    options: &RunOptions,
    state: &TrainState<B, O>,
    run: &EpochRunner<'_, B>,
    confusion: ConfusionMatrix,
) -> crate::Result<TrainReport>
where
    B: AutodiffBackend + DepthwiseBackend,
    B::InnerBackend: DepthwiseBackend,
{
    let dir = &options.artifact_dir;
    let history = &state.history;
    let (last, (best_accuracy, best_epoch)) = match (history.last(), state.best()) {
        (Some(last), Some(best)) => (last, best),
        _ => return Err(Error::Config("no epoch was run".into())),
    };
    let (trained_images, train_seconds) = run.trained;
    let report = TrainReport {
        model: config.model.architecture.name().to_string(),
        backend: options.backend_name.clone(),
        epochs: history.len(),
        final_valid_accuracy: last.valid_accuracy,
        best_valid_accuracy: best_accuracy,
        best_epoch,
        train_images_per_second: if train_seconds > 0.0 {
            trained_images as f64 / train_seconds
        } else {
            last.train_images_per_second
        },
        train_seconds,
        params: crate::cost::mobilenet_cost(&state.model, [config.image_size; 2]).params,
        history: history.clone(),
    };
    write_atomically(&dir.join(files::CONFUSION), confusion.to_csv().as_bytes())?;
    write_summary(&dir.join(files::SUMMARY), &report)?;
    plot_curves(&dir.join(files::CURVES), history)?;
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
    let loss_fn = CrossEntropyLossConfig::new().init();
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
