//! MobileNet construction, feature maps, input checking and backend agreement.

use burn::backend::NdArray;
use burn::module::{AutodiffModule, Module};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use dwconv::kernels::{DepthwiseBackend, Layout};
use dwconv::models::{Architecture, MobileNet, MobileNetConfig, make_divisible};
use dwconv::nn::ConvLayer;

use crate::common::{
    SeededParameters, max_relative_diff, random_values, tensor, test_on_every_backend, values,
};

#[test]
fn make_divisible_matches_torchvision() {
    // torchvision: max(8, int(v + 4) // 8 * 8), plus 8 if that is below 0.9 v.
    assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
    assert_eq!(make_divisible(16.0 * 0.5, 8), 8);
    assert_eq!(make_divisible(24.0 * 0.75, 8), 24);
    assert_eq!(make_divisible(1.0, 8), 8);
    assert_eq!(make_divisible(100.0, 8), 104);
    assert_eq!(make_divisible(92.0, 8), 96);
    // 36 rounds down to 32, which is under 0.9 * 36 = 32.4, so it goes back up.
    assert_eq!(make_divisible(36.0, 8), 40);
}

/// Documented channels of the stride 4, 8, 16, 32 maps at width 1.0.
const FEATURE_CHANNELS: [(Architecture, [usize; 4]); 4] = [
    (Architecture::V1, [128, 256, 512, 1024]),
    (Architecture::V2, [24, 32, 96, 1280]),
    (Architecture::V3Small, [16, 24, 48, 576]),
    (Architecture::V3Large, [24, 40, 112, 960]),
];

#[test]
fn forward_features_gives_strides_4_8_16_32() {
    let device = Default::default();
    for (arch, channels) in FEATURE_CHANNELS {
        let model = MobileNetConfig::new(arch, 10).init::<NdArray>(&device);
        assert_eq!(model.feature_channels(), channels, "{arch}");
        let images = Tensor::<NdArray, 4>::zeros([1, 3, 64, 96], &device);
        let maps = model.forward_features(images).unwrap();
        assert_eq!(maps.len(), 4, "{arch}");
        for ((map, stride), c) in maps.iter().zip([4, 8, 16, 32]).zip(channels) {
            assert_eq!(
                map.dims(),
                [1, c, 64 / stride, 96 / stride],
                "{arch} stride {stride}"
            );
        }
    }
}

/// The channels-last network computes the channels-first one: the same logits and
/// feature maps (returned NCHW) from the same parameters, in eval and train mode, for every
/// variant, on an odd-sized input.
#[test]
fn channels_last_and_channels_first_agree() {
    use burn::backend::Autodiff;
    let device = Default::default();
    for arch in Architecture::ALL {
        let model = MobileNetConfig::new(arch, 5)
            .with_width_mult(0.5)
            .with_dropout(0.0)
            .init::<Autodiff<NdArray>>(&device);
        // The same parameters every run (and fixed before cloning: Burn initialises lazily,
        // per clone).
        let model = model.map(&mut SeededParameters::new(11));
        let images = tensor::<Autodiff<NdArray>, 4>(
            &random_values(3, 2 * 3 * 35 * 41),
            [2, 3, 35, 41],
            &device,
        );
        for train in [false, true] {
            let run = |layout: Layout| {
                let model = model.clone().with_layout(Some(layout));
                if train {
                    let logits = model.forward(images.clone());
                    (values(logits), Vec::new())
                } else {
                    let model = model.valid();
                    let images = images.clone().inner();
                    let maps = model.forward_features(images.clone()).unwrap();
                    (values(model.forward(images)), maps)
                }
            };
            let (first, first_maps) = run(Layout::ChannelsFirst);
            let (last, last_maps) = run(Layout::ChannelsLast);
            let diff = max_relative_diff(&first, &last);
            // In train mode BatchNorm normalises by the batch's statistics: at the last
            // stages two 35x41 images leave 8 values per channel (V4's head BatchNorm: 2),
            // and a channel whose values nearly agree turns the layouts' rounding (they sum
            // in other orders) into up to ~5e-4 of the logits (V4-Conv-Large with these
            // parameters; EfficientNet-B4 9e-5, V2-L 5e-5). Eval mode stays within 1e-5.
            let bound = if train { 1e-3 } else { 1e-4 };
            assert!(
                diff < bound,
                "{arch} train={train}: logits differ by {diff}"
            );
            for (a, b) in first_maps.into_iter().zip(last_maps) {
                assert_eq!(a.dims(), b.dims(), "{arch}: feature map shape");
                let (va, vb) = (values(a.clone()), values(b));
                let diff = max_relative_diff(&va, &vb);

                assert!(diff < 1e-4, "{arch}: feature maps differ by {diff}");
            }
        }
    }
    // The CPU backends run channels-last unless told otherwise.
    let model = MobileNetConfig::v2(3).init::<NdArray>(&device);
    assert_eq!(model.layout(), Layout::ChannelsLast);
    let model = MobileNetConfig::v2(3)
        .with_layout(Some(Layout::ChannelsFirst))
        .init::<NdArray>(&device);
    assert_eq!(model.layout(), Layout::ChannelsFirst);
}

