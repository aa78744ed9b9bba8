//! Feature-selected backends for the examples and tests.
//!
//! Model and module code is generic over `B: Backend`; only these aliases change with the
//! cargo features. When several backend features are on, the priority is
//! `wgpu` > `flex` > `ndarray`.

#[cfg(feature = "wgpu")]
mod selected {
    /// The backend selected by cargo features (here: wgpu, on the GPU).
    pub type DefaultBackend = burn::backend::Wgpu;
    /// Short name of [`DefaultBackend`], as printed by the examples.
    pub const BACKEND_NAME: &str = "wgpu";
}

#[cfg(all(feature = "flex", not(feature = "wgpu")))]
mod selected {
    /// The backend selected by cargo features (here: flex, on the CPU).
    pub type DefaultBackend = burn::backend::Flex;
    /// Short name of [`DefaultBackend`], as printed by the examples.
    pub const BACKEND_NAME: &str = "flex";
}

#[cfg(all(feature = "ndarray", not(any(feature = "flex", feature = "wgpu"))))]
mod selected {
    /// The backend selected by cargo features (here: ndarray, on the CPU).
    pub type DefaultBackend = burn::backend::NdArray;
    /// Short name of [`DefaultBackend`], as printed by the examples.
    pub const BACKEND_NAME: &str = "ndarray";
}

#[cfg(any(feature = "ndarray", feature = "flex", feature = "wgpu"))]
pub use selected::{BACKEND_NAME, DefaultBackend};

/// Names of the backends this build has, as the examples' `--backend` flag takes them.
pub const COMPILED_BACKENDS: &[&str] = &[
    #[cfg(feature = "ndarray")]
    "ndarray",
    #[cfg(feature = "flex")]
    "flex",
    #[cfg(feature = "wgpu")]
    "wgpu",
];

/// [`DefaultBackend`] with automatic differentiation, for training.
#[cfg(any(feature = "ndarray", feature = "flex", feature = "wgpu"))]
pub type DefaultAutodiffBackend = burn::backend::Autodiff<DefaultBackend>;

/// The default device of [`DefaultBackend`].
#[cfg(any(feature = "ndarray", feature = "flex", feature = "wgpu"))]
pub fn default_device() -> burn::tensor::Device<DefaultBackend> {
    Default::default()
}
