//! Integer kernels of the int8 model: `u8` activations (ReLU makes them
//! non-negative, so zero is the zero point), `i8` weights with one scale per
//! output channel, `i32` sums, and requantization by a fixed-point multiplier
//! and shift. No floating point anywhere, so they run at full speed on cores
//! without an FPU. Sums wrap on overflow, which quantized weights never reach
//! (255 * 127 * 1960 is far below 2^31); only a forged bias could, and then the
//! result is wrong but nothing panics.

use super::dsp::{patch_sum, window_maxima, ChannelTaps, HighWord, Patch, PatchRows, PATCH_END};
use super::vector::{runs, HAS_SIMD, ROW_LANES};
use wide::{i16x16, i32x8};

/// A real factor `m * 2^(shift - 31)` with `m` in `[2^30, 2^31)`: how a sum
/// at one scale is brought to another with integers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Requant {
    /// The fixed-point multiplier, `m`.
    pub multiplier: i32,
    /// The power of two, `shift`.
    pub shift: i32,
}

impl Requant {
    /// The multiplier and shift closest to `real` (which must be positive and
    /// finite; anything else gives the factor 0).
    ///
    /// ```
    /// use tinycnn::kernels::Requant;
    /// let r = Requant::from_real(0.25);
    /// assert_eq!(r.apply(1000), 250);
    /// assert_eq!(Requant::from_real(3.0).apply(-7), -21);
    /// ```
    pub fn from_real(real: f64) -> Self {
        if !(real.is_finite() && real > 0.0) {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        let (fraction, exponent) = libm::frexp(real);
        let mut multiplier = libm::round(fraction * 2_147_483_648.0) as i64;
        let mut shift = exponent;
        if multiplier == 1 << 31 {
            multiplier /= 2;
            shift += 1;
        }
        Self {
            multiplier: multiplier as i32,
            shift,
        }
    }

    /// `value * m * 2^(shift - 31)`, rounded to nearest (ties away from zero),
    /// saturated to `i32`.
    #[inline]
    pub fn apply(self, value: i32) -> i32 {
        let product = i64::from(value) * i64::from(self.multiplier);
        // In i64, so that any shift a blob may hold is safe to negate.
        let right = 31 - i64::from(self.shift);
        let scaled = if right <= 0 {
            let left = (-right).min(63) as u32;
            if product == 0 {
                0
            } else if product.unsigned_abs().leading_zeros() > left {
                product << left
            } else if product < 0 {
                i64::MIN
            } else {
                i64::MAX
            }
        } else if right >= 63 {
            0
        } else {
            // Round the magnitude half up, so ties go away from zero either way.
            let magnitude = (product.unsigned_abs() + (1u64 << (right - 1))) >> right;
            if product < 0 {
                -(magnitude as i64)
            } else {
                magnitude as i64
            }
        };
        scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    }

    /// ReLU, then [`apply`](Self::apply) clamped to `0..=255`. A value
    /// ReLU zeroes (most of them, after a convolution or a dense layer) is
    /// not requantized at all.
    #[inline]
    pub fn to_u8(self, value: i32) -> u8 {
        if value <= 0 {
            return 0;
        }
        if let Some(high_word) = self.high_word() {
            return high_word.to_u8(value);
        }
        // A positive factor and a shorter right shift, in unsigned
        // arithmetic without the general path's cases: one multiply, one
        // rounding add and one shift of 64 bits.
        let right = 31 - i64::from(self.shift);
        if self.multiplier > 0 && (1..=32).contains(&right) {
            let product = u64::from(value.unsigned_abs()) * u64::from(self.multiplier.unsigned_abs());
            return ((product + (1 << (right - 1))) >> right).min(255) as u8;
        }
        self.apply(value).clamp(0, 255) as u8
    }

    /// This factor as a [`HighWord`], if it is positive and below 2^-2 (a
    /// right shift of 33 or more, the usual case).
    #[inline]
    fn high_word(self) -> Option<HighWord> {
        let right = 31 - i64::from(self.shift);
        (self.multiplier > 0 && (33..=62).contains(&right)).then_some(HighWord {
            multiplier: self.multiplier.unsigned_abs(),
            shift: (right - 33) as u32,
        })
    }
}

/// A 3x3 `i8` kernel, `[ky][kx][k]`, as [`ConvKernel`](super::ConvKernel).
pub type ConvKernelI8<const K: usize> = [[[i8; K]; 3]; 3];

/// Integer convolution + bias + ReLU + 2x2 max-pool of a `u8` image; the
/// pooled sums are requantized to `u8` per channel.
///
/// ```
/// use tinycnn::kernels::{conv_relu_pool_i8, Requant};
/// let mut kernel = [[[0i8; 1]; 3]; 3];
/// kernel[1][1][0] = 2; // the centre tap doubles the pixel
/// let mut pooled = [0u8; 1];
/// conv_relu_pool_i8::<2, 2, 1, 1>(&[[10, 20], [30, 5]], &kernel, &[1], &[Requant::from_real(0.5)], &mut pooled);
/// assert_eq!(pooled, [31]); // (2 * 30 + 1) / 2, rounded
/// ```
pub fn conv_relu_pool_i8<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[u8; W]; H],
    kernel: &ConvKernelI8<K>,
    bias: &[i32; K],
    requant: &[Requant; K],
    pooled: &mut [u8; FLAT],
) {
    if HAS_SIMD && W / 2 >= ROW_LANES {
        return conv_relu_pool_i8_pairs(image, kernel, bias, requant, pooled);
    }
    conv_relu_pool_i8_dsp(image, kernel, bias, requant, pooled);
}

