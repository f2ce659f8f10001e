//! Convolution over several input channels with any odd square kernel, fused
//! with ReLU and (when `POOL`) 2x2 max-pooling as
//! [`conv_relu_pool`](super::conv_relu_pool) is: maps are `f32` slices in
//! height-width-channel order (Keras's), the kernel in Keras's
//! `(ky, kx, in, out)` order, SAME padding, stride 1.
//!
//! Written plainly: the sums over output channels are contiguous, which a
//! compiler vectorizes, and the forward pass has no branch on zero inputs,
//! whose pattern after a ReLU no predictor learns.

use super::vector::{axpy, dot};

/// The input cell that tap `tap` of output cell `out` reads,
/// `out + tap - half`, when that is inside `0..len`.
#[inline]
fn source(out: usize, tap: usize, half: usize, len: usize) -> Option<usize> {
    (out + tap).checked_sub(half).filter(|&i| i < len)
}

/// Convolution + bias + ReLU + 2x2 max-pool of the `H`x`W`x`CIN` map
/// `input`, written to `pooled` (`(H/2)`x`(W/2)`x`COUT`); with `argmax`, the
/// winner of each pooling window (0: top-left, 1: top-right, 2: bottom-left,
/// 3: bottom-right). Without `POOL`, convolution + bias + ReLU alone, the
/// `H`x`W`x`COUT` map in `pooled` (`argmax` untouched). `kernel` holds
/// `KS * KS * CIN * COUT` values.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool_channels;
/// // 2x2 image, two channels; one 1x1 kernel adding them.
/// let input = [1.0, 2.0, 3.0, -4.0, 0.5, 0.5, 0.0, 0.0];
/// let mut pooled = [0.0; 1];
/// let mut argmax = [0u8; 1];
/// conv_relu_pool_channels::<2, 2, 2, 1, 1, 1, true>(&input, &[1.0, 1.0], &[0.0], &mut pooled, Some(&mut argmax));
/// assert_eq!((pooled, argmax), ([3.0], [0]));
/// let mut map = [0.0; 4];
/// conv_relu_pool_channels::<2, 2, 2, 1, 1, 4, false>(&input, &[1.0, 1.0], &[0.0], &mut map, None);
/// assert_eq!(map, [3.0, 0.0, 1.0, 0.0]);
/// ```
pub fn conv_relu_pool_channels<
    const H: usize,
    const W: usize,
    const CIN: usize,
    const COUT: usize,
    const KS: usize,
    const FLAT: usize,
    const POOL: bool,
>(
    input: &[f32],
    kernel: &[f32],
    bias: &[f32; COUT],
    pooled: &mut [f32; FLAT],
    mut argmax: Option<&mut [u8; FLAT]>,
) {
    const { check_sizes::<H, W, COUT, KS, FLAT, POOL>() };
    let mut rows = [[[0.0f32; COUT]; W]; 2];
    if !POOL {
        for y in 0..H {
            conv_row::<H, W, CIN, COUT, KS>(input, kernel, bias, y, &mut rows[0]);
            for (x, sums) in rows[0].iter().enumerate() {
                let at = (y * W + x) * COUT;
                for (out, &s) in pooled.iter_mut().skip(at).zip(sums) {
                    *out = if s > 0.0 { s } else { 0.0 };
                }
            }
        }
        return;
    }
    for py in 0..H / 2 {
        for (r, row) in rows.iter_mut().enumerate() {
            conv_row::<H, W, CIN, COUT, KS>(input, kernel, bias, 2 * py + r, row);
        }
        pool_rows::<W, COUT, FLAT>(&rows, py, pooled, argmax.as_deref_mut());
    }
}

/// Row `y` of the convolution (with bias, before ReLU) into `row`.
#[inline]
fn conv_row<const H: usize, const W: usize, const CIN: usize, const COUT: usize, const KS: usize>(
    input: &[f32],
    kernel: &[f32],
    bias: &[f32; COUT],
    y: usize,
    row: &mut [[f32; COUT]; W],
) {
    let half = KS / 2;
    for (x, sums) in row.iter_mut().enumerate() {
        // The sums stay in registers over the taps.
        let mut acc = *bias;
        for ky in 0..KS {
            let Some(iy) = source(y, ky, half, H) else {
                continue;
            };
            for kx in 0..KS {
                let Some(ix) = source(x, kx, half, W) else {
                    continue;
                };
                let at = (iy * W + ix) * CIN;
                let pixel = input.get(at..at + CIN).unwrap_or_default();
                let taps = (ky * KS + kx) * CIN * COUT;
                let weights = kernel.get(taps..taps + CIN * COUT).unwrap_or_default();
                for (&v, weights) in pixel.iter().zip(weights.chunks_exact(COUT)) {
                    for (s, &w) in acc.iter_mut().zip(weights) {
                        *s += v * w;
                    }
                }
            }
        }
        *sums = acc;
    }
}

