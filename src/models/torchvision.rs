//! PyTorch weight interchange: a [`MobileNet`]'s tensors under the key names and
//! layouts of torchvision's `mobilenet_v2` / `mobilenet_v3_small` / `mobilenet_v3_large`,
//! `efficientnet_b0` ... `efficientnet_v2_l` and `mnasnet*` (timm's for MobileNetV4, see
//! `models/timm.rs`).
//!
//! Keys come from the model's own description ([`MobileNet::describe`]): each block lists
//! its layers, and the numbering below gives each layer its torchvision key, so every
//! width multiplier and class count maps without per-layer lists:
//!
//! | ours | torchvision key |
//! |---|---|
//! | stem | `features.0.{0: conv, 1: bn}` |
//! | block `i` | `features.{i+1}` |
//! | V2 block parts | `conv.{j}`: [expand], depthwise as conv+bn pairs; project as `conv.{j}` (conv) and `conv.{j+1}` (bn) |
//! | V3 block parts | `block.{j}`: [expand], depthwise, [squeeze-excitation `fc1`/`fc2`], project |
//! | last 1×1 conv | `features.{blocks+1}` |
//! | V2 classifier | `classifier.1` (`classifier.0` is dropout) |
//! | V3 classifier | `classifier.0` (hidden linear), `classifier.3` |
//!
//! EfficientNet numbers its blocks by stage, `features.{s+1}.{j}.block.{k}` (parts as V3's;
//! FusedMBConv: the k×k conv, then the projection if any), the last conv
//! `features.{stages+1}`, the classifier `classifier.1`. MnasNet is one `layers` list: stem
//! `layers.{0,1}`, its separable conv `layers.{3,4}` and `layers.{6,7}`, stack `s`
//! `layers.{7+s}.{j}.layers.{0,1 | 3,4 | 6,7}`, last conv `layers.{14,15}`, classifier
//! `classifier.1`.
//!
//! MobileNetV1 has no torchvision model; its layout here is our own, in the same style:
//! `features.0` stem, `features.{i+1}.conv.0` depthwise conv+bn, `features.{i+1}.conv.1`
//! pointwise conv+bn, `classifier.1` linear.
//!
//! Layouts: BatchNorm `gamma`/`beta` are torch's `weight`/`bias` and every BatchNorm also
//! carries torch's `num_batches_tracked` (ignored on import, written as 0 on export);
//! [`crate::nn::PointwiseConv2d`]'s `[out, in]` weight is torch's `[out, in, 1, 1]`; Burn's
//! `Linear` weight `[in, out]` is torch's `[out, in]` transposed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use burn_store::{ModuleSnapshot, TensorSnapshot};

use super::mobilenet::{MobileNet, MobileNetConfig, Unit};
use super::spec::{Architecture, Family};
use crate::Error;
use crate::nn::{LayerKind, WeightLayout, join};

