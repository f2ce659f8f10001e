//! A dense layer whose kernel is stored in 8 bits with one scale per output
//! (the weight from input `i` to output `j` is `values[i][j] * scales[j]`),
//! for training in a small RAM: forward, the gradient at the layer's input,
//! and the update, stochastically rounded onto the grid.
//!
//! Forward and backward multiply the 8-bit values with the other factor in
//! fixed point and add exact integers: two instructions a product on a
//! Cortex-M4 (a byte load and a multiply-accumulate), any order or vector
//! width on a host, the same bits everywhere. The update rounds with
//! integer comparisons of random bits, also the same everywhere.

use super::rounding::{add_stochastic, halve_to_even, Dither, FRACTION_BITS};
use super::vector::larger;
use rand_core::RngCore;

/// The largest magnitude a stored value takes: the grid is symmetric.
pub const GRID_MAX: i8 = 127;

/// `out = bias + scales * (input . values)` over the listed inputs (the
/// positions of `input`'s non-zero values, in increasing order), with each
/// listed input rounded in place to fixed point (2^13 units for the largest
/// at dense1's 1,960 inputs): what the layer computes with, and what
/// backward then reads.
///
/// ```
/// use tinycnn::kernels::dense_scaled_i8_listed;
/// let values = [[1, -2], [3, 4], [0, 5]];
/// let mut input = [2.0, 0.0, 1.0];
/// let mut out = [0.0; 2];
/// dense_scaled_i8_listed(&mut input, &[0, 2], &values, &[0.5, 0.25], &[1.0, 0.0], &mut out);
/// assert_eq!(out, [1.0 + 0.5 * 2.0, 0.25 * (-4.0 + 5.0)]);
/// ```
#[inline(never)]
pub fn dense_scaled_i8_listed<const IN: usize, const OUT: usize>(
    input: &mut [f32; IN],
    active: &[u16],
    values: &[[i8; OUT]; IN],
    scales: &[f32; OUT],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    *out = *bias;
    let largest = active.iter().fold(0.0f32, |m, &i| {
        larger(m, input.get(usize::from(i)).map_or(0.0, |x| x.abs()))
    });
    let Some(fixed) = FixedPoint::new::<IN>(largest, 14) else {
        return;
    };
    // While the sums run, the front of `input` holds the listed inputs in
    // list order, each with its position: `position << 16 | units`. The
    // k-th listed position is at least k, so each is read before the front
    // reaches it.
    let slots: &mut [u32; IN] = bytemuck::cast_mut(input);
    let mut n = 0;
    for &i in active {
        let Some(&bits) = slots.get(usize::from(i)) else {
            continue;
        };
        let x = fixed.of(f32::from_bits(bits));
        if let Some(slot) = slots.get_mut(n) {
            *slot = u32::from(i) << 16 | u32::from(x as u16);
            n += 1;
        }
    }
    let packed = slots.get(..n).unwrap_or_default();
    let row_of = |slot: u32| values.get((slot >> 16) as usize);
    let units_of = |slot: u32| i32::from(slot as u16 as i16);
    let mut sums = [0i32; OUT];
    // A block of outputs at a time, their sums in registers while the rows
    // pass: two AVX-512 vectors of them on a host, four on a Cortex-M (more
    // spill to the stack).
    let (blocks, tail) = sums.as_chunks_mut::<SUM_BLOCK>();
    for (b, block) in blocks.iter_mut().enumerate() {
        let mut acc = [0i32; SUM_BLOCK];
        for &slot in packed {
            if let Some(row) = row_of(slot).and_then(|row| row.as_chunks::<SUM_BLOCK>().0.get(b)) {
                let x = units_of(slot);
                for (sum, &v) in acc.iter_mut().zip(row) {
                    *sum += x * i32::from(v);
                }
            }
        }
        *block = acc;
    }
    let tail_start = OUT - tail.len();
    for &slot in packed {
        if let Some(row) = row_of(slot) {
            let x = units_of(slot);
            for (sum, &v) in tail.iter_mut().zip(&row[tail_start..]) {
                *sum += x * i32::from(v);
            }
        }
    }
    // Back in place, rounded: the front is emptied from its end, each value
    // returning to a position at or after its slot.
    for k in (0..n).rev() {
        let Some(slot) = slots.get_mut(k) else { continue };
        let packed = core::mem::replace(slot, 0);
        if let Some(home) = slots.get_mut((packed >> 16) as usize) {
            *home = (units_of(packed) as f32 * fixed.unit).to_bits();
        }
    }
    for (((o, &sum), &s), &b) in out.iter_mut().zip(&sums).zip(scales).zip(bias) {
        *o = b + s * (sum as f32 * fixed.unit);
    }
}

