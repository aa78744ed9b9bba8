//! The depthwise op on every enabled backend against the f64 reference loops, and the
//! reference gradients against central finite differences.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use dwconv::kernels::{
    DepthwiseBackend, DepthwiseOptions, DepthwiseShape, Layout, WantedGrads, depthwise_conv2d,
    depthwise_conv2d_nhwc, reference, try_depthwise_conv2d, try_depthwise_conv2d_nhwc,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{assert_close, random_values, tensor, test_on_every_backend, values};

/// One random depthwise configuration.
#[derive(Clone, Debug)]
struct Case {
    input: [usize; 4],
    weight: [usize; 4],
    options: DepthwiseOptions,
    bias: bool,
    seed: u64,
}

/// `count` configurations covering kernels 1/3/5/7, strides 1/2/3, padding 0..=k,
/// dilation 1/2, multipliers 1/2, non-square inputs and kernels, batch 1..=5, 1×1 maps
/// and maps wide enough for the vectorised interior loops.
fn cases(count: usize) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    (0..count)
        .map(|i| {
            let kernels = [1, 3, 5, 7];
            let kh = kernels[i % 4];
            // Every fifth case has a non-square kernel.
            let kw = if i % 5 == 0 {
                kernels[(i / 4 + 1) % 4]
            } else {
                kh
            };
            let stride = [[1, 2, 3][(i / 4) % 3], [1, 2, 3][rng.random_range(0..3)]];
            let dilation = [[1, 2][(i / 12) % 2], [1, 2][rng.random_range(0..2)]];
            let padding = [rng.random_range(0..=kh), rng.random_range(0..=kw)];
            let multiplier = [1, 2][(i / 2) % 2];
            let channels = rng.random_range(1..=4);
            let batch = 1 + i % 5;
            // Smallest input that still gives one output row/column, plus a random margin.
            let min = |k: usize, d: usize, p: usize| (d * (k - 1) + 1).saturating_sub(2 * p).max(1);
            let (mut h, mut w) = (
                min(kh, dilation[0], padding[0]) + rng.random_range(0..9),
                min(kw, dilation[1], padding[1]) + rng.random_range(0..9),
            );
            let mut padding = padding;
            match i % 10 {
                // A 1×1 map: enough padding for the (dilated) kernel to fit.
                7 => {
                    padding = [
                        (dilation[0] * (kh - 1)).div_ceil(2),
                        (dilation[1] * (kw - 1)).div_ceil(2),
                    ];
                    (h, w) = (1, 1);
                }
                // Wide maps, where the interior loops run over whole SIMD vectors.
                3 => (h, w) = (h + rng.random_range(8..24), w + rng.random_range(16..40)),
                _ => {}
            }
            Case {
                input: [batch, channels, h, w],
                weight: [channels * multiplier, 1, kh, kw],
                options: DepthwiseOptions::new(stride, padding, dilation),
                bias: i % 3 != 2,
                seed: i as u64,
            }
        })
        .collect()
}

struct CaseData {
    shape: DepthwiseShape,
    x: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    output_grad: Vec<f32>,
}

impl CaseData {
    fn new(case: &Case) -> Self {
        let shape = DepthwiseShape::new(case.input, case.weight, case.options)
            .unwrap_or_else(|e| panic!("bad test case {case:?}: {e}"));
        let len = |d: [usize; 4]| d.iter().product::<usize>();
        Self {
            x: random_values(case.seed * 4, len(case.input)),
            weight: random_values(case.seed * 4 + 1, len(case.weight)),
            bias: random_values(case.seed * 4 + 2, shape.out_channels()),
            output_grad: random_values(case.seed * 4 + 3, len(shape.output_shape())),
            shape,
        }
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A tensor of `dtype` holding `values`.
fn typed<B: Backend, const D: usize>(
    values: &[f32],
    shape: [usize; D],
    device: &B::Device,
    dtype: DType,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), (device, dtype))
}

/// A tensor's values as `f64`, after checking that it kept `dtype`.
fn values_of<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Vec<f64> {
    let data = t.into_data();
    assert_eq!(data.dtype, dtype, "result dtype");
    data.convert::<f64>().into_vec::<f64>().unwrap()
}

/// `values` of an `[N, C, H, W]` tensor reordered as `[N, H, W, C]`.
fn nchw_to_nhwc<T: Copy>(values: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(values.len());
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out.push(values[((b * c + ch) * h + y) * w + x]);
                }
            }
        }
    }
    out
}

