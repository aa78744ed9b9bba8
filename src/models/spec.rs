//! The MobileNet architectures as data.
//!
//! Each variant is a table of blocks (as in the papers, torchvision's `mobilenetv2.py` /
//! `mobilenetv3.py` and timm's `_gen_mobilenet_v4`); [`MobileNetSpec::new`] applies the
//! width multiplier with each variant's rounding rule and yields the concrete rows,
//! grouped by stage, that [`MobileNet`](super::MobileNet) is built from. Every variant
//! shares one block vocabulary ([`BlockConfig`] / [`Block`], one `block_vocabulary!` line
//! per kind); they differ only in these tables.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::kernels::DepthwiseBackend;
use crate::nn::{
    Activation, BodyBlock, BodyBlockConfig, ConvNormAct, ConvNormActConfig, DepthwiseSeparableConv,
    DepthwiseSeparableConvConfig, FeatureMap, FusedInvertedBottleneck,
    FusedInvertedBottleneckConfig, InvertedResidual, InvertedResidualConfig, LayerInfo,
    MobileAttention, MobileAttentionConfig, NormConfig, UniversalInvertedBottleneck,
    UniversalInvertedBottleneckConfig,
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
    /// MobileNetV4-Conv-Small (Qin et al. 2024), timm layout.
    #[serde(rename = "v4-conv-small")]
    V4ConvSmall,
    /// MobileNetV4-Conv-Medium, timm layout.
    #[serde(rename = "v4-conv-medium")]
    V4ConvMedium,
    /// MobileNetV4-Conv-Large, timm layout.
    #[serde(rename = "v4-conv-large")]
    V4ConvLarge,
    /// MobileNetV4-Hybrid-Medium (with Mobile MQA blocks), timm layout.
    #[serde(rename = "v4-hybrid-medium")]
    V4HybridMedium,
    /// MobileNetV4-Hybrid-Large (with Mobile MQA blocks, GELU), timm layout.
    #[serde(rename = "v4-hybrid-large")]
    V4HybridLarge,
}

impl Architecture {
    /// All variants, in order: the one list the command lines, the cost table and the
    /// docs read.
    pub const ALL: [Architecture; 9] = [
        Architecture::V1,
        Architecture::V2,
        Architecture::V3Small,
        Architecture::V3Large,
        Architecture::V4ConvSmall,
        Architecture::V4ConvMedium,
        Architecture::V4ConvLarge,
        Architecture::V4HybridMedium,
        Architecture::V4HybridLarge,
    ];

