//! The activations of the MobileNet family, defined once: as tensor ops (forward and
//! derivative, for the modules and the fallback kernels) and on scalars (for the CPU
//! kernels). The derivative follows PyTorch at the kinks.

use burn::tensor::Tensor;
use burn::tensor::activation::{hard_sigmoid, relu, sigmoid};
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
    /// `x · Φ(x)`, Φ the standard normal CDF (the exact form, PyTorch's `nn.GELU()`;
    /// MobileNetV4-Hybrid-Large).
    Gelu,
    /// `x · σ(x)`, σ the logistic sigmoid (SiLU or swish; EfficientNet).
    Silu,
}

/// `1 / sqrt(2)`.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// The error function to about 1e-7 (the standard library has none): the Chebyshev fit of
/// erfc in Numerical Recipes (fractional error below 1.2e-7), evaluated in f64.
fn erf(x: f32) -> f32 {
    let z = f64::from(x).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erf = 1.0 - erfc;
    (if x >= 0.0 { erf } else { -erf }) as f32
}

/// Evaluates `$body` with `$act` and `$deriv` bound to `activation`'s function and its
/// derivative as closures of its constant variant: one `match` per call, so that the
/// loops in `$body` are compiled once per variant and vectorise (a `match` per element
/// does not, and stops being inlined once the enum holds GELU and SiLU).
macro_rules! per_activation {
    ($activation:expr, |$act:ident, $deriv:ident| $body:expr) => {{
        use $crate::kernels::Activation;
        match $activation {
            Activation::Relu => {
                let $act = |z: f32| Activation::Relu.apply_scalar(z);
                let $deriv = |z: f32| Activation::Relu.derivative_scalar(z);
                $body
            }
            Activation::Relu6 => {
                let $act = |z: f32| Activation::Relu6.apply_scalar(z);
                let $deriv = |z: f32| Activation::Relu6.derivative_scalar(z);
                $body
            }
            Activation::HardSwish => {
                let $act = |z: f32| Activation::HardSwish.apply_scalar(z);
                let $deriv = |z: f32| Activation::HardSwish.derivative_scalar(z);
                $body
            }
            Activation::Identity => {
                let $act = |z: f32| Activation::Identity.apply_scalar(z);
                let $deriv = |z: f32| Activation::Identity.derivative_scalar(z);
                $body
            }
            Activation::Gelu => {
                let $act = |z: f32| Activation::Gelu.apply_scalar(z);
                let $deriv = |z: f32| Activation::Gelu.derivative_scalar(z);
                $body
            }
            Activation::Silu => {
                let $act = |z: f32| Activation::Silu.apply_scalar(z);
                let $deriv = |z: f32| Activation::Silu.derivative_scalar(z);
                $body
            }
        }
    }};
}
pub(crate) use per_activation;

/// The logistic sigmoid `1 / (1 + e^-z)`.
#[inline(always)]
fn logistic(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// `e^x` to within 2e-7 relative for `|x| < 87` (beyond, the value at ±87), without a
/// branch or a call, so that the CPU kernels' row loops vectorise it: the C library's
/// `expf` is a call per element, which took 17% of an EfficientNet-B0 training step.
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor polynomial of degree 7,
/// `2^n` written into the exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // 1.5 × 2^23: adding it rounds to an integer (ties to even) in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
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
            // The exact form through `erf`: Burn's `gelu` is the tanh approximation on some
            // backends (Candle's), 2.5e-3 off timm's MobileNetV4-Hybrid-Large logits.
            Activation::Gelu => {
                let cdf = (x.clone() * f64::from(FRAC_1_SQRT_2)).erf() * 0.5 + 0.5;
                x * cdf
            }
            Activation::Silu => x.clone() * sigmoid(x),
        }
    }

    /// The derivative at `z`, element-wise, as a tensor of `0`/`1`/slopes.
    pub fn derivative<B: Backend, const D: usize>(&self, z: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::Relu => z.greater_elem(0.0).float(),
            Activation::Relu6 => z.clone().greater_elem(0.0).float() * z.lower_elem(6.0).float(),
            Activation::HardSwish => {
                let middle = z.clone().greater_equal_elem(-3.0).float()
                    * z.clone().lower_equal_elem(3.0).float();
                let above = z.clone().greater_elem(3.0).float();
                middle * (z / 3.0 + 0.5) + above
            }
            Activation::Identity => z.ones_like(),
            // Φ(z) + z·φ(z).
            Activation::Gelu => {
                let cdf = (z.clone() * f64::from(FRAC_1_SQRT_2)).erf() * 0.5 + 0.5;
                let density = (z.clone().powi_scalar(2) * -0.5).exp() * f64::from(FRAC_1_SQRT_2PI);
                cdf + z * density
            }
            // σ(z) · (1 + z · (1 − σ(z))).
            Activation::Silu => {
                let gate = sigmoid(z.clone());
                gate.clone() * ((gate.neg() + 1.0) * z + 1.0)
            }
        }
    }

    /// The activation of one value (the same function as [`Self::forward`]).
    #[inline(always)]
    pub fn apply_scalar(&self, z: f32) -> f32 {
        match self {
            Activation::Relu => z.max(0.0),
            Activation::Relu6 => z.clamp(0.0, 6.0),
            Activation::HardSwish => z * (z + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Identity => z,
            Activation::Gelu => 0.5 * z * (1.0 + erf(z * FRAC_1_SQRT_2)),
            Activation::Silu => z * logistic(z),
        }
    }

    /// The derivative at one value (the same function as [`Self::derivative`]).
    #[inline(always)]
    pub fn derivative_scalar(&self, z: f32) -> f32 {
        match self {
            Activation::Relu => f32::from(z > 0.0),
            Activation::Relu6 => f32::from(z > 0.0 && z < 6.0),
            Activation::HardSwish => {
                if z < -3.0 {
                    0.0
                } else if z <= 3.0 {
                    z / 3.0 + 0.5
                } else {
                    1.0
                }
            }
            Activation::Identity => 1.0,
            Activation::Gelu => {
                0.5 * (1.0 + erf(z * FRAC_1_SQRT_2)) + z * FRAC_1_SQRT_2PI * (-0.5 * z * z).exp()
            }
            Activation::Silu => {
                let gate = logistic(z);
                gate * (1.0 + z * (1.0 - gate))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2e7_relative_of_f64() {
        let mut worst = 0.0f64;
        for i in -86_900..=86_900 {
            let x = i as f32 * 1e-3;
            let exact = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - exact).abs() / exact);
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn silu_derivative_matches_finite_differences() {
        for i in -80..=80 {
            let z = i as f64 * 0.1;
            let h = 1e-3;
            let f = |z: f64| Activation::Silu.apply_scalar(z as f32) as f64;
            let numeric = (f(z + h) - f(z - h)) / (2.0 * h);
            let analytic = Activation::Silu.derivative_scalar(z as f32) as f64;
            assert!(
                (numeric - analytic).abs() < 1e-3,
                "silu'({z}): {analytic} vs {numeric}"
            );
        }
    }
}
