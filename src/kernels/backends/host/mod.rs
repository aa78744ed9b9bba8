//! The CPU backend family: glue between CPU backends' tensor primitives and the slice
//! kernels in [`cpu`](crate::kernels::cpu).
//!
//! A backend implements [`HostTensors`] (borrow a dense `f32` view, build a tensor from a
//! `Vec`), and [`impl_depthwise_on_host!`] turns that into a `DepthwiseBackend` impl.
//! Tensors that are not `f32` go to the [`fallback`](crate::kernels::fallback) path.

use burn::tensor::TensorMetadata;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;

use crate::kernels::cpu::norm_act::{self as norm_act_cpu, Planes};
use crate::kernels::cpu::pointwise::{self as pointwise_cpu, PointwiseShape};
use crate::kernels::pointwise::{
    fallback_forward as fallback_pointwise_forward,
    fallback_weight_backward as fallback_pointwise_weight_backward,
    fallback_x_backward as fallback_pointwise_x_backward,
};
use crate::kernels::{
    Activation, DepthwiseBackend, DepthwiseGrads, DepthwiseOptions, DepthwiseShape, Layout,
    NormActBackend, PointwiseBackend, WantedGrads, cpu, fallback, fallback_batch_norm_act,
    fallback_batch_norm_act_backward, fallback_channel_affine_act, primitive_dims,
};

#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "ndarray")]
mod ndarray;

/// Dense host access to a CPU backend's float tensors.
pub(crate) trait HostTensors: Backend {
    /// Calls `f` with the tensor's elements in row-major order, or returns `None` when the
    /// tensor is not `f32`. Copies only when the tensor is a non-contiguous view.
    fn with_f32<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> Option<R>;

    /// A float tensor of the given shape owning `data` (row-major).
    fn from_f32<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FloatTensor<Self>;

    /// `tensor` (dense, row-major) in `shape`; Burn's reshape unless a backend has a
    /// cheaper one.
    fn reshape_dense(tensor: FloatTensor<Self>, shape: burn::tensor::Shape) -> FloatTensor<Self> {
        Self::float_reshape(tensor, shape)
    }

    /// A rank-1 float tensor owning `data`.
    fn from_f32_vec(data: Vec<f32>) -> FloatTensor<Self> {
        let len = data.len();
        Self::from_f32(data, [len])
    }
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

/// [`geometry`] of a channels-last input `[N, H, W, C]`.
fn geometry_nhwc<B: Backend>(
    x: &FloatTensor<B>,
    weight: &FloatTensor<B>,
    options: DepthwiseOptions,
) -> DepthwiseShape {
    let [n, h, w, c] = primitive_dims::<B>(x);
    DepthwiseShape::new([n, c, h, w], primitive_dims::<B>(weight), options)
        .expect("depthwise shapes are checked by depthwise_conv2d_nhwc before reaching a backend")
}

fn nhwc([n, c, h, w]: [usize; 4]) -> [usize; 4] {
    [n, h, w, c]
}

/// Runs a forward `kernel(x, weight, bias, out)` on the `f32` elements of its operands
/// into a new `len`-element output; `None` when one of them is not `f32`.
///
/// # Safety
/// `kernel` must write every element of `out` (see [`cpu::uninit_vec`]).
unsafe fn forward_into<B: HostTensors>(
    x: &FloatTensor<B>,
    weight: &FloatTensor<B>,
    bias: &Option<FloatTensor<B>>,
    len: usize,
    kernel: impl FnOnce(&[f32], &[f32], Option<&[f32]>, &mut [std::mem::MaybeUninit<f32>]),
) -> Option<Vec<f32>> {
    let bias_values = match bias {
        Some(b) => Some(small::<B>(b)?),
        None => None,
    };
    B::with_f32(x, |xs| {
        B::with_f32(weight, |ws| {
            // SAFETY: the caller's `kernel` writes every element.
            unsafe { cpu::uninit_vec(len, |out| kernel(xs, ws, bias_values.as_deref(), out)) }
        })
    })
    .flatten()
}

pub(crate) fn forward_nhwc<B: HostTensors + DepthwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
    activation: Activation,
) -> FloatTensor<B> {
    let s = geometry_nhwc::<B>(&x, &weight, options);
    let shape = nhwc(s.output_shape());
    // SAFETY: the NHWC forward writes every element of its output.
    let out = unsafe {
        forward_into::<B>(
            &x,
            &weight,
            &bias,
            shape.iter().product(),
            |xs, ws, bs, out| cpu::nhwc::forward(&s, xs, ws, bs, activation, out),
        )
    };
    match out {
        Some(out) => B::from_f32(out, shape),
        None => {
            let y = fallback::nhwc_forward::<B>(x, weight, bias, options);
            crate::kernels::apply_activation::<B>(y, activation)
        }
    }
}

