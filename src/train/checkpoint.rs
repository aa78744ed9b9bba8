//! Checkpoint files: one self-checking file per checkpoint, written atomically.
//!
//! Layout: the magic `DWCKPT02`, then three length-prefixed sections (a JSON header, the
//! model, the optimiser state; lengths are little-endian `u64`), then an FNV-1a 64 hash of
//! everything before it.
//!
//! The model section is a safetensors file of every tensor (parameters and BatchNorm
//! running statistics) by module path, and the optimiser section holds each parameter's
//! state under the same path, in path order. Neither holds Burn's parameter ids, which are
//! random in every process: two runs that reach the same weights write the same bytes,
//! and a checkpoint loads into any freshly built model of the same architecture. A truncated or altered file fails the length or hash
//! check with a message saying so, and a file of another architecture is refused before
//! any tensor is loaded.
//!
//! Writes go to a temporary file in the same directory, are flushed to disk, then renamed
//! over the target: a process killed mid-write leaves the previous checkpoint intact.

use std::path::Path;

use std::collections::BTreeMap;

use hashbrown::HashMap;

use burn::module::{Module, ParamId};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, TensorSnapshot};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::atomic_write::write_atomically;
use crate::models::{MobileNetConfig, StateDict, apply_by_path};

const MAGIC: &[u8; 8] = b"DWCKPT02";
/// The magic of the previous format (Burn records with parameter ids).
const OLD_MAGIC: &[u8; 8] = b"DWCKPT01";

/// What a checkpoint file says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// The architecture the model record belongs to.
    pub model: MobileNetConfig,
    /// Epochs completed when it was written.
    pub epoch: usize,
    /// Optimisation steps completed.
    pub step: usize,
    /// Best validation accuracy so far.
    pub best_valid_accuracy: f64,
    /// Backend that wrote it (informational).
    pub backend: String,
}

/// A checkpoint's contents: header, model record bytes, optimiser record bytes (empty for
/// a model-only file).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Header.
    pub header: CheckpointHeader,
    /// The model's tensors by path (see [`encode_model`]).
    pub model: Vec<u8>,
    /// The optimiser's state by parameter path (see [`encode_optimizer`]); empty in
    /// model-only files.
    pub optimizer: Vec<u8>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Checkpoint {
    /// Serialises and writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| file_error(path, format!("cannot encode header: {e}")))?;
        let mut bytes =
            Vec::with_capacity(48 + header.len() + self.model.len() + self.optimizer.len());
        bytes.extend_from_slice(MAGIC);
        for section in [&header, &self.model, &self.optimizer] {
            bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
            bytes.extend_from_slice(section);
        }
        let hash = fnv1a(&bytes);
        bytes.extend_from_slice(&hash.to_le_bytes());
        write_atomically(path, &bytes)
    }

    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> crate::Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
        if bytes.starts_with(OLD_MAGIC) {
            return Err(file_error(
                path,
                "written by an older dwconv (format DWCKPT01, expected DWCKPT02): retrain, or load it with the version that wrote it",
            ));
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(file_error(
                path,
                "not a dwconv checkpoint (bad magic bytes)",
            ));
        }
        let mut pos = MAGIC.len();
        let mut sections = Vec::with_capacity(3);
        for name in ["header", "model", "optimizer"] {
            let Some(len) = bytes.get(pos..pos + 8) else {
                return Err(file_error(
                    path,
                    format!(
                        "truncated: the file ends ({} bytes) before the {name} section",
                        bytes.len()
                    ),
                ));
            };
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            pos += 8;
            let Some(section) = bytes.get(pos..pos.saturating_add(len)) else {
                return Err(file_error(
                    path,
                    format!(
                        "truncated: the {name} section needs {len} bytes at offset {pos}, the file has {}",
                        bytes.len()
                    ),
                ));
            };
            sections.push(section.to_vec());
            pos += len;
        }
        let Some(stored) = bytes.get(pos..pos + 8) else {
            return Err(file_error(
                path,
                format!("truncated: no checksum after {pos} bytes"),
            ));
        };
        if u64::from_le_bytes(stored.try_into().expect("8 bytes")) != fnv1a(&bytes[..pos]) {
            return Err(file_error(path, "corrupt: checksum mismatch"));
        }
        if bytes.len() != pos + 8 {
            return Err(file_error(
                path,
                "corrupt: trailing bytes after the checksum",
            ));
        }
        let optimizer = sections.pop().expect("3 sections");
        let model = sections.pop().expect("3 sections");
        let header: CheckpointHeader = serde_json::from_slice(&sections[0])
            .map_err(|e| file_error(path, format!("corrupt header: {e}")))?;
        Ok(Self {
            header,
            model,
            optimizer,
        })
    }

    /// Refuses a checkpoint whose model is not `expected`, naming both.
    pub fn check_model(&self, expected: &MobileNetConfig, path: &Path) -> crate::Result<()> {
        let got = &self.header.model;
        if got.architecture != expected.architecture
            || got.num_classes != expected.num_classes
            || got.width_mult != expected.width_mult
        {
            return Err(file_error(
                path,
                format!(
                    "model mismatch: the file holds {} width {} with {} classes, expected {} width {} with {} classes",
                    got.architecture,
                    got.width_mult,
                    got.num_classes,
                    expected.architecture,
                    expected.width_mult,
                    expected.num_classes
                ),
            ));
        }
        Ok(())
    }
}

