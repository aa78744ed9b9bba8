use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::spec::{Architecture, Block, Family, MobileNetSpec};
use crate::kernels::{DepthwiseBackend, Layout};
use crate::nn::{
    Activation, BodyBlock, ConvNormAct, ConvNormActConfig, CrossEntropyLoss,
    CrossEntropyLossConfig, FeatureMap, LayerInfo, LayerKind,
};

/// The strides at which [`MobileNet::forward_features`] returns feature maps.
pub const FEATURE_STRIDES: [usize; 4] = [4, 8, 16, 32];

/// Configuration of a [`MobileNet`]: which variant, how wide, how many classes.
#[derive(Config, Debug, PartialEq)]
pub struct MobileNetConfig {
    /// The variant.
    pub architecture: Architecture,
    /// Number of output classes.
    pub num_classes: usize,
    /// Width multiplier (α): scales every layer's channels with the variant's rounding.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// Dropout probability before the final linear layer.
    #[config(default = 0.2)]
    pub dropout: f64,
    /// BatchNorm momentum instead of the variant's (V1/V3 0.01, V2 0.1). Short trainings
    /// want a faster one: with 0.01 the running statistics that evaluation uses take
    /// hundreds of steps to forget their initial values.
    #[config(default = "None")]
    pub norm_momentum: Option<f64>,
    /// Layout of the activations between layers; `None` takes the backend's
    /// [`DepthwiseBackend::preferred_layout`] (channels-last on the CPU backends). Images
    /// enter as `[N, 3, H, W]` and feature maps leave as `[N, C, H, W]` either way; the
    /// parameters are the same.
    #[config(default = "None")]
    pub layout: Option<Layout>,
    /// Stochastic depth: the drop path rate of the last block's residual branch, rising
    /// linearly from 0 at the first (timm's rule); 0 for none (the default; torchvision
    /// trains V2/V3 without, timm's MobileNetV4 recipes use 0.0–0.35).
    #[config(default = 0.0)]
    pub drop_path_rate: f64,
}

impl MobileNetConfig {
    /// MobileNetV1 (Keras layout, dropout 1e-3 as Keras).
    pub fn v1(num_classes: usize) -> Self {
        Self::new(Architecture::V1, num_classes).with_dropout(1e-3)
    }

    /// MobileNetV2 (torchvision layout, dropout 0.2).
    pub fn v2(num_classes: usize) -> Self {
        Self::new(Architecture::V2, num_classes)
    }

    /// MobileNetV3-Small (torchvision layout, dropout 0.2).
    pub fn v3_small(num_classes: usize) -> Self {
        Self::new(Architecture::V3Small, num_classes)
    }

    /// MobileNetV3-Large (torchvision layout, dropout 0.2).
    pub fn v3_large(num_classes: usize) -> Self {
        Self::new(Architecture::V3Large, num_classes)
    }

    /// `architecture` with the reference model's dropout and stochastic depth rate
    /// ([`Architecture::reference_dropout`], [`Architecture::reference_drop_path_rate`]):
    /// torchvision's `efficientnet_b3(num_classes=...)` is
    /// `MobileNetConfig::reference(Architecture::EfficientNetB3, num_classes)`.
    pub fn reference(architecture: Architecture, num_classes: usize) -> Self {
        Self::new(architecture, num_classes)
            .with_dropout(architecture.reference_dropout())
            .with_drop_path_rate(architecture.reference_drop_path_rate())
    }