/// The geometry of a dense conv of `x` (in `input_layout`) by `weight`, or `None` when
/// the shapes do not fit (Burn's `conv2d`, which the fallbacks call, then names the
/// mismatch).
fn dense_geometry<B: Backend>(
    x: &FloatTensor<B>,
    weight: &FloatTensor<B>,
    options: DepthwiseOptions,
    input_layout: Layout,
) -> Option<cpu::conv::DenseConvShape> {
    let [batch, cin, h, w] = match input_layout {
        Layout::ChannelsFirst => primitive_dims::<B>(x),
        Layout::ChannelsLast => {
            let [n, h, w, c] = primitive_dims::<B>(x);
            [n, c, h, w]
        }
    };
    let [cout, weight_in, kh, kw] = primitive_dims::<B>(weight);
    let output = options.output_size([h, w], [kh, kw])?;
    (weight_in == cin).then_some(cpu::conv::DenseConvShape {
        batch,
        channels: [cin, cout],
        input: [h, w],
        kernel: [kh, kw],
        output,
        options,
        input_layout,
    })
}

/// [`DepthwiseBackend::conv2d_nchw_to_nhwc`] and [`DepthwiseBackend::conv2d_nhwc`] on the
/// CPU kernel: im2col GEMMs into channels-last rows (`f32`); Burn's `conv2d` otherwise.
pub(crate) fn dense_forward<B: HostTensors>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
    input_layout: Layout,
) -> FloatTensor<B> {
    let fallback = |x, weight, bias| match input_layout {
        Layout::ChannelsFirst => fallback::conv2d_nchw_to_nhwc::<B>(x, weight, bias, options),
        Layout::ChannelsLast => fallback::conv2d_nhwc::<B>(x, weight, bias, options),
    };
    let Some(s) = dense_geometry::<B>(&x, &weight, options, input_layout) else {
        return fallback(x, weight, bias);
    };
    let shape = [s.batch, s.output[0], s.output[1], s.channels[1]];
    // SAFETY: the dense forward writes every element of its output.
    let out = unsafe {
        forward_into::<B>(
            &x,
            &weight,
            &bias,
            shape.iter().product(),
            |xs, ws, bs, out| cpu::conv::forward_nhwc(&s, xs, ws, bs, out),
        )
    };
    match out {
        Some(out) => B::from_f32(out, shape),
        None => fallback(x, weight, bias),
    }
}

/// [`DepthwiseBackend::conv2d_nhwc_backward`] on the CPU kernel (`f32`).
pub(crate) fn dense_backward_nhwc<B: HostTensors>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
    wanted: WantedGrads,
) -> DepthwiseGrads<B> {
    let Some(s) = dense_geometry::<B>(&x, &weight, options, Layout::ChannelsLast) else {
        return fallback::conv2d_nhwc_backward::<B>(x, weight, output_grad, options, wanted);
    };
    let [cin, cout] = s.channels;
    let x_shape = [s.batch, s.input[0], s.input[1], cin];
    let weight_shape = [cout, cin, s.kernel[0], s.kernel[1]];
    let mut x_grad = wanted.x.then(|| vec![0.0f32; x_shape.iter().product()]);
    let mut weight_grad = wanted
        .weight
        .then(|| vec![0.0f32; weight_shape.iter().product()]);
    let mut bias_grad = wanted.bias.then(|| vec![0.0f32; cout]);
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&weight, |ws| {
            B::with_f32(&output_grad, |gs| {
                let grads = cpu::conv::DenseGradients {
                    x: x_grad.as_deref_mut(),
                    weight: weight_grad.as_deref_mut(),
                    bias: bias_grad.as_deref_mut(),
                };
                cpu::conv::backward_nhwc(&s, xs, ws, gs, grads)
            })
        })
    });
    match done.flatten().flatten() {
        Some(()) => DepthwiseGrads {
            x: x_grad.map(|g| B::from_f32(g, x_shape)),
            weight: weight_grad.map(|g| B::from_f32(g, weight_shape)),
            bias: bias_grad.map(B::from_f32_vec),
        },
        None => fallback::conv2d_nhwc_backward::<B>(x, weight, output_grad, options, wanted),
    }
}

