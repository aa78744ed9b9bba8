//! BatchNorm followed by an activation, as one fused op.

use burn::nn::BatchNorm;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{Activation, FeatureMap};
use crate::kernels::{Layout, NormActBackend, reshape_dense};

/// [`batch_norm_act`] on a map in either layout.
pub fn batch_norm_act_map<B: NormActBackend>(
    x: FeatureMap<B>,
    norm: &BatchNorm<B>,
    activation: Activation,
) -> FeatureMap<B> {
    match x.layout() {
        Layout::ChannelsFirst => x.map(|x| batch_norm_act(x, norm, activation)),
        Layout::ChannelsLast => x.map(|x| batch_norm_act_channels_last(x, norm, activation)),
    }
}

/// [`batch_norm_act`] on channels-last maps `[N, H, W, C]`.
pub fn batch_norm_act_channels_last<B: NormActBackend>(
    x: Tensor<B, 4>,
    norm: &BatchNorm<B>,
    activation: Activation,
) -> Tensor<B, 4> {
    let [n, h, w, c] = x.dims();
    // `[N·H·W, C, 1, 1]` is NCHW with 1×1 maps: the same per-channel statistics.
    let rows = batch_norm_act(reshape_dense(x, [n * h * w, c, 1, 1]), norm, activation);
    reshape_dense(rows, [n, h, w, c])
}

/// `activation(batch_norm(x))` for `x: [N, C, H, W]` with Burn's `BatchNorm` parameters.
///
/// With autodiff (training) it normalises with the batch statistics and updates the
/// running averages as PyTorch does (`new = (1 - momentum) * old + momentum * batch`, the
/// variance unbiased); without (inference) it applies the running statistics folded into a
/// per-channel scale and shift. Either way one fused op of [`NormActBackend`] does the
/// element-wise work, where Burn's `BatchNorm` and the activation take about ten passes.
pub fn batch_norm_act<B: NormActBackend>(
    x: Tensor<B, 4>,
    norm: &BatchNorm<B>,
    activation: Activation,
) -> Tensor<B, 4> {
    let device = x.device();
    let [n, c, h, w] = x.dims();
    let float = |t: Tensor<B, 1>| t.into_primitive().tensor();
    if B::ad_enabled(&device) {
        let (y, mean, var) = B::batch_norm_act(
            x.into_primitive().tensor(),
            float(norm.gamma.val()),
            float(norm.beta.val()),
            norm.epsilon,
            activation,
        );
        let mean = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(mean));
        let var = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(var));
        let count = (n * h * w) as f64;
        let unbiased = var * (count / (count - 1.0).max(1.0));
        let m = norm.momentum;
        let update = |old: Tensor<B, 1>, batch: Tensor<B, 1>| {
            (old.to_device(&device) * (1.0 - m) + batch.detach() * m).detach()
        };
        norm.running_mean
            .update(update(norm.running_mean.value_sync(), mean));
        norm.running_var
            .update(update(norm.running_var.value_sync(), unbiased));
        Tensor::from_primitive(TensorPrimitive::Float(y))
    } else {
        let mean = norm.running_mean.value().to_device(&device);
        let var = norm.running_var.value().to_device(&device);
        let scale = norm.gamma.val() / (var + norm.epsilon).sqrt();
        let shift = norm.beta.val() - mean * scale.clone();
        debug_assert_eq!(scale.dims(), [c]);
        Tensor::from_primitive(TensorPrimitive::Float(B::channel_affine_act(
            x.into_primitive().tensor(),
            float(scale),
            float(shift),
            activation,
        )))
    }
}
