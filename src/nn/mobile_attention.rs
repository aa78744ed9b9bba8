use burn::config::Config;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;

use super::residual::{check_drop_path, residual};
use super::{
    Activation, BodyBlock, BodyBlockConfig, ConvNormAct, ConvNormActConfig, FeatureMap, LayerInfo,
    LayerKind, LayerScale, LayerScaleConfig, NormConfig, PointwiseConv2d, PointwiseConv2dConfig,
    batch_norm_act_map,
};
use crate::kernels::{DepthwiseBackend, Layout, TO_NCHW};

/// Configuration of a [`MultiQueryAttention`].
#[derive(Config, Debug)]
pub struct MultiQueryAttentionConfig {
    /// Channels of the input map.
    pub in_channels: usize,
    /// Channels of the output map.
    pub out_channels: usize,
    /// Query heads.
    pub heads: usize,
    /// Width of each query head and of the one key.
    pub key_dim: usize,
    /// Width of the one value (each head's output).
    pub value_dim: usize,
    /// Stride of the depthwise convs that shrink the map keys and values are read from; 1
    /// for none.
    #[config(default = 1)]
    pub kv_stride: usize,
    /// Kernel of those depthwise convs.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Settings of their BatchNorms.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
}

/// Multi-query attention over the positions of a map (Shazeer 2019; MobileNetV4's Mobile
/// MQA): `heads` queries per position, one key and one value per position shared by all
/// heads, read from the map shrunk by `kv_stride` (depthwise conv → BatchNorm) when it
/// is above 1. Projections are bias-free 1×1 convs.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, H, W]`
#[derive(Module, Debug)]
pub struct MultiQueryAttention<B: Backend> {
    /// `in → heads · key_dim`.
    pub query: PointwiseConv2d<B>,
    /// Depthwise k×k, stride `kv_stride`, → BN before the key projection.
    pub key_down: Option<ConvNormAct<B>>,
    /// `in → key_dim`.
    pub key: PointwiseConv2d<B>,
    /// Depthwise k×k, stride `kv_stride`, → BN before the value projection.
    pub value_down: Option<ConvNormAct<B>>,
    /// `in → value_dim`.
    pub value: PointwiseConv2d<B>,
    /// `heads · value_dim → out`.
    pub output: PointwiseConv2d<B>,
}

impl MultiQueryAttentionConfig {
    /// Builds the layer, or names the invalid configuration value.
    pub fn try_init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> crate::Result<MultiQueryAttention<B>> {
        let (c, heads) = (self.in_channels, self.heads);
        if heads == 0 || self.key_dim == 0 || self.value_dim == 0 || self.kv_stride == 0 {
            return Err(crate::Error::Config(format!(
                "MultiQueryAttention needs non-zero heads, key_dim, value_dim and kv_stride, got {self:?}"
            )));
        }
        let projection = |inputs: usize, outputs: usize| {
            PointwiseConv2dConfig::new(inputs, outputs)
                .with_bias(false)
                .with_initializer(burn::module::Initializer::XavierUniform { gain: 1.0 })
                .try_init(device)
        };
        let down = || {
            (self.kv_stride > 1)
                .then(|| {
                    ConvNormActConfig::new(c, c, self.kernel_size)
                        .with_stride(self.kv_stride)
                        .with_groups(c)
                        .with_activation(Activation::Identity)
                        .with_norm(self.norm)
                        .try_init(device)
                })
                .transpose()
        };
        Ok(MultiQueryAttention {
            query: projection(c, heads * self.key_dim)?,
            key_down: down()?,
            key: projection(c, self.key_dim)?,
            value_down: down()?,
            value: projection(c, self.value_dim)?,
            output: projection(heads * self.value_dim, self.out_channels)?,
        })
    }
}

impl<B: Backend> MultiQueryAttention<B> {
    /// Query heads: the query projection's width over the one key's.
    pub fn heads(&self) -> usize {
        self.query.out_channels() / self.key.out_channels()
    }

