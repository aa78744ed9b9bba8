//! `DepthwiseBackend` for Burn's `NdArray` backend, on the CPU kernels, for every element
//! type: `f32` tensors take the kernels, others (e.g. `NdArray<f64>`) the fallback ops.

use burn::backend::NdArray;
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
};
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{Shape, TensorData};

use super::{HostTensors, impl_depthwise_on_host};
use crate::kernels::cpu::gather::dense_copy;

impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> HostTensors for NdArray<E, I, Q>
where
    NdArrayTensor: From<SharedArray<E>>,
    NdArrayTensor: From<SharedArray<I>>,
{
    fn with_f32<R>(tensor: &FloatTensor<Self>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        let NdArrayTensor::F32(storage) = tensor else {
            return None;
        };
        let view = storage.view();
        Some(match view.as_slice() {
            Some(slice) => f(slice),
            // A permuted tensor (Burn's conv2d returns its output as an NHWC-strided view)
            // fills one block of memory in another axis order; with non-negative strides
            // its first element is the block's first.
            None => match view
                .as_slice_memory_order()
                .and_then(|memory| dense_copy(memory, 0, view.shape(), view.strides()))
            {
                Some(dense) => f(&dense),
                None => f(&view.iter().copied().collect::<Vec<_>>()),
            },
        })
    }

    fn from_f32<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FloatTensor<Self> {
        NdArrayTensor::from_data(TensorData::new(data, shape))
    }

    fn reshape_dense(tensor: FloatTensor<Self>, shape: Shape) -> FloatTensor<Self> {
        match tensor {
            NdArrayTensor::F32(storage) => {
                let array = storage.into_shared();
                if !array.is_standard_layout() {
                    let dense = array
                        .as_slice_memory_order()
                        .and_then(|memory| dense_copy(memory, 0, array.shape(), array.strides()));
                    return match dense {
                        Some(dense) => NdArrayTensor::from_data(TensorData::new(dense, shape)),
                        None => Self::float_reshape(NdArrayTensor::from(array), shape),
                    };
                }
                // A standard-layout array takes a new shape over the same buffer.
                let reshaped = array
                    .into_shape_with_order(shape.to_vec())
                    .expect("reshape_dense keeps the element count");
                NdArrayTensor::from(reshaped)
            }
            other => Self::float_reshape(other, shape),
        }
    }
}

impl_depthwise_on_host!(
    [E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement] NdArray<E, I, Q>
    where NdArrayTensor: From<SharedArray<E>>, NdArrayTensor: From<SharedArray<I>>
);
