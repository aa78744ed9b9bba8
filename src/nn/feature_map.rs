//! A batch of feature maps together with the memory layout it is stored in.

use std::ops::Add;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::kernels::{Layout, TO_NCHW, TO_NHWC};

/// A batch of feature maps and its layout: the tensor is `[N, C, H, W]` when the layout is
/// [`Layout::ChannelsFirst`] and `[N, H, W, C]` when it is [`Layout::ChannelsLast`].
///
/// A network picks the layout once, where images enter ([`FeatureMap::from_nchw`]); the
/// leaf layers ([`ConvNormAct`](super::ConvNormAct), the BatchNorm, the pooling in a
/// squeeze-excitation) run the kernel of the map's layout, and a block made of them has
/// one `forward` that passes the map on whatever its layout. A plain `[N, C, H, W]` tensor
/// converts into a channels-first map (`From`), so a block's `forward` also takes one.
#[derive(Clone, Debug)]
pub struct FeatureMap<B: Backend> {
    tensor: Tensor<B, 4>,
    layout: Layout,
}

impl<B: Backend> FeatureMap<B> {
    /// `tensor` stored in `layout`.
    pub fn new(tensor: Tensor<B, 4>, layout: Layout) -> Self {
        Self { tensor, layout }
    }

    /// An `[N, C, H, W]` batch converted to `layout` (a permute for channels-last).
    pub fn from_nchw(images: Tensor<B, 4>, layout: Layout) -> Self {
        let tensor = match layout {
            Layout::ChannelsFirst => images,
            Layout::ChannelsLast => images.permute(TO_NHWC),
        };
        Self { tensor, layout }
    }

    /// The layout of [`Self::tensor`].
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The stored tensor, in [`Self::layout`].
    pub fn tensor(&self) -> &Tensor<B, 4> {
        &self.tensor
    }

    /// The stored tensor, in [`Self::layout`].
    pub fn into_tensor(self) -> Tensor<B, 4> {
        self.tensor
    }

    /// The maps as `[N, C, H, W]` (a permute for channels-last).
    pub fn into_nchw(self) -> Tensor<B, 4> {
        match self.layout {
            Layout::ChannelsFirst => self.tensor,
            Layout::ChannelsLast => self.tensor.permute(TO_NCHW),
        }
    }

    /// `[N, C, H, W]`, whatever the layout.
    pub fn dims(&self) -> [usize; 4] {
        let dims = self.tensor.dims();
        match self.layout {
            Layout::ChannelsFirst => dims,
            Layout::ChannelsLast => [dims[0], dims[3], dims[1], dims[2]],
        }
    }

    /// The device the tensor is on.
    pub fn device(&self) -> B::Device {
        self.tensor.device()
    }

    /// `f` applied to the stored tensor; the result is kept in the same layout.
    pub fn map(self, f: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>) -> Self {
        Self {
            tensor: f(self.tensor),
            layout: self.layout,
        }
    }

    /// The mean of each channel of each map.
    ///
    /// # Shapes
    /// - output: `[N, C]`
    pub fn spatial_mean(&self) -> Tensor<B, 2> {
        let [n, c, h, w] = self.dims();
        match self.layout {
            Layout::ChannelsFirst => self
                .tensor
                .clone()
                .reshape([n, c, h * w])
                .mean_dim(2)
                .reshape([n, c]),
            // Two means (over H, then W) instead of a reshape, which copies the map on
            // ndarray.
            Layout::ChannelsLast => self.tensor.clone().mean_dim(1).mean_dim(2).reshape([n, c]),
        }
    }

    /// Each channel multiplied by its factor.
    ///
    /// # Shapes
    /// - scale: `[N, C]`, or `[1, C]` for the same factors on every map
    pub fn scale_channels(self, scale: Tensor<B, 2>) -> Self {
        let [rows, c] = scale.dims();
        let scale = match self.layout {
            Layout::ChannelsFirst => scale.reshape([rows, c, 1, 1]),
            Layout::ChannelsLast => scale.reshape([rows, 1, 1, c]),
        };
        self.map(|x| x * scale)
    }
}

impl<B: Backend> From<Tensor<B, 4>> for FeatureMap<B> {
    /// An `[N, C, H, W]` tensor as a channels-first map.
    fn from(tensor: Tensor<B, 4>) -> Self {
        Self::new(tensor, Layout::ChannelsFirst)
    }
}

impl<B: Backend> Add for FeatureMap<B> {
    type Output = Self;

    /// The element-wise sum (a residual connection).
    ///
    /// # Panics
    /// If the two maps are stored in different layouts: a network keeps one layout.
    fn add(self, other: Self) -> Self {
        assert_eq!(
            self.layout, other.layout,
            "adding feature maps stored in different layouts"
        );
        self.map(|x| x + other.tensor)
    }
}
