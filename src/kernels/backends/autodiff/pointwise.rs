//! `PointwiseBackend` for `Autodiff<B>`: one backward node per pointwise call that calls
//! the inner backend's backward ops.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use crate::kernels::PointwiseBackend;

#[derive(Debug)]
struct PointwiseNode;

impl<B: PointwiseBackend> Backward<B, 2> for PointwiseNode {
    /// The forward's input and weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let (x, weight) = ops.state;
        let output_grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            let grad = B::pointwise_conv2d_x_backward(weight, output_grad.clone());
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::pointwise_conv2d_weight_backward(x, output_grad));
        }
    }
}

impl<B: PointwiseBackend, C: CheckpointStrategy> PointwiseBackend for Autodiff<B, C> {
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = PointwiseNode
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful();
        let output = B::pointwise_conv2d(x.primitive.clone(), weight.primitive.clone());
        match prep {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, weight.primitive), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    // Reached only through double differentiation, which this crate does not support:
    // untracked, on the inner backend's values.
    fn pointwise_conv2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let grad = B::pointwise_conv2d_x_backward(weight.primitive, output_grad.primitive);
        <Self as AutodiffBackend>::from_inner(grad)
    }

    fn pointwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let grad = B::pointwise_conv2d_weight_backward(x.primitive, output_grad.primitive);
        <Self as AutodiffBackend>::from_inner(grad)
    }
}
