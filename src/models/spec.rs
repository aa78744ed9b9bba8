//! The MobileNet architectures as data.
//!
//! Each variant is a table of blocks (as in the papers and torchvision's
//! `mobilenetv2.py` / `mobilenetv3.py`); [`MobileNetSpec::new`] applies the width multiplier
//! with each variant's rounding rule and yields the concrete layer list that
//! [`MobileNet`](super::MobileNet) is built from. V1, V2 and V3 share every line of block
//! code; they differ only in these tables.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::nn::{Activation, NormConfig};

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

/// Which block a [`BlockSpec`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// [`DepthwiseSeparableConv`](crate::nn::DepthwiseSeparableConv) (V1).
    Separable,
    /// [`InvertedResidual`](crate::nn::InvertedResidual) (V2, V3).
    InvertedResidual,
}

/// One block of the body, with concrete (width-adjusted) channel counts.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSpec {
    /// Block type.
    pub kind: BlockKind,
    /// Input channels.
    pub in_channels: usize,
    /// Expanded channels (inverted residual; equal to `in_channels` for none).
    pub expanded_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Depthwise kernel size.
    pub kernel_size: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Squeeze-excitation bottleneck width, if any.
    pub squeeze_channels: Option<usize>,
    /// Activation of the block.
    pub activation: Activation,
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

/// V1 body (Howard et al. 2017, table 1): (output channels, stride) of each separable block.
const V1_BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// V2 body (Sandler et al. 2018, table 2): expansion t, channels c, repeats n, stride s.
const V2_STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

use Activation::{HardSwish as HS, Relu as RE};

/// One V3 bneck row: kernel, expanded channels, output channels, SE, activation, stride.
type V3Row = (usize, usize, usize, bool, Activation, usize);

/// V3-Large body (Howard et al. 2019, table 1).
const V3_LARGE_BLOCKS: [V3Row; 15] = [
    (3, 16, 16, false, RE, 1),
    (3, 64, 24, false, RE, 2),
    (3, 72, 24, false, RE, 1),
    (5, 72, 40, true, RE, 2),
    (5, 120, 40, true, RE, 1),
    (5, 120, 40, true, RE, 1),
    (3, 240, 80, false, HS, 2),
    (3, 200, 80, false, HS, 1),
    (3, 184, 80, false, HS, 1),
    (3, 184, 80, false, HS, 1),
    (3, 480, 112, true, HS, 1),
    (3, 672, 112, true, HS, 1),
    (5, 672, 160, true, HS, 2),
    (5, 960, 160, true, HS, 1),
    (5, 960, 160, true, HS, 1),
];

/// V3-Small body (Howard et al. 2019, table 2).
const V3_SMALL_BLOCKS: [V3Row; 11] = [
    (3, 16, 16, true, RE, 2),
    (3, 72, 24, false, RE, 2),
    (3, 88, 24, false, RE, 1),
    (5, 96, 40, true, HS, 2),
    (5, 240, 40, true, HS, 1),
    (5, 240, 40, true, HS, 1),
    (5, 120, 48, true, HS, 1),
    (5, 144, 48, true, HS, 1),
    (5, 288, 96, true, HS, 2),
    (5, 576, 96, true, HS, 1),
    (5, 576, 96, true, HS, 1),
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
            .map(|&(c, stride)| {
                let out = scale(c);
                let block = BlockSpec {
                    kind: BlockKind::Separable,
                    in_channels,
                    expanded_channels: in_channels,
                    out_channels: out,
                    kernel_size: 3,
                    stride,
                    squeeze_channels: None,
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
        for &(t, c, n, s) in &V2_STAGES {
            let out = make_divisible(c as f64 * width_mult, 8);
            for i in 0..n {
                blocks.push(BlockSpec {
                    kind: BlockKind::InvertedResidual,
                    in_channels,
                    expanded_channels: (in_channels as f64 * t as f64).round() as usize,
                    out_channels: out,
                    kernel_size: 3,
                    stride: if i == 0 { s } else { 1 },
                    squeeze_channels: None,
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
            .map(|&(kernel_size, expanded, out, se, activation, stride)| {
                let expanded = adjust(expanded);
                let block = BlockSpec {
                    kind: BlockKind::InvertedResidual,
                    in_channels,
                    expanded_channels: expanded,
                    out_channels: adjust(out),
                    kernel_size,
                    stride,
                    squeeze_channels: se.then(|| make_divisible((expanded / 4) as f64, 8)),
                    activation,
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
