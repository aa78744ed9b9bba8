//! Burn's own training stack for the crate's models (the `train` feature).
//!
//! - [`MobileNet`] implements burn-train's [`TrainStep`] and [`InferenceStep`] on the
//!   crate's [`ImageBatch`], with [`ClassificationOutput`] (loss, logits, targets) for
//!   burn-train's metrics. The training loss is [`MobileNet::forward_loss`], the step the
//!   crate's own loop ([`crate::train::run`]) takes too, with the model's label smoothing
//!   ([`MobileNet::with_label_smoothing`]); validation uses plain cross-entropy, as
//!   [`crate::train::evaluate`] does. So a user hands a `MobileNet<Autodiff<B>>` to
//!   `SupervisedTraining` directly, for any `B: DepthwiseBackend` whose autodiff wrapper
//!   is one too ([`AutodiffDepthwiseBackend`]: every backend the crate supports).
//! - [`WarmupCosine`]: the crate's learning-rate schedule as a Burn [`LrScheduler`].
//! - [`learn`]: a [`TrainingConfig`] trained through `SupervisedTraining` (metrics, Burn's
//!   dashboard, Burn's file checkpointer and resume), on one device, on several with
//!   burn-train's multi-device strategy, or data-parallel with [`DataParallel`].
//! - [`DataParallel`]: distributed data parallel. Every device of every node (process)
//!   holds a replica; each step, every replica trains on its own batch and the replicas
//!   average their gradients, so they stay equal. Replicas of one process meet through
//!   burn-collective's local server; processes, on one machine or many, through a TCP
//!   star around node 0 (see [`Cluster`]; burn-collective 0.21's own multi-node mode hangs
//!   in its second operation, see the `node_link` module). burn-train 0.21's own DDP
//!   strategy needs a backend with device collectives (CUDA); this one runs on every
//!   backend.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::split::split_dataloader;
use burn::data::dataloader::{DataLoaderBuilder, Progress};
use burn::lr_scheduler::LrScheduler;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend, DeviceOps};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{
    ClassificationOutput, EventProcessorTraining, ExecutionStrategy, InferenceStep, Learner,
    LearnerEvent, LearningComponentsTypes, MultiDeviceOptim, SupervisedLearningStrategy,
    SupervisedTraining, SupervisedTrainingEventProcessor, TrainLoader, TrainOutput, TrainStep,
    TrainingComponents, TrainingItem, TrainingModel, TrainingStrategy, ValidLoader,
};
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};

use super::node_link::NodeLink;

use super::{TrainingConfig, load_data, prepare_artifact_dir, stream};
use crate::Error;
use crate::atomic_write::write_atomically;
use crate::data::{ImageBatch, ImageBatcher, ImageItem, augment};
use crate::kernels::{AutodiffDepthwiseBackend, DepthwiseBackend};
use crate::models::MobileNet;
use crate::nn::CrossEntropyLossConfig;
use crate::train::{OptimizerKind, evaluate, files};

impl<B: AutodiffDepthwiseBackend> TrainStep for MobileNet<B> {
    type Input = ImageBatch<B>;
    type Output = ClassificationOutput<B>;

    /// Forward, the training loss ([`MobileNet::forward_loss`]) and its backward pass.
    fn step(&self, batch: ImageBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let (loss, logits) = self.forward_loss(batch.images, batch.targets.clone());
        let grads = loss.backward();
        TrainOutput::new(
            self,
            grads,
            ClassificationOutput::new(loss, logits, batch.targets),
        )
    }
}

impl<B: DepthwiseBackend> InferenceStep for MobileNet<B> {
    type Input = ImageBatch<B>;
    type Output = ClassificationOutput<B>;

