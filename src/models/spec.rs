//! The MobileNet architectures as data.
//!
//! Each variant is a table of blocks (as in the papers and torchvision's
//! `mobilenetv2.py` / `mobilenetv3.py`); [`MobileNetSpec::new`] applies the width multiplier
//! with each variant's rounding rule and yields the concrete layer list that
//! [`MobileNet`](super::MobileNet) is built from. V1, V2 and V3 share every line of block
//! code; they differ only in these tables.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::kernels::DepthwiseBackend;
use crate::nn::{
    Activation, DepthwiseSeparableConv, DepthwiseSeparableConvConfig, InvertedResidual,
    InvertedResidualConfig, InvertedResidualKeys, LayerInfo, NormConfig,
};

/// The MobileNet variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// MobileNetV1 (Howard et al. 2017), Keras layout: bias-free convs, BN, ReLU6.
    #[serde(rename = "v1")]
    V1,
    /// MobileNetV2 (Sandler et al. 2018), torchvision layout.
    #[serde(rename = "v2")]
    V2,
    /// MobileNetV3-Small (Howard et al. 2019), torchvision layout.
    #[serde(rename = "v3-small")]
    V3Small,
    /// MobileNetV3-Large (Howard et al. 2019), torchvision layout.
    #[serde(rename = "v3-large")]
    V3Large,
}

impl Architecture {
    /// All variants, in order.
    pub const ALL: [Architecture; 4] = [
        Architecture::V1,
        Architecture::V2,
        Architecture::V3Small,
        Architecture::V3Large,
    ];

    /// The short name used on command lines and in files (`v1`, `v2`, `v3-small`, `v3-large`).
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::V1 => "v1",
            Architecture::V2 => "v2",
            Architecture::V3Small => "v3-small",
            Architecture::V3Large => "v3-large",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Architecture::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "unknown model '{s}', expected one of v1, v2, v3-small, v3-large"
                ))
            })
    }
}

/// torchvision's `_make_divisible`: round `value` to the nearest multiple of `divisor`, at
/// least `divisor`, and never more than 10% below `value`.
pub fn make_divisible(value: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = (((value + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * value {
        rounded += divisor;
    }
    rounded
}

/// Which block a [`BlockSpec`] builds, with what only that kind has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// [`DepthwiseSeparableConv`] (V1).
    Separable,
    /// [`InvertedResidual`] (V2, V3).
    InvertedResidual {
        /// Channels after the 1×1 expansion (`in_channels` when there is none).
        expanded_channels: usize,
        /// Squeeze-excitation bottleneck width, if the block has one.
        squeeze_channels: Option<usize>,
    },
}

/// One block of the body, with concrete (width-adjusted) channel counts.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSpec {
    /// Block type and its own widths.
    pub kind: BlockKind,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Depthwise kernel size.
    pub kernel_size: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Activation of the block.
    pub activation: Activation,
}

/// One built body block: what a [`BlockSpec`] makes. A new block kind is a module in
/// `nn/` that lists its layers ([`LayerInfo`]), a [`BlockKind`] variant, and a variant
/// here with its three arms below.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Block<B: Backend> {
    /// Depthwise-separable conv (V1).
    Separable(DepthwiseSeparableConv<B>),
    /// Inverted residual (V2, V3).
    InvertedResidual(InvertedResidual<B>),
}

impl<B: Backend> Block<B> {
    /// The block with every BatchNorm folded into its convolution (see
    /// [`crate::nn::ConvNormAct::fuse_for_inference`]).
    pub fn fuse_for_inference(self) -> Self {
        match self {
            Block::Separable(mut block) => {
                block.depthwise = block.depthwise.fuse_for_inference();
                block.pointwise = block.pointwise.fuse_for_inference();
                Block::Separable(block)
            }
            Block::InvertedResidual(mut block) => {
                block.expand = block.expand.map(|e| e.fuse_for_inference());
                block.depthwise = block.depthwise.fuse_for_inference();
                block.project = block.project.fuse_for_inference();
                Block::InvertedResidual(block)
            }
        }
    }

