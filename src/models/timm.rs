//! timm's key names for MobileNetV4 (`timm.create_model("mobilenetv4_conv_small")` & co.).
//!
//! | ours | timm key |
//! |---|---|
//! | stem | `conv_stem`, `bn1` |
//! | block `j` of stage `s` | `blocks.{s}.{j}` |
//! | conv block (`cn`) | `conv`, `bn1` |
//! | fused inverted bottleneck (`er`) | `conv_exp`, `bn1`, `conv_pwl`, `bn2` |
//! | universal inverted bottleneck (`uir`) | `dw_start`, `pw_exp`, `dw_mid`, `pw_proj` (each `.conv`, `.bn`), `layer_scale.gamma` |
//! | Mobile MQA (`mqa`) | `norm`, `attn.{query, key, value, output}.proj`, `attn.{key, value}.{down_conv, norm}`, `layer_scale.gamma` |
//! | head conv | `conv_head`, `norm_head` |
//! | classifier | `classifier` |

use burn::tensor::backend::Backend;

use super::mobilenet::{MobileNet, Unit};
use super::spec::Block;
use super::torchvision::{TorchKeys, block_position};

/// timm's `ConvNormAct` at `prefix`: `{prefix}.conv`, `{prefix}.bn`.
fn conv_bn(prefix: &str) -> TorchKeys {
    TorchKeys::ConvNorm {
        conv: format!("{prefix}.conv"),
        norm: format!("{prefix}.bn"),
    }
}

/// A conv and its norm under two names of their own.
fn pair(conv: &str, norm: &str) -> TorchKeys {
    TorchKeys::ConvNorm {
        conv: conv.into(),
        norm: norm.into(),
    }
}

/// timm's key prefix of `unit` and the key suffixes of its layers.
pub(super) fn timm_keys<B: Backend>(model: &MobileNet<B>, unit: &Unit) -> (String, Vec<TorchKeys>) {
    let path = unit.path.as_str();
    if let Some(index) = path.strip_prefix("blocks.") {
        let index: usize = index.parse().expect("block paths are blocks.{index}");
        let (stage, within) = block_position(model, path);
        let keys = unit
            .layers
            .iter()
            .map(|layer| {
                let part = layer.path.as_str();
                match (&model.blocks[index], part) {
                    (Block::Conv(_), "") => pair("conv", "bn1"),
                    (Block::FusedInvertedBottleneck(_), "expand") => pair("conv_exp", "bn1"),
                    (Block::FusedInvertedBottleneck(_), "project") => pair("conv_pwl", "bn2"),
                    (Block::UniversalInvertedBottleneck(_), "start_depthwise") => {
                        conv_bn("dw_start")
                    }
                    (Block::UniversalInvertedBottleneck(_), "expand") => conv_bn("pw_exp"),
                    (Block::UniversalInvertedBottleneck(_), "middle_depthwise") => {
                        conv_bn("dw_mid")
                    }
                    (Block::UniversalInvertedBottleneck(_), "project") => conv_bn("pw_proj"),
                    (Block::MobileAttention(_), "norm") => TorchKeys::At("norm".into()),
                    (Block::MobileAttention(_), "attention") => TorchKeys::At("attn".into()),
                    (_, "layer_scale") => TorchKeys::At("layer_scale".into()),
                    (_, part) => unreachable!("no timm key for layer {part:?} of block {index}"),
                }
            })
            .collect();
        return (format!("blocks.{stage}.{within}"), keys);
    }
    let keys = |keys: TorchKeys| vec![keys; unit.layers.len()];
    match path {
        "stem" => (String::new(), keys(pair("conv_stem", "bn1"))),
        "head_conv" => (String::new(), keys(pair("conv_head", "norm_head"))),
        "classifier" => ("classifier".into(), keys(TorchKeys::At(String::new()))),
        other => unreachable!("MobileNetV4 unit {other} has no timm key"),
    }
}
