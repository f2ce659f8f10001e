//! Dense (fully connected) layers in the Keras `[input][unit]` layout.
//!
//! With that layout one input value scales one contiguous row of weights, so
//! the forward pass is a sum of rows, and a zero input (most of them, after
//! ReLU, max-pool and dropout) costs nothing but being skipped.

use super::vector::{axpy, axpy_scalar, dot, dot_scalar, larger, Lanes, Vector, HAS_SIMD, LANES, ROW_LANES};
use wide::{f32x4, f32x8, u16x8};

/// SIMD vectors of outputs the forward pass keeps in registers while it runs
/// through the inputs: on x86-64 96 outputs, in twelve of the sixteen AVX
/// registers or six of the 32 AVX-512 ones, so that dense1's 100 outputs
/// take one pass over the weight rows and a short one for the last four, and
/// the independent sums hide the multiply-add's latency (fewer of them leave
/// the core waiting on it); on a Cortex-M, 16 outputs in 16 of the 32 single-precision
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
    *out = *bias;
    accumulate_rows::<true, OUT>(
        &Listed {
            input,
            active,
            kernel,
        },
        out,
    );
}

/// Terms `x * row` a dense layer's sums take, in order.
pub trait Terms<const OUT: usize> {
    /// Each term's factor and row.
    fn each(&self) -> impl Iterator<Item = (f32, &[f32; OUT])>;
}

/// The forward pass's terms: each listed input times its row of the kernel.
pub(crate) struct Listed<'a, const IN: usize, const OUT: usize> {
    /// The layer's input.
    pub input: &'a [f32; IN],
    /// Positions of the inputs that count, in increasing order.
    pub active: &'a [u16],
    /// The layer's kernel.
    pub kernel: &'a [[f32; OUT]; IN],
}

impl<const IN: usize, const OUT: usize> Terms<OUT> for Listed<'_, IN, OUT> {
    #[inline(always)]
    fn each(&self) -> impl Iterator<Item = (f32, &[f32; OUT])> {
        // The positions come from `nonzero_positions` over this input.
        self.active.iter().map(|&i| {
            let i = usize::from(i);
            (self.input[i], &self.kernel[i])
        })
    }
}

/// A row of values that starts on a cache line and fills whole lines (padded
/// at the end): a vector load of it never straddles two lines. A batch's
/// output gradients are read a row per term, six 16-lane loads each for 100
/// outputs; packed at 400 bytes, three rows in four would start mid-line
/// and every such load would read two lines.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct LineRow<const N: usize>(pub [f32; N]);

/// A batch's terms of one row of a dense layer's kernel gradient: each
/// sample's input at that row times the sample's gradient at the layer's
/// outputs, in batch order.
pub struct Outer<'a, const OUT: usize> {
    /// `(sample, x)` for the samples whose input `x` at the row is not zero.
    pub terms: &'a [(u32, f32)],
    /// Each sample's gradient at the layer's outputs.
    pub grads: &'a [LineRow<OUT>],
}

impl<const OUT: usize> Terms<OUT> for Outer<'_, OUT> {
    #[inline(always)]
    fn each(&self) -> impl Iterator<Item = (f32, &[f32; OUT])> {
        self.terms
            .iter()
            .filter_map(|&(sample, x)| Some((x, &self.grads.get(sample as usize)?.0)))
    }
}

/// `sums += x * row` over the terms, in their order: [`dense`] after the
/// bias, or a row of a batch's kernel gradient, whole or in parts. Every
/// output takes its terms in the same order and with the same rounding
/// however they are cut into parts, so a batch that walks the kernel a slice
/// of rows at a time ([`Params::forward_batch`](crate::Params::forward_batch))
/// computes what [`dense`] does image by image, and a gradient row formed
/// from each thread's samples in turn is the one formed from the whole batch
/// (and the one [`axpy`] forms sample after sample).
///
/// With `PREFETCH` (rows that come from beyond the first-level cache: one
/// image's forward pass), each row is asked for a few terms ahead of its
/// use; the rows a list skips defeat the core's own prefetchers.
#[inline]
pub fn accumulate_rows<const PREFETCH: bool, const OUT: usize>(
    terms: &impl Terms<OUT>,
    sums: &mut [f32; OUT],
) {
    let mut start = 0;
    let mut first = true;
    while start + BLOCK_VECTORS * LANES <= OUT {
        block_pass::<Vector, BLOCK_VECTORS, PREFETCH, OUT>(first, terms, start, sums);
        (start, first) = (start + BLOCK_VECTORS * LANES, false);
    }
    while start + LANES <= OUT {
        block_pass::<Vector, 1, PREFETCH, OUT>(first, terms, start, sums);
        (start, first) = (start + LANES, false);
    }
    // Wider vectors leave up to eight more outputs than eight-lane ones
    // would: they take the eight-lane path, so that every output rounds as
    // it does with eight lanes.
    while start + ROW_LANES <= OUT {
        block_pass::<f32x8, 1, PREFETCH, OUT>(first, terms, start, sums);
        (start, first) = (start + ROW_LANES, false);
    }
    // The quad of tail outputs went with the first block, if there was one.
    let rest = if first || !has_quad::<OUT>() {
        start
    } else {
        start + 4
    };
    if let Some(sums_tail) = sums.get_mut(rest..).filter(|tail| !tail.is_empty()) {
        let mut tail_sums = [0.0f32; ROW_LANES];
        let part = tail_sums.get_mut(..sums_tail.len()).unwrap_or_default();
        part.copy_from_slice(sums_tail);
        for (x, row) in terms.each() {
            tail_step(x, row.get(rest..).unwrap_or_default(), part);
        }
        sums_tail.copy_from_slice(part);
    }
}