/// [`dense_scaled_i8_listed`] over every non-zero input, listing them on
/// the stack (two bytes an input) in a frame of its own.
///
/// ```
/// use tinycnn::kernels::{dense_scaled_i8, dense_scaled_i8_listed};
/// let values = [[1, -2], [3, 4], [0, 5]];
/// let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
/// dense_scaled_i8(&mut [2.0, 0.0, 1.0], &values, &[0.5, 0.25], &[1.0, 0.0], &mut a);
/// dense_scaled_i8_listed(&mut [2.0, 0.0, 1.0], &[0, 2], &values, &[0.5, 0.25], &[1.0, 0.0], &mut b);
/// assert_eq!(a, b);
/// ```
#[inline(never)]
pub fn dense_scaled_i8<const IN: usize, const OUT: usize>(
    input: &mut [f32; IN],
    values: &[[i8; OUT]; IN],
    scales: &[f32; OUT],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    let mut positions = [0u16; IN];
    let n = super::dense::nonzero_positions(input, &mut positions);
    dense_scaled_i8_listed(
        input,
        positions.get(..n).unwrap_or_default(),
        values,
        scales,
        bias,
        out,
    );
}

/// Outputs whose sums the forward pass keeps in registers at once.
const SUM_BLOCK: usize = if cfg!(target_arch = "arm") { 4 } else { 32 };

/// Fixed point for one vector's values: each value times `2^k / largest`,
/// rounded to the nearest integer, with `2^k` at most a given power of two
/// and small enough that `N` products with a grid value add up within an
/// `i32`. Integer sums
/// are exact in any order: a host's vectors and a Cortex-M's loop get the
/// same bits, and a value's error is at most 2^-(k+1) of the largest.
#[derive(Clone, Copy)]
struct FixedPoint {
    factor: f32,
    /// What one unit is worth.
    unit: f32,
}

impl FixedPoint {
    /// `None` for a vector of zeros (or not finite); at most `2^bits` units
    /// for the largest (`bits` at most 15).
    #[inline(always)]
    fn new<const N: usize>(largest: f32, bits: u32) -> Option<Self> {
        if !(largest > 0.0 && largest.is_finite()) {
            return None;
        }
        // One unit of headroom: a value rounds to at most full + 1 units.
        let bound = i32::MAX as usize / (N.max(1) * GRID_MAX as usize) - 1;
        let full = if bound >= 1 << bits {
            1 << bits
        } else {
            // The largest power of two within the bound.
            1usize << (usize::BITS - 1 - bound.max(1).leading_zeros())
        };
        let full = full as f32;
        Some(Self {
            factor: full / largest,
            unit: largest / full,
        })
    }

    /// `x` in units, rounded to the nearest (halves away from zero).
    #[inline(always)]
    fn of(self, x: f32) -> i32 {
        (x * self.factor + 0.5f32.copysign(x)) as i32
    }
}

