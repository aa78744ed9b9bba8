//! The kernel traits implemented for Burn's backends, one module per backend family.
//!
//! | family | backends | depthwise, pointwise, BatchNorm + activation |
//! |---|---|---|
//! | [`autodiff`] | `Autodiff<B>` for any `B` below | one backward node per call, the inner backend's backward ops |
//! | [`host`] | `NdArray<E, I, Q>`, `Flex` | the CPU kernels on `f32`; other dtypes take the fallback |
//! | [`cube`] | `CubeBackend<R, F, I, BT>`, every CubeCL runtime | the crate's CubeCL depthwise kernels (`f32`); Burn's `matmul` (one GEMM over all positions on small maps) and element-wise ops for the pointwise conv and BatchNorm |
//! | [`fusion`] | `Fusion<B>` for any `B: FusionBackend` | one custom stream operation calling `B`'s op |
//! | [`others`] | `Candle`, `LibTorch`, `BackendRouter`, `Dispatch` | Burn's ops; Candle's depthwise gradients and the router's and Dispatch's input gradient as forward convs |
//!
//! Adding an op is its trait method with a default built on Burn's ops, its CPU kernel in
//! [`cpu`](super::cpu) forwarded in [`host`], its node in [`autodiff`], and one forwarding
//! method in [`fusion`].

pub(crate) mod autodiff;
#[cfg(feature = "cubecl")]
pub(crate) mod cube;
#[cfg(feature = "cubecl")]
pub(crate) mod fusion;
#[cfg(any(feature = "ndarray", feature = "flex"))]
pub(crate) mod host;
pub(crate) mod others;