/// Forward and all three gradients through `Autodiff<B>` against the reference, in
/// `dtype` (`f32` within 1e-5 relative, `f64` within 1e-12), with the activations in
/// `layout` (channels-last tensors are built and compared in NHWC order).
fn check_case<B: DepthwiseBackend>(case: &Case, device: &B::Device, dtype: DType, layout: Layout) {
    let d = CaseData::new(case);
    let s = &d.shape;
    let last = layout == Layout::ChannelsLast;
    // Activations as the op takes them, and reference values in the same order.
    let arrange = |values: Vec<f64>, dims: [usize; 4]| {
        if last {
            nchw_to_nhwc(&values, dims)
        } else {
            values
        }
    };
    let dims = |[n, c, h, w]: [usize; 4]| if last { [n, h, w, c] } else { [n, c, h, w] };
    let x_values = if last {
        nchw_to_nhwc(&d.x, case.input)
    } else {
        d.x.clone()
    };
    let g_values = if last {
        nchw_to_nhwc(&d.output_grad, s.output_shape())
    } else {
        d.output_grad.clone()
    };
    let x = typed::<Autodiff<B>, 4>(&x_values, dims(case.input), device, dtype).require_grad();
    let w = typed::<Autodiff<B>, 4>(&d.weight, case.weight, device, dtype).require_grad();
    let b = case.bias.then(|| {
        typed::<Autodiff<B>, 1>(&d.bias, [s.out_channels()], device, dtype).require_grad()
    });
    let g = typed::<Autodiff<B>, 4>(&g_values, dims(s.output_shape()), device, dtype);

    let y = match layout {
        Layout::ChannelsFirst => depthwise_conv2d(x.clone(), w.clone(), b.clone(), case.options),
        Layout::ChannelsLast => {
            depthwise_conv2d_nhwc(x.clone(), w.clone(), b.clone(), case.options)
        }
    };
    assert_eq!(
        y.dims(),
        dims(s.output_shape()),
        "output shape for {case:?}"
    );
    let grads = (y.clone() * g).sum().backward();

    let bias_ref = case.bias.then(|| f64s(&d.bias));
    let (xr, wr, gr) = (f64s(&d.x), f64s(&d.weight), f64s(&d.output_grad));
    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
    let what = |t: &str| format!("{t} ({layout:?}) for {case:?}");
    assert_close(
        &what("forward"),
        &values_of(y.inner(), dtype),
        &arrange(
            reference::forward(s, &xr, &wr, bias_ref.as_deref()),
            s.output_shape(),
        ),
        tol,
    );
    assert_close(
        &what("input gradient"),
        &values_of(x.grad(&grads).expect("input gradient"), dtype),
        &arrange(reference::x_backward(s, &wr, &gr), case.input),
        tol,
    );
    assert_close(
        &what("weight gradient"),
        &values_of(w.grad(&grads).expect("weight gradient"), dtype),
        &reference::weight_backward(s, &xr, &gr),
        tol,
    );
    if let Some(b) = b {
        assert_close(
            &what("bias gradient"),
            &values_of(b.grad(&grads).expect("bias gradient"), dtype),
            &reference::bias_backward(s, &gr),
            tol,
        );
    }
}

/// The number of random cases every backend is checked on.
const CASES: usize = 240;

/// Whether `backend` (a `test_on_every_backend` name) compiles a kernel per geometry: the
/// CubeCL backends, and Dispatch, whose default device here is one of them.
fn compiles_per_geometry(backend: &str) -> bool {
    matches!(backend, "wgpu" | "wgpu-fusion" | "dispatch")
}

/// The sweep `backend` runs: [`gpu_cases`] where every geometry is a kernel compile,
/// every case elsewhere.
fn sweep_for(backend: &str) -> Vec<Case> {
    if compiles_per_geometry(backend) {
        gpu_cases()
    } else {
        cases(CASES)
    }
}

