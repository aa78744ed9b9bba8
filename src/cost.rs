//! Parameter and multiply-add accounting.
//!
//! Parameters are the learnable ones (weights, biases, BatchNorm scale and shift), not
//! BatchNorm's running statistics, so counts compare with PyTorch's
//! `sum(p.numel() for p in model.parameters())`. Multiply-adds count convolutions and
//! linear layers (squeeze-excitation's included), as the MobileNet papers do; norms,
//! activations, pooling and residual adds are not counted.

use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::models::MobileNet;
use crate::nn::join;

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

/// Per-layer parameters and multiply-adds of `model` for one `image_size` input, read off
/// the model's own description ([`MobileNet::describe`]).
pub fn mobilenet_cost<B: Backend>(model: &MobileNet<B>, image_size: [usize; 2]) -> CostReport {
    let mut size = image_size;
    let mut layers = Vec::new();
    for unit in model.describe() {
        if !unit.in_body {
            // The head runs on the globally pooled features.
            size = [1, 1];
        }
        for layer in &unit.layers {
            let (output, macs) = layer.kind.apply(size);
            size = output;
            layers.push(LayerCost {
                name: join(&unit.path, &layer.path),
                params: layer.kind.params(),
                macs,
                output: [layer.kind.out_channels(), output[0], output[1]],
            });
        }
    }
    CostReport {
        model: model.architecture.name().to_string(),
        image_size,
        params: layers.iter().map(|l| l.params).sum(),
        macs: layers.iter().map(|l| l.macs).sum(),
        layers,
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
