//! `DepthwiseBackend` for Burn's `Flex` CPU backend, on the CPU kernels.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, TensorData};

use super::{HostTensors, impl_depthwise_on_host};
use crate::kernels::cpu::gather::dense_copy;

/// The elements of a strided `f32` view in row-major order (`None` for another dtype or a
/// negative stride): burn-flex's own copy walks views of three or more axes (an NCHW map
/// seen as NHWC) one multi-dimensional index at a time.
fn dense_elements(tensor: &FlexTensor) -> Option<Vec<f32>> {
    if tensor.dtype() != DType::F32 {
        return None;
    }
    let layout = tensor.layout();
    dense_copy(
        tensor.storage::<f32>(),
        layout.start_offset(),
        layout.shape(),
        layout.strides(),
    )
}

impl HostTensors for Flex {
    fn with_f32<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        if let Some(slice) = tensor.as_slice::<f32>() {
            return Some(f(slice));
        }
        if let Some(dense) = dense_elements(tensor) {
            return Some(f(&dense));
        }
        // Another dtype, or a flipped view: Burn's copy, then look again.
        tensor.to_contiguous().as_slice::<f32>().map(f)
    }

    fn from_f32<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FloatTensor<Self> {
        FlexTensor::from_data(TensorData::new(data, shape))
    }

    fn reshape_dense(tensor: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        if tensor.is_contiguous() {
            return tensor.reshape(shape);
        }
        match dense_elements(&tensor) {
            Some(dense) => FlexTensor::from_data(TensorData::new(dense, shape)),
            None => tensor.reshape(shape),
        }
    }
}

impl_depthwise_on_host!(Flex);
