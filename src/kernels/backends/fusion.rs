//! The fusion family: the kernel traits for `Fusion<B>` over any fusion-capable backend
//! (Burn's default-feature `Wgpu`, `Cuda`, `Rocm`, `Metal`, `Vulkan` and CubeCL `Cpu` are
//! `Fusion<CubeBackend<..>>`).
//!
//! Each op is recorded in the fusion stream as one custom operation that runs the inner
//! backend's op on the materialised inputs (the pattern of Burn's `burn-vision`). The
//! fuser treats it as a boundary: element-wise work around it still fuses.

use std::marker::PhantomData;

use burn::tensor::Shape;
use burn::tensor::ops::FloatTensor;
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

use crate::kernels::{
    Activation, DepthwiseBackend, DepthwiseOptions, DepthwiseShape, NormActBackend,
    PointwiseBackend, primitive_dims,
};

/// One custom operation: `run` maps the inner backend's input tensors to its outputs.
struct CustomOp<B, F, const N: usize, const M: usize> {
    desc: CustomOpIr,
    run: F,
    backend: PhantomData<fn() -> B>,
}

impl<B, F, const N: usize, const M: usize> std::fmt::Debug for CustomOp<B, F, N, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomOp")
            .field("desc", &self.desc)
            .finish()
    }
}

impl<B, F, const N: usize, const M: usize> Operation<B::FusionRuntime> for CustomOp<B, F, N, M>
where
    B: FusionBackend,
    F: Fn([FloatTensor<B>; N]) -> [FloatTensor<B>; M] + Send + Sync,
{
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let (inputs, outputs) = self.desc.as_fixed::<N, M>();
        let inputs = inputs.each_ref().map(|t| handles.get_float_tensor::<B>(t));
        for (ir, tensor) in outputs.iter().zip((self.run)(inputs)) {
            handles.register_float_tensor::<B>(&ir.id, tensor);
        }
    }
}

/// Records `run` as one operation of `inputs`' stream, with outputs of the given shapes
/// (and the first input's dtype).
fn custom_op<B, const N: usize, const M: usize>(
    name: &'static str,
    inputs: [FloatTensor<Fusion<B>>; N],
    output_shapes: [Shape; M],
    run: impl Fn([FloatTensor<B>; N]) -> [FloatTensor<B>; M] + Send + Sync + 'static,
) -> [FloatTensor<Fusion<B>>; M]
where
    B: FusionBackend,
{
    let client = inputs[0].client.clone();
    let dtype = inputs[0].dtype;
    let streams = OperationStreams::with_inputs(&inputs);
    let outputs: Vec<TensorIr> = output_shapes
        .into_iter()
        .map(|shape| TensorIr::uninit(client.create_empty_handle(), shape, dtype))
        .collect();
    let inputs: Vec<TensorIr> = inputs.into_iter().map(|t| t.into_ir()).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    let op = CustomOp::<B, _, N, M> {
        desc: desc.clone(),
        run,
        backend: PhantomData,
    };
    let outputs = client.register(streams, OperationIr::Custom(desc), op);
    outputs
        .try_into()
        .unwrap_or_else(|_| unreachable!("one fusion tensor per declared output"))
}

/// The shape of a per-channel vector.
fn vector(len: usize) -> Shape {
    Shape::new([len])
}

