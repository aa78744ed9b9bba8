//! burn-train integration (the `train` feature): `MobileNet` in `SupervisedTraining`, the
//! multi-device and data-parallel strategies (two CPU devices in one process; two
//! processes on loopback), and resuming from Burn's checkpoints.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use dwconv::data::{ImageBatcher, Normalization};
use dwconv::models::MobileNetConfig;
use dwconv::train::learner::{
    Cluster, DataParallel, LearnerOptions, LearnerReport, Parallelism, WarmupCosine, learn,
    weights_digest,
};
use dwconv::train::{TrainingConfig, evaluate};

use crate::common::scratch_dir;

type B = Autodiff<NdArray>;

/// A small configuration that learns in a few seconds: V3-Small 0.35 on 48×48 shapes.
fn small_config(epochs: usize) -> TrainingConfig {
    TrainingConfig::new(
        MobileNetConfig::v3_small(10)
            .with_width_mult(0.35)
            .with_norm_momentum(Some(0.1)),
    )
    .with_image_size(48)
    .with_train_size(TRAIN_SIZE)
    .with_valid_size(200)
    .with_epochs(epochs)
    .with_batch_size(BATCH)
    .with_num_workers(1)
    .with_seed(3)
}

const TRAIN_SIZE: usize = 1200;

/// Held by each test that trains in this process: Burn's backend generator (weights,
/// dropout) is one per process, and two runs drawing from it at once would each get a
/// different, timing-dependent stream.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
const BATCH: usize = 32;

/// The learning rates of every step of `config` on one device: the crate's schedule.
fn schedule(config: &TrainingConfig) -> Vec<f64> {
    let steps = TRAIN_SIZE.div_ceil(BATCH);
    let mut schedule = WarmupCosine::new(
        config.lr,
        steps * config.warmup_epochs,
        steps * config.epochs,
    );
    (0..steps * config.epochs)
        .map(|_| burn::lr_scheduler::LrScheduler::step(&mut schedule))
        .collect()
}

/// Validation loss and accuracy of the configuration's freshly initialised model.
fn untrained(config: &TrainingConfig) -> (f64, f64) {
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, config.seed);
    let model = config.model.init::<B>(&device).valid();
    let synthetic = dwconv::data::SyntheticConfig {
        image_size: config.image_size,
        num_classes: config.model.num_classes,
        train_size: config.train_size,
        valid_size: config.valid_size,
        seed: config.seed,
    };
    let valid = synthetic.valid().unwrap();
    let classes: Vec<String> = (0..config.model.num_classes)
        .map(|c| c.to_string())
        .collect();
    let (loss, confusion) = evaluate(
        &model,
        &valid,
        &ImageBatcher::new(Normalization::CENTERED),
        64,
        &classes,
        &device,
    );
    (loss, confusion.accuracy())
}

fn assert_learned(what: &str, config: &TrainingConfig, report: &LearnerReport<NdArray>) {
    let (loss, accuracy) = untrained(config);
    assert!(
        report.valid_loss < 0.9 * loss && report.valid_accuracy > accuracy,
        "{what}: validation loss {:.4} (untrained {loss:.4}), accuracy {:.3} (untrained {accuracy:.3})",
        report.valid_loss,
        report.valid_accuracy
    );
}

