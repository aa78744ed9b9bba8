//! `DepthwiseBackend` for `Autodiff<B>`: one backward node per depthwise call that calls
//! the inner backend's backward ops (so a fast inner backend is fast in training too).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::kernels::{DepthwiseBackend, DepthwiseOptions};

/// What the backward pass needs: the forward's input and weight, and the options.
type SavedState<B> = (FloatTensor<B>, FloatTensor<B>, DepthwiseOptions);

#[derive(Debug)]
struct DepthwiseWithBias;

#[derive(Debug)]
struct DepthwiseNoBias;

/// Registers the input and weight gradients for whichever of the two parents is tracked.
fn register_x_and_weight_grads<B: DepthwiseBackend>(
    parents: [Option<&burn::backend::autodiff::NodeId>; 2],
    state: SavedState<B>,
    output_grad: &FloatTensor<B>,
    grads: &mut Gradients,
) {
    let (x, weight, options) = state;
    let [node_x, node_weight] = parents;
    if let Some(id) = node_x {
        let grad =
            B::depthwise_conv2d_x_backward(x.clone(), weight.clone(), output_grad.clone(), options);
        grads.register::<B>(*id, grad);
    }
    if let Some(id) = node_weight {
        let grad = B::depthwise_conv2d_weight_backward(x, weight, output_grad.clone(), options);
        grads.register::<B>(*id, grad);
    }
}

impl<B: DepthwiseBackend> Backward<B, 3> for DepthwiseWithBias {
    type State = SavedState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        register_x_and_weight_grads::<B>(
            [
                node_x.as_ref().map(|n| &n.id),
                node_weight.as_ref().map(|n| &n.id),
            ],
            ops.state,
            &output_grad,
            grads,
        );
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, B::depthwise_conv2d_bias_backward(output_grad));
        }
    }
}

impl<B: DepthwiseBackend> Backward<B, 2> for DepthwiseNoBias {
    type State = SavedState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        register_x_and_weight_grads::<B>(
            [
                node_x.as_ref().map(|n| &n.id),
                node_weight.as_ref().map(|n| &n.id),
            ],
            ops.state,
            &output_grad,
            grads,
        );
    }
}

impl<B: DepthwiseBackend, C: CheckpointStrategy> DepthwiseBackend for Autodiff<B, C> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        match bias {
            Some(bias) => {
                let prep = DepthwiseWithBias
                    .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
                    .compute_bound()
                    .stateful();
                let output = B::depthwise_conv2d(
                    x.primitive.clone(),
                    weight.primitive.clone(),
                    Some(bias.primitive),
                    options,
                );
                match prep {
                    OpsKind::Tracked(prep) => {
                        prep.finish((x.primitive, weight.primitive, options), output)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(output),
                }
            }
            None => {
                let prep = DepthwiseNoBias
                    .prepare::<C>([x.node.clone(), weight.node.clone()])
                    .compute_bound()
                    .stateful();
                let output = B::depthwise_conv2d(
                    x.primitive.clone(),
                    weight.primitive.clone(),
                    None,
                    options,
                );
                match prep {
                    OpsKind::Tracked(prep) => {
                        prep.finish((x.primitive, weight.primitive, options), output)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(output),
                }
            }
        }
    }

    // The backward ops of an autodiff backend are only reached through double
    // differentiation, which this crate does not support: they run untracked on the inner
    // backend's values.
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let grad = B::depthwise_conv2d_x_backward(
            x.primitive,
            weight.primitive,
            output_grad.primitive,
            options,
        );
        <Self as burn::tensor::backend::AutodiffBackend>::from_inner(grad)
    }

    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        let grad = B::depthwise_conv2d_weight_backward(
            x.primitive,
            weight.primitive,
            output_grad.primitive,
            options,
        );
        <Self as burn::tensor::backend::AutodiffBackend>::from_inner(grad)
    }

    fn depthwise_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let grad = B::depthwise_conv2d_bias_backward(output_grad.primitive);
        <Self as burn::tensor::backend::AutodiffBackend>::from_inner(grad)
    }
}
