//! What a built layer is, told by the layer itself.
//!
//! Each block lists its layers in execution order ([`LayerInfo`]: module path and kind
//! with shapes). The cost table, the weight import and export (whose key schemes live in
//! `models/`) and the feature-map taps all read these lists, so none of them walks the
//! modules by hand and a new block kind describes itself in its own file.

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
    /// A BatchNorm alone (no conv before it), e.g. the pre-norm of an attention block.
    BatchNorm {
        /// Channels normalised.
        channels: usize,
    },
    /// [`MultiQueryAttention`](super::MultiQueryAttention) with its projections and its
    /// key/value downsampling: one entry, as its key and value read a smaller map than its
    /// query.
    MultiQueryAttention {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Query heads.
        heads: usize,
        /// Width of each query head and of the key.
        key_dim: usize,
        /// Width of the value.
        value_dim: usize,
        /// Stride of the key/value downsampling (1: none).
        kv_stride: usize,
        /// Kernel of the key/value downsampling depthwise convs (0: none).
        kernel_size: usize,
    },
    /// A learned factor per channel ([`LayerScale`](super::LayerScale)).
    LayerScale {
        /// Channels scaled.
        channels: usize,
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
            LayerKind::LayerScale { channels } => channels,
            LayerKind::BatchNorm { channels } => 2 * channels,
            LayerKind::MultiQueryAttention {
                in_channels: c,
                out_channels,
                heads,
                key_dim,
                value_dim,
                kv_stride,
                kernel_size,
            } => {
                let down = match kv_stride > 1 {
                    // Two depthwise convs, each with a BatchNorm.
                    true => 2 * (c * kernel_size * kernel_size + 2 * c),
                    false => 0,
                };
                c * heads * key_dim
                    + c * key_dim
                    + c * value_dim
                    + heads * value_dim * out_channels
                    + down
            }
        }
    }

    /// Output channels (features for a linear layer).
    pub fn out_channels(&self) -> usize {
        match *self {
            LayerKind::ConvNormAct(conv) => conv.out_channels,
            LayerKind::SqueezeExcitation { channels, .. } => channels,
            LayerKind::Linear { outputs, .. } => outputs,
            LayerKind::LayerScale { channels } => channels,
            LayerKind::BatchNorm { channels } => channels,
            LayerKind::MultiQueryAttention { out_channels, .. } => out_channels,
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
            // Element-wise, not counted (as norms and activations).
            LayerKind::LayerScale { .. } | LayerKind::BatchNorm { .. } => (input, 0),
            LayerKind::MultiQueryAttention {
                in_channels: c,
                out_channels,
                heads,
                key_dim,
                value_dim,
                kv_stride,
                kernel_size,
            } => {
                let queries = input[0] * input[1];
                // Keys and values: one per position of the map the downsampling leaves
                // (depthwise, padding (k - 1) / 2).
                let (kv_positions, down) = match kv_stride > 1 {
                    true => {
                        let pad = (kernel_size - 1) / 2;
                        let side = |x: usize| (x + 2 * pad - kernel_size) / kv_stride + 1;
                        let p = side(input[0]) * side(input[1]);
                        (p, 2 * p * c * kernel_size * kernel_size)
                    }
                    false => (queries, 0),
                };
                let projections = queries * c * heads * key_dim
                    + kv_positions * c * (key_dim + value_dim)
                    + queries * heads * value_dim * out_channels;
                // The two matrix products: scores (q·k) and the weighted sum of values.
                let products = queries * heads * kv_positions * (key_dim + value_dim);
                (input, (down + projections + products) as u64)
            }
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

/// One layer of a block, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Module path of the layer inside its block (`expand`, `depthwise`, ...; empty when
    /// the block is this one layer): the path of its tensors less the tensor's own name.
    pub path: String,
    /// What it computes.
    pub kind: LayerKind,
}

/// `a.b`, or whichever of the two is not empty.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    }
}