pub(crate) fn x_backward_nhwc<B: HostTensors + DepthwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let s = geometry_nhwc::<B>(&x, &weight, options);
    let shape = [s.batch, s.input[0], s.input[1], s.channels];
    let grad = B::with_f32(&weight, |ws| {
        B::with_f32(&output_grad, |gs| {
            // SAFETY: the NHWC input gradient writes every element of its output.
            unsafe {
                cpu::uninit_vec(shape.iter().product(), |grad| {
                    cpu::nhwc::x_backward(&s, ws, gs, grad)
                })
            }
        })
    });
    match grad.flatten() {
        Some(grad) => B::from_f32(grad, shape),
        None => fallback::nhwc_x_backward::<B>(x, weight, output_grad, options),
    }
}

pub(crate) fn weight_backward_nhwc<B: HostTensors + DepthwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
) -> FloatTensor<B> {
    let s = geometry_nhwc::<B>(&x, &weight, options);
    let shape = s.weight_shape();
    let mut grad = vec![0.0f32; shape.iter().product()];
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&output_grad, |gs| {
            cpu::nhwc::weight_backward(&s, xs, gs, &mut grad)
        })
    });
    match done.flatten() {
        Some(()) => B::from_f32(grad, shape),
        None => fallback::nhwc_weight_backward::<B>(x, weight, output_grad, options),
    }
}

pub(crate) fn bias_backward_nhwc<B: HostTensors + DepthwiseBackend>(
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let [n, oh, _, oc] = primitive_dims::<B>(&output_grad);
    let mut grad = vec![0.0f32; oc];
    let done = B::with_f32(&output_grad, |gs| {
        cpu::nhwc::bias_backward(n * oh, gs, &mut grad)
    });
    match done {
        Some(()) => B::from_f32_vec(grad),
        None => fallback::nhwc_bias_backward::<B>(output_grad),
    }
}

/// [`DepthwiseBackend::depthwise_conv2d_nhwc_backward`] on the one-pass CPU kernel.
pub(crate) fn backward_nhwc<B: HostTensors + DepthwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    options: DepthwiseOptions,
    wanted: WantedGrads,
) -> DepthwiseGrads<B> {
    let s = geometry_nhwc::<B>(&x, &weight, options);
    let x_shape = [s.batch, s.input[0], s.input[1], s.channels];
    let weight_shape = s.weight_shape();
    let mut x_grad = wanted
        .x
        .then(|| Vec::with_capacity(x_shape.iter().product()));
    let mut weight_grad = wanted
        .weight
        .then(|| vec![0.0f32; weight_shape.iter().product()]);
    let mut bias_grad = wanted.bias.then(|| vec![0.0f32; s.out_channels()]);
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&weight, |ws| {
            B::with_f32(&output_grad, |gs| {
                let grads = cpu::nhwc::Gradients {
                    x: x_grad
                        .as_mut()
                        .map(|g| &mut g.spare_capacity_mut()[..x_shape.iter().product()]),
                    weight: weight_grad.as_deref_mut(),
                    bias: bias_grad.as_deref_mut(),
                };
                cpu::nhwc::backward(&s, xs, ws, gs, grads)
            })
        })
    });
    match done.flatten().flatten() {
        Some(()) => {
            if let Some(g) = x_grad.as_mut() {
                // SAFETY: `cpu::nhwc::backward` wrote every element of the input gradient.
                unsafe { g.set_len(x_shape.iter().product()) };
            }
            DepthwiseGrads {
                x: x_grad.map(|g| B::from_f32(g, x_shape)),
                weight: weight_grad.map(|g| B::from_f32(g, weight_shape)),
                bias: bias_grad.map(B::from_f32_vec),
            }
        }
        None => fallback::nhwc_backward::<B>(x, weight, output_grad, options, wanted),
    }
}

fn pointwise_shape<B: Backend>(x: &FloatTensor<B>, out_channels: usize) -> PointwiseShape {
    let [batch, in_channels, h, w] = primitive_dims::<B>(x);
    PointwiseShape {
        batch,
        channels: [in_channels, out_channels],
        pixels: h * w,
    }
}