/// The gradient at the layer's input, at the listed positions (zero
/// elsewhere): `input_grad[i] = values[i] . scaled_out_grad`, where
/// `scaled_out_grad[j]` is the gradient at output `j` times `scales[j]`.
/// The gradient is taken in fixed point (at most 2^15 units for its largest
/// magnitude) and each sum is an exact integer sum, four rows at a time.
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
    let largest = scaled_out_grad.iter().fold(0.0f32, |m, g| larger(m, g.abs()));
    let Some(fixed) = FixedPoint::new::<OUT>(largest, 15) else {
        return;
    };
    let mut grad = [0i32; OUT];
    for (q, &g) in grad.iter_mut().zip(scaled_out_grad) {
        *q = fixed.of(g);
    }
    let zero = [0i8; OUT];
    let row = |i: u16| values.get(usize::from(i)).unwrap_or(&zero);
    let (quads, rest) = active.as_chunks::<4>();
    for &[a, b, c, d] in quads {
        let rows = [row(a), row(b), row(c), row(d)];
        let mut dots = [0i32; 4];
        for (j, &g) in grad.iter().enumerate() {
            for (dot, r) in dots.iter_mut().zip(&rows) {
                *dot += i32::from(r[j]) * g;
            }
        }
        for (&i, dot) in [a, b, c, d].iter().zip(dots) {
            if let Some(out) = input_grad.get_mut(usize::from(i)) {
                *out = dot as f32 * fixed.unit;
            }
        }
    }
    for &i in rest {
        let dot: i32 = row(i).iter().zip(&grad).map(|(&v, &g)| i32::from(v) * g).sum();
        if let Some(out) = input_grad.get_mut(usize::from(i)) {
            *out = dot as f32 * fixed.unit;
        }
    }
}

/// Adds `input (outer) delta` to the weights, stochastically rounded: each
/// stored value moves by `input[i] * delta[j] / scales[j]` grid steps in
/// expectation, with random bits from `rng`. Rows with a zero input and
/// columns with a zero `delta` never move.
///
/// When every update is under one step (training's common case: most are
/// a thousandth of one), a value either stays or moves one step, with
/// probability the update's size. Those moves are drawn without a draw per
/// value ([`add_outer_sparse`]): one draw per row and one per move, for
/// what would be a draw per value. The columns whose updates reach a step take
/// [`add_outer_stochastic_dense`]'s rounding, value by value. Both give each
/// value the same distribution as rounding it alone.
///
/// When a value would leave `[-GRID_MAX, GRID_MAX]`, its column's scale
/// doubles and the column's values halve ([`double_column_scale`]) before
/// the update goes on, so no update is clipped. Returns how many columns
/// were rescaled.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::kernels::add_outer_stochastic;
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// let mut values = [[0i8; 2]; 2];
/// let mut scales = [0.5, 1.0];
/// // Exact multiples of a step round the same whatever the draws.
/// let rescaled = add_outer_stochastic(&mut values, &mut scales, &[1.0, 2.0], &[1.5, -3.0], &mut rng);
/// assert_eq!((values, rescaled), ([[3, -3], [6, -6]], 0));
/// // Beyond the grid: column 0's scale doubles, its values halve.
/// values[0][0] = 126;
/// let rescaled = add_outer_stochastic(&mut values, &mut scales, &[1.0, 0.0], &[2.0, 0.0], &mut rng);
/// assert_eq!((values, scales, rescaled), ([[65, -3], [3, -6]], [1.0, 1.0], 1));
/// ```
pub fn add_outer_stochastic<const IN: usize, const OUT: usize>(
    values: &mut [[i8; OUT]; IN],
    scales: &mut [f32; OUT],
    input: &[f32; IN],
    delta: &[f32; OUT],
    rng: &mut impl RngCore,
) -> usize {
    let mut steps = [0.0f32; OUT];
    let mut largest_step = 0.0f32;
    for ((step, &d), &scale) in steps.iter_mut().zip(delta).zip(scales.iter()) {
        *step = d / scale;
        largest_step = larger(largest_step, step.abs());
    }
    // Compared by hand: `f32::max` is a library call on a Cortex-M4.
    let largest_input = input.iter().fold(0.0f32, |m, x| larger(m, x.abs()));
    if largest_input * largest_step < 1.0 {
        return add_outer_sparse(values, scales, input, &mut steps, largest_input, rng);
    }
    // The columns with an update of a step or more round value by value;
    // the others take the sparse draws.
    let mut large = [0.0f32; OUT];
    for ((step, l), &d) in steps.iter_mut().zip(&mut large).zip(delta) {
        // Tested this way round so that NaN rounds value by value.
        let under_a_step = largest_input * step.abs() < 1.0;
        if !under_a_step {
            *l = d;
            *step = 0.0;
        }
    }
    add_outer_sparse(values, scales, input, &mut steps, largest_input, rng)
        + add_outer_stochastic_dense(values, scales, input, &large, &mut Dither::new(rng.next_u32()))
}

