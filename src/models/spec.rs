//! The MobileNet architectures (and their relatives EfficientNet and MnasNet) as data.
//!
//! Each variant is a table of blocks (as in the papers, torchvision's `mobilenetv2.py` /
//! `mobilenetv3.py` / `efficientnet.py` / `mnasnet.py` and timm's `_gen_mobilenet_v4`);
//! [`MobileNetSpec::new`] applies the width multiplier (and EfficientNet's depth
//! coefficient) with each variant's rounding rule and yields the concrete rows,
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
    MobileAttention, MobileAttentionConfig, NormConfig, SqueezeGate, UniversalInvertedBottleneck,
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
    /// EfficientNet-B0 (Tan & Le 2019), torchvision layout.
    #[serde(rename = "efficientnet-b0")]
    EfficientNetB0,
    /// EfficientNet-B1: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b1")]
    EfficientNetB1,
    /// EfficientNet-B2: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b2")]
    EfficientNetB2,
    /// EfficientNet-B3: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b3")]
    EfficientNetB3,
    /// EfficientNet-B4: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b4")]
    EfficientNetB4,
    /// EfficientNet-B5: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b5")]
    EfficientNetB5,
    /// EfficientNet-B6: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b6")]
    EfficientNetB6,
    /// EfficientNet-B7: B0 scaled in width and depth, torchvision layout.
    #[serde(rename = "efficientnet-b7")]
    EfficientNetB7,
    /// EfficientNetV2-S (Tan & Le 2021), torchvision layout.
    #[serde(rename = "efficientnet-v2-s")]
    EfficientNetV2S,
    /// EfficientNetV2-M (Tan & Le 2021), torchvision layout.
    #[serde(rename = "efficientnet-v2-m")]
    EfficientNetV2M,
    /// EfficientNetV2-L (Tan & Le 2021), torchvision layout.
    #[serde(rename = "efficientnet-v2-l")]
    EfficientNetV2L,
    /// MnasNet-B1 (Tan et al. 2019), torchvision layout; the width multiplier is
    /// torchvision's `alpha` (`mnasnet0_5`, `mnasnet0_75`, `mnasnet1_0`, `mnasnet1_3`).
    #[serde(rename = "mnasnet")]
    MnasNet,
}

impl Architecture {
    /// All variants, in order: the one list the command lines, the cost table and the
    /// docs read.
    pub const ALL: [Architecture; 21] = [
        Architecture::V1,
        Architecture::V2,
        Architecture::V3Small,
        Architecture::V3Large,
        Architecture::V4ConvSmall,
        Architecture::V4ConvMedium,
        Architecture::V4ConvLarge,
        Architecture::V4HybridMedium,
        Architecture::V4HybridLarge,
        Architecture::EfficientNetB0,
        Architecture::EfficientNetB1,
        Architecture::EfficientNetB2,
        Architecture::EfficientNetB3,
        Architecture::EfficientNetB4,
        Architecture::EfficientNetB5,
        Architecture::EfficientNetB6,
        Architecture::EfficientNetB7,
        Architecture::EfficientNetV2S,
        Architecture::EfficientNetV2M,
        Architecture::EfficientNetV2L,
        Architecture::MnasNet,
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
            Architecture::EfficientNetB0 => "efficientnet-b0",
            Architecture::EfficientNetB1 => "efficientnet-b1",
            Architecture::EfficientNetB2 => "efficientnet-b2",
            Architecture::EfficientNetB3 => "efficientnet-b3",
            Architecture::EfficientNetB4 => "efficientnet-b4",
            Architecture::EfficientNetB5 => "efficientnet-b5",
            Architecture::EfficientNetB6 => "efficientnet-b6",
            Architecture::EfficientNetB7 => "efficientnet-b7",
            Architecture::EfficientNetV2S => "efficientnet-v2-s",
            Architecture::EfficientNetV2M => "efficientnet-v2-m",
            Architecture::EfficientNetV2L => "efficientnet-v2-l",
            Architecture::MnasNet => "mnasnet",
        }
    }

    /// Whether its weights are in timm's layout (V4) rather than torchvision's.
    pub fn is_timm(&self) -> bool {
        self.family() == Family::MobileNetV4
    }

    /// The name of the PyTorch model it matches (torchvision's `mobilenet_v2`, ...,
    /// `efficientnet_b0`, ..., `mnasnet1_0` (at width 1.0), timm's `mobilenetv4_conv_small`,
    /// ...; V1 has none and takes torchvision's style): what `scripts/bench_torch.py` builds.
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
            Architecture::EfficientNetB0 => "efficientnet_b0",
            Architecture::EfficientNetB1 => "efficientnet_b1",
            Architecture::EfficientNetB2 => "efficientnet_b2",
            Architecture::EfficientNetB3 => "efficientnet_b3",
            Architecture::EfficientNetB4 => "efficientnet_b4",
            Architecture::EfficientNetB5 => "efficientnet_b5",
            Architecture::EfficientNetB6 => "efficientnet_b6",
            Architecture::EfficientNetB7 => "efficientnet_b7",
            Architecture::EfficientNetV2S => "efficientnet_v2_s",
            Architecture::EfficientNetV2M => "efficientnet_v2_m",
            Architecture::EfficientNetV2L => "efficientnet_v2_l",
            Architecture::MnasNet => "mnasnet1_0",
        }
    }
}