impl<B: FusionBackend + DepthwiseBackend> DepthwiseBackend for Fusion<B> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let geometry = DepthwiseShape::new(
            primitive_dims::<Self>(&x),
            primitive_dims::<Self>(&weight),
            options,
        )
        .expect("depthwise shapes are checked by depthwise_conv2d before reaching a backend");
        let shape = Shape::new(geometry.output_shape());
        let [out] = match bias {
            Some(bias) => custom_op::<B, 3, 1>(
                "dwconv.depthwise_conv2d",
                [x, weight, bias],
                [shape.clone()],
                move |[x, w, b]| [B::depthwise_conv2d(x, w, Some(b), options)],
            ),
            None => custom_op::<B, 2, 1>(
                "dwconv.depthwise_conv2d",
                [x, weight],
                [shape],
                move |[x, w]| [B::depthwise_conv2d(x, w, None, options)],
            ),
        };
        out
    }

    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let shape = Shape::new(primitive_dims::<Self>(&x));
        let [dx] = custom_op::<B, 3, 1>(
            "dwconv.depthwise_conv2d_x_backward",
            [x, weight, output_grad],
            [shape],
            move |[x, w, g]| [B::depthwise_conv2d_x_backward(x, w, g, options)],
        );
        dx
    }

    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let shape = Shape::new(primitive_dims::<Self>(&weight));
        let [dw] = custom_op::<B, 3, 1>(
            "dwconv.depthwise_conv2d_weight_backward",
            [x, weight, output_grad],
            [shape],
            move |[x, w, g]| [B::depthwise_conv2d_weight_backward(x, w, g, options)],
        );
        dw
    }

    fn depthwise_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let channels = primitive_dims::<Self>(&output_grad)[1];
        let [db] = custom_op::<B, 1, 1>(
            "dwconv.depthwise_conv2d_bias_backward",
            [output_grad],
            [vector(channels)],
            |[g]| [B::depthwise_conv2d_bias_backward(g)],
        );
        db
    }
}

impl<B: FusionBackend + PointwiseBackend> PointwiseBackend for Fusion<B> {
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, _, h, w] = primitive_dims::<Self>(&x);
        let out = weight.shape[0];
        let shape = Shape::new([n, out, h, w]);
        let [y] =
            custom_op::<B, 2, 1>("dwconv.pointwise_conv2d", [x, weight], [shape], |[x, w]| {
                [B::pointwise_conv2d(x, w)]
            });
        y
    }

    fn pointwise_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [n, _, h, w] = primitive_dims::<Self>(&output_grad);
        let channels = weight.shape[1];
        let shape = Shape::new([n, channels, h, w]);
        let [dx] = custom_op::<B, 2, 1>(
            "dwconv.pointwise_conv2d_x_backward",
            [weight, output_grad],
            [shape],
            |[w, g]| [B::pointwise_conv2d_x_backward(w, g)],
        );
        dx
    }

    fn pointwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let channels = primitive_dims::<Self>(&x)[1];
        let out = primitive_dims::<Self>(&output_grad)[1];
        let [dw] = custom_op::<B, 2, 1>(
            "dwconv.pointwise_conv2d_weight_backward",
            [x, output_grad],
            [Shape::new([out, channels])],
            |[x, g]| [B::pointwise_conv2d_weight_backward(x, g)],
        );
        dw
    }
}

impl<B: FusionBackend + NormActBackend> NormActBackend for Fusion<B> {
    fn batch_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let dims = primitive_dims::<Self>(&x);
        let [y, mean, var] = custom_op::<B, 3, 3>(
            "dwconv.batch_norm_act",
            [x, gamma, beta],
            [Shape::new(dims), vector(dims[1]), vector(dims[1])],
            move |[x, g, b]| {
                let (y, mean, var) = B::batch_norm_act(x, g, b, epsilon, activation);
                [y, mean, var]
            },
        );
        (y, mean, var)
    }

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
        let dims = primitive_dims::<Self>(&x);
        let [dx, dgamma, dbeta] = custom_op::<B, 6, 3>(
            "dwconv.batch_norm_act_backward",
            [x, gamma, beta, mean, var, output_grad],
            [Shape::new(dims), vector(dims[1]), vector(dims[1])],
            move |[x, g, b, m, v, dy]| {
                let (dx, dg, db) =
                    B::batch_norm_act_backward(x, g, b, m, v, epsilon, activation, dy);
                [dx, dg, db]
            },
        );
        (dx, dgamma, dbeta)
    }

    fn channel_affine_act(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self> {
        let shape = Shape::new(primitive_dims::<Self>(&x));
        let [y] = custom_op::<B, 3, 1>(
            "dwconv.channel_affine_act",
            [x, scale, shift],
            [shape],
            move |[x, a, b]| [B::channel_affine_act(x, a, b, activation)],
        );
        y
    }
}
