//! Stochastic rounding onto an integer grid: how a parameter stored in 8
//! bits takes updates far smaller than one grid step without losing them on
//! average.
//!
//! An update is a fixed-point number of grid steps with [`FRACTION_BITS`]
//! fraction bits. [`add_stochastic`] adds it to the stored value together
//! with a dither uniform over the fraction's range and keeps the integer
//! part: the result rounds up with probability equal to the fraction, so its
//! expected value is the exact sum. Updates down to 2^-20 of a step count.

/// Fraction bits of an update in grid steps: updates resolve to 2^-20 of a
/// step. A stored value (at most 2^7 in magnitude) shifted by this many bits
/// leaves the rest of an `i32` for the update and the dither.
pub const FRACTION_BITS: u32 = 20;

/// The dither of stochastic rounding: a 32-bit linear congruential generator
/// (multiplier 1664525, increment 1013904223, full period 2^32) whose top
/// [`FRACTION_BITS`] bits are each draw. One multiply-add per draw on a
/// Cortex-M; over its period every value of the top bits comes equally
/// often, which is what makes the rounding unbiased. Seeded from the
/// caller's generator, so a run is reproducible.
///
/// ```
/// use tinycnn::kernels::{Dither, FRACTION_BITS};
/// let mut dither = Dither::new(7);
/// let draws: Vec<i32> = (0..1000).map(|_| dither.next_draw()).collect();
/// assert!(draws.iter().all(|&d| (0..1 << FRACTION_BITS).contains(&d)));
/// let mean = draws.iter().map(|&d| f64::from(d)).sum::<f64>() / 1000.0;
/// assert!((mean / f64::from(1 << FRACTION_BITS) - 0.5).abs() < 0.05);
/// ```
#[derive(Clone, Debug)]
pub struct Dither(u32);

impl Dither {
    /// A stream starting from `seed`.
    pub const fn new(seed: u32) -> Self {
        Self(seed)
    }

    /// The next draw, uniform over `0..2^FRACTION_BITS`.
    #[inline(always)]
    pub fn next_draw(&mut self) -> i32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> (32 - FRACTION_BITS)) as i32
    }
}

/// `value + update / 2^FRACTION_BITS`, rounded down after adding `dither`
/// (uniform over `0..2^FRACTION_BITS`): rounded up with probability equal to
/// the update's fraction, so the expected result is the exact sum. Not
/// clamped: the caller decides what a result beyond its grid means. An
/// update too large for an `i32` saturates and so lands far outside any
/// 8-bit grid.
///
/// ```
/// use tinycnn::kernels::{add_stochastic, FRACTION_BITS};
/// let quarter = 1 << (FRACTION_BITS - 2);
/// // 5 + 0.25 steps: 5 for dithers below 3/4 of the range, 6 above.
/// assert_eq!(add_stochastic(5, quarter, 0), 5);
/// assert_eq!(add_stochastic(5, quarter, 3 * quarter), 6);
/// assert_eq!(add_stochastic(-5, -quarter, 0), -6);
/// assert_eq!(add_stochastic(-5, -quarter, quarter), -5);
/// ```
#[inline(always)]
pub fn add_stochastic(value: i8, update: i32, dither: i32) -> i32 {
    ((i32::from(value) << FRACTION_BITS) + dither).saturating_add(update) >> FRACTION_BITS
}

/// `value / 2` rounded to the nearest integer, ties to even: a grid value
/// when its step doubles. Off by at most half the new step, and by nothing
/// for even values.
///
/// ```
/// use tinycnn::kernels::halve_to_even;
/// let halves: Vec<i8> = [-3, -1, 1, 3, 4, 5, 127, -128].iter().map(|&v| halve_to_even(v)).collect();
/// assert_eq!(halves, [-2, 0, 0, 2, 2, 2, 64, -64]);
/// ```
#[inline]
pub fn halve_to_even(value: i8) -> i8 {
    let floor = value >> 1;
    // An odd value is a tie: step up when the floor is odd.
    floor + (value & floor & 1)
}
