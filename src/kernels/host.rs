//! Glue between CPU backends' tensor primitives and the slice kernels in [`cpu`](super::cpu).
//!
//! A backend implements [`HostTensors`] (borrow a dense `f32` view, build a tensor from a
//! `Vec`), and [`impl_depthwise_on_host!`] turns that into a `DepthwiseBackend` impl.
//! Tensors that are not `f32` go to the [`fallback`](super::fallback) path.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;

use super::{DepthwiseOptions, DepthwiseShape, cpu, fallback, primitive_dims};

/// Dense host access to a CPU backend's float tensors.
pub(crate) trait HostTensors: Backend {
    /// Calls `f` with the tensor's elements in row-major order, or returns `None` when the
    /// tensor is not `f32`. Copies only when the tensor is a non-contiguous view.
    fn with_f32<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> Option<R>;

    /// A float tensor of the given shape owning `data` (row-major).
    fn from_f32(data: Vec<f32>, shape: [usize; 4]) -> FloatTensor<Self>;

    /// A rank-1 float tensor owning `data`.
    fn from_f32_vec(data: Vec<f32>) -> FloatTensor<Self>;
}

fn geometry<B: Backend>(
    x: &FloatTensor<B>,
    weight: &FloatTensor<B>,
    options: DepthwiseOptions,
) -> DepthwiseShape {
    DepthwiseShape::new(primitive_dims::<B>(x), primitive_dims::<B>(weight), options)
        .expect("depthwise shapes are checked by depthwise_conv2d before reaching a backend")
}

pub(crate) fn forward<B: HostTensors>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let s = geometry::<B>(&x, &weight, options);
    let shape = s.output_shape();
    let mut out = vec![0.0f32; shape.iter().product()];
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&weight, |ws| match &bias {
            Some(bias) => B::with_f32(bias, |bs| cpu::forward(&s, xs, ws, Some(bs), &mut out)),
            None => {
                cpu::forward(&s, xs, ws, None, &mut out);
                Some(())
            }
        })
    });
    match done.flatten().flatten() {
        Some(()) => B::from_f32(out, shape),
        None => fallback::forward::<B>(x, weight, bias, options),
    }
}

pub(crate) fn x_backward<B: HostTensors>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let s = geometry::<B>(&x, &weight, options);
    let shape = [s.batch, s.channels, s.input[0], s.input[1]];
    let mut grad = vec![0.0f32; shape.iter().product()];
    let done = B::with_f32(&weight, |ws| {
        B::with_f32(&output_grad, |gs| cpu::x_backward(&s, ws, gs, &mut grad))
    });
    match done.flatten() {
        Some(()) => B::from_f32(grad, shape),
        None => fallback::x_backward::<B>(x, weight, output_grad, options),
    }
}

pub(crate) fn weight_backward<B: HostTensors>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let s = geometry::<B>(&x, &weight, options);
    let shape = s.weight_shape();
    let mut grad = vec![0.0f32; shape.iter().product()];
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&output_grad, |gs| {
            cpu::weight_backward(&s, xs, gs, &mut grad)
        })
    });
    match done.flatten() {
        Some(()) => B::from_f32(grad, shape),
        None => fallback::weight_backward::<B>(x, weight, output_grad, options),
    }
}

pub(crate) fn bias_backward<B: HostTensors>(output_grad: FloatTensor<B>) -> FloatTensor<B> {
    let [n, oc, oh, ow] = primitive_dims::<B>(&output_grad);
    let mut grad = vec![0.0f32; oc];
    let done = B::with_f32(&output_grad, |gs| {
        cpu::bias_sums(n, oc, oh * ow, gs, &mut grad)
    });
    match done {
        Some(()) => B::from_f32_vec(grad),
        None => fallback::bias_backward::<B>(output_grad),
    }
}

/// Implements `DepthwiseBackend` for a [`HostTensors`] backend with the CPU kernels.
macro_rules! impl_depthwise_on_host {
    ($backend:ty) => {
        impl $crate::kernels::DepthwiseBackend for $backend {
            fn depthwise_conv2d(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                bias: Option<FloatTensor<Self>>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::host::forward::<Self>(x, weight, bias, options)
            }

            fn depthwise_conv2d_x_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::host::x_backward::<Self>(x, weight, output_grad, options)
            }

            fn depthwise_conv2d_weight_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::host::weight_backward::<Self>(x, weight, output_grad, options)
            }

            fn depthwise_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
                $crate::kernels::host::bias_backward::<Self>(output_grad)
            }
        }
    };
}
pub(crate) use impl_depthwise_on_host;
