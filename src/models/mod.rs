//! The MobileNet family as data: spec tables ([`spec`]) and one network built from them
//! ([`MobileNet`]).

mod mobilenet;
pub mod spec;

pub use mobilenet::{Block, MobileNet, MobileNetConfig};
pub use spec::{Architecture, BlockKind, BlockSpec, LayerSpec, MobileNetSpec, make_divisible};
