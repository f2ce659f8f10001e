//! Inverted dropout.

use rand_core::RngCore;

/// Zeroes each value with probability `rate` and scales the kept ones by
/// `1 / (1 - rate)`, so the expected value is unchanged and inference needs no
/// dropout at all. Draws one 32-bit number per value, whatever the values, so
/// the same RNG state gives the same mask.
///
/// `rate` must be in `[0, 1)`; [`Trainer::set_dropout`](super::Trainer::set_dropout) checks it.
///
/// ```
/// use rand_core::SeedableRng;
/// let mut v = [1.0f32; 1000];
/// tinycnn::train::dropout(&mut v, 0.5, &mut rand_pcg::Pcg32::seed_from_u64(0));
/// let kept = v.iter().filter(|&&x| x == 2.0).count();
/// assert!(v.iter().all(|&x| x == 0.0 || x == 2.0));
/// assert!((450..550).contains(&kept));
/// ```
#[inline]
pub fn dropout(values: &mut [f32], rate: f32, rng: &mut impl RngCore) {
    // Keep when the draw is at or above rate * 2^32.
    let threshold = (rate * 4_294_967_296.0) as u64;
    let keep_scale = 1.0 / (1.0 - rate);
    for v in values {
        let keep = u64::from(rng.next_u32()) >= threshold;
        *v = if keep { *v * keep_scale } else { 0.0 };
    }
}
