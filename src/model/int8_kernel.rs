//! A dense kernel stored in 8 bits with one scale per output.

use crate::kernels::{all_finite, GRID_MAX};
use crate::Error;

/// A dense layer's kernel in 8 bits: the weight from input `i` to output `j`
/// is `values[i][j] * scales[j]`, a step of `scales[j]` on a grid of
/// `-127..=127`. A quarter of the `f32` kernel's bytes, and the form
/// [`Dense8`](crate::stack::Dense8) layer keeps (its parameters'
/// [`Dense8Params`](crate::stack::Dense8Params)).
///
/// ```
/// use tinycnn::model::Int8Kernel;
/// let mut kernel = Int8Kernel::<2, 2>::zeroed();
/// kernel.quantize(&[[0.5, -1.0], [0.25, 0.5]]).unwrap();
/// // Twice each column's largest magnitude over 127: room to grow.
/// assert_eq!(kernel.scales, [1.0 / 127.0, 2.0 / 127.0]);
/// assert_eq!(kernel.values, [[64, -64], [32, 32]]);
/// let mut back = [[0.0; 2]; 2];
/// kernel.dequantize(&mut back);
/// assert!((back[1][0] - 0.25).abs() < 0.5 / 127.0);
/// ```
#[repr(C)]
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Kernel<const IN: usize, const OUT: usize> {
    /// One step per output.
    pub scales: [f32; OUT],
    /// The weights in steps, shape `[IN, OUT]` as in the `f32` kernel.
    pub values: [[i8; OUT]; IN],
}

// SAFETY: `f32` and `i8` arrays: all zero bytes form a valid value.
unsafe impl<const IN: usize, const OUT: usize> bytemuck::Zeroable for Int8Kernel<IN, OUT> {}

/// The step of a column whose weights are all zero: small, and it doubles
/// as the column's values grow.
const ZERO_COLUMN_SCALE: f32 = 1.0 / 65_536.0;

impl<const IN: usize, const OUT: usize> Int8Kernel<IN, OUT> {
    /// Every value zero (usable in a `static`, in `.bss`); every scale zero
    /// too, so [`quantize`](Self::quantize) it before use.
    pub const fn zeroed() -> Self {
        Self {
            scales: [0.0; OUT],
            values: [[0; OUT]; IN],
        }
    }

    /// Stores `weights`: each column's step is twice its largest magnitude
    /// over 127 (the values start within +-64, leaving the grid's other half
    /// for training to grow into), each value the nearest step.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite weight; `self` is left as
    /// it was.
    pub fn quantize(&mut self, weights: &[[f32; OUT]; IN]) -> Result<(), Error> {
        quantize_into(&mut self.scales, &mut self.values, weights)
    }

    /// Stores `weights` on the grid of the given `scales`, each value the
    /// nearest step. For weights that are `value * scale` (what
    /// [`dequantize`](Self::dequantize) writes) the values come back exactly:
    /// the product divided by the scale rounds to the value again.
    ///
    /// ```
    /// use tinycnn::model::Int8Kernel;
    /// let mut kernel = Int8Kernel::<1, 2>::zeroed();
    /// kernel.quantize_with(&[[0.3, -0.75]], &[0.1, 0.25]).unwrap();
    /// assert_eq!(kernel.values, [[3, -3]]);
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite weight,
    /// [`Error::InvalidConfig`] for a scale that is not finite and positive;
    /// `self` is left as it was.
    pub fn quantize_with(&mut self, weights: &[[f32; OUT]; IN], scales: &[f32; OUT]) -> Result<(), Error> {
        quantize_with_into(&mut self.scales, &mut self.values, weights, scales)
    }

    /// The weights in `f32`: `values[i][j] * scales[j]`.
    pub fn dequantize(&self, weights: &mut [[f32; OUT]; IN]) {
        dequantize_into(&self.scales, &self.values, weights);
    }
}

/// [`Int8Kernel::quantize`] on a kernel's parts wherever they lie.
pub(crate) fn quantize_into<const IN: usize, const OUT: usize>(
    scales: &mut [f32; OUT],
    values: &mut [[i8; OUT]; IN],
    weights: &[[f32; OUT]; IN],
) -> Result<(), Error> {
    if !all_finite(weights.as_flattened()) {
        return Err(Error::NonFinite {
            what: "kernel weight",
        });
    }
    let mut largest = [0.0f32; OUT];
    for row in weights {
        for (m, &w) in largest.iter_mut().zip(row) {
            *m = m.max(w.abs());
        }
    }
    let chosen = largest.map(|m| {
        if m > 0.0 {
            2.0 * m / f32::from(GRID_MAX)
        } else {
            ZERO_COLUMN_SCALE
        }
    });
    round_onto(scales, values, weights, &chosen);
    Ok(())
}

/// [`Int8Kernel::quantize_with`] on a kernel's parts wherever they lie.
pub(crate) fn quantize_with_into<const IN: usize, const OUT: usize>(
    scales: &mut [f32; OUT],
    values: &mut [[i8; OUT]; IN],
    weights: &[[f32; OUT]; IN],
    given: &[f32; OUT],
) -> Result<(), Error> {
    if !all_finite(weights.as_flattened()) {
        return Err(Error::NonFinite {
            what: "kernel weight",
        });
    }
    if !given.iter().all(|s| s.is_finite() && *s > 0.0) {
        return Err(Error::InvalidConfig {
            what: "kernel scales must be finite and positive",
        });
    }
    round_onto(scales, values, weights, given);
    Ok(())
}

fn round_onto<const IN: usize, const OUT: usize>(
    scales: &mut [f32; OUT],
    values: &mut [[i8; OUT]; IN],
    weights: &[[f32; OUT]; IN],
    chosen: &[f32; OUT],
) {
    *scales = *chosen;
    for (values, row) in values.iter_mut().zip(weights) {
        for ((v, &w), &scale) in values.iter_mut().zip(row).zip(chosen) {
            *v = nearest_step(w / scale);
        }
    }
}

/// [`Int8Kernel::dequantize`] on a kernel's parts wherever they lie.
pub(crate) fn dequantize_into<const IN: usize, const OUT: usize>(
    scales: &[f32; OUT],
    values: &[[i8; OUT]; IN],
    weights: &mut [[f32; OUT]; IN],
) {
    for (row, values) in weights.iter_mut().zip(values) {
        for ((w, &v), &scale) in row.iter_mut().zip(values).zip(scales) {
            *w = f32::from(v) * scale;
        }
    }
}

/// `steps` rounded to the nearest grid value (ties away from zero), within
/// the grid.
pub(crate) fn nearest_step(steps: f32) -> i8 {
    let limit = f32::from(GRID_MAX);
    libm::roundf(steps).clamp(-limit, limit) as i8
}
