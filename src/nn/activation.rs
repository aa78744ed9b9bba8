use burn::tensor::Tensor;
use burn::tensor::activation::{hard_sigmoid, relu};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// Pointwise non-linearities used by the MobileNet family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV1/V2).
    Relu6,
    /// `x * relu6(x + 3) / 6` (MobileNetV3).
    HardSwish,
    /// No activation (the linear bottleneck of V2/V3 blocks).
    Identity,
}

impl Activation {
    /// Applies the activation element-wise.
    ///
    /// # Shapes
    /// - input: any shape
    /// - output: the input's shape
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Relu => relu(x),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::HardSwish => x.clone() * hard_sigmoid(x, 1.0 / 6.0, 0.5),
            Activation::Identity => x,
        }
    }
}
