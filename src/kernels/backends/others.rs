//! Backends that run the ops through Burn's own ops (the traits' default methods): correct
//! everywhere, without a kernel of this crate's. The router and Dispatch may run on a
//! CubeCL device, so their depthwise input gradient avoids the CubeCL bug as the CubeCL
//! family does.
//!
//! Candle has no grouped transposed convolution, which Burn's default depthwise input
//! gradient uses, and Burn's generic weight gradient (a conv over dim-swapped views) makes
//! Candle's matmul index out of range at some shapes (seen in a MobileNetV3-Small training
//! step), so Candle takes both gradients as forward grouped correlations instead. Its
//! convolutions refuse different options along height and width (Burn's Candle backend
//! panics saying so); MobileNets never use them.

// Burn 0.21 deprecates burn-candle; it still is one of its backends.
#[cfg(feature = "candle")]
#[allow(deprecated)]
mod candle {
    use burn::tensor::ops::FloatTensor;
    use burn_candle::{Candle, FloatCandleElement, IntCandleElement};

    use crate::kernels::{
        DepthwiseBackend, DepthwiseOptions, NormActBackend, PointwiseBackend, fallback,
    };

    impl<F: FloatCandleElement, I: IntCandleElement> DepthwiseBackend for Candle<F, I> {
        fn depthwise_conv2d_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            output_grad: FloatTensor<Self>,
            options: DepthwiseOptions,
        ) -> FloatTensor<Self> {
            fallback::x_backward_by_correlation::<Self>(x, weight, output_grad, options)
        }

        fn depthwise_conv2d_weight_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            output_grad: FloatTensor<Self>,
            options: DepthwiseOptions,
        ) -> FloatTensor<Self> {
            fallback::weight_backward_by_correlation::<Self>(x, weight, output_grad, options)
        }
    }
    impl<F: FloatCandleElement, I: IntCandleElement> PointwiseBackend for Candle<F, I> {}
    impl<F: FloatCandleElement, I: IntCandleElement> NormActBackend for Candle<F, I> {}
}

#[cfg(feature = "tch")]
mod tch {
    use burn_tch::{LibTorch, TchElement};

    use crate::kernels::{DepthwiseBackend, NormActBackend, PointwiseBackend};

    impl<E: TchElement> DepthwiseBackend for LibTorch<E> {}
    impl<E: TchElement> PointwiseBackend for LibTorch<E> {}
    impl<E: TchElement> NormActBackend for LibTorch<E> {}
}

#[cfg(feature = "router")]
mod router {
    use burn::tensor::ops::FloatTensor;
    use burn_router::{BackendRouter, RunnerChannel};

    use crate::kernels::{
        DepthwiseBackend, DepthwiseOptions, NormActBackend, PointwiseBackend, fallback,
    };

    impl<R: RunnerChannel> DepthwiseBackend for BackendRouter<R> {
        fn depthwise_conv2d_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            output_grad: FloatTensor<Self>,
            options: DepthwiseOptions,
        ) -> FloatTensor<Self> {
            fallback::x_backward_spreading_wide_strides::<Self>(x, weight, output_grad, options)
        }
    }
    impl<R: RunnerChannel> PointwiseBackend for BackendRouter<R> {}
    impl<R: RunnerChannel> NormActBackend for BackendRouter<R> {}
}

#[cfg(feature = "dispatch")]
mod dispatch {
    use burn::tensor::ops::FloatTensor;
    use burn_dispatch::Dispatch;

    use crate::kernels::{
        DepthwiseBackend, DepthwiseOptions, NormActBackend, PointwiseBackend, fallback,
    };

    impl DepthwiseBackend for Dispatch {
        fn depthwise_conv2d_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            output_grad: FloatTensor<Self>,
            options: DepthwiseOptions,
        ) -> FloatTensor<Self> {
            fallback::x_backward_spreading_wide_strides::<Self>(x, weight, output_grad, options)
        }
    }
    impl PointwiseBackend for Dispatch {}
    impl NormActBackend for Dispatch {}
}
