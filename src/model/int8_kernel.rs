//! A dense kernel stored in 8 bits with one scale per output.

use crate::kernels::{all_finite, GRID_MAX};
use crate::Error;

/// A dense layer's kernel in 8 bits: the weight from input `i` to output `j`
/// is `values[i][j] * scales[j]`, a step of `scales[j]` on a grid of
/// `-127..=127`. A quarter of the `f32` kernel's bytes, and the form
/// [`Params8`](super::Params8) trains in place.
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
        let scales = largest.map(|m| {
            if m > 0.0 {
                2.0 * m / f32::from(GRID_MAX)
            } else {
                ZERO_COLUMN_SCALE
            }
        });
        self.round_onto(weights, &scales);
        Ok(())
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
        if !all_finite(weights.as_flattened()) {
            return Err(Error::NonFinite {
                what: "kernel weight",
            });
        }
        if !scales.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(Error::InvalidConfig {
                what: "kernel scales must be finite and positive",
            });
        }
        self.round_onto(weights, scales);
        Ok(())
    }

    fn round_onto(&mut self, weights: &[[f32; OUT]; IN], scales: &[f32; OUT]) {
        self.scales = *scales;
        for (values, row) in self.values.iter_mut().zip(weights) {
            for ((v, &w), &scale) in values.iter_mut().zip(row).zip(scales) {
                *v = nearest_step(w / scale);
            }
        }
    }

    /// The weights in `f32`: `values[i][j] * scales[j]`.
    pub fn dequantize(&self, weights: &mut [[f32; OUT]; IN]) {
        for (row, values) in weights.iter_mut().zip(&self.values) {
            for ((w, &v), &scale) in row.iter_mut().zip(values).zip(&self.scales) {
                *w = f32::from(v) * scale;
            }
        }
    }
}

/// `steps` rounded to the nearest grid value (ties away from zero), within
/// the grid.
pub(crate) fn nearest_step(steps: f32) -> i8 {
    let limit = f32::from(GRID_MAX);
    libm::roundf(steps).clamp(-limit, limit) as i8
}