/// Every tensor of `module` (parameters and running statistics) by module path.
fn snapshots<B: Backend, M: Module<B>>(module: &M) -> Vec<TensorSnapshot> {
    module.collect(None, None, false)
}

/// The safetensors bytes of `module`'s tensors by module path: equal modules give equal
/// bytes, whatever their parameter ids.
pub fn encode_model<B: Backend, M: Module<B>>(module: &M) -> crate::Result<Vec<u8>> {
    let mut state = StateDict::default();
    for snapshot in snapshots(module) {
        let data = snapshot
            .to_data()
            .map_err(|e| Error::Format(format!("{}: {e:?}", snapshot.full_path())))?;
        state.tensors.insert(snapshot.full_path(), data);
    }
    state.to_safetensors()
}

/// Loads tensors written by [`encode_model`] into `module`, which must have exactly those
/// paths and shapes.
pub fn decode_model<B: Backend, M: Module<B>>(mut module: M, bytes: &[u8]) -> crate::Result<M> {
    let state = StateDict::from_safetensors(bytes)?;
    let expected: BTreeMap<String, Vec<usize>> = snapshots(&module)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect();
    let found: BTreeMap<String, Vec<usize>> = state
        .tensors
        .iter()
        .map(|(path, data)| (path.clone(), data.shape.to_vec()))
        .collect();
    if expected != found {
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !found.contains_key(*k))
            .collect();
        let unexpected: Vec<_> = found
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .collect();
        let reshaped: Vec<_> = expected
            .iter()
            .filter_map(|(k, shape)| {
                let other = found.get(k)?;
                (other != shape).then(|| format!("{k}: {other:?}, expected {shape:?}"))
            })
            .collect();
        return Err(Error::Format(format!(
            "the model tensors do not fit: missing {missing:?}, unexpected {unexpected:?}, mis-shaped {reshaped:?}"
        )));
    }
    apply_by_path(&mut module, state.tensors.into_iter().collect(), false)
        .map_err(|e| Error::Format(format!("cannot load the model tensors: {e}")))?;
    Ok(module)
}

/// Parameter path by parameter id.
fn param_paths<B: Backend, M: Module<B>>(module: &M) -> HashMap<ParamId, String> {
    snapshots(module)
        .into_iter()
        .filter_map(|s| Some((s.tensor_id?, s.full_path())))
        .collect()
}

/// An optimiser record (per-parameter state keyed by Burn's random parameter ids) as
/// bytes keyed by `module`'s parameter paths, in path order.
pub fn encode_optimizer<B: Backend, M: Module<B>, R: Record<B>>(
    module: &M,
    record: HashMap<ParamId, R>,
) -> crate::Result<Vec<u8>> {
    let paths = param_paths(module);
    let mut by_path: Vec<(String, R)> = record
        .into_iter()
        .map(|(id, state)| {
            let path = paths.get(&id).ok_or_else(|| {
                Error::Format(format!(
                    "the optimiser holds state for unknown parameter {id}"
                ))
            })?;
            Ok((path.clone(), state))
        })
        .collect::<crate::Result<_>>()?;
    by_path.sort_by(|a, b| a.0.cmp(&b.0));
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(by_path, ())
        .map_err(|e| Error::Format(format!("cannot encode the optimiser: {e}")))
}

/// The optimiser record written by [`encode_optimizer`], keyed by `module`'s parameter
/// ids.
pub fn decode_optimizer<B: Backend, M: Module<B>, R: Record<B>>(
    module: &M,
    bytes: Vec<u8>,
    device: &B::Device,
) -> crate::Result<HashMap<ParamId, R>> {
    let ids: HashMap<String, ParamId> = param_paths(module)
        .into_iter()
        .map(|(id, path)| (path, id))
        .collect();
    let by_path: Vec<(String, R)> = BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes, device)
        .map_err(|e| Error::Format(format!("cannot decode the optimiser: {e}")))?;
    by_path
        .into_iter()
        .map(|(path, state)| match ids.get(&path) {
            Some(id) => Ok((*id, state)),
            None => Err(Error::Format(format!(
                "the optimiser holds state for {path}, which the model does not have"
            ))),
        })
        .collect()
}