fn depthwise_matches_reference<B: DepthwiseBackend>(backend: &str) {
    let device = Default::default();
    let sweep = sweep_for(backend);
    for case in &sweep {
        // Candle's convolutions refuse different options along height and width (Burn's
        // Candle backend panics saying so): it gets each case with the height's options
        // along both axes.
        let case = if backend == "candle" {
            &same_options_both_axes(case)
        } else {
            case
        };
        check_case::<B>(case, &device, DType::F32, Layout::ChannelsFirst);
    }
    // Channels-last, with enough channels for whole SIMD blocks plus a tail: every case on
    // the CPU backends (their own NHWC kernels); elsewhere, where the op is the trait's
    // default (permutes around the NCHW op checked above), every fifth case, or every
    // second of the GPU sweep, which keeps the emulated-GPU runs of CI within their time.
    let own_kernels = matches!(backend, "ndarray" | "flex");
    let every = match (own_kernels, compiles_per_geometry(backend)) {
        (true, _) => 1,
        (false, true) => 2,
        (false, false) => 5,
    };
    for case in sweep.iter().step_by(every) {
        let case = if backend == "candle" {
            same_options_both_axes(case)
        } else {
            case.clone()
        };
        check_case::<B>(
            &wide_channels(&case),
            &device,
            DType::F32,
            Layout::ChannelsLast,
        );
    }
}

/// The one-call channels-last backward (what `Autodiff` calls; one pass on the CPU
/// kernels) gives the bits of the three gradient ops, for each subset of gradients, and
/// nothing that was not asked for.
fn one_call_backward_matches_the_three_ops<B: DepthwiseBackend>(backend: &str) {
    let device: B::Device = Default::default();
    let every = if matches!(backend, "ndarray" | "flex") {
        4
    } else {
        40
    };
    for case in cases(CASES).iter().step_by(every) {
        let case = wide_channels(&if backend == "candle" {
            same_options_both_axes(case)
        } else {
            case.clone()
        });
        let d = CaseData::new(&case);
        let s = &d.shape;
        let [n, c, h, w] = case.input;
        let [_, oc, oh, ow] = s.output_shape();
        let primitive = |values: Vec<f32>, shape: [usize; 4]| {
            Tensor::<B, 4>::from_data(TensorData::new(values, shape), &device)
                .into_primitive()
                .tensor()
        };
        let x = primitive(nchw_to_nhwc(&d.x, case.input), [n, h, w, c]);
        let weight = primitive(d.weight.clone(), case.weight);
        let dy = primitive(
            nchw_to_nhwc(&d.output_grad, s.output_shape()),
            [n, oh, ow, oc],
        );
        let bits = |t: FloatTensor<B>| -> Vec<u32> {
            let len = t.shape().num_elements();
            let flat = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(
                t,
                Shape::new([len]),
            )));
            flat.into_data()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let options = case.options;
        let x_grad = bits(B::depthwise_conv2d_nhwc_x_backward(
            x.clone(),
            weight.clone(),
            dy.clone(),
            options,
        ));
        let weight_grad = bits(B::depthwise_conv2d_nhwc_weight_backward(
            x.clone(),
            weight.clone(),
            dy.clone(),
            options,
        ));
        let bias_grad = bits(B::depthwise_conv2d_nhwc_bias_backward(dy.clone()));
        for subset in 0..8 {
            let wanted = WantedGrads {
                x: subset & 1 != 0,
                weight: subset & 2 != 0,
                bias: subset & 4 != 0,
            };
            let grads = B::depthwise_conv2d_nhwc_backward(
                x.clone(),
                weight.clone(),
                dy.clone(),
                options,
                wanted,
            );
            for (name, want, got, expected) in [
                ("input", wanted.x, grads.x, &x_grad),
                ("weight", wanted.weight, grads.weight, &weight_grad),
                ("bias", wanted.bias, grads.bias, &bias_grad),
            ] {
                assert_eq!(
                    got.is_some(),
                    want,
                    "{name} gradient computed iff wanted: {wanted:?}"
                );
                if let Some(got) = got {
                    assert!(
                        bits(got) == *expected,
                        "{name} gradient of the one-call backward ({wanted:?}) differs from its op for {case:?}"
                    );
                }
            }
        }
    }
}

/// `case` with 24 or 72 more input channels, or rounded up to 96 (every fourth case keeps
/// its own), so that the channels-last kernels run each register-block width (96, 64,
/// 32, 16 and 8 channels) and a remainder.
fn wide_channels(case: &Case) -> Case {
    let own = case.input[1];
    let channels = match case.seed % 4 {
        0 => own,
        1 => own + 24,
        2 => own + 72,
        _ => own.next_multiple_of(96),
    };
    let multiplier = case.weight[0] / case.input[1];
    let mut input = case.input;
    input[1] = channels;
    let mut weight = case.weight;
    weight[0] = channels * multiplier;
    Case {
        input,
        weight,
        ..case.clone()
    }
}

