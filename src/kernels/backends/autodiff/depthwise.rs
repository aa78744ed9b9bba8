//! `DepthwiseBackend` for `Autodiff<B>`: one backward node per depthwise call that calls
//! the inner backend's backward ops (so a fast inner backend is fast in training too).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::kernels::{DepthwiseBackend, DepthwiseOptions, Layout};

/// What the backward pass needs: the forward's input and weight, the options, and
/// whether the call was channels-first or channels-last.
type SavedState<B> = (FloatTensor<B>, FloatTensor<B>, DepthwiseOptions, Layout);

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
    let (x, weight, options, layout) = state;
    let [node_x, node_weight] = parents;
    if let Some(id) = node_x {
        let (x, weight, dy) = (x.clone(), weight.clone(), output_grad.clone());
        let grad = match layout {
            Layout::ChannelsFirst => B::depthwise_conv2d_x_backward(x, weight, dy, options),
            Layout::ChannelsLast => B::depthwise_conv2d_nhwc_x_backward(x, weight, dy, options),
        };
        grads.register::<B>(*id, grad);
    }
    if let Some(id) = node_weight {
        let dy = output_grad.clone();
        let grad = match layout {
            Layout::ChannelsFirst => B::depthwise_conv2d_weight_backward(x, weight, dy, options),
            Layout::ChannelsLast => {
                B::depthwise_conv2d_nhwc_weight_backward(x, weight, dy, options)
            }
        };
        grads.register::<B>(*id, grad);
    }
}

/// The inner backend's forward in `layout`.
fn inner_forward<B: DepthwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
    layout: Layout,
) -> FloatTensor<B> {
    match layout {
        Layout::ChannelsFirst => B::depthwise_conv2d(x, weight, bias, options),
        Layout::ChannelsLast => B::depthwise_conv2d_nhwc(x, weight, bias, options),
    }
}

/// One tracked forward in `layout`: the node with or without the bias parent.
fn tracked_forward<B: DepthwiseBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
    options: DepthwiseOptions,
    layout: Layout,
) -> FloatTensor<Autodiff<B, C>> {
    match bias {
        Some(bias) => {
            let prep = DepthwiseWithBias
                .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
                .compute_bound()
                .stateful();
            let output = inner_forward::<B>(
                x.primitive.clone(),
                weight.primitive.clone(),
                Some(bias.primitive),
                options,
                layout,
            );
            match prep {
                OpsKind::Tracked(prep) => {
                    prep.finish((x.primitive, weight.primitive, options, layout), output)
                }
                OpsKind::UnTracked(prep) => prep.finish(output),
            }
        }
        None => {
            let prep = DepthwiseNoBias
                .prepare::<C>([x.node.clone(), weight.node.clone()])
                .compute_bound()
                .stateful();
            let output = inner_forward::<B>(
                x.primitive.clone(),
                weight.primitive.clone(),
                None,
                options,
                layout,
            );
            match prep {
                OpsKind::Tracked(prep) => {
                    prep.finish((x.primitive, weight.primitive, options, layout), output)
                }
                OpsKind::UnTracked(prep) => prep.finish(output),
            }
        }
    }
}

impl<B: DepthwiseBackend> Backward<B, 3> for DepthwiseWithBias {
    type State = SavedState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let layout = ops.state.3;
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
            let grad = match layout {
                Layout::ChannelsFirst => B::depthwise_conv2d_bias_backward(output_grad),
                Layout::ChannelsLast => B::depthwise_conv2d_nhwc_bias_backward(output_grad),
            };
            grads.register::<B>(node.id, grad);
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
        tracked_forward::<B, C>(x, weight, bias, options, Layout::ChannelsFirst)
    }

    fn depthwise_conv2d_nhwc(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        tracked_forward::<B, C>(x, weight, bias, options, Layout::ChannelsLast)
    }

    fn preferred_layout() -> Layout {
        B::preferred_layout()
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
