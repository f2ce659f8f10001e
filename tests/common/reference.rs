//! An independent forward pass in f64, written straight from the model's
//! definition (the Keras layouts of `Params`), for checking the crate's f32 code.

use tinycnn::FashionParams;

/// Loss of one image through the default network, in f64. `keep` is the
/// dropout mask over the 1960 flat values (kept ones scaled by `1 / (1 - rate)`).
pub fn loss(
    params: &FashionParams,
    image: &[[f64; 28]; 28],
    label: usize,
    dropout: Option<(&[bool], f64)>,
) -> f64 {
    let mut flat = vec![0.0f64; 1960];
    for py in 0..14 {
        for px in 0..14 {
            for k in 0..10 {
                let mut best = f64::NEG_INFINITY;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let (y, x) = (2 * py + dy, 2 * px + dx);
                    let mut sum = f64::from(params.conv_bias[k]);
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                            if (0..28).contains(&iy) && (0..28).contains(&ix) {
                                sum += f64::from(params.conv_kernel[ky][kx][k])
                                    * image[iy as usize][ix as usize];
                            }
                        }
                    }
                    best = best.max(sum.max(0.0));
                }
                flat[(py * 14 + px) * 10 + k] = best;
            }
        }
    }
    if let Some((keep, rate)) = dropout {
        for (v, &k) in flat.iter_mut().zip(keep) {
            *v = if k { *v / (1.0 - rate) } else { 0.0 };
        }
    }
    let hidden: Vec<f64> = (0..100)
        .map(|j| {
            let s: f64 = (0..1960)
                .map(|i| flat[i] * f64::from(params.dense1_kernel[i][j]))
                .sum();
            (s + f64::from(params.dense1_bias[j])).max(0.0)
        })
        .collect();
    let logits: Vec<f64> = (0..10)
        .map(|c| {
            (0..100)
                .map(|j| hidden[j] * f64::from(params.dense2_kernel[j][c]))
                .sum::<f64>()
                + f64::from(params.dense2_bias[c])
        })
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logits.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
    lse - logits[label]
}

/// The dropout mask the crate draws from `rng` for one sample: one 64-bit
/// draw seeds SplitMix64, whose outputs give 16 bits per flat value (low bits
/// first), kept when at least `rate * 2^16` rounded.
pub fn dropout_mask(rng: &mut impl rand_core::RngCore, rate: f32) -> Vec<bool> {
    let threshold = (f64::from(rate) * 65_536.0).round() as u64;
    let mut state = rng.next_u64();
    let mut splitmix = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut mask = Vec::with_capacity(1960);
    while mask.len() < 1960 {
        let draws = splitmix();
        mask.extend((0..4).map(|q| (draws >> (16 * q)) & 0xFFFF >= threshold));
    }
    mask.truncate(1960);
    mask
}

pub fn to_f64(image: &[[f32; 28]; 28]) -> [[f64; 28]; 28] {
    image.map(|row| row.map(f64::from))
}
