//! `DepthwiseBackend` for the wgpu backend (`CubeBackend` over the wgpu runtime).
//!
//! Uses the default methods: Burn's grouped `conv2d` and its gradients on the GPU, with
//! the bias added as a separate broadcast (Burn's depthwise GPU kernel refuses a bias).

use burn::backend::wgpu::{BoolElement, CubeBackend, FloatElement, IntElement, WgpuRuntime};

use super::DepthwiseBackend;

impl<F: FloatElement, I: IntElement, BT: BoolElement> DepthwiseBackend
    for CubeBackend<WgpuRuntime, F, I, BT>
{
}
