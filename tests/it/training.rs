//! Training pipeline: datasets, folder loading, a tiny run, checkpoints, the CLI.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use burn::data::dataset::Dataset;
use burn::tensor::Tensor;
use dwconv::data::{
    FolderDataset, FolderOptions, ImageBatcher, Normalization, SyntheticConfig, augment,
};
use dwconv::models::MobileNetConfig;
use dwconv::train::{
    Checkpoint, CheckpointHeader, RunOptions, TrainingConfig, encode_model, evaluate, files,
    load_model, run,
};
use rand::SeedableRng;

use crate::common::{
    random_values, run_to_success, scratch_dir, tensor, test_on_every_backend, values,
};
use crate::examples::example;

fn synthetic(num_classes: usize) -> SyntheticConfig {
    SyntheticConfig {
        image_size: 32,
        num_classes,
        train_size: 103,
        valid_size: 40,
        seed: 7,
    }
}

#[test]
fn synthetic_dataset_is_deterministic_balanced_and_split() {
    let config = synthetic(10);
    let (train, valid) = (config.train().unwrap(), config.valid().unwrap());
    assert_eq!((train.len(), valid.len()), (103, 40));
    let again = config.train().unwrap();
    for i in [0, 1, 57, 102] {
        assert_eq!(
            train.get(i),
            again.get(i),
            "image {i} must be a function of (seed, index)"
        );
    }
    assert!(train.get(103).is_none());
    // Another seed draws other images.
    let other = SyntheticConfig {
        seed: 8,
        ..config.clone()
    }
    .train()
    .unwrap();
    assert_ne!(train.get(0).unwrap().pixels, other.get(0).unwrap().pixels);
    // Validation images are not training images.
    let train_images: Vec<Vec<f32>> = (0..train.len())
        .map(|i| train.get(i).unwrap().pixels)
        .collect();
    for i in 0..valid.len() {
        assert!(
            !train_images.contains(&valid.get(i).unwrap().pixels),
            "valid {i} leaked"
        );
    }
    // Balanced: 103 images over 10 classes is 10 or 11 each.
    let mut counts = [0usize; 10];
    for i in 0..train.len() {
        let item = train.get(i).unwrap();
        assert_eq!(item.pixels.len(), 3 * 32 * 32);
        assert!(item.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
        counts[item.label] += 1;
    }
    assert!(counts.iter().all(|&c| c == 10 || c == 11), "{counts:?}");
    // Same class, different images: position, colour and noise vary.
    assert_ne!(train.get(0).unwrap().pixels, train.get(10).unwrap().pixels);
}

#[test]
fn synthetic_config_errors_name_the_value() {
    let err = SyntheticConfig {
        num_classes: 11,
        ..synthetic(10)
    }
    .train()
    .unwrap_err()
    .to_string();
    assert!(err.contains("11"), "{err}");
    let err = SyntheticConfig {
        image_size: 4,
        ..synthetic(10)
    }
    .valid()
    .unwrap_err()
    .to_string();
    assert!(err.contains("image size") && err.contains('4'), "{err}");
}

#[test]
fn augmentation_is_seeded_and_keeps_the_label() {
    let item = synthetic(10).train().unwrap().get(3).unwrap();
    let a = augment(&item, 4, &mut rand::rngs::StdRng::seed_from_u64(1));
    let b = augment(&item, 4, &mut rand::rngs::StdRng::seed_from_u64(1));
    assert_eq!(a, b);
    assert_eq!(a.label, item.label);
    let unchanged = augment(&item, 0, &mut rand::rngs::StdRng::seed_from_u64(2));
    // Without padding only the flip remains: the image or its mirror.
    let mirrored: Vec<f32> = (0..3 * 32 * 32)
        .map(|i| {
            let (c, y, x) = (i / 1024, (i / 32) % 32, i % 32);
            item.pixels[c * 1024 + y * 32 + 31 - x]
        })
        .collect();
    assert!(unchanged.pixels == item.pixels || unchanged.pixels == mirrored);
}

fn write_png(path: &Path, colour: [u8; 3]) {
    let img = image::RgbImage::from_pixel(12, 10, image::Rgb(colour));
    img.save(path).unwrap();
}

#[test]
fn folder_dataset_loads_classes_and_reports_bad_files() {
    let root = scratch_dir("folder");
    for (class, colour) in [("cats", [200, 10, 10]), ("dogs", [10, 10, 200])] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..5 {
            write_png(&root.join(class).join(format!("{i}.png")), colour);
        }
    }
    let options = FolderOptions {
        image_size: 16,
        ..FolderOptions::default()
    };
    let data = FolderDataset::load(&root, &options).unwrap();
    assert_eq!(data.class_names, ["cats", "dogs"]);
    assert_eq!((data.train.len(), data.valid.len()), (8, 2));
    let item = data.train.get(0).unwrap();
    assert_eq!((item.size, item.pixels.len(), item.label), (16, 3 * 256, 0));
    assert!(
        (item.pixels[0] - 200.0 / 255.0).abs() < 1e-6,
        "red channel of a red image"
    );

    // A corrupt image is an error naming it, or skipped when asked.
    let corrupt = root.join("dogs").join("broken.png");
    std::fs::write(&corrupt, b"not really a png").unwrap();
    let err = FolderDataset::load(&root, &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.png"), "{err}");
    let skipping = FolderOptions {
        skip_bad_files: true,
        ..options.clone()
    };
    let data = FolderDataset::load(&root, &skipping).unwrap();
    assert_eq!(data.train.len() + data.valid.len(), 10);
    // A non-image file is named too.
    std::fs::remove_file(&corrupt).unwrap();
    std::fs::write(root.join("cats").join("notes.txt"), b"hello").unwrap();
    let err = FolderDataset::load(&root, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not a PNG or JPEG"),
        "{err}"
    );
    std::fs::remove_file(root.join("cats").join("notes.txt")).unwrap();

    // An empty class folder.
    std::fs::create_dir_all(root.join("zebras")).unwrap();
    let err = FolderDataset::load(&root, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("zebras") && err.contains("empty class folder"),
        "{err}"
    );
    std::fs::remove_dir(root.join("zebras")).unwrap();

    // Fewer than two classes, or no folder at all.
    let single = scratch_dir("single");
    std::fs::create_dir_all(single.join("only")).unwrap();
    write_png(&single.join("only").join("a.png"), [1, 2, 3]);
    let err = FolderDataset::load(&single, &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 2 class"), "{err}");
    let err = FolderDataset::load(root.join("missing"), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("not found"),
        "{err}"
    );
}

/// A small, fast configuration.
fn tiny_config(epochs: usize) -> TrainingConfig {
    TrainingConfig::new(
        MobileNetConfig::v3_small(10)
            .with_width_mult(0.35)
            .with_norm_momentum(Some(0.1)),
    )
    .with_image_size(48)
    .with_train_size(1200)
    .with_valid_size(200)
    .with_epochs(epochs)
    .with_batch_size(32)
    .with_seed(3)
}

/// One tiny run shared by several checks (training costs seconds).
fn tiny_run() -> &'static (PathBuf, dwconv::train::TrainReport) {
    use std::sync::OnceLock;
    static RUN: OnceLock<(PathBuf, dwconv::train::TrainReport)> = OnceLock::new();
    RUN.get_or_init(|| {
        // Shared by several tests, so it outlives them: kept under one fixed name (each
        // test process starts it afresh) rather than one more directory per run.
        let dir = scratch_dir("tiny-run").keep_as("dwconv-test-tiny-run");
        let report = run::<Autodiff<NdArray>>(
            &tiny_config(4),
            &RunOptions::new(&dir, "ndarray"),
            &Default::default(),
        )
        .unwrap();
        (dir, report)
    })
}

#[test]
fn tiny_training_run_learns_and_writes_its_artifacts() {
    let (dir, report) = tiny_run();
    let h = &report.history;
    assert_eq!(h.len(), 4);
    assert!(
        h[3].train_loss < h[0].train_loss * 0.9,
        "loss must fall: {h:?}"
    );
    assert!(
        report.final_valid_accuracy > 0.15,
        "10 classes: chance is 0.1, got {report:?}"
    );
    for file in [
        files::CONFIG,
        files::METRICS,
        files::SUMMARY,
        files::CURVES,
        files::CONFUSION,
        files::CHECKPOINT,
        files::BEST_MODEL,
        files::CLASSES,
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(files::SUMMARY)).unwrap()).unwrap();
    for key in [
        "final_valid_accuracy",
        "best_valid_accuracy",
        "epochs",
        "train_images_per_second",
        "model",
        "backend",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(summary["model"], "v3-small");
    let csv = std::fs::read_to_string(dir.join(files::METRICS)).unwrap();
    assert_eq!(csv.lines().count(), 5);
    let confusion = std::fs::read_to_string(dir.join(files::CONFUSION)).unwrap();
    let total: u64 = confusion
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(total, 200);
    let png = std::fs::read(dir.join(files::CURVES)).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let saved = <TrainingConfig as burn::config::Config>::load(dir.join(files::CONFIG)).unwrap();
    assert_eq!(saved.to_string(), tiny_config(4).to_string());
}

/// The best model file holds trained BatchNorm running statistics: loaded and evaluated, it
/// reproduces the recorded validation accuracy, and its statistics are not the initial ones.
#[test]
fn batchnorm_running_statistics_are_trained_and_saved() {
    let (dir, report) = tiny_run();
    let config = tiny_config(4);
    let device = Default::default();
    let model =
        load_model::<NdArray>(&config.model, &dir.join(files::BEST_MODEL), &device).unwrap();
    let mean = values(model.stem.norm.running_mean.value());
    let var = values(model.stem.norm.running_var.value());
    assert!(
        mean.iter().any(|m| m.abs() > 1e-3),
        "running mean untouched: {mean:?}"
    );
    assert!(
        var.iter().any(|v| (v - 1.0).abs() > 1e-3),
        "running var untouched: {var:?}"
    );
    let valid = SyntheticConfig {
        image_size: 48,
        num_classes: 10,
        train_size: 1200,
        valid_size: 200,
        seed: 3,
    }
    .valid()
    .unwrap();
    let classes: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let batcher = ImageBatcher::new(Normalization::CENTERED);
    let (_, confusion) = evaluate(&model, &valid, &batcher, 64, &classes, &device);
    assert_eq!(confusion.accuracy(), report.best_valid_accuracy);
    // With fresh statistics the same weights evaluate differently: the test above would
    // catch a model saved without its running statistics.
    let fresh = config.model.init::<NdArray>(&device);
    let mut reset = model.clone();
    reset.stem.norm = fresh.stem.norm.clone();
    let reset_logits = values(reset.forward(Tensor::ones([1, 3, 48, 48], &device)));
    let logits = values(model.forward(Tensor::ones([1, 3, 48, 48], &device)));
    assert_ne!(reset_logits, logits);
}

#[test]
fn save_then_load_gives_identical_logits() {
    let dir = scratch_dir("save-load");
    let device = Default::default();
    let config = MobileNetConfig::v3_small(5).with_width_mult(0.5);
    let model = config.init::<NdArray>(&device);
    let images = random_values(1, 2 * 3 * 32 * 32);
    let x = || tensor::<NdArray, 4>(&images, [2, 3, 32, 32], &device);
    // Burn initialises parameters lazily, and a clone made before that draws its own
    // values: run the model once so that the record holds the weights it was run with.
    let expected = values(model.forward(x()));
    let bytes = encode_model(&model).unwrap();
    let path = dir.join("model.bin");
    Checkpoint {
        header: CheckpointHeader {
            model: config.clone(),
            epoch: 1,
            step: 1,
            best_valid_accuracy: 0.0,
            backend: "ndarray".into(),
        },
        model: bytes,
        optimizer: Vec::new(),
    }
    .save(&path)
    .unwrap();
    let loaded = load_model::<NdArray>(&config, &path, &device).unwrap();
    assert_eq!(values(loaded.forward(x())), expected);

    // Another architecture is refused before loading, naming both.
    let other = MobileNetConfig::v2(5);
    let err = load_model::<NdArray>(&other, &path, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("v3-small") && err.contains("v2") && err.contains("mismatch"),
        "{err}"
    );

    // A truncated file says so.
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.bin");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_model::<NdArray>(&config, &truncated, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains("truncated.bin"),
        "{err}"
    );
    // A checkpoint of the previous format (Burn records) is refused by name.
    let mut old_format = bytes.clone();
    old_format[..8].copy_from_slice(b"DWCKPT01");
    std::fs::write(&truncated, &old_format).unwrap();
    let err = load_model::<NdArray>(&config, &truncated, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("older dwconv") && err.contains("DWCKPT01"),
        "{err}"
    );
    // So does a file with one flipped byte, and a missing one.
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&truncated, &flipped).unwrap();
    let err = load_model::<NdArray>(&config, &truncated, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum"), "{err}");
    let err = load_model::<NdArray>(&config, &dir.join("nope.bin"), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.bin") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn training_config_errors_name_the_value() {
    let err = tiny_config(0).validate().unwrap_err().to_string();
    assert!(err.contains("epochs"), "{err}");
    let err = tiny_config(1)
        .with_batch_size(0)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch_size"), "{err}");
    let err = tiny_config(1)
        .with_image_size(7)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("image_size") && err.contains('7'), "{err}");
    let err = tiny_config(1)
        .with_data(dwconv::train::DataSource::Folder("/no/such/dir".into()))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/dir"), "{err}");
}