/// `case` with its height stride, padding and dilation along the width too, the width
/// grown where the kernel would no longer fit.
fn same_options_both_axes(case: &Case) -> Case {
    let o = case.options;
    let options = DepthwiseOptions::new([o.stride[0]; 2], [o.padding[0]; 2], [o.dilation[0]; 2]);
    let mut input = case.input;
    let span = o.dilation[0] * (case.weight[3] - 1) + 1;
    input[3] = input[3].max(span.saturating_sub(2 * o.padding[0]).max(1));
    Case {
        input,
        options,
        ..case.clone()
    }
}

/// `NdArray<f64>` takes the fallback path (Burn's grouped conv in `f64`): the same sweep,
/// at `f64` precision, and the results stay `f64`.
#[cfg(feature = "ndarray")]
#[test]
fn depthwise_matches_reference_in_f64_on_ndarray() {
    let device = Default::default();
    for case in &cases(CASES) {
        check_case::<burn::backend::NdArray<f64>>(case, &device, DType::F64, Layout::ChannelsFirst);
        check_case::<burn::backend::NdArray<f64>>(case, &device, DType::F64, Layout::ChannelsLast);
    }
}

/// Output width of `case`.
fn out_w(c: &Case) -> usize {
    c.options
        .output_size([c.input[2], c.input[3]], [c.weight[2], c.weight[3]])
        .expect("valid case")[1]
}

/// A property the sweep must have a case for: its name and the test.
type Corner = (String, fn(&Case) -> bool);

/// Every corner of the space a sweep must reach: each kernel size, stride and dilation
/// (along each axis), multipliers, maps and tiles at their edges. Unit stride has its own
/// input-gradient path on the CPU kernels (the flipped correlation) and its own tap set on
/// the GPU: the same corners there.
fn corners() -> Vec<Corner> {
    let mut all: Vec<Corner> = vec![
        ("1x1 map with a larger kernel".into(), |c| {
            c.input[2] == 1 && c.input[3] == 1 && c.weight[2] > 1
        }),
        ("stride larger than the kernel".into(), |c| {
            c.options.stride[0] > c.options.dilation[0] * (c.weight[2] - 1) + 1
        }),
        (
            "stride larger than the kernel along the width".into(),
            |c| c.options.stride[1] > c.options.dilation[1] * (c.weight[3] - 1) + 1,
        ),
        ("wide map".into(), |c| c.input[3] >= 32),
        // The CubeCL kernels give each unit a row tile of up to 16 columns: rows of several
        // tiles, the last one partial, in the output (forward, weight gradient) and the
        // input (input gradient).
        ("output rows of several GPU tiles".into(), |c| {
            out_w(c) > 16 && !out_w(c).is_multiple_of(16)
        }),
        ("input rows of several GPU tiles, strided".into(), |c| {
            c.input[3] > 16 && !c.input[3].is_multiple_of(16) && c.options.stride[1] > 1
        }),
        ("non-square kernel".into(), |c| c.weight[2] != c.weight[3]),
        ("multiplier 2".into(), |c| c.weight[0] == 2 * c.input[1]),
        ("non-square input".into(), |c| c.input[2] != c.input[3]),
        ("batch > 1".into(), |c| c.input[0] > 1),
        ("padding as large as the kernel".into(), |c| {
            c.options.padding[0] >= c.weight[2] && c.weight[2] > 1
        }),
        ("no padding, kernel > 1".into(), |c| {
            c.options.padding == [0, 0] && c.weight[2] > 1
        }),
        ("no bias".into(), |c| !c.bias),
        ("bias".into(), |c| c.bias),
        // Stride > 1 splits planes into stride phases: phases of different shapes, with
        // dilated taps and several output channels per input.
        ("different strides along height and width".into(), |c| {
            c.options.stride[0] != c.options.stride[1]
        }),
        ("stride and dilation together".into(), |c| {
            c.options.stride[0] > 1 && c.options.dilation[0] > 1 && c.weight[2] > 1
        }),
        ("stride > 1, multiplier 2".into(), |c| {
            c.options.stride[0] > 1 && c.weight[0] == 2 * c.input[1]
        }),
        ("unit stride, multiplier 2".into(), |c| {
            c.options.stride == [1, 1] && c.weight[0] == 2 * c.input[1]
        }),
        (
            "unit stride, padding beyond the dilated kernel".into(),
            |c| {
                c.options.stride == [1, 1]
                    && c.options.padding[0] > c.options.dilation[0] * (c.weight[2] - 1)
            },
        ),
        ("unit stride, dilation 2".into(), |c| {
            c.options.stride == [1, 1] && c.options.dilation == [2, 2]
        }),
        ("unit stride, 1x1 map".into(), |c| {
            c.options.stride == [1, 1] && c.input[2] == 1 && c.input[3] == 1
        }),
        ("unit stride, wide map".into(), |c| {
            c.options.stride == [1, 1] && c.input[3] >= 32
        }),
    ];
    // Each kernel size, stride and dilation along each axis (a `fn` pointer cannot
    // capture the value: one closure per value).
    let kernels: [fn(&Case) -> bool; 8] = [
        |c| c.weight[2] == 1,
        |c| c.weight[2] == 3,
        |c| c.weight[2] == 5,
        |c| c.weight[2] == 7,
        |c| c.weight[3] == 1,
        |c| c.weight[3] == 3,
        |c| c.weight[3] == 5,
        |c| c.weight[3] == 7,
    ];
    for (i, test) in kernels.into_iter().enumerate() {
        all.push((
            format!("kernel {} along axis {}", 2 * (i % 4) + 1, i / 4),
            test,
        ));
    }
    let strides: [fn(&Case) -> bool; 6] = [
        |c| c.options.stride[0] == 1,
        |c| c.options.stride[0] == 2,
        |c| c.options.stride[0] == 3,
        |c| c.options.stride[1] == 1,
        |c| c.options.stride[1] == 2,
        |c| c.options.stride[1] == 3,
    ];
    for (i, test) in strides.into_iter().enumerate() {
        all.push((format!("stride {} along axis {}", i % 3 + 1, i / 3), test));
    }
    let dilations: [fn(&Case) -> bool; 4] = [
        |c| c.options.dilation[0] == 1,
        |c| c.options.dilation[0] == 2,
        |c| c.options.dilation[1] == 1,
        |c| c.options.dilation[1] == 2,
    ];
    for (i, test) in dilations.into_iter().enumerate() {
        all.push((format!("dilation {} along axis {}", i % 2 + 1, i / 2), test));
    }
    all
}