/// BatchNorm folded into the convolutions gives the unfused eval logits within 1e-5
/// relative, in both layouts, for every variant, after training-mode passes have moved
/// the running statistics away from their initial values.
#[test]
fn fused_inference_matches_the_unfused_model() {
    use burn::backend::Autodiff;
    let device = Default::default();
    for arch in Architecture::ALL {
        let model = MobileNetConfig::new(arch, 6)
            .with_width_mult(0.5)
            .with_norm_momentum(Some(0.5))
            .init::<Autodiff<NdArray>>(&device)
            .map(&mut SeededParameters::new(12));
        for step in 0..3 {
            let images = tensor::<Autodiff<NdArray>, 4>(
                &random_values(10 + step, 4 * 3 * 32 * 32),
                [4, 3, 32, 32],
                &device,
            );
            let _ = model.forward(images * 2.0 + 0.5);
        }
        let model = model.valid();
        let images =
            tensor::<NdArray, 4>(&random_values(20, 2 * 3 * 40 * 36), [2, 3, 40, 36], &device);
        for layout in [Layout::ChannelsFirst, Layout::ChannelsLast] {
            let model = model.clone().with_layout(Some(layout));
            let unfused = values(model.forward(images.clone()));
            let fused = values(model.fuse_for_inference().forward(images.clone()));
            let diff = max_relative_diff(&fused, &unfused);
            assert!(
                diff < 1e-5,
                "{arch} {layout:?}: fused logits differ by {diff}"
            );
        }
    }
}

