//! Reusable depthwise-separable building blocks, each a `XConfig` + `X<B>` pair in the
//! style of `burn-nn`: `XConfig::new(..).with_y(..).init(&device)`.

mod batch_norm_act;
mod block;
mod conv_norm_act;
mod depthwise;
mod describe;
mod feature_map;
mod fused_inverted_bottleneck;
mod inverted_residual;
mod loss;
mod mobile_attention;
mod pointwise;
mod residual;
mod separable;
mod squeeze_excite;
mod universal_inverted_bottleneck;

pub use crate::kernels::Activation;
pub use batch_norm_act::{batch_norm_act, batch_norm_act_channels_last, batch_norm_act_map};
pub use block::{BodyBlock, BodyBlockConfig};
pub use conv_norm_act::{ConvLayer, ConvNormAct, ConvNormActConfig, NormConfig};
pub use depthwise::{DepthwiseConv2d, DepthwiseConv2dConfig};
pub use describe::{ConvShape, LayerInfo, LayerKind, WeightLayout, join};
pub use feature_map::FeatureMap;
pub use fused_inverted_bottleneck::{FusedInvertedBottleneck, FusedInvertedBottleneckConfig};
pub use inverted_residual::{InvertedResidual, InvertedResidualConfig};
pub use loss::{CrossEntropyLoss, CrossEntropyLossConfig};
pub use mobile_attention::{
    MobileAttention, MobileAttentionConfig, MultiQueryAttention, MultiQueryAttentionConfig,
};
pub use pointwise::{PointwiseConv2d, PointwiseConv2dConfig};
pub use residual::{LayerScale, LayerScaleConfig, drop_path};
pub use separable::{DepthwiseSeparableConv, DepthwiseSeparableConvConfig};
pub use squeeze_excite::{SqueezeExcitation, SqueezeExcitationConfig, SqueezeGate};
pub use universal_inverted_bottleneck::{
    UniversalInvertedBottleneck, UniversalInvertedBottleneckConfig,
};

use burn::module::Initializer;

/// torchvision's conv initialisation: Kaiming normal, fan-out mode, ReLU gain.
pub(crate) fn kaiming_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// Checks that a 4-D input has the expected channel count.
pub(crate) fn check_channels(module: &str, dims: [usize; 4], expected: usize) -> crate::Result<()> {
    if dims[1] != expected {
        return Err(crate::Error::Input(format!(
            "{module} expects {expected} input channels, got input of shape {dims:?}"
        )));
    }
    Ok(())
}
