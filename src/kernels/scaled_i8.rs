//! A dense layer whose kernel is stored in 8 bits with one scale per output
//! (the weight from input `i` to output `j` is `values[i][j] * scales[j]`),
//! for training in a small RAM: forward, the gradient at the layer's input,
//! and the update, stochastically rounded onto the grid.
//!
//! Plain scalar loops with a fixed order of operations and no fused
//! multiply-add: a host vectorizes them output by output and a Cortex-M runs
//! them one by one, and both compute the same bits, which training needs
//! (one rounding decision that differs sends two runs apart).

use super::rounding::{add_stochastic, halve_to_even, Dither, FRACTION_BITS};

/// The largest magnitude a stored value takes: the grid is symmetric.
pub const GRID_MAX: i8 = 127;

/// `out = bias + scales * (input . values)`, over the listed inputs only
/// (the positions of `input`'s non-zero values, in increasing order).
///
/// ```
/// use tinycnn::kernels::dense_scaled_i8_listed;
/// let values = [[1, -2], [3, 4], [0, 5]];
/// let mut out = [0.0; 2];
/// dense_scaled_i8_listed(&[2.0, 0.0, 1.0], &[0, 2], &values, &[0.5, 0.25], &[1.0, 0.0], &mut out);
/// assert_eq!(out, [1.0 + 0.5 * 2.0, 0.25 * (-4.0 + 5.0)]);
/// ```
#[inline]
pub fn dense_scaled_i8_listed<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    active: &[u16],
    values: &[[i8; OUT]; IN],
    scales: &[f32; OUT],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    let rows = active.iter().map(|&i| usize::from(i));
    dense_scaled_i8_rows(input, rows, values, scales, bias, out);
}

/// [`dense_scaled_i8_listed`] over every non-zero input, without a list:
/// the same sums in the same order.
///
/// ```
/// use tinycnn::kernels::{dense_scaled_i8, dense_scaled_i8_listed};
/// let values = [[1, -2], [3, 4], [0, 5]];
/// let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
/// dense_scaled_i8(&[2.0, 0.0, 1.0], &values, &[0.5, 0.25], &[1.0, 0.0], &mut a);
/// dense_scaled_i8_listed(&[2.0, 0.0, 1.0], &[0, 2], &values, &[0.5, 0.25], &[1.0, 0.0], &mut b);
/// assert_eq!(a, b);
/// ```
#[inline]
pub fn dense_scaled_i8<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    values: &[[i8; OUT]; IN],
    scales: &[f32; OUT],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    let rows = input
        .iter()
        .enumerate()
        .filter(|(_, &x)| x != 0.0)
        .map(|(i, _)| i);
    dense_scaled_i8_rows(input, rows, values, scales, bias, out);
}

#[inline(always)]
fn dense_scaled_i8_rows<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    rows: impl Iterator<Item = usize>,
    values: &[[i8; OUT]; IN],
    scales: &[f32; OUT],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    *out = [0.0; OUT];
    for i in rows {
        let (Some(&x), Some(row)) = (input.get(i), values.get(i)) else {
            continue;
        };
        for (sum, &v) in out.iter_mut().zip(row) {
            *sum += x * f32::from(v);
        }
    }
    for ((o, &s), &b) in out.iter_mut().zip(scales).zip(bias) {
        *o = b + s * *o;
    }
}

/// The gradient at the layer's input, at the listed positions (zero
/// elsewhere): `input_grad[i] = values[i] . scaled_out_grad`, where
/// `scaled_out_grad[j]` is the gradient at output `j` times `scales[j]`.
/// Each sum runs in eight interleaved parts, added pairwise at the end.
///
/// ```
/// use tinycnn::kernels::scaled_i8_input_grad_listed;
/// let values = [[1, -2], [3, 4]];
/// let mut grad = [9.0; 2];
/// scaled_i8_input_grad_listed(&[1], &values, &[0.5, 0.25], &mut grad);
/// assert_eq!(grad, [0.0, 3.0 * 0.5 + 4.0 * 0.25]);
/// ```
#[inline]
pub fn scaled_i8_input_grad_listed<const IN: usize, const OUT: usize>(
    active: &[u16],
    values: &[[i8; OUT]; IN],
    scaled_out_grad: &[f32; OUT],
    input_grad: &mut [f32; IN],
) {
    *input_grad = [0.0; IN];
    for &i in active {
        let (Some(row), Some(grad)) = (values.get(usize::from(i)), input_grad.get_mut(usize::from(i))) else {
            continue;
        };
        *grad = dot_i8(row, scaled_out_grad);
    }
}

#[inline(always)]
fn dot_i8<const OUT: usize>(values: &[i8; OUT], g: &[f32; OUT]) -> f32 {
    let mut parts = [0.0f32; 8];
    let (value_chunks, value_rest) = values.as_chunks::<8>();
    let (g_chunks, g_rest) = g.as_chunks::<8>();
    for (vs, gs) in value_chunks.iter().zip(g_chunks) {
        for ((p, &v), &g) in parts.iter_mut().zip(vs).zip(gs) {
            *p += f32::from(v) * g;
        }
    }
    for ((p, &v), &g) in parts.iter_mut().zip(value_rest).zip(g_rest) {
        *p += f32::from(v) * g;
    }
    let [a, b, c, d, e, f, g, h] = parts;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}

