//! The two loops everything else is built from: `y += a * x` and `x . y`.
//!
//! Each SIMD function has a scalar twin with the same signature, kept as the
//! reference the SIMD one is tested against.

use wide::f32x8;

/// Lanes of the SIMD vector type the kernels use.
pub const LANES: usize = 8;

/// Whether `wide`'s vectors are SIMD registers on this target (on 32-bit
/// Cortex-M they are arrays, and loops written for a core's few registers
/// beat them).
pub(crate) const HAS_SIMD: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "wasm32"
));

/// `y[i] += a * x[i]` for every `i` below the shorter of the two lengths.
///
/// ```
/// let mut y = [1.0; 10];
/// tinycnn::kernels::axpy(2.0, &[3.0; 10], &mut y);
/// assert_eq!(y, [7.0; 10]);
/// ```
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x_chunks, x_rest) = x[..n].as_chunks::<LANES>();
    let (y_chunks, y_rest) = y[..n].as_chunks_mut::<LANES>();
    let av = f32x8::splat(a);
    for (xc, yc) in x_chunks.iter().zip(y_chunks) {
        *yc = f32x8::new(*xc).mul_add(av, f32x8::new(*yc)).to_array();
    }
    axpy_scalar(a, x_rest, y_rest);
}

/// Scalar twin of [`axpy`].
///
/// ```
/// let mut y = [1.0; 3];
/// tinycnn::kernels::axpy_scalar(-1.0, &[1.0, 2.0, 3.0], &mut y);
/// assert_eq!(y, [0.0, -1.0, -2.0]);
/// ```
#[inline]
pub fn axpy_scalar(a: f32, x: &[f32], y: &mut [f32]) {
    for (xv, yv) in x.iter().zip(y) {
        *yv += a * xv;
    }
}

/// The dot product over the shorter of the two lengths.
///
/// ```
/// assert_eq!(tinycnn::kernels::dot(&[1.0; 20], &[0.5; 20]), 10.0);
/// ```
#[inline]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x_chunks, x_rest) = x[..n].as_chunks::<LANES>();
    let (y_chunks, y_rest) = y[..n].as_chunks::<LANES>();
    let mut acc = f32x8::splat(0.0);
    for (xc, yc) in x_chunks.iter().zip(y_chunks) {
        acc = f32x8::new(*xc).mul_add(f32x8::new(*yc), acc);
    }
    acc.reduce_add() + dot_scalar(x_rest, y_rest)
}

/// Scalar twin of [`dot`].
///
/// ```
/// assert_eq!(tinycnn::kernels::dot_scalar(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
/// ```
#[inline]
pub fn dot_scalar(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Starts of the runs of `LANES` that cover `0..len` (`len >= LANES`): one
/// every `LANES`, the last moved back to end at `len`, overlapping the one
/// before it rather than leaving a remainder.
#[inline]
pub(crate) fn runs(len: usize) -> impl Iterator<Item = usize> {
    let last = len.saturating_sub(LANES);
    (0..len.div_ceil(LANES)).map(move |run| (run * LANES).min(last))
}

/// `true` when no value is NaN or infinite.
///
/// ```
/// assert!(tinycnn::kernels::all_finite(&[0.0, -1e30]));
/// assert!(!tinycnn::kernels::all_finite(&[0.0, f32::NAN]));
/// ```
#[inline]
pub fn all_finite(values: &[f32]) -> bool {
    if !HAS_SIMD {
        return values.iter().all(|v| v.is_finite());
    }
    // `v * 0` is 0 for a finite `v` and NaN otherwise, and a NaN survives
    // every later addition: one multiply-add per eight values, no branch.
    // Four sums, so that the additions do not wait on each other.
    let zero = f32x8::splat(0.0);
    let (chunks, rest) = values.as_chunks::<{ 4 * LANES }>();
    let mut sums = [zero; 4];
    for chunk in chunks {
        let (quarters, _) = chunk.as_chunks::<LANES>();
        for (sum, quarter) in sums.iter_mut().zip(quarters) {
            *sum = f32x8::new(*quarter).mul_add(zero, *sum);
        }
    }
    let [a, b, c, d] = sums;
    ((a + b) + (c + d)).reduce_add() == 0.0 && rest.iter().all(|v| v.is_finite())
}

/// Index of the largest value, the first one on a tie (0 for an empty slice).
///
/// ```
/// assert_eq!(tinycnn::kernels::argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
/// ```
#[inline]
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// The larger of two values, as a compare and a select. For numbers it equals
/// `f32::max`, which on targets without a hardware maximum (Cortex-M) becomes
/// a call to a library routine that also sorts out NaNs; the kernels only
/// see finite values.
///
/// ```
/// assert_eq!(tinycnn::kernels::larger(-1.0, 2.0), 2.0);
/// ```
#[inline]
pub fn larger(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}