#[test]
fn cli_rejects_bad_values_naming_the_flag() {
    for (args, flag) in [
        (&["--epochs", "0"][..], "--epochs"),
        (&["--batch-size", "0"][..], "--batch-size"),
        (&["--image-size", "7"][..], "--image-size"),
        (&["--model", "v9"][..], "--model"),
        (&["--data", "/no/such/folder"][..], "--data"),
        (&["--lr", "-1"][..], "--lr"),
        (&["--num-classes", "11"][..], "--num-classes"),
        (&["--skip-bad-files"][..], "--data"),
    ] {
        let out = example("train").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(
            stderr.contains(flag),
            "{args:?}: message does not name {flag}: {stderr}"
        );
    }
    let dir = scratch_dir("cli-infer");
    let out = example("infer")
        .args(["--artifact-dir", dir.to_str().unwrap(), "--synthetic", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("config.json"),
        "{stderr}"
    );
}

#[test]
fn infer_classifies_with_a_trained_model() {
    let (dir, _) = tiny_run();
    let stdout = run_to_success(
        "infer --synthetic",
        example("infer").args([
            "--artifact-dir",
            dir.to_str().unwrap(),
            "--synthetic",
            "3",
            "--top-k",
            "2",
        ]),
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("synthetic #"))
            .count(),
        3,
        "{stdout}"
    );
    // A truncated model file is refused with a reason.
    let broken = dir.join("broken.bin");
    let bytes = std::fs::read(dir.join(files::BEST_MODEL)).unwrap();
    std::fs::write(&broken, &bytes[..100]).unwrap();
    let out = example("infer")
        .args([
            "--artifact-dir",
            dir.to_str().unwrap(),
            "--model-file",
            broken.to_str().unwrap(),
            "--synthetic",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("truncated"),
        "{stderr}"
    );
}

/// The training loop on each backend: two epochs run, finite losses, the backend recorded.
fn short_training_run<B: dwconv::kernels::DepthwiseBackend>(backend: &str) {
    let dir = scratch_dir(&format!("short-run-{backend}"));
    let config = TrainingConfig::new(MobileNetConfig::v3_small(3).with_width_mult(0.35))
        .with_image_size(32)
        .with_train_size(64)
        .with_valid_size(32)
        .with_epochs(2)
        .with_batch_size(32);
    let report = run::<Autodiff<B>>(
        &config,
        &RunOptions::new(&dir, backend),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(report.backend, backend);
    assert_eq!(report.history.len(), 2);
    assert!(
        report
            .history
            .iter()
            .all(|m| m.train_loss.is_finite() && m.valid_loss.is_finite())
    );
}

test_on_every_backend!(short_training_run);
