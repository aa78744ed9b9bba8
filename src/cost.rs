//! Parameter and multiply-add accounting.
//!
//! Parameters are the learnable ones (weights, biases, BatchNorm scale and shift), not
//! BatchNorm's running statistics, so counts compare with PyTorch's
//! `sum(p.numel() for p in model.parameters())`. Multiply-adds count convolutions and
//! linear layers (squeeze-excitation's included), as the MobileNet papers do; norms,
//! activations, pooling and residual adds are not counted.

use burn::nn::Linear;
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::models::{Block, MobileNet};
use crate::nn::{ConvLayer, ConvNormAct, SqueezeExcitation};

/// Cost of one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCost {
    /// Path of the layer in the model (e.g. `blocks.3.depthwise`).
    pub name: String,
    /// Learnable parameters.
    pub params: usize,
    /// Multiply-adds for one image.
    pub macs: u64,
    /// Output shape `[channels, height, width]` (`[features, 1, 1]` for linear layers).
    pub output: [usize; 3],
}

/// Cost of a whole model at one input size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostReport {
    /// Model name (e.g. `v2`).
    pub model: String,
    /// Input `[height, width]`.
    pub image_size: [usize; 2],
    /// Total learnable parameters.
    pub params: usize,
    /// Total multiply-adds for one image.
    pub macs: u64,
    /// Per-layer breakdown, in execution order.
    pub layers: Vec<LayerCost>,
}

/// Per-layer parameters and multiply-adds of `model` for one `image_size` input.
pub fn mobilenet_cost<B: Backend>(model: &MobileNet<B>, image_size: [usize; 2]) -> CostReport {
    let mut walk = Walk {
        layers: Vec::new(),
        size: image_size,
    };
    walk.conv_norm_act("stem", &model.stem);
    for (i, block) in model.blocks.iter().enumerate() {
        match block {
            Block::Separable(b) => {
                walk.conv_norm_act(&format!("blocks.{i}.depthwise"), &b.depthwise);
                walk.conv_norm_act(&format!("blocks.{i}.pointwise"), &b.pointwise);
            }
            Block::InvertedResidual(b) => {
                if let Some(expand) = &b.expand {
                    walk.conv_norm_act(&format!("blocks.{i}.expand"), expand);
                }
                walk.conv_norm_act(&format!("blocks.{i}.depthwise"), &b.depthwise);
                if let Some(se) = &b.squeeze_excite {
                    walk.squeeze_excite(&format!("blocks.{i}.squeeze_excite"), se);
                }
                walk.conv_norm_act(&format!("blocks.{i}.project"), &b.project);
            }
        }
    }
    if let Some(last) = &model.last_conv {
        walk.conv_norm_act("last_conv", last);
    }
    if let Some(hidden) = &model.classifier_hidden {
        walk.linear("classifier_hidden", hidden);
    }
    walk.linear("classifier", &model.classifier);
    CostReport {
        model: model.architecture.name().to_string(),
        image_size,
        params: walk.layers.iter().map(|l| l.params).sum(),
        macs: walk.layers.iter().map(|l| l.macs).sum(),
        layers: walk.layers,
    }
}

/// Walks the layers in order, tracking the spatial size.
struct Walk {
    layers: Vec<LayerCost>,
    size: [usize; 2],
}

fn conv_out(size: usize, kernel: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    (size + 2 * pad).saturating_sub(dilation * (kernel - 1) + 1) / stride + 1
}

impl Walk {
    fn push(&mut self, name: &str, params: usize, macs: u64, output: [usize; 3]) {
        self.layers.push(LayerCost {
            name: name.to_string(),
            params,
            macs,
            output,
        });
    }

