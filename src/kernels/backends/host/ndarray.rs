//! `DepthwiseBackend` for Burn's `NdArray` backend, on the CPU kernels, for every element
//! type: `f32` tensors take the kernels, others (e.g. `NdArray<f64>`) the fallback ops.

use burn::backend::NdArray;
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
};
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{Shape, TensorData};

use super::{HostTensors, impl_depthwise_on_host};

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
            // fills one block of memory in another axis order: gather it axis by axis.
            None => match view
                .as_slice_memory_order()
                .filter(|_| view.strides().iter().all(|&s| s >= 0))
            {
                Some(memory) => f(&row_major(memory, view.shape(), view.strides())),
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
                    return Self::float_reshape(NdArrayTensor::from(array), shape);
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

/// The elements of a view over `memory` with non-negative `strides` (in elements, from
/// the start of `memory`), in row-major order. The innermost axis is copied as one
/// strided run per outer index, which is what makes this fast: ndarray's element iterator
/// recomputes a multi-dimensional index per element.
fn row_major(memory: &[f32], shape: &[usize], strides: &[isize]) -> Vec<f32> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    let Some((&inner_len, outer_shape)) = shape.split_last() else {
        out.push(memory[0]);
        return out;
    };
    if total == 0 {
        return out;
    }
    let strides: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
    let (&inner_stride, outer_strides) = strides.split_last().expect("as many strides as axes");
    let mut index = vec![0usize; outer_shape.len()];
    for _ in 0..total / inner_len {
        let base: usize = index.iter().zip(outer_strides).map(|(i, s)| i * s).sum();
        if inner_stride == 0 {
            out.extend(std::iter::repeat_n(memory[base], inner_len));
        } else {
            out.extend(
                memory[base..]
                    .iter()
                    .step_by(inner_stride)
                    .take(inner_len)
                    .copied(),
            );
        }
        // Next outer index, last axis fastest.
        for (axis, i) in index.iter_mut().enumerate().rev() {
            *i += 1;
            if *i < outer_shape[axis] {
                break;
            }
            *i = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    /// Dense copies of strided views equal Burn's own row-major read-back.
    #[test]
    fn strided_views_read_back_in_row_major_order() {
        let device = Default::default();
        let values: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32).collect();
        let x = Tensor::<NdArray, 4>::from_data(TensorData::new(values, [2, 3, 4, 5]), &device);
        let views = [
            x.clone().permute([0, 2, 3, 1]),
            x.clone().swap_dims(2, 3),
            x.clone().flip([3]),
            x.clone().slice([0..2, 1..3, 0..4, 1..4]),
            x.clone().permute([3, 1, 0, 2]).flip([1]),
        ];
        for view in views {
            let expected = view.to_data().to_vec::<f32>().unwrap();
            let got =
                NdArray::<f32>::with_f32(&view.into_primitive().tensor(), |s| s.to_vec()).unwrap();
            assert_eq!(got, expected);
        }
    }
}
