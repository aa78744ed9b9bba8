//! Classifies images with a model trained by the `train` example.
//!
//! ```text
//! cargo run --release --example infer -- path/to/image.png other.jpg
//! cargo run --release --example infer -- --synthetic 8          # 8 validation shapes
//! cargo run --release --example infer -- --artifact-dir runs/a --model-file checkpoint.bin x.png
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::activation::softmax;
use clap::Parser;
use dwconv::backend::{BACKEND_NAME, DefaultBackend, default_device};
use dwconv::data::{
    FolderDataset, ImageBatch, ImageBatcher, ImageItem, Normalization, SyntheticConfig,
};
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
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
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
    let device = default_device();
    let model = load_model::<DefaultBackend>(&config.model, &model_path, &device)?;
    println!(
        "{} width {} from {} on {BACKEND_NAME}",
        config.model.architecture,
        config.model.width_mult,
        model_path.display()
    );

    let (items, names): (Vec<ImageItem>, Vec<String>) = match args.synthetic {
        Some(n) => {
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
                items.push(FolderDataset::load_file(path, config.image_size)?);
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
    let normalization = match config.data {
        DataSource::Synthetic => Normalization::CENTERED,
        DataSource::Folder(_) => Normalization::IMAGENET,
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
