//! `NormActBackend` for `Autodiff<B>`: one backward node per fused BatchNorm + activation
//! call, which calls the inner backend's fused backward.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};

use crate::kernels::{Activation, NormActBackend};

/// The forward's input, gamma, beta, batch mean and variance, epsilon and activation.
type SavedState<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    f64,
    Activation,
);

#[derive(Debug)]
struct BatchNormActBackward;

impl<B: NormActBackend> Backward<B, 3> for BatchNormActBackward {
    type State = SavedState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, mean, var, epsilon, activation) = ops.state;
        let (dx, dgamma, dbeta) =
            B::batch_norm_act_backward(x, gamma, beta, mean, var, epsilon, activation, output_grad);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The backward of [`NormActBackend::float_reshape_dense`]: the gradient reshaped back.
#[derive(Debug)]
struct ReshapeDenseBackward;

impl<B: NormActBackend> Backward<B, 1> for ReshapeDenseBackward {
    /// The input's shape.
    type State = Shape;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::float_reshape_dense(output_grad, ops.state));
        }
    }
}

impl<B: NormActBackend, C: CheckpointStrategy> NormActBackend for Autodiff<B, C> {
    fn float_reshape_dense(tensor: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        let input_shape = tensor.primitive.shape();
        let output = B::float_reshape_dense(tensor.primitive, shape);
        match ReshapeDenseBackward
            .prepare::<C>([tensor.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(input_shape, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn batch_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNormActBackward
            .prepare::<C>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
            .compute_bound()
            .stateful();
        let (output, mean, var) = B::batch_norm_act(
            x.primitive.clone(),
            gamma.primitive.clone(),
            beta.primitive.clone(),
            epsilon,
            activation,
        );
        let output = match prep {
            OpsKind::Tracked(prep) => prep.finish(
                (
                    x.primitive,
                    gamma.primitive,
                    beta.primitive,
                    mean.clone(),
                    var.clone(),
                    epsilon,
                    activation,
                ),
                output,
            ),
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        // The statistics feed the running averages only: no gradient flows through them.
        (output, Self::from_inner(mean), Self::from_inner(var))
    }

    // Reached only through double differentiation, which this crate does not support:
    // runs untracked on the inner backend's values.
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
        let (dx, dgamma, dbeta) = B::batch_norm_act_backward(
            x.primitive,
            gamma.primitive,
            beta.primitive,
            mean.primitive,
            var.primitive,
            epsilon,
            activation,
            output_grad.primitive,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dgamma),
            Self::from_inner(dbeta),
        )
    }
}
