//! Fused BatchNorm + activation as a backend extension.
//!
//! [`NormActBackend`] has defaults built on Burn's tensor ops (correct on any backend);
//! CPU backends override them with the two-pass kernels of
//! [`cpu::norm_act`](super::cpu::norm_act), and `Autodiff<B>` records one backward node per
//! call. Layout is NCHW; per-channel tensors are `[C]`.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorPrimitive};

use super::Activation;

/// Fused BatchNorm + activation ops.
pub trait NormActBackend: Backend {
    /// Training-mode BatchNorm (batch statistics) followed by `activation`:
    /// returns `(output [N, C, H, W], batch mean [C], biased batch variance [C])`.
    fn batch_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback_batch_norm_act::<Self>(x, gamma, beta, epsilon, activation)
    }

    /// Gradients of [`Self::batch_norm_act`] given the output gradient and the batch
    /// statistics it returned: `(dx, dgamma, dbeta)`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_act_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback_batch_norm_act_backward::<Self>(
            x,
            gamma,
            beta,
            mean,
            var,
            epsilon,
            activation,
            output_grad,
        )
    }

    /// Inference-mode BatchNorm folded to a per-channel affine map, then `activation`:
    /// `act(x * scale[c] + shift[c])`.
    fn channel_affine_act(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self> {
        fallback_channel_affine_act::<Self>(x, scale, shift, activation)
    }

    /// Burn's `float_reshape` for a tensor the crate knows to be dense and row-major (the
    /// channels-last path views `[N, H, W, C]` as `[N·H·W, C, 1, 1]` around each op).
    /// CPU backends override it with a reshape that never copies: burn-ndarray 0.21's
    /// copies every reshaped tensor (`to_shape(..).into_shared()`).
    fn float_reshape_dense(tensor: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        Self::float_reshape(tensor, shape)
    }
}

/// [`NormActBackend::float_reshape_dense`] on a tensor: `tensor` (dense, row-major) with
/// the same elements in `shape`.
pub fn reshape_dense<B: NormActBackend, const D: usize, const D2: usize>(
    tensor: Tensor<B, D>,
    shape: [usize; D2],
) -> Tensor<B, D2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::float_reshape_dense(
        tensor.into_primitive().tensor(),
        Shape::new(shape),
    )))
}

/// [`NormActBackend::batch_norm_act`] with Burn's tensor ops.
pub fn fallback_batch_norm_act<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    activation: Activation,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let mean = channel_sums(x.clone()) / count;
    let centered = x - mean.clone().reshape([1, c, 1, 1]);
    let var = channel_sums(centered.clone().square()) / count;
    let scale = float::<B, 1>(gamma) / (var.clone() + epsilon).sqrt();
    let z = centered * scale.reshape([1, c, 1, 1]) + float::<B, 1>(beta).reshape([1, c, 1, 1]);
    (prim(activation.forward(z)), prim(mean), prim(var))
}

/// Per-channel sums of an NCHW tensor: `[N, C, H, W]` → `[C]`.
fn channel_sums<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, c, h, w] = t.dims();
    t.swap_dims(0, 1)
        .reshape([c, n * h * w])
        .sum_dim(1)
        .reshape([c])
}

/// [`NormActBackend::batch_norm_act_backward`] with Burn's tensor ops.
#[allow(clippy::too_many_arguments)]
pub fn fallback_batch_norm_act_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    epsilon: f64,
    activation: Activation,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let count = (n * h * w) as f64;
    let channel = |t: Tensor<B, 1>| t.reshape([1, c, 1, 1]);
    let gamma = float::<B, 1>(gamma);
    let invstd = (float::<B, 1>(var) + epsilon).sqrt().recip();
    let xhat = (x - channel(float(mean))) * channel(invstd.clone());
    let z = xhat.clone() * channel(gamma.clone()) + channel(float(beta));
    let dz = float::<B, 4>(output_grad) * activation.derivative(z);
    let dbeta = channel_sums(dz.clone());
    let dgamma = channel_sums(dz.clone() * xhat.clone());
    let dx = (dz - channel(dbeta.clone() / count) - xhat * channel(dgamma.clone() / count))
        * channel(gamma * invstd);
    (prim(dx), prim(dgamma), prim(dbeta))
}

/// [`NormActBackend::channel_affine_act`] with Burn's tensor ops.
pub fn fallback_channel_affine_act<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    activation: Activation,
) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let c = x.dims()[1];
    let z =
        x * float::<B, 1>(scale).reshape([1, c, 1, 1]) + float::<B, 1>(shift).reshape([1, c, 1, 1]);
    prim(activation.forward(z))
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}