fn weight_dims<B: Backend>(weight: &FloatTensor<B>) -> [usize; 2] {
    weight.shape().dims::<2>()
}

pub(crate) fn pointwise_forward<B: HostTensors + PointwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
) -> FloatTensor<B> {
    let [cout, _] = weight_dims::<B>(&weight);
    let s = pointwise_shape::<B>(&x, cout);
    let [n, _, h, w] = primitive_dims::<B>(&x);
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&weight, |ws| {
            // SAFETY: the pointwise forward writes every element of its output.
            unsafe {
                cpu::uninit_vec(n * cout * s.pixels, |out| {
                    pointwise_cpu::forward(s, xs, ws, out)
                })
            }
        })
    });
    match done.flatten() {
        Some(out) => B::from_f32(out, [n, cout, h, w]),
        None => fallback_pointwise_forward::<B>(x, weight),
    }
}

pub(crate) fn pointwise_x_backward<B: HostTensors + PointwiseBackend>(
    weight: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let [cout, cin] = weight_dims::<B>(&weight);
    let [n, _, h, w] = primitive_dims::<B>(&output_grad);
    let s = PointwiseShape {
        batch: n,
        channels: [cin, cout],
        pixels: h * w,
    };
    let done = B::with_f32(&weight, |ws| {
        B::with_f32(&output_grad, |gs| {
            // SAFETY: the pointwise input gradient writes every element of its output.
            unsafe {
                cpu::uninit_vec(n * cin * s.pixels, |grad| {
                    pointwise_cpu::x_backward(s, ws, gs, grad)
                })
            }
        })
    });
    match done.flatten() {
        Some(grad) => B::from_f32(grad, [n, cin, h, w]),
        None => fallback_pointwise_x_backward::<B>(weight, output_grad),
    }
}

pub(crate) fn pointwise_weight_backward<B: HostTensors + PointwiseBackend>(
    x: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let cout = primitive_dims::<B>(&output_grad)[1];
    let s = pointwise_shape::<B>(&x, cout);
    let mut grad = vec![0.0f32; cout * s.channels[0]];
    let done = B::with_f32(&x, |xs| {
        B::with_f32(&output_grad, |gs| {
            pointwise_cpu::weight_backward(s, xs, gs, &mut grad)
        })
    });
    match done.flatten() {
        Some(()) => B::from_f32(grad, [cout, s.channels[0]]),
        None => fallback_pointwise_weight_backward::<B>(x, output_grad),
    }
}

fn planes<B: Backend>(x: &FloatTensor<B>) -> Planes {
    let [batch, channels, h, w] = primitive_dims::<B>(x);
    Planes {
        batch,
        channels,
        plane: h * w,
    }
}

/// A small tensor's values, or `None` when not `f32`.
fn small<B: HostTensors>(t: &FloatTensor<B>) -> Option<Vec<f32>> {
    B::with_f32(t, |v| v.to_vec())
}

