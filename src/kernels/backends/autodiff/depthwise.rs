//! `DepthwiseBackend` for `Autodiff<B>`: one backward node per depthwise (or dense
//! channels-last) conv call that calls the inner backend's backward ops (so a fast inner
//! backend is fast in training too).

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use crate::kernels::{DepthwiseBackend, DepthwiseGrads, DepthwiseOptions, Layout, WantedGrads};

/// Which convolution a node records.
#[derive(Clone, Copy, Debug)]
enum ConvKind {
    /// A depthwise conv in this layout.
    Depthwise(Layout),
    /// A dense (`groups = 1`) conv of channels-last maps.
    DenseChannelsLast,
}

/// What the backward pass needs: the forward's input and weight, the options, and which
/// convolution the call was.
type SavedState<B> = (FloatTensor<B>, FloatTensor<B>, DepthwiseOptions, ConvKind);

#[derive(Debug)]
struct DepthwiseWithBias;

#[derive(Debug)]
struct DepthwiseNoBias;

/// Registers the gradients of whichever parents (input, weight, bias) are tracked.
fn register_grads<B: DepthwiseBackend>(
    [node_x, node_weight, node_bias]: [Option<&NodeId>; 3],
    (x, weight, options, kind): SavedState<B>,
    output_grad: FloatTensor<B>,
    grads: &mut Gradients,
) {
    let wanted = WantedGrads {
        x: node_x.is_some(),
        weight: node_weight.is_some(),
        bias: node_bias.is_some(),
    };
    let computed = match kind {
        ConvKind::DenseChannelsLast => {
            B::conv2d_nhwc_backward(x, weight, output_grad, options, wanted)
        }
        // One call, so that the CPU kernels make one pass over the output gradient.
        ConvKind::Depthwise(Layout::ChannelsLast) => {
            B::depthwise_conv2d_nhwc_backward(x, weight, output_grad, options, wanted)
        }
        ConvKind::Depthwise(Layout::ChannelsFirst) => DepthwiseGrads::each(
            wanted,
            || {
                B::depthwise_conv2d_x_backward(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    options,
                )
            },
            || {
                B::depthwise_conv2d_weight_backward(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    options,
                )
            },
            || B::depthwise_conv2d_bias_backward(output_grad.clone()),
        ),
    };
    for (node, grad) in [
        (node_x, computed.x),
        (node_weight, computed.weight),
        (node_bias, computed.bias),
    ] {
        if let (Some(id), Some(grad)) = (node, grad) {
            grads.register::<B>(*id, grad);
        }
    }
}

/// The inner backend's forward of `kind`.
fn inner_forward<B: DepthwiseBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    options: DepthwiseOptions,
    kind: ConvKind,
) -> FloatTensor<B> {
    match kind {
        ConvKind::Depthwise(Layout::ChannelsFirst) => B::depthwise_conv2d(x, weight, bias, options),
        ConvKind::Depthwise(Layout::ChannelsLast) => {
            B::depthwise_conv2d_nhwc(x, weight, bias, options)
        }
        ConvKind::DenseChannelsLast => B::conv2d_nhwc(x, weight, bias, options),
    }
}

/// One tracked forward of `kind`: the node with or without the bias parent.
fn tracked_forward<B: DepthwiseBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
    options: DepthwiseOptions,
    kind: ConvKind,
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
                kind,
            );
            match prep {
                OpsKind::Tracked(prep) => {
                    prep.finish((x.primitive, weight.primitive, options, kind), output)
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
                kind,
            );
            match prep {
                OpsKind::Tracked(prep) => {
                    prep.finish((x.primitive, weight.primitive, options, kind), output)
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
        register_grads::<B>(
            [
                node_x.as_ref().map(|n| &n.id),
                node_weight.as_ref().map(|n| &n.id),
                node_bias.as_ref().map(|n| &n.id),
            ],
            ops.state,
            output_grad,
            grads,
        );
    }
}

impl<B: DepthwiseBackend> Backward<B, 2> for DepthwiseNoBias {
    type State = SavedState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        register_grads::<B>(
            [
                node_x.as_ref().map(|n| &n.id),
                node_weight.as_ref().map(|n| &n.id),
                None,
            ],
            ops.state,
            output_grad,
            grads,
        );
    }
}

/// The inner backend's gradients as untracked tensors of the autodiff backend.
fn untracked<B: DepthwiseBackend, C: CheckpointStrategy>(
    inner: DepthwiseGrads<B>,
) -> DepthwiseGrads<Autodiff<B, C>> {
    let untracked = <Autodiff<B, C> as burn::tensor::backend::AutodiffBackend>::from_inner;
    DepthwiseGrads {
        x: inner.x.map(untracked),
        weight: inner.weight.map(untracked),
        bias: inner.bias.map(untracked),
    }
}

impl<B: DepthwiseBackend, C: CheckpointStrategy> DepthwiseBackend for Autodiff<B, C> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        tracked_forward::<B, C>(
            x,
            weight,
            bias,
            options,
            ConvKind::Depthwise(Layout::ChannelsFirst),
        )
    }

    fn depthwise_conv2d_nhwc(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        tracked_forward::<B, C>(
            x,
            weight,
            bias,
            options,
            ConvKind::Depthwise(Layout::ChannelsLast),
        )
    }

    fn conv2d_nhwc(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: DepthwiseOptions,
    ) -> FloatTensor<Self> {
        tracked_forward::<B, C>(x, weight, bias, options, ConvKind::DenseChannelsLast)
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

    fn depthwise_conv2d_nhwc_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
        wanted: WantedGrads,
    ) -> DepthwiseGrads<Self> {
        let inner = B::depthwise_conv2d_nhwc_backward(
            x.primitive,
            weight.primitive,
            output_grad.primitive,
            options,
            wanted,
        );
        untracked::<B, C>(inner)
    }

    fn conv2d_nhwc_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: DepthwiseOptions,
        wanted: WantedGrads,
    ) -> DepthwiseGrads<Self> {
        let inner = B::conv2d_nhwc_backward(
            x.primitive,
            weight.primitive,
            output_grad.primitive,
            options,
            wanted,
        );
        untracked::<B, C>(inner)
    }
}