/// [`add_outer_stochastic`] when every update is under one step: `steps[j]`
/// is column `j`'s update per unit of input in steps, and
/// `largest_input * |steps[j]| < 1` for every column. Value `(i, j)` moves
/// one step (the sign of `input[i] * steps[j]`) with probability
/// `|input[i] * steps[j]|`, independently of the others in its column: row
/// `i` is picked with probability `|input[i]| / largest_input`, and then
/// each column independently with probability `largest_input * |steps[j]|`.
///
/// A row costs one draw: it is picked and has a column that moves with
/// probability `|input[i]| / largest_input * P(any)`, and the same draw,
/// scaled back, says which column moves first; each later move takes one
/// draw, which says where the next one is (the chance that the first of
/// the columns after `k` to move is at or before `m` is
/// `(F(m) - F(k)) / (1 - F(k))`, `F` the chance that one of the first
/// columns moves). Thresholds are 32-bit integers compared with 32-bit
/// draws: exact to 2^-32 (a draw scaled back, to 2^-24 relative) and the
/// same on every target.
pub fn add_outer_sparse<const IN: usize, const OUT: usize>(
    values: &mut [[i8; OUT]; IN],
    scales: &mut [f32; OUT],
    input: &[f32; IN],
    steps: &mut [f32; OUT],
    largest_input: f32,
    rng: &mut impl RngCore,
) -> usize {
    let mut chances = ColumnChances::new(steps, largest_input);
    let positive = largest_input > 0.0;
    if chances.len == 0 || !positive {
        return 0;
    }
    let any = chances.first_by[chances.len - 1];
    let row_scale = any as f32 / largest_input;
    let mut rescaled = 0;
    for (i, &x) in input.iter().enumerate() {
        if x == 0.0 {
            continue;
        }
        // One draw: the row is picked and one of its columns moves with
        // probability `|x| / largest_input * any`.
        let draw = rng.next_u32();
        if draw >= threshold(x.abs() * row_scale) {
            continue;
        }
        // Below the row's threshold the draw is uniform: scaled back by the
        // row's share it is uniform below `any`, and says which column
        // moves first.
        let first = threshold(draw as f32 * (largest_input / x.abs())).min(any - 1);
        let mut k = chances.first_by[..chances.len].partition_point(|&t| t <= first);
        while k < chances.len {
            let j = usize::from(chances.columns[k]);
            let up = (x > 0.0) == (steps[j] > 0.0);
            if !move_one_step(&mut values[i][j], up) {
                // Past the grid: the column's step doubles, so this move is
                // half a new step, taken with probability one half.
                double_column_scale(values, scales, j);
                steps[j] *= 0.5;
                rescaled += 1;
                if rng.next_u32() >> 31 == 1 {
                    move_one_step(&mut values[i][j], up);
                }
                chances = ColumnChances::new(steps, largest_input);
            }
            k = chances.next_after(k, rng.next_u32());
        }
    }
    rescaled
}

const TWO_TO_32: f32 = 4_294_967_296.0;