#[test]
fn forward_gives_logits_for_every_variant_and_width() {
    let device = Default::default();
    for arch in Architecture::ALL {
        for width in [0.35, 1.0] {
            let model = MobileNetConfig::new(arch, 7)
                .with_width_mult(width)
                .init::<NdArray>(&device);
            let images = Tensor::<NdArray, 4>::ones([2, 3, 33, 40], &device);
            let logits = model.try_forward(images).unwrap();
            assert_eq!(logits.dims(), [2, 7], "{arch} {width}");
            assert!(values(logits).iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn bad_inputs_and_configs_are_clear_errors() {
    let device = Default::default();
    let model = MobileNetConfig::v2(10)
        .with_width_mult(0.5)
        .init::<NdArray>(&device);
    let err = model
        .try_forward(Tensor::zeros([1, 1, 64, 64], &device))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 channels") && err.contains("[1, 1, 64, 64]"),
        "{err}"
    );
    let err = model
        .try_forward(Tensor::zeros([1, 3, 31, 64], &device))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at least 32x32") && err.contains("31x64"),
        "{err}"
    );
    assert!(
        model
            .forward_features(Tensor::zeros([1, 3, 16, 16], &device))
            .is_err()
    );

    let err = MobileNetConfig::v2(0)
        .try_init::<NdArray>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_classes"), "{err}");
    let err = MobileNetConfig::v2(10)
        .with_width_mult(-0.5)
        .try_init::<NdArray>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("width_mult") && err.contains("-0.5"), "{err}");
    let err = MobileNetConfig::v2(10)
        .with_dropout(1.5)
        .try_init::<NdArray>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dropout") && err.contains("1.5"), "{err}");
    let err = "v4".parse::<Architecture>().unwrap_err().to_string();
    assert!(err.contains("'v4'") && err.contains("v3-small"), "{err}");
}

/// torchvision's initialisation: Kaiming-normal (fan-out) convs, N(0, 0.01) linear
/// weights with zero bias, BN weight 1 and bias 0.
#[test]
fn initialisation_follows_torchvision() {
    let device = Default::default();
    <NdArray as Backend>::seed(&device, 3);
    let model = MobileNetConfig::v2(1000).init::<NdArray>(&device);
    let std = |v: &[f32]| {
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    // Last conv: 320 -> 1280 1x1, fan_out = 1280.
    let last = model.last_conv.as_ref().unwrap();
    let ConvLayer::Pointwise(pw) = &last.conv else {
        panic!("1x1 conv must be pointwise");
    };
    let s = std(&values(pw.weight.val()));
    let expected = (2.0f64 / 1280.0).sqrt();
    assert!(
        (s / expected - 1.0).abs() < 0.02,
        "conv std {s} vs {expected}"
    );
    let s = std(&values(model.classifier.weight.val()));
    assert!((s / 0.01 - 1.0).abs() < 0.02, "linear std {s}");
    assert!(
        values(model.classifier.bias.as_ref().unwrap().val())
            .iter()
            .all(|&b| b == 0.0)
    );
    assert!(values(last.norm.gamma.val()).iter().all(|&g| g == 1.0));
    assert!(values(last.norm.beta.val()).iter().all(|&b| b == 0.0));
    // V3 uses BN eps 1e-3 and momentum 0.01; V2 1e-5 and 0.1.
    assert_eq!((last.norm.epsilon, last.norm.momentum), (1e-5, 0.1));
    let v3 = MobileNetConfig::v3_small(10).init::<NdArray>(&device);
    assert_eq!((v3.stem.norm.epsilon, v3.stem.norm.momentum), (1e-3, 0.01));
}

/// Moves a model's weights to another backend through Burn's record format.
fn transfer<B: Backend>(
    model: MobileNet<NdArray>,
    config: &MobileNetConfig,
    device: &B::Device,
) -> MobileNet<B> {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder
        .record(model.into_record(), ())
        .expect("serialise record");
    let record = recorder.load(bytes, device).expect("deserialise record");
    config.init::<B>(device).load_record(record)
}

fn logits<B: DepthwiseBackend>(
    model: &MobileNet<B>,
    images: &[f32],
    device: &B::Device,
) -> Vec<f32> {
    values(model.forward(tensor::<B, 4>(images, [2, 3, 32, 32], device)))
}

/// The same weights, moved from ndarray through Burn's record format, give the same
/// eval-mode logits on every backend: bit for bit on ndarray itself, within 1e-4 elsewhere.
fn same_weights_same_logits_as_ndarray<B: DepthwiseBackend>(backend: &str) {
    let device = Default::default();
    let images = random_values(9, 2 * 3 * 32 * 32);
    for config in [
        MobileNetConfig::v2(10).with_width_mult(0.5),
        MobileNetConfig::v3_small(10),
        MobileNetConfig::v1(10).with_width_mult(0.25),
    ] {
        let model = config
            .init::<NdArray>(&device)
            .map(&mut SeededParameters::new(13));
        let expected = logits(&model, &images, &device);
        let moved = transfer::<B>(model, &config, &Default::default());
        let got = logits(&moved, &images, &Default::default());
        if backend == "ndarray" {
            assert_eq!(got, expected, "record round trip {:?}", config.architecture);
        }
        let diff = max_relative_diff(&got, &expected);
        assert!(
            diff <= 1e-4,
            "{backend} vs ndarray {:?}: {diff:e}",
            config.architecture
        );
    }
}

test_on_every_backend!(same_weights_same_logits_as_ndarray);