/// [`conv_relu_pool_i8`] on SIMD registers: 16-bit pixels and taps in pairs,
/// each pair of products added into one `i32` lane (`pmaddwd` on x86-64),
/// eight pooling windows at a time, laid out as in the f32 convolution: the
/// even and the odd columns of two convolution rows are four vectors of sums,
/// max-pooled lane by lane. With `row` the image row widened to 16 bits and
/// shifted one to the right (zero at either end), the taps of column `x` are
/// the pair `row[x], row[x + 1]` times `(t0, t1)` plus `row[x + 2], row[x + 3]`
/// times `(t2, 0)`: two multiply-adds of aligned runs per source row.
fn conv_relu_pool_i8_pairs<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[u8; W]; H],
    kernel: &ConvKernelI8<K>,
    bias: &[i32; K],
    requant: &[Requant; K],
    pooled: &mut [u8; FLAT],
) {
    let pw = W / 2;
    // Twice a row's length: room for the shift and for the last run of 16.
    let mut rows = [[[0i16; W]; 2]; H];
    for (row, wide) in image.iter().zip(&mut rows) {
        for (slot, &p) in wide.as_flattened_mut().iter_mut().skip(1).zip(row) {
            *slot = i16::from(p);
        }
    }
    let pairs = |a: i8, b: i8| {
        i16x16::new(core::array::from_fn(|t| {
            i16::from(if t % 2 == 0 { a } else { b })
        }))
    };
    // Per channel and kernel row: the taps (t0, t1) and (t2, 0) in pairs.
    let taps: [[[i16x16; 2]; 3]; K] = core::array::from_fn(|k| {
        core::array::from_fn(|ky| {
            [
                pairs(kernel[ky][0][k], kernel[ky][1][k]),
                pairs(kernel[ky][2][k], 0),
            ]
        })
    });
    let run = |row: &[i16], at: usize| {
        row.get(at..at + 16)
            .and_then(|r| <[i16; 16]>::try_from(r).ok())
            .map_or(i16x16::splat(0), i16x16::new)
    };
    for py in 0..H / 2 {
        for at in runs(pw, ROW_LANES) {
            // Image rows 2py - 1 ..= 2py + 2 from shifted columns 2at ..= 2at + 3.
            let sources: [Option<[i16x16; 4]>; 4] = core::array::from_fn(|r| {
                let row = rows.get((2 * py + r).checked_sub(1)?)?.as_flattened();
                Some(core::array::from_fn(|shift| run(row, 2 * at + shift)))
            });
            // Black background around the item: every sum is the bias.
            let black = sources.iter().flatten().flatten().all(|v| *v == i16x16::splat(0));
            for (k, ((taps, &bias), requant)) in taps.iter().zip(bias).zip(requant).enumerate() {
                // Sums of the even and odd columns of the top and bottom row.
                let mut cells = [i32x8::splat(bias); 4];
                for (ky, [near, far]) in taps.iter().enumerate().filter(|_| !black) {
                    for (half, r) in [(0, ky), (2, ky + 1)] {
                        if let Some([a, b, c, d]) = sources[r] {
                            cells[half] += a.dot(*near) + c.dot(*far);
                            cells[half + 1] += b.dot(*near) + d.dot(*far);
                        }
                    }
                }
                let [a, b, c, d] = cells;
                let best = a.max(b).max(c.max(d)).to_array();
                for (t, &best) in best.iter().enumerate() {
                    if let Some(cell) = pooled.get_mut((py * pw + at + t) * K + k) {
                        *cell = requant.to_u8(best);
                    }
                }
            }
        }
    }
}