impl Architecture {
    /// Dropout before the classifier in the reference model's constructor: Keras' 1e-3 for
    /// V1, torchvision's 0.2 for V2, V3 and MnasNet, timm's 0 for V4, and EfficientNet's
    /// per variant (B0–B1 0.2, B2–B3 0.3, B4–B5 0.4, B6–B7 0.5; V2-S 0.2, V2-M 0.3,
    /// V2-L 0.4).
    pub fn reference_dropout(&self) -> f64 {
        use Architecture::*;
        match self {
            V1 => 1e-3,
            V4ConvSmall | V4ConvMedium | V4ConvLarge | V4HybridMedium | V4HybridLarge => 0.0,
            EfficientNetB2 | EfficientNetB3 | EfficientNetV2M => 0.3,
            EfficientNetB4 | EfficientNetB5 | EfficientNetV2L => 0.4,
            EfficientNetB6 | EfficientNetB7 => 0.5,
            _ => 0.2,
        }
    }

    /// Stochastic depth rate in the reference model's constructor: torchvision's 0.2 for
    /// every EfficientNet, 0 otherwise (torchvision's MobileNets and MnasNet have none;
    /// timm's `create_model` leaves it at 0).
    pub fn reference_drop_path_rate(&self) -> f64 {
        match self.family() {
            Family::EfficientNet => 0.2,
            _ => 0.0,
        }
    }

    /// The family whose builder and weight layout the variant follows.
    pub fn family(&self) -> Family {
        use Architecture::*;
        match self {
            V1 | V2 | V3Small | V3Large => Family::MobileNet,
            V4ConvSmall | V4ConvMedium | V4ConvLarge | V4HybridMedium | V4HybridLarge => {
                Family::MobileNetV4
            }
            MnasNet => Family::MnasNet,
            _ => Family::EfficientNet,
        }
    }
}

/// The model families, each with its own builder rules and PyTorch key layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// MobileNetV1–V3 (torchvision's `mobilenetv2.py` / `mobilenetv3.py` layout).
    MobileNet,
    /// MobileNetV4 (timm's `mobilenetv3.py` layout).
    MobileNetV4,
    /// EfficientNet B0–B7 and V2 (torchvision's `efficientnet.py`).
    EfficientNet,
    /// MnasNet (torchvision's `mnasnet.py`).
    MnasNet,
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

/// An EfficientNet stage (torchvision's `MBConvConfig` / `FusedMBConvConfig`, the papers'
/// table rows): `repeats` blocks at width and depth 1.0, the first with `stride`.
struct EfficientNetStage {
    /// FusedMBConv (a full k×k expansion) rather than MBConv (1×1 expand, depthwise k×k,
    /// squeeze-excitation).
    fused: bool,
    /// Expansion ratio: expanded = `make_divisible(in × ratio, 8)`.
    expansion: f64,
    kernel: usize,
    stride: usize,
    /// Input channels at width 1.0.
    in_channels: usize,
    /// Output channels at width 1.0.
    channels: usize,
    repeats: usize,
}

