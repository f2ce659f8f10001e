//! Dense (fully connected) layers in the Keras `[input][unit]` layout.
//!
//! With that layout one input value scales one contiguous row of weights, so
//! the forward pass is a sum of rows, and a zero input (most of them, after
//! ReLU, max-pool and dropout) costs one comparison instead of a row.

use super::vector::{axpy, axpy_scalar, dot, dot_scalar, larger, LANES};
use wide::f32x8;

/// SIMD vectors of outputs the forward pass keeps in registers while it runs
/// through the inputs: 32 outputs in four AVX registers on x86-64, 24 of the
/// 32 single-precision registers of a Cortex-M FPU elsewhere.
const BLOCK_VECTORS: usize = if cfg!(target_arch = "x86_64") { 4 } else { 2 };

/// `out = bias + input . kernel`, skipping zero inputs.
///
/// Blocks of outputs stay in registers while the inputs stream past, so each
/// weight is loaded once and each output stored once.
///
/// ```
/// use tinycnn::kernels::dense;
/// let kernel = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
/// let mut out = [0.0; 2];
/// dense(&[1.0, 0.0, 2.0], &kernel, &[0.5, -0.5], &mut out);
/// assert_eq!(out, [11.5, 13.5]);
/// ```
#[inline]
pub fn dense<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    let mut start = 0;
    while start + BLOCK_VECTORS * LANES <= OUT {
        dense_block::<BLOCK_VECTORS, IN, OUT>(input, kernel, bias, start, out);
        start += BLOCK_VECTORS * LANES;
    }
    while start + LANES <= OUT {
        dense_block::<1, IN, OUT>(input, kernel, bias, start, out);
        start += LANES;
    }
    if start < OUT {
        out[start..].copy_from_slice(&bias[start..]);
        for (&x, row) in input.iter().zip(kernel) {
            if x != 0.0 {
                axpy_scalar(x, &row[start..], &mut out[start..]);
            }
        }
    }
}

/// Outputs `start..start + V * LANES` of [`dense`].
#[inline]
fn dense_block<const V: usize, const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    bias: &[f32; OUT],
    start: usize,
    out: &mut [f32; OUT],
) {
    let block = start..start + V * LANES;
    let Some(bias_block) = bias.get(block.clone()) else {
        return;
    };
    let mut sums: [f32x8; V] = core::array::from_fn(|v| f32x8::new(lanes_at(bias_block, v)));
    for (&x, row) in input.iter().zip(kernel) {
        if x != 0.0 {
            let xv = f32x8::splat(x);
            let Some(weights) = row.get(block.clone()) else {
                return;
            };
            for (v, sum) in sums.iter_mut().enumerate() {
                *sum = f32x8::new(lanes_at(weights, v)).mul_add(xv, *sum);
            }
        }
    }
    if let Some(out_block) = out.get_mut(block) {
        for (chunk, sum) in out_block.chunks_exact_mut(LANES).zip(sums) {
            chunk.copy_from_slice(&sum.to_array());
        }
    }
}

/// Vector `v` of a block (zeros past its end, which callers never reach).
#[inline]
fn lanes_at(block: &[f32], v: usize) -> [f32; LANES] {
    block
        .get(v * LANES..(v + 1) * LANES)
        .and_then(|c| c.try_into().ok())
        .unwrap_or([0.0; LANES])
}

/// Scalar twin of [`dense`].
///
/// ```
/// use tinycnn::kernels::dense_scalar;
/// let mut out = [0.0; 1];
/// dense_scalar(&[2.0, 3.0], &[[1.0], [1.0]], &[1.0], &mut out);
/// assert_eq!(out, [6.0]);
/// ```
#[inline]
pub fn dense_scalar<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    *out = *bias;
    for (&x, row) in input.iter().zip(kernel) {
        if x != 0.0 {
            axpy_scalar(x, row, out);
        }
    }
}

/// Sets negative values to zero.
///
/// ```
/// let mut v = [-1.0, 2.0];
/// tinycnn::kernels::relu(&mut v);
/// assert_eq!(v, [0.0, 2.0]);
/// ```
#[inline]
pub fn relu(values: &mut [f32]) {
    for v in values {
        *v = larger(*v, 0.0);
    }
}

/// Backward of a dense layer whose input came out of a ReLU.
///
/// Adds `input (outer) out_grad` to `kernel_grad` and `out_grad` to
/// `bias_grad`; with `input_grad`, writes `kernel . out_grad` there. Rows
/// whose input is zero are skipped and their input gradient set to zero:
/// that is exact here, because a zero that came out of a ReLU passes no
/// gradient back anyway.
///
/// ```
/// use tinycnn::kernels::dense_backward;
/// let kernel = [[1.0, 2.0], [3.0, 4.0]];
/// let (mut kernel_grad, mut bias_grad, mut input_grad) = ([[0.0; 2]; 2], [0.0; 2], [9.0; 2]);
/// dense_backward(&[2.0, 0.0], &kernel, &[1.0, -1.0], &mut kernel_grad, &mut bias_grad, Some(&mut input_grad));
/// assert_eq!(kernel_grad, [[2.0, -2.0], [0.0, 0.0]]);
/// assert_eq!(bias_grad, [1.0, -1.0]);
/// assert_eq!(input_grad, [-1.0, 0.0]);
/// ```
#[inline]
pub fn dense_backward<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    out_grad: &[f32; OUT],
    kernel_grad: &mut [[f32; OUT]; IN],
    bias_grad: &mut [f32; OUT],
    input_grad: Option<&mut [f32; IN]>,
) {
    axpy(1.0, out_grad, bias_grad);
    match input_grad {
        Some(input_grad) => {
            for (((&x, row), grad_row), dx) in input.iter().zip(kernel).zip(kernel_grad).zip(input_grad) {
                *dx = 0.0;
                if x != 0.0 {
                    axpy(x, out_grad, grad_row);
                    *dx = dot(row, out_grad);
                }
            }
        }
        None => {
            for (&x, grad_row) in input.iter().zip(kernel_grad) {
                if x != 0.0 {
                    axpy(x, out_grad, grad_row);
                }
            }
        }
    }
}

/// Scalar twin of [`dense_backward`].
///
/// ```
/// use tinycnn::kernels::dense_backward_scalar;
/// let (mut kernel_grad, mut bias_grad) = ([[0.0; 1]; 1], [0.0; 1]);
/// dense_backward_scalar(&[3.0], &[[1.0]], &[2.0], &mut kernel_grad, &mut bias_grad, None);
/// assert_eq!((kernel_grad, bias_grad), ([[6.0]], [2.0]));
/// ```
#[inline]
pub fn dense_backward_scalar<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    out_grad: &[f32; OUT],
    kernel_grad: &mut [[f32; OUT]; IN],
    bias_grad: &mut [f32; OUT],
    mut input_grad: Option<&mut [f32; IN]>,
) {
    axpy_scalar(1.0, out_grad, bias_grad);
    for (i, (&x, grad_row)) in input.iter().zip(kernel_grad).enumerate() {
        let mut dx = 0.0;
        if x != 0.0 {
            axpy_scalar(x, out_grad, grad_row);
            dx = dot_scalar(&kernel[i], out_grad);
        }
        if let Some(input_grad) = input_grad.as_deref_mut() {
            input_grad[i] = dx;
        }
    }
}