/// A PyTorch-style state dict: tensors by key name, plus string metadata (safetensors
/// header metadata; empty for `.pth` files).
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    /// Tensors by key, in key order.
    pub tensors: BTreeMap<String, TensorData>,
    /// Free-form metadata, written to and read from the safetensors header.
    pub metadata: BTreeMap<String, String>,
}

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl StateDict {
    /// Reads a `.safetensors` file, or a PyTorch `.pth` / `.pt` / `.bin` file (a pickled
    /// state dict, or a checkpoint dict holding one under `state_dict` or `model`).
    ///
    /// The contents decide, then the extension: a safetensors file (a little-endian header
    /// length, then `{`) is read as one whatever its name.
    pub fn read(path: &Path) -> crate::Result<Self> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let mut head = [0u8; 9];
        let is_safetensors = extension == "safetensors"
            || std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok()
                && head[8] == b'{';
        match extension.as_str() {
            _ if is_safetensors => {
                let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
                Self::from_safetensors(&bytes).map_err(|e| e.in_file(path))
            }
            "pth" | "pt" | "bin" => Self::read_pytorch(path),
            other => Err(file_error(
                path,
                format!(
                    "unknown weight file extension {other:?}: expected .safetensors, .pth, .pt or .bin"
                ),
            )),
        }
    }

    fn read_pytorch(path: &Path) -> crate::Result<Self> {
        use burn_store::pytorch::PytorchReader;
        let mut reader = PytorchReader::new(path);
        // Training checkpoints often nest the weights one level down.
        for key in ["state_dict", "model"] {
            if reader.as_ref().map(|r| r.is_empty()).unwrap_or(true)
                && let Ok(nested) = PytorchReader::with_top_level_key(path, key)
                && !nested.is_empty()
            {
                reader = Ok(nested);
            }
        }
        let reader = reader
            .map_err(|e| file_error(path, format!("cannot read as a PyTorch file: {e:?}")))?;
        let mut tensors = BTreeMap::new();
        for (key, snapshot) in reader.into_tensors() {
            let data = snapshot
                .to_data()
                .map_err(|e| file_error(path, format!("tensor {key}: {e:?}")))?;
            tensors.insert(key, data);
        }
        Ok(Self {
            tensors,
            metadata: BTreeMap::new(),
        })
    }

    /// Parses the bytes of a safetensors file.
    pub fn from_safetensors(bytes: &[u8]) -> crate::Result<Self> {
        Self::parse_safetensors(bytes).map_err(crate::Error::Format)
    }

    fn parse_safetensors(bytes: &[u8]) -> Result<Self, String> {
        use safetensors::{Dtype, SafeTensors};
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
        let mut tensors = BTreeMap::new();
        for (key, view) in file.tensors() {
            let dtype = match view.dtype() {
                Dtype::F64 => DType::F64,
                Dtype::F32 => DType::F32,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                Dtype::I64 => DType::I64,
                Dtype::I32 => DType::I32,
                Dtype::I16 => DType::I16,
                Dtype::I8 => DType::I8,
                Dtype::U8 => DType::U8,
                other => return Err(format!("tensor {key}: unsupported dtype {other:?}")),
            };
            let data =
                TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
            tensors.insert(key, data);
        }
        let metadata = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Self { tensors, metadata })
    }

    /// The safetensors encoding of this state dict: float tensors as f32, integer ones as
    /// i64, plus the metadata.
    pub fn to_safetensors(&self) -> crate::Result<Vec<u8>> {
        self.encode_safetensors().map_err(crate::Error::Format)
    }

    fn encode_safetensors(&self) -> Result<Vec<u8>, String> {
        use safetensors::{Dtype, tensor::TensorView};
        // Converted data holds its values as little-endian bytes, as safetensors wants.
        let buffers: Vec<(&String, Dtype, TensorData)> = self
            .tensors
            .iter()
            .map(|(key, data)| match data.dtype.is_float() {
                true => (key, Dtype::F32, data.clone().convert::<f32>()),
                false => (key, Dtype::I64, data.clone().convert::<i64>()),
            })
            .collect();
        let views = buffers
            .iter()
            .map(|(key, dtype, data)| {
                TensorView::new(*dtype, data.shape.to_vec(), data.as_bytes())
                    .map(|view| ((*key).clone(), view))
                    .map_err(|e| format!("{key}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
    }

    /// Writes the state dict as a safetensors file, atomically (temporary file + rename).
    pub fn write_safetensors(&self, path: &Path) -> crate::Result<()> {
        let bytes = self.to_safetensors().map_err(|e| e.in_file(path))?;
        crate::atomic_write::write_atomically(path, &bytes)
    }

    /// A tensor's values as f32, or `None` for a missing key.
    pub fn values(&self, key: &str) -> Option<Vec<f32>> {
        self.tensors
            .get(key)
            .and_then(|data| data.clone().convert::<f32>().into_vec::<f32>().ok())
    }

    /// The class count of a MobileNet state dict: the rows of its last linear layer
    /// (`classifier.3` for V3, `classifier` for timm's V4, `classifier.1` otherwise).
    pub fn num_classes(&self) -> Option<usize> {
        [
            "classifier.3.weight",
            "classifier.1.weight",
            "classifier.weight",
        ]
        .iter()
        .find_map(|key| self.tensors.get(*key))
        .filter(|data| data.shape.len() == 2)
        .map(|data| data.shape[0])
    }

    /// What the keys and shapes look like: family or variant, stem width and class count,
    /// e.g. "torchvision MobileNetV3-Small (stem 16 channels, 1000 classes)".
    pub fn describe(&self) -> String {
        let has = |pattern: &str| self.tensors.keys().any(|k| k.contains(pattern));
        let last_feature = self
            .tensors
            .keys()
            .filter_map(|k| {
                k.strip_prefix("features.")?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max();
        let rows = |key: &str| self.tensors.get(key).map(|d| d.shape[0]);
        let classes = self.num_classes().map_or("?".into(), |c| c.to_string());
        if self.tensors.contains_key("conv_stem.weight") {
            let stages = self
                .tensors
                .keys()
                .filter_map(|k| k.strip_prefix("blocks.")?.split('.').next()?.parse().ok())
                .max()
                .map_or(0, |last: usize| last + 1);
            let kind = match has(".attn.") {
                true => "hybrid",
                false => "conv",
            };
            return format!(
                "a timm MobileNet with {stages} stages, {kind} blocks (stem {} channels, {classes} classes)",
                rows("conv_stem.weight").map_or("?".into(), |c| c.to_string()),
            );
        }
        if self.tensors.contains_key("layers.0.weight") {
            return format!(
                "torchvision MnasNet (stem {} channels, {classes} classes)",
                rows("layers.0.weight").map_or("?".into(), |c| c.to_string()),
            );
        }
        if has("features.1.0.block.") {
            // Blocks are `features.{stage}.{j}.block`: count the distinct (stage, j) pairs.
            let blocks: BTreeSet<(&str, &str)> = self
                .tensors
                .keys()
                .filter_map(|k| {
                    let mut parts = k.strip_prefix("features.")?.splitn(3, '.');
                    let (stage, j, rest) = (parts.next()?, parts.next()?, parts.next()?);
                    rest.starts_with("block.").then_some((stage, j))
                })
                .collect();
            let kind = match has("features.1.0.block.1.fc1") {
                true => "EfficientNet (B0-B7)",
                false => "EfficientNetV2",
            };
            return format!(
                "torchvision {kind} with {} blocks (stem {} channels, {classes} classes)",
                blocks.len(),
                rows("features.0.0.weight").map_or("?".into(), |c| c.to_string()),
            );
        }
        let variant = if has(".block.") {
            match last_feature {
                Some(12) => "torchvision MobileNetV3-Small",
                Some(16) => "torchvision MobileNetV3-Large",
                _ => "a torchvision MobileNetV3 of unknown depth",
            }
        } else if self.tensors.contains_key("features.1.conv.1.0.weight") {
            "dwconv's MobileNetV1 layout"
        } else if has(".conv.") {
            "torchvision MobileNetV2"
        } else {
            return format!(
                "no MobileNet layout ({} tensors, e.g. {:?})",
                self.tensors.len(),
                self.tensors.keys().take(3).collect::<Vec<_>>()
            );
        };
        format!(
            "{variant} (stem {} channels, {classes} classes)",
            rows("features.0.0.weight").map_or("?".into(), |c| c.to_string()),
        )
    }
}

/// Why a state dict does not fit a model: every missing, unexpected and mis-shaped tensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDictMismatch {
    /// The model's architecture, e.g. "v2 (10 classes)".
    pub model: String,
    /// What the state dict looks like ([`StateDict::describe`]).
    pub looks_like: String,
    /// Keys the model needs that the file lacks, with the torch shape expected.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Keys in the file the model has no place for, with their shapes.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Keys present with another shape: (key, expected, found).
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl StateDictMismatch {
    /// No missing, unexpected or mis-shaped key.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

impl fmt::Display for StateDictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the weights do not fit a {}; the file looks like {}",
            self.model, self.looks_like
        )?;
        let lists: [(&str, Vec<String>); 3] = [
            (
                "missing",
                self.missing
                    .iter()
                    .map(|(k, s)| format!("{k} {s:?}"))
                    .collect(),
            ),
            (
                "unexpected",
                self.unexpected
                    .iter()
                    .map(|(k, s)| format!("{k} {s:?}"))
                    .collect(),
            ),
            (
                "wrong shape",
                self.wrong_shape
                    .iter()
                    .map(|(k, e, s)| format!("{k}: expected {e:?}, found {s:?}"))
                    .collect(),
            ),
        ];
        for (what, items) in lists {
            if items.is_empty() {
                continue;
            }
            const SHOWN: usize = 12;
            write!(
                f,
                "\n  {} {what}: {}",
                items.len(),
                items[..items.len().min(SHOWN)].join(", ")
            )?;
            if items.len() > SHOWN {
                write!(f, ", ... ({} more)", items.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

/// How one of our tensors is stored in torch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// The same shape.
    Same,
    /// Ours `[out, in]`, torch `[out, in, 1, 1]`.
    Pointwise,
    /// Ours `[in, out]`, torch `[out, in]`.
    Transposed,
}

impl Layout {
    fn torch_shape(self, ours: &[usize]) -> Vec<usize> {
        match self {
            Layout::Same => ours.to_vec(),
            Layout::Pointwise => vec![ours[0], ours[1], 1, 1],
            Layout::Transposed => vec![ours[1], ours[0]],
        }
    }

    /// `data` (f32) from our layout (`to_torch`) or back, `ours` being our shape.
    fn convert(self, data: TensorData, ours: &[usize], to_torch: bool) -> TensorData {
        let data = data.convert::<f32>();
        match self {
            Layout::Same => data,
            Layout::Pointwise => {
                let shape = if to_torch {
                    self.torch_shape(ours)
                } else {
                    ours.to_vec()
                };
                TensorData::new(data.into_vec::<f32>().expect("f32 after convert"), shape)
            }
            Layout::Transposed => {
                let [rows, cols] = match to_torch {
                    true => [ours[0], ours[1]],
                    false => [ours[1], ours[0]],
                };
                let values = data.into_vec::<f32>().expect("f32 after convert");
                let transposed: Vec<f32> = (0..rows * cols)
                    .map(|i| values[(i % rows) * cols + i / rows])
                    .collect();
                TensorData::new(transposed, [cols, rows])
            }
        }
    }
}

/// One of the model's tensors: its module path, its torchvision key and layout.
struct TensorKey {
    path: String,
    key: String,
    layout: Layout,
}

/// Where a layer's tensors live in a PyTorch `state_dict`, relative to its unit's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TorchKeys {
    /// A conv and its BatchNorm, at these two suffixes (torchvision's `Conv2dNormActivation`
    /// is the pair `{p}.0`, `{p}.1`; V2's projection puts them at `conv.{j}`,
    /// `conv.{j+1}`).
    ConvNorm {
        /// The conv's suffix.
        conv: String,
        /// The BatchNorm's suffix.
        norm: String,
    },
    /// A layer under one suffix (`fc1`/`fc2` of a squeeze-excitation, a linear layer's
    /// `weight`/`bias`, a BatchNorm's, a layer scale's `gamma`, an attention's parts).
    At(String),
}

impl TorchKeys {
    /// torchvision's `Conv2dNormActivation` at `prefix`: conv `{prefix}.0`, norm
    /// `{prefix}.1`.
    pub(super) fn conv_norm(prefix: &str) -> Self {
        TorchKeys::ConvNorm {
            conv: join(prefix, "0"),
            norm: join(prefix, "1"),
        }
    }
}

/// torchvision's key prefix of `unit` and the key suffixes of its layers: `features.{i}`
/// for the stem (0), the blocks and the last conv; inside a block the parts numbered in
/// order, `conv.{j}` (V1, V2; V2's projection takes two numbers, conv and BatchNorm) or
/// `block.{j}` (V3); the classifier `Sequential` with its dropout at 1 (V2) or 2 (V3).
fn torchvision_keys(
    architecture: Architecture,
    blocks: usize,
    has_hidden: bool,
    unit: &Unit,
) -> (String, Vec<TorchKeys>) {
    let single = |keys: TorchKeys| vec![keys; unit.layers.len()];
    let path = unit.path.as_str();
    if let Some(index) = path.strip_prefix("blocks.") {
        let index: usize = index.parse().expect("block paths are blocks.{index}");
        let list = match architecture {
            Architecture::V3Small | Architecture::V3Large => "block",
            _ => "conv",
        };
        let mut j = 0;
        let mut next = || {
            j += 1;
            format!("{list}.{}", j - 1)
        };
        let keys = unit
            .layers
            .iter()
            .map(|layer| match layer.kind {
                LayerKind::SqueezeExcitation { .. } => TorchKeys::At(next()),
                _ if architecture == Architecture::V2 && layer.path == "project" => {
                    TorchKeys::ConvNorm {
                        conv: next(),
                        norm: next(),
                    }
                }
                _ => TorchKeys::conv_norm(&next()),
            })
            .collect();
        return (format!("features.{}", index + 1), keys);
    }
    match path {
        "stem" => ("features.0".into(), single(TorchKeys::conv_norm(""))),
        "last_conv" => (
            format!("features.{}", blocks + 1),
            single(TorchKeys::conv_norm("")),
        ),
        "classifier_hidden" => ("classifier.0".into(), single(TorchKeys::At(String::new()))),
        "classifier" => (
            format!("classifier.{}", if has_hidden { 3 } else { 1 }),
            single(TorchKeys::At(String::new())),
        ),
        other => unreachable!("MobileNet unit {other} has no torchvision key"),
    }
}

/// torchvision's EfficientNet keys: `features.0` the stem, block `j` of stage `s` at
/// `features.{s+1}.{j}.block` with its parts numbered in order (each conv+bn pair
/// `{k}.0`/`{k}.1`, a squeeze-excitation `{k}.fc1`/`{k}.fc2`), the last conv after the
/// stages, the classifier at `classifier.1` (after the dropout).
fn efficientnet_keys<B: Backend>(model: &MobileNet<B>, unit: &Unit) -> (String, Vec<TorchKeys>) {
    let single = |keys: TorchKeys| vec![keys; unit.layers.len()];
    match unit.path.as_str() {
        "stem" => ("features.0".into(), single(TorchKeys::conv_norm(""))),
        "last_conv" => (
            format!("features.{}", model.stage_lengths.len() + 1),
            single(TorchKeys::conv_norm("")),
        ),
        "classifier" => ("classifier.1".into(), single(TorchKeys::At(String::new()))),
        path => {
            let (stage, within) = block_position(model, path);
            let keys = unit
                .layers
                .iter()
                .enumerate()
                .map(|(k, layer)| match layer.kind {
                    LayerKind::SqueezeExcitation { .. } => TorchKeys::At(k.to_string()),
                    _ => TorchKeys::conv_norm(&k.to_string()),
                })
                .collect();
            (format!("features.{}.{within}.block", stage + 1), keys)
        }
    }
}

/// torchvision's MnasNet keys: one `layers` list, where the stem is `layers.{0, 1}`, the
/// separable conv after it `layers.{3, 4}` (depthwise) and `layers.{6, 7}` (pointwise),
/// stack `s` (stage `s` here) `layers.{7+s}` with its blocks' parts at `{j}.layers.{0, 1}`
/// (expand), `{3, 4}` (depthwise) and `{6, 7}` (project), the last conv `layers.{14, 15}`;
/// the classifier is `classifier.1`.
fn mnasnet_keys<B: Backend>(model: &MobileNet<B>, unit: &Unit) -> (String, Vec<TorchKeys>) {
    let pair = |conv: usize| TorchKeys::ConvNorm {
        conv: conv.to_string(),
        norm: (conv + 1).to_string(),
    };
    let single = |keys: TorchKeys| vec![keys; unit.layers.len()];
    match unit.path.as_str() {
        "stem" => ("layers".into(), single(pair(0))),
        "last_conv" => ("layers".into(), single(pair(14))),
        "classifier" => ("classifier.1".into(), single(TorchKeys::At(String::new()))),
        path => {
            let (stage, within) = block_position(model, path);
            let keys = unit
                .layers
                .iter()
                .map(|layer| match layer.path.as_str() {
                    "expand" => pair(0),
                    "depthwise" => pair(3),
                    "project" => pair(6),
                    part => unreachable!("MnasNet blocks have no {part:?} layer"),
                })
                .collect();
            match stage {
                0 => ("layers".into(), keys),
                _ => (format!("layers.{}.{within}.layers", 7 + stage), keys),
            }
        }
    }
}

/// The stage of the body block at unit path `blocks.{index}` and its position there.
pub(super) fn block_position<B: Backend>(model: &MobileNet<B>, path: &str) -> (usize, usize) {
    let mut index: usize = path
        .strip_prefix("blocks.")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| unreachable!("unit {path} is not a body block"));
    for (stage, &length) in model.stage_lengths.iter().enumerate() {
        if index < length {
            return (stage, index);
        }
        index -= length;
    }
    unreachable!("block {path} beyond the stages {:?}", model.stage_lengths)
}

/// The key prefix of `unit` and the key suffixes of its layers in the model's PyTorch
/// layout: torchvision's for V1–V3, EfficientNet and MnasNet, timm's for V4
/// ([`super::timm`]).
fn unit_keys<B: Backend>(model: &MobileNet<B>, unit: &Unit) -> (String, Vec<TorchKeys>) {
    match model.architecture.family() {
        Family::MobileNetV4 => super::timm::timm_keys(model, unit),
        Family::EfficientNet => efficientnet_keys(model, unit),
        Family::MnasNet => mnasnet_keys(model, unit),
        Family::MobileNet => torchvision_keys(
            model.architecture,
            model.blocks.len(),
            model.classifier_hidden.is_some(),
            unit,
        ),
    }
}

/// Every tensor of the model under its PyTorch key, from the model's description, plus
/// the BatchNorm prefixes (for `num_batches_tracked`).
fn tensor_keys<B: Backend>(model: &MobileNet<B>) -> (Vec<TensorKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut batch_norms = Vec::new();
    let mut push =
        |path: String, key: String, layout: Layout| keys.push(TensorKey { path, key, layout });
    // A BatchNorm's four tensors: ours `{path}.{gamma, beta, ...}`, torch's `{key}.{weight,
    // bias, ...}`.
    let mut norm = |push: &mut dyn FnMut(String, String, Layout), path: &str, key: String| {
        for (ours, theirs) in [
            ("gamma", "weight"),
            ("beta", "bias"),
            ("running_mean", "running_mean"),
            ("running_var", "running_var"),
        ] {
            push(
                format!("{path}.{ours}"),
                format!("{key}.{theirs}"),
                Layout::Same,
            );
        }
        batch_norms.push(key);
    };
    let conv_layout = |layout: WeightLayout| match layout {
        WeightLayout::Kernel => Layout::Same,
        WeightLayout::Matrix => Layout::Pointwise,
    };
    for unit in model.describe() {
        let (prefix, suffixes) = unit_keys(model, &unit);
        for (layer, suffix) in unit.layers.iter().zip(&suffixes) {
            let path = join(&unit.path, &layer.path);
            let torch = |suffix: &str| join(&prefix, suffix);
            match (layer.kind, suffix) {
                (LayerKind::ConvNormAct(conv), TorchKeys::ConvNorm { conv: c, norm: n }) => {
                    let (c, n) = (torch(c), torch(n));
                    push(
                        format!("{path}.conv.weight"),
                        format!("{c}.weight"),
                        conv_layout(conv.layout),
                    );
                    if conv.bias {
                        push(
                            format!("{path}.conv.bias"),
                            format!("{c}.bias"),
                            Layout::Same,
                        );
                    }
                    norm(&mut push, &format!("{path}.norm"), n);
                }
                (LayerKind::SqueezeExcitation { .. }, TorchKeys::At(at)) => {
                    let at = torch(at);
                    for fc in ["fc1", "fc2"] {
                        push(
                            format!("{path}.{fc}.weight"),
                            format!("{at}.{fc}.weight"),
                            Layout::Pointwise,
                        );
                        push(
                            format!("{path}.{fc}.bias"),
                            format!("{at}.{fc}.bias"),
                            Layout::Same,
                        );
                    }
                }
                (LayerKind::Linear { bias, .. }, TorchKeys::At(at)) => {
                    let at = torch(at);
                    push(
                        join(&path, "weight"),
                        join(&at, "weight"),
                        Layout::Transposed,
                    );
                    if bias {
                        push(join(&path, "bias"), join(&at, "bias"), Layout::Same);
                    }
                }
                (LayerKind::BatchNorm { .. }, TorchKeys::At(at)) => {
                    norm(&mut push, &path, torch(at));
                }
                (LayerKind::LayerScale { .. }, TorchKeys::At(at)) => {
                    push(
                        format!("{path}.gamma"),
                        format!("{}.gamma", torch(at)),
                        Layout::Same,
                    );
                }
                // timm's `MultiQueryAttention2d`: `{query, key, value, output}.proj` and,
                // with downsampling, `{key, value}.{down_conv, norm}`.
                (LayerKind::MultiQueryAttention { kv_stride, .. }, TorchKeys::At(at)) => {
                    let at = torch(at);
                    for part in ["query", "key", "value", "output"] {
                        push(
                            format!("{path}.{part}.weight"),
                            format!("{at}.{part}.proj.weight"),
                            Layout::Pointwise,
                        );
                    }
                    if kv_stride > 1 {
                        for part in ["key", "value"] {
                            push(
                                format!("{path}.{part}_down.conv.weight"),
                                format!("{at}.{part}.down_conv.weight"),
                                Layout::Same,
                            );
                            norm(
                                &mut push,
                                &format!("{path}.{part}_down.norm"),
                                format!("{at}.{part}.norm"),
                            );
                        }
                    }
                }
                (kind, torch) => unreachable!("{kind:?} described with torch keys {torch:?}"),
            }
        }
    }
    (keys, batch_norms)
}

/// Our tensors by module path (enum variants left out, as [`tensor_keys`] names them).
fn snapshots<B: Backend>(model: &MobileNet<B>) -> BTreeMap<String, TensorSnapshot> {
    model
        .collect(None, None, true)
        .into_iter()
        .map(|s| (s.full_path(), s))
        .collect()
}

/// Writes `tensors` (module path, data) into `module` through burn-store; the paths name
/// enum variants or not as `skip_enum_variants` says. Every tensor must land.
pub(crate) fn apply_by_path<B: Backend, M: Module<B>>(
    module: &mut M,
    tensors: Vec<(String, TensorData)>,
    skip_enum_variants: bool,
) -> Result<(), String> {
    let count = tensors.len();
    let snapshots = tensors
        .into_iter()
        .map(|(path, data)| {
            let path_stack = path.split('.').map(str::to_string).collect();
            TensorSnapshot::from_data(data, path_stack, Vec::new(), ParamId::new())
        })
        .collect();
    let result = module.apply(snapshots, None, None, skip_enum_variants);
    if !result.errors.is_empty() || result.applied.len() != count {
        return Err(format!(
            "{} of {count} tensors applied, errors {:?}",
            result.applied.len(),
            result.errors
        ));
    }
    Ok(())
}

fn describe_model<B: Backend>(model: &MobileNet<B>) -> String {
    format!("{} ({} classes)", model.architecture, model.num_classes())
}

impl<B: Backend> MobileNet<B> {
    /// Loads torchvision weights into this model (timm's for a V4: the table in
    /// `models/timm.rs`). Every tensor must be there with its torch shape, and nothing else (`num_batches_tracked` aside); otherwise the error
    /// ([`Error::StateDict`]) lists each missing, unexpected and mis-shaped key and says
    /// what the file looks like.
    #[doc(alias = "load_timm")]
    pub fn load_torchvision(mut self, state: &StateDict) -> crate::Result<Self> {
        let (keys, _) = tensor_keys(&self);
        let ours = snapshots(&self);
        debug_assert_eq!(keys.len(), ours.len(), "every tensor has a torchvision key");
        let mut mismatch = StateDictMismatch::default();
        let mut expected = BTreeSet::new();
        let mut loaded = Vec::with_capacity(keys.len());
        for TensorKey { path, key, layout } in &keys {
            expected.insert(key.as_str());
            let shape = ours[path].shape.to_vec();
            let torch_shape = layout.torch_shape(&shape);
            match state.tensors.get(key) {
                None => mismatch.missing.push((key.clone(), torch_shape)),
                Some(data) if data.shape.to_vec() != torch_shape => {
                    mismatch
                        .wrong_shape
                        .push((key.clone(), torch_shape, data.shape.to_vec()))
                }
                Some(data) => {
                    loaded.push((path.clone(), layout.convert(data.clone(), &shape, false)))
                }
            }
        }
        for (key, data) in &state.tensors {
            // A BatchNorm counter is noise next to its BatchNorm's other tensors.
            if !expected.contains(key.as_str()) && !key.ends_with(".num_batches_tracked") {
                mismatch.unexpected.push((key.clone(), data.shape.to_vec()));
            }
        }
        if !mismatch.is_empty() {
            mismatch.model = describe_model(&self);
            mismatch.looks_like = state.describe();
            return Err(Error::StateDict(Box::new(mismatch)));
        }
        apply_by_path(&mut self, loaded, true)
            .map_err(|e| Error::Input(format!("torchvision weights: {e}")))?;
        Ok(self)
    }

    /// This model's tensors under torchvision's key names and layouts (timm's for a V4)
    /// as f32, with a zero `num_batches_tracked` per BatchNorm, ready for
    /// `load_state_dict(strict=True)`.
    #[doc(alias = "to_timm")]
    pub fn to_torchvision(&self) -> StateDict {
        let (keys, batch_norms) = tensor_keys(self);
        let ours = snapshots(self);
        let mut state = StateDict::default();
        for TensorKey { path, key, layout } in keys {
            let snapshot = &ours[&path];
            let data = snapshot.to_data().expect("a model tensor reads");
            let data = layout.convert(data, &snapshot.shape.to_vec(), true);
            state.tensors.insert(key, data);
        }
        for prefix in batch_norms {
            state.tensors.insert(
                format!("{prefix}.num_batches_tracked"),
                TensorData::new(vec![0i64], Vec::<usize>::new()),
            );
        }
        state.metadata.insert("format".into(), "pt".into());
        state.metadata.insert(
            "dwconv.architecture".into(),
            self.architecture.name().into(),
        );
        state
    }
}

impl MobileNetConfig {
    /// Builds the model and loads torchvision weights from a `.safetensors` or `.pth`
    /// file (see [`MobileNet::load_torchvision`]); errors name the file.
    pub fn init_from_torchvision<B: Backend>(
        &self,
        path: &Path,
        device: &B::Device,
    ) -> crate::Result<MobileNet<B>> {
        let state = StateDict::read(path)?;
        self.try_init::<B>(device)?
            .load_torchvision(&state)
            .map_err(|e| file_error(path, e.to_string()))
    }
}

/// Shape of the probe batch whose logits [`MobileNet::save_torchvision`] records.
pub const PROBE_SHAPE: [usize; 4] = [2, 3, 64, 64];

/// The probe batch: `sin(0.37 i) * 2` over the flat index `i`, computed in f64 (the same
/// formula as `probe_input` in `scripts/gen_fixtures.py`).
pub fn probe_input<B: Backend>(device: &B::Device) -> Tensor<B, 4> {
    let len: usize = PROBE_SHAPE.iter().product();
    let values: Vec<f32> = (0..len)
        .map(|i| ((0.37 * i as f64).sin() * 2.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, PROBE_SHAPE), device)
}

impl<B: crate::kernels::DepthwiseBackend> MobileNet<B> {
    /// Writes the model as a torchvision-compatible safetensors file (atomically), for
    /// `torchvision.models.mobilenet_v2(...)` & co. with `load_state_dict(strict=True)`.
    ///
    /// The header metadata records the architecture, `config.width_mult` and the model's
    /// eval-mode logits on [`probe_input`], so that the file can be checked on the PyTorch
    /// side (`scripts/gen_fixtures.py --check-export FILE`).
    pub fn save_torchvision(&self, path: &Path, config: &MobileNetConfig) -> crate::Result<()> {
        if config.architecture != self.architecture || config.num_classes != self.num_classes() {
            return Err(Error::Config(format!(
                "save_torchvision: the config is a {} with {} classes, the model a {}",
                config.architecture,
                config.num_classes,
                describe_model(self)
            )));
        }
        let device = self.devices().into_iter().next().unwrap_or_default();
        let logits = self.forward(probe_input(&device));
        let logits = logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| Error::Input(format!("probe logits: {e:?}")))?;
        let mut state = self.to_torchvision();
        let metadata = [
            ("dwconv.width_mult", config.width_mult.to_string()),
            ("dwconv.num_classes", config.num_classes.to_string()),
            (
                "dwconv.probe_shape",
                serde_json::to_string(&PROBE_SHAPE).expect("array"),
            ),
            (
                "dwconv.probe_logits",
                serde_json::to_string(&logits).expect("floats"),
            ),
        ];
        for (key, value) in metadata {
            state.metadata.insert(key.to_string(), value);
        }
        state.write_safetensors(path)
    }
}
