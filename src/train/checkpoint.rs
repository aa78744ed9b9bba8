//! Checkpoint files: one self-checking file per checkpoint, written atomically.
//!
//! Layout: the magic `DWCKPT01`, then three length-prefixed sections (a JSON header, the
//! model record, the optimiser record; lengths are little-endian `u64`), then an FNV-1a
//! 64 hash of everything before it. A truncated or altered file fails the length or hash
//! check with a message saying so, and a file of another architecture is refused before
//! any tensor is loaded.
//!
//! Writes go to a temporary file in the same directory, are flushed to disk, then renamed
//! over the target: a process killed mid-write leaves the previous checkpoint intact.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::models::MobileNetConfig;

const MAGIC: &[u8; 8] = b"DWCKPT01";

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
    /// Model record (Burn `BinBytesRecorder`, full precision).
    pub model: Vec<u8>,
    /// Optimiser record, same format; empty in model-only files.
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

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, format!("cannot write: {e}"))
    })
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