/// `MBConvConfig(expand_ratio, kernel, stride, in, out, layers)`.
const fn mbconv(
    expansion: f64,
    kernel: usize,
    stride: usize,
    in_channels: usize,
    channels: usize,
    repeats: usize,
) -> EfficientNetStage {
    EfficientNetStage {
        fused: false,
        expansion,
        kernel,
        stride,
        in_channels,
        channels,
        repeats,
    }
}

/// `FusedMBConvConfig(expand_ratio, kernel, stride, in, out, layers)`.
const fn fused_mbconv(
    expansion: f64,
    kernel: usize,
    stride: usize,
    in_channels: usize,
    channels: usize,
    repeats: usize,
) -> EfficientNetStage {
    EfficientNetStage {
        fused: true,
        ..mbconv(expansion, kernel, stride, in_channels, channels, repeats)
    }
}

/// EfficientNet-B0's body (Tan & Le 2019, table 1), which B1–B7 scale.
const EFFICIENTNET_B_STAGES: [EfficientNetStage; 7] = [
    mbconv(1.0, 3, 1, 32, 16, 1),
    mbconv(6.0, 3, 2, 16, 24, 2),
    mbconv(6.0, 5, 2, 24, 40, 2),
    mbconv(6.0, 3, 2, 40, 80, 3),
    mbconv(6.0, 5, 1, 80, 112, 3),
    mbconv(6.0, 5, 2, 112, 192, 4),
    mbconv(6.0, 3, 1, 192, 320, 1),
];

/// EfficientNetV2-S (Tan & Le 2021, table 4).
const EFFICIENTNET_V2_S_STAGES: [EfficientNetStage; 6] = [
    fused_mbconv(1.0, 3, 1, 24, 24, 2),
    fused_mbconv(4.0, 3, 2, 24, 48, 4),
    fused_mbconv(4.0, 3, 2, 48, 64, 4),
    mbconv(4.0, 3, 2, 64, 128, 6),
    mbconv(6.0, 3, 1, 128, 160, 9),
    mbconv(6.0, 3, 2, 160, 256, 15),
];

/// EfficientNetV2-M (torchvision's table).
const EFFICIENTNET_V2_M_STAGES: [EfficientNetStage; 7] = [
    fused_mbconv(1.0, 3, 1, 24, 24, 3),
    fused_mbconv(4.0, 3, 2, 24, 48, 5),
    fused_mbconv(4.0, 3, 2, 48, 80, 5),
    mbconv(4.0, 3, 2, 80, 160, 7),
    mbconv(6.0, 3, 1, 160, 176, 14),
    mbconv(6.0, 3, 2, 176, 304, 18),
    mbconv(6.0, 3, 1, 304, 512, 5),
];

/// EfficientNetV2-L (torchvision's table).
const EFFICIENTNET_V2_L_STAGES: [EfficientNetStage; 7] = [
    fused_mbconv(1.0, 3, 1, 32, 32, 4),
    fused_mbconv(4.0, 3, 2, 32, 64, 7),
    fused_mbconv(4.0, 3, 2, 64, 96, 7),
    mbconv(4.0, 3, 2, 96, 192, 10),
    mbconv(6.0, 3, 1, 192, 224, 19),
    mbconv(6.0, 3, 2, 224, 384, 25),
    mbconv(6.0, 3, 1, 384, 640, 7),
];

/// An EfficientNet variant as torchvision builds it: compound width and depth
/// coefficients, its stages, the last conv's width (`None`: four times the body's
/// output) and BatchNorm settings.
struct EfficientNetVariant {
    width: f64,
    depth: f64,
    stages: &'static [EfficientNetStage],
    last_channels: Option<usize>,
    /// BatchNorm `(epsilon, momentum)`.
    norm: (f64, f64),
}

