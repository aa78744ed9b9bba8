//! What a training run records: per-epoch metrics (CSV), the summary (JSON), the
//! validation confusion matrix (CSV and text), and loss/accuracy curves (PNG).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::atomic_write::write_atomically;

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (with label smoothing, as optimised).
    pub train_loss: f64,
    /// Training accuracy (on augmented images, dropout active).
    pub train_accuracy: f64,
    /// Mean validation cross-entropy.
    pub valid_loss: f64,
    /// Validation accuracy.
    pub valid_accuracy: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Training images per second (forward, backward, optimiser step, data loading).
    pub train_images_per_second: f64,
    /// Wall-clock seconds for the epoch, validation included.
    pub seconds: f64,
}

const CSV_HEADER: &str =
    "epoch,train_loss,train_accuracy,valid_loss,valid_accuracy,lr,train_images_per_second,seconds";

/// Renders metrics as CSV (header plus one row per epoch). The learning figures are written
/// in the shortest form that reads back as the same `f64` (a resumed run continues from
/// them), the timings to 0.01.
pub fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:e},{:.2},{:.2}",
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.valid_loss,
            r.valid_accuracy,
            r.lr,
            r.train_images_per_second,
            r.seconds
        );
    }
    out
}

/// Parses a `metrics.csv` written by [`metrics_csv`].
pub fn parse_metrics_csv(text: &str, path: &Path) -> crate::Result<Vec<EpochMetrics>> {
    let bad = |line: usize, msg: &str| Error::File {
        path: path.to_path_buf(),
        message: format!("line {line}: {msg}"),
    };
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err(bad(1, "unexpected header"));
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<f64> = line
                .split(',')
                .map(|v| v.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad(i + 2, "not a number"))?;
            if f.len() != 8 {
                return Err(bad(i + 2, "expected 8 columns"));
            }
            Ok(EpochMetrics {
                epoch: f[0] as usize,
                train_loss: f[1],
                train_accuracy: f[2],
                valid_loss: f[3],
                valid_accuracy: f[4],
                lr: f[5],
                train_images_per_second: f[6],
                seconds: f[7],
            })
        })
        .collect()
}

/// Counts of (true class, predicted class) on the validation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// `counts[truth][prediction]`.
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// An all-zero matrix over `classes`.
    pub fn new(classes: Vec<String>) -> Self {
        let n = classes.len();
        Self {
            classes,
            counts: vec![vec![0; n]; n],
        }
    }

    /// Records one prediction.
    pub fn add(&mut self, truth: usize, prediction: usize) {
        self.counts[truth][prediction] += 1;
    }

    /// Fraction of correct predictions.
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().flatten().sum();
        let correct: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        correct as f64 / total.max(1) as f64
    }

    /// CSV: a header of predicted classes, then one row per true class.
    pub fn to_csv(&self) -> String {
        let mut out = format!("truth\\prediction,{}\n", self.classes.join(","));
        for (name, row) in self.classes.iter().zip(&self.counts) {
            let cells: Vec<String> = row.iter().map(u64::to_string).collect();
            let _ = writeln!(out, "{name},{}", cells.join(","));
        }
        out
    }

    /// An aligned text table for the terminal.
    pub fn to_table(&self) -> String {
        let width = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = format!("{:>width$} | predicted\n", "true");
        for (i, (name, row)) in self.classes.iter().zip(&self.counts).enumerate() {
            let cells: Vec<String> = row.iter().map(|c| format!("{c:>5}")).collect();
            let _ = writeln!(out, "{name:>width$} | {}   ({i})", cells.join(""));
        }
        out
    }
}

/// Summary of a finished (or stopped) run, written as `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Architecture name (`v2`, ...).
    pub model: String,
    /// Backend name (`ndarray`, `flex`, `wgpu`).
    pub backend: String,
    /// Epochs completed.
    pub epochs: usize,
    /// Validation accuracy after the last completed epoch.
    pub final_valid_accuracy: f64,
    /// Best validation accuracy over the epochs (the saved best model's).
    pub best_valid_accuracy: f64,
    /// Epoch of the best validation accuracy.
    pub best_epoch: usize,
    /// Mean training throughput over the epochs run in this process.
    pub train_images_per_second: f64,
    /// Wall-clock seconds of training in this process.
    pub train_seconds: f64,
    /// Learnable parameters of the model.
    pub params: usize,
    /// Per-epoch metrics of the whole run (resumed epochs included).
    pub history: Vec<EpochMetrics>,
}

/// Writes `summary.json`.
pub fn write_summary(path: &Path, report: &TrainReport) -> crate::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::File {
        path: path.to_path_buf(),
        message: format!("cannot encode: {e}"),
    })?;
    write_atomically(path, &json)
}

/// Picks the (training, validation) pair a panel plots.
type Selector = fn(&EpochMetrics) -> (f64, f64);

/// Draws training and validation loss and accuracy against the epoch into a PNG.
///
/// Drawn into a temporary file beside `path`, then renamed over it, so that an
/// interrupted run never leaves a half-written picture.
pub fn plot_curves(path: &Path, rows: &[EpochMetrics]) -> crate::Result<()> {
    let err = |e: String| Error::File {
        path: path.to_path_buf(),
        message: format!("cannot draw curves: {e}"),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The bitmap backend picks the format from the extension: keep `.png` last.
    let tmp = path.with_file_name(format!(".{name}.tmp-{}.png", std::process::id()));
    let drawn = draw_curves(&tmp, rows)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    drawn.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// Draws the two panels into `target`.
fn draw_curves(target: &Path, rows: &[EpochMetrics]) -> Result<(), String> {
    use plotters::prelude::*;
    let has_font = ensure_font();
    let root = BitMapBackend::new(target, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(500);
    let epochs = rows.len().max(2) as f64;
    let panels: [(&str, Selector, _); 2] = [
        ("loss", |r| (r.train_loss, r.valid_loss), left),
        ("accuracy", |r| (r.train_accuracy, r.valid_accuracy), right),
    ];
    for (title, pick, area) in panels {
        let top = rows
            .iter()
            .map(|r| {
                let (a, b) = pick(r);
                a.max(b)
            })
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.05;
        let top = if title == "accuracy" { 1.0 } else { top };
        let mut builder = ChartBuilder::on(&area);
        builder
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48);
        if has_font {
            builder.caption(title, ("sans-serif", 20));
        }
        let mut chart = builder
            .build_cartesian_2d(1.0..epochs, 0.0..top)
            .map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        if has_font {
            mesh.x_desc("epoch");
        } else {
            mesh.disable_x_mesh().x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        for (series, colour) in [(0, BLUE), (1, RED)] {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| {
                    let (a, b) = pick(r);
                    (r.epoch as f64, if series == 0 { a } else { b })
                })
                .collect();
            let drawn = chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            if has_font {
                drawn
                    .label(if series == 0 { "train" } else { "valid" })
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            }
        }
        if has_font {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Registers a system sans-serif TrueType font with plotters, once. Returns whether one
/// is available: without it the curves are drawn without text.
fn ensure_font() -> bool {
    use std::sync::OnceLock;
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        const CANDIDATES: [&str; 3] = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ];
        CANDIDATES.iter().any(|p| {
            std::fs::read(p).is_ok_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font(
                    "sans-serif",
                    plotters::style::FontStyle::Normal,
                    bytes,
                )
                .is_ok()
            })
        })
    })
}