    /// The concrete layer list this configuration builds.
    pub fn spec(&self) -> crate::Result<MobileNetSpec> {
        let mut spec = MobileNetSpec::new(self.architecture, self.width_mult)?;
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(crate::Error::Config(format!(
                "drop_path_rate must be in [0, 1), got {}",
                self.drop_path_rate
            )));
        }
        let count = spec.blocks().count();
        for (index, block) in spec.stages.iter_mut().flatten().enumerate() {
            block.set_drop_path(self.drop_path_rate * index as f64 / count as f64);
        }
        match self.norm_momentum {
            Some(momentum) if !(momentum > 0.0 && momentum <= 1.0) => Err(crate::Error::Config(
                format!("norm_momentum must be in (0, 1], got {momentum}"),
            )),
            Some(momentum) => {
                let norm = spec.norm.with_momentum(momentum);
                Ok(spec.with_norm(norm))
            }
            None => Ok(spec),
        }
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        if self.num_classes == 0 {
            return Err(crate::Error::Config(
                "num_classes must be at least 1, got 0".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::Config(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        self.spec().map(|_| ())
    }

    /// Builds the network. Panics on an invalid configuration (see [`Self::try_init`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MobileNet<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the network with torchvision's initialisation (Kaiming-normal fan-out convs,
    /// BN weight 1 / bias 0, zero linear biases; linear weights N(0, 0.01) for the
    /// MobileNets, uniform in ±1/√outputs for EfficientNet, ±√(3/outputs) for MnasNet).
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> crate::Result<MobileNet<B>> {
        self.validate()?;
        let spec = self.spec()?;
        let norm = spec.norm;
        let stem = ConvNormActConfig::new(3, spec.stem.channels, 3)
            .with_stride(2)
            .with_activation(spec.stem.activation)
            .with_norm(norm)
            .try_init(device)?;
        let blocks = spec
            .blocks()
            .map(|b| b.try_init(device))
            .collect::<crate::Result<Vec<_>>>()?;
        let body_out = spec.body_channels();
        let last_conv = spec
            .last_conv
            .map(|layer| {
                ConvNormActConfig::new(body_out, layer.channels, 1)
                    .with_activation(layer.activation)
                    .with_norm(norm)
                    .try_init(device)
            })
            .transpose()?;
        let mut features = spec.feature_channels();
        let head_conv = spec
            .head_conv
            .map(|layer| {
                let conv = ConvNormActConfig::new(features, layer.channels, 1)
                    .with_activation(layer.activation)
                    .with_norm(norm)
                    .try_init(device);
                features = layer.channels;
                conv
            })
            .transpose()?;
        let family = self.architecture.family();
        let classifier_hidden = spec.classifier_hidden.map(|layer| {
            let linear = init_linear(family, features, layer.channels, device);
            features = layer.channels;
            linear
        });
        let classifier = init_linear(family, features, self.num_classes, device);
        Ok(MobileNet {
            stem,
            blocks,
            last_conv,
            head_conv,
            classifier_hidden,
            hidden_activation: spec
                .classifier_hidden
                .map_or(Activation::Identity, |l| l.activation),
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier,
            architecture: self.architecture,
            train_loss: CrossEntropyLossConfig::new().init(),
            layout: self.layout,
            stage_lengths: spec.stages.iter().map(Vec::len).collect(),
        })
    }
}

/// `Linear` with torchvision's initialisation for `family`, and a zero bias.
fn init_linear<B: Backend>(
    family: Family,
    inputs: usize,
    outputs: usize,
    device: &B::Device,
) -> Linear<B> {
    let uniform = |bound: f64| Initializer::Uniform {
        min: -bound,
        max: bound,
    };
    let initializer = match family {
        Family::MobileNet | Family::MobileNetV4 => Initializer::Normal {
            mean: 0.0,
            std: 0.01,
        },
        Family::EfficientNet => uniform(1.0 / (outputs as f64).sqrt()),
        // Kaiming-uniform, fan-out mode, sigmoid gain (1).
        Family::MnasNet => uniform((3.0 / outputs as f64).sqrt()),
    };
    let mut linear = LinearConfig::new(inputs, outputs)
        .with_initializer(initializer)
        .init(device);
    linear.bias = Some(Param::from_tensor(Tensor::zeros([outputs], device)));
    linear
}

/// A MobileNet (V1, V2, V3-Small, V3-Large or a V4), EfficientNet or MnasNet built from a
/// [`MobileNetSpec`].
///
/// - input: images `[N, 3, H, W]`, `H, W >= 32`
/// - output: logits `[N, num_classes]`
#[derive(Module, Debug)]
pub struct MobileNet<B: Backend> {
    /// 3×3 stride-2 conv from RGB → BN → activation.
    pub stem: ConvNormAct<B>,
    /// The body, its stages one after the other.
    pub blocks: Vec<Block<B>>,
    /// 1×1 conv → BN → activation after the body (V2, V3, EfficientNet, MnasNet).
    pub last_conv: Option<ConvNormAct<B>>,
    /// 1×1 conv → BN → activation on the pooled features (V4).
    pub head_conv: Option<ConvNormAct<B>>,
    /// Hidden linear layer of the classifier (V3).
    pub classifier_hidden: Option<Linear<B>>,
    /// Activation after the hidden linear layer.
    pub hidden_activation: Activation,
    /// Dropout before the final linear layer (active only with autodiff, i.e. training).
    pub dropout: Dropout,
    /// Final linear layer, `[features] → [num_classes]`.
    pub classifier: Linear<B>,
    /// The variant.
    pub architecture: Architecture,
    /// The training loss of [`Self::forward_loss`]: cross-entropy with the label smoothing
    /// set by [`Self::with_label_smoothing`] (none by default). A constant, not a parameter.
    pub train_loss: CrossEntropyLoss,
    /// Layout of the activations inside the network, `None` for the backend's preferred
    /// one (a constant; see [`MobileNetConfig::layout`], [`Self::with_layout`] and
    /// [`Self::layout`]).
    pub layout: Option<Layout>,
    /// Blocks per stage of the spec (a constant; weight key schemes that number blocks
    /// by stage read it).
    pub stage_lengths: Vec<usize>,
}

impl<B: Backend> MobileNet<B> {
    /// The network for inference with every BatchNorm folded into the convolution before
    /// it ([`ConvNormAct::fuse_for_inference`]): the same eval-mode logits (to float
    /// rounding) with one pass fewer per layer where the kernel applies the activation,
    /// and no per-call statistics arithmetic. A folded network is for inference only.
    pub fn fuse_for_inference(mut self) -> Self {
        self.stem = self.stem.fuse_for_inference();
        self.blocks = self
            .blocks
            .into_iter()
            .map(BodyBlock::fuse_for_inference)
            .collect();
        self.last_conv = self.last_conv.map(ConvNormAct::fuse_for_inference);
        self.head_conv = self.head_conv.map(ConvNormAct::fuse_for_inference);
        self
    }

    /// The same network running its activations in `layout` (the parameters are shared);
    /// `None` for the backend's preferred layout.
    pub fn with_layout(mut self, layout: Option<Layout>) -> Self {
        self.layout = layout;
        self
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// Smallest input height and width the network accepts (its total stride).
    pub fn min_input_size(&self) -> usize {
        FEATURE_STRIDES[FEATURE_STRIDES.len() - 1]
    }

    /// The model with label smoothing `smoothing` in its training loss
    /// ([`Self::forward_loss`]), or an error naming a value outside `[0, 1)`.
    pub fn with_label_smoothing(mut self, smoothing: f64) -> crate::Result<Self> {
        self.train_loss = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .try_init()?;
        Ok(self)
    }

    /// The label smoothing of the training loss.
    pub fn label_smoothing(&self) -> f64 {
        self.train_loss.smoothing()
    }

    /// Checks an image batch shape: `[N, 3, H, W]` with `N >= 1` and `H, W >= 32`.
    pub fn check_input(&self, dims: [usize; 4]) -> crate::Result<()> {
        let [n, c, h, w] = dims;
        let min = self.min_input_size();
        if c != 3 {
            return Err(crate::Error::Input(format!(
                "MobileNet expects RGB images [N, 3, H, W], got {c} channels (shape {dims:?})"
            )));
        }
        if n == 0 {
            return Err(crate::Error::Input(format!(
                "MobileNet got an empty batch (shape {dims:?})"
            )));
        }
        if h < min || w < min {
            return Err(crate::Error::Input(format!(
                "MobileNet needs images of at least {min}x{min} (its total stride), got {h}x{w} (shape {dims:?})"
            )));
        }
        Ok(())
    }

    /// The network as a list of units (stem, each block, last conv, classifier layers),
    /// each listing its layers: what the cost table, the weight key schemes and the feature
    /// maps are derived from.
    pub fn describe(&self) -> Vec<Unit> {
        let body = |path: String, layers| Unit {
            path,
            layers,
            in_body: true,
        };
        let mut units = vec![body("stem".into(), vec![self.stem.describe("")])];
        for (i, block) in self.blocks.iter().enumerate() {
            units.push(body(format!("blocks.{i}"), block.layers()));
        }
        if let Some(last) = &self.last_conv {
            units.push(body("last_conv".into(), vec![last.describe("")]));
        }
        if let Some(head) = &self.head_conv {
            units.push(Unit {
                path: "head_conv".into(),
                layers: vec![head.describe("")],
                in_body: false,
            });
        }
        if let Some(hidden) = &self.classifier_hidden {
            units.push(Unit::linear("classifier_hidden", hidden));
        }
        units.push(Unit::linear("classifier", &self.classifier));
        units
    }

    /// Indices, among the body units of [`Self::describe`] (stem = 0), of the last unit at
    /// each of [`FEATURE_STRIDES`], with their output channels.
    fn feature_taps(&self) -> Vec<(usize, usize)> {
        let mut stride = 1;
        let strides: Vec<(usize, usize)> = self
            .describe()
            .iter()
            .filter(|unit| unit.in_body)
            .map(|unit| {
                stride *= unit.stride();
                (stride, unit.out_channels())
            })
            .collect();
        FEATURE_STRIDES
            .iter()
            .map(|&s| {
                let index = strides
                    .iter()
                    .rposition(|&(t, _)| t == s)
                    .expect("every MobileNet passes through strides 4, 8, 16 and 32");
                (index, strides[index].1)
            })
            .collect()
    }

    /// Channels of the [`Self::forward_features`] maps, in stride order 4, 8, 16, 32.
    pub fn feature_channels(&self) -> Vec<usize> {
        self.feature_taps()
            .into_iter()
            .map(|(_, channels)| channels)
            .collect()
    }
}

/// One top-level part of a [`MobileNet`]: the stem, a body block, the last 1×1 conv or a
/// classifier layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Module path (`stem`, `blocks.3`, `last_conv`, `classifier_hidden`, `classifier`).
    pub path: String,
    /// Its layers, in execution order.
    pub layers: Vec<LayerInfo>,
    /// Whether it belongs to the feature extractor (stem, blocks, last conv), whose
    /// outputs [`MobileNet::forward_features`] taps.
    pub in_body: bool,
}

impl Unit {
    fn linear<B: Backend>(path: &str, linear: &Linear<B>) -> Self {
        let [inputs, outputs] = linear.weight.dims();
        Unit {
            path: path.into(),
            layers: vec![LayerInfo {
                path: String::new(),
                kind: LayerKind::Linear {
                    inputs,
                    outputs,
                    bias: linear.bias.is_some(),
                },
            }],
            in_body: false,
        }
    }

    /// Product of its layers' strides.
    pub fn stride(&self) -> usize {
        self.layers.iter().map(|l| l.kind.stride()).product()
    }

    /// Output channels of its last layer.
    pub fn out_channels(&self) -> usize {
        self.layers.last().map_or(0, |l| l.kind.out_channels())
    }
}

impl<B: DepthwiseBackend> MobileNet<B> {
    /// The layout the activations run in: the configured one, else the backend's
    /// [`DepthwiseBackend::preferred_layout`].
    pub fn layout(&self) -> Layout {
        self.layout.unwrap_or_else(B::preferred_layout)
    }

    /// Logits and the training loss of a labelled batch: the step both training loops
    /// (the crate's [`crate::train::run`] and, with the `train` feature, burn-train's
    /// `TrainStep`) run.
    ///
    /// # Shapes
    /// - images: `[N, 3, H, W]`
    /// - targets: `[N]`, class indices
    /// - output: (loss `[1]`, logits `[N, num_classes]`)
    pub fn forward_loss(
        &self,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 1>, Tensor<B, 2>) {
        let logits = self.forward(images);
        (self.train_loss.forward(logits.clone(), targets), logits)
    }

    /// Class logits of a batch of images.
    ///
    /// # Shapes
    /// - images: `[N, 3, H, W]`, `H, W >= 32`
    /// - output: logits `[N, num_classes]`
    ///
    /// # Panics
    /// On an input that is not an RGB batch of at least 32×32 (see [`Self::try_forward`]).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.try_forward(images).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checked [`Self::forward`]: a bad input shape is an error naming it.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn try_forward(&self, images: Tensor<B, 4>) -> crate::Result<Tensor<B, 2>> {
        self.check_input(images.dims())?;
        let x = self.body(images, |_, _| ());
        Ok(self.head(x))
    }

    /// Feature maps at strides 4, 8, 16 and 32, for use as a backbone: the output of the
    /// last layer at each stride (the stride-32 map is after the last 1×1 conv, if any).
    /// With an `H×W` input the map at stride `s` is `ceil(H / s) × ceil(W / s)`.
    ///
    /// Channels ([`Self::feature_channels`]) at width 1.0:
    ///
    /// | variant | stride 4 | stride 8 | stride 16 | stride 32 |
    /// |---|---:|---:|---:|---:|
    /// | V1 | 128 | 256 | 512 | 1024 |
    /// | V2 | 24 | 32 | 96 | 1280 |
    /// | V3-Small | 16 | 24 | 48 | 576 |
    /// | V3-Large | 24 | 40 | 112 | 960 |
    ///
    /// Other widths scale them with the variant's rounding.
    ///
    /// # Shapes
    /// - images: `[N, 3, H, W]`, `H, W >= 32`
    /// - output: four maps `[N, feature_channels[i], ceil(H / s), ceil(W / s)]` for
    ///   `s` in 4, 8, 16, 32
    pub fn forward_features(&self, images: Tensor<B, 4>) -> crate::Result<Vec<Tensor<B, 4>>> {
        self.check_input(images.dims())?;
        let taps: Vec<usize> = self.feature_taps().into_iter().map(|(i, _)| i).collect();
        let mut maps = Vec::with_capacity(taps.len());
        self.body(images, |index, x| {
            if taps.contains(&index) {
                maps.push(x.clone().into_nchw());
            }
        });
        Ok(maps)
    }

    /// Stem, blocks and last conv in the model's layout; calls `tap(layer_index, output)`
    /// after each layer.
    fn body(
        &self,
        images: Tensor<B, 4>,
        mut tap: impl FnMut(usize, &FeatureMap<B>),
    ) -> FeatureMap<B> {
        let mut x = self
            .stem
            .forward_map(FeatureMap::from_nchw(images, self.layout()));
        tap(0, &x);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_block(x);
            tap(i + 1, &x);
        }
        if let Some(last) = &self.last_conv {
            x = last.forward_map(x);
            tap(self.blocks.len() + 1, &x);
        }
        x
    }

    /// Global average pool → [hidden linear → activation] → dropout → classifier.
    fn head(&self, features: FeatureMap<B>) -> Tensor<B, 2> {
        let mut x = features.spatial_mean();
        if let Some(head) = &self.head_conv {
            // On 1×1 maps, where both layouts are the same memory.
            let [n, c] = x.dims();
            let y = head.forward(x.reshape([n, c, 1, 1]));
            x = y.reshape([n, head.conv.out_channels()]);
        }
        if let Some(hidden) = &self.classifier_hidden {
            x = self.hidden_activation.forward(hidden.forward(x));
        }
        self.classifier.forward(self.dropout.forward(x))
    }
}
