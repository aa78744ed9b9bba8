//! torchvision weight interchange: a [`MobileNet`]'s tensors under the key names and
//! layouts of torchvision's `mobilenet_v2` / `mobilenet_v3_small` / `mobilenet_v3_large`.
//!
//! Keys are derived by rules from the model's own structure (which parts each block has),
//! so every width multiplier and class count maps without per-layer lists:
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

use burn::module::{Module, Param, RunningState};
use burn::nn::{BatchNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::mobilenet::{Block, MobileNet, MobileNetConfig};
use super::spec::Architecture;
use crate::Error;
use crate::nn::{ConvLayer, ConvNormAct, InvertedResidual, SqueezeExcitation};

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
    pub fn read(path: &Path) -> crate::Result<Self> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "safetensors" => {
                let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
                Self::from_safetensors(&bytes).map_err(|message| file_error(path, message))
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
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, String> {
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
    pub fn to_safetensors(&self) -> Result<Vec<u8>, String> {
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
        let bytes = self
            .to_safetensors()
            .map_err(|message| file_error(path, message))?;
        crate::train::write_atomically(path, &bytes)
    }

    /// A tensor's values as f32, or `None` for a missing key.
    pub fn values(&self, key: &str) -> Option<Vec<f32>> {
        self.tensors
            .get(key)
            .and_then(|data| data.clone().convert::<f32>().into_vec::<f32>().ok())
    }

    /// The class count of a MobileNet state dict: the rows of its last linear layer
    /// (`classifier.3` for V3, `classifier.1` otherwise).
    pub fn num_classes(&self) -> Option<usize> {
        ["classifier.3.weight", "classifier.1.weight"]
            .iter()
            .find_map(|key| self.tensors.get(*key))
            .filter(|data| data.shape.len() == 2)
            .map(|data| data.shape[0])
    }

    /// What the keys and shapes look like: variant, stem width and class count, e.g.
    /// "torchvision MobileNetV3-Small (stem 16 channels, 1000 classes)".
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
        let classes = self.num_classes();
        format!(
            "{variant} (stem {} channels, {} classes)",
            rows("features.0.0.weight").map_or("?".into(), |c| c.to_string()),
            classes.map_or("?".into(), |c| c.to_string()),
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
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Ours `[out, in]`, torch `[out, in, 1, 1]`.
    Pointwise,
    /// Ours `[in, out]`, torch `[out, in]`.
    Transposed,
}

/// A mutable handle on one of the model's tensors.
enum Slot<'a, B: Backend> {
    Vector(&'a mut Param<Tensor<B, 1>>),
    Matrix(&'a mut Param<Tensor<B, 2>>, Layout),
    Kernel(&'a mut Param<Tensor<B, 4>>),
    Running(&'a mut RunningState<Tensor<B, 1>>),
}

impl<B: Backend> Slot<'_, B> {
    fn torch_shape(&self) -> Vec<usize> {
        match self {
            Slot::Vector(p) => p.lazy_shape().to_vec(),
            Slot::Kernel(p) => p.lazy_shape().to_vec(),
            Slot::Running(r) => r.value().dims().to_vec(),
            Slot::Matrix(p, layout) => {
                let [a, b] = p.lazy_shape().dims();
                match layout {
                    Layout::Pointwise => vec![a, b, 1, 1],
                    Layout::Transposed => vec![b, a],
                }
            }
        }
    }

    /// The tensor in torch layout.
    fn read(&self) -> TensorData {
        match self {
            Slot::Vector(p) => p.val().into_data(),
            Slot::Kernel(p) => p.val().into_data(),
            Slot::Running(r) => r.value().into_data(),
            Slot::Matrix(p, layout) => match layout {
                Layout::Transposed => p.val().transpose().into_data(),
                Layout::Pointwise => {
                    let mut data = p.val().into_data();
                    data.shape = self.torch_shape().into();
                    data
                }
            },
        }
    }

    /// Replaces the tensor with `data` (torch layout, shape already checked), keeping the
    /// parameter's id and marking it trainable.
    fn write(&mut self, data: TensorData, device: &B::Device) {
        let data = data.convert::<f32>();
        match self {
            Slot::Vector(p) => {
                **p = Param::initialized(p.id, Tensor::from_data(data, device).require_grad())
            }
            Slot::Kernel(p) => {
                **p = Param::initialized(p.id, Tensor::from_data(data, device).require_grad())
            }
            Slot::Running(r) => **r = RunningState::new(Tensor::from_data(data, device)),
            Slot::Matrix(p, layout) => {
                let [a, b] = p.lazy_shape().dims();
                let tensor = match layout {
                    Layout::Transposed => Tensor::<B, 2>::from_data(data, device).transpose(),
                    Layout::Pointwise => Tensor::from_data(
                        TensorData::new(data.into_vec::<f32>().expect("f32 after convert"), [a, b]),
                        device,
                    ),
                };
                **p = Param::initialized(p.id, tensor.require_grad());
            }
        }
    }
}

/// The model's tensors with their torch keys, plus the BatchNorm prefixes (for
/// `num_batches_tracked`).
struct Slots<'a, B: Backend> {
    items: Vec<(String, Slot<'a, B>)>,
    batch_norms: Vec<String>,
}

impl<'a, B: Backend> Slots<'a, B> {
    fn of(model: &'a mut MobileNet<B>) -> Self {
        let mut slots = Slots {
            items: Vec::new(),
            batch_norms: Vec::new(),
        };
        let architecture = model.architecture;
        slots.conv_norm_act("features.0", &mut model.stem);
        let blocks = model.blocks.len();
        for (i, block) in model.blocks.iter_mut().enumerate() {
            let prefix = format!("features.{}", i + 1);
            match block {
                Block::Separable(b) => {
                    slots.conv_norm_act(&format!("{prefix}.conv.0"), &mut b.depthwise);
                    slots.conv_norm_act(&format!("{prefix}.conv.1"), &mut b.pointwise);
                }
                Block::InvertedResidual(b) => {
                    if architecture == Architecture::V2 {
                        slots.inverted_residual_v2(&prefix, b)
                    } else {
                        slots.inverted_residual_v3(&prefix, b)
                    }
                }
            }
        }
        if let Some(last) = &mut model.last_conv {
            slots.conv_norm_act(&format!("features.{}", blocks + 1), last);
        }
        match &mut model.classifier_hidden {
            Some(hidden) => {
                slots.linear("classifier.0", hidden);
                slots.linear("classifier.3", &mut model.classifier);
            }
            None => slots.linear("classifier.1", &mut model.classifier),
        }
        slots
    }

    /// torchvision V2: `conv.{j}` conv+bn pairs; the project conv and BN apart.
    fn inverted_residual_v2(&mut self, prefix: &str, block: &'a mut InvertedResidual<B>) {
        let mut j = 0;
        if let Some(expand) = &mut block.expand {
            self.conv_norm_act(&format!("{prefix}.conv.{j}"), expand);
            j += 1;
        }
        self.conv_norm_act(&format!("{prefix}.conv.{j}"), &mut block.depthwise);
        self.conv(&format!("{prefix}.conv.{}", j + 1), &mut block.project.conv);
        self.batch_norm(&format!("{prefix}.conv.{}", j + 2), &mut block.project.norm);
    }

    /// torchvision V3: `block.{j}`, one index per part.
    fn inverted_residual_v3(&mut self, prefix: &str, block: &'a mut InvertedResidual<B>) {
        let mut j = 0;
        if let Some(expand) = &mut block.expand {
            self.conv_norm_act(&format!("{prefix}.block.{j}"), expand);
            j += 1;
        }
        self.conv_norm_act(&format!("{prefix}.block.{j}"), &mut block.depthwise);
        j += 1;
        if let Some(se) = &mut block.squeeze_excite {
            self.squeeze_excite(&format!("{prefix}.block.{j}"), se);
            j += 1;
        }
        self.conv_norm_act(&format!("{prefix}.block.{j}"), &mut block.project);
    }

    fn push(&mut self, key: String, slot: Slot<'a, B>) {
        self.items.push((key, slot));
    }

    fn conv_norm_act(&mut self, prefix: &str, layer: &'a mut ConvNormAct<B>) {
        self.conv(&format!("{prefix}.0"), &mut layer.conv);
        self.batch_norm(&format!("{prefix}.1"), &mut layer.norm);
    }

    fn conv(&mut self, prefix: &str, conv: &'a mut ConvLayer<B>) {
        let (weight, bias) = match conv {
            ConvLayer::Standard(c) => (Slot::Kernel(&mut c.weight), c.bias.as_mut()),
            ConvLayer::Depthwise(c) => (Slot::Kernel(&mut c.weight), c.bias.as_mut()),
            ConvLayer::Pointwise(c) => (
                Slot::Matrix(&mut c.weight, Layout::Pointwise),
                c.bias.as_mut(),
            ),
        };
        self.push(format!("{prefix}.weight"), weight);
        if let Some(bias) = bias {
            self.push(format!("{prefix}.bias"), Slot::Vector(bias));
        }
    }

    fn batch_norm(&mut self, prefix: &str, norm: &'a mut BatchNorm<B>) {
        self.push(format!("{prefix}.weight"), Slot::Vector(&mut norm.gamma));
        self.push(format!("{prefix}.bias"), Slot::Vector(&mut norm.beta));
        self.push(
            format!("{prefix}.running_mean"),
            Slot::Running(&mut norm.running_mean),
        );
        self.push(
            format!("{prefix}.running_var"),
            Slot::Running(&mut norm.running_var),
        );
        self.batch_norms.push(prefix.to_string());
    }

    fn squeeze_excite(&mut self, prefix: &str, se: &'a mut SqueezeExcitation<B>) {
        for (name, fc) in [("fc1", &mut se.fc1), ("fc2", &mut se.fc2)] {
            self.push(
                format!("{prefix}.{name}.weight"),
                Slot::Matrix(&mut fc.weight, Layout::Pointwise),
            );
            if let Some(bias) = fc.bias.as_mut() {
                self.push(format!("{prefix}.{name}.bias"), Slot::Vector(bias));
            }
        }
    }

    fn linear(&mut self, prefix: &str, linear: &'a mut Linear<B>) {
        self.push(
            format!("{prefix}.weight"),
            Slot::Matrix(&mut linear.weight, Layout::Transposed),
        );
        if let Some(bias) = linear.bias.as_mut() {
            self.push(format!("{prefix}.bias"), Slot::Vector(bias));
        }
    }
}

fn describe_model<B: Backend>(model: &MobileNet<B>) -> String {
    format!("{} ({} classes)", model.architecture, model.num_classes())
}

impl<B: Backend> MobileNet<B> {
    /// Loads torchvision weights into this model. Every tensor must be there with its
    /// torch shape, and nothing else (`num_batches_tracked` aside); otherwise the error
    /// ([`Error::StateDict`]) lists each missing, unexpected and mis-shaped key and says
    /// what the file looks like.
    pub fn load_torchvision(mut self, state: &StateDict) -> crate::Result<Self> {
        let device = self.devices().into_iter().next().unwrap_or_default();
        let model_name = describe_model(&self);
        let mut slots = Slots::of(&mut self);
        let mut mismatch = StateDictMismatch::default();
        let mut expected = BTreeSet::new();
        for (key, slot) in &slots.items {
            expected.insert(key.as_str());
            let shape = slot.torch_shape();
            match state.tensors.get(key) {
                None => mismatch.missing.push((key.clone(), shape)),
                Some(data) if data.shape.to_vec() != shape => {
                    mismatch
                        .wrong_shape
                        .push((key.clone(), shape, data.shape.to_vec()))
                }
                Some(_) => {}
            }
        }
        for (key, data) in &state.tensors {
            // A BatchNorm counter is noise next to its BatchNorm's other tensors.
            if !expected.contains(key.as_str()) && !key.ends_with(".num_batches_tracked") {
                mismatch.unexpected.push((key.clone(), data.shape.to_vec()));
            }
        }
        if !mismatch.is_empty() {
            mismatch.model = model_name;
            mismatch.looks_like = state.describe();
            return Err(Error::StateDict(Box::new(mismatch)));
        }
        for (key, slot) in &mut slots.items {
            slot.write(state.tensors[key.as_str()].clone(), &device);
        }
        drop(slots);
        Ok(self)
    }

    /// This model's tensors under torchvision's key names and layouts (f32), with a zero
    /// `num_batches_tracked` per BatchNorm, ready for `load_state_dict(strict=True)`.
    pub fn to_torchvision(&self) -> StateDict {
        let mut model = self.clone();
        let slots = Slots::of(&mut model);
        let mut state = StateDict::default();
        for (key, slot) in &slots.items {
            state
                .tensors
                .insert(key.clone(), slot.read().convert::<f32>());
        }
        for prefix in &slots.batch_norms {
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
