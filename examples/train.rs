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

mod cli;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cli::backend::{DefaultAutodiffBackend, default_device};
use dwconv::train::{RunOptions, TrainReport, TrainingConfig, files};

#[derive(Parser, Debug)]
#[command(about = "Train a MobileNet with dwconv on the synthetic shapes or an image folder")]
struct Args {
    #[command(flatten)]
    train: cli::TrainArgs,
    /// Where the run's files go.
    #[arg(long, default_value = "artifacts/train")]
    artifact_dir: PathBuf,
    #[command(flatten)]
    run: cli::RunArgs,
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

fn main() -> ExitCode {
    main_with(std::env::args_os())
}

/// `main` with `args` as the command line (the program's name first). The tests run the
/// example through it in a process of their own (`tests/it/examples.rs`), so the test
/// build need not link this example again for every backend.
pub(crate) fn main_with(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    let config = match cli::start(&args.train, &args.run, &args.artifact_dir) {
        Some(config) => config,
        None => return ExitCode::FAILURE,
    };
    let mut options = RunOptions::new(&args.artifact_dir, &args.run.backend);
    options.resume = args.run.resume;
    options.verbose = !args.run.quiet;
    match train_on(&args.run.backend, &config, &options) {
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