    /// Logits and plain cross-entropy (no label smoothing).
    fn step(&self, batch: ImageBatch<B>) -> ClassificationOutput<B> {
        let logits = self.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init()
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

/// Linear warm-up then cosine decay ([`super::cosine_with_warmup`]) as a Burn
/// [`LrScheduler`]; its record is the number of steps taken, so a resumed run continues
/// the schedule where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmupCosine {
    peak: f64,
    warmup_steps: usize,
    total_steps: usize,
    step: usize,
}

impl WarmupCosine {
    /// `warmup_steps` rising to `peak`, then a half cosine to 0 at `total_steps`.
    pub fn new(peak: f64, warmup_steps: usize, total_steps: usize) -> Self {
        Self {
            peak,
            warmup_steps,
            total_steps,
            step: 0,
        }
    }
}

impl LrScheduler for WarmupCosine {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        let lr =
            super::cosine_with_warmup(self.peak, self.step, self.warmup_steps, self.total_steps);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, step: usize) -> Self {
        self.step = step;
        self
    }
}

/// The training batcher of the Learner path: the crate's augmentation (random crop of
/// the zero-padded image, horizontal flip) drawn from a seeded stream per batch, then
/// [`ImageBatcher`]. Batches are numbered in the order the data loader asks for them, so
/// a run with one loader worker is repeatable; with several, which batch gets which
/// stream depends on the workers' timing.
#[derive(Clone, Debug)]
pub struct AugmentingBatcher {
    batcher: ImageBatcher,
    padding: usize,
    seed: u64,
    batches: Arc<AtomicU64>,
}

impl AugmentingBatcher {
    /// Augments with crop padding `padding` (0: flips only) from `seed`.
    pub fn new(batcher: ImageBatcher, padding: usize, seed: u64) -> Self {
        Self {
            batcher,
            padding,
            seed,
            batches: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for AugmentingBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        let index = self.batches.fetch_add(1, Ordering::Relaxed) as usize;
        let mut rng = stream(self.seed, 3, index, 0);
        let items = items
            .iter()
            .map(|item| augment(item, self.padding, &mut rng))
            .collect();
        self.batcher.batch(items, device)
    }
}

/// The processes (nodes) of a multi-process [`DataParallel`] run and where they meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Number of nodes (processes), at least 1.
    pub nodes: u32,
    /// This node's index in `0..nodes`: it trains on shard `rank` of the training set.
    pub rank: u32,
    /// `host:port` of node 0, which listens there and which every other node connects to:
    /// on several machines, an address of node 0's machine that the others can reach.
    pub master: String,
}

impl Cluster {
    fn check(&self) -> crate::Result<()> {
        if self.nodes == 0 || self.rank >= self.nodes {
            return Err(Error::Config(format!(
                "node rank must be in 0..{} (the number of nodes), got {}",
                self.nodes, self.rank
            )));
        }
        let port = self
            .master
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|&port| port != 0);
        match port {
            Some(_) => Ok(()),
            None => Err(Error::Config(format!(
                "the master address must be host:port with a port in 1..=65535, got '{}'",
                self.master
            ))),
        }
    }
}

/// Data-parallel training over burn-collective: one replica per device on this node, and
/// one node per process when `cluster` is set.
///
/// Each node trains on its shard of the training set (the same number of images on every
/// node), split between its devices. Every step each replica runs forward and backward on
/// its own batch, the gradients are averaged over all replicas (all-reduce, in the
/// model's parameter order), and each replica applies the same optimiser step, so the
/// replicas stay equal. At the end of every epoch the BatchNorm running statistics are
/// averaged too, before the first device of each node validates and checkpoints. Steps
/// go on while every replica has a batch: a replica with one more batch than another
/// skips it.
#[derive(Clone, Debug)]
pub struct DataParallel<B: Backend> {
    /// This node's devices (one replica each).
    pub devices: Vec<B::Device>,
    /// The other processes, if any.
    pub cluster: Option<Cluster>,
}