/// Whether the last outputs, fewer than eight, include a quad that rides
/// along with the first block's pass over the rows (in a pass of its own,
/// reading the rows' ends again costs a cache line more for about half of
/// them); the ones after it take a loop.
const fn has_quad<const OUT: usize>() -> bool {
    HAS_SIMD && OUT % ROW_LANES >= 4
}

/// One pass of [`accumulate_block`]; the first carries the tail's quad and
/// the prefetches.
#[inline(always)]
fn block_pass<L: Lanes, const V: usize, const PREFETCH: bool, const OUT: usize>(
    first: bool,
    terms: &impl Terms<OUT>,
    start: usize,
    sums: &mut [f32; OUT],
) {
    if first {
        accumulate_block::<L, V, true, PREFETCH, OUT>(terms, start, sums);
    } else {
        accumulate_block::<L, V, false, false, OUT>(terms, start, sums);
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
pub fn nonzero_positions<const IN: usize>(input: &[f32; IN], positions: &mut [u16; IN]) -> usize {
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

/// `sums` `start..start + V * L::N` of [`accumulate_rows`], held in
/// registers through the listed rows; with `QUAD`, the tail's quad too
/// (multiplied and added apart, as [`tail_step`] does).
#[inline(always)]
fn accumulate_block<L: Lanes, const V: usize, const QUAD: bool, const PREFETCH: bool, const OUT: usize>(
    terms: &impl Terms<OUT>,
    start: usize,
    sums: &mut [f32; OUT],
) {
    let quad = QUAD && has_quad::<OUT>();
    let quad_at = OUT - OUT % ROW_LANES;
    let block = start..start + V * L::N;
    let Some(sums_block) = sums.get(block.clone()) else {
        return;
    };
    let mut vectors: [L; V] = core::array::from_fn(|v| L::load(lanes_at::<L>(sums_block, v)));
    let mut quad_sums = quad_lanes(sums, quad_at);
    let prefetch = PREFETCH && CAN_PREFETCH;
    let mut ahead = terms.each().skip(AHEAD);
    for (x, row) in terms.each() {
        if prefetch {
            if let Some((_, ahead)) = ahead.next() {
                prefetch_row(ahead);
            }
        }
        let Some(weights) = row.get(block.clone()) else {
            return;
        };
        let xv = L::splat(x);
        for (v, sum) in vectors.iter_mut().enumerate() {
            *sum = L::load(lanes_at::<L>(weights, v)).mul_add(xv, *sum);
        }
        if quad {
            quad_sums += f32x4::splat(x) * quad_lanes(row, quad_at);
        }
    }
    if quad {
        if let Some(out) = sums.get_mut(quad_at..quad_at + 4) {
            out.copy_from_slice(&quad_sums.to_array());
        }
    }
    store_block(vectors, sums, start);
}

/// Four values of `values` from `at` (zeros past the end).
#[inline]
fn quad_lanes(values: &[f32], at: usize) -> f32x4 {
    values
        .get(at..)
        .and_then(|rest| rest.first_chunk::<4>())
        .map_or(f32x4::splat(0.0), |quad| f32x4::new(*quad))
}

/// `dot(row, grads[sample])` for each term `(sample, _)` of one row of a
/// dense layer's kernel, handed to `each` in the terms' order: the gradient
/// at that row's input for each sample that lists it, taken row by row so
/// that the row is read once for the whole batch.
#[inline]
pub fn row_input_grads<const OUT: usize>(
    row: &[f32; OUT],
    terms: &[(u32, f32)],
    grads: &[LineRow<OUT>],
    mut each: impl FnMut(f32),
) {
    let grad = |&(sample, _): &(u32, f32)| grads.get(sample as usize).map(|g| &g.0);
    // Four terms at a time: a dot product is a chain of dependent
    // multiply-adds, which four chains side by side keep the core busy
    // through. Each is the chain `dot` computes.
    let (quads, rest) = terms.as_chunks::<4>();
    for quad in quads {
        if let [Some(a), Some(b), Some(c), Some(d)] = quad.each_ref().map(grad) {
            for value in dot_four(row, [a, b, c, d]) {
                each(value);
            }
        }
    }
    for term in rest {
        if let Some(g) = grad(term) {
            each(dot(row, g));
        }
    }
}

/// [`dot`] of one row with four vectors, to the bit.
#[inline]
fn dot_four<const OUT: usize>(row: &[f32; OUT], ys: [&[f32; OUT]; 4]) -> [f32; 4] {
    let (x_chunks, x_rest) = row.as_chunks::<ROW_LANES>();
    let mut sums = [f32x8::splat(0.0); 4];
    for (c, xc) in x_chunks.iter().enumerate() {
        let xv = f32x8::new(*xc);
        for (sum, y) in sums.iter_mut().zip(ys) {
            if let Some(yc) = y.as_chunks::<ROW_LANES>().0.get(c) {
                *sum = xv.mul_add(f32x8::new(*yc), *sum);
            }
        }
    }
    let tail = OUT - x_rest.len();
    core::array::from_fn(|k| sums[k].reduce_add() + dot_scalar(x_rest, ys[k].get(tail..).unwrap_or_default()))
}

/// Terms between a row's prefetch and its use: fewer leave the core
/// waiting for the row, more gain nothing.
const AHEAD: usize = 4;

/// Whether [`prefetch_row`] does anything on this target.
const CAN_PREFETCH: bool = cfg!(all(
    any(target_arch = "x86_64", target_arch = "x86"),
    target_feature = "sse"
));

/// Asks the core to bring `row` into the first-level cache.
#[inline]
fn prefetch_row<const OUT: usize>(row: &[f32; OUT]) {
    #[cfg(all(any(target_arch = "x86_64", target_arch = "x86"), target_feature = "sse"))]
    {
        #[cfg(target_arch = "x86")]
        use core::arch::x86::{_mm_prefetch, _MM_HINT_T0};
        #[cfg(target_arch = "x86_64")]
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let bytes = core::mem::size_of_val(row);
        let start = row.as_ptr().cast::<i8>();
        // A line every 64 bytes from the first and the one holding the last
        // byte: every line of the row, with a count known when compiling.
        for offset in (0..bytes).step_by(LINE) {
            // SAFETY: a prefetch is a hint that reads nothing into the
            // program and cannot fault, whatever the address; these are
            // the bytes of `row` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(bytes.saturating_sub(1))) };
    }
    #[cfg(not(all(any(target_arch = "x86_64", target_arch = "x86"), target_feature = "sse")))]
    let _ = row;
}

/// Vector `v` of a block and what follows it.
#[inline]
fn lanes_at<L: Lanes>(block: &[f32], v: usize) -> &[f32] {
    block.get(v * L::N..).unwrap_or_default()
}

/// Writes a block's sums from `start` on, vector after vector, each in one
/// store (chunks of a slice, in a loop the compiler does not unroll, went
/// through the stack in pieces, and a later load of the whole vector waited
/// for them).
#[inline(always)]
fn store_block<L: Lanes, const V: usize, const OUT: usize>(sums: [L; V], out: &mut [f32; OUT], start: usize) {
    for (v, sum) in sums.into_iter().enumerate() {
        sum.store(out.get_mut(start + v * L::N..).unwrap_or_default());
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
/// gradient of a whole batch itself ([`accumulate_rows`] over [`Outer`] terms).
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

    /// A row's dot products with its terms' samples, four at a time, are
    /// `dot`'s, bit for bit, whatever the row length and the number of terms.
    #[test]
    fn input_grads_of_a_row_are_dot_products_to_the_bit() {
        fn check<const OUT: usize>() {
            let value = |i: usize| ((i * 7919) % 1013) as f32 / 97.0 - 5.0;
            let row: [f32; OUT] = core::array::from_fn(value);
            let grads: [super::LineRow<OUT>; 23] = core::array::from_fn(|s| {
                super::LineRow(core::array::from_fn(|c| value(s * OUT + c + 5000) / 3.0))
            });
            for count in 0..12 {
                let terms: std::vec::Vec<(u32, f32)> = (0..count).map(|k| ((k * 5 + 3) % 23, 1.0)).collect();
                let mut found = std::vec::Vec::new();
                super::row_input_grads(&row, &terms, &grads, |g| found.push(g.to_bits()));
                let expected: std::vec::Vec<u32> = terms
                    .iter()
                    .map(|&(s, _)| super::dot(&row, &grads[s as usize].0).to_bits())
                    .collect();
                assert_eq!(found, expected, "{OUT} outputs, {count} terms");
            }
        }
        check::<1>();
        check::<8>();
        check::<13>();
        check::<100>();
    }
}