    /// Builds the block `spec` describes, with the network's BatchNorm settings.
    pub fn from_spec(
        spec: &BlockSpec,
        norm: NormConfig,
        device: &B::Device,
    ) -> crate::Result<Self> {
        Ok(match spec.kind {
            BlockKind::Separable => Block::Separable(
                DepthwiseSeparableConvConfig::new(spec.in_channels, spec.out_channels)
                    .with_kernel_size(spec.kernel_size)
                    .with_stride(spec.stride)
                    .with_activation(spec.activation)
                    .with_norm(norm)
                    .try_init(device)?,
            ),
            BlockKind::InvertedResidual {
                expanded_channels,
                squeeze_channels,
            } => Block::InvertedResidual(
                InvertedResidualConfig::new(spec.in_channels, expanded_channels, spec.out_channels)
                    .with_kernel_size(spec.kernel_size)
                    .with_stride(spec.stride)
                    .with_squeeze_channels(squeeze_channels)
                    .with_activation(spec.activation)
                    .with_norm(norm)
                    .try_init(device)?,
            ),
        })
    }

    /// Its layers in order, with torchvision keys as `architecture`'s torchvision model
    /// numbers them.
    pub fn layers(&self, architecture: Architecture) -> Vec<LayerInfo> {
        match self {
            Block::Separable(block) => block.layers(),
            Block::InvertedResidual(block) => block.layers(match architecture {
                Architecture::V2 => InvertedResidualKeys::MobileNetV2,
                _ => InvertedResidualKeys::MobileNetV3,
            }),
        }
    }
}

impl<B: DepthwiseBackend> Block<B> {
    /// The block's forward pass.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`
    /// - output: `[N, out_channels, ceil(H / stride), ceil(W / stride)]`
    pub fn forward(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Block::Separable(block) => block.forward(input),
            Block::InvertedResidual(block) => block.forward(input),
        }
    }

    /// [`Self::forward`] on channels-last maps.
    ///
    /// # Shapes
    /// - input: `[N, H, W, in_channels]`
    /// - output: `[N, ceil(H / stride), ceil(W / stride), out_channels]`
    pub fn forward_channels_last(&self, input: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Block::Separable(block) => block.forward_channels_last(input),
            Block::InvertedResidual(block) => block.forward_channels_last(input),
        }
    }
}

/// A plain layer: output width and activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerSpec {
    /// Output channels (or features).
    pub channels: usize,
    /// Activation after it.
    pub activation: Activation,
}

/// A whole network: stem (3×3 stride-2 conv from RGB), body blocks, optional last 1×1
/// conv, global average pool, optional hidden linear layer, dropout, classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct MobileNetSpec {
    /// The variant this spec was made from.
    pub architecture: Architecture,
    /// Stem conv.
    pub stem: LayerSpec,
    /// Body blocks, in order.
    pub blocks: Vec<BlockSpec>,
    /// 1×1 conv after the body (V2, V3).
    pub last_conv: Option<LayerSpec>,
    /// Hidden linear layer of the classifier (V3).
    pub classifier_hidden: Option<LayerSpec>,
    /// BatchNorm settings of every norm layer.
    pub norm: NormConfig,
}

/// A V1 row: one depthwise-separable block.
struct V1Row {
    /// Output channels at width 1.0.
    channels: usize,
    stride: usize,
}

const fn v1(channels: usize, stride: usize) -> V1Row {
    V1Row { channels, stride }
}

/// V1 body (Howard et al. 2017, table 1).
const V1_BLOCKS: [V1Row; 13] = [
    v1(64, 1),
    v1(128, 2),
    v1(128, 1),
    v1(256, 2),
    v1(256, 1),
    v1(512, 2),
    v1(512, 1),
    v1(512, 1),
    v1(512, 1),
    v1(512, 1),
    v1(512, 1),
    v1(1024, 2),
    v1(1024, 1),
];

/// A V2 row: a stage of `repeats` inverted residuals, the first with `stride`.
struct V2Stage {
    /// Expansion factor t: expanded channels = t × input channels.
    expansion: usize,
    /// Output channels c at width 1.0.
    channels: usize,
    /// Blocks n in the stage.
    repeats: usize,
    /// Stride s of the stage's first block.
    stride: usize,
}