/// How [`learn`] trains.
#[derive(Clone, Debug)]
pub enum Parallelism<B: Backend> {
    /// One device.
    Single(B::Device),
    /// burn-train's multi-device strategy: each step sends one batch to every device and
    /// sums their gradients on the first, which runs the optimiser.
    MultiDevice(Vec<B::Device>),
    /// Replicas that average their gradients (see [`DataParallel`]).
    DataParallel(DataParallel<B>),
}

impl<B: Backend> Parallelism<B> {
    /// How many batches one optimisation step consumes.
    fn replicas(&self) -> usize {
        match self {
            Parallelism::Single(_) => 1,
            Parallelism::MultiDevice(devices) => devices.len(),
            Parallelism::DataParallel(dp) => {
                dp.devices.len() * dp.cluster.as_ref().map_or(1, |c| c.nodes as usize)
            }
        }
    }
}

/// How to run [`learn`] (not part of the saved configuration).
#[derive(Clone, Debug)]
pub struct LearnerOptions<B: Backend> {
    /// Where Burn's checkpoints and metric logs, and the configuration, go.
    pub artifact_dir: PathBuf,
    /// Continue from the last checkpoint in `artifact_dir` (the configuration must match
    /// the saved one).
    pub resume: bool,
    /// Stop after this many epochs (as if interrupted); a later run resumes.
    pub stop_after_epoch: Option<usize>,
    /// Burn's renderer (the dashboard in a terminal, plain lines otherwise); off: silent.
    pub render: bool,
    /// Where training runs.
    pub parallelism: Parallelism<B>,
}

impl<B: Backend> LearnerOptions<B> {
    /// Quiet, single-device options writing to `artifact_dir`.
    pub fn new(artifact_dir: impl Into<PathBuf>, device: B::Device) -> Self {
        Self {
            artifact_dir: artifact_dir.into(),
            resume: false,
            stop_after_epoch: None,
            render: false,
            parallelism: Parallelism::Single(device),
        }
    }
}

/// What [`learn`] returns.
#[derive(Debug)]
pub struct LearnerReport<B: Backend> {
    /// The trained model (eval mode).
    pub model: MobileNet<B>,
    /// Epochs completed, counting those of the run resumed from.
    pub epochs: usize,
    /// Validation accuracy of the trained model on this node's validation set.
    pub valid_accuracy: f64,
    /// Mean validation cross-entropy.
    pub valid_loss: f64,
    /// Training images per second on this node (the whole `launch`, validation included).
    pub images_per_second: f64,
    /// Seconds `SupervisedTraining::launch` took.
    pub seconds: f64,
    /// With [`Parallelism::DataParallel`]: for each replica on this node, its peer id and
    /// [`weights_digest`] at the end.
    pub replica_digests: Vec<(u32, u64)>,
}

/// Trains `config` through burn-train's `SupervisedTraining`: accuracy, loss and
/// learning-rate metrics, Burn's file checkpointer (resume with
/// [`LearnerOptions::resume`]), and the parallelism of `options`.
pub fn learn<B>(
    config: &TrainingConfig,
    options: &LearnerOptions<B>,
) -> crate::Result<LearnerReport<B::InnerBackend>>
where
    B: AutodiffDepthwiseBackend,
{
    config.validate()?;
    match config.optimizer {
        OptimizerKind::Sgd => learn_with::<B, _>(config, options, super::sgd(config).init()),
        OptimizerKind::AdamW => learn_with::<B, _>(config, options, super::adamw(config).init()),
    }
}

/// The directories `SupervisedTraining` writes into the artifact directory.
const LEARNER_DIRS: [&str; 3] = ["checkpoint", "train", "valid"];

