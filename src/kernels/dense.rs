//! Dense (fully connected) layers in the Keras `[input][unit]` layout.
//!
//! With that layout one input value scales one contiguous row of weights, so
//! the forward pass is a sum of rows, and a zero input (most of them, after
//! ReLU, max-pool and dropout) costs nothing but being skipped.

use super::vector::{axpy, axpy_scalar, dot, dot_scalar, larger, Lanes, Vector, HAS_SIMD, LANES, ROW_LANES};
use wide::{f32x8, u16x8};

/// SIMD vectors of outputs the forward pass keeps in registers while it runs
/// through the inputs: on x86-64 96 outputs, in twelve of the sixteen AVX
/// registers or six of the 32 AVX-512 ones, so that dense1's 100 outputs
/// take one pass over the weight rows and a short one for the last four, and
/// the independent sums hide the multiply-add's latency (four AVX registers:
/// 20% slower); on a Cortex-M, 16 outputs in 16 of the 32 single-precision
/// FPU registers.
const BLOCK_VECTORS: usize = if cfg!(target_arch = "x86_64") {
    96 / LANES
} else {
    2
};

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
    let mut positions = [0u16; IN];
    let n = nonzero_positions(input, &mut positions);
    dense_listed(input, &positions[..n], kernel, bias, out);
}

/// [`dense`] given the positions of `input`'s non-zero values, in increasing
/// order, for a caller that needs them more than once (training).
#[inline]
pub(crate) fn dense_listed<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    active: &[u16],
    kernel: &[[f32; OUT]; IN],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    let mut start = 0;
    while start + BLOCK_VECTORS * LANES <= OUT {
        dense_block::<Vector, BLOCK_VECTORS, IN, OUT>(input, active, kernel, bias, start, out);
        start += BLOCK_VECTORS * LANES;
    }
    while start + LANES <= OUT {
        dense_block::<Vector, 1, IN, OUT>(input, active, kernel, bias, start, out);
        start += LANES;
    }
    // Wider vectors leave up to eight more outputs than eight-lane ones
    // would: they take the eight-lane path, so that every output rounds as
    // it does with eight lanes.
    while start + ROW_LANES <= OUT {
        dense_block::<f32x8, 1, IN, OUT>(input, active, kernel, bias, start, out);
        start += ROW_LANES;
    }
    if let (Some(bias_tail), Some(out_tail)) = (bias.get(start..), out.get_mut(start..)) {
        let mut sums = [0.0f32; ROW_LANES];
        let tail = sums.get_mut(..bias_tail.len()).unwrap_or_default();
        tail.copy_from_slice(bias_tail);
        for &i in active {
            let i = usize::from(i);
            tail_step(input[i], kernel[i].get(start..).unwrap_or_default(), tail);
        }
        out_tail.copy_from_slice(tail);
    }
}

/// `sums[j] += x * row[j]` for the last outputs, fewer than a vector's worth:
/// [`axpy_scalar`]'s arithmetic, on a small array the compiler keeps in
/// registers through the caller's loop rather than on the output in memory
/// (each step of which waited on the store before).
#[inline]
fn tail_step(x: f32, row: &[f32], sums: &mut [f32]) {
    for (sum, &w) in sums.iter_mut().zip(row) {
        *sum += x * w;
    }
}