const fn v2(expansion: usize, channels: usize, repeats: usize, stride: usize) -> V2Stage {
    V2Stage {
        expansion,
        channels,
        repeats,
        stride,
    }
}

/// V2 body (Sandler et al. 2018, table 2): `v2(t, c, n, s)`.
const V2_STAGES: [V2Stage; 7] = [
    v2(1, 16, 1, 1),
    v2(6, 24, 2, 2),
    v2(6, 32, 3, 2),
    v2(6, 64, 4, 2),
    v2(6, 96, 3, 1),
    v2(6, 160, 3, 2),
    v2(6, 320, 1, 1),
];

use Activation::{HardSwish as HS, Relu as RE};

/// A V3 "bneck" row, in the papers' column order.
struct V3Row {
    kernel_size: usize,
    /// Expanded channels at width 1.0.
    expanded: usize,
    /// Output channels at width 1.0.
    channels: usize,
    squeeze_excite: bool,
    activation: Activation,
    stride: usize,
}

const fn bneck(
    kernel_size: usize,
    expanded: usize,
    channels: usize,
    squeeze_excite: bool,
    activation: Activation,
    stride: usize,
) -> V3Row {
    V3Row {
        kernel_size,
        expanded,
        channels,
        squeeze_excite,
        activation,
        stride,
    }
}

const SE: bool = true;
const NO_SE: bool = false;

/// V3-Large body (Howard et al. 2019, table 1): `bneck(kernel, exp size, #out, SE, NL, s)`.
const V3_LARGE_BLOCKS: [V3Row; 15] = [
    bneck(3, 16, 16, NO_SE, RE, 1),
    bneck(3, 64, 24, NO_SE, RE, 2),
    bneck(3, 72, 24, NO_SE, RE, 1),
    bneck(5, 72, 40, SE, RE, 2),
    bneck(5, 120, 40, SE, RE, 1),
    bneck(5, 120, 40, SE, RE, 1),
    bneck(3, 240, 80, NO_SE, HS, 2),
    bneck(3, 200, 80, NO_SE, HS, 1),
    bneck(3, 184, 80, NO_SE, HS, 1),
    bneck(3, 184, 80, NO_SE, HS, 1),
    bneck(3, 480, 112, SE, HS, 1),
    bneck(3, 672, 112, SE, HS, 1),
    bneck(5, 672, 160, SE, HS, 2),
    bneck(5, 960, 160, SE, HS, 1),
    bneck(5, 960, 160, SE, HS, 1),
];

/// V3-Small body (Howard et al. 2019, table 2), same columns.
const V3_SMALL_BLOCKS: [V3Row; 11] = [
    bneck(3, 16, 16, SE, RE, 2),
    bneck(3, 72, 24, NO_SE, RE, 2),
    bneck(3, 88, 24, NO_SE, RE, 1),
    bneck(5, 96, 40, SE, HS, 2),
    bneck(5, 240, 40, SE, HS, 1),
    bneck(5, 240, 40, SE, HS, 1),
    bneck(5, 120, 48, SE, HS, 1),
    bneck(5, 144, 48, SE, HS, 1),
    bneck(5, 288, 96, SE, HS, 2),
    bneck(5, 576, 96, SE, HS, 1),
    bneck(5, 576, 96, SE, HS, 1),
];

impl MobileNetSpec {
    /// The concrete layer list of `architecture` at width multiplier `width_mult`.
    pub fn new(architecture: Architecture, width_mult: f64) -> crate::Result<Self> {
        if !(width_mult.is_finite() && width_mult > 0.0) {
            return Err(crate::Error::Config(format!(
                "width_mult must be a positive number, got {width_mult}"
            )));
        }
        Ok(match architecture {
            Architecture::V1 => Self::v1(width_mult),
            Architecture::V2 => Self::v2(width_mult),
            Architecture::V3Small => Self::v3(architecture, &V3_SMALL_BLOCKS, 1024, width_mult),
            Architecture::V3Large => Self::v3(architecture, &V3_LARGE_BLOCKS, 1280, width_mult),
        })
    }