#[test]
fn one_learner_epoch_lowers_the_loss_and_logs_burns_metrics() {
    let _rng = serial();
    let dir = scratch_dir("learner-epoch");
    // No warm-up: the whole epoch trains at the schedule's peak and decay.
    let config = small_config(1).with_warmup_epochs(0);
    let report = learn::<B>(&config, &LearnerOptions::new(&dir, Default::default())).unwrap();
    assert_eq!(report.epochs, 1);
    // burn-train's own artifacts: metric logs per split and epoch, checkpoints.
    for file in [
        "train/epoch-1/Loss.log",
        "train/epoch-1/Accuracy.log",
        "train/epoch-1/Learning_Rate.log",
        "valid/epoch-1/Loss.log",
        "valid/epoch-1/Accuracy.log",
        "checkpoint/model-1.mpk",
        "checkpoint/optim-1.mpk",
        "checkpoint/scheduler-1.mpk",
        "config.json",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    // The training loss Burn logged for each batch falls over the epoch.
    let losses = logged_values(&dir.join("train/epoch-1/Loss.log"));
    assert_eq!(
        losses.len(),
        TRAIN_SIZE.div_ceil(BATCH),
        "one loss per step"
    );
    let third = losses.len() / 3;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (
        mean(&losses[..third]),
        mean(&losses[losses.len() - third..]),
    );
    assert!(
        last < 0.97 * first,
        "training loss: first third of the epoch {first:.4}, last third {last:.4}"
    );
    // The learning rate logged at each step is the crate's schedule.
    let logged = logged_values(&dir.join("train/epoch-1/Learning_Rate.log"));
    let expected = schedule(&config);
    assert_eq!(logged.len(), expected.len(), "one learning rate per step");
    for (step, (lr, want)) in logged.iter().zip(&expected).enumerate() {
        assert!(
            (lr - want).abs() <= 1e-6 * want.abs() + 1e-12,
            "step {step}: logged lr {lr}, schedule {want}"
        );
    }
}

/// The numbers of a burn-train metric log (one `value,count` or `value` per line).
fn logged_values(path: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value = line.split(',').next().unwrap_or(line).trim();
            value
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("{}: bad line '{line}': {e}", path.display()))
        })
        .collect()
}

#[test]
fn two_cpu_devices_train_with_burns_multi_device_strategy() {
    let _rng = serial();
    let dir = scratch_dir("learner-multi-device");
    let config = small_config(4);
    let mut options = LearnerOptions::new(&dir, Default::default());
    options.parallelism = Parallelism::MultiDevice(vec![Default::default(); 2]);
    let report = learn::<B>(&config, &options).unwrap();
    assert_eq!(report.epochs, 4);
    assert_learned("multi-device", &config, &report);
}

#[test]
fn two_cpu_replicas_train_data_parallel_and_end_equal() {
    let _rng = serial();
    let dir = scratch_dir("learner-data-parallel");
    let config = small_config(4);
    let mut options = LearnerOptions::new(&dir, Default::default());
    options.parallelism = Parallelism::DataParallel(DataParallel {
        devices: vec![Default::default(); 2],
        cluster: None,
    });
    let report = learn::<B>(&config, &options).unwrap();
    assert_learned("data parallel", &config, &report);
    let digests = &report.replica_digests;
    assert_eq!(digests.len(), 2, "one digest per replica: {digests:?}");
    assert_eq!(
        digests[0].1, digests[1].1,
        "the replicas' weights differ: {digests:?}"
    );
    assert_eq!(digests[0].1, weights_digest(&report.model));
}

/// Environment of a node process of the loopback test.
const NODE_ENV: &str = "DWCONV_TEST_DDP_NODE";

