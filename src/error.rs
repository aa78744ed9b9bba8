//! The crate's error type: everything a user can get wrong, with the bad value named.

use std::path::PathBuf;

/// Errors a user of the crate can cause: a bad configuration, a bad input shape, a bad
/// file. Each message names the offending value and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A tensor given to a model or module has the wrong shape.
    #[error("invalid input: {0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Bytes that do not hold what was expected: not a safetensors file, a checkpoint whose
    /// tensors do not fit the model, a download whose hash is not the published one.
    #[error("{0}")]
    Format(String),
    /// A state dict (e.g. torchvision weights) does not fit the model: the missing,
    /// unexpected and mis-shaped keys.
    #[error("{0}")]
    StateDict(Box<crate::models::StateDictMismatch>),
}

impl Error {
    /// Names `path` in a [`Error::Format`] error (the file whose bytes were read).
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Error::Format(message) => Error::File {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        }
    }
}

/// Shorthand for `Result<T, dwconv::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