/// The ReLU and 2x2 max-pool of two convolution rows into pooled row `py`.
#[inline]
fn pool_rows<const W: usize, const COUT: usize, const FLAT: usize>(
    rows: &[[[f32; COUT]; W]; 2],
    py: usize,
    pooled: &mut [f32; FLAT],
    mut argmax: Option<&mut [u8; FLAT]>,
) {
    for px in 0..W / 2 {
        let at = (py * (W / 2) + px) * COUT;
        let window = [
            &rows[0][2 * px],
            &rows[0][2 * px + 1],
            &rows[1][2 * px],
            &rows[1][2 * px + 1],
        ];
        for co in 0..COUT {
            let (mut best, mut winner) = (window[0][co], 0u8);
            for (i, cell) in window.iter().enumerate().skip(1) {
                if cell[co] > best {
                    (best, winner) = (cell[co], i as u8);
                }
            }
            if let Some(p) = pooled.get_mut(at + co) {
                *p = if best > 0.0 { best } else { 0.0 };
            }
            if let Some(a) = argmax.as_deref_mut().and_then(|a| a.get_mut(at + co)) {
                *a = winner;
            }
        }
    }
}

const fn check_sizes<
    const H: usize,
    const W: usize,
    const COUT: usize,
    const KS: usize,
    const FLAT: usize,
    const POOL: bool,
>() {
    assert!(
        KS % 2 == 1,
        "a convolution's kernel size must be odd (SAME padding)"
    );
    if POOL {
        assert!(H >= 2 && W >= 2, "a pooled map must be at least 2x2");
        assert!(FLAT == (H / 2) * (W / 2) * COUT, "FLAT must be (H/2)*(W/2)*COUT");
    } else {
        assert!(FLAT == H * W * COUT, "FLAT must be H*W*COUT");
    }
}

/// Backward of [`conv_relu_pool_channels`] for one sample: for each output
/// cell that passed (positive, with a gradient), its gradient added to the
/// bias and kernel gradients and, with `input_grad`, to the gradient at the
/// input (`input_grad` is added to, not overwritten). `active` (the
/// positions of the output's non-zero cells, if the next layer listed them)
/// is not needed here.
///
/// The cells of a convolution position are taken together: their gradients
/// as one vector over the output channels, so the kernel's gradient grows by
/// `input * vector` and the input's by `kernel . vector`, both contiguous.
/// [`conv_relu_pool_channels_backward_scalar`] takes them cell by cell.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool_channels_backward;
/// // One 1x1 kernel over two channels; the bottom-right cell won.
/// let input = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 3.0];
/// let (mut kernel_grad, mut bias_grad, mut input_grad) = ([0.0; 2], [0.0; 1], [0.0; 8]);
/// conv_relu_pool_channels_backward::<2, 2, 2, 1, 1, 1, true>(
///     &input, &[1.0, -1.0], &[5.0], &[3], &[0.5], None,
///     &mut kernel_grad, &mut bias_grad, Some(&mut input_grad),
/// );
/// assert_eq!((kernel_grad, bias_grad), ([1.0, 1.5], [0.5]));
/// assert_eq!(input_grad, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, -0.5]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn conv_relu_pool_channels_backward<
    const H: usize,
    const W: usize,
    const CIN: usize,
    const COUT: usize,
    const KS: usize,
    const FLAT: usize,
    const POOL: bool,
