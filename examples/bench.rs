//! Depthwise conv benchmark: the crate's op against Burn's stock grouped `conv2d` on the
//! same backend, forward and forward + backward (input, weight and bias gradients), on the
//! MobileNet layer shapes; and end to end, a MobileNetV2 (width 1.0, 10 classes, 32×32,
//! batch 64 by default) training step (forward, backward, SGD step) and inference. Prints a
//! table, or JSON with `--json` (the schema `scripts/bench_torch.py` prints too). The
//! backend is the crate's feature-selected `DefaultBackend`, or `--backend` (ndarray, flex,
//! wgpu where the build has them).
//!
//! ```text
//! MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 \
//!   cargo run --release --example bench -- --repeats 5
//! cargo run --release --no-default-features --features flex --example bench -- --json
//! # GPU-sized workload (scripts/gpu_check.sh):
//! cargo run --release --no-default-features --features wgpu,fusion,cuda --example bench -- \
//!   --layer-batch 256 --e2e-size 224 --e2e-batch 64,128 [--backend wgpu]
//! ```

#[path = "cli/backend.rs"]
mod backend;

use std::time::Instant;

use backend::{BACKEND_NAME, DefaultBackend, check_backend_name, default_device};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::Parser;
use dwconv::kernels::Layout;
use dwconv::kernels::{DepthwiseBackend, DepthwiseOptions, WantedGrads, fallback};
use dwconv::models::{Architecture, MobileNet, MobileNetConfig};
use dwconv::nn::CrossEntropyLossConfig;
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
    /// Skip the per-layer table.
    #[arg(long)]
    skip_layers: bool,
    /// Skip the end-to-end MobileNetV2 case.
    #[arg(long)]
    skip_end_to_end: bool,
    /// Skip the pointwise-conv table.
    #[arg(long)]
    skip_pointwise: bool,
    /// Add the GEMM table: the channels-last pointwise products (`[N·H·W, in] × [in, out]`
    /// and both gradients) in `matrixmultiply` (the crate's) and in the `gemm` crate.
    #[arg(long)]
    gemm: bool,
    /// Batch size of the layer table (the MobileNet layer shapes keep their channels and
    /// maps; 64 is the CPU table, GPUs take more).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    layer_batch: u32,
    /// Image size of the end-to-end case (32 on CPU; 224 is ImageNet's).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(32..))]
    e2e_size: u32,
    /// Backend, among those this build has (cargo features): ndarray, flex, wgpu, or the
    /// feature-selected one (`DefaultBackend`, the default).
    #[arg(long, default_value = BACKEND_NAME, value_parser = check_backend_name)]
    backend: String,
    /// Batch sizes of the end-to-end case, comma-separated (one case each).
    #[arg(long, value_delimiter = ',', default_value = "64", value_parser = clap::value_parser!(u32).range(1..))]
    e2e_batch: Vec<u32>,
    /// Models of the end-to-end case, comma-separated (`Architecture::ALL`'s names; width 1.0).
    #[arg(long, value_delimiter = ',', default_value = "v2")]
    e2e_model: Vec<Architecture>,
    /// Activation layouts of the end-to-end case, comma-separated: auto (the backend's
    /// preferred), first (NCHW), last (NHWC).
    #[arg(long, value_delimiter = ',', default_value = "auto", value_parser = parse_layout)]
    e2e_layout: Vec<Option<Layout>>,
}

fn parse_layout(name: &str) -> Result<Option<Layout>, String> {
    match name {
        "auto" => Ok(None),
        "first" => Ok(Some(Layout::ChannelsFirst)),
        "last" => Ok(Some(Layout::ChannelsLast)),
        other => Err(format!(
            "unknown layout {other:?}: expected auto, first or last"
        )),
    }
}

/// One layer: `[C, H, W]` (the batch is `--layer-batch`), kernel, stride, padding.
const LAYERS: [([usize; 3], usize, usize, usize); 6] = [
    ([96, 32, 32], 3, 1, 1),
    ([144, 32, 32], 3, 1, 1),
    ([384, 8, 8], 3, 1, 1),
    ([960, 4, 4], 3, 1, 1),
    ([144, 32, 32], 3, 2, 1),
    ([240, 8, 8], 5, 1, 2),
];