/// Adds `input (outer) delta` to the weights, stochastically rounded: each
/// stored value moves by `input[i] * delta[j] / scales[j]` grid steps in
/// expectation ([`add_stochastic`], dither from `dither`, one draw per
/// value updated). Rows with a zero input and columns with a zero `delta`
/// are skipped.
///
/// When a value would leave `[-GRID_MAX, GRID_MAX]`, its column's scale
/// doubles and the column's values halve ([`halve_to_even`]) before the
/// update is tried again, so no update is clipped. Returns how many columns
/// were rescaled. `delta` must be finite.
///
/// ```
/// use tinycnn::kernels::{add_outer_stochastic, Dither};
/// let mut values = [[0i8; 2]; 2];
/// let mut scales = [0.5, 1.0];
/// // Exact multiples of a step round the same whatever the dither.
/// let rescaled = add_outer_stochastic(&mut values, &mut scales, &[1.0, 2.0], &[1.5, -3.0], &mut Dither::new(1));
/// assert_eq!((values, rescaled), ([[3, -3], [6, -6]], 0));
/// // Beyond the grid: column 0's scale doubles, its values halve.
/// values[0][0] = 126;
/// let rescaled = add_outer_stochastic(&mut values, &mut scales, &[1.0, 0.0], &[2.0, 0.0], &mut Dither::new(1));
/// assert_eq!((values, scales, rescaled), ([[65, -3], [3, -6]], [1.0, 1.0], 1));
/// ```
pub fn add_outer_stochastic<const IN: usize, const OUT: usize>(
    values: &mut [[i8; OUT]; IN],
    scales: &mut [f32; OUT],
    input: &[f32; IN],
    delta: &[f32; OUT],
    dither: &mut Dither,
) -> usize {
    // The columns that move, and each one's update per unit of input in
    // fixed-point grid steps.
    let mut columns = [0u16; OUT];
    let mut steps = [0.0f32; OUT];
    let mut n = 0;
    for (j, (&d, &s)) in delta.iter().zip(scales.iter()).enumerate() {
        if d != 0.0 {
            columns[n] = j as u16;
            steps[n] = d / s * (1u32 << FRACTION_BITS) as f32;
            n += 1;
        }
    }
    let (columns, steps) = (&columns[..n], &mut steps[..n]);
    let mut rescaled = 0;
    for i in 0..IN {
        let x = input[i];
        if x == 0.0 {
            continue;
        }
        let mut start = 0;
        let mut tries = 0;
        while let Some(k) = add_row(&mut values[i], x, &columns[start..], &steps[start..], dither) {
            let k = start + k;
            let j = usize::from(columns[k]);
            tries += 1;
            if tries > MAX_RESCALES {
                // Only an update beyond any grid gets here: it saturates.
                values[i][j] = if x * steps[k] > 0.0 { GRID_MAX } else { -GRID_MAX };
                start = k + 1;
                tries = 0;
                continue;
            }
            double_column_scale(values, scales, j);
            steps[k] *= 0.5;
            rescaled += 1;
            start = k;
        }
    }
    rescaled
}

/// Rescales of one value's column before its update is clamped instead:
/// 2^24 times the step is beyond any update a finite loss gives.
const MAX_RESCALES: usize = 24;

/// One row's update over the listed columns; stops at the first value that
/// would leave the grid (unchanged) and returns its place in the list.
#[inline(always)]
fn add_row<const OUT: usize>(
    row: &mut [i8; OUT],
    x: f32,
    columns: &[u16],
    steps: &[f32],
    dither: &mut Dither,
) -> Option<usize> {
    for (k, (&j, &step)) in columns.iter().zip(steps).enumerate() {
        let Some(value) = row.get_mut(usize::from(j)) else {
            continue;
        };
        let sum = add_stochastic(*value, (x * step) as i32, dither.next_draw());
        if !(-i32::from(GRID_MAX)..=i32::from(GRID_MAX)).contains(&sum) {
            return Some(k);
        }
        *value = sum as i8;
    }
    None
}

/// Doubles `column`'s scale and halves its values ([`halve_to_even`]):
/// the rescaling that makes room on the grid. Every weight stays within
/// half the new step of what it was, and weights stored as even values stay
/// exactly. A column beyond the array is left alone.
///
/// ```
/// use tinycnn::kernels::double_column_scale;
/// let mut values = [[4, 1], [-3, 7]];
/// let mut scales = [0.5, 0.25];
/// double_column_scale(&mut values, &mut scales, 1);
/// assert_eq!((values, scales), ([[4, 0], [-3, 4]], [0.5, 0.5]));
/// ```
pub fn double_column_scale<const IN: usize, const OUT: usize>(
    values: &mut [[i8; OUT]; IN],
    scales: &mut [f32; OUT],
    column: usize,
) {
    let Some(scale) = scales.get_mut(column) else {
        return;
    };
    *scale *= 2.0;
    for row in values.iter_mut() {
        if let Some(v) = row.get_mut(column) {
            *v = halve_to_even(*v);
        }
    }
}