pub(crate) fn batch_norm_act<B: HostTensors + NormActBackend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    activation: Activation,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let p = planes::<B>(&x);
    let (Some(g), Some(b)) = (small::<B>(&gamma), small::<B>(&beta)) else {
        return fallback_batch_norm_act::<B>(x, gamma, beta, epsilon, activation);
    };
    let mut mean = vec![0.0f32; p.channels];
    let mut var = vec![0.0f32; p.channels];
    let done = B::with_f32(&x, |xs| {
        norm_act_cpu::channel_stats(p, xs, &mut mean, &mut var);
        let invstd = norm_act_cpu::inverse_std(&var, epsilon);
        // SAFETY: `normalize_act` writes every element of its output.
        unsafe {
            cpu::uninit_vec(p.batch * p.channels * p.plane, |out| {
                norm_act_cpu::normalize_act(p, xs, &mean, &invstd, &g, &b, activation, out)
            })
        }
    });
    match done {
        Some(out) => (
            B::from_f32(out, primitive_dims::<B>(&x)),
            B::from_f32_vec(mean),
            B::from_f32_vec(var),
        ),
        None => fallback_batch_norm_act::<B>(x, gamma, beta, epsilon, activation),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_act_backward<B: HostTensors + NormActBackend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    epsilon: f64,
    activation: Activation,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let p = planes::<B>(&x);
    let vectors = (
        small::<B>(&gamma),
        small::<B>(&beta),
        small::<B>(&mean),
        small::<B>(&var),
    );
    if let (Some(g), Some(b), Some(m), Some(v)) = vectors {
        let done = B::with_f32(&x, |xs| {
            B::with_f32(&output_grad, |dy| {
                let mut sums = None;
                // SAFETY: `backward` writes every element of the input gradient.
                let dx = unsafe {
                    cpu::uninit_vec(p.batch * p.channels * p.plane, |dx| {
                        sums = Some(norm_act_cpu::backward(
                            p, xs, &g, &b, &m, &v, epsilon, activation, dy, dx,
                        ));
                    })
                };
                let (dgamma, dbeta) = sums.expect("backward ran");
                (dx, dgamma, dbeta)
            })
        });
        if let Some(Some((dx, dgamma, dbeta))) = done {
            return (
                B::from_f32(dx, primitive_dims::<B>(&x)),
                B::from_f32_vec(dgamma),
                B::from_f32_vec(dbeta),
            );
        }
    }
    fallback_batch_norm_act_backward::<B>(
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

pub(crate) fn channel_affine_act<B: HostTensors + NormActBackend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    activation: Activation,
) -> FloatTensor<B> {
    let p = planes::<B>(&x);
    if let (Some(a), Some(b)) = (small::<B>(&scale), small::<B>(&shift)) {
        let done = B::with_f32(&x, |xs| {
            // SAFETY: `affine_act` writes every element of its output.
            unsafe {
                cpu::uninit_vec(p.batch * p.channels * p.plane, |out| {
                    norm_act_cpu::affine_act(p, xs, &a, &b, activation, out)
                })
            }
        });
        if let Some(out) = done {
            return B::from_f32(out, primitive_dims::<B>(&x));
        }
    }
    fallback_channel_affine_act::<B>(x, scale, shift, activation)
}

/// Implements `DepthwiseBackend`, `PointwiseBackend` and `NormActBackend` for a
/// [`HostTensors`] backend with the CPU kernels:
/// `impl_depthwise_on_host!(Backend)` or
/// `impl_depthwise_on_host!([E: Bound, ..] Backend<E, ..> where ..)`.
macro_rules! impl_depthwise_on_host {
    ([$($generics:tt)*] $backend:ty where $($bounds:tt)*) => {
        impl<$($generics)*> $crate::kernels::DepthwiseBackend for $backend where $($bounds)* {
            fn depthwise_conv2d(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                bias: Option<FloatTensor<Self>>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::forward::<Self>(x, weight, bias, options)
            }

            fn depthwise_conv2d_x_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::x_backward::<Self>(x, weight, output_grad, options)
            }

            fn depthwise_conv2d_weight_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::weight_backward::<Self>(x, weight, output_grad, options)
            }

            fn depthwise_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
                $crate::kernels::backends::host::bias_backward::<Self>(output_grad)
            }

            fn depthwise_conv2d_nhwc(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                bias: Option<FloatTensor<Self>>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::forward_nhwc::<Self>(
                    x,
                    weight,
                    bias,
                    options,
                    $crate::kernels::Activation::Identity,
                )
            }

            fn depthwise_conv2d_nhwc_act(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                bias: Option<FloatTensor<Self>>,
                options: $crate::kernels::DepthwiseOptions,
                activation: $crate::kernels::Activation,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::forward_nhwc::<Self>(
                    x, weight, bias, options, activation,
                )
            }

            fn conv2d_nchw_to_nhwc(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                bias: Option<FloatTensor<Self>>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::dense_forward::<Self>(
                    x, weight, bias, options, $crate::kernels::Layout::ChannelsFirst,
                )
            }

            fn conv2d_nhwc(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                bias: Option<FloatTensor<Self>>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::dense_forward::<Self>(
                    x, weight, bias, options, $crate::kernels::Layout::ChannelsLast,
                )
            }

            fn conv2d_nhwc_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
                wanted: $crate::kernels::WantedGrads,
            ) -> $crate::kernels::DepthwiseGrads<Self> {
                $crate::kernels::backends::host::dense_backward_nhwc::<Self>(
                    x, weight, output_grad, options, wanted,
                )
            }

            fn depthwise_conv2d_nhwc_x_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::x_backward_nhwc::<Self>(x, weight, output_grad, options)
            }

            fn depthwise_conv2d_nhwc_weight_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::weight_backward_nhwc::<Self>(x, weight, output_grad, options)
            }

            fn depthwise_conv2d_nhwc_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
                $crate::kernels::backends::host::bias_backward_nhwc::<Self>(output_grad)
            }

            fn depthwise_conv2d_nhwc_backward(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: $crate::kernels::DepthwiseOptions,
                wanted: $crate::kernels::WantedGrads,
            ) -> $crate::kernels::DepthwiseGrads<Self> {
                $crate::kernels::backends::host::backward_nhwc::<Self>(
                    x, weight, output_grad, options, wanted,
                )
            }

            fn preferred_layout() -> $crate::kernels::Layout {
                $crate::kernels::Layout::ChannelsLast
            }
        }

        impl<$($generics)*> $crate::kernels::PointwiseBackend for $backend where $($bounds)* {
            fn pointwise_conv2d(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::pointwise_forward::<Self>(x, weight)
            }

            fn pointwise_conv2d_x_backward(
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::pointwise_x_backward::<Self>(weight, output_grad)
            }

            fn pointwise_conv2d_weight_backward(
                x: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::pointwise_weight_backward::<Self>(x, output_grad)
            }
        }

        impl<$($generics)*> $crate::kernels::NormActBackend for $backend where $($bounds)* {
            fn batch_norm_act(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                epsilon: f64,
                activation: $crate::kernels::Activation,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                $crate::kernels::backends::host::batch_norm_act::<Self>(x, gamma, beta, epsilon, activation)
            }

            fn batch_norm_act_backward(
                x: FloatTensor<Self>,
                gamma: FloatTensor<Self>,
                beta: FloatTensor<Self>,
                mean: FloatTensor<Self>,
                var: FloatTensor<Self>,
                epsilon: f64,
                activation: $crate::kernels::Activation,
                output_grad: FloatTensor<Self>,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
                $crate::kernels::backends::host::batch_norm_act_backward::<Self>(
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

            fn channel_affine_act(
                x: FloatTensor<Self>,
                scale: FloatTensor<Self>,
                shift: FloatTensor<Self>,
                activation: $crate::kernels::Activation,
            ) -> FloatTensor<Self> {
                $crate::kernels::backends::host::channel_affine_act::<Self>(x, scale, shift, activation)
            }

            fn float_reshape_dense(
                tensor: FloatTensor<Self>,
                shape: burn::tensor::Shape,
            ) -> FloatTensor<Self> {
                <Self as $crate::kernels::backends::host::HostTensors>::reshape_dense(tensor, shape)
            }
        }
    };
    ($backend:ty) => {
        $crate::kernels::backends::host::impl_depthwise_on_host!([] $backend where);
    };
}
pub(crate) use impl_depthwise_on_host;