/// [`conv_relu_pool_i8`] as a core with the DSP extension (Cortex-M4) runs
/// it, with the same result: pixels and taps packed in 16-bit pairs, two
/// multiply-adds per instruction (`SMLAD`). Elsewhere the pairs are
/// taken apart in plain code (which is how the host tests this path); a
/// core with neither SIMD registers nor DSP (Cortex-M0) runs that plain
/// form too, since the columns it skips over black background pay there as
/// well. Both sum only the pooling windows whose 3x3 patches reach a non-zero
/// pixel.
///
/// Eight of the nine taps pair up: the two upper rows of each column with a
/// column of two pixels, and the first two taps of the lower row with two
/// neighbouring pixels; the last tap is one multiply-add. The patches of the
/// two convolution rows of a pooled row are packed side by side, and each
/// channel's pooled row is one pass (the four sums of a
/// window, their maximum, ReLU and requantization, in assembly for the usual
/// requantization factors) or its plain form.
///
/// ```
/// use tinycnn::kernels::{conv_relu_pool_i8_dsp, conv_relu_pool_i8_scalar, Requant};
/// let image = [[10, 200, 30], [40, 50, 255], [70, 0, 90]];
/// let kernel = [[[1i8, -128], [2, 127], [-3, 4]], [[5, -6], [7, 8], [-9, 10]], [[11, 12], [-13, 14], [15, -16]]];
/// let (bias, requant) = ([-100, 50], [Requant::from_real(0.01); 2]);
/// let (mut a, mut b) = ([0u8; 2], [0u8; 2]);
/// conv_relu_pool_i8_dsp::<3, 3, 2, 2>(&image, &kernel, &bias, &requant, &mut a);
/// conv_relu_pool_i8_scalar::<3, 3, 2, 2>(&image, &kernel, &bias, &requant, &mut b);
/// assert_eq!(a, b);
/// ```
#[inline(never)]
pub fn conv_relu_pool_i8_dsp<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[u8; W]; H],
    kernel: &ConvKernelI8<K>,
    bias: &[i32; K],
    requant: &[Requant; K],
    pooled: &mut [u8; FLAT],
) {
    const {
        assert!(
            H >= 2 && W >= 2 && K >= 1 && FLAT == (H / 2) * (W / 2) * K,
            "FLAT must be (H/2)*(W/2)*K"
        )
    };
    let pair = |low: i8, high: i8| u32::from(low as u16) | (u32::from(high as u16) << 16);
    let taps: [ChannelTaps; K] = core::array::from_fn(|k| {
        let t = |ky: usize, kx: usize| kernel[ky][kx][k];
        ChannelTaps {
            pairs: [
                pair(t(0, 0), t(1, 0)),
                pair(t(0, 1), t(1, 1)),
                pair(t(0, 2), t(1, 2)),
                pair(t(2, 0), t(2, 1)),
            ],
            corner: i32::from(t(2, 2)),
            bias: bias[k],
        }
    });
    // The first and last non-zero column of each image row (None for a black
    // row): outside them, widened by the kernel, a sum is the bias alone.
    // Most of a Fashion-MNIST image is black background around the item.
    let extents: [Option<(usize, usize)>; H] = core::array::from_fn(|y| {
        let nonzero = |&p: &u8| p != 0;
        Some((
            image[y].iter().position(nonzero)?,
            image[y].iter().rposition(nonzero)?,
        ))
    });
    let background: [u8; K] = core::array::from_fn(|k| requant[k].to_u8(bias[k]));
    let forms: [Option<HighWord>; K] = core::array::from_fn(|k| requant[k].high_word());
    // The patches of the two rows of a pooled row, the upper one's closed by
    // the end marker: a row and the marker, then the lower row.
    let mut room = [[[0u32; 5]; W]; 3];
    let (upper, lower) = room.as_flattened_mut().split_at_mut(W + 1);
    let pw = W / 2;
    for (py, cells) in pooled.chunks_exact_mut(pw * K).enumerate() {
        // The pooling windows either row's patches reach a non-zero pixel in.
        let reached = [2 * py, 2 * py + 1]
            .map(|y| windows_reached(&extents, y, pw))
            .into_iter()
            .flatten()
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        for (px, cell) in cells.chunks_exact_mut(K).enumerate() {
            if reached.is_none_or(|(first, last)| px < first || px > last) {
                cell.copy_from_slice(&background);
            }
        }
        let Some((first, last)) = reached else {
            continue;
        };
        let (lo, hi) = (2 * first, 2 * last + 1);
        let n = pack_patches(image, 2 * py, lo, hi, upper);
        if let Some(end) = upper.get_mut(n) {
            *end = PATCH_END;
        }
        pack_patches(image, 2 * py + 1, lo, hi, lower);
        let (upper, lower): (&[Patch], &[Patch]) = (upper.get(..=n).unwrap_or_default(), lower);
        let rows = PatchRows::<W>::new(upper, lower);
        for (k, (taps, (&form, requant))) in taps.iter().zip(forms.iter().zip(requant)).enumerate() {
            let cells = cells.get_mut(first * K + k..).unwrap_or_default();
            if let (Some(form), Some(rows)) = (form, &rows) {
                if window_maxima::<W, K>(rows, taps, form, cells) {
                    continue;
                }
            }
            let sum = |patch: &Patch| patch_sum(patch, taps);
            for (w, cell) in (0..n / 2).zip(cells.iter_mut().step_by(K)) {
                let best = sum(&upper[2 * w])
                    .max(sum(&upper[2 * w + 1]))
                    .max(sum(&lower[2 * w]))
                    .max(sum(&lower[2 * w + 1]));
                *cell = form.map_or_else(|| requant.to_u8(best), |form| form.to_u8(best));
            }
        }
    }
}

