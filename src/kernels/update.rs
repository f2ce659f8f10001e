//! Parameter updates of the optimizers, over flat slices of parameters,
//! gradients and optimizer state.

use super::vector::LANES;
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
    let (p_chunks, p_rest) = params[..n].as_chunks_mut::<LANES>();
    let (m_chunks, m_rest) = m[..n].as_chunks_mut::<LANES>();
    let (v_chunks, v_rest) = v[..n].as_chunks_mut::<LANES>();
    let (g_chunks, g_rest) = grads[..n].as_chunks::<LANES>();
    let one_minus_beta1 = f32x8::splat(1.0 - step.beta1);
    let one_minus_beta2 = f32x8::splat(1.0 - step.beta2);
    let alpha = f32x8::splat(step.alpha);
    let epsilon = f32x8::splat(step.epsilon);
    for (((pc, mc), vc), gc) in p_chunks.iter_mut().zip(m_chunks).zip(v_chunks).zip(g_chunks) {
        let g = f32x8::new(*gc);
        let mut mv = f32x8::new(*mc);
        let mut vv = f32x8::new(*vc);
        mv = (g - mv).mul_add(one_minus_beta1, mv);
        vv = (g * g - vv).mul_add(one_minus_beta2, vv);
        let p = f32x8::new(*pc) - alpha * mv / (sqrt(vv) + epsilon);
        *mc = mv.to_array();
        *vc = vv.to_array();
        *pc = p.to_array();
    }
    adam_update_scalar(p_rest, m_rest, v_rest, g_rest, step);
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
        *mv += (g - *mv) * (1.0 - step.beta1);
        *vv += (g * g - *vv) * (1.0 - step.beta2);
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
    let (p_chunks, p_rest) = params[..n].as_chunks_mut::<LANES>();
    let (v_chunks, v_rest) = velocity[..n].as_chunks_mut::<LANES>();
    let (g_chunks, g_rest) = grads[..n].as_chunks::<LANES>();
    let (lr_v, momentum_v) = (f32x8::splat(lr), f32x8::splat(momentum));
    for ((pc, vc), gc) in p_chunks.iter_mut().zip(v_chunks).zip(g_chunks) {
        let v = momentum_v * f32x8::new(*vc) - lr_v * f32x8::new(*gc);
        *vc = v.to_array();
        *pc = (f32x8::new(*pc) + v).to_array();
    }
    momentum_update_scalar(p_rest, v_rest, g_rest, lr, momentum);
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
        *v = momentum * *v - lr * g;
        *p += *v;
    }
}

/// Lane-wise square root. `wide` has no Arm backend for 32-bit Cortex-M and
/// falls back to a software square root there, while the FPU of every
/// hard-float (`eabihf`) Cortex-M has `vsqrt.f32`: use it lane by lane there.
#[inline]
fn sqrt(v: f32x8) -> f32x8 {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        f32x8::new(v.to_array().map(hardware_sqrt))
    }
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        v.sqrt()
    }
}

/// The FPU's square root instruction. Rust exposes the FPU's registers to
/// `asm!` only with the double-precision `vfp2` feature, which single-precision
/// FPUs (M4F, M33) lack, so the value passes through a core register and `s0`
/// is saved around the instruction.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[inline]
fn hardware_sqrt(x: f32) -> f32 {
    let bits: u32;
    // SAFETY: the sequence reads and writes only `x`'s register and `s0`,
    // which it pushes first and pops last, so no register the compiler uses
    // changes; the push and pop stay within the stack below the stack pointer.
    unsafe {
        core::arch::asm!(
            "vpush {{s0}}",
            "vmov s0, {x}",
            "vsqrt.f32 s0, s0",
            "vmov {x}, s0",
            "vpop {{s0}}",
            x = inout(reg) x.to_bits() => bits,
            options(pure, nomem),
        );
    }
    f32::from_bits(bits)
}
