//! What a built layer is, told by the layer itself.
//!
//! Each block lists its layers in execution order ([`LayerInfo`]: module path, kind with
//! shapes, torchvision key suffixes). The cost table, the torchvision import and export and
//! the feature-map taps all read these lists, so none of them walks the modules by hand and
//! a new block kind describes itself in its own file.

/// How a convolution's weight tensor is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[out, in / groups, kh, kw]`, as PyTorch stores every conv weight.
    Kernel,
    /// `[out, in]`: a [`PointwiseConv2d`](super::PointwiseConv2d)'s 1×1 weight without its
    /// unit dimensions (PyTorch: `[out, in, 1, 1]`).
    Matrix,
}

/// The geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[height, width]`.
    pub stride: [usize; 2],
    /// Zero padding on each side, `[height, width]`.
    pub padding: [usize; 2],
    /// Dilation `[height, width]`.
    pub dilation: [usize; 2],
    /// Channel groups (`in_channels` for a depthwise conv).
    pub groups: usize,
    /// Whether the conv has a bias.
    pub bias: bool,
    /// How the weight is stored.
    pub layout: WeightLayout,
}

impl ConvShape {
    /// Output `[height, width]` for an `input` of `[height, width]`.
    pub fn output_size(&self, input: [usize; 2]) -> [usize; 2] {
        std::array::from_fn(|d| {
            let span = self.dilation[d] * (self.kernel[d] - 1) + 1;
            (input[d] + 2 * self.padding[d]).saturating_sub(span) / self.stride[d] + 1
        })
    }

    /// Weights and bias.
    pub fn params(&self) -> usize {
        let weights =
            self.out_channels * self.in_channels / self.groups * self.kernel[0] * self.kernel[1];
        weights + if self.bias { self.out_channels } else { 0 }
    }
}

/// What a layer computes, with its shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Convolution → BatchNorm → activation ([`ConvNormAct`](super::ConvNormAct)).
    ConvNormAct(ConvShape),
    /// Squeeze-excitation on a `channels`-wide map: two 1×1 convs with biases.
    SqueezeExcitation {
        /// Channels of the re-weighted map.
        channels: usize,
        /// Bottleneck width.
        squeeze_channels: usize,
    },
    /// A fully connected layer (Burn's `Linear`, weight `[inputs, outputs]`).
    Linear {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
        /// Whether it has a bias.
        bias: bool,
    },
}

impl LayerKind {
    /// Learnable parameters: weights, biases and BatchNorm scale and shift, not BatchNorm's
    /// running statistics (PyTorch's `sum(p.numel() for p in model.parameters())`).
    pub fn params(&self) -> usize {
        match *self {
            LayerKind::ConvNormAct(conv) => conv.params() + 2 * conv.out_channels,
            LayerKind::SqueezeExcitation {
                channels,
                squeeze_channels,
            } => 2 * channels * squeeze_channels + squeeze_channels + channels,
            LayerKind::Linear {
                inputs,
                outputs,
                bias,
            } => inputs * outputs + if bias { outputs } else { 0 },
        }
    }

    /// Output channels (features for a linear layer).
    pub fn out_channels(&self) -> usize {
        match *self {
            LayerKind::ConvNormAct(conv) => conv.out_channels,
            LayerKind::SqueezeExcitation { channels, .. } => channels,
            LayerKind::Linear { outputs, .. } => outputs,
        }
    }

    /// Output `[height, width]` for an `input` map (`[1, 1]` for a linear layer, which
    /// follows the global pool) and the multiply-adds for one image: convolutions and
    /// linear layers as the MobileNet papers count them, not norms or activations.
    pub fn apply(&self, input: [usize; 2]) -> ([usize; 2], u64) {
        match *self {
            LayerKind::ConvNormAct(conv) => {
                let [h, w] = conv.output_size(input);
                let taps = conv.in_channels / conv.groups * conv.kernel[0] * conv.kernel[1];
                ([h, w], (h * w * conv.out_channels * taps) as u64)
            }
            LayerKind::SqueezeExcitation {
                channels,
                squeeze_channels,
            } => (input, (2 * channels * squeeze_channels) as u64),
            LayerKind::Linear {
                inputs, outputs, ..
            } => ([1, 1], (inputs * outputs) as u64),
        }
    }

    /// Output stride of the layer (1 for all but strided convolutions).
    pub fn stride(&self) -> usize {
        match self {
            LayerKind::ConvNormAct(conv) => conv.stride[0],
            _ => 1,
        }
    }
}

/// Where a layer's tensors live in a torchvision `state_dict`, relative to its block's
/// prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorchKeys {
    /// A conv and its BatchNorm, at these two suffixes (torchvision's `Conv2dNormActivation`
    /// is the pair `{p}.0`, `{p}.1`; V2's projection puts them at `conv.{j}`,
    /// `conv.{j+1}`).
    ConvNorm {
        /// The conv's suffix.
        conv: String,
        /// The BatchNorm's suffix.
        norm: String,
    },
    /// A layer under one suffix (`fc1`/`fc2` of a squeeze-excitation, a linear layer's
    /// `weight`/`bias`).
    At(String),
}

impl TorchKeys {
    /// torchvision's `Conv2dNormActivation` at `prefix`: conv `{prefix}.0`, norm
    /// `{prefix}.1`.
    pub fn conv_norm(prefix: &str) -> Self {
        TorchKeys::ConvNorm {
            conv: join(prefix, "0"),
            norm: join(prefix, "1"),
        }
    }
}

/// One layer of a block, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Module path of the layer inside its block (`expand`, `depthwise`, ...; empty when
    /// the block is this one layer): the path of its tensors less the tensor's own name.
    pub path: String,
    /// What it computes.
    pub kind: LayerKind,
    /// Its torchvision keys relative to the block's torchvision prefix.
    pub torch: TorchKeys,
}

/// `a.b`, or whichever of the two is not empty.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    }
}