/// torchvision's `efficientnet_b{i}`: `(width, depth)` coefficients; B5–B7 with BatchNorm
/// eps 1e-3 and momentum 0.01.
const fn efficientnet_b(width: f64, depth: f64, norm: (f64, f64)) -> EfficientNetVariant {
    EfficientNetVariant {
        width,
        depth,
        stages: &EFFICIENTNET_B_STAGES,
        last_channels: None,
        norm,
    }
}

/// torchvision's `efficientnet_v2_*`: BatchNorm eps 1e-3, a 1280-wide last conv.
const fn efficientnet_v2(stages: &'static [EfficientNetStage]) -> EfficientNetVariant {
    EfficientNetVariant {
        width: 1.0,
        depth: 1.0,
        stages,
        last_channels: Some(1280),
        norm: (1e-3, 0.1),
    }
}

const TORCH_NORM: (f64, f64) = (1e-5, 0.1);
const TF_NORM: (f64, f64) = (1e-3, 0.01);

/// torchvision's `efficientnet_*` builders: B1–B7 scale B0 by `(width, depth)`.
fn efficientnet_variant(architecture: Architecture) -> EfficientNetVariant {
    use Architecture::*;
    match architecture {
        EfficientNetB0 => efficientnet_b(1.0, 1.0, TORCH_NORM),
        EfficientNetB1 => efficientnet_b(1.0, 1.1, TORCH_NORM),
        EfficientNetB2 => efficientnet_b(1.1, 1.2, TORCH_NORM),
        EfficientNetB3 => efficientnet_b(1.2, 1.4, TORCH_NORM),
        EfficientNetB4 => efficientnet_b(1.4, 1.8, TORCH_NORM),
        EfficientNetB5 => efficientnet_b(1.6, 2.2, TF_NORM),
        EfficientNetB6 => efficientnet_b(1.8, 2.6, TF_NORM),
        EfficientNetB7 => efficientnet_b(2.0, 3.1, TF_NORM),
        EfficientNetV2S => efficientnet_v2(&EFFICIENTNET_V2_S_STAGES),
        EfficientNetV2M => efficientnet_v2(&EFFICIENTNET_V2_M_STAGES),
        EfficientNetV2L => efficientnet_v2(&EFFICIENTNET_V2_L_STAGES),
        other => unreachable!("{other} is not an EfficientNet"),
    }
}

/// MnasNet-B1's stacks after the stem's separable conv (torchvision's `_stack` calls):
/// `(kernel, stride, expansion, repeats)`, output widths from [`MNASNET_DEPTHS`].
const MNASNET_STACKS: [(usize, usize, usize, usize); 6] = [
    (3, 2, 3, 3),
    (5, 2, 3, 3),
    (5, 2, 6, 3),
    (3, 1, 6, 2),
    (5, 2, 6, 4),
    (3, 1, 6, 1),
];