    /// Keras' V1: every width scaled by `int(channels * alpha)`, ReLU6, BN eps 1e-3.
    fn v1(alpha: f64) -> Self {
        let scale = |c: usize| ((c as f64 * alpha) as usize).max(1);
        let stem = scale(32);
        let mut in_channels = stem;
        let blocks = V1_BLOCKS
            .iter()
            .map(|row| {
                let out = scale(row.channels);
                let block = BlockSpec {
                    kind: BlockKind::Separable,
                    in_channels,
                    out_channels: out,
                    kernel_size: 3,
                    stride: row.stride,
                    activation: Activation::Relu6,
                };
                in_channels = out;
                block
            })
            .collect();
        Self {
            architecture: Architecture::V1,
            stem: LayerSpec {
                channels: stem,
                activation: Activation::Relu6,
            },
            blocks,
            last_conv: None,
            classifier_hidden: None,
            norm: NormConfig::new().with_epsilon(1e-3).with_momentum(0.01),
        }
    }

    /// torchvision's V2: widths through `make_divisible(c * w, 8)`, last conv never
    /// narrower than 1280.
    fn v2(width_mult: f64) -> Self {
        let stem = make_divisible(32.0 * width_mult, 8);
        let mut in_channels = stem;
        let mut blocks = Vec::new();
        for stage in &V2_STAGES {
            let out = make_divisible(stage.channels as f64 * width_mult, 8);
            for i in 0..stage.repeats {
                blocks.push(BlockSpec {
                    kind: BlockKind::InvertedResidual {
                        expanded_channels: in_channels * stage.expansion,
                        squeeze_channels: None,
                    },
                    in_channels,
                    out_channels: out,
                    kernel_size: 3,
                    stride: if i == 0 { stage.stride } else { 1 },
                    activation: Activation::Relu6,
                });
                in_channels = out;
            }
        }
        Self {
            architecture: Architecture::V2,
            stem: LayerSpec {
                channels: stem,
                activation: Activation::Relu6,
            },
            blocks,
            last_conv: Some(LayerSpec {
                channels: make_divisible(1280.0 * width_mult.max(1.0), 8),
                activation: Activation::Relu6,
            }),
            classifier_hidden: None,
            norm: NormConfig::new(),
        }
    }

    /// torchvision's V3: every width through `make_divisible(c * w, 8)`, SE bottleneck
    /// `make_divisible(expanded / 4, 8)`, last conv 6× the body's output.
    fn v3(architecture: Architecture, table: &[V3Row], last: usize, width_mult: f64) -> Self {
        let adjust = |c: usize| make_divisible(c as f64 * width_mult, 8);
        let stem = adjust(16);
        let mut in_channels = stem;
        let blocks: Vec<BlockSpec> = table
            .iter()
            .map(|row| {
                let expanded = adjust(row.expanded);
                let block = BlockSpec {
                    kind: BlockKind::InvertedResidual {
                        expanded_channels: expanded,
                        squeeze_channels: row
                            .squeeze_excite
                            .then(|| make_divisible((expanded / 4) as f64, 8)),
                    },
                    in_channels,
                    out_channels: adjust(row.channels),
                    kernel_size: row.kernel_size,
                    stride: row.stride,
                    activation: row.activation,
                };
                in_channels = block.out_channels;
                block
            })
            .collect();
        Self {
            architecture,
            stem: LayerSpec {
                channels: stem,
                activation: Activation::HardSwish,
            },
            blocks,
            last_conv: Some(LayerSpec {
                channels: 6 * in_channels,
                activation: Activation::HardSwish,
            }),
            classifier_hidden: Some(LayerSpec {
                channels: adjust(last),
                activation: Activation::HardSwish,
            }),
            norm: NormConfig::new().with_epsilon(1e-3).with_momentum(0.01),
        }
    }

    /// Channels of the body's output, after the last conv if there is one.
    pub fn feature_channels(&self) -> usize {
        match &self.last_conv {
            Some(layer) => layer.channels,
            None => self
                .blocks
                .last()
                .map_or(self.stem.channels, |b| b.out_channels),
        }
    }
}
