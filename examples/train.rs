//! Trains a MobileNet on the synthetic shapes (or an image folder) and writes the run's
//! artifacts: config, metrics, summary, curves, confusion matrix, checkpoints.
//!
//! ```text
//! cargo run --release --example train                       # defaults: CPU (ndarray)
//! cargo run --release --features wgpu --example train -- --epochs 3
//! cargo run --release --example train -- --data ./my-images --num-classes 5
//! cargo run --release --example train -- --resume           # continue artifacts/train
//! cargo run --release --features flex --example train -- --backend flex
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dwconv::backend::{BACKEND_NAME, DefaultAutodiffBackend, check_backend_name, default_device};
use dwconv::data::FolderDataset;
use dwconv::models::{Architecture, MobileNetConfig};
use dwconv::train::{DataSource, OptimizerKind, RunOptions, TrainReport, TrainingConfig, files};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    V1,
    V2,
    V3Small,
    V3Large,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Opt {
    Sgd,
    Adamw,
}

#[derive(Parser, Debug)]
#[command(about = "Train a MobileNet with dwconv on the synthetic shapes or an image folder")]
struct Args {
    /// Architecture.
    #[arg(long, value_enum, default_value = "v3-small")]
    model: Model,
    /// Width multiplier.
    #[arg(long, default_value_t = 0.5, value_parser = positive_f64, allow_negative_numbers = true)]
    width_mult: f64,
    /// Side of the square training images (at least 32, the network's stride).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(32..=1024))]
    image_size: u32,
    /// Number of classes (synthetic: 2 to 10; with --data: taken from the folder).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    num_classes: u32,
    /// Synthetic training images.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    train_size: u32,
    /// Synthetic validation images.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    valid_size: u32,
    /// Epochs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    /// Batch size.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.005, value_parser = positive_f64, allow_negative_numbers = true)]
    lr: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "adamw")]
    optimizer: Opt,
    /// Weight decay.
    #[arg(long, default_value_t = 4e-5, value_parser = non_negative_f64, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Label smoothing in [0, 1).
    #[arg(long, default_value_t = 0.0, value_parser = unit_interval, allow_negative_numbers = true)]
    label_smoothing: f64,
    /// Dropout before the classifier, in [0, 1).
    #[arg(long, default_value_t = 0.2, value_parser = unit_interval, allow_negative_numbers = true)]
    dropout: f64,
    /// BatchNorm momentum (the architectures' own: 0.1 for V2, 0.01 for V1/V3; short runs
    /// want 0.1 so that validation's running statistics settle).
    #[arg(long, default_value_t = 0.1, value_parser = unit_interval_open, allow_negative_numbers = true)]
    bn_momentum: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on an image folder (one sub-folder per class) instead of the synthetic shapes.
    #[arg(long, value_parser = existing_dir)]
    data: Option<PathBuf>,
    /// With --data: skip unreadable or non-image files (with a warning) instead of failing.
    #[arg(long, requires = "data")]
    skip_bad_files: bool,
    /// Where the run's files go.
    #[arg(long, default_value = "artifacts/train")]
    artifact_dir: PathBuf,
    /// Continue the run in --artifact-dir from its last checkpoint (uses its config.json).
    #[arg(long)]
    resume: bool,
    /// Threads preparing images (0: all cores).
    #[arg(long, default_value_t = 0)]
    num_workers: usize,
    /// No progress bars or per-epoch lines.
    #[arg(long)]
    quiet: bool,
    /// Backend, among those this build has (cargo features): ndarray, flex, wgpu, or the
    /// feature-selected one (`dwconv::backend::DefaultBackend`, the default).
    #[arg(long, default_value = BACKEND_NAME, value_parser = check_backend_name)]
    backend: String,
}

/// Trains on the backend named `backend` (one of [`COMPILED_BACKENDS`] or [`BACKEND_NAME`]).
fn train_on(
    backend: &str,
    config: &TrainingConfig,
    options: &RunOptions,
) -> dwconv::Result<TrainReport> {
    use burn::backend::Autodiff;
    use dwconv::train::run;
    match backend {
        #[cfg(feature = "ndarray")]
        "ndarray" => run::<Autodiff<burn::backend::NdArray>>(config, options, &Default::default()),
        #[cfg(feature = "flex")]
        "flex" => run::<Autodiff<burn::backend::Flex>>(config, options, &Default::default()),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<Autodiff<burn::backend::Wgpu>>(config, options, &Default::default()),
        // The feature-selected backend (cuda, candle, ...): the parser let nothing else by.
        _ => run::<DefaultAutodiffBackend>(config, options, &default_device()),
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
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

fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("no such directory: '{s}'"))
    }
}

fn config_from_args(args: &Args) -> Result<TrainingConfig, String> {
    let architecture = match args.model {
        Model::V1 => Architecture::V1,
        Model::V2 => Architecture::V2,
        Model::V3Small => Architecture::V3Small,
        Model::V3Large => Architecture::V3Large,
    };
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
    let model = MobileNetConfig::new(architecture, num_classes)
        .with_width_mult(args.width_mult)
        .with_dropout(args.dropout)
        .with_norm_momentum(Some(args.bn_momentum));
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

fn main() -> ExitCode {
    let args = Args::parse();
    let config = if args.resume {
        let path = args.artifact_dir.join(files::CONFIG);
        match <TrainingConfig as burn::config::Config>::load(&path) {
            Ok(config) => {
                println!(
                    "resuming {} (its config.json is used; other flags are ignored)",
                    args.artifact_dir.display()
                );
                config
            }
            Err(e) => {
                eprintln!("error: --resume: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        match config_from_args(&args) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    println!(
        "backend: {} | model: {} width {} | {} classes | {}x{} images | {} epochs of batch {}",
        args.backend,
        config.model.architecture,
        config.model.width_mult,
        config.model.num_classes,
        config.image_size,
        config.image_size,
        config.epochs,
        config.batch_size
    );
    let mut options = RunOptions::new(&args.artifact_dir, &args.backend);
    options.resume = args.resume;
    options.verbose = !args.quiet;
    match train_on(&args.backend, &config, &options) {
        Ok(report) => {
            println!(
                "final validation accuracy {:.4} (best {:.4} at epoch {}), {:.1} training images/s",
                report.final_valid_accuracy,
                report.best_valid_accuracy,
                report.best_epoch,
                report.train_images_per_second
            );
            println!(
                "artifacts in {}: {}, {}, {}, {}, {}, {}",
                args.artifact_dir.display(),
                files::SUMMARY,
                files::METRICS,
                files::CURVES,
                files::CONFUSION,
                files::CHECKPOINT,
                files::BEST_MODEL
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