/// A draw as a number in `[0, 1)`, 24 bits of it.
#[inline(always)]
fn unit_interval(draw: u32) -> f32 {
    (draw >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A probability times 2^32 as a threshold for a 32-bit draw (saturating:
/// a probability of one becomes 1 - 2^-32).
#[inline(always)]
fn threshold(scaled_probability: f32) -> u32 {
    scaled_probability as u32
}

/// One step up or down, if it stays on the grid.
#[inline(always)]
fn move_one_step(value: &mut i8, up: bool) -> bool {
    let moved = i16::from(*value) + if up { 1 } else { -1 };
    if moved.unsigned_abs() > GRID_MAX as u16 {
        return false;
    }
    *value = moved as i8;
    true
}

/// The columns that move and, as 32-bit thresholds, the chance that the
/// first of them to move in a picked row is at or before each (`F`), and
/// the chance that none has moved by each (`1 - F`, kept as a product: exact
/// where `F` nears one).
struct ColumnChances<const OUT: usize> {
    columns: [u16; OUT],
    first_by: [u32; OUT],
    none_by: [f32; OUT],
    len: usize,
}

impl<const OUT: usize> ColumnChances<OUT> {
    fn new(steps: &[f32; OUT], largest_input: f32) -> Self {
        let mut chances = Self {
            columns: [0; OUT],
            first_by: [0; OUT],
            none_by: [0.0; OUT],
            len: 0,
        };
        // The chance that one of the columns so far moves: 1 - prod(1 - c),
        // summed as it grows so that small chances keep their precision.
        let (mut any, mut none) = (0.0f32, 1.0f32);
        for (j, &step) in steps.iter().enumerate() {
            if step == 0.0 {
                continue;
            }
            let chance = largest_input * step.abs();
            any += chance - chance * any;
            none *= 1.0 - chance;
            let k = chances.len;
            chances.columns[k] = j as u16;
            chances.first_by[k] = threshold(any * TWO_TO_32);
            chances.none_by[k] = none;
            chances.len += 1;
        }
        chances
    }

    /// The place of the next column to move after the one at `k`, from a
    /// draw: the first `m > k` that moves, with probability
    /// `(F(m) - F(k)) / (1 - F(k))` of being at or before `m`. Read from `F`'s
    /// thresholds while `F(k)` is at most a half, from the product `1 - F`
    /// beyond, where `F`'s thresholds run out of resolution.
    #[inline]
    fn next_after(&self, k: usize, draw: u32) -> usize {
        let (Some(&reached), Some(later)) = (self.first_by.get(k), self.first_by.get(k + 1..self.len)) else {
            return self.len;
        };
        // A linear scan: where moves are frequent the next is a few columns
        // on, and where they are rare the last column's threshold ends most
        // scans at once.
        if reached <= 1 << 31 {
            let span = (1u64 << 32) - u64::from(reached);
            let next = (u64::from(reached) + ((u64::from(draw) * span) >> 32)) as u32;
            if later.last().is_none_or(|&t| next >= t) {
                return self.len;
            }
            k + 1 + later.iter().take_while(|&&t| t <= next).count()
        } else {
            let left = self.none_by[k] * (1.0 - unit_interval(draw));
            let later = &self.none_by[k + 1..self.len];
            if later.last().is_none_or(|&none| none >= left) {
                return self.len;
            }
            k + 1 + later.iter().take_while(|&&none| none >= left).count()
        }
    }
}

/// [`add_outer_stochastic`] with a rounding per value: each value moves by
/// `input[i] * delta[j] / scales[j]` grid steps, a fixed-point number
/// ([`FRACTION_BITS`]) rounded with one draw of `dither`
/// ([`add_stochastic`]). Any update size; a column rescales as there.
/// `delta` must be finite.
///
/// ```
/// use tinycnn::kernels::{add_outer_stochastic_dense, Dither};
/// let mut values = [[0i8; 2]; 2];
/// let mut scales = [0.5, 1.0];
/// add_outer_stochastic_dense(&mut values, &mut scales, &[1.0, 2.0], &[1.5, -3.0], &mut Dither::new(1));
/// assert_eq!(values, [[3, -3], [6, -6]]);
/// ```
pub fn add_outer_stochastic_dense<const IN: usize, const OUT: usize>(
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