/// Writes the positions of `input`'s non-zero values, in increasing order,
/// to the front of `positions` and returns how many there are. No branch
/// depends on the values, which would mispredict about as often as ReLU's
/// zeros come and go: on SIMD targets each eight values give a bit mask whose
/// set bits' positions come from a table, stored eight at a time (the count
/// advancing by the number of bits); elsewhere every position is written and
/// the count advances by the comparison.
#[inline]
pub(crate) fn nonzero_positions<const IN: usize>(input: &[f32; IN], positions: &mut [u16; IN]) -> usize {
    const { assert!(IN <= 1 << 16, "dense inputs are indexed with u16") };
    let mut n = 0;
    let mut start = 0;
    if HAS_SIMD {
        let zero = f32x8::splat(0.0);
        let (chunks, _) = input.as_chunks::<ROW_LANES>();
        for chunk in chunks {
            let bits = f32x8::new(*chunk).simd_ne(zero).to_bitmask() as usize;
            let (Some(offsets), Some(slots)) = (SET_BITS.get(bits), positions.get_mut(n..n + ROW_LANES))
            else {
                break;
            };
            // `n <= start`, so the eight slots stay inside `positions`.
            slots.copy_from_slice(&(u16x8::new(*offsets) + u16x8::splat(start as u16)).to_array());
            n += bits.count_ones() as usize;
            start += ROW_LANES;
        }
    }
    for (i, &x) in input.iter().enumerate().skip(start) {
        if let Some(slot) = positions.get_mut(n) {
            *slot = i as u16;
        }
        n += usize::from(x != 0.0);
    }
    n
}

/// For each 8-bit mask, the positions of its set bits, lowest first (the
/// slots after them unused).
const SET_BITS: [[u16; ROW_LANES]; 256] = {
    let mut table = [[0u16; ROW_LANES]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut bit, mut n) = (0, 0);
        while bit < ROW_LANES {
            if mask & (1 << bit) != 0 {
                table[mask][n] = bit as u16;
                n += 1;
            }
            bit += 1;
        }
        mask += 1;
    }
    table
};

/// Outputs `start..start + V * LANES` of [`dense`], over the active inputs.
#[inline]
fn dense_block<L: Lanes, const V: usize, const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    active: &[u16],
    kernel: &[[f32; OUT]; IN],
    bias: &[f32; OUT],
    start: usize,
    out: &mut [f32; OUT],
) {
    let block = start..start + V * L::N;
    let Some(bias_block) = bias.get(block.clone()) else {
        return;
    };
    let mut sums: [L; V] = core::array::from_fn(|v| L::load(lanes_at::<L>(bias_block, v)));
    for &i in active {
        let i = usize::from(i);
        let xv = L::splat(input[i]);
        let Some(weights) = kernel[i].get(block.clone()) else {
            return;
        };
        for (v, sum) in sums.iter_mut().enumerate() {
            *sum = L::load(lanes_at::<L>(weights, v)).mul_add(xv, *sum);
        }
    }
    store_block(sums, out.get_mut(block));
}

/// Vector `v` of a block and what follows it.
#[inline]
fn lanes_at<L: Lanes>(block: &[f32], v: usize) -> &[f32] {
    block.get(v * L::N..).unwrap_or_default()
}

