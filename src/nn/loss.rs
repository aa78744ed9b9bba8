use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

/// Configuration of a [`CrossEntropyLoss`].
#[derive(Config, Debug)]
pub struct CrossEntropyLossConfig {
    /// Label smoothing `α` in `[0, 1)`: the target distribution is
    /// `(1 - α) · one_hot + α / classes` (PyTorch's and Burn's definition).
    #[config(default = 0.0)]
    pub smoothing: f64,
}

impl CrossEntropyLossConfig {
    /// Builds the loss, or names a smoothing outside `[0, 1)`.
    pub fn try_init(&self) -> crate::Result<CrossEntropyLoss> {
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(crate::Error::Config(format!(
                "label smoothing must be in [0, 1), got {}",
                self.smoothing
            )));
        }
        Ok(CrossEntropyLoss {
            smoothing: self.smoothing,
        })
    }

    /// Builds the loss. Panics on a smoothing outside `[0, 1)` (see [`Self::try_init`]).
    pub fn init(&self) -> CrossEntropyLoss {
        self.try_init().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Mean cross-entropy of logits against class indices, with exact and reproducible
/// gradients.
///
/// The value is Burn's (`-mean_i Σ_j q_ij · log_softmax(x)_ij`), but the gradient with
/// respect to the logits is built as `(softmax(x) - q) / N` from exact operations. Burn
/// 0.21's own loss differentiates through `log`, whose backward multiplies by
/// `float_recip`, and burn-ndarray computes `recip` with the approximate `rcpps`
/// instruction (12 bits on AVX2, 14 on AVX-512) on the parts of a buffer that are
/// vector-aligned and with an exact division elsewhere: its gradients are off by up to
/// ~1e-4 relative and change with where the allocator placed the buffer, so two identical
/// training runs drift apart.
#[derive(Module, Clone, Debug)]
pub struct CrossEntropyLoss {
    smoothing: f64,
}

impl CrossEntropyLoss {
    /// The label smoothing `α`.
    pub fn smoothing(&self) -> f64 {
        self.smoothing
    }

    /// The mean loss of `logits` against `targets`.
    ///
    /// # Shapes
    /// - logits: `[N, classes]`
    /// - targets: `[N]`, class indices in `0..classes`
    /// - output: `[1]`
    pub fn forward<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let [batch, classes] = logits.dims();
        let targets = self.target_distribution(targets, classes);
        // Shifting by the (constant) row maximum keeps `exp` finite and leaves the
        // gradient unchanged.
        let shifted = logits.clone() - logits.detach().max_dim(1);
        let value = (log_softmax(shifted.clone().detach(), 1) * targets.clone())
            .sum()
            .neg()
            .div_scalar(batch as f64);
        // d/dx of Σ_ij (exp(s_ij) · c_i - q_ij · s_ij) / N with c_i = 1 / Σ_j exp(s_ij) held
        // constant is (softmax - q) / N: only products, sums and `exp`'s backward, all exact.
        let exp = shifted.clone().exp();
        let sum = exp.clone().detach().sum_dim(1);
        let inverse_sum = sum.ones_like() / sum;
        let surrogate = (exp * inverse_sum - shifted * targets)
            .sum()
            .div_scalar(batch as f64);
        // The value of `value`, the gradient of `surrogate`: `surrogate - surrogate` is 0.
        value + (surrogate.clone() - surrogate.detach())
    }

    fn target_distribution<B: Backend>(
        &self,
        targets: Tensor<B, 1, Int>,
        classes: usize,
    ) -> Tensor<B, 2> {
        let [batch] = targets.dims();
        let device = targets.device();
        let one_hot = Tensor::<B, 2>::zeros([batch, classes], &device).scatter(
            1,
            targets.reshape([batch, 1]),
            Tensor::ones([batch, 1], &device),
            IndexingUpdateOp::Add,
        );
        if self.smoothing == 0.0 {
            one_hot
        } else {
            one_hot * (1.0 - self.smoothing) + self.smoothing / classes as f64
        }
    }
}