/// MnasNet's widths at `alpha` 1.0: stem, separable conv, then each stack.
const MNASNET_DEPTHS: [usize; 8] = [32, 16, 24, 40, 80, 96, 192, 320];

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
            Architecture::EfficientNetB0
            | Architecture::EfficientNetB1
            | Architecture::EfficientNetB2
            | Architecture::EfficientNetB3
            | Architecture::EfficientNetB4
            | Architecture::EfficientNetB5
            | Architecture::EfficientNetB6
            | Architecture::EfficientNetB7
            | Architecture::EfficientNetV2S
            | Architecture::EfficientNetV2M
            | Architecture::EfficientNetV2L => Self::efficientnet(
                architecture,
                &efficientnet_variant(architecture),
                width_mult,
            ),
            Architecture::MnasNet => Self::mnasnet(width_mult),
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

    /// torchvision's EfficientNet: widths `make_divisible(c × width, 8)` with `width` the
    /// variant's coefficient times `width_mult` (1.0 gives torchvision's model), depths
    /// `ceil(n × depth)`, expansions `make_divisible(in × ratio, 8)`, squeeze-excitation
    /// `max(1, in / 4)` wide with SiLU and a sigmoid gate, SiLU everywhere, the last conv
    /// four times the body's output (B) or 1280 wide (V2).
    fn efficientnet(
        architecture: Architecture,
        variant: &EfficientNetVariant,
        width_mult: f64,
    ) -> Self {
        let width = variant.width * width_mult;
        let adjust = |c: usize| make_divisible(c as f64 * width, 8);
        let (epsilon, momentum) = variant.norm;
        let norm = NormConfig::new()
            .with_epsilon(epsilon)
            .with_momentum(momentum);
        let silu = Activation::Silu;
        let stem = adjust(variant.stages[0].in_channels);
        let mut in_channels = stem;
        let mut stages = Vec::with_capacity(variant.stages.len());
        for stage in variant.stages {
            let out = adjust(stage.channels);
            let repeats = (stage.repeats as f64 * variant.depth).ceil() as usize;
            let blocks = (0..repeats).map(|i| {
                let stride = if i == 0 { stage.stride } else { 1 };
                let expanded = make_divisible(in_channels as f64 * stage.expansion, 8);
                let block = match stage.fused {
                    // Without expansion torchvision's FusedMBConv is one k×k conv.
                    true => BlockConfig::FusedInvertedBottleneck(
                        FusedInvertedBottleneckConfig::new(
                            in_channels,
                            if expanded == in_channels {
                                out
                            } else {
                                expanded
                            },
                            out,
                        )
                        .with_projection(expanded != in_channels)
                        .with_kernel_size(stage.kernel)
                        .with_stride(stride)
                        .with_activation(silu)
                        .with_norm(norm),
                    ),
                    false => BlockConfig::InvertedResidual(
                        InvertedResidualConfig::new(in_channels, expanded, out)
                            .with_kernel_size(stage.kernel)
                            .with_stride(stride)
                            .with_squeeze_channels(Some((in_channels / 4).max(1)))
                            .with_squeeze_activation(silu)
                            .with_squeeze_gate(SqueezeGate::Sigmoid)
                            .with_activation(silu)
                            .with_norm(norm),
                    ),
                };
                in_channels = out;
                block
            });
            stages.push(blocks.collect());
        }
        Self {
            architecture,
            stem: LayerSpec {
                channels: stem,
                activation: silu,
            },
            stages,
            last_conv: Some(LayerSpec {
                channels: variant.last_channels.unwrap_or(4 * in_channels),
                activation: silu,
            }),
            classifier_hidden: None,
            head_conv: None,
            norm,
        }
    }

    /// torchvision's MnasNet-B1 at `alpha`: widths `make_divisible(d × alpha, 8)` (its
    /// `_round_to_multiple_of` is the same rule), a separable conv after the stem (an
    /// inverted residual without expansion), stacks of inverted residuals expanded exactly
    /// (`in × t`, no rounding), ReLU, a 1280-wide last conv at every alpha, BatchNorm
    /// momentum `1 - 0.9997`.
    fn mnasnet(alpha: f64) -> Self {
        let depths = MNASNET_DEPTHS.map(|d| make_divisible(d as f64 * alpha, 8));
        let norm = NormConfig::new().with_momentum(1.0 - 0.9997);
        let relu = Activation::Relu;
        let separable = InvertedResidualConfig::new(depths[0], depths[0], depths[1])
            .with_activation(relu)
            .with_norm(norm);
        let mut stages = vec![vec![BlockConfig::InvertedResidual(separable)]];
        let mut in_channels = depths[1];
        for (&(kernel, stride, expansion, repeats), &out) in MNASNET_STACKS.iter().zip(&depths[2..])
        {
            let blocks = (0..repeats).map(|i| {
                let block = InvertedResidualConfig::new(in_channels, in_channels * expansion, out)
                    .with_kernel_size(kernel)
                    .with_stride(if i == 0 { stride } else { 1 })
                    .with_activation(relu)
                    .with_norm(norm);
                in_channels = out;
                BlockConfig::InvertedResidual(block)
            });
            stages.push(blocks.collect());
        }
        Self {
            architecture: Architecture::MnasNet,
            stem: LayerSpec {
                channels: depths[0],
                activation: relu,
            },
            stages,
            last_conv: Some(LayerSpec {
                channels: 1280,
                activation: relu,
            }),
            classifier_hidden: None,
            head_conv: None,
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
