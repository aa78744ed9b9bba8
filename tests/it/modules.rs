//! The nn modules against hand-computed or naive-loop results.

use burn::backend::NdArray;
use burn::module::Module;
use burn::tensor::Tensor;
use dwconv::cost::mobilenet_cost;
use dwconv::kernels::{DepthwiseOptions, DepthwiseShape, reference};
use dwconv::nn::{
    Activation, ConvLayer, DepthwiseConv2dConfig, DepthwiseSeparableConvConfig,
    InvertedResidualConfig, PointwiseConv2dConfig, SqueezeExcitationConfig,
};

use crate::common::{assert_close, random_values, tensor, values};

type B = NdArray;

fn learnable_params<M: Module<B>>(module: &M, bn_channels: usize) -> usize {
    module.num_params() - 2 * bn_channels
}

/// The source article's block: dw 3→3 k3 s2 p1 (no bias) → BN → ReLU → pw 3→9 (no bias) →
/// BN → ReLU on a 5×5 RGB input.
#[test]
fn article_block_builds_and_counts() {
    let device = Default::default();
    let block = DepthwiseSeparableConvConfig::new(3, 9)
        .with_kernel_size(3)
        .with_stride(2)
        .init::<B>(&device);
    let ConvLayer::Depthwise(dw) = &block.depthwise.conv else {
        panic!("the depthwise half must use the depthwise kernel");
    };
    assert_eq!(dw.weight.dims(), [3, 1, 3, 3]);
    assert_eq!(
        (dw.padding, dw.stride, dw.bias.is_none()),
        ([1, 1], [2, 2], true)
    );
    let ConvLayer::Pointwise(pw) = &block.pointwise.conv else {
        panic!("the pointwise half must be a 1x1 matmul");
    };
    assert_eq!((pw.weight.dims(), pw.bias.is_none()), ([9, 3], true));
    // 27 (dw) + 6 (BN) + 27 (pw) + 18 (BN) learnable parameters; BN running stats excluded.
    assert_eq!(learnable_params(&block, 3 + 9), 78);
    let x = Tensor::<B, 4>::from_data(
        burn::tensor::TensorData::new(random_values(1, 75), [1, 3, 5, 5]),
        &device,
    );
    let y = block.forward(x).into_nchw();
    assert_eq!(y.dims(), [1, 9, 3, 3]);
    assert!(values(y).iter().all(|v| *v >= 0.0), "ReLU output");
}

#[test]
fn depthwise_module_matches_reference_with_multiplier() {
    let device = Default::default();
    let conv = DepthwiseConv2dConfig::new(3, [3, 5])
        .with_stride([2, 1])
        .with_padding([1, 2])
        .with_dilation([1, 2])
        .with_depth_multiplier(2)
        .init::<B>(&device);
    assert_eq!((conv.in_channels(), conv.out_channels()), (3, 6));
    let x_values = random_values(7, 2 * 3 * 9 * 11);
    let x = tensor::<B, 4>(&x_values, [2, 3, 9, 11], &device);
    let y = conv.forward(x);
    let shape = DepthwiseShape::new(
        [2, 3, 9, 11],
        [6, 1, 3, 5],
        DepthwiseOptions::new([2, 1], [1, 2], [1, 2]),
    )
    .unwrap();
    assert_eq!(y.dims(), shape.output_shape());
    let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let expected = reference::forward(
        &shape,
        &f64s(x_values),
        &f64s(values(conv.weight.val())),
        Some(&f64s(values(conv.bias.as_ref().unwrap().val()))),
    );
    assert_close("depthwise module", &values(y), &expected, 1e-5);
}

#[test]
fn depthwise_config_and_input_errors_name_the_value() {
    let device = Default::default();
    let err = DepthwiseConv2dConfig::new(3, [3, 3])
        .with_stride([0, 1])
        .try_init::<B>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stride") && err.contains("[0, 1]"), "{err}");
    let err = DepthwiseConv2dConfig::new(3, [3, 3])
        .with_depth_multiplier(0)
        .try_init::<B>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("depth_multiplier"), "{err}");
    let conv = DepthwiseConv2dConfig::new(3, [3, 3]).init::<B>(&device);
    let err = conv
        .try_forward(Tensor::zeros([1, 4, 8, 8], &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("4") && err.contains("3"), "{err}");
}

