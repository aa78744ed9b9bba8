//! `DepthwiseBackend` for Burn's `Flex` CPU backend, on the CPU kernels.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use burn::tensor::ops::FloatTensor;

use super::{HostTensors, impl_depthwise_on_host};

impl HostTensors for Flex {
    fn with_f32<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        if let Some(slice) = tensor.as_slice::<f32>() {
            return Some(f(slice));
        }
        // A strided view (or another dtype): make it contiguous, then look again.
        tensor.to_contiguous().as_slice::<f32>().map(f)
    }

    fn from_f32<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FloatTensor<Self> {
        FlexTensor::from_data(TensorData::new(data, shape))
    }
}

impl_depthwise_on_host!(Flex);