>(
    input: &[f32],
    kernel: &[f32],
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    _active: Option<&[u16]>,
    kernel_grad: &mut [f32],
    bias_grad: &mut [f32; COUT],
    mut input_grad: Option<&mut [f32]>,
) {
    const { check_sizes::<H, W, COUT, KS, FLAT, POOL>() };
    let (rows, cols) = if POOL { (H / 2, W / 2) } else { (H, W) };
    let half = KS / 2;
    for (place, ((cells, grads), winners)) in pooled
        .chunks_exact(COUT)
        .zip(pooled_grad.chunks_exact(COUT))
        .zip(argmax.chunks_exact(COUT))
        .enumerate()
        .take(rows * cols)
    {
        // The gradient at each of the (up to four) convolution positions
        // this output place pooled.
        let mut at_position = [[0.0f32; COUT]; 4];
        let mut used = [false; 4];
        for (co, ((&value, &g), &winner)) in cells.iter().zip(grads).zip(winners).enumerate() {
            if value > 0.0 && g != 0.0 {
                let w = if POOL { usize::from(winner & 3) } else { 0 };
                at_position[w][co] = g;
                used[w] = true;
            }
        }
        let (oy, ox) = (place / cols, place % cols);
        for (w, g) in at_position.iter().enumerate().filter(|&(w, _)| used[w]) {
            let (y, x) = if POOL {
                (2 * oy + w / 2, 2 * ox + w % 2)
            } else {
                (oy, ox)
            };
            for (b, &d) in bias_grad.iter_mut().zip(g) {
                *b += d;
            }
            for ky in 0..KS {
                let Some(iy) = source(y, ky, half, H) else {
                    continue;
                };
                for kx in 0..KS {
                    let Some(ix) = source(x, kx, half, W) else {
                        continue;
                    };
                    let at = (iy * W + ix) * CIN;
                    let taps = (ky * KS + kx) * CIN * COUT;
                    let pixel = input.get(at..at + CIN).unwrap_or_default();
                    let rows = kernel_grad.get_mut(taps..taps + CIN * COUT).unwrap_or_default();
                    for (&v, row) in pixel.iter().zip(rows.chunks_exact_mut(COUT)) {
                        axpy(v, g, row);
                    }
                    if let Some(grad) = input_grad.as_deref_mut().and_then(|d| d.get_mut(at..at + CIN)) {
                        let weights = kernel.get(taps..taps + CIN * COUT).unwrap_or_default();
                        for (d, row) in grad.iter_mut().zip(weights.chunks_exact(COUT)) {
                            *d += dot(row, g);
                        }
                    }
                }
            }
        }
    }
}

/// Scalar twin of [`conv_relu_pool_channels_backward`]: cell by cell (only
/// the cells at `active` when given, in increasing order), each adding to
/// one output channel's kernel column.
#[allow(clippy::too_many_arguments)]
pub fn conv_relu_pool_channels_backward_scalar<
    const H: usize,
    const W: usize,
    const CIN: usize,
    const COUT: usize,
    const KS: usize,
    const FLAT: usize,
    const POOL: bool,
>(
    input: &[f32],
    kernel: &[f32],
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    active: Option<&[u16]>,
    kernel_grad: &mut [f32],
    bias_grad: &mut [f32; COUT],
    mut input_grad: Option<&mut [f32]>,
) {
    const { check_sizes::<H, W, COUT, KS, FLAT, POOL>() };
    let half = KS / 2;
    let mut cell = |p: usize| {
        let (Some(&value), Some(&g), Some(&winner)) = (pooled.get(p), pooled_grad.get(p), argmax.get(p))
        else {
            return;
        };
        if value <= 0.0 || g == 0.0 {
            return;
        }
        let (co, place) = (p % COUT, p / COUT);
        let (y, x) = if POOL {
            let (py, px) = (place / (W / 2), place % (W / 2));
            (2 * py + usize::from(winner / 2), 2 * px + usize::from(winner % 2))
        } else {
            (place / W, place % W)
        };
        if let Some(b) = bias_grad.get_mut(co) {
            *b += g;
        }
        for ky in 0..KS {
            let Some(iy) = source(y, ky, half, H) else {
                continue;
            };
            for kx in 0..KS {
                let Some(ix) = source(x, kx, half, W) else {
                    continue;
                };
                let at = (iy * W + ix) * CIN;
                let taps = (ky * KS + kx) * CIN * COUT + co;
                for ci in 0..CIN {
                    let tap = taps + ci * COUT;
                    let v = input.get(at + ci).copied().unwrap_or_default();
                    if let Some(k) = kernel_grad.get_mut(tap) {
                        *k += g * v;
                    }
                    if let Some(d) = input_grad.as_deref_mut().and_then(|d| d.get_mut(at + ci)) {
                        *d += g * kernel.get(tap).copied().unwrap_or_default();
                    }
                }
            }
        }
    };
    match active {
        Some(active) => active.iter().for_each(|&p| cell(usize::from(p))),
        None => (0..FLAT).for_each(cell),
    }
}
