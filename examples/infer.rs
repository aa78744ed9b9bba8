//! Classifies images with a model trained by the `train` example, or with torchvision
//! weights (timm's for MobileNetV4); exports either as a torchvision-compatible (timm's for
//! V4) safetensors file.
//!
//! ```text
//! cargo run --release --example infer -- path/to/image.png other.jpg
//! cargo run --release --example infer -- --synthetic 8          # 8 validation shapes
//! cargo run --release --example infer -- --artifact-dir runs/a --model-file checkpoint.bin x.png
//! # torchvision weights (.pth or .safetensors), e.g. ImageNet ones, at 224x224:
//! cargo run --release --example infer -- --weights mobilenet_v2.pth --model v2 x.jpg
//! # published ImageNet weights by name (feature `pretrained`), with ImageNet's classes:
//! cargo run --release --features pretrained --example infer -- --pretrained v2-imagenet1k-v2 x.jpg
//! # a trained run as a torchvision-compatible safetensors file:
//! cargo run --release --example infer -- --export-torchvision model.safetensors
//! ```

#[path = "cli/backend.rs"]
mod backend;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use backend::{BACKEND_NAME, DefaultBackend, default_device};
use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::activation::softmax;
use clap::Parser;
use dwconv::data::{
    FolderDataset, ImageBatch, ImageBatcher, ImageItem, Normalization, SyntheticConfig,
};
use dwconv::models::{Architecture, MobileNet, MobileNetConfig, StateDict};
use dwconv::train::{DataSource, TrainingConfig, files, load_model};

#[derive(Parser, Debug)]
#[command(about = "Classify images with a trained dwconv MobileNet")]
struct Args {
    /// Image files (PNG or JPEG) to classify.
    images: Vec<PathBuf>,
    /// Artifact directory of a training run (holds config.json and the model files).
    #[arg(long, default_value = "artifacts/train")]
    artifact_dir: PathBuf,
    /// Model file inside the artifact directory (or a path).
    #[arg(long, default_value = files::BEST_MODEL)]
    model_file: PathBuf,
    /// Classify this many validation images of the synthetic dataset instead of files.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    synthetic: Option<u32>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    top_k: u32,
    /// torchvision weights, timm's for a V4 (a `.pth`/`.pt` state dict or `.safetensors`)
    /// instead of a training run; needs --model (and --width-mult if not 1.0).
    #[arg(long, requires = "model")]
    weights: Option<PathBuf>,
    /// Architecture of --weights (`Architecture::ALL`; an unknown name lists them).
    #[arg(long)]
    model: Option<Architecture>,
    /// Width multiplier of --weights.
    #[arg(long, default_value_t = 1.0)]
    width_mult: f64,
    /// Input size for --weights (torchvision's ImageNet models: 224).
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(32..))]
    image_size: u32,
    /// Class names for --weights: a text file with one name per line (default: "class N").
    #[arg(long, requires = "weights")]
    class_names: Option<PathBuf>,
    /// Published ImageNet weights by name (e.g. v3-large-imagenet1k-v2; an unknown name
    /// lists them), downloaded once into the cache ($DWCONV_CACHE_DIR, else
    /// ~/.cache/dwconv); needs the `pretrained` feature.
    #[arg(long, conflicts_with_all = ["weights", "model"])]
    pretrained: Option<String>,
    /// Write the model as a torchvision-compatible safetensors file and exit.
    #[arg(long)]
    export_torchvision: Option<PathBuf>,
}

/// The model to classify with and what goes with it.
struct Loaded {
    model: MobileNet<DefaultBackend>,
    config: MobileNetConfig,
    classes: Vec<String>,
    image_size: usize,
    normalization: Normalization,
    /// The training run's config, when the model comes from one.
    training: Option<TrainingConfig>,
}

fn main() -> ExitCode {
    main_with(std::env::args_os())
}