fn learn_with<B, O>(
    config: &TrainingConfig,
    options: &LearnerOptions<B>,
    optimizer: O,
) -> crate::Result<LearnerReport<B::InnerBackend>>
where
    B: AutodiffDepthwiseBackend,
    O: Optimizer<MobileNet<B>, B> + 'static,
{
    let dir = &options.artifact_dir;
    let parallelism = &options.parallelism;
    let cluster = match parallelism {
        Parallelism::DataParallel(dp) => {
            if dp.devices.is_empty() {
                return Err(Error::Config(
                    "data parallel needs at least one device".into(),
                ));
            }
            dp.cluster.as_ref()
        }
        Parallelism::MultiDevice(devices) if devices.is_empty() => {
            return Err(Error::Config(
                "multi-device needs at least one device".into(),
            ));
        }
        _ => None,
    };
    if let Some(cluster) = cluster {
        cluster.check()?;
    }
    prepare_artifact_dir(dir)?;
    let resume_epoch = if options.resume {
        super::check_saved_config(config, dir)?;
        last_checkpoint(dir)
    } else {
        write_atomically(&dir.join(files::CONFIG), config.to_string().as_bytes())?;
        for stale in LEARNER_DIRS {
            let path = dir.join(stale);
            if path.exists() {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| super::file_error(&path, format!("cannot remove: {e}")))?;
            }
        }
        None
    };
    let main_device = match parallelism {
        Parallelism::Single(device) => device.clone(),
        Parallelism::MultiDevice(devices) => devices[0].clone(),
        Parallelism::DataParallel(dp) => dp.devices[0].clone(),
    };

    let data = load_data(config)?;
    let train_len = data.train.len();
    let batch_size = config.batch_size;
    let workers = if config.num_workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        config.num_workers
    };
    let train_loader = DataLoaderBuilder::new(AugmentingBatcher::new(
        ImageBatcher::new(data.normalization),
        config.crop_padding,
        config.seed,
    ))
    .batch_size(batch_size)
    .shuffle(config.seed)
    .num_workers(workers)
    .set_device(main_device.clone())
    .build(data.train);
    let valid_set: Arc<dyn burn::data::dataset::Dataset<ImageItem>> = Arc::from(data.valid);
    let valid_loader = DataLoaderBuilder::new(ImageBatcher::new(data.normalization))
        .batch_size(batch_size)
        .num_workers(workers)
        .set_device(main_device.clone())
        .build(valid_set.clone());

    // The schedule counts optimisation steps: each consumes one batch per replica.
    let steps_per_epoch = (train_len / parallelism.replicas())
        .div_ceil(batch_size)
        .max(1);
    let scheduler = WarmupCosine::new(
        config.lr,
        steps_per_epoch * config.warmup_epochs.min(config.epochs),
        steps_per_epoch * config.epochs,
    );
    B::seed(&main_device, config.seed);
    let model = config
        .model
        .try_init::<B>(&main_device)?
        .with_label_smoothing(config.label_smoothing)?;
    let last_epoch = options
        .stop_after_epoch
        .map_or(config.epochs, |stop| stop.min(config.epochs));

    let digests = Arc::new(Mutex::new(Vec::new()));
    let strategy: TrainingStrategy<_> = match parallelism {
        Parallelism::Single(device) => ExecutionStrategy::single(device.clone()).into(),
        Parallelism::MultiDevice(devices) => {
            ExecutionStrategy::multi(devices.clone(), MultiDeviceOptim::OptimMainDevice).into()
        }
        Parallelism::DataParallel(dp) => TrainingStrategy::Custom(Arc::new(CollectiveStrategy {
            parallel: dp.clone(),
            digests: digests.clone(),
        })),
    };
    let mut training = SupervisedTraining::new(dir, train_loader, valid_loader)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .metric_train_numeric(LearningRateMetric::new())
        .with_file_checkpointer(NamedMpkFileRecorder::<FullPrecisionSettings>::new())
        .with_training_strategy(strategy)
        .num_epochs(last_epoch);
    if !options.render {
        training = training.renderer(SilentRenderer);
    }
    if let Some(epoch) = resume_epoch {
        training = training.checkpoint(epoch);
    }
    let start = Instant::now();
    let result = training.launch(Learner::new(model, optimizer, scheduler));
    let seconds = start.elapsed().as_secs_f64();

    let trained_epochs = last_epoch.saturating_sub(resume_epoch.unwrap_or(0));
    let (valid_loss, confusion) = evaluate(
        &result.model,
        valid_set.as_ref(),
        &ImageBatcher::new(data.normalization),
        batch_size,
        &data.classes,
        &main_device,
    );
    let node_images = match (parallelism, cluster) {
        (_, Some(cluster)) => train_len / cluster.nodes as usize,
        _ => train_len,
    };
    let mut replica_digests = digests.lock().expect("no replica panicked").clone();
    replica_digests.sort();
    Ok(LearnerReport {
        model: result.model,
        epochs: last_epoch.max(resume_epoch.unwrap_or(0)),
        valid_accuracy: confusion.accuracy(),
        valid_loss,
        images_per_second: (trained_epochs * node_images) as f64 / seconds.max(1e-9),
        seconds,
        replica_digests,
    })
}