#[cfg(test)]
mod tests {
    use burn::tensor::{Shape, Tensor, TensorData};

    use super::*;

    /// Dense reads and reshapes of strided views (permuted, transposed, flipped, sliced)
    /// equal Burn's own row-major read-back.
    fn strided_views_read_back_in_row_major_order<B: HostTensors>() {
        let device = Default::default();
        let values: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32).collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(values, [2, 3, 4, 5]), &device);
        let views = [
            x.clone().permute([0, 2, 3, 1]),
            x.clone().swap_dims(2, 3),
            x.clone().flip([3]),
            x.clone().slice([0..2, 1..3, 0..4, 1..4]),
            x.clone().permute([3, 1, 0, 2]).flip([1]),
            x.clone()
                .permute([0, 2, 3, 1])
                .slice([0..2, 1..3, 0..5, 0..2]),
        ];
        for view in views {
            let expected = view.to_data().to_vec::<f32>().unwrap();
            let primitive = view.into_primitive().tensor();
            let got = B::with_f32(&primitive, |s| s.to_vec()).unwrap();
            assert_eq!(got, expected);
            let flat = B::reshape_dense(primitive, Shape::from([expected.len()]));
            let flat = Tensor::<B, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(flat));
            assert_eq!(flat.to_data().to_vec::<f32>().unwrap(), expected);
        }
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_strided_views_read_back_in_row_major_order() {
        strided_views_read_back_in_row_major_order::<burn::backend::NdArray>();
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_strided_views_read_back_in_row_major_order() {
        strided_views_read_back_in_row_major_order::<burn::backend::Flex>();
    }
}
