//! Same command, same bytes: the training example run twice with one seed writes identical
//! metrics, summaries and checkpoints; killed with SIGKILL (mid-epoch, during a checkpoint
//! write, before its first checkpoint) and resumed, it ends exactly where the uninterrupted
//! run ends. Each run is its own process, as a user runs it, with the default thread count
//! and dropout on. ndarray always; flex as well when the build has it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dwconv::train::files;

use crate::common::scratch_dir;
use crate::examples::example;

/// Backends the example is run on in this build.
const BACKENDS: &[&str] = &[
    #[cfg(feature = "ndarray")]
    "ndarray",
    #[cfg(feature = "flex")]
    "flex",
];

/// The example with `args`, then `--quiet --backend BACKEND --artifact-dir DIR`, and
/// without the test hook unless a test sets it.
fn train(args: &[&str], backend: &str, dir: &Path) -> Command {
    let mut command = example("train");
    command.args(args);
    command.args(["--quiet", "--backend", backend, "--artifact-dir"]);
    command.arg(dir);
    command.env_remove("DWCONV_PAUSE_WRITE");
    command
}

/// A small run: three epochs of 24 steps, dropout 0.2 (the example's default).
fn train_command(backend: &str, dir: &Path) -> Command {
    let args = [
        "--model",
        "v3-small",
        "--width-mult",
        "0.35",
        "--image-size",
        "32",
        "--num-classes",
        "6",
        "--train-size",
        "768",
        "--valid-size",
        "192",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--seed",
        "4242",
    ];
    train(&args, backend, dir)
}

fn resume_command(backend: &str, dir: &Path) -> Command {
    train(&["--resume"], backend, dir)
}

fn run_to_end(mut command: Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `done` holds (polling), failing after two minutes.
fn wait_for(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {what}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(mut child: Child) {
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no cleanup runs.
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Rows of `metrics.csv` without the timing columns.
fn learning_metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(files::METRICS))
        .unwrap()
        .lines()
        .map(|line| line.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect()
}

/// `summary.json` without the timings.
fn summary_without_timings(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(files::SUMMARY)).unwrap();
    let mut summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let object = summary.as_object_mut().unwrap();
    object.remove("train_images_per_second").unwrap();
    object.remove("train_seconds").unwrap();
    for epoch in object["history"].as_array_mut().unwrap() {
        let epoch = epoch.as_object_mut().unwrap();
        epoch.remove("train_images_per_second").unwrap();
        epoch.remove("seconds").unwrap();
    }
    summary
}

/// Everything a run leaves that must not depend on the process: learning metrics,
/// summary (timings aside), confusion matrix, and the bytes of both model files.
fn assert_same_run(reference: &Path, other: &Path, what: &str) {
    assert_eq!(
        learning_metrics(reference),
        learning_metrics(other),
        "{what}: metrics.csv"
    );
    assert_eq!(
        summary_without_timings(reference),
        summary_without_timings(other),
        "{what}: summary.json"
    );
    for file in [files::CONFUSION, files::CHECKPOINT, files::BEST_MODEL] {
        let (a, b) = (
            std::fs::read(reference.join(file)).unwrap(),
            std::fs::read(other.join(file)).unwrap(),
        );
        assert!(a == b, "{what}: {file} differs");
    }
    let leftovers: Vec<_> = std::fs::read_dir(other)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{what}: left {leftovers:?}");
}

#[test]
fn same_seed_same_bytes_and_exact_resume_after_sigkill() {
    for &backend in BACKENDS {
        let root = scratch_dir(&format!("reproducible-{backend}"));
        let reference = root.join("reference");
        run_to_end(train_command(backend, &reference));
        assert_eq!(learning_metrics(&reference).len(), 4, "header + 3 epochs");

        // The same command again.
        let again = root.join("again");
        run_to_end(train_command(backend, &again));
        assert_same_run(&reference, &again, &format!("{backend}, second run"));

        // Killed part-way through epoch 2 (epoch 1's metrics are on disk), then resumed.
        let dir = root.join("killed-mid-epoch");
        let mut child = train_command(backend, &dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("epoch 1's metrics", &mut child, || {
            std::fs::read_to_string(dir.join(files::METRICS))
                .is_ok_and(|text| text.lines().count() >= 2)
        });
        std::thread::sleep(Duration::from_millis(100));
        kill(child);
        run_to_end(resume_command(backend, &dir));
        assert_same_run(&reference, &dir, &format!("{backend}, killed mid-epoch"));

        // Killed half-way through writing epoch 2's checkpoint: the temporary file holds
        // half of it, the checkpoint of epoch 1 is intact, the metrics already have epoch 2.
        let dir = root.join("killed-in-checkpoint-write");
        let mut child = train_command(backend, &dir)
            .env("DWCONV_PAUSE_WRITE", format!("{}:2", files::CHECKPOINT))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let paused = stderr
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("paused writing checkpoint.bin"));
        assert!(paused, "the run never reached its second checkpoint write");
        kill(child);
        let temporary: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".dwconv-tmp-") && name.ends_with(files::CHECKPOINT))
            .collect();
        assert_eq!(temporary.len(), 1, "half-written checkpoint: {temporary:?}");
        assert_eq!(learning_metrics(&dir).len(), 3, "metrics of epochs 1 and 2");
        run_to_end(resume_command(backend, &dir));
        assert_same_run(
            &reference,
            &dir,
            &format!("{backend}, killed in a checkpoint write"),
        );

        // Killed before its first checkpoint: resuming starts over.
        let dir = root.join("killed-before-checkpoint");
        let mut child = train_command(backend, &dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("config.json", &mut child, || {
            dir.join(files::CONFIG).exists()
        });
        kill(child);
        assert!(!dir.join(files::CHECKPOINT).exists());
        run_to_end(resume_command(backend, &dir));
        assert_same_run(
            &reference,
            &dir,
            &format!("{backend}, killed before its first checkpoint"),
        );
    }
}