/// Writes a block's sums, vector after vector.
#[inline]
fn store_block<L: Lanes, const V: usize>(sums: [L; V], out_block: Option<&mut [f32]>) {
    if let Some(out_block) = out_block {
        for (chunk, sum) in out_block.chunks_mut(L::N).zip(sums) {
            sum.store(chunk);
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
    let mut positions = [0u16; IN];
    let n = nonzero_positions(input, &mut positions);
    dense_backward_listed(
        input,
        &positions[..n],
        kernel,
        out_grad,
        Some(kernel_grad),
        bias_grad,
        input_grad,
    );
}

/// [`dense_backward`] given the positions of `input`'s non-zero values, in
/// increasing order; without `kernel_grad` for a caller that forms the kernel
/// gradient of a whole batch itself ([`outer_product_sum`]).
#[inline]
pub(crate) fn dense_backward_listed<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    active: &[u16],
    kernel: &[[f32; OUT]; IN],
    out_grad: &[f32; OUT],
    mut kernel_grad: Option<&mut [[f32; OUT]; IN]>,
    bias_grad: &mut [f32; OUT],
    mut input_grad: Option<&mut [f32; IN]>,
) {
    axpy(1.0, out_grad, bias_grad);
    if let Some(input_grad) = input_grad.as_deref_mut() {
        *input_grad = [0.0; IN];
    }
    for &i in active {
        let i = usize::from(i);
        if let Some(kernel_grad) = kernel_grad.as_deref_mut() {
            axpy(input[i], out_grad, &mut kernel_grad[i]);
        }
        if let Some(input_grad) = input_grad.as_deref_mut() {
            input_grad[i] = dot(&kernel[i], out_grad);
        }
    }
}

/// `out = sum of x * rows[s]` over `terms` `(s, x)` in their order: one row
/// of a dense layer's kernel gradient for a batch, from each sample's input
/// `x` at that row and its gradient at the layer's outputs. Each vector of
/// sums stays in a register through all the terms; the sums are the same to
/// the bit as [`axpy`]ing the terms into a zeroed row one after another.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn outer_product_sum<const OUT: usize>(
    terms: &[(u32, f32)],
    rows: &[[f32; OUT]],
    out: &mut [f32; OUT],
) {
    let mut start = 0;
    while start + BLOCK_VECTORS * LANES <= OUT {
        outer_product_block::<Vector, BLOCK_VECTORS, OUT>(terms, rows, start, out);
        start += BLOCK_VECTORS * LANES;
    }
    while start + LANES <= OUT {
        outer_product_block::<Vector, 1, OUT>(terms, rows, start, out);
        start += LANES;
    }
    while start + ROW_LANES <= OUT {
        outer_product_block::<f32x8, 1, OUT>(terms, rows, start, out);
        start += ROW_LANES;
    }
    let Some(out_tail) = out.get_mut(start..) else {
        return;
    };
    let mut sums = [0.0f32; ROW_LANES];
    let tail = sums.get_mut(..out_tail.len()).unwrap_or_default();
    for &(sample, x) in terms {
        if let Some(row) = rows.get(sample as usize) {
            tail_step(x, row.get(start..).unwrap_or_default(), tail);
        }
    }
    out_tail.copy_from_slice(tail);
}

#[cfg(feature = "std")]
#[inline]
fn outer_product_block<L: Lanes, const V: usize, const OUT: usize>(
    terms: &[(u32, f32)],
    rows: &[[f32; OUT]],
    start: usize,
    out: &mut [f32; OUT],
) {
    let block = start..start + V * L::N;
    let mut sums = [L::splat(0.0); V];
    for &(sample, x) in terms {
        let Some(values) = rows.get(sample as usize).and_then(|row| row.get(block.clone())) else {
            continue;
        };
        let xv = L::splat(x);
        for (v, sum) in sums.iter_mut().enumerate() {
            *sum = L::load(lanes_at::<L>(values, v)).mul_add(xv, *sum);
        }
    }
    store_block(sums, out.get_mut(block));
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

#[cfg(test)]
mod tests {
    use super::nonzero_positions;

    fn check<const IN: usize>(every: usize) {
        // Zeros at every `every`-th value and in runs, the rest non-zero (one
        // of them -0.0, which counts as zero).
        let input: [f32; IN] = core::array::from_fn(|i| match i {
            _ if i % every == 0 || (i / 16) % 3 == 1 => 0.0,
            5 => -0.0,
            _ => i as f32 - 40.0,
        });
        let (mut expected, mut count) = ([0u16; IN], 0);
        for (i, &x) in input.iter().enumerate() {
            if x != 0.0 {
                expected[count] = i as u16;
                count += 1;
            }
        }
        let mut positions = [u16::MAX; IN];
        let n = nonzero_positions(&input, &mut positions);
        assert_eq!(&positions[..n], &expected[..count], "{IN} values, every {every}");
    }

    #[test]
    fn nonzero_positions_lists_exactly_the_non_zero_values_in_order() {
        for every in [1, 2, 3, 7, 1000] {
            check::<1>(every);
            check::<7>(every);
            check::<8>(every);
            check::<9>(every);
            check::<100>(every);
            check::<1960>(every);
        }
    }
}