/// The sweep the CubeCL backends run. Each case's geometry (kernel, stride, padding,
/// dilation, multiplier, tile) is compiled into its own kernels, and on CI's CPU Vulkan
/// device compiling them is most of the cost (the 240-case sweep: 290 s with an empty
/// shader cache, 20 s warm). So: the first case of the full sweep for each corner it lacks
/// so far, then every sixth case for breadth. `cases_cover_the_required_space` checks
/// that it reaches every corner the full sweep reaches.
fn gpu_cases() -> Vec<Case> {
    let all = cases(CASES);
    let corners = corners();
    let mut chosen: Vec<Case> = Vec::new();
    for case in &all {
        let new_corner = corners
            .iter()
            .any(|(_, test)| test(case) && !chosen.iter().any(test));
        if new_corner || case.seed % 6 == 0 {
            chosen.push(case.clone());
        }
    }
    chosen
}

#[test]
fn cases_cover_the_required_space() {
    let (all, gpu) = (cases(CASES), gpu_cases());
    for (name, test) in corners() {
        assert!(all.iter().any(test), "the sweep has no case for: {name}");
        assert!(
            gpu.iter().any(test),
            "the GPU sweep has no case for: {name}"
        );
    }
    let unit = |sweep: &[Case]| sweep.iter().filter(|c| c.options.stride == [1, 1]).count();
    assert!(unit(&all) >= 20, "{} unit-stride cases", unit(&all));
    assert!(unit(&gpu) >= 6, "{} unit-stride GPU cases", unit(&gpu));
    // Few enough to keep the compiled-kernel count down.
    assert!(gpu.len() <= CASES / 3, "{} GPU cases", gpu.len());
}

