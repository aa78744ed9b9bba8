//! Learning-rate schedule: linear warm-up, then cosine decay to zero.

/// Learning rate at optimisation step `step` (0-based) of `total` steps, with the first
/// `warmup` steps rising linearly to `peak`, then a half cosine down to 0.
pub fn cosine_with_warmup(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_zero() {
        assert_eq!(cosine_with_warmup(1.0, 0, 4, 20), 0.25);
        assert_eq!(cosine_with_warmup(1.0, 3, 4, 20), 1.0);
        assert_eq!(cosine_with_warmup(1.0, 4, 4, 20), 1.0);
        assert!((cosine_with_warmup(1.0, 12, 4, 20) - 0.5).abs() < 1e-12);
        assert!(cosine_with_warmup(1.0, 19, 4, 20) < 0.01);
        let lrs: Vec<f64> = (4..20).map(|s| cosine_with_warmup(0.1, s, 4, 20)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
        // No warm-up at all.
        assert_eq!(cosine_with_warmup(0.1, 0, 0, 10), 0.1);
    }
}