    /// The short name used on command lines and in files (`v1`, `v2`, `v3-small`,
    /// `v3-large`, `v4-conv-small`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::V1 => "v1",
            Architecture::V2 => "v2",
            Architecture::V3Small => "v3-small",
            Architecture::V3Large => "v3-large",
            Architecture::V4ConvSmall => "v4-conv-small",
            Architecture::V4ConvMedium => "v4-conv-medium",
            Architecture::V4ConvLarge => "v4-conv-large",
            Architecture::V4HybridMedium => "v4-hybrid-medium",
            Architecture::V4HybridLarge => "v4-hybrid-large",
        }
    }

    /// Whether its weights are in timm's layout (V4) rather than torchvision's.
    pub fn is_timm(&self) -> bool {
        matches!(
            self,
            Architecture::V4ConvSmall
                | Architecture::V4ConvMedium
                | Architecture::V4ConvLarge
                | Architecture::V4HybridMedium
                | Architecture::V4HybridLarge
        )
    }

    /// The name of the PyTorch model it matches (torchvision's `mobilenet_v2`, ..., timm's
    /// `mobilenetv4_conv_small`, ...; V1 has none and takes torchvision's style): what
    /// `scripts/bench_torch.py` builds.
    pub fn reference_name(&self) -> &'static str {
        match self {
            Architecture::V1 => "mobilenet_v1",
            Architecture::V2 => "mobilenet_v2",
            Architecture::V3Small => "mobilenet_v3_small",
            Architecture::V3Large => "mobilenet_v3_large",
            Architecture::V4ConvSmall => "mobilenetv4_conv_small",
            Architecture::V4ConvMedium => "mobilenetv4_conv_medium",
            Architecture::V4ConvLarge => "mobilenetv4_conv_large",
            Architecture::V4HybridMedium => "mobilenetv4_hybrid_medium",
            Architecture::V4HybridLarge => "mobilenetv4_hybrid_large",
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
                let names: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
                crate::Error::Config(format!(
                    "unknown model '{s}', expected one of {}",
                    names.join(", ")
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

/// The block vocabulary: each line is a block kind, its module (which implements
/// [`BodyBlock`]) and its configuration (with `in_channels`, `out_channels` and
/// `try_init`). It makes [`BlockConfig`], the spec row of a block, and [`Block`], the
/// built block the network dispatches to. A new block kind is its own file in `nn/` and a
/// line here; the spec tables below then use it.
macro_rules! block_vocabulary {
    ($($(#[$doc:meta])* $kind:ident($module:ident, $config:ident),)*) => {
        /// One block of a network's body as a spec row: its kind and its configuration,
        /// with concrete (width-adjusted) channel counts.
        #[derive(Clone, Debug)]
        pub enum BlockConfig {
            $($(#[$doc])* $kind($config),)*
        }

        impl BlockConfig {
            /// Input channels.
            pub fn in_channels(&self) -> usize {
                match self {
                    $(BlockConfig::$kind(config) => config.in_channels,)*
                }
            }

            /// Output channels.
            pub fn out_channels(&self) -> usize {
                match self {
                    $(BlockConfig::$kind(config) => config.out_channels,)*
                }
            }

            /// Sets the stochastic depth rate of the block's residual branch (see
            /// [`BodyBlockConfig`]).
            pub fn set_drop_path(&mut self, rate: f64) {
                match self {
                    $(BlockConfig::$kind(config) => config.set_drop_path(rate),)*
                }
            }

            /// Sets the BatchNorm settings of every norm of the block.
            pub fn set_norm(&mut self, norm: NormConfig) {
                match self {
                    $(BlockConfig::$kind(config) => config.norm = norm,)*
                }
            }

            /// Builds the block, or names the invalid configuration value.
            pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<Block<B>> {
                Ok(match self {
                    $(BlockConfig::$kind(config) => Block::$kind(config.try_init(device)?),)*
                })
            }
        }

        /// One built body block: what a [`BlockConfig`] makes.
        #[derive(Module, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum Block<B: Backend> {
            $($(#[$doc])* $kind($module<B>),)*
        }

        impl<B: Backend> BodyBlock<B> for Block<B> {
            fn layers(&self) -> Vec<LayerInfo> {
                match self {
                    $(Block::$kind(block) => block.layers(),)*
                }
            }

            fn fuse_for_inference(self) -> Self {
                match self {
                    $(Block::$kind(block) => Block::$kind(BodyBlock::fuse_for_inference(block)),)*
                }
            }

            fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
            where
                B: DepthwiseBackend,
            {
                match self {
                    $(Block::$kind(block) => block.forward_block(input),)*
                }
            }
        }
    };
}

block_vocabulary! {
    /// Depthwise-separable conv (V1).
    Separable(DepthwiseSeparableConv, DepthwiseSeparableConvConfig),
    /// Inverted residual (V2, V3).
    InvertedResidual(InvertedResidual, InvertedResidualConfig),
    /// A plain conv → BatchNorm → activation (V4's `cn` rows).
    Conv(ConvNormAct, ConvNormActConfig),
    /// Universal inverted bottleneck (V4's `uir` rows).
    UniversalInvertedBottleneck(UniversalInvertedBottleneck, UniversalInvertedBottleneckConfig),
    /// Fused inverted bottleneck (V4's `er` rows).
    FusedInvertedBottleneck(FusedInvertedBottleneck, FusedInvertedBottleneckConfig),
    /// Mobile MQA attention block (V4 hybrids' `mqa` rows).
    MobileAttention(MobileAttention, MobileAttentionConfig),
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
#[derive(Clone, Debug)]
pub struct MobileNetSpec {
    /// The variant this spec was made from.
    pub architecture: Architecture,
    /// Stem conv.
    pub stem: LayerSpec,
    /// Body blocks, in order, grouped by stage (the paper's table rows for V2, the runs
    /// at one resolution otherwise).
    pub stages: Vec<Vec<BlockConfig>>,
    /// 1×1 conv after the body (V2, V3).
    pub last_conv: Option<LayerSpec>,
    /// Hidden linear layer of the classifier (V3).
    pub classifier_hidden: Option<LayerSpec>,
    /// 1×1 conv → BatchNorm → activation on the pooled features (V4's `conv_head` and
    /// `norm_head`).
    pub head_conv: Option<LayerSpec>,
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

/// One row of a MobileNetV4 table, as timm writes them (`_gen_mobilenet_v4` in
/// `timm/models/mobilenetv3.py`): `repeats` blocks, the first with `stride`.
#[derive(Clone, Copy)]
struct V4Row {
    repeats: usize,
    block: V4Block,
    /// Output channels at width 1.0.
    channels: usize,
}

#[derive(Clone, Copy)]
enum V4Block {
    /// `cn`: conv k×k → BN → activation.
    Conv { kernel: usize, stride: usize },
    /// `er`: fused inverted bottleneck, k×k expansion by `expansion`.
    Fused {
        kernel: usize,
        stride: usize,
        expansion: f64,
    },
    /// `uir`: universal inverted bottleneck, start / middle depthwise kernels (0: none).
    Universal {
        start: usize,
        middle: usize,
        stride: usize,
        expansion: f64,
    },
    /// `mqa`: Mobile MQA, `heads` heads of width `dim`, keys/values at `kv_stride`.
    Attention {
        heads: usize,
        dim: usize,
        kv_stride: usize,
    },
}

/// `cn_r{r}_k{k}_s{s}_c{c}`.
const fn cn(repeats: usize, kernel: usize, stride: usize, channels: usize) -> V4Row {
    V4Row {
        repeats,
        block: V4Block::Conv { kernel, stride },
        channels,
    }
}

/// `er_r{r}_k{k}_s{s}_e{e}_c{c}`.
const fn er(
    repeats: usize,
    kernel: usize,
    stride: usize,
    expansion: f64,
    channels: usize,
) -> V4Row {
    V4Row {
        repeats,
        block: V4Block::Fused {
            kernel,
            stride,
            expansion,
        },
        channels,
    }
}

/// `uir_r{r}_a{start}_k{middle}_s{s}_e{e}_c{c}`: ExtraDW (both kernels), IB (middle only),
/// ConvNeXt-like (start only), FFN (neither).
const fn uir(
    repeats: usize,
    start: usize,
    middle: usize,
    stride: usize,
    expansion: f64,
    channels: usize,
) -> V4Row {
    V4Row {
        repeats,
        block: V4Block::Universal {
            start,
            middle,
            stride,
            expansion,
        },
        channels,
    }
}

/// `mqa_r1_k3_h{heads}_v{kv_stride}_d{dim}_c{c}` (`_v` absent: stride 1).
const fn mqa(heads: usize, kv_stride: usize, dim: usize, channels: usize) -> V4Row {
    V4Row {
        repeats: 1,
        block: V4Block::Attention {
            heads,
            dim,
            kv_stride,
        },
        channels,
    }
}

/// A MobileNetV4 variant: stem width, activation, layer scale (hybrids) and its stages.
struct V4Table {
    stem: usize,
    activation: Activation,
    layer_scale: Option<f64>,
    stages: &'static [&'static [V4Row]],
}

/// MobileNetV4-Conv-Small.
const V4_CONV_SMALL: V4Table = V4Table {
    stem: 32,
    activation: RE,
    layer_scale: None,
    stages: &[
        &[cn(1, 3, 2, 32), cn(1, 1, 1, 32)],
        &[cn(1, 3, 2, 96), cn(1, 1, 1, 64)],
        &[
            uir(1, 5, 5, 2, 3.0, 96),
            uir(4, 0, 3, 1, 2.0, 96),
            uir(1, 3, 0, 1, 4.0, 96),
        ],
        &[
            uir(1, 3, 3, 2, 6.0, 128),
            uir(1, 5, 5, 1, 4.0, 128),
            uir(1, 0, 5, 1, 4.0, 128),
            uir(1, 0, 5, 1, 3.0, 128),
            uir(2, 0, 3, 1, 4.0, 128),
        ],
        &[cn(1, 1, 1, 960)],
    ],
};

/// MobileNetV4-Conv-Medium.
const V4_CONV_MEDIUM: V4Table = V4Table {
    stem: 32,
    activation: RE,
    layer_scale: None,
    stages: &[
        &[er(1, 3, 2, 4.0, 48)],
        &[uir(1, 3, 5, 2, 4.0, 80), uir(1, 3, 3, 1, 2.0, 80)],
        &[
            uir(1, 3, 5, 2, 6.0, 160),
            uir(2, 3, 3, 1, 4.0, 160),
            uir(1, 3, 5, 1, 4.0, 160),
            uir(1, 3, 3, 1, 4.0, 160),
            uir(1, 3, 0, 1, 4.0, 160),
            uir(1, 0, 0, 1, 2.0, 160),
            uir(1, 3, 0, 1, 4.0, 160),
        ],
        &[
            uir(1, 5, 5, 2, 6.0, 256),
            uir(1, 5, 5, 1, 4.0, 256),
            uir(2, 3, 5, 1, 4.0, 256),
            uir(1, 0, 0, 1, 4.0, 256),
            uir(1, 3, 0, 1, 4.0, 256),
            uir(1, 3, 5, 1, 2.0, 256),
            uir(1, 5, 5, 1, 4.0, 256),
            uir(2, 0, 0, 1, 4.0, 256),
            uir(1, 5, 0, 1, 2.0, 256),
        ],
        &[cn(1, 1, 1, 960)],
    ],
};

/// MobileNetV4-Conv-Large.
const V4_CONV_LARGE: V4Table = V4Table {
    stem: 24,
    activation: RE,
    layer_scale: None,
    stages: &[
        &[er(1, 3, 2, 4.0, 48)],
        &[uir(1, 3, 5, 2, 4.0, 96), uir(1, 3, 3, 1, 4.0, 96)],
        &[
            uir(1, 3, 5, 2, 4.0, 192),
            uir(3, 3, 3, 1, 4.0, 192),
            uir(1, 3, 5, 1, 4.0, 192),
            uir(5, 5, 3, 1, 4.0, 192),
            uir(1, 3, 0, 1, 4.0, 192),
        ],
        &[
            uir(4, 5, 5, 2, 4.0, 512),
            uir(1, 5, 0, 1, 4.0, 512),
            uir(1, 5, 3, 1, 4.0, 512),
            uir(2, 5, 0, 1, 4.0, 512),
            uir(1, 5, 3, 1, 4.0, 512),
            uir(1, 5, 5, 1, 4.0, 512),
            uir(3, 5, 0, 1, 4.0, 512),
        ],
        &[cn(1, 1, 1, 960)],
    ],
};

/// MobileNetV4-Hybrid-Medium.
const V4_HYBRID_MEDIUM: V4Table = V4Table {
    stem: 32,
    activation: RE,
    layer_scale: Some(1e-5),
    stages: &[
        &[er(1, 3, 2, 4.0, 48)],
        &[uir(1, 3, 5, 2, 4.0, 80), uir(1, 3, 3, 1, 2.0, 80)],
        &[
            uir(1, 3, 5, 2, 6.0, 160),
            uir(1, 0, 0, 1, 2.0, 160),
            uir(1, 3, 3, 1, 4.0, 160),
            uir(1, 3, 5, 1, 4.0, 160),
            mqa(4, 2, 64, 160),
            uir(1, 3, 3, 1, 4.0, 160),
            mqa(4, 2, 64, 160),
            uir(1, 3, 0, 1, 4.0, 160),
            mqa(4, 2, 64, 160),
            uir(1, 3, 3, 1, 4.0, 160),
            mqa(4, 2, 64, 160),
            uir(1, 3, 0, 1, 4.0, 160),
        ],
        &[
            uir(1, 5, 5, 2, 6.0, 256),
            uir(1, 5, 5, 1, 4.0, 256),
            uir(2, 3, 5, 1, 4.0, 256),
            uir(1, 0, 0, 1, 2.0, 256),
            uir(1, 3, 5, 1, 2.0, 256),
            uir(1, 0, 0, 1, 2.0, 256),
            uir(1, 0, 0, 1, 4.0, 256),
            mqa(4, 1, 64, 256),
            uir(1, 3, 0, 1, 4.0, 256),
            mqa(4, 1, 64, 256),
            uir(1, 5, 5, 1, 4.0, 256),
            mqa(4, 1, 64, 256),
            uir(1, 5, 0, 1, 4.0, 256),
            mqa(4, 1, 64, 256),
            uir(1, 5, 0, 1, 4.0, 256),
        ],
        &[cn(1, 1, 1, 960)],
    ],
};

/// MobileNetV4-Hybrid-Large.
const V4_HYBRID_LARGE: V4Table = V4Table {
    stem: 24,
    activation: Activation::Gelu,
    layer_scale: Some(1e-5),
    stages: &[
        &[er(1, 3, 2, 4.0, 48)],
        &[uir(1, 3, 5, 2, 4.0, 96), uir(1, 3, 3, 1, 4.0, 96)],
        &[
            uir(1, 3, 5, 2, 4.0, 192),
            uir(3, 3, 3, 1, 4.0, 192),
            uir(1, 3, 5, 1, 4.0, 192),
            uir(2, 5, 3, 1, 4.0, 192),
            mqa(8, 2, 48, 192),
            uir(1, 5, 3, 1, 4.0, 192),
            mqa(8, 2, 48, 192),
            uir(1, 5, 3, 1, 4.0, 192),
            mqa(8, 2, 48, 192),
            uir(1, 5, 3, 1, 4.0, 192),
            mqa(8, 2, 48, 192),
            uir(1, 3, 0, 1, 4.0, 192),
        ],
        &[
            uir(4, 5, 5, 2, 4.0, 512),
            uir(1, 5, 0, 1, 4.0, 512),
            uir(1, 5, 3, 1, 4.0, 512),
            uir(2, 5, 0, 1, 4.0, 512),
            uir(1, 5, 3, 1, 4.0, 512),
            uir(1, 5, 5, 1, 4.0, 512),
            mqa(8, 1, 64, 512),
            uir(1, 5, 0, 1, 4.0, 512),
            mqa(8, 1, 64, 512),
            uir(1, 5, 0, 1, 4.0, 512),
            mqa(8, 1, 64, 512),
            uir(1, 5, 0, 1, 4.0, 512),
            mqa(8, 1, 64, 512),
            uir(1, 5, 0, 1, 4.0, 512),
        ],
        &[cn(1, 1, 1, 960)],
    ],
};

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
            Architecture::V4ConvSmall => Self::v4(architecture, &V4_CONV_SMALL, width_mult),
            Architecture::V4ConvMedium => Self::v4(architecture, &V4_CONV_MEDIUM, width_mult),
            Architecture::V4ConvLarge => Self::v4(architecture, &V4_CONV_LARGE, width_mult),
            Architecture::V4HybridMedium => Self::v4(architecture, &V4_HYBRID_MEDIUM, width_mult),
            Architecture::V4HybridLarge => Self::v4(architecture, &V4_HYBRID_LARGE, width_mult),
        })
    }

    /// Keras' V1: every width scaled by `int(channels * alpha)`, ReLU6, BN eps 1e-3.
    fn v1(alpha: f64) -> Self {
        let scale = |c: usize| ((c as f64 * alpha) as usize).max(1);
        let stem = scale(32);
        let norm = NormConfig::new().with_epsilon(1e-3).with_momentum(0.01);
        let mut in_channels = stem;
        let blocks = V1_BLOCKS.iter().map(|row| {
            let out = scale(row.channels);
            let block = DepthwiseSeparableConvConfig::new(in_channels, out)
                .with_stride(row.stride)
                .with_activation(Activation::Relu6)
                .with_norm(norm);
            in_channels = out;
            (row.stride, BlockConfig::Separable(block))
        });
        Self {
            architecture: Architecture::V1,
            stem: LayerSpec {
                channels: stem,
                activation: Activation::Relu6,
            },
            stages: by_resolution(blocks),
            last_conv: None,
            classifier_hidden: None,
            head_conv: None,
            norm,
        }
    }

    /// torchvision's V2: widths through `make_divisible(c * w, 8)`, last conv never
    /// narrower than 1280.
    fn v2(width_mult: f64) -> Self {
        let stem = make_divisible(32.0 * width_mult, 8);
        let mut in_channels = stem;
        let mut stages = Vec::new();
        for stage in &V2_STAGES {
            let out = make_divisible(stage.channels as f64 * width_mult, 8);
            let blocks = (0..stage.repeats).map(|i| {
                let block =
                    InvertedResidualConfig::new(in_channels, in_channels * stage.expansion, out)
                        .with_stride(if i == 0 { stage.stride } else { 1 })
                        .with_activation(Activation::Relu6)
                        .with_norm(NormConfig::new());
                in_channels = out;
                BlockConfig::InvertedResidual(block)
            });
            stages.push(blocks.collect());
        }
        Self {
            architecture: Architecture::V2,
            stem: LayerSpec {
                channels: stem,
                activation: Activation::Relu6,
            },
            stages,
            last_conv: Some(LayerSpec {
                channels: make_divisible(1280.0 * width_mult.max(1.0), 8),
                activation: Activation::Relu6,
            }),
            classifier_hidden: None,
            head_conv: None,
            norm: NormConfig::new(),
        }
    }

    /// torchvision's V3: every width through `make_divisible(c * w, 8)`, SE bottleneck
    /// `make_divisible(expanded / 4, 8)`, last conv 6× the body's output.
    fn v3(architecture: Architecture, table: &[V3Row], last: usize, width_mult: f64) -> Self {
        let adjust = |c: usize| make_divisible(c as f64 * width_mult, 8);
        let norm = NormConfig::new().with_epsilon(1e-3).with_momentum(0.01);
        let stem = adjust(16);
        let mut in_channels = stem;
        let blocks = table.iter().map(|row| {
            let expanded = adjust(row.expanded);
            let block = InvertedResidualConfig::new(in_channels, expanded, adjust(row.channels))
                .with_kernel_size(row.kernel_size)
                .with_stride(row.stride)
                .with_squeeze_channels(
                    row.squeeze_excite
                        .then(|| make_divisible((expanded / 4) as f64, 8)),
                )
                .with_activation(row.activation)
                .with_norm(norm);
            in_channels = block.out_channels;
            (row.stride, BlockConfig::InvertedResidual(block))
        });
        let stages = by_resolution(blocks);
        Self {
            architecture,
            stem: LayerSpec {
                channels: stem,
                activation: Activation::HardSwish,
            },
            stages,
            last_conv: Some(LayerSpec {
                channels: 6 * in_channels,
                activation: Activation::HardSwish,
            }),
            classifier_hidden: Some(LayerSpec {
                channels: adjust(last),
                activation: Activation::HardSwish,
            }),
            head_conv: None,
            norm,
        }
    }

    /// timm's V4: block widths through `make_divisible(c * w, 8)`, the stem's too unless
    /// `w < 1`, expansions `make_divisible(in * e, 8)`, the head conv 1280 wide at every
    /// width; BatchNorm eps 1e-5, momentum 0.1.
    fn v4(architecture: Architecture, table: &V4Table, width_mult: f64) -> Self {
        let round = |c: usize| make_divisible(c as f64 * width_mult, 8);
        let expand = |c: usize, e: f64| make_divisible(c as f64 * e, 8);
        let norm = NormConfig::new();
        let activation = table.activation;
        let stem = if width_mult < 1.0 {
            table.stem
        } else {
            round(table.stem)
        };
        let mut in_channels = stem;
        let mut stages = Vec::with_capacity(table.stages.len());
        for rows in table.stages {
            let mut stage = Vec::new();
            for row in rows.iter() {
                let out = round(row.channels);
                for i in 0..row.repeats {
                    let first = |stride: usize| if i == 0 { stride } else { 1 };
                    stage.push(match row.block {
                        V4Block::Conv { kernel, stride } => BlockConfig::Conv(
                            ConvNormActConfig::new(in_channels, out, kernel)
                                .with_stride(first(stride))
                                .with_activation(activation)
                                .with_norm(norm),
                        ),
                        V4Block::Fused {
                            kernel,
                            stride,
                            expansion,
                        } => BlockConfig::FusedInvertedBottleneck(
                            FusedInvertedBottleneckConfig::new(
                                in_channels,
                                expand(in_channels, expansion),
                                out,
                            )
                            .with_kernel_size(kernel)
                            .with_stride(first(stride))
                            .with_activation(activation)
                            .with_norm(norm),
                        ),
                        V4Block::Universal {
                            start,
                            middle,
                            stride,
                            expansion,
                        } => BlockConfig::UniversalInvertedBottleneck(
                            UniversalInvertedBottleneckConfig::new(
                                in_channels,
                                expand(in_channels, expansion),
                                out,
                            )
                            .with_start_kernel_size((start > 0).then_some(start))
                            .with_middle_kernel_size((middle > 0).then_some(middle))
                            .with_stride(first(stride))
                            .with_activation(activation)
                            .with_norm(norm)
                            .with_layer_scale(table.layer_scale),
                        ),
                        V4Block::Attention {
                            heads,
                            dim,
                            kv_stride,
                        } => BlockConfig::MobileAttention(
                            MobileAttentionConfig::new(in_channels, out, heads, dim, dim)
                                .with_kv_stride(kv_stride)
                                .with_norm(norm)
                                .with_layer_scale(table.layer_scale),
                        ),
                    });
                    in_channels = out;
                }
            }
            stages.push(stage);
        }
        Self {
            architecture,
            stem: LayerSpec {
                channels: stem,
                activation,
            },
            stages,
            last_conv: None,
            classifier_hidden: None,
            head_conv: Some(LayerSpec {
                channels: 1280,
                activation,
            }),
            norm,
        }
    }

    /// The body blocks in order, across stages.
    pub fn blocks(&self) -> impl Iterator<Item = &BlockConfig> {
        self.stages.iter().flatten()
    }

    /// Channels of the body's output, after the last conv if there is one.
    pub fn feature_channels(&self) -> usize {
        match &self.last_conv {
            Some(layer) => layer.channels,
            None => self.body_channels(),
        }
    }

    /// Channels of the last body block's output (the stem's without blocks).
    pub fn body_channels(&self) -> usize {
        self.blocks()
            .last()
            .map_or(self.stem.channels, BlockConfig::out_channels)
    }

    /// The same spec with `norm` as every BatchNorm's settings.
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        self.norm = norm;
        for block in self.stages.iter_mut().flatten() {
            block.set_norm(norm);
        }
        self
    }
}

/// Blocks grouped into stages: a new stage at each block that shrinks the maps (given
/// with its stride).
fn by_resolution(blocks: impl Iterator<Item = (usize, BlockConfig)>) -> Vec<Vec<BlockConfig>> {
    let mut stages: Vec<Vec<BlockConfig>> = Vec::new();
    for (stride, block) in blocks {
        match stages.last_mut() {
            Some(stage) if stride == 1 => stage.push(block),
            _ => stages.push(vec![block]),
        }
    }
    stages
}
