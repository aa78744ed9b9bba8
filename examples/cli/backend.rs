//! The examples' feature-selected backend.
//!
//! Model and module code is generic over `B: DepthwiseBackend`; only these aliases change
//! with the cargo features, and the trait implementations do not depend on them. When
//! several backend features are on, the first in this order is picked: `cuda`, `rocm`,
//! `metal`, `vulkan`, `wgpu`, `cpu`, `candle`, `tch`, `flex`, `ndarray`. Each of them is
//! Burn's own alias (`burn::backend::Wgpu`, ...), so with the `fusion` feature (on in
//! Burn's default features) the CubeCL ones are `Fusion<CubeBackend<..>>`.

// Each example uses its own part of it.
#![allow(dead_code)]

/// Declares `selected::{DefaultBackend, BACKEND_NAME, ..}` for the first feature of the
/// list that is on (an empty module when none is).
macro_rules! select_backend {
    (@chain [$($off:literal)*] $feature:literal => $backend:ty, $($rest:tt)*) => {
        #[cfg(all(feature = $feature $(, not(feature = $off))*))]
        #[allow(deprecated)] // Burn 0.21 deprecates its Candle backend.
        mod selected {
            #[doc = concat!("The backend selected by cargo features (here: `", $feature, "`).")]
            pub type DefaultBackend = $backend;
            /// Short name of [`DefaultBackend`], as printed by the examples.
            pub const BACKEND_NAME: &str = $feature;
            /// [`DefaultBackend`] with automatic differentiation, for training.
            pub type DefaultAutodiffBackend = burn::backend::Autodiff<DefaultBackend>;
            /// The default device of [`DefaultBackend`].
            pub fn default_device() -> burn::tensor::Device<DefaultBackend> {
                Default::default()
            }
            /// Checks a backend name given to the examples' `--backend` flag: one of
            /// [`COMPILED_BACKENDS`](super::COMPILED_BACKENDS) or [`BACKEND_NAME`].
            pub fn check_backend_name(name: &str) -> Result<String, String> {
                if name == BACKEND_NAME || super::COMPILED_BACKENDS.contains(&name) {
                    Ok(name.to_string())
                } else {
                    Err(format!(
                        "'{name}' is not in this build; it has {:?} and {BACKEND_NAME} \
                         (cargo features select them)",
                        super::COMPILED_BACKENDS
                    ))
                }
            }
        }
        select_backend!(@chain [$($off)* $feature] $($rest)*);
    };
    (@chain [$($off:literal)*]) => {
        #[cfg(not(any($(feature = $off),*)))]
        mod selected {}
    };
    ($($list:tt)*) => { select_backend!(@chain [] $($list)*); };
}

select_backend!(
    "cuda" => burn::backend::Cuda,
    "rocm" => burn::backend::Rocm,
    "metal" => burn::backend::Metal,
    "vulkan" => burn::backend::Vulkan,
    "wgpu" => burn::backend::Wgpu,
    "cpu" => burn::backend::Cpu,
    "candle" => burn::backend::Candle,
    "tch" => burn::backend::LibTorch,
    "flex" => burn::backend::Flex,
    "ndarray" => burn::backend::NdArray,
);

pub use selected::*;

/// Names of the backends the examples' `--backend` flag takes in this build.
pub const COMPILED_BACKENDS: &[&str] = &[
    #[cfg(feature = "ndarray")]
    "ndarray",
    #[cfg(feature = "flex")]
    "flex",
    #[cfg(feature = "wgpu")]
    "wgpu",
];