/// The newest epoch with a model checkpoint in `dir` (Burn's file checkpointer writes
/// `checkpoint/model-<epoch>.mpk`).
fn last_checkpoint(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir.join("checkpoint"))
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(".mpk")?
                .parse::<usize>()
                .ok()
        })
        .max()
}

/// A 64-bit FNV-1a digest of every float tensor of `module` (parameters and running
/// statistics) in module order: equal digests mean equal weights, bit for bit.
pub fn weights_digest<B: Backend, M: Module<B>>(module: &M) -> u64 {
    struct Digest(u64);
    impl Hasher for Digest {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    struct Visitor(Digest);
    impl<B: Backend> ModuleVisitor<B> for Visitor {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let data = param.val().into_data();
            self.0.write(&data.bytes);
        }
    }
    let mut visitor = Visitor(Digest(0xcbf2_9ce4_8422_2325));
    module.visit(&mut visitor);
    visitor.0.finish()
}

/// One replica's place in the run, and how it averages with the others.
struct Replica<'a> {
    /// Its id among this node's burn-collective peers.
    peer: PeerId,
    /// Its index among this node's replicas (0 talks to the other nodes).
    index: usize,
    /// Replicas on this node.
    local: usize,
    /// Replicas in the run.
    total: usize,
    /// The other nodes, if any.
    link: Option<&'a Mutex<NodeLink>>,
}

impl Replica<'_> {
    /// The mean over every replica of `values` (the same length on each): a sum over this
    /// node's replicas (burn-collective), then over the nodes (node 0 sums in rank order)
    /// and back to every replica; every replica gets the same bits.
    fn mean<B: Backend>(&self, values: Vec<f32>, device: &B::Device) -> Vec<f32> {
        let collective_error = |e| panic!("all-reduce failed on {}: {e:?}", self.peer);
        let to_tensor = |values: Vec<f32>| {
            let len = values.len();
            Tensor::<B, 1>::from_data(TensorData::new(values, [len]), device)
                .into_primitive()
                .tensor()
        };
        let to_values = |primitive| {
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(primitive))
                .into_data()
                .into_vec::<f32>()
                .expect("f32 values")
        };
        let mut sum = values;
        if self.local > 1 {
            let local =
                burn_collective::all_reduce::<B>(self.peer, to_tensor(sum), ReduceOperation::Sum)
                    .unwrap_or_else(collective_error);
            sum = to_values(local);
        }
        if let Some(link) = self.link {
            if self.local == 1 {
                sum = link.lock().expect("no replica panicked").sum(sum);
            } else {
                // Replica 0 exchanges this node's sum; the others get the total from it.
                let total = (self.index == 0)
                    .then(|| to_tensor(link.lock().expect("no replica panicked").sum(sum)));
                let total = burn_collective::broadcast::<B>(self.peer, total)
                    .unwrap_or_else(collective_error);
                sum = to_values(total);
            }
        }
        let scale = 1.0 / self.total as f32;
        sum.iter_mut().for_each(|v| *v *= scale);
        sum
    }

    /// Whether every replica says yes.
    fn all_agree<B: Backend>(&self, yes: bool, device: &B::Device) -> bool {
        self.mean::<B>(vec![yes as u8 as f32], device)[0] == 1.0
    }
}

