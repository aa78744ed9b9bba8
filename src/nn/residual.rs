//! What residual blocks share: stochastic depth and layer scale.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use super::{FeatureMap, LayerInfo, LayerKind};

/// Stochastic depth ("drop path", Huang et al. 2016) on a residual branch: while training
/// (autodiff on), each image's branch output is zeroed with probability `rate` and the
/// kept ones scaled by `1 / (1 - rate)`; in inference, or at rate 0, the branch as is.
/// The draw comes from the backend's seeded generator (`B::seed`), as Burn's dropout, so the
/// same seed gives the same bits.
///
/// # Shapes
/// - branch: `[N, C, H, W]`, a map in either layout
/// - output: the same
pub fn drop_path<B: Backend>(branch: FeatureMap<B>, rate: f64) -> FeatureMap<B> {
    let device = branch.device();
    if rate == 0.0 || !B::ad_enabled(&device) {
        return branch;
    }
    let keep = 1.0 - rate;
    let n = branch.dims()[0];
    let mask = Tensor::<B, 1>::random([n], Distribution::Bernoulli(keep), &device) / keep;
    branch.map(|x| x * mask.reshape([n, 1, 1, 1]))
}

/// `branch + shortcut`, the branch through [`drop_path`] at `rate`.
pub(crate) fn residual<B: Backend>(
    branch: FeatureMap<B>,
    shortcut: FeatureMap<B>,
    rate: f64,
) -> FeatureMap<B> {
    drop_path(branch, rate) + shortcut
}

/// Checks a stochastic depth rate: in `[0, 1)`.
pub(crate) fn check_drop_path(module: &str, rate: f64) -> crate::Result<()> {
    if !(0.0..1.0).contains(&rate) {
        return Err(crate::Error::Config(format!(
            "{module} drop_path must be in [0, 1), got {rate}"
        )));
    }
    Ok(())
}

/// Configuration of a [`LayerScale`].
#[derive(Config, Debug)]
pub struct LayerScaleConfig {
    /// Channels scaled.
    pub channels: usize,
    /// Initial value of every factor (timm's MobileNetV4 hybrids: 1e-5).
    #[config(default = 1e-5)]
    pub init_value: f64,
}

/// Layer scale (Touvron et al. 2021, CaiT): a learned factor per channel on a residual
/// branch, started small so that a deep network starts near the identity.
///
/// - input: `[N, C, H, W]`, a map in either layout
/// - output: the same
#[derive(Module, Debug)]
pub struct LayerScale<B: Backend> {
    /// The factors, `[C]` (timm: `gamma`).
    pub gamma: Param<Tensor<B, 1>>,
}

impl LayerScaleConfig {
    /// Builds the layer.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LayerScale<B> {
        LayerScale {
            gamma: Param::from_tensor(Tensor::full([self.channels], self.init_value, device)),
        }
    }
}

impl<B: Backend> LayerScale<B> {
    /// This layer as its block lists it, at module path `path`.
    pub fn describe(&self, path: &str) -> LayerInfo {
        LayerInfo {
            path: path.to_string(),
            kind: LayerKind::LayerScale {
                channels: self.gamma.dims()[0],
            },
        }
    }

    /// Each channel times its factor.
    ///
    /// # Shapes
    /// - input: `[N, C, H, W]`, a map in either layout
    /// - output: the same
    pub fn forward(&self, input: FeatureMap<B>) -> FeatureMap<B> {
        let channels = self.gamma.dims()[0];
        input.scale_channels(self.gamma.val().reshape([1, channels]))
    }
}