/// The dense channels-last conv (`conv2d_nhwc`: the crate's im2col kernels and backward on
/// the CPU backends) against Burn's own `conv2d` on the same backend between permutes:
/// the output, and under `Autodiff` the gradients of `Σ y·r` for the input, weight and
/// bias, within 1e-4 of the largest value. Strides 1 and 2, padding 0 to 2, dilation 2, a
/// 3×1 kernel, a 3-channel stem-like input and 1×1 maps (stride, padding and dilation the
/// same on both axes: Candle's `conv2d`, the oracle there, takes no other).
fn dense_channels_last_conv_matches_burn_conv2d<B: DepthwiseBackend>(backend: &str) {
    use burn::tensor::module::conv2d;
    type A<B> = Autodiff<B>;
    let device: B::Device = Default::default();
    let cases = [
        // (input [N, H, W, C_in], C_out, [kh, kw], stride, padding, dilation)
        ([2, 9, 7, 5], 6, [3, 3], [1, 1], [1, 1], [1, 1]),
        ([3, 8, 8, 3], 4, [3, 3], [2, 2], [1, 1], [1, 1]),
        ([1, 6, 10, 4], 5, [3, 1], [2, 2], [0, 0], [1, 1]),
        ([2, 7, 7, 6], 3, [3, 3], [1, 1], [2, 2], [2, 2]),
        ([2, 1, 1, 8], 7, [3, 3], [1, 1], [1, 1], [1, 1]),
    ];
    for (seed, (input, cout, kernel, stride, padding, dilation)) in cases.into_iter().enumerate() {
        let seed = seed as u64 * 10;
        let [n, h, w, cin] = input;
        let options = DepthwiseOptions::new(stride, padding, dilation);
        let x_values = random_values(seed, n * h * w * cin);
        let w_values = random_values(seed + 1, cout * cin * kernel[0] * kernel[1]);
        let b_values = random_values(seed + 2, cout);
        let leaves = || {
            (
                tensor::<A<B>, 4>(&x_values, input, &device).require_grad(),
                tensor::<A<B>, 4>(&w_values, [cout, cin, kernel[0], kernel[1]], &device)
                    .require_grad(),
                tensor::<A<B>, 1>(&b_values, [cout], &device).require_grad(),
            )
        };
        let what = format!("{backend} dense conv {input:?} -> {cout}, {options:?}");
        let (x, weight, bias) = leaves();
        let ours =
            dwconv::kernels::conv2d_nhwc(x.clone(), weight.clone(), Some(bias.clone()), options);
        let (rx, rweight, rbias) = leaves();
        let burn = conv2d(
            rx.clone().permute([0, 3, 1, 2]),
            rweight.clone(),
            Some(rbias.clone()),
            options.to_conv_options(1),
        )
        .permute([0, 2, 3, 1]);
        assert_eq!(ours.dims(), burn.dims(), "{what}");
        let expected = f64s(&values(burn.clone()));
        assert_close(
            &format!("{what} output"),
            &values(ours.clone()),
            &expected,
            1e-4,
        );
        let r = tensor::<A<B>, 4>(
            &random_values(seed + 3, expected.len()),
            ours.dims(),
            &device,
        );
        let grads = (ours * r.clone()).sum().backward();
        let burn_grads = (burn * r).sum().backward();
        for (part, got, want) in [
            (
                "input",
                x.grad(&grads).map(values),
                rx.grad(&burn_grads).map(values),
            ),
            (
                "weight",
                weight.grad(&grads).map(values),
                rweight.grad(&burn_grads).map(values),
            ),
            (
                "bias",
                bias.grad(&grads).map(values),
                rbias.grad(&burn_grads).map(values),
            ),
        ] {
            let (got, want) = (got.expect("our gradient"), want.expect("Burn's gradient"));
            assert_close(&format!("{what} {part} gradient"), &got, &f64s(&want), 1e-4);
        }
    }
}

test_on_every_backend!(
    depthwise_matches_reference,
    one_call_backward_matches_the_three_ops,
    dense_channels_last_conv_matches_burn_conv2d
);

