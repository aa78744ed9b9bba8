//! Integration tests (public API only). One test binary, so Burn is linked once.

mod common;
mod cost;
mod efficientnet;
mod examples;
mod kernels;
#[cfg(feature = "train")]
mod learner;
mod loss;
mod models;
mod modules;
mod norm_act;
mod parity;
mod pointwise;
#[cfg(feature = "pretrained")]
mod pretrained;
mod reproducibility;
#[cfg(feature = "ndarray")]
mod resume;
mod timm;
mod torchvision;
mod training;