/// The pooling windows (pairs of columns) of convolution row `y` whose 3x3
/// patches reach a non-zero pixel of `extents`, first and last.
#[inline]
fn windows_reached<const H: usize>(
    extents: &[Option<(usize, usize)>; H],
    y: usize,
    pw: usize,
) -> Option<(usize, usize)> {
    let (first, last) = (0..3)
        .filter_map(|ky| extents.get((y + ky).checked_sub(1)?).copied().flatten())
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))?;
    let (lo, hi) = (first.saturating_sub(1) / 2, last.div_ceil(2).min(pw - 1));
    (lo <= hi).then_some((lo, hi))
}

/// Packs the 3x3 patches of convolution row `y`, columns `lo..=hi`, into the
/// front of `patches` (see [`Patch`]); padding reads 0. Returns how many.
#[inline]
fn pack_patches<const H: usize, const W: usize>(
    image: &[[u8; W]; H],
    y: usize,
    lo: usize,
    hi: usize,
    patches: &mut [Patch],
) -> usize {
    // The padding rows above and below the image read as black.
    let black = [0u8; W];
    let source = |ky: usize| {
        (y + ky)
            .checked_sub(1)
            .and_then(|iy| image.get(iy))
            .unwrap_or(&black)
    };
    let (upper, middle, below) = (source(0), source(1), source(2));
    // Pixel `x` of a row, 0 in the padding (x = usize::MAX stands for -1).
    let pixel = |row: &[u8; W], x: usize| row.get(x).map_or(0, |&p| u32::from(p));
    let column = |x: usize| pixel(upper, x) | (pixel(middle, x) << 16);
    // Each column and lower pixel is read once and moves left through the
    // patches; the pixels right of columns `lo..hi` lie within the row, the
    // one right of `hi` may be the padding.
    let (mut left, mut centre) = (column(lo.wrapping_sub(1)), column(lo));
    let mut lower = pixel(below, lo.wrapping_sub(1)) | (pixel(below, lo) << 16);
    let right = lo + 1..=hi;
    let (upper_right, middle_right, below_right) = (
        upper.get(right.clone()).unwrap_or_default(),
        middle.get(right.clone()).unwrap_or_default(),
        below.get(right).unwrap_or_default(),
    );
    let mut push = |patch: &mut Patch, right: u32, last: u32| {
        *patch = [left, centre, right, lower, last];
        (left, centre, lower) = (centre, right, (lower >> 16) | (last << 16));
    };
    let (inner, outer) = patches.split_at_mut((hi - lo).min(patches.len()));
    for (((patch, &u), &m), &b) in inner
        .iter_mut()
        .zip(upper_right)
        .zip(middle_right)
        .zip(below_right)
    {
        push(patch, u32::from(u) | (u32::from(m) << 16), u32::from(b));
    }
    if let Some(patch) = outer.first_mut() {
        push(patch, column(hi + 1), pixel(below, hi + 1));
    }
    (hi + 1 - lo).min(patches.len())
}

