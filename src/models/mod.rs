//! The MobileNet family and its relatives (EfficientNet, MnasNet) as data: spec tables
//! ([`spec`]) and one network built from them ([`MobileNet`]), and PyTorch weight
//! import/export ([`StateDict`]: torchvision's key names, timm's for MobileNetV4).

mod mobilenet;
pub mod spec;
mod timm;
mod torchvision;

pub use mobilenet::{MobileNet, MobileNetConfig, Unit};
pub use spec::{
    Architecture, Block, BlockConfig, Family, LayerSpec, MobileNetSpec, make_divisible,
};
#[cfg(feature = "pipeline")]
pub(crate) use torchvision::apply_by_path;
pub use torchvision::{PROBE_SHAPE, StateDict, StateDictMismatch, probe_input};