    fn conv_norm_act<B: Backend>(&mut self, name: &str, layer: &ConvNormAct<B>) {
        let [h, w] = self.size;
        let (params, taps_per_output, out_size) = match &layer.conv {
            ConvLayer::Standard(conv) => {
                let [out, in_per_group, kh, kw] = conv.weight.dims();
                let (ph, pw) = match conv.padding {
                    PaddingConfig2d::Explicit(top, left, _, _) => (top, left),
                    _ => (0, 0),
                };
                let size = [
                    conv_out(h, kh, conv.stride[0], ph, conv.dilation[0]),
                    conv_out(w, kw, conv.stride[1], pw, conv.dilation[1]),
                ];
                let bias = conv.bias.as_ref().map_or(0, |_| out);
                (
                    out * in_per_group * kh * kw + bias,
                    in_per_group * kh * kw,
                    size,
                )
            }
            ConvLayer::Depthwise(conv) => {
                let [kh, kw] = conv.kernel_size();
                let size = conv
                    .options()
                    .output_size([h, w], [kh, kw])
                    .unwrap_or([0, 0]);
                let out = conv.out_channels();
                let bias = conv.bias.as_ref().map_or(0, |_| out);
                (out * kh * kw + bias, kh * kw, size)
            }
            ConvLayer::Pointwise(conv) => {
                let (out, inp) = (conv.out_channels(), conv.in_channels());
                let bias = conv.bias.as_ref().map_or(0, |_| out);
                (out * inp + bias, inp, [h, w])
            }
        };
        let out_channels = layer.conv.out_channels();
        let norm_params = 2 * out_channels;
        let macs = (out_size[0] * out_size[1] * out_channels * taps_per_output) as u64;
        self.size = out_size;
        self.push(
            name,
            params + norm_params,
            macs,
            [out_channels, out_size[0], out_size[1]],
        );
    }

    fn squeeze_excite<B: Backend>(&mut self, name: &str, se: &SqueezeExcitation<B>) {
        let (c, squeeze) = (se.fc1.in_channels(), se.fc1.out_channels());
        let params = 2 * c * squeeze + squeeze + c;
        let macs = (2 * c * squeeze) as u64;
        self.push(name, params, macs, [c, self.size[0], self.size[1]]);
    }

    fn linear<B: Backend>(&mut self, name: &str, linear: &Linear<B>) {
        let [inputs, outputs] = linear.weight.dims();
        let bias = linear.bias.as_ref().map_or(0, |_| outputs);
        self.size = [1, 1];
        self.push(
            name,
            inputs * outputs + bias,
            (inputs * outputs) as u64,
            [outputs, 1, 1],
        );
    }
}

/// A standard k×k convolution against its depthwise-separable replacement (bias-free, no
/// norms: the MobileNets paper's comparison).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeparableComparison {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Output channels `N`.
    pub out_channels: usize,
    /// Kernel size `k`.
    pub kernel: usize,
    /// Output `[height, width]` (stride 1, "same" padding: the input size).
    pub output_size: [usize; 2],
    /// `k² M N`.
    pub standard_params: usize,
    /// `k² M + M N`.
    pub separable_params: usize,
    /// `H W k² M N`.
    pub standard_macs: u64,
    /// `H W (k² M + M N)`.
    pub separable_macs: u64,
    /// `separable_macs / standard_macs`.
    pub ratio: f64,
    /// `1/N + 1/k²`, the paper's closed form (equal to `ratio`).
    pub predicted_ratio: f64,
}

/// Compares a standard `kernel×kernel` conv (`in_channels → out_channels`, stride 1, same
/// padding) on an `image_size` map with depthwise `kernel×kernel` + pointwise 1×1.
pub fn compare_separable(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    image_size: [usize; 2],
) -> crate::Result<SeparableComparison> {
    for (name, value) in [
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("kernel", kernel),
        ("image height", image_size[0]),
        ("image width", image_size[1]),
    ] {
        if value == 0 {
            return Err(crate::Error::Config(format!(
                "{name} must be at least 1, got 0"
            )));
        }
    }
    let (m, n, k2) = (in_channels, out_channels, kernel * kernel);
    let positions = (image_size[0] * image_size[1]) as u64;
    let standard_params = k2 * m * n;
    let separable_params = k2 * m + m * n;
    let standard_macs = positions * standard_params as u64;
    let separable_macs = positions * separable_params as u64;
    Ok(SeparableComparison {
        in_channels,
        out_channels,
        kernel,
        output_size: image_size,
        standard_params,
        separable_params,
        standard_macs,
        separable_macs,
        ratio: separable_macs as f64 / standard_macs as f64,
        predicted_ratio: 1.0 / n as f64 + 1.0 / k2 as f64,
    })
}