/// Scalar twin of [`conv_relu_pool_i8`].
///
/// ```
/// use tinycnn::kernels::{conv_relu_pool_i8_scalar, Requant};
/// let mut kernel = [[[0i8; 1]; 3]; 3];
/// kernel[1][1][0] = 2;
/// let mut pooled = [0u8; 1];
/// conv_relu_pool_i8_scalar::<2, 2, 1, 1>(&[[10, 20], [30, 5]], &kernel, &[1], &[Requant::from_real(0.5)], &mut pooled);
/// assert_eq!(pooled, [31]);
/// ```
pub fn conv_relu_pool_i8_scalar<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[u8; W]; H],
    kernel: &ConvKernelI8<K>,
    bias: &[i32; K],
    requant: &[Requant; K],
    pooled: &mut [u8; FLAT],
) {
    const {
        assert!(
            H >= 2 && W >= 2 && FLAT == (H / 2) * (W / 2) * K,
            "FLAT must be (H/2)*(W/2)*K"
        )
    };
    let pw = W / 2;
    for (index, cell) in pooled.iter_mut().enumerate() {
        let (py, px, k) = (index / K / pw, index / K % pw, index % K);
        let best = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .map(|(dy, dx)| conv_pixel_i8(image, kernel, bias, 2 * py + dy, 2 * px + dx, k))
            .into_iter()
            .fold(i32::MIN, i32::max);
        *cell = requant[k].to_u8(best);
    }
}

/// One integer convolution output at `(y, x)` of channel `k`.
#[inline]
fn conv_pixel_i8<const H: usize, const W: usize, const K: usize>(
    image: &[[u8; W]; H],
    kernel: &ConvKernelI8<K>,
    bias: &[i32; K],
    y: usize,
    x: usize,
    k: usize,
) -> i32 {
    let mut sum = bias[k];
    for (ky, taps) in kernel.iter().enumerate() {
        for (kx, tap) in taps.iter().enumerate() {
            let pixel = (y + ky)
                .checked_sub(1)
                .zip((x + kx).checked_sub(1))
                .and_then(|(iy, ix)| image.get(iy)?.get(ix));
            if let Some(&p) = pixel {
                sum = sum.wrapping_add(i32::from(tap[k]) * i32::from(p));
            }
        }
    }
    sum
}

