//! Depthwise conv benchmark: the crate's op against Burn's stock grouped `conv2d` on the
//! same backend, forward and forward + backward (input, weight and bias gradients), on the
//! MobileNet layer shapes. Prints a table, or JSON with `--json`.
//!
//! ```text
//! MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 \
//!   cargo run --release --example bench -- --repeats 5
//! cargo run --release --features flex --example bench -- --json
//! ```

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Distribution, Tensor, TensorPrimitive};
use clap::Parser;
use dwconv::backend::{BACKEND_NAME, DefaultBackend, default_device};
use dwconv::kernels::{DepthwiseBackend, DepthwiseOptions, fallback};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "Depthwise conv: dwconv's op vs Burn's grouped conv2d")]
struct Args {
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Skip Burn's stock path (it takes seconds per layer on ndarray).
    #[arg(long)]
    no_stock: bool,
}

/// One layer: `[N, C, H, W]`, kernel, stride, padding.
const LAYERS: [([usize; 4], usize, usize, usize); 6] = [
    ([64, 96, 32, 32], 3, 1, 1),
    ([64, 144, 32, 32], 3, 1, 1),
    ([64, 384, 8, 8], 3, 1, 1),
    ([64, 960, 4, 4], 3, 1, 1),
    ([64, 144, 32, 32], 3, 2, 1),
    ([64, 240, 8, 8], 5, 1, 2),
];

#[derive(Serialize)]
struct Row {
    layer: String,
    ours_forward_ms: f64,
    ours_forward_backward_ms: f64,
    stock_forward_ms: Option<f64>,
    stock_forward_backward_ms: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    backend: &'static str,
    threads: usize,
    repeats: u32,
    layers: Vec<Row>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Prim = FloatTensor<DefaultBackend>;

/// Median milliseconds of `f` over `repeats` runs after one warm-up; `f` returns tensors
/// that are read back so that lazy backends finish their work.
fn time(repeats: u32, mut f: impl FnMut() -> Vec<Prim>) -> f64 {
    let sync = |outs: Vec<Prim>| {
        for p in outs {
            let t = Tensor::<DefaultBackend, 1>::from_primitive(TensorPrimitive::Float(p));
            let _ = t.sum().into_scalar();
        }
    };
    sync(f());
    median(
        (0..repeats)
            .map(|_| {
                let start = Instant::now();
                sync(f());
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn flat(p: Prim) -> Prim {
    let t = Tensor::<DefaultBackend, 4>::from_primitive(TensorPrimitive::Float(p));
    t.flatten::<1>(0, 3).into_primitive().tensor()
}

fn main() {
    let args = Args::parse();
    let device = default_device();
    <DefaultBackend as Backend>::seed(&device, 1);
    let mut rows = Vec::new();
    for (shape, k, stride, pad) in LAYERS {
        let [n, c, h, w] = shape;
        let options = DepthwiseOptions::new([stride; 2], [pad; 2], [1, 1]);
        let [oh, ow] = options.output_size([h, w], [k, k]).expect("valid layer");
        let rand = |s: [usize; 4]| {
            Tensor::<DefaultBackend, 4>::random(s, Distribution::Default, &device)
                .into_primitive()
                .tensor()
        };
        let (x, weight, grad) = (rand(shape), rand([c, 1, k, k]), rand([n, c, oh, ow]));
        let bias = Tensor::<DefaultBackend, 1>::zeros([c], &device)
            .into_primitive()
            .tensor();
        type B = DefaultBackend;
        let ours_fwd = time(args.repeats, || {
            vec![flat(<B as DepthwiseBackend>::depthwise_conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options,
            ))]
        });
        let ours_fb = time(args.repeats, || {
            let y = <B as DepthwiseBackend>::depthwise_conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options,
            );
            vec![
                flat(y),
                flat(B::depthwise_conv2d_x_backward(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    options,
                )),
                flat(B::depthwise_conv2d_weight_backward(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    options,
                )),
                B::depthwise_conv2d_bias_backward(grad.clone()),
            ]
        });
        let (stock_fwd, stock_fb) = if args.no_stock {
            (None, None)
        } else {
            let fwd = time(args.repeats, || {
                vec![flat(fallback::forward::<B>(
                    x.clone(),
                    weight.clone(),
                    Some(bias.clone()),
                    options,
                ))]
            });
            let fb = time(args.repeats, || {
                vec![
                    flat(fallback::forward::<B>(
                        x.clone(),
                        weight.clone(),
                        Some(bias.clone()),
                        options,
                    )),
                    flat(fallback::x_backward::<B>(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options,
                    )),
                    flat(fallback::weight_backward::<B>(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options,
                    )),
                    fallback::bias_backward::<B>(grad.clone()),
                ]
            });
            (Some(fwd), Some(fb))
        };
        rows.push(Row {
            layer: format!("{k}x{k} s{stride} [{n},{c},{h},{w}]"),
            ours_forward_ms: ours_fwd,
            ours_forward_backward_ms: ours_fb,
            stock_forward_ms: stock_fwd,
            stock_forward_backward_ms: stock_fb,
        });
    }
    let report = Report {
        backend: BACKEND_NAME,
        threads: rayon::current_num_threads(),
        repeats: args.repeats,
        layers: rows,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
        return;
    }
    println!(
        "backend {} | {} threads | median of {} runs (ms)",
        report.backend, report.threads, report.repeats
    );
    println!(
        "{:<26}{:>10}{:>12}{:>12}{:>12}{:>10}",
        "layer", "ours fwd", "ours f+b", "stock fwd", "stock f+b", "f+b ratio"
    );
    for r in &report.layers {
        let ratio = r.stock_forward_backward_ms.map_or(String::from("-"), |s| {
            format!("{:.1}x", s / r.ours_forward_backward_ms)
        });
        let fmt = |v: Option<f64>| v.map_or(String::from("-"), |v| format!("{v:.2}"));
        println!(
            "{:<26}{:>10.2}{:>12.2}{:>12}{:>12}{:>10}",
            r.layer,
            r.ours_forward_ms,
            r.ours_forward_backward_ms,
            fmt(r.stock_forward_ms),
            fmt(r.stock_forward_backward_ms),
            ratio
        );
    }
}