#[test]
fn pointwise_matches_naive_loops() {
    let device = Default::default();
    let conv = PointwiseConv2dConfig::new(4, 5).init::<B>(&device);
    for (h, w) in [(3, 2), (1, 1)] {
        let x_values = random_values(11, 2 * 4 * h * w);
        let y = values(conv.forward(tensor::<B, 4>(&x_values, [2, 4, h, w], &device)));
        let weight = values(conv.weight.val());
        let bias = values(conv.bias.as_ref().unwrap().val());
        let mut expected = vec![0.0f64; 2 * 5 * h * w];
        for n in 0..2 {
            for o in 0..5 {
                for p in 0..h * w {
                    let mut acc = bias[o] as f64;
                    for c in 0..4 {
                        acc += weight[o * 4 + c] as f64 * x_values[(n * 4 + c) * h * w + p] as f64;
                    }
                    expected[(n * 5 + o) * h * w + p] = acc;
                }
            }
        }
        assert_close(&format!("pointwise {h}x{w}"), &y, &expected, 1e-5);
    }
    let err = conv
        .try_forward(Tensor::zeros([1, 3, 2, 2], &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expects 4 input channels"), "{err}");
}

#[test]
fn activations_match_their_definitions() {
    let device = Default::default();
    let inputs = [-7.0f32, -3.0, -1.5, 0.0, 1.0, 2.9, 3.0, 6.5];
    let x = tensor::<B, 1>(&inputs, [inputs.len()], &device);
    let relu6 = values(Activation::Relu6.forward(x.clone()));
    let hswish = values(Activation::HardSwish.forward(x.clone()));
    for (i, &v) in inputs.iter().enumerate() {
        assert_eq!(relu6[i], v.clamp(0.0, 6.0));
        let expected = v * (v + 3.0).clamp(0.0, 6.0) / 6.0;
        assert!((hswish[i] - expected).abs() < 1e-6, "hardswish({v})");
    }
    assert_eq!(
        values(Activation::Identity.forward(x.clone())),
        inputs.to_vec()
    );
    assert_eq!(
        values(Activation::Relu.forward(x)),
        inputs.map(|v| v.max(0.0)).to_vec()
    );
}

/// PyTorch's SqueezeExcitation: scale = hardsigmoid(fc2(relu(fc1(avgpool(x))))), with
/// hardsigmoid(v) = clamp(v / 6 + 0.5, 0, 1).
#[test]
fn squeeze_excitation_has_pytorch_semantics() {
    let device = Default::default();
    let se = SqueezeExcitationConfig::new(4, 2).init::<B>(&device);
    let x_values = random_values(3, 4 * 3 * 3);
    let y = values(
        se.forward(tensor::<B, 4>(&x_values, [1, 4, 3, 3], &device))
            .into_nchw(),
    );
    let (w1, b1) = (
        values(se.fc1.weight.val()),
        values(se.fc1.bias.as_ref().unwrap().val()),
    );
    let (w2, b2) = (
        values(se.fc2.weight.val()),
        values(se.fc2.bias.as_ref().unwrap().val()),
    );
    let pooled: Vec<f64> = (0..4)
        .map(|c| {
            x_values[c * 9..][..9]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / 9.0
        })
        .collect();
    let hidden: Vec<f64> = (0..2)
        .map(|j| {
            (b1[j] as f64
                + (0..4)
                    .map(|c| w1[j * 4 + c] as f64 * pooled[c])
                    .sum::<f64>())
            .max(0.0)
        })
        .collect();
    let mut expected = Vec::new();
    for c in 0..4 {
        let z = b2[c] as f64
            + (0..2)
                .map(|j| w2[c * 2 + j] as f64 * hidden[j])
                .sum::<f64>();
        let scale = (z / 6.0 + 0.5).clamp(0.0, 1.0);
        expected.extend(x_values[c * 9..][..9].iter().map(|&v| v as f64 * scale));
    }
    assert_close("squeeze-excitation", &y, &expected, 1e-5);
}

#[test]
fn inverted_residual_structure_follows_the_config() {
    let device = Default::default();
    let with_all = InvertedResidualConfig::new(16, 64, 16)
        .with_kernel_size(5)
        .with_squeeze_channels(Some(16))
        .with_activation(Activation::HardSwish)
        .init::<B>(&device);
    assert!(with_all.expand.is_some() && with_all.squeeze_excite.is_some());
    assert!(with_all.use_residual);
    let x = Tensor::<B, 4>::zeros([2, 16, 7, 9], &device);
    assert_eq!(with_all.forward(x).dims(), [2, 16, 7, 9]);

    let strided = InvertedResidualConfig::new(16, 16, 24)
        .with_stride(2)
        .init::<B>(&device);
    assert!(strided.expand.is_none() && strided.squeeze_excite.is_none());
    assert!(!strided.use_residual);
    let x = Tensor::<B, 4>::zeros([1, 16, 7, 9], &device);
    assert_eq!(strided.forward(x).dims(), [1, 24, 4, 5]);
    let err = strided
        .try_forward(Tensor::zeros([1, 8, 7, 9], &device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("16 input channels"), "{err}");
}

/// The residual really is added: with the projection's BN scale set to zero the block is
/// the identity.
#[test]
fn inverted_residual_adds_its_input() {
    let device = Default::default();
    let mut block = InvertedResidualConfig::new(8, 32, 8).init::<B>(&device);
    let zeros = Tensor::<B, 1>::zeros([8], &device);
    block.project.norm.gamma = burn::module::Param::from_tensor(zeros.clone());
    block.project.norm.beta = burn::module::Param::from_tensor(zeros);
    let x_values = random_values(5, 8 * 4 * 4);
    let y = values(
        block
            .forward(tensor::<B, 4>(&x_values, [1, 8, 4, 4], &device))
            .into_nchw(),
    );
    let expected: Vec<f64> = x_values.iter().map(|&v| v as f64).collect();
    assert_close("identity residual", &y, &expected, 1e-6);
}

#[test]
fn cost_of_a_separable_block_inside_a_model_matches_its_module() {
    // Per-layer params in the report equal the module's own learnable parameters.
    let device = Default::default();
    let model = dwconv::models::MobileNetConfig::v1(10)
        .with_width_mult(0.25)
        .init::<B>(&device);
    let report = mobilenet_cost(&model, [64, 64]);
    let dwconv::models::Block::Separable(first) = &model.blocks[0] else {
        panic!("V1 blocks are separable convs");
    };
    let from_report: usize = report
        .layers
        .iter()
        .filter(|l| l.name.starts_with("blocks.0."))
        .map(|l| l.params)
        .sum();
    let channels = first.depthwise.conv.out_channels() + first.pointwise.conv.out_channels();
    assert_eq!(from_report, learnable_params(first, channels));
}

/// Gradients through the matmul form of the 1x1 conv (a broadcast batched product) equal
/// the naive sums.
#[test]
fn pointwise_gradients_match_naive_sums() {
    use burn::backend::Autodiff;
    type AD = Autodiff<NdArray>;
    let device = Default::default();
    let conv = PointwiseConv2dConfig::new(3, 2).init::<AD>(&device);
    let (n, h, w) = (2, 2, 3);
    let x_values = random_values(21, n * 3 * h * w);
    let g_values = random_values(22, n * 2 * h * w);
    let x = tensor::<AD, 4>(&x_values, [n, 3, h, w], &device).require_grad();
    let g = tensor::<AD, 4>(&g_values, [n, 2, h, w], &device);
    let grads = (conv.forward(x.clone()) * g).sum().backward();
    let weight = values(conv.weight.val().inner());
    let weight_grad = values(conv.weight.grad(&grads).unwrap());
    let bias_grad = values(conv.bias.as_ref().unwrap().grad(&grads).unwrap());
    let x_grad = values(x.grad(&grads).unwrap());
    let hw = h * w;
    let mut expected_w = vec![0.0f64; 6];
    let mut expected_b = vec![0.0f64; 2];
    let mut expected_x = vec![0.0f64; n * 3 * hw];
    for b in 0..n {
        for o in 0..2 {
            for p in 0..hw {
                let go = g_values[(b * 2 + o) * hw + p] as f64;
                expected_b[o] += go;
                for c in 0..3 {
                    expected_w[o * 3 + c] += go * x_values[(b * 3 + c) * hw + p] as f64;
                    expected_x[(b * 3 + c) * hw + p] += go * weight[o * 3 + c] as f64;
                }
            }
        }
    }
    assert_close("pointwise weight grad", &weight_grad, &expected_w, 1e-5);
    assert_close("pointwise bias grad", &bias_grad, &expected_b, 1e-5);
    assert_close("pointwise input grad", &x_grad, &expected_x, 1e-5);
}