    /// This layer as its block lists it, at module path `path`.
    pub fn describe(&self, path: &str) -> LayerInfo {
        let [key_dim, in_channels] = self.key.weight.dims();
        let down = self.key_down.as_ref().map(|d| d.conv.shape());
        LayerInfo {
            path: path.to_string(),
            kind: LayerKind::MultiQueryAttention {
                in_channels,
                out_channels: self.output.out_channels(),
                heads: self.heads(),
                key_dim,
                value_dim: self.value.out_channels(),
                kv_stride: down.map_or(1, |d| d.stride[0]),
                kernel_size: down.map_or(0, |d| d.kernel[0]),
            },
        }
    }

    /// The layer with the BatchNorms of its key/value convs folded in.
    pub fn fuse_for_inference(mut self) -> Self {
        self.key_down = self.key_down.map(ConvNormAct::fuse_for_inference);
        self.value_down = self.value_down.map(ConvNormAct::fuse_for_inference);
        self
    }
}

/// A map's positions as rows: `[N, H · W, C]`.
fn positions<B: Backend>(map: FeatureMap<B>) -> Tensor<B, 3> {
    let [n, c, h, w] = map.dims();
    match map.layout() {
        Layout::ChannelsFirst => map.into_tensor().reshape([n, c, h * w]).swap_dims(1, 2),
        Layout::ChannelsLast => map.into_tensor().reshape([n, h * w, c]),
    }
}

impl<B: DepthwiseBackend> MultiQueryAttention<B> {
    /// Softmax attention of every position's `heads` queries over the (shrunk) map's keys.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`, a map in either layout
    /// - output: `[N, out_channels, H, W]`, same layout
    pub fn forward(&self, input: FeatureMap<B>) -> FeatureMap<B> {
        let [n, _, h, w] = input.dims();
        let layout = input.layout();
        let heads = self.heads();
        let shrink = |down: &Option<ConvNormAct<B>>, x: FeatureMap<B>| match down {
            Some(down) => down.forward_map(x),
            None => x,
        };
        let key = positions(self.key.forward_map(shrink(&self.key_down, input.clone())));
        let value = positions(
            self.value
                .forward_map(shrink(&self.value_down, input.clone())),
        );
        let query = positions(self.query.forward_map(input));
        let key_dim = key.dims()[2];
        let value_dim = value.dims()[2];
        // [N, L, heads · k] → [N, heads · L, k]: every head's queries against the one key.
        let query = query
            .reshape([n, h * w, heads, key_dim])
            .swap_dims(1, 2)
            .reshape([n, heads * h * w, key_dim]);
        let scores = query.matmul(key.swap_dims(1, 2)) * (key_dim as f64).powf(-0.5);
        let attended = softmax(scores, 2).matmul(value);
        // [N, heads · L, v] → [N, H, W, heads · v], channel = head · v + i as in timm.
        let channels_last = attended
            .reshape([n, heads, h * w, value_dim])
            .swap_dims(1, 2)
            .reshape([n, h, w, heads * value_dim]);
        let map = match layout {
            Layout::ChannelsFirst => FeatureMap::new(channels_last.permute(TO_NCHW), layout),
            Layout::ChannelsLast => FeatureMap::new(channels_last, layout),
        };
        self.output.forward_map(map)
    }
}

/// Configuration of a [`MobileAttention`].
#[derive(Config, Debug)]
pub struct MobileAttentionConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Query heads.
    pub heads: usize,
    /// Width of each query head and of the key.
    pub key_dim: usize,
    /// Width of the value.
    pub value_dim: usize,
    /// Stride of the key/value downsampling; 1 for none.
    #[config(default = 1)]
    pub kv_stride: usize,
    /// Kernel of the key/value downsampling depthwise convs.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// BatchNorm settings.
    #[config(default = "NormConfig::new()")]
    pub norm: NormConfig,
    /// Initial [`LayerScale`] factor on the branch; `None` for no layer scale.
    #[config(default = "None")]
    pub layer_scale: Option<f64>,
    /// Stochastic depth rate of the residual branch ([`super::drop_path`]).
    #[config(default = 0.0)]
    pub drop_path: f64,
}

