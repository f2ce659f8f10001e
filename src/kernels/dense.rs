//! Dense (fully connected) layers in the Keras `[input][unit]` layout.
//!
//! With that layout one input value scales one contiguous row of weights, so
//! the forward pass is a sum of rows, and a zero input (most of them, after
//! ReLU, max-pool and dropout) costs one comparison instead of a row.

use super::vector::{axpy, axpy_scalar, dot, dot_scalar};

/// `out = bias + input . kernel`, skipping zero inputs.
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
    *out = *bias;
    for (&x, row) in input.iter().zip(kernel) {
        if x != 0.0 {
            axpy(x, row, out);
        }
    }
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
        *v = v.max(0.0);
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
