//! `DepthwiseBackend` for Burn's `NdArray` backend, on the CPU kernels.

use burn::backend::NdArray;
use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::TensorData;
use burn::tensor::ops::FloatTensor;

use super::host::{HostTensors, impl_depthwise_on_host};

impl HostTensors for NdArray {
    fn with_f32<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        let NdArrayTensor::F32(storage) = tensor else {
            return None;
        };
        let view = storage.view();
        Some(match view.as_slice() {
            Some(slice) => f(slice),
            None => f(&view.iter().copied().collect::<Vec<_>>()),
        })
    }

    fn from_f32(data: Vec<f32>, shape: [usize; 4]) -> FloatTensor<Self> {
        NdArrayTensor::from_data(TensorData::new(data, shape))
    }

    fn from_f32_vec(data: Vec<f32>) -> FloatTensor<Self> {
        let len = data.len();
        NdArrayTensor::from_data(TensorData::new(data, [len]))
    }
}

impl_depthwise_on_host!(NdArray);