/// Averages `grads` over every replica, in module order (the same on every replica, unlike
/// the random parameter ids), as one buffer.
fn average_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    replica: &Replica<'_>,
    device: &B::Device,
) -> GradientsParams {
    struct Take<'a> {
        grads: &'a mut GradientsParams,
        values: Vec<f32>,
        taken: Vec<(burn::module::ParamId, Vec<usize>)>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.taken.push((param.id, grad.dims().to_vec()));
                let data = grad.into_data().convert::<f32>();
                self.values
                    .extend_from_slice(data.as_slice::<f32>().expect("f32 values"));
            }
        }
    }
    let mut take = Take {
        grads: &mut grads,
        values: Vec::new(),
        taken: Vec::new(),
    };
    model.visit(&mut take);
    let (values, taken) = (take.values, take.taken);
    let mean = replica.mean::<B::InnerBackend>(values, device);
    let mut offset = 0;
    for (id, dims) in taken {
        let len: usize = dims.iter().product();
        let values = mean[offset..offset + len].to_vec();
        offset += len;
        register_gradient::<B>(&mut grads, id, values, dims, device);
    }
    grads
}

/// Registers a flat gradient under `id` with the rank its shape has.
fn register_gradient<B: AutodiffBackend>(
    grads: &mut GradientsParams,
    id: burn::module::ParamId,
    values: Vec<f32>,
    dims: Vec<usize>,
    device: &B::Device,
) {
    fn tensor<B: Backend, const D: usize>(
        values: Vec<f32>,
        dims: Vec<usize>,
        device: &B::Device,
    ) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(values, dims), device)
    }
    match dims.len() {
        1 => grads.register(id, tensor::<B::InnerBackend, 1>(values, dims, device)),
        2 => grads.register(id, tensor::<B::InnerBackend, 2>(values, dims, device)),
        3 => grads.register(id, tensor::<B::InnerBackend, 3>(values, dims, device)),
        4 => grads.register(id, tensor::<B::InnerBackend, 4>(values, dims, device)),
        rank => panic!("a parameter of rank {rank}: MobileNet has ranks 1 to 4"),
    }
}

/// Averages the running statistics (float tensors that take no gradient) over every
/// replica.
///
/// Replicas in one process share their running statistics (Burn's `RunningState` is a
/// shared, locked value), so the averaging runs between a pass that reads them and one
/// that writes them, with no lock held: the replicas all write the same mean.
fn average_buffers<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: M,
    replica: &Replica<'_>,
    device: &B::Device,
) -> M {
    struct Read(Vec<f32>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Read {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = param.val();
            if !tensor.is_require_grad() {
                let data = tensor.into_data().convert::<f32>();
                self.0
                    .extend_from_slice(data.as_slice::<f32>().expect("f32 values"));
            }
        }
    }
    struct Write<'a, B: Backend> {
        values: &'a [f32],
        device: &'a B::Device,
    }
    impl<B: AutodiffBackend> ModuleMapper<B> for Write<'_, B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let tensor = if tensor.is_require_grad() {
                tensor
            } else {
                let shape = tensor.shape();
                let (values, rest) = self.values.split_at(shape.num_elements());
                self.values = rest;
                Tensor::from_data(TensorData::new(values.to_vec(), shape), self.device)
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    // A running state keeps each thread's last update apart until it is synced (as
    // `into_record` does): sync first, or the average is overwritten by that update later.
    let _ = model.clone().into_record();
    let mut read = Read(Vec::new());
    model.visit(&mut read);
    let mean = replica.mean::<B::InnerBackend>(read.0, device);
    model.map(&mut Write::<B> {
        values: &mean,
        device,
    })
}

