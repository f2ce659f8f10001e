//! Softmax and softmax cross-entropy on logits, computed relative to the
//! largest logit so large logits neither overflow nor lose the small ones.

use crate::Error;

/// Writes `exp(z - max)` to `out` and returns `(max, sum of out)`.
#[inline]
fn shifted_exp<const C: usize>(logits: &[f32; C], out: &mut [f32; C]) -> (f32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (e, &z) in out.iter_mut().zip(logits) {
        *e = libm::expf(z - max);
        sum += *e;
    }
    (max, sum)
}

/// Writes the softmax of `logits` to `probabilities`.
///
/// ```
/// let mut p = [0.0; 2];
/// tinycnn::kernels::softmax(&[1000.0, 1000.0], &mut p);
/// assert_eq!(p, [0.5, 0.5]);
/// ```
#[inline]
pub fn softmax<const C: usize>(logits: &[f32; C], probabilities: &mut [f32; C]) {
    let (_, sum) = shifted_exp(logits, probabilities);
    for p in probabilities.iter_mut() {
        *p /= sum;
    }
}

/// Cross-entropy of `softmax(logits)` against `label`; writes
/// `scale * (softmax(logits) - one_hot(label))`, the gradient of
/// `scale * loss` with respect to the logits, to `grad`.
///
/// ```
/// let mut grad = [0.0; 2];
/// let loss = tinycnn::kernels::softmax_cross_entropy(&[0.0, 0.0], 1, 1.0, &mut grad).unwrap();
/// assert!((loss - core::f32::consts::LN_2).abs() < 1e-7);
/// assert_eq!(grad, [0.5, -0.5]);
/// ```
///
/// # Errors
/// [`Error::LabelOutOfRange`] when `label >= C`.
#[inline]
pub fn softmax_cross_entropy<const C: usize>(
    logits: &[f32; C],
    label: usize,
    scale: f32,
    grad: &mut [f32; C],
) -> Result<f32, Error> {
    let Some(&target) = logits.get(label) else {
        return Err(Error::LabelOutOfRange { label, classes: C });
    };
    let (max, sum) = shifted_exp(logits, grad);
    let factor = scale / sum;
    for g in grad.iter_mut() {
        *g *= factor;
    }
    grad[label] -= scale;
    Ok(libm::logf(sum) - (target - max))
}