/// MobileNetV4's attention block: BatchNorm → [`MultiQueryAttention`] → optional layer
/// scale, plus the input when the channel counts match. The map keeps its size.
///
/// - input: `[N, in_channels, H, W]`
/// - output: `[N, out_channels, H, W]`
#[derive(Module, Debug)]
pub struct MobileAttention<B: Backend> {
    /// BatchNorm of the input, no activation.
    pub norm: BatchNorm<B>,
    /// The attention.
    pub attention: MultiQueryAttention<B>,
    /// Per-channel factor on the branch.
    pub layer_scale: Option<LayerScale<B>>,
    /// Whether the input is added to the output.
    pub use_residual: bool,
    /// Stochastic depth rate of the branch (a constant).
    pub drop_path: f64,
}

impl MobileAttentionConfig {
    /// Builds the block. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MobileAttention<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the block, or names the invalid configuration value.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<MobileAttention<B>> {
        check_drop_path("MobileAttention", self.drop_path)?;
        Ok(MobileAttention {
            norm: self.norm.init(self.in_channels, device),
            attention: MultiQueryAttentionConfig::new(
                self.in_channels,
                self.out_channels,
                self.heads,
                self.key_dim,
                self.value_dim,
            )
            .with_kv_stride(self.kv_stride)
            .with_kernel_size(self.kernel_size)
            .with_norm(self.norm)
            .try_init(device)?,
            layer_scale: self.layer_scale.map(|init| {
                LayerScaleConfig::new(self.out_channels)
                    .with_init_value(init)
                    .init(device)
            }),
            use_residual: self.in_channels == self.out_channels,
            drop_path: self.drop_path,
        })
    }
}

impl BodyBlockConfig for MobileAttentionConfig {
    fn set_drop_path(&mut self, rate: f64) {
        self.drop_path = rate;
    }
}

impl<B: Backend> BodyBlock<B> for MobileAttention<B> {
    /// Its layers in order: `norm`, `attention`, `layer_scale` (if any).
    fn layers(&self) -> Vec<LayerInfo> {
        let mut layers = vec![
            LayerInfo {
                path: "norm".into(),
                kind: LayerKind::BatchNorm {
                    channels: self.norm.gamma.dims()[0],
                },
            },
            self.attention.describe("attention"),
        ];
        if let Some(scale) = &self.layer_scale {
            layers.push(scale.describe("layer_scale"));
        }
        layers
    }

    fn fuse_for_inference(mut self) -> Self {
        self.attention = self.attention.fuse_for_inference();
        self
    }

    fn forward_block(&self, input: FeatureMap<B>) -> FeatureMap<B>
    where
        B: DepthwiseBackend,
    {
        self.forward(input)
    }
}

impl<B: DepthwiseBackend> MobileAttention<B> {
    /// Norm, attention, layer scale, plus the input when the shapes allow.
    ///
    /// # Shapes
    /// - input: `[N, in_channels, H, W]`, a map in either layout (or an NCHW tensor)
    /// - output: `[N, out_channels, H, W]`, same layout
    pub fn forward(&self, input: impl Into<FeatureMap<B>>) -> FeatureMap<B> {
        let input = input.into();
        let normed = batch_norm_act_map(input.clone(), &self.norm, Activation::Identity);
        let mut x = self.attention.forward(normed);
        if let Some(scale) = &self.layer_scale {
            x = scale.forward(x);
        }
        match self.use_residual {
            true => residual(x, input, self.drop_path),
            false => x,
        }
    }
}
