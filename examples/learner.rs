//! Trains a MobileNet with Burn's own training stack (burn-train's `SupervisedTraining`):
//! accuracy, loss and learning-rate metrics on Burn's dashboard (plain lines when stdout
//! is not a terminal), Burn's file checkpointer with `--resume`, and data-parallel
//! training on several devices (`--devices N`) or processes and machines (`--ddp`).
//! The training flags are those of `examples/train.rs`.
//!
//! ```text
//! cargo run --release --features train --example learner
//! cargo run --release --features train --example learner -- --resume
//! cargo run --release --features train --example learner -- --devices 2
//! # two processes (on two machines: --master is node 0's address, reachable by node 1):
//! cargo run --release --features train --example learner -- --ddp --nodes 2 --node-rank 0 \
//!     --master 127.0.0.1:29500 --artifact-dir artifacts/node0
//! cargo run --release --features train --example learner -- --ddp --nodes 2 --node-rank 1 \
//!     --master 127.0.0.1:29500 --artifact-dir artifacts/node1
//! ```

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use burn::backend::Autodiff;
use burn::tensor::Device;
use clap::Parser;
use cli::backend::DefaultBackend;
use dwconv::kernels::AutodiffDepthwiseBackend;
use dwconv::train::TrainingConfig;
use dwconv::train::learner::{
    Cluster, DataParallel, LearnerOptions, LearnerReport, Parallelism, learn,
};

#[derive(Parser, Debug)]
#[command(
    about = "Train a MobileNet with burn-train's SupervisedTraining (dashboard, \
                   checkpoints, multi-device and distributed data parallel)"
)]
struct Args {
    #[command(flatten)]
    train: cli::TrainArgs,
    /// Where Burn's checkpoints and metric logs go.
    #[arg(long, default_value = "artifacts/learner")]
    artifact_dir: PathBuf,
    #[command(flatten)]
    run: cli::RunArgs,
    /// Devices on this node: without --ddp, burn-train's multi-device strategy (gradients
    /// summed on the first device); with --ddp, one replica each. The replicas go on the
    /// backend's default device (a CPU backend has one: they share its cores).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    devices: u32,
    /// Distributed data parallel: replicas that average their gradients, on --devices
    /// devices of each of --nodes processes (burn-collective within a process, TCP between
    /// processes).
    #[arg(long)]
    ddp: bool,
    /// With --ddp: number of processes (nodes), on this machine or others.
    #[arg(long, default_value_t = 1, requires = "ddp", value_parser = clap::value_parser!(u32).range(1..))]
    nodes: u32,
    /// With --ddp: this process's index in 0..nodes (it trains on that shard of the data).
    #[arg(long, default_value_t = 0, requires = "ddp")]
    node_rank: u32,
    /// With --ddp and --nodes > 1: host:port of node 0, which listens there; the other
    /// nodes connect to it.
    #[arg(long, default_value = "127.0.0.1:29500", requires = "ddp")]
    master: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match cli::start(&args.train, &args.run, &args.artifact_dir) {
        Some(config) => config,
        None => return ExitCode::FAILURE,
    };
    let result = match args.run.backend.as_str() {
        #[cfg(feature = "ndarray")]
        "ndarray" => learn_on::<Autodiff<burn::backend::NdArray>>(&args, &config),
        #[cfg(feature = "flex")]
        "flex" => learn_on::<Autodiff<burn::backend::Flex>>(&args, &config),
        #[cfg(feature = "wgpu")]
        "wgpu" => learn_on::<Autodiff<burn::backend::Wgpu>>(&args, &config),
        // The feature-selected backend (cuda, candle, ...): the parser let nothing else by.
        _ => learn_on::<Autodiff<DefaultBackend>>(&args, &config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn learn_on<B: AutodiffDepthwiseBackend>(
    args: &Args,
    config: &TrainingConfig,
) -> dwconv::Result<()> {
    let device = Device::<B>::default();
    let devices = vec![device.clone(); args.devices as usize];
    let parallelism = if args.ddp {
        let cluster = (args.nodes > 1).then(|| Cluster {
            nodes: args.nodes,
            rank: args.node_rank,
            master: args.master.clone(),
        });
        Parallelism::DataParallel(DataParallel { devices, cluster })
    } else if devices.len() > 1 {
        Parallelism::MultiDevice(devices)
    } else {
        Parallelism::Single(device)
    };
    let mut options = LearnerOptions::new(&args.artifact_dir, Device::<B>::default());
    options.resume = args.run.resume;
    options.render = !args.run.quiet;
    options.parallelism = parallelism;
    let report: LearnerReport<B::InnerBackend> = learn::<B>(config, &options)?;
    println!(
        "validation accuracy {:.4}, loss {:.4} after {} epochs; {:.1} training images/s on this node ({:.1} s)",
        report.valid_accuracy,
        report.valid_loss,
        report.epochs,
        report.images_per_second,
        report.seconds
    );
    if !report.replica_digests.is_empty() {
        println!("replica weight digests: {:x?}", report.replica_digests);
    }
    println!(
        "Burn's checkpoints and metric logs in {}",
        args.artifact_dir.display()
    );
    Ok(())
}