/// `main` with `args` as the command line (the program's name first). The tests run the
/// example through it in a process of their own (`tests/it/examples.rs`), so the test
/// build need not link this example again for every backend.
pub(crate) fn main_with(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    match run(Args::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_run(args: &Args) -> Result<Loaded, Box<dyn std::error::Error>> {
    let config_path = args.artifact_dir.join(files::CONFIG);
    let config = TrainingConfig::load(&config_path).map_err(|e| {
        format!(
            "{}: cannot read the training config: {e}",
            config_path.display()
        )
    })?;
    let classes_path = args.artifact_dir.join(files::CLASSES);
    let classes: Vec<String> = serde_json::from_slice(
        &std::fs::read(&classes_path).map_err(|e| format!("{}: {e}", classes_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", classes_path.display()))?;
    let model_path = if args.model_file.is_absolute() || args.model_file.exists() {
        args.model_file.clone()
    } else {
        args.artifact_dir.join(&args.model_file)
    };
    let model = load_model::<DefaultBackend>(&config.model, &model_path, &default_device())?;
    println!(
        "{} width {} from {} on {BACKEND_NAME}",
        config.model.architecture,
        config.model.width_mult,
        model_path.display()
    );
    Ok(Loaded {
        model,
        config: config.model.clone(),
        classes,
        image_size: config.image_size,
        normalization: match config.data {
            DataSource::Synthetic => Normalization::CENTERED,
            DataSource::Folder(_) => Normalization::IMAGENET,
        },
        training: Some(config),
    })
}

fn load_weights(
    args: &Args,
    path: &std::path::Path,
    architecture: Architecture,
) -> Result<Loaded, Box<dyn std::error::Error>> {
    let state = StateDict::read(path)?;
    let num_classes = state.num_classes().ok_or_else(|| {
        format!(
            "{}: no classifier weight (classifier.1.weight or classifier.3.weight); the file looks like {}",
            path.display(),
            state.describe()
        )
    })?;
    let config = MobileNetConfig::new(architecture, num_classes).with_width_mult(args.width_mult);
    let model = config
        .try_init::<DefaultBackend>(&default_device())?
        .load_torchvision(&state)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let classes = match &args.class_names {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let names: Vec<String> = text
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if names.len() != num_classes {
                return Err(format!(
                    "{}: {} class names, but the weights have {num_classes} classes",
                    file.display(),
                    names.len()
                )
                .into());
            }
            names
        }
        None => (0..num_classes).map(|c| format!("class {c}")).collect(),
    };
    println!(
        "{} {architecture} width {} ({num_classes} classes) from {} on {BACKEND_NAME}",
        if architecture.is_timm() {
            "timm"
        } else {
            "torchvision"
        },
        args.width_mult,
        path.display()
    );
    Ok(Loaded {
        model,
        config,
        classes,
        image_size: args.image_size as usize,
        normalization: Normalization::IMAGENET,
        training: None,
    })
}

/// The network of published weights, with ImageNet's class names and the weights' crop.
#[cfg(feature = "pretrained")]
fn load_pretrained(name: &str) -> Result<Loaded, Box<dyn std::error::Error>> {
    use dwconv::pretrained::{Weights, imagenet_class_names};
    let weights: Weights = name.parse()?;
    let info = weights.info();
    let model = MobileNetConfig::pretrained::<DefaultBackend>(weights, &default_device())?;
    println!(
        "{} ({}, ImageNet top-1 {}%) on {BACKEND_NAME}",
        info.name, info.url, info.top1
    );
    Ok(Loaded {
        model,
        config: info.config(),
        classes: imagenet_class_names()
            .into_iter()
            .map(String::from)
            .collect(),
        image_size: info.crop_size,
        normalization: Normalization::IMAGENET,
        training: None,
    })
}

#[cfg(not(feature = "pretrained"))]
fn load_pretrained(name: &str) -> Result<Loaded, Box<dyn std::error::Error>> {
    Err(format!(
        "--pretrained {name}: this build has no `pretrained` feature (cargo run --release \
         --features pretrained --example infer -- --pretrained {name} ...)"
    )
    .into())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let loaded = match (&args.weights, args.model) {
        _ if args.pretrained.is_some() => load_pretrained(args.pretrained.as_deref().unwrap())?,
        (Some(path), Some(architecture)) => load_weights(&args, path, architecture)?,
        (Some(_), None) => return Err("--weights needs --model".into()),
        (None, _) => load_run(&args)?,
    };
    if let Some(out) = &args.export_torchvision {
        loaded.model.save_torchvision(out, &loaded.config)?;
        println!("wrote {}", out.display());
        return Ok(());
    }
    let Loaded {
        model,
        classes,
        image_size,
        normalization,
        training,
        ..
    } = loaded;
    let device = default_device();

    let (items, names): (Vec<ImageItem>, Vec<String>) = match args.synthetic {
        Some(n) => {
            let config = training
                .ok_or("--synthetic needs a training run, not --weights or --pretrained")?;
            let valid = SyntheticConfig {
                image_size: config.image_size,
                num_classes: config.model.num_classes,
                train_size: config.train_size,
                valid_size: (n as usize).max(1),
                seed: config.seed,
            }
            .valid()?;
            (0..n as usize)
                .map(|i| {
                    let item = valid.get(i).expect("index in range");
                    let name = format!("synthetic #{} (truth: {})", i, classes[item.label]);
                    (item, name)
                })
                .unzip()
        }
        None if args.images.is_empty() => {
            return Err("give image files to classify, or --synthetic N".into());
        }
        None => {
            let mut items = Vec::new();
            for path in &args.images {
                items.push(FolderDataset::load_file(path, image_size)?);
            }
            (
                items,
                args.images
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            )
        }
    };
    let batch: ImageBatch<DefaultBackend> = ImageBatcher::new(normalization).batch(items, &device);
    let probabilities = softmax(model.forward(batch.images), 1);
    let k = (args.top_k as usize).min(classes.len());
    let rows = probabilities
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()?;
    for (name, row) in names.iter().zip(rows.chunks(classes.len())) {
        let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = ranked[..k]
            .iter()
            .map(|(c, p)| format!("{} {:.3}", classes[*c], p))
            .collect();
        println!("{name}: {}", top.join(", "));
    }
    Ok(())
}
