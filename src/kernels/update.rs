//! Parameter updates of the optimizers, over flat slices of parameters,
//! gradients and optimizer state.

use super::vector::{flush_tiny, Lanes, Vector};
use wide::f32x8;

/// Coefficients of one Adam step (the bias corrections folded into `alpha`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Step size with both bias corrections: `lr * sqrt(1 - beta2^t) / (1 - beta1^t)`.
    pub alpha: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
}

/// One Adam step: `m += (g - m)(1 - beta1)`, `v += (g^2 - v)(1 - beta2)`,
/// `p -= alpha * m / (sqrt(v) + epsilon)`, over the shortest of the slices.
///
/// ```
/// use tinycnn::kernels::{adam_update, AdamStep};
/// let (mut p, mut m, mut v) = ([1.0; 9], [0.0; 9], [0.0; 9]);
/// let step = AdamStep { alpha: 0.1, beta1: 0.5, beta2: 0.75, epsilon: 0.0 };
/// adam_update(&mut p, &mut m, &mut v, &[2.0; 9], step);
/// // m = 1, v = 1, p = 1 - 0.1 * 1 / 1
/// assert_eq!((m[8], v[8], p[8]), (1.0, 1.0, 0.9));
/// ```
#[inline]
pub fn adam_update(params: &mut [f32], m: &mut [f32], v: &mut [f32], grads: &[f32], step: AdamStep) {
    let n = params.len().min(m.len()).min(v.len()).min(grads.len());
    let (params, m, v, grads) = (&mut params[..n], &mut m[..n], &mut v[..n], &grads[..n]);
    // Widest vectors, then eight lanes, then one value at a time: each value
    // rounds as with eight lanes, whatever the width.
    let wide = adam_vectors::<Vector>(params, m, v, grads, step);
    let narrow = wide
        + adam_vectors::<f32x8>(
            &mut params[wide..],
            &mut m[wide..],
            &mut v[wide..],
            &grads[wide..],
            step,
        );
    adam_update_scalar(
        &mut params[narrow..],
        &mut m[narrow..],
        &mut v[narrow..],
        &grads[narrow..],
        step,
    );
}

/// [`adam_update`] over the whole vectors of `L` at the front of the slices
/// (of equal lengths); returns how many values that was.
#[inline]
fn adam_vectors<L: Lanes>(
    params: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grads: &[f32],
    step: AdamStep,
) -> usize {
    let one_minus_beta1 = L::splat(1.0 - step.beta1);
    let one_minus_beta2 = L::splat(1.0 - step.beta2);
    let alpha = L::splat(step.alpha);
    let epsilon = L::splat(step.epsilon);
    let mut done = 0;
    let chunks = params.chunks_exact_mut(L::N).zip(m.chunks_exact_mut(L::N));
    for ((pc, mc), (vc, gc)) in chunks.zip(v.chunks_exact_mut(L::N).zip(grads.chunks_exact(L::N))) {
        let g = L::load(gc);
        let (mut mv, mut vv) = (L::load(mc), L::load(vc));
        mv = (g - mv).mul_add(one_minus_beta1, mv).flush_tiny();
        vv = (g * g - vv).mul_add(one_minus_beta2, vv).flush_tiny();
        let p = L::load(pc) - alpha * mv / (vv.sqrt() + epsilon);
        mv.store(mc);
        vv.store(vc);
        p.store(pc);
        done += L::N;
    }
    done
}

/// Scalar twin of [`adam_update`].
///
/// ```
/// use tinycnn::kernels::{adam_update_scalar, AdamStep};
/// let (mut p, mut m, mut v) = ([1.0], [0.0], [0.0]);
/// let step = AdamStep { alpha: 0.1, beta1: 0.5, beta2: 0.75, epsilon: 0.0 };
/// adam_update_scalar(&mut p, &mut m, &mut v, &[2.0], step);
/// assert_eq!((m, v, p), ([1.0], [1.0], [0.9]));
/// ```
#[inline]
pub fn adam_update_scalar(params: &mut [f32], m: &mut [f32], v: &mut [f32], grads: &[f32], step: AdamStep) {
    for (((p, mv), vv), &g) in params.iter_mut().zip(m).zip(v).zip(grads) {
        *mv = flush_tiny(*mv + (g - *mv) * (1.0 - step.beta1));
        *vv = flush_tiny(*vv + (g * g - *vv) * (1.0 - step.beta2));
        *p -= step.alpha * *mv / (libm::sqrtf(*vv) + step.epsilon);
    }
}

/// One step of SGD with momentum, Keras's form: `v = momentum * v - lr * g`,
/// `p += v`.
///
/// ```
/// let (mut p, mut v) = ([1.0; 9], [1.0; 9]);
/// tinycnn::kernels::momentum_update(&mut p, &mut v, &[1.0; 9], 0.5, 0.25);
/// // v = 0.25 * 1 - 0.5 * 1, p = 1 + v
/// assert_eq!((v[8], p[8]), (-0.25, 0.75));
/// ```
#[inline]
pub fn momentum_update(params: &mut [f32], velocity: &mut [f32], grads: &[f32], lr: f32, momentum: f32) {
    let n = params.len().min(velocity.len()).min(grads.len());
    let (params, velocity, grads) = (&mut params[..n], &mut velocity[..n], &grads[..n]);
    let wide = momentum_vectors::<Vector>(params, velocity, grads, lr, momentum);
    let narrow = wide
        + momentum_vectors::<f32x8>(
            &mut params[wide..],
            &mut velocity[wide..],
            &grads[wide..],
            lr,
            momentum,
        );
    momentum_update_scalar(
        &mut params[narrow..],
        &mut velocity[narrow..],
        &grads[narrow..],
        lr,
        momentum,
    );
}

/// [`momentum_update`] over the whole vectors of `L` at the front of the
/// slices (of equal lengths); returns how many values that was.
#[inline]
fn momentum_vectors<L: Lanes>(
    params: &mut [f32],
    velocity: &mut [f32],
    grads: &[f32],
    lr: f32,
    momentum: f32,
) -> usize {
    let (lr_v, momentum_v) = (L::splat(lr), L::splat(momentum));
    let mut done = 0;
    let chunks = params.chunks_exact_mut(L::N).zip(velocity.chunks_exact_mut(L::N));
    for ((pc, vc), gc) in chunks.zip(grads.chunks_exact(L::N)) {
        let v = (momentum_v * L::load(vc) - lr_v * L::load(gc)).flush_tiny();
        v.store(vc);
        (L::load(pc) + v).store(pc);
        done += L::N;
    }
    done
}

/// Scalar twin of [`momentum_update`].
///
/// ```
/// let (mut p, mut v) = ([1.0], [1.0]);
/// tinycnn::kernels::momentum_update_scalar(&mut p, &mut v, &[1.0], 0.5, 0.25);
/// assert_eq!((v, p), ([-0.25], [0.75]));
/// ```
#[inline]
pub fn momentum_update_scalar(
    params: &mut [f32],
    velocity: &mut [f32],
    grads: &[f32],
    lr: f32,
    momentum: f32,
) {
    for ((p, v), &g) in params.iter_mut().zip(velocity).zip(grads) {
        *v = flush_tiny(momentum * *v - lr * g);
        *p += *v;
    }
}