#[inline]
fn lanes_i32(values: &[i32], at: usize) -> i32x8 {
    values
        .get(at..at + ROW_LANES)
        .and_then(|chunk| <[i32; ROW_LANES]>::try_from(chunk).ok())
        .map_or(i32x8::splat(0), i32x8::new)
}

/// `out = bias + input . kernel` in integers, skipping zero inputs.
///
/// ```
/// let mut out = [0i32; 2];
/// tinycnn::kernels::dense_i8(&[2, 0, 1], &[[1, -1], [5, 5], [-3, 4]], &[10, 0], &mut out);
/// assert_eq!(out, [9, 2]);
/// ```
#[inline]
pub fn dense_i8<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
) {
    if !HAS_SIMD {
        return dense_i8_registers(input, kernel, bias, out);
    }
    let mut start = 0;
    while start + ROW_LANES <= OUT {
        let mut sum = lanes_i32(bias, start);
        for (&x, row) in input.iter().zip(kernel) {
            if x != 0 {
                let weights: [i32; ROW_LANES] = core::array::from_fn(|t| i32::from(row[start + t]));
                sum += i32x8::new(weights) * i32x8::splat(i32::from(x));
            }
        }
        out[start..start + ROW_LANES].copy_from_slice(&sum.to_array());
        start += ROW_LANES;
    }
    dense_i8_tail(input, kernel, bias, start, out);
}

/// Outputs `start..` of [`dense_i8`], fewer than a vector, one at a time.
#[inline]
fn dense_i8_tail<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    start: usize,
    out: &mut [i32; OUT],
) {
    if start >= OUT {
        return;
    }
    out[start..].copy_from_slice(&bias[start..]);
    for (&x, row) in input.iter().zip(kernel) {
        if x != 0 {
            for (o, &w) in out[start..].iter_mut().zip(&row[start..]) {
                *o = o.wrapping_add(i32::from(w) * i32::from(x));
            }
        }
    }
}

/// [`dense_i8`] for a core without SIMD registers: eight plain sums, which a
/// Cortex-M keeps in its general registers (one multiply-accumulate per
/// weight), where `wide`'s emulated vectors go through memory.
#[inline]
fn dense_i8_registers<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
) {
    let mut start = 0;
    while start + ROW_LANES <= OUT {
        let mut sums: [i32; ROW_LANES] = core::array::from_fn(|t| bias[start + t]);
        for (&x, row) in input.iter().zip(kernel) {
            if x != 0 {
                let x = i32::from(x);
                let Some(weights) = row.get(start..start + ROW_LANES) else {
                    continue;
                };
                for (sum, &w) in sums.iter_mut().zip(weights) {
                    *sum = sum.wrapping_add(i32::from(w) * x);
                }
            }
        }
        out[start..start + ROW_LANES].copy_from_slice(&sums);
        start += ROW_LANES;
    }
    dense_i8_tail(input, kernel, bias, start, out);
}

/// Scalar twin of [`dense_i8`].
///
/// ```
/// let mut out = [0i32; 2];
/// tinycnn::kernels::dense_i8_scalar(&[2, 0, 1], &[[1, -1], [5, 5], [-3, 4]], &[10, 0], &mut out);
/// assert_eq!(out, [9, 2]);
/// ```
#[inline]
pub fn dense_i8_scalar<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
) {
    *out = *bias;
    for (&x, row) in input.iter().zip(kernel) {
        if x != 0 {
            for (o, &w) in out.iter_mut().zip(row) {
                *o = o.wrapping_add(i32::from(w) * i32::from(x));
            }
        }
    }
}