/// The stock grouped-conv path (the trait's default methods), the fallback for other
/// dtypes, and the correlation forms of the gradients (Candle's) against the reference.
#[test]
fn fallback_matches_reference() {
    use burn::backend::NdArray;
    use burn::tensor::TensorPrimitive;
    use dwconv::kernels::fallback;
    for case in cases(60) {
        let d = CaseData::new(&case);
        let s = &d.shape;
        let device = Default::default();
        let prim = |v: &[f32], shape: [usize; 4]| {
            tensor::<NdArray, 4>(v, shape, &device)
                .into_primitive()
                .tensor()
        };
        let x = prim(&d.x, case.input);
        let w = prim(&d.weight, case.weight);
        let g = prim(&d.output_grad, s.output_shape());
        let to_vec = |p| {
            values(Tensor::<NdArray, 4>::from_primitive(
                TensorPrimitive::Float(p),
            ))
        };
        let (xr, wr, gr) = (f64s(&d.x), f64s(&d.weight), f64s(&d.output_grad));
        let y = fallback::forward::<NdArray>(x.clone(), w.clone(), None, case.options);
        assert_close(
            "fallback forward",
            &to_vec(y),
            &reference::forward(s, &xr, &wr, None),
            1e-4,
        );
        let gx = fallback::x_backward::<NdArray>(x.clone(), w.clone(), g.clone(), case.options);
        assert_close(
            "fallback x grad",
            &to_vec(gx),
            &reference::x_backward(s, &wr, &gr),
            1e-4,
        );
        let gx = fallback::x_backward_by_correlation::<NdArray>(
            x.clone(),
            w.clone(),
            g.clone(),
            case.options,
        );
        assert_close(
            "x grad as a correlation",
            &to_vec(gx),
            &reference::x_backward(s, &wr, &gr),
            1e-4,
        );
        let gw =
            fallback::weight_backward::<NdArray>(x.clone(), w.clone(), g.clone(), case.options);
        assert_close(
            "fallback weight grad",
            &to_vec(gw),
            &reference::weight_backward(s, &xr, &gr),
            1e-4,
        );
        let gw = fallback::weight_backward_by_correlation::<NdArray>(x, w, g, case.options);
        assert_close(
            "weight grad as a correlation",
            &to_vec(gw),
            &reference::weight_backward(s, &xr, &gr),
            1e-4,
        );
    }
}

/// Reference gradients against central finite differences of the reference forward, for
/// the scalar loss `sum(output * output_grad)`, at sampled coordinates.
#[test]
fn reference_gradients_match_finite_differences() {
    const H: f64 = 1e-3;
    for case in cases(60) {
        let d = CaseData::new(&case);
        let s = &d.shape;
        let (x, w, b, g) = (
            f64s(&d.x),
            f64s(&d.weight),
            f64s(&d.bias),
            f64s(&d.output_grad),
        );
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            reference::forward(s, x, w, Some(b))
                .iter()
                .zip(&g)
                .map(|(y, g)| y * g)
                .sum()
        };
        let analytic = [
            reference::x_backward(s, &w, &g),
            reference::weight_backward(s, &x, &g),
            reference::bias_backward(s, &g),
        ];
        let mut rng = StdRng::seed_from_u64(case.seed);
        for (which, grad) in analytic.iter().enumerate() {
            for _ in 0..12 {
                let i = rng.random_range(0..grad.len());
                let mut params = [x.clone(), w.clone(), b.clone()];
                params[which][i] += H;
                let plus = loss(&params[0], &params[1], &params[2]);
                params[which][i] -= 2.0 * H;
                let minus = loss(&params[0], &params[1], &params[2]);
                let numeric = (plus - minus) / (2.0 * H);
                assert!(
                    (numeric - grad[i]).abs() <= 1e-8 * (1.0 + grad[i].abs()),
                    "finite difference of parameter set {which} element {i} for {case:?}: \
                     numeric {numeric}, analytic {}",
                    grad[i]
                );
            }
        }
    }
}