/// Two processes, one node each, train data-parallel over TCP on 127.0.0.1, and end with
/// equal weights.
#[test]
fn two_processes_train_data_parallel_over_loopback() {
    let config = small_config(4);
    if let Ok(spec) = std::env::var(NODE_ENV) {
        // Node process: "rank,master port,output dir".
        let parts: Vec<&str> = spec.splitn(3, ',').collect();
        let (rank, port, out) = (
            parts[0].parse::<u32>().unwrap(),
            parts[1],
            PathBuf::from(parts[2]),
        );
        let mut options = LearnerOptions::new(out.join(format!("node-{rank}")), Default::default());
        options.parallelism = Parallelism::DataParallel(DataParallel {
            devices: vec![Default::default()],
            cluster: Some(Cluster {
                nodes: 2,
                rank,
                master: format!("127.0.0.1:{port}"),
            }),
        });
        let report = learn::<B>(&config, &options).unwrap();
        assert_learned(&format!("node {rank}"), &config, &report);
        let result = format!(
            "{} {} {}",
            weights_digest(&report.model),
            report.valid_loss,
            report.valid_accuracy
        );
        std::fs::write(out.join(format!("node-{rank}.txt")), result).unwrap();
        return;
    }

    let out = scratch_dir("learner-ddp-loopback");
    let port = free_port();
    let test = "learner::two_processes_train_data_parallel_over_loopback";
    let mut nodes: Vec<Child> = (0..2)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args([test, "--exact", "--test-threads=1", "--nocapture"])
                .env(NODE_ENV, format!("{rank},{port},{}", out.display()))
                .spawn()
                .unwrap()
        })
        .collect();
    // Bounded: a node that hangs (a lost peer blocks the others) fails the test.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut statuses = vec![None, None];
    while statuses.iter().any(Option::is_none) {
        for (node, status) in nodes.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                *status = node.try_wait().unwrap();
            }
        }
        if Instant::now() > deadline {
            nodes.iter_mut().for_each(|node| {
                let _ = node.kill();
            });
            panic!("the node processes did not finish within 10 minutes: {statuses:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (rank, status) in statuses.iter().enumerate() {
        assert!(status.unwrap().success(), "node {rank} failed: {status:?}");
    }
    let results: Vec<Vec<String>> = (0..2)
        .map(|rank| {
            std::fs::read_to_string(out.join(format!("node-{rank}.txt")))
                .unwrap()
                .split(' ')
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(
        results[0], results[1],
        "the nodes' weights (digest, then validation loss and accuracy) differ"
    );
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_resumed_learner_run_continues_from_its_checkpoint() {
    let _rng = serial();
    let dir = scratch_dir("learner-resume");
    let config = small_config(4);
    let mut options = LearnerOptions::<B>::new(&dir, Default::default());
    options.stop_after_epoch = Some(1);
    let first = learn::<B>(&config, &options).unwrap();
    assert_eq!(first.epochs, 1);

    // Resuming with nothing left to train gives back the checkpointed model.
    options.resume = true;
    let reloaded = learn::<B>(&config, &options).unwrap();
    assert_eq!(reloaded.epochs, 1);
    assert_eq!(
        weights_digest(&reloaded.model),
        weights_digest(&first.model),
        "the resumed model is not the checkpointed one"
    );

    // Resuming to the end trains epochs 2 to 4, continuing the learning-rate schedule.
    options.stop_after_epoch = None;
    let resumed = learn::<B>(&config, &options).unwrap();
    assert_eq!(resumed.epochs, 4);
    assert_ne!(weights_digest(&resumed.model), weights_digest(&first.model));
    assert_learned("resumed", &config, &resumed);
    // burn-train 0.21's metric store numbers a resumed run's epochs from 1 again until its
    // first epoch ends: epoch 2's learning rates replace epoch 1's in epoch-1's log, and
    // epochs 3 and 4 have their own.
    let steps = TRAIN_SIZE.div_ceil(BATCH);
    let expected = schedule(&config);
    for (log, epoch) in [("epoch-1", 2), ("epoch-3", 3), ("epoch-4", 4)] {
        let logged = logged_values(&dir.join(format!("train/{log}/Learning_Rate.log")));
        assert_eq!(logged.len(), steps, "{log}");
        let want = &expected[(epoch - 1) * steps..epoch * steps];
        for (i, (lr, want)) in logged.iter().zip(want).enumerate() {
            assert!(
                (lr - want).abs() <= 1e-6 * want.abs() + 1e-12,
                "epoch {epoch} step {i}: logged lr {lr}, schedule {want}"
            );
        }
    }
    // A configuration other than the saved one is refused.
    let other = small_config(5);
    let error = learn::<B>(&other, &options).unwrap_err().to_string();
    assert!(error.contains("configuration differs"), "{error}");
}
