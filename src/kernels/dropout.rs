//! Inverted dropout.

use crate::kernels::vector::HAS_SIMD;
use crate::Error;
use rand_core::RngCore;
use wide::{f32x8, i32x8, u16x8};

/// Zeroes each value with probability `rate` and scales the kept ones by
/// `1 / (1 - rate)`, so the expected value is unchanged and inference needs no
/// dropout at all. Draws one 64-bit number from `rng`, whatever the values,
/// and expands it with SplitMix64 into 16 random bits per value, so the same
/// RNG state gives the same mask; the probability of a zero is `rate` rounded
/// to a multiple of 2^-16.
///
/// `rate` must be in `[0, 1)`; the trainers' `set_dropout` checks it.
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
    // One draw from the caller's generator, whose steps depend on each other,
    // then a stream whose outputs do not: a generator step per value was
    // most of the cost of dropout on the host.
    let mut stream = SampleStream(rng.next_u64());
    // Keep when the 16-bit draw is at or above rate * 2^16, rounded.
    let threshold = (rate * 65_536.0 + 0.5) as u32;
    let keep_scale = 1.0 / (1.0 - rate);
    // Eight values from two draws, compared and masked in one vector each:
    // the same draws in the same order as the loop after it, which a
    // compiler may otherwise turn into a branch per value.
    let vector_len = if HAS_SIMD { values.len() / 8 * 8 } else { 0 };
    let (head, rest) = values.split_at_mut(vector_len);
    let (threshold_v, scale_v) = (i32x8::splat(threshold as i32), f32x8::splat(keep_scale));
    for eight in head.as_chunks_mut::<8>().0 {
        let [a, b] = [stream.next_u64(), stream.next_u64()].map(quarters);
        let draws = u16x8::new([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]);
        let keep = i32x8::from_u16x8(draws).simd_ge(threshold_v);
        let kept = f32x8::new(*eight) & bytemuck::cast::<i32x8, f32x8>(keep);
        *eight = (kept * scale_v).to_array();
    }
    for quad in rest.chunks_mut(4) {
        let mut draws = stream.next_u64();
        for v in quad {
            let keep = (draws as u32 & 0xFFFF) >= threshold;
            draws >>= 16;
            // A bit mask rather than a branch: the draws are random, so a
            // branch would be mispredicted half the time at rate 0.5.
            let mask = 0u32.wrapping_sub(u32::from(keep));
            *v = f32::from_bits(v.to_bits() & mask) * keep_scale;
        }
    }
}

/// The four 16-bit draws of a 64-bit one, lowest bits first.
#[inline]
fn quarters(draws: u64) -> [u16; 4] {
    [
        draws as u16,
        (draws >> 16) as u16,
        (draws >> 32) as u16,
        (draws >> 48) as u16,
    ]
}

/// `rate` if it is a dropout rate, in `[0, 1)`.
pub(crate) fn check_rate(rate: f32) -> Result<f32, Error> {
    if (0.0..1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(Error::InvalidConfig {
            what: "dropout rate must be in [0, 1)",
        })
    }
}

/// SplitMix64 from a per-sample seed: a sample's dropout mask can be drawn
/// again (the streaming trainer's second pass) or drawn on any thread (the
/// parallel trainer) and come out the same.
pub(crate) struct SampleStream(pub(crate) u64);

impl RngCore for SampleStream {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
