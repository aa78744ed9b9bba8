//! Command-line flags shared by the training examples (`train` and `learner`): the same
//! flag means the same thing in both.

pub mod backend;

use std::path::{Path, PathBuf};

use backend::{BACKEND_NAME, check_backend_name};
use clap::{Args, ValueEnum};
use dwconv::data::FolderDataset;
use dwconv::models::{Architecture, MobileNetConfig};
use dwconv::train::{DataSource, OptimizerKind, TrainingConfig, files};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Opt {
    Sgd,
    Adamw,
}

/// How to run: the flags both examples take besides the configuration (and
/// `--artifact-dir`, whose default differs).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Continue the run in --artifact-dir from its last checkpoint (uses its config.json).
    #[arg(long)]
    pub resume: bool,
    /// No progress display (progress bars and per-epoch lines, or the dashboard).
    #[arg(long)]
    pub quiet: bool,
    /// Backend, among those this build has (cargo features): ndarray, flex, wgpu, or the
    /// feature-selected one (`DefaultBackend`, the default).
    #[arg(long, default_value = BACKEND_NAME, value_parser = check_backend_name)]
    pub backend: String,
}

/// What to train and how: every field of a [`TrainingConfig`].
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Architecture (`dwconv::models::Architecture::ALL`; an unknown name lists them).
    #[arg(long, default_value = "v3-small")]
    pub model: Architecture,
    /// Width multiplier.
    #[arg(long, default_value_t = 0.5, value_parser = positive_f64, allow_negative_numbers = true)]
    pub width_mult: f64,
    /// Side of the square training images (at least 32, the network's stride).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(32..=1024))]
    pub image_size: u32,
    /// Number of classes (synthetic: 2 to 10; with --data: taken from the folder).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub num_classes: u32,
    /// Synthetic training images.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub train_size: u32,
    /// Synthetic validation images.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub valid_size: u32,
    /// Epochs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,
    /// Batch size.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.005, value_parser = positive_f64, allow_negative_numbers = true)]
    pub lr: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "adamw")]
    pub optimizer: Opt,
    /// Weight decay.
    #[arg(long, default_value_t = 4e-5, value_parser = non_negative_f64, allow_negative_numbers = true)]
    pub weight_decay: f64,
    /// Label smoothing in [0, 1).
    #[arg(long, default_value_t = 0.0, value_parser = unit_interval, allow_negative_numbers = true)]
    pub label_smoothing: f64,
    /// Dropout before the classifier, in [0, 1) [default: the reference model's, e.g. 0.2
    /// for V2, V3, EfficientNet-B0 and MnasNet, 0.5 for EfficientNet-B7, 0 for V4].
    #[arg(long, value_parser = unit_interval, allow_negative_numbers = true)]
    pub dropout: Option<f64>,
    /// Stochastic depth: drop path rate of the last residual block, rising linearly from 0
    /// at the first, in [0, 1) [default: the reference model's: 0.2 for EfficientNet, 0
    /// otherwise; timm trains MobileNetV4 with 0.0–0.35].
    #[arg(long, value_parser = unit_interval, allow_negative_numbers = true)]
    pub drop_path: Option<f64>,
    /// BatchNorm momentum (the architectures' own: 0.1 for V2, 0.01 for V1/V3; short runs
    /// want 0.1 so that validation's running statistics settle).
    #[arg(long, default_value_t = 0.1, value_parser = unit_interval_open, allow_negative_numbers = true)]
    pub bn_momentum: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on an image folder (one sub-folder per class) instead of the synthetic shapes.
    #[arg(long, value_parser = existing_dir)]
    pub data: Option<PathBuf>,
    /// With --data: skip unreadable or non-image files (with a warning) instead of failing.
    #[arg(long, requires = "data")]
    pub skip_bad_files: bool,
    /// Threads preparing images (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub num_workers: usize,
}

pub fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got '{s}'")),
    }
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number >= 0, got '{s}'")),
    }
}

fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number in [0, 1), got '{s}'")),
    }
}

fn unit_interval_open(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("expected a number in (0, 1], got '{s}'")),
    }
}

pub fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("no such directory: '{s}'"))
    }
}

/// The configuration the flags describe.
pub fn config_from_args(args: &TrainArgs) -> Result<TrainingConfig, String> {
    let architecture = args.model;
    let (data, num_classes) = match &args.data {
        Some(dir) => {
            let classes = FolderDataset::class_names(dir).map_err(|e| format!("--data: {e}"))?;
            (DataSource::Folder(dir.clone()), classes.len())
        }
        None => {
            if args.num_classes > 10 {
                return Err(format!(
                    "--num-classes: the synthetic dataset has 2 to 10 classes, got {}",
                    args.num_classes
                ));
            }
            (DataSource::Synthetic, args.num_classes as usize)
        }
    };
    let model =
        MobileNetConfig::reference(architecture, num_classes).with_width_mult(args.width_mult);
    let model = match args.dropout {
        Some(dropout) => model.with_dropout(dropout),
        None => model,
    };
    let model = match args.drop_path {
        Some(rate) => model.with_drop_path_rate(rate),
        None => model,
    };
    let model = model.with_norm_momentum(Some(args.bn_momentum));
    Ok(TrainingConfig::new(model)
        .with_data(data)
        .with_image_size(args.image_size as usize)
        .with_train_size(args.train_size as usize)
        .with_valid_size(args.valid_size as usize)
        .with_epochs(args.epochs as usize)
        .with_batch_size(args.batch_size as usize)
        .with_lr(args.lr)
        .with_optimizer(match args.optimizer {
            Opt::Sgd => OptimizerKind::Sgd,
            Opt::Adamw => OptimizerKind::AdamW,
        })
        .with_weight_decay(args.weight_decay)
        .with_label_smoothing(args.label_smoothing)
        .with_seed(args.seed)
        .with_num_workers(args.num_workers)
        .with_skip_bad_files(args.skip_bad_files))
}

/// The run's configuration: the flags, or with `resume` the `config.json` saved in
/// `artifact_dir` (the other flags are then ignored, and a line says so).
pub fn training_config(
    args: &TrainArgs,
    resume: bool,
    artifact_dir: &Path,
) -> Result<TrainingConfig, String> {
    if !resume {
        return config_from_args(args);
    }
    let path = artifact_dir.join(files::CONFIG);
    let config = <TrainingConfig as burn::config::Config>::load(&path)
        .map_err(|e| format!("--resume: cannot read {}: {e}", path.display()))?;
    println!(
        "resuming {} (its config.json is used; other flags are ignored)",
        artifact_dir.display()
    );
    Ok(config)
}

/// The run's configuration with its description printed, or `None` after printing the
/// error: how both examples start.
pub fn start(args: &TrainArgs, run: &RunArgs, artifact_dir: &Path) -> Option<TrainingConfig> {
    match training_config(args, run.resume, artifact_dir) {
        Ok(config) => {
            println!("{}", describe(&run.backend, &config));
            Some(config)
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// The line both examples print before training.
pub fn describe(backend: &str, config: &TrainingConfig) -> String {
    format!(
        "backend: {} | model: {} width {} | {} classes | {}x{} images | {} epochs of batch {}",
        backend,
        config.model.architecture,
        config.model.width_mult,
        config.model.num_classes,
        config.image_size,
        config.image_size,
        config.epochs,
        config.batch_size
    )
}
