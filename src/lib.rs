//! # dwconv
//!
//! Depthwise-separable convolutions for [Burn](https://burn.dev): fast depthwise kernels
//! behind a backend extension, reusable modules (depthwise, pointwise, separable, inverted
//! residual, squeeze-excitation, MobileNetV4's universal inverted bottleneck, fused
//! inverted bottleneck and Mobile MQA) and the MobileNet family (V1, V2, V3-Small,
//! V3-Large, the five MobileNetV4s) built from spec tables on one block vocabulary, with
//! parameter and multiply-add accounting and torchvision / timm weights in and out.
//!
//! Everything is generic over the Burn backend `B`: the same code trains on the CPU
//! (`ndarray`, `flex`) or the GPU (`wgpu`), selected by one type parameter.
//!
//! ## Quick start
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use dwconv::models::MobileNetConfig;
//! use dwconv::nn::DepthwiseSeparableConvConfig;
//!
//! let device = Default::default();
//!
//! // A depthwise-separable block: 3 -> 9 channels, 3x3 depthwise with stride 2.
//! let block = DepthwiseSeparableConvConfig::new(3, 9)
//!     .with_stride(2)
//!     .init::<NdArray>(&device);
//! let x = Tensor::<NdArray, 4>::random([1, 3, 5, 5], Distribution::Default, &device);
//! assert_eq!(block.forward(x).dims(), [1, 9, 3, 3]);
//!
//! // A MobileNetV2 (width 0.5) for 10 classes.
//! let model = MobileNetConfig::v2(10).with_width_mult(0.5).init::<NdArray>(&device);
//! let images = Tensor::<NdArray, 4>::random([2, 3, 32, 32], Distribution::Default, &device);
//! let logits = model.try_forward(images).expect("a valid input");
//! assert_eq!(logits.dims(), [2, 10]);
//! ```

//! ## Modules
//!
//! - [`nn`]: the layers, each a `Config` + `Module` pair as in `burn-nn`: depthwise,
//!   pointwise and separable convs, BatchNorm + activation, inverted residual,
//!   squeeze-excitation, the universal and fused inverted bottlenecks, Mobile MQA.
//! - [`models`]: the networks as spec tables ([`models::Architecture`],
//!   [`models::MobileNetConfig`]), BatchNorm folding, feature maps, and torchvision / timm
//!   state dicts in and out (`.pth`, `.safetensors`).
//! - [`cost`]: parameter and multiply-add counts from the layer description.
//! - [`kernels`]: the backend extension ([`kernels::DepthwiseBackend`] and its siblings)
//!   with the public ops; the CPU and CubeCL kernels behind it are the crate's own.
//! - `data`, `train` (feature `pipeline`, on by default): the synthetic and image-folder
//!   datasets and the training loop with checkpoints and exact resume; with `train`,
//!   burn-train's `Learner` and data parallel training.
//! - `pretrained` (feature `pretrained`): published ImageNet weights by name.
//! - [`Error`]: the one error type of every fallible call.

#![warn(missing_docs)]

mod atomic_write;
pub mod cost;
#[cfg(feature = "pipeline")]
pub mod data;
mod error;
pub mod kernels;
pub mod models;
pub mod nn;
#[cfg(feature = "pretrained")]
pub mod pretrained;
#[cfg(feature = "pipeline")]
pub mod train;

pub use error::{Error, Result};

// The README's snippet is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