#[test]
fn shape_errors_name_the_bad_value() {
    use burn::backend::NdArray;
    let device = Default::default();
    let x = Tensor::<NdArray, 4>::zeros([1, 3, 5, 5], &device);
    let opts = DepthwiseOptions::new([1, 1], [0, 0], [1, 1]);
    let bad_weight = Tensor::<NdArray, 4>::zeros([4, 1, 3, 3], &device);
    let err = try_depthwise_conv2d(x.clone(), bad_weight, None, opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("4 output channels") && err.contains("3 channels"),
        "{err}"
    );
    let big_kernel = Tensor::<NdArray, 4>::zeros([3, 1, 7, 7], &device);
    let err = try_depthwise_conv2d(x.clone(), big_kernel, None, opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("5x5") && err.contains("7x7"), "{err}");
    let w = Tensor::<NdArray, 4>::zeros([3, 1, 3, 3], &device);
    let bias = Tensor::<NdArray, 1>::zeros([2], &device);
    let err = try_depthwise_conv2d(x.clone(), w.clone(), Some(bias), opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias has 2 elements"), "{err}");
    let zero_stride = DepthwiseOptions::new([0, 1], [0, 0], [1, 1]);
    let err = try_depthwise_conv2d(x, w.clone(), None, zero_stride)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stride"), "{err}");
    // Channels-last: `[1, 5, 5, 4]` has 4 channels, not the weight's 3.
    let x_last = Tensor::<NdArray, 4>::zeros([1, 5, 5, 4], &device);
    let err = try_depthwise_conv2d_nhwc(x_last, w, None, opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 output channels")
            && err.contains("4 channels")
            && err.contains("[1, 5, 5, 4]"),
        "{err}"
    );
}

/// Every instruction set this CPU has (`DWCONV_CPU_ISA`), each in a process of its own:
/// the channels-last sweep (where the ISA paths are) against the reference, and the bits
/// of a small MobileNetV2 training step (logits and every gradient, channels-last, all the
/// CPU kernels): AVX2 and AVX-512 give the same bits (both fuse each multiply-add, and
/// every channel sums in the same order), each path the same bits on every run.
#[test]
fn every_cpu_isa_matches_the_reference_and_itself() {
    use burn::backend::NdArray;
    use dwconv::kernels::cpu::{CPU_ISA_VARIABLE, CpuIsa};
    const CHILD: &str = "DWCONV_TEST_ISA_CHILD";
    const NAME: &str = "kernels::every_cpu_isa_matches_the_reference_and_itself";
    if std::env::var_os(CHILD).is_some() {
        let device = Default::default();
        for case in cases(CASES).iter().step_by(2) {
            check_case::<NdArray>(
                &wide_channels(case),
                &device,
                DType::F32,
                Layout::ChannelsLast,
            );
        }
        let digest = (0..2).map(|_| training_step_digest()).collect::<Vec<_>>();
        assert_eq!(digest[0], digest[1], "two runs of one path");
        println!("isa={} digest={:016x}", CpuIsa::current().name(), digest[0]);
        return;
    }
    let mut digests = Vec::new();
    for isa in CpuIsa::available() {
        let stdout = crate::common::run_to_success(
            isa.name(),
            crate::common::this_test_alone(NAME)
                .args(["--nocapture"])
                .env(CHILD, "1")
                .env(CPU_ISA_VARIABLE, isa.name()),
        );
        // (The harness's `test <name> ... ` may stand before it on the line.)
        let line = stdout
            .lines()
            .find_map(|l| l.find("isa=").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("{isa:?}: no digest in {stdout}"));
        let prefix = format!("isa={} digest=", isa.name());
        let digest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{isa:?} ran another path: {line}"));
        eprintln!("{line}");
        digests.push((isa, digest.to_string()));
    }
    let fused: Vec<&String> = digests
        .iter()
        .filter(|(isa, _)| *isa != CpuIsa::Scalar)
        .map(|(_, d)| d)
        .collect();
    assert!(
        fused.windows(2).all(|w| w[0] == w[1]),
        "AVX2 and AVX-512 differ: {digests:?}"
    );
    // A name this CPU lacks, or no such name: the process stops saying which it has.
    let out = crate::common::this_test_alone(NAME)
        .env(CHILD, "1")
        .env(CPU_ISA_VARIABLE, "avx1024")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("DWCONV_CPU_ISA=avx1024") && said.contains("scalar"),
        "{said}"
    );
}

/// FNV-1a over the bits of a small channels-last MobileNetV2's train-mode logits and
/// every parameter gradient (fixed parameters and input).
fn training_step_digest() -> u64 {
    use burn::backend::NdArray;
    use burn::module::{AutodiffModule, Module};
    use dwconv::models::MobileNetConfig;
    type A = Autodiff<NdArray>;
    let device = Default::default();
    let model = MobileNetConfig::v2(5)
        .with_width_mult(0.35)
        .with_dropout(0.0)
        .with_layout(Some(Layout::ChannelsLast))
        .init::<A>(&device)
        .map(&mut crate::common::SeededParameters::new(21));
    let images = tensor::<A, 4>(&random_values(22, 2 * 3 * 32 * 32), [2, 3, 32, 32], &device);
    let logits = model.forward(images);
    let mut bits: Vec<u32> = values(logits.clone()).iter().map(|v| v.to_bits()).collect();
    let grads = (logits.clone() * logits).sum().backward();
    let grads = burn::optim::GradientsParams::from_grads(grads, &model);
    let grad_values = model
        .valid()
        .map(&mut crate::common::GradientsAsValues { grads: &grads })
        .to_torchvision();
    for key in grad_values.tensors.keys() {
        bits.extend(grad_values.values(key).unwrap().iter().map(|v| v.to_bits()));
    }
    bits.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