/// One layer timing of one implementation.
#[derive(Serialize)]
struct Row {
    layer: String,
    implementation: String,
    forward_ms: f64,
    forward_backward_ms: f64,
}

/// The end-to-end case of one implementation.
#[derive(Serialize)]
struct EndToEnd {
    model: String,
    implementation: String,
    train_ms: f64,
    train_images_per_s: f64,
    infer_ms: f64,
    infer_images_per_s: f64,
    /// Inference with BatchNorm folded into the convolutions (`fuse_for_inference`).
    infer_fused_ms: f64,
    infer_fused_images_per_s: f64,
    /// Peak resident memory of the process so far (VmHWM).
    peak_rss_mb: f64,
}

/// How close one depthwise layer's channels-last forward comes to the machine's limits:
/// the bytes it must move (input, output, weights, bias, once each) per second beside a
/// plain parallel copy of as many bytes in the same run, and its arithmetic rate.
#[derive(Serialize)]
struct Roofline {
    layer: String,
    implementation: String,
    /// The CPU kernels' instruction set (`DWCONV_CPU_ISA`).
    isa: &'static str,
    bytes: usize,
    /// Multiply-adds times two.
    flops: usize,
    forward_ms: f64,
    forward_gb_per_s: f64,
    /// A rayon copy of `bytes / 2` bytes into another buffer (as many bytes read and
    /// written as the forward's minimum).
    copy_ms: f64,
    copy_gb_per_s: f64,
    forward_gflop_per_s: f64,
}

#[derive(Serialize)]
struct Report {
    tool: &'static str,
    backend: String,
    threads: usize,
    repeats: u32,
    end_to_end: Vec<EndToEnd>,
    layers: Vec<Row>,
    /// The pointwise (1×1) conv, forward and both gradients, in its Burn-op formulations.
    pointwise: Vec<Row>,
    /// The channels-last pointwise products in two GEMM libraries (`--gemm`).
    gemm: Vec<Row>,
    /// The channels-last depthwise forward against the copy bandwidth and FMA rate.
    roofline: Vec<Roofline>,
}

const E2E_CLASSES: usize = 10;

/// MobileNetV2's 1×1 convs at 32×32 input: `[in, H, W]` → out channels (batch:
/// `--layer-batch`), from an early expansion to the last projection.
const POINTWISE: [([usize; 3], usize); 4] = [
    ([16, 16, 16], 96),
    ([144, 8, 8], 24),
    ([576, 2, 2], 96),
    ([960, 1, 1], 160),
];

/// Peak resident set size of this process in MB, from `/proc/self/status` (0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb / 1024.0)
        })
        .unwrap_or(0.0)
}

/// Median milliseconds of `f` over `repeats` runs after one warm-up.
fn median_ms(repeats: u32, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..repeats)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