/// The [`DataParallel`] strategy as a burn-train learning strategy.
struct CollectiveStrategy<B: Backend> {
    parallel: DataParallel<B>,
    digests: Arc<Mutex<Vec<(u32, u64)>>>,
}

impl<LC> SupervisedLearningStrategy<LC> for CollectiveStrategy<LC::Backend>
where
    LC: LearningComponentsTypes + Send + 'static,
{
    fn fit(
        &self,
        components: TrainingComponents<LC>,
        learner: Learner<LC>,
        train: TrainLoader<LC>,
        valid: ValidLoader<LC>,
        starting_epoch: usize,
    ) -> (TrainingModel<LC>, SupervisedTrainingEventProcessor<LC>) {
        let devices = &self.parallel.devices;
        let (nodes, rank) = self
            .parallel
            .cluster
            .as_ref()
            .map_or((1, 0), |c| (c.nodes as usize, c.rank as usize));
        let link = self.parallel.cluster.as_ref().map(|cluster| {
            let link = NodeLink::connect(
                &cluster.master,
                cluster.nodes,
                cluster.rank,
                CONNECT_TIMEOUT,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            Mutex::new(link)
        });
        // This node's shard: the same number of images on every node.
        let shard = train.num_items() / nodes;
        let train = train.slice(rank * shard, (rank + 1) * shard);
        let loaders = split_dataloader(train, devices);
        let valid = valid.to_device(devices[0].inner());
        let collective = CollectiveConfig::default().with_num_devices(devices.len());
        let processor = Mutex::new(components.event_processor);
        let checkpointer = Mutex::new(components.checkpointer);
        let early_stopping = Mutex::new(components.early_stopping);
        let num_epochs = components.num_epochs;
        let interrupter = &components.interrupter;
        let event_store = &components.event_store;

        let model = std::thread::scope(|scope| {
            let workers: Vec<_> = devices
                .iter()
                .zip(loaders)
                .enumerate()
                .map(|(index, (device, loader))| {
                    let replica = Replica {
                        peer: PeerId::from(index as u32),
                        index,
                        local: devices.len(),
                        total: devices.len() * nodes,
                        link: link.as_ref(),
                    };
                    let mut learner = learner.clone();
                    let (collective, valid) = (collective.clone(), valid.clone());
                    let (processor, checkpointer) = (&processor, &checkpointer);
                    let early_stopping = &early_stopping;
                    let digests = &self.digests;
                    scope.spawn(move || {
                        let peer = replica.peer;
                        if replica.local > 1 {
                            burn_collective::register::<InnerBackend<LC>>(
                                peer,
                                device.inner().clone(),
                                collective,
                            )
                            .unwrap_or_else(|e| panic!("{peer} cannot join the collective: {e:?}"));
                        }
                        learner.fork(device);
                        for epoch in starting_epoch..=num_epochs {
                            let global = Progress::new(epoch, num_epochs);
                            train_epoch(
                                &mut learner,
                                &loader,
                                &global,
                                &replica,
                                processor,
                                interrupter,
                            );
                            let model = average_buffers(learner.model(), &replica, device.inner());
                            let mut stop = interrupter.should_stop();
                            if index == 0 {
                                let mut processor = processor.lock().expect("no worker panicked");
                                processor.process_train(LearnerEvent::EndEpoch(epoch));
                                validate_epoch::<LC>(
                                    &model,
                                    &valid,
                                    &global,
                                    &mut processor,
                                    interrupter,
                                );
                                drop(processor);
                                if let Some(checkpointer) =
                                    checkpointer.lock().expect("no worker panicked").as_mut()
                                {
                                    checkpointer.checkpoint(&learner, epoch, event_store);
                                }
                                if let Some(early) =
                                    early_stopping.lock().expect("no worker panicked").as_mut()
                                {
                                    stop |= early.should_stop(epoch, event_store);
                                }
                            }
                            if !replica.all_agree::<InnerBackend<LC>>(!stop, device.inner()) {
                                break;
                            }
                        }
                        let model = learner.model();
                        digests.lock().expect("no worker panicked").push((
                            (rank * replica.local + index) as u32,
                            weights_digest(&model),
                        ));
                        if replica.local > 1 {
                            burn_collective::finish_collective::<InnerBackend<LC>>(peer)
                                .unwrap_or_else(|e| {
                                    panic!("{peer} cannot leave the collective: {e:?}")
                                });
                        }
                        model
                    })
                })
                .collect();
            let mut models: Vec<_> = workers
                .into_iter()
                .map(|worker| worker.join().expect("a data-parallel replica failed"))
                .collect();
            models.swap_remove(0)
        });
        (model, processor.into_inner().expect("no worker panicked"))
    }
}

/// How long the nodes of a cluster wait for each other to connect.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

type InnerBackend<LC> = <<LC as LearningComponentsTypes>::Backend as AutodiffBackend>::InnerBackend;

/// One replica's training epoch: steps while every replica has a batch (and no one was
/// interrupted), gradients averaged over all of them.
fn train_epoch<LC: LearningComponentsTypes>(
    learner: &mut Learner<LC>,
    loader: &TrainLoader<LC>,
    global: &Progress,
    replica: &Replica<'_>,
    processor: &Mutex<SupervisedTrainingEventProcessor<LC>>,
    interrupter: &burn::train::Interrupter,
) {
    let device = learner.model().devices()[0].clone();
    let mut iterator = loader.iter();
    let mut iteration = 0;
    loop {
        let item = iterator.next();
        let go = item.is_some() && !interrupter.should_stop();
        if !replica.all_agree::<InnerBackend<LC>>(go, device.inner()) {
            break;
        }
        let item = item.expect("every replica has a batch");
        iteration += 1;
        learner.lr_step();
        let output = learner.train_step(item);
        let grads = average_gradients(&learner.model(), output.grads, replica, &device);
        learner.optimizer_step(grads);
        let item = TrainingItem::new(
            output.item,
            iterator.progress(),
            global.clone(),
            Some(iteration),
            Some(learner.lr_current()),
        );
        processor
            .lock()
            .expect("no worker panicked")
            .process_train(LearnerEvent::ProcessedItem(item));
    }
}

fn validate_epoch<LC: LearningComponentsTypes>(
    model: &TrainingModel<LC>,
    valid: &ValidLoader<LC>,
    global: &Progress,
    processor: &mut SupervisedTrainingEventProcessor<LC>,
    interrupter: &burn::train::Interrupter,
) {
    let model = model.valid();
    let mut iterator = valid.iter();
    let mut iteration = 0;
    while let Some(item) = iterator.next() {
        iteration += 1;
        let output = model.step(item);
        let item = TrainingItem::new(
            output,
            iterator.progress(),
            global.clone(),
            Some(iteration),
            None,
        );
        processor.process_valid(LearnerEvent::ProcessedItem(item));
        if interrupter.should_stop() {
            break;
        }
    }
    processor.process_valid(LearnerEvent::EndEpoch(global.items_processed));
}

/// A renderer that shows nothing (for tests and `--quiet`).
struct SilentRenderer;

impl MetricsRendererTraining for SilentRenderer {
    fn update_train(&mut self, _state: MetricState) {}
    fn update_valid(&mut self, _state: MetricState) {}
    fn render_train(&mut self, _item: TrainingProgress, _indicators: Vec<ProgressType>) {}
    fn render_valid(&mut self, _item: TrainingProgress, _indicators: Vec<ProgressType>) {}
    fn on_train_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for SilentRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn render_test(&mut self, _item: EvaluationProgress, _indicators: Vec<ProgressType>) {}
}

impl MetricsRenderer for SilentRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _definition: burn::train::metric::MetricDefinition) {}
}