/// A model at width 1.0 with its reference dropout and stochastic depth (as torchvision
/// and timm build it), a training step with SGD (momentum 0.9)
/// and inference on `batch` random `size`×`size` images, as `scripts/bench_torch.py` runs
/// it, with the activations in `layout`.
fn end_to_end<B: DepthwiseBackend>(
    name: &str,
    device: &B::Device,
    repeats: u32,
    (architecture, layout): (Architecture, Option<Layout>),
    size: usize,
    batch: usize,
) -> EndToEnd {
    let device = device.clone();
    let config = MobileNetConfig::reference(architecture, E2E_CLASSES).with_layout(layout);
    let model = config.init::<Autodiff<B>>(&device);
    let layout = match model.layout() {
        Layout::ChannelsFirst => "nchw",
        Layout::ChannelsLast => "nhwc",
    };
    let mut model = Some(model);
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init::<Autodiff<B>, MobileNet<Autodiff<B>>>();
    let shape = [batch, 3, size, size];
    let images = Tensor::<Autodiff<B>, 4>::random(shape, Distribution::Default, &device);
    let labels: Vec<i64> = (0..batch).map(|i| (i % E2E_CLASSES) as i64).collect();
    let labels =
        Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init();
    let train_ms = median_ms(repeats, || {
        let net = model.take().expect("model");
        let loss = loss_fn.forward(net.forward(images.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let net = optimizer.step(0.01, net, grads);
        // Reading a parameter back waits for lazy backends.
        let _ = net
            .classifier
            .bias
            .as_ref()
            .map(|b| b.val().sum().into_scalar());
        model = Some(net);
    });
    let net = model.take().expect("model").valid();
    let images = images.inner();
    let infer_ms = median_ms(repeats, || {
        let _ = net.forward(images.clone()).sum().into_scalar();
    });
    let fused = net.fuse_for_inference();
    let infer_fused_ms = median_ms(repeats, || {
        let _ = fused.forward(images.clone()).sum().into_scalar();
    });
    EndToEnd {
        model: format!(
            "{} w1.0 {E2E_CLASSES} classes {size}x{size} batch {batch}",
            architecture.reference_name()
        ),
        implementation: format!("dwconv-{name}-{layout}"),
        train_ms,
        train_images_per_s: batch as f64 / train_ms * 1e3,
        infer_ms,
        infer_images_per_s: batch as f64 / infer_ms * 1e3,
        infer_fused_ms,
        infer_fused_images_per_s: batch as f64 / infer_fused_ms * 1e3,
        peak_rss_mb: peak_rss_mb(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median milliseconds of `f` over `repeats` runs after one warm-up. Each run ends with
/// the backend's `sync`, so that queued GPU work is counted; CPU backends are eager. The
/// outputs are dropped after it (reading them back, e.g. summing them, would add a serial
/// pass over every output that PyTorch's timing does not have).
fn time<B: Backend>(
    device: &B::Device,
    repeats: u32,
    mut f: impl FnMut() -> Vec<FloatTensor<B>>,
) -> f64 {
    let mut run = || {
        let outputs = f();
        B::sync(device).expect("backend sync");
        drop(outputs);
    };
    run();
    median(
        (0..repeats)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    let args = Args::parse();
    let report = match args.backend.as_str() {
        #[cfg(feature = "ndarray")]
        "ndarray" => bench::<burn::backend::NdArray>(&args, &Default::default()),
        #[cfg(feature = "flex")]
        "flex" => bench::<burn::backend::Flex>(&args, &Default::default()),
        #[cfg(feature = "wgpu")]
        "wgpu" => bench::<burn::backend::Wgpu>(&args, &Default::default()),
        // The feature-selected backend (cuda, candle, ...): the parser let nothing else by.
        _ => bench::<DefaultBackend>(&args, &default_device()),
    };
    print_report(&args, &report);
}

/// Every measurement on backend `B` (named `args.backend`).
fn bench<B: DepthwiseBackend>(args: &Args, device: &B::Device) -> Report {
    // With the CPU kernels' instruction set forced, the rows say which (`ndarray@avx2`),
    // so that runs of several paths make one table.
    let name = match std::env::var(dwconv::kernels::cpu::CPU_ISA_VARIABLE) {
        Ok(isa) if !isa.is_empty() => format!("{}@{isa}", args.backend),
        _ => args.backend.clone(),
    };
    let name = name.as_str();
    B::seed(device, 1);
    // First, so that the peak memory is the network's, not the layer benchmark's.
    let end_to_end = if args.skip_end_to_end {
        Vec::new()
    } else {
        let mut cases = Vec::new();
        for &architecture in &args.e2e_model {
            for &batch in &args.e2e_batch {
                for &layout in &args.e2e_layout {
                    cases.push(end_to_end::<B>(
                        name,
                        device,
                        args.repeats,
                        (architecture, layout),
                        args.e2e_size as usize,
                        batch as usize,
                    ));
                }
            }
        }
        cases
    };
    let mut rows = Vec::new();
    let mut roofline = Vec::new();
    let layers = if args.skip_layers {
        &LAYERS[..0]
    } else {
        &LAYERS[..]
    };
    for &([c, h, w], k, stride, pad) in layers {
        let n = args.layer_batch as usize;
        let shape = [n, c, h, w];
        let options = DepthwiseOptions::new([stride; 2], [pad; 2], [1, 1]);
        let [oh, ow] = options.output_size([h, w], [k, k]).expect("valid layer");
        let rand = |s: [usize; 4]| {
            Tensor::<B, 4>::random(s, Distribution::Default, device)
                .into_primitive()
                .tensor()
        };
        let (x, weight, grad) = (rand(shape), rand([c, 1, k, k]), rand([n, c, oh, ow]));
        let bias = Tensor::<B, 1>::zeros([c], device).into_primitive().tensor();
        let ours_fwd = time::<B>(device, args.repeats, || {
            vec![<B as DepthwiseBackend>::depthwise_conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options,
            )]
        });
        let ours_fb = time::<B>(device, args.repeats, || {
            let y = <B as DepthwiseBackend>::depthwise_conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options,
            );
            vec![
                y,
                B::depthwise_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options),
                B::depthwise_conv2d_weight_backward(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    options,
                ),
                B::depthwise_conv2d_bias_backward(grad.clone()),
            ]
        });
        let (stock_fwd, stock_fb) = if args.no_stock {
            (None, None)
        } else {
            let fwd = time::<B>(device, args.repeats, || {
                vec![fallback::forward::<B>(
                    x.clone(),
                    weight.clone(),
                    Some(bias.clone()),
                    options,
                )]
            });
            let fb = time::<B>(device, args.repeats, || {
                vec![
                    fallback::forward::<B>(x.clone(), weight.clone(), Some(bias.clone()), options),
                    fallback::x_backward::<B>(x.clone(), weight.clone(), grad.clone(), options),
                    fallback::weight_backward::<B>(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options,
                    ),
                    fallback::bias_backward::<B>(grad.clone()),
                ]
            });
            (Some(fwd), Some(fb))
        };
        let layer = format!("{k}x{k} s{stride} [{n},{c},{h},{w}]");
        rows.push(Row {
            layer: layer.clone(),
            implementation: format!("dwconv-{name}-nchw"),
            forward_ms: ours_fwd,
            forward_backward_ms: ours_fb,
        });
        // The same layer channels-last (the layout PyTorch's fast rows use).
        let (x, grad) = (rand([n, h, w, c]), rand([n, oh, ow, c]));
        let nhwc_fwd = time::<B>(device, args.repeats, || {
            vec![B::depthwise_conv2d_nhwc(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options,
            )]
        });
        // The backward as `Autodiff` calls it in training: one call for the three
        // gradients.
        let nhwc_fb = time::<B>(device, args.repeats, || {
            let y =
                B::depthwise_conv2d_nhwc(x.clone(), weight.clone(), Some(bias.clone()), options);
            let grads = B::depthwise_conv2d_nhwc_backward(
                x.clone(),
                weight.clone(),
                grad.clone(),
                options,
                WantedGrads::ALL,
            );
            [Some(y), grads.x, grads.weight, grads.bias]
                .into_iter()
                .flatten()
                .collect()
        });
        rows.push(Row {
            layer: layer.clone(),
            implementation: format!("dwconv-{name}-nhwc"),
            forward_ms: nhwc_fwd,
            forward_backward_ms: nhwc_fb,
        });
        let bytes = 4 * (n * c * h * w + n * c * oh * ow + c * k * k + c);
        let flops = 2 * n * c * oh * ow * k * k;
        let copy_ms = parallel_copy_ms(bytes / 2, args.repeats);
        roofline.push(Roofline {
            layer: layer.clone(),
            implementation: format!("dwconv-{name}-nhwc"),
            isa: dwconv::kernels::cpu::CpuIsa::current().name(),
            bytes,
            flops,
            forward_ms: nhwc_fwd,
            forward_gb_per_s: bytes as f64 / nhwc_fwd / 1e6,
            copy_ms,
            copy_gb_per_s: bytes as f64 / copy_ms / 1e6,
            forward_gflop_per_s: flops as f64 / nhwc_fwd / 1e6,
        });
        if let (Some(forward_ms), Some(forward_backward_ms)) = (stock_fwd, stock_fb) {
            rows.push(Row {
                layer,
                implementation: format!("burn-stock-{name}"),
                forward_ms,
                forward_backward_ms,
            });
        }
    }
    let pointwise = if args.skip_pointwise {
        Vec::new()
    } else {
        pointwise_rows::<B>(name, device, args)
    };
    let gemm = if args.gemm {
        gemm_rows(args)
    } else {
        Vec::new()
    };
    Report {
        gemm,
        tool: "examples/bench.rs",
        backend: name.to_string(),
        threads: rayon::current_num_threads(),
        repeats: args.repeats,
        end_to_end,
        layers: rows,
        pointwise,
        roofline,
    }
}

/// Median milliseconds of copying `bytes` bytes of `f32`s into a second buffer, split
/// over rayon's threads in blocks of 64 KB, as the kernels split their work.
fn parallel_copy_ms(bytes: usize, repeats: u32) -> f64 {
    use rayon::prelude::*;
    let len = bytes / 4;
    let source: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut target = vec![0.0f32; len];
    median_ms(repeats, || {
        target
            .par_chunks_mut(1 << 14)
            .zip(source.par_chunks(1 << 14))
            .for_each(|(t, s)| t.copy_from_slice(s));
        std::hint::black_box(&mut target);
    })
}

/// The pointwise conv, forward and forward + both gradients: the backend's op (`dwconv-`),
/// and each Burn-op formulation it chooses between, `N` batched products (`batched-`) and
/// one GEMM over `N·H·W` rows (`rows-`).
fn pointwise_rows<B: DepthwiseBackend>(name: &str, device: &B::Device, args: &Args) -> Vec<Row> {
    use dwconv::kernels::{
        fallback_pointwise_forward, fallback_pointwise_weight_backward,
        fallback_pointwise_x_backward, pointwise_rows_forward, pointwise_rows_weight_backward,
        pointwise_rows_x_backward,
    };
    type Op<B> = fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;
    /// Name, forward, input gradient, weight gradient.
    type Form<B> = (&'static str, Op<B>, Op<B>, Op<B>);
    let forms: [Form<B>; 3] = [
        (
            "dwconv",
            B::pointwise_conv2d,
            B::pointwise_conv2d_x_backward,
            B::pointwise_conv2d_weight_backward,
        ),
        (
            "batched",
            fallback_pointwise_forward::<B>,
            fallback_pointwise_x_backward::<B>,
            fallback_pointwise_weight_backward::<B>,
        ),
        (
            "rows",
            pointwise_rows_forward::<B>,
            pointwise_rows_x_backward::<B>,
            pointwise_rows_weight_backward::<B>,
        ),
    ];
    let n = args.layer_batch as usize;
    let mut rows = Vec::new();
    for ([c, h, w], out) in POINTWISE {
        let rand = |s: [usize; 4]| {
            Tensor::<B, 4>::random(s, Distribution::Default, device)
                .into_primitive()
                .tensor()
        };
        let (x, grad) = (rand([n, c, h, w]), rand([n, out, h, w]));
        let weight = Tensor::<B, 2>::random([out, c], Distribution::Default, device)
            .into_primitive()
            .tensor();
        for (form, forward, x_backward, weight_backward) in forms {
            let forward_ms = time::<B>(device, args.repeats, || {
                vec![forward(x.clone(), weight.clone())]
            });
            let forward_backward_ms = time::<B>(device, args.repeats, || {
                vec![
                    forward(x.clone(), weight.clone()),
                    x_backward(weight.clone(), grad.clone()),
                    weight_backward(x.clone(), grad.clone()),
                ]
            });
            rows.push(Row {
                layer: format!("1x1 [{n},{c},{h},{w}]->{out}"),
                implementation: format!("{form}-{name}"),
                forward_ms,
                forward_backward_ms,
            });
        }
    }
    rows
}

/// Row-major `c = a · b` (`a`: `m × k` with strides `(ars, acs)`, `b`: `k × n` with
/// strides `(brs, bcs)`) in one of two libraries, each with its own threading over the
/// machine's cores.
#[allow(clippy::too_many_arguments)]
fn product(
    library: &str,
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (ars, acs): (isize, isize),
    b: &[f32],
    (brs, bcs): (isize, isize),
    c: &mut [f32],
) {
    assert_eq!(c.len(), m * n);
    assert!(a.len() >= m * k && b.len() >= k * n);
    // SAFETY: `a`, `b` and `c` hold the `m × k`, `k × n` and `m × n` elements the strides
    // address (dense matrices or their transposes), checked above; `c` is exclusive.
    unsafe {
        match library {
            "matrixmultiply" => matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                ars,
                acs,
                b.as_ptr(),
                brs,
                bcs,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            ),
            _ => gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                acs,
                ars,
                b.as_ptr(),
                bcs,
                brs,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            ),
        }
    }
}

/// The channels-last pointwise products of [`POINTWISE`] (batch `--layer-batch`): forward
/// `y = x · Wᵀ`, input gradient `dx = dy · W`, weight gradient `dW = dyᵀ · x`, in
/// `matrixmultiply` and in the `gemm` crate.
fn gemm_rows(args: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    let values = |len: usize| {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect::<Vec<f32>>()
    };
    for ([c, h, w], out) in POINTWISE {
        let m = args.layer_batch as usize * h * w;
        let (x, weight, dy) = (values(m * c), values(out * c), values(m * out));
        let (mut y, mut dx, mut dw) = (vec![0.0; m * out], vec![0.0; m * c], vec![0.0; out * c]);
        for library in ["matrixmultiply", "gemm"] {
            let mut forward = || {
                // y [m, out] = x [m, c] · Wᵀ (W is [out, c]).
                product(
                    library,
                    (m, c, out),
                    &x,
                    (c as isize, 1),
                    &weight,
                    (1, c as isize),
                    &mut y,
                )
            };
            let forward_ms = median_ms(args.repeats, &mut forward);
            let forward_backward_ms = median_ms(args.repeats, || {
                forward();
                // dx [m, c] = dy [m, out] · W [out, c].
                product(
                    library,
                    (m, out, c),
                    &dy,
                    (out as isize, 1),
                    &weight,
                    (c as isize, 1),
                    &mut dx,
                );
                // dW [out, c] = dyᵀ [out, m] · x [m, c].
                product(
                    library,
                    (out, m, c),
                    &dy,
                    (1, out as isize),
                    &x,
                    (c as isize, 1),
                    &mut dw,
                );
            });
            rows.push(Row {
                layer: format!("1x1 rows [{m},{c}]->{out}"),
                implementation: library.to_string(),
                forward_ms,
                forward_backward_ms,
            });
        }
    }
    rows
}

fn print_report(args: &Args, report: &Report) {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("serialisable")
        );
        return;
    }
    println!(
        "backend {} | {} threads | median of {} runs (ms)",
        report.backend, report.threads, report.repeats
    );
    println!(
        "{:<26}{:<24}{:>10}{:>12}",
        "layer", "implementation", "fwd", "fwd+bwd"
    );
    for r in &report.layers {
        println!(
            "{:<26}{:<24}{:>10.2}{:>12.2}",
            r.layer, r.implementation, r.forward_ms, r.forward_backward_ms
        );
    }
    for r in report.pointwise.iter().chain(&report.gemm) {
        println!(
            "{:<26}{:<24}{:>10.2}{:>12.2}",
            r.layer, r.implementation, r.forward_ms, r.forward_backward_ms
        );
    }
    for r in &report.roofline {
        println!(
            "{:<26}{:<24}{:>10.2} GB/s (copy {:.2}), {:.1} GFLOP/s [{}]",
            r.layer,
            r.implementation,
            r.forward_gb_per_s,
            r.copy_gb_per_s,
            r.forward_gflop_per_s,
            r.isa
        );
    }
    for r in &report.end_to_end {
        println!(
            "{} {}: train {:.1} img/s, infer {:.1} img/s (BatchNorm folded: {:.1}; {:.2} ms), peak RSS {:.0} MB",
            r.model,
            r.implementation,
            r.train_images_per_s,
            r.infer_images_per_s,
            r.infer_fused_images_per_s,
            r.infer_fused_ms,
            r.peak_rss_mb
        );
    }
}
