//! Fused 3x3 SAME convolution (one input channel) + bias + ReLU + 2x2 max-pool.
//!
//! Fusing means the full `H x W x K` convolution map never exists: two
//! convolution rows are computed, pooled into one row of the output, and
//! reused. The pooled map is written channel-last (`(py * W/2 + px) * K + k`),
//! the layout Keras flattens.
//!
//! Inside each 2x2 window the maximum goes to the first of the four cells in
//! row-major order among equal values; backward sends the gradient there.

use super::dense::nonzero_positions;
use super::vector::{self, larger, runs, Lanes, Vector, HAS_SIMD, LANES, ROW_LANES};
use wide::{f32x4, f32x8};

/// A 3x3 kernel for one input channel and `K` output channels, indexed
/// `[ky][kx][k]` (the Keras `[3, 3, 1, K]` layout without its unit axis).
pub type ConvKernel<const K: usize> = [[[f32; K]; 3]; 3];

const fn check_sizes<const H: usize, const W: usize, const K: usize, const FLAT: usize>() {
    assert!(H >= 2 && W >= 2, "the image must be at least 2x2");
    assert!(FLAT == (H / 2) * (W / 2) * K, "FLAT must be (H/2)*(W/2)*K");
}

/// Convolution + bias + ReLU + max-pool of `image`, written to `pooled`.
///
/// With `argmax`, also records for each pooled cell which of the four window
/// cells won (0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right),
/// as training needs for backward.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool;
/// // A 2x2 image, one kernel that only looks at the centre tap.
/// let image = [[1.0, 2.0], [3.0, -4.0]];
/// let mut kernel = [[[0.0; 1]; 3]; 3];
/// kernel[1][1][0] = 1.0;
/// let mut pooled = [0.0; 1];
/// let mut argmax = [0u8; 1];
/// conv_relu_pool::<2, 2, 1, 1>(&image, &kernel, &[0.5], &mut pooled, Some(&mut argmax));
/// assert_eq!(pooled, [3.5]);
/// assert_eq!(argmax, [2]);
/// ```
// In a frame of its own: its rows and a caller's own buffers (dense1's list
// of inputs) are then never on the stack together.
#[inline(never)]
pub fn conv_relu_pool<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    kernel: &ConvKernel<K>,
    bias: &[f32; K],
    pooled: &mut [f32; FLAT],
    mut argmax: Option<&mut [u8; FLAT]>,
) {
    const { check_sizes::<H, W, K, FLAT>() };
    // The split path loads a vector from column 1 of a split row (`W` long).
    if HAS_SIMD && W / 2 >= ROW_LANES && W > LANES {
        return conv_relu_pool_split(image, kernel, bias, pooled, argmax);
    }
    let mut rows = [[[0.0f32; W]; K]; 2];
    for py in 0..H / 2 {
        for (r, row) in rows.iter_mut().enumerate() {
            conv_rows(image, kernel, bias, 2 * py + r, row);
        }
        pool_row_scalar(&rows, py, pooled, argmax.as_deref_mut());
    }
}

/// [`conv_relu_pool`] on SIMD registers, with every image row split into its
/// even and odd columns first: the four cells of a vector of neighbouring pooling
/// windows are then four vectors of sums (even and odd columns of two
/// convolution rows), pooled lane by lane without a shuffle, and the
/// convolution map never leaves the registers. With `even[j] = row[2j]` and
/// `odd[j] = row[2j - 1]` (zero outside the row), the three taps of column
/// `2j` read `odd[j]`, `even[j]`, `odd[j + 1]`, those of column `2j + 1`
/// read `even[j]`, `odd[j + 1]`, `even[j + 1]`: aligned runs of `j`. Every
/// sum runs in the scalar twin's order.
fn conv_relu_pool_split<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    kernel: &ConvKernel<K>,
    bias: &[f32; K],
    pooled: &mut [f32; FLAT],
    mut argmax: Option<&mut [u8; FLAT]>,
) {
    let taps: [[[Vector; 3]; 3]; K] = core::array::from_fn(|k| {
        core::array::from_fn(|ky| core::array::from_fn(|kx| Vector::splat(kernel[ky][kx][k])))
    });
    let finite: [bool; K] =
        core::array::from_fn(|k| kernel.as_flattened().iter().all(|taps| taps[k].is_finite()));
    let pw = W / 2;
    let mut split = [[[0.0f32; W]; 2]; H];
    for (row, [even, odd]) in image.iter().zip(&mut split) {
        // `odd` starts with the padding's zero; an odd `W` leaves its last
        // column to `even` alone.
        let (pairs, last) = row.as_chunks::<2>();
        for ((even, odd), &[left, right]) in even.iter_mut().zip(&mut odd[1..]).zip(pairs) {
            (*even, *odd) = (left, right);
        }
        if let (Some(&last), Some(slot)) = (last.first(), even.get_mut(pairs.len())) {
            *slot = last;
        }
    }
    let (zero, one, two, three) = (
        Vector::splat(0.0),
        Vector::splat(1.0),
        Vector::splat(2.0),
        Vector::splat(3.0),
    );
    for py in 0..H / 2 {
        for at in runs(pw, LANES) {
            // Image rows 2py - 1 ..= 2py + 2 as [odd@j, even@j, odd@j+1, even@j+1].
            let sources: [Option<[Vector; 4]>; 4] = core::array::from_fn(|r| {
                let [even, odd] = split.get((2 * py + r).checked_sub(1)?)?;
                Some([
                    wide_lanes(odd, at),
                    wide_lanes(even, at),
                    wide_lanes(odd, at + 1),
                    wide_lanes(even, at + 1),
                ])
            });
            // Black background around the item: every product is 0 * tap, so
            // the four cells are the bias exactly (finite taps), the first
            // one wins, and the multiply-adds can be left out.
            let black = sources.iter().flatten().flatten().all(|v| v.simd_ne(zero).none());
            for (k, (taps, &bias)) in taps.iter().zip(bias).enumerate() {
                // Sums of the even and odd columns of the top and bottom row.
                let mut cells = [Vector::splat(bias); 4];
                let skip = black && finite[k];
                for (ky, taps) in taps.iter().enumerate().filter(|_| !skip) {
                    for (half, rows) in [(0, ky), (2, ky + 1)] {
                        if let Some([a, b, c, d]) = sources[rows] {
                            let (even, odd) = (&mut cells[half], half + 1);
                            *even = a.mul_add(taps[0], *even);
                            *even = b.mul_add(taps[1], *even);
                            *even = c.mul_add(taps[2], *even);
                            let odd = &mut cells[odd];
                            *odd = b.mul_add(taps[0], *odd);
                            *odd = c.mul_add(taps[1], *odd);
                            *odd = d.mul_add(taps[2], *odd);
                        }
                    }
                }
                // `a.fast_max(b)` is x86's max, `b < a ? a : b` lane by lane:
                // ties (and NaN) go to `b`, the earlier cell in row-major
                // order, as the scalar twin's strict compares have it.
                let [top_left, top_right, bottom_left, bottom_right] = cells;
                let top = top_right.fast_max(top_left);
                let bottom = bottom_right.fast_max(bottom_left);
                let best = zero.fast_max(bottom.fast_max(top)).to_array();
                // The winners only when asked: their compares and selects
                // take the ports the multiply-adds use.
                let which = argmax.is_some().then(|| {
                    let top_which = top_right.simd_gt(top_left).select(one, zero);
                    let bottom_which = bottom_right.simd_gt(bottom_left).select(three, two);
                    bottom
                        .simd_gt(top)
                        .select(bottom_which, top_which)
                        .round_int()
                        .to_array()
                });
                // A run wider than the pooled row covers it and more.
                let in_row = (pw - at).min(LANES);
                for (t, &value) in best.iter().enumerate().take(in_row) {
                    if let Some(slot) = pooled.get_mut((py * pw + at + t) * K + k) {
                        *slot = value;
                    }
                }
                if let (Some(argmax), Some(which)) = (argmax.as_deref_mut(), which) {
                    for (t, &which) in which.iter().enumerate().take(in_row) {
                        if let Some(slot) = argmax.get_mut((py * pw + at + t) * K + k) {
                            *slot = which as u8;
                        }
                    }
                }
            }
        }
    }
}

/// Scalar twin of [`conv_relu_pool`]: the convolution written straight from
/// its definition, one output value at a time.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool_scalar;
/// let image = [[1.0, 2.0], [3.0, -4.0]];
/// let mut kernel = [[[0.0; 1]; 3]; 3];
/// kernel[1][1][0] = 1.0;
/// let mut pooled = [0.0; 1];
/// conv_relu_pool_scalar::<2, 2, 1, 1>(&image, &kernel, &[0.5], &mut pooled, None);
/// assert_eq!(pooled, [3.5]);
/// ```
pub fn conv_relu_pool_scalar<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    kernel: &ConvKernel<K>,
    bias: &[f32; K],
    pooled: &mut [f32; FLAT],
    mut argmax: Option<&mut [u8; FLAT]>,
) {
    const { check_sizes::<H, W, K, FLAT>() };
    let mut rows = [[[0.0f32; W]; K]; 2];
    for py in 0..H / 2 {
        for (r, row) in rows.iter_mut().enumerate() {
            let y = 2 * py + r;
            for (k, out) in row.iter_mut().enumerate() {
                for (x, value) in out.iter_mut().enumerate() {
                    *value = conv_pixel(image, kernel, bias, y, x, k);
                }
            }
        }
        pool_row_scalar(&rows, py, pooled, argmax.as_deref_mut());
    }
}

/// The pixel at `(y - 1, x - 1)`, or `None` in the zero padding.
#[inline]
fn pixel_at<const H: usize, const W: usize>(
    image: &[[f32; W]; H],
    y_plus_1: usize,
    x_plus_1: usize,
) -> Option<f32> {
    let y = y_plus_1.checked_sub(1)?;
    let x = x_plus_1.checked_sub(1)?;
    image.get(y)?.get(x).copied()
}

/// Convolution row `y` of every channel. Eight interior pixels at a time
/// take all nine taps while their sum stays in registers (the last group
/// overlaps the one before it rather than leaving a remainder); the two edge
/// columns, where a tap column is padding, are summed on their own. Every sum
/// runs in the same order as in the scalar twin.
#[inline]
fn conv_rows<const H: usize, const W: usize, const K: usize>(
    image: &[[f32; W]; H],
    kernel: &ConvKernel<K>,
    bias: &[f32; K],
    y: usize,
    out: &mut [[f32; W]; K],
) {
    // The three source rows; a row outside the image is padding and adds nothing.
    let sources: [Option<&[f32; W]>; 3] =
        core::array::from_fn(|ky| (y + ky).checked_sub(1).and_then(|iy| image.get(iy)));
    for (k, row) in out.iter_mut().enumerate() {
        if W < ROW_LANES + 2 {
            for (x, value) in row.iter_mut().enumerate() {
                *value = conv_pixel(image, kernel, bias, y, x, k);
            }
            continue;
        }
        let taps: [[f32x8; 3]; 3] =
            core::array::from_fn(|ky| core::array::from_fn(|kx| f32x8::splat(kernel[ky][kx][k])));
        // Columns 1 ..= W - 2, whose taps never reach the padding, in runs of
        // ROW_LANES (the last overlapping the one before). A plain loop rather than
        // `runs`: without SIMD registers (Cortex-M) the iterator costs
        // instructions of its own.
        let last = W - 1 - ROW_LANES;
        let mut x = 1;
        loop {
            let at = x.min(last);
            let mut sum = f32x8::splat(bias[k]);
            for (source, taps) in sources.iter().zip(&taps) {
                if let Some(source) = source {
                    sum = lanes(*source, at - 1).mul_add(taps[0], sum);
                    sum = lanes(*source, at).mul_add(taps[1], sum);
                    sum = lanes(*source, at + 1).mul_add(taps[2], sum);
                }
            }
            row[at..at + ROW_LANES].copy_from_slice(&sum.to_array());
            if at == last {
                break;
            }
            x += ROW_LANES;
        }
        let (mut left, mut right) = (bias[k], bias[k]);
        for (source, taps) in sources.iter().zip(kernel) {
            if let Some(source) = source {
                left = vector::mul_add(taps[1][k], source[0], left);
                left = vector::mul_add(taps[2][k], source[1], left);
                right = vector::mul_add(taps[0][k], source[W - 2], right);
                right = vector::mul_add(taps[1][k], source[W - 1], right);
            }
        }
        row[0] = left;
        row[W - 1] = right;
    }
}

/// [`Vector`]'s lanes of `values` from `at`, zeros past the end.
#[inline]
fn wide_lanes(values: &[f32], at: usize) -> Vector {
    Vector::load(values.get(at..).unwrap_or_default())
}

/// `ROW_LANES` values of `values` from `at`, zeros past the end.
#[inline]
fn lanes(values: &[f32], at: usize) -> f32x8 {
    f32x8::load(values.get(at..).unwrap_or_default())
}

/// One convolution output, straight from the definition.
#[inline]
fn conv_pixel<const H: usize, const W: usize, const K: usize>(
    image: &[[f32; W]; H],
    kernel: &ConvKernel<K>,
    bias: &[f32; K],
    y: usize,
    x: usize,
    k: usize,
) -> f32 {
    let mut sum = bias[k];
    for (ky, taps) in kernel.iter().enumerate() {
        for (kx, tap) in taps.iter().enumerate() {
            if let Some(pixel) = pixel_at(image, y + ky, x + kx) {
                sum = vector::mul_add(tap[k], pixel, sum);
            }
        }
    }
    sum
}

/// Pools two convolution rows into pooled row `py` one window at a time,
/// recording the winners when asked.
#[inline]
fn pool_row_scalar<const W: usize, const K: usize, const FLAT: usize>(
    rows: &[[[f32; W]; K]; 2],
    py: usize,
    pooled: &mut [f32; FLAT],
    mut argmax: Option<&mut [u8; FLAT]>,
) {
    let pw = W / 2;
    for (k, (top, bottom)) in rows[0].iter().zip(&rows[1]).enumerate() {
        for px in 0..pw {
            let window = [top[2 * px], top[2 * px + 1], bottom[2 * px], bottom[2 * px + 1]];
            let best = vector::argmax(&window);
            let cell = (py * pw + px) * K + k;
            pooled[cell] = larger(window[best], 0.0);
            if let Some(argmax) = argmax.as_deref_mut() {
                argmax[cell] = best as u8;
            }
        }
    }
}

/// Accumulates the gradients of the convolution's kernel and bias, given the
/// gradient at the pooled output.
///
/// Only cells with a positive pooled value pass gradient (ReLU); each sends it
/// to the window cell recorded in `argmax`.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool_backward;
/// let image = [[1.0, 2.0], [3.0, -4.0]];
/// let (pooled, argmax) = ([3.5], [2u8]); // the winner was image[1][0]
/// let mut kernel_grad = [[[0.0; 1]; 3]; 3];
/// let mut bias_grad = [0.0];
/// conv_relu_pool_backward::<2, 2, 1, 1>(&image, &pooled, &argmax, &[2.0], &mut kernel_grad, &mut bias_grad);
/// assert_eq!(bias_grad, [2.0]);
/// assert_eq!(kernel_grad[1][1][0], 6.0); // 2 * image[1][0]
/// assert_eq!(kernel_grad[0][1][0], 2.0); // 2 * image[0][0]
/// assert_eq!(kernel_grad[2][1][0], 0.0); // below the image: padding
/// ```
pub fn conv_relu_pool_backward<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    kernel_grad: &mut ConvKernel<K>,
    bias_grad: &mut [f32; K],
) {
    let mut positions = [0u16; FLAT];
    let n = nonzero_positions(pooled, &mut positions);
    conv_relu_pool_backward_listed(
        image,
        pooled,
        &positions[..n],
        argmax,
        pooled_grad,
        kernel_grad,
        bias_grad,
    );
}

/// [`conv_relu_pool_backward`] on SIMD registers, one pooling window at a
/// time with a lane per channel: each lane picks the pixels of its own
/// window's winner from the window's 4x4 neighbourhood (splatted once for all
/// channels), and adds `g * pixel` only where the scalar twin does (the cell
/// passes gradient, the pixel is not padding), in the same order, so the
/// sums are the same to the bit. Every window costs the same, passing cells
/// or not, where the list of passing cells costs a division, three loads, a
/// patch and a branch or two per cell.
fn conv_relu_pool_backward_lanes<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    kernel_grad: &mut ConvKernel<K>,
    bias_grad: &mut [f32; K],
) {
    let (pooled_rows, pooled_columns) = (H / 2, W / 2);
    let zero = Vector::splat(0.0);
    let lane_numbers = Vector::new(core::array::from_fn(|lane| lane as f32));
    let picks = [0.0, 1.0, 2.0, 3.0].map(Vector::splat);
    for first in (0..K).step_by(LANES) {
        // Lanes past the last channel hold the next window's cells.
        let channels = lane_numbers.simd_lt(Vector::splat((K - first) as f32));
        let mut taps: [[Vector; 3]; 3] =
            core::array::from_fn(|ky| core::array::from_fn(|kx| wide_lanes(&kernel_grad[ky][kx], first)));
        let mut bias = wide_lanes(bias_grad, first);
        for py in 0..pooled_rows {
            for px in 0..pooled_columns {
                let at = (py * pooled_columns + px) * K + first;
                let g = wide_lanes(pooled_grad, at);
                let value = wide_lanes(pooled, at);
                let passing = channels & value.simd_gt(zero) & g.simd_ne(zero);
                if !passing.any() {
                    continue;
                }
                let winner = winner_lanes(argmax.get(at..).unwrap_or_default());
                let won = picks.map(|pick| winner.simd_eq(pick));
                bias = passing.bitselect(bias + g, bias);
                // The window's neighbourhood: image rows 2py - 1 ..= 2py + 2
                // and the same columns. Winner `w` sits at (w / 2, w % 2) in
                // the window, so tap (ky, kx) reads neighbour (ky + w / 2,
                // kx + w % 2).
                if let Some(around) = neighbourhood(image, 2 * py, 2 * px) {
                    for (ky, row) in taps.iter_mut().enumerate() {
                        for (kx, tap) in row.iter_mut().enumerate() {
                            let at = |dy: usize, dx: usize| Vector::splat(around[ky + dy][kx + dx]);
                            let pixel = won[0].bitselect(
                                at(0, 0),
                                won[1].bitselect(at(0, 1), won[2].bitselect(at(1, 0), at(1, 1))),
                            );
                            *tap = passing.bitselect(*tap + g * pixel, *tap);
                        }
                    }
                    continue;
                }
                // At the border some neighbours are padding, which the scalar
                // twin skips.
                let around: [[Option<f32>; 4]; 4] = core::array::from_fn(|a| {
                    core::array::from_fn(|b| pixel_at(image, 2 * py + a, 2 * px + b))
                });
                for (ky, row) in taps.iter_mut().enumerate() {
                    for (kx, tap) in row.iter_mut().enumerate() {
                        let (mut pixel, mut adds) = (zero, zero);
                        for (w, won) in won.into_iter().enumerate() {
                            if let Some(candidate) = around[ky + w / 2][kx + w % 2] {
                                pixel = won.bitselect(Vector::splat(candidate), pixel);
                                adds |= won;
                            }
                        }
                        let adds = adds & passing;
                        *tap = adds.bitselect(*tap + g * pixel, *tap);
                    }
                }
            }
        }
        let lanes_here = (K - first).min(LANES);
        for (ky, row) in taps.iter().enumerate() {
            for (kx, tap) in row.iter().enumerate() {
                let sums = tap.to_array();
                if let Some(out) = kernel_grad[ky][kx].get_mut(first..first + lanes_here) {
                    out.copy_from_slice(&sums[..lanes_here]);
                }
            }
        }
        if let Some(out) = bias_grad.get_mut(first..first + lanes_here) {
            out.copy_from_slice(&bias.to_array()[..lanes_here]);
        }
    }
}

/// The 4x4 pixels around the pooling window at `(y, x)`, from `(y - 1, x -
/// 1)`, if none is padding.
#[inline]
fn neighbourhood<const H: usize, const W: usize>(
    image: &[[f32; W]; H],
    y: usize,
    x: usize,
) -> Option<[[f32; 4]; 4]> {
    let rows = image.get(y.checked_sub(1)?..y + 3)?;
    let mut around = [[0.0; 4]; 4];
    for (out, row) in around.iter_mut().zip(rows) {
        *out = *row.get(x.checked_sub(1)?..)?.first_chunk::<4>()?;
    }
    Some(around)
}

/// The pooling winners (0 to 3) of the first [`LANES`] cells of `argmax`, as
/// floats to compare lane by lane; zeros after its end.
#[inline]
fn winner_lanes(argmax: &[u8]) -> Vector {
    let mut lanes = [0.0; LANES];
    if let Some(whole) = argmax.first_chunk::<LANES>() {
        lanes = core::array::from_fn(|lane| f32::from(whole[lane] & 3));
    } else {
        lanes
            .iter_mut()
            .zip(argmax)
            .for_each(|(lane, &which)| *lane = f32::from(which & 3));
    }
    Vector::new(lanes)
}

/// [`conv_relu_pool_backward`] given the positions of `pooled`'s non-zero
/// cells in increasing order (the dense layer after it lists them anyway):
/// with few of them, a list walked to its known end, where a scan of bit
/// masks would mispredict a branch or two per eight cells; with many, every
/// window in lanes ([`conv_relu_pool_backward_lanes`]).
pub(crate) fn conv_relu_pool_backward_listed<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
>(
    image: &[[f32; W]; H],
    pooled: &[f32; FLAT],
    active: &[u16],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    kernel_grad: &mut ConvKernel<K>,
    bias_grad: &mut [f32; K],
) {
    const { check_sizes::<H, W, K, FLAT>() };
    if !HAS_SIMD || W < 4 {
        return conv_relu_pool_backward_scalar(image, pooled, argmax, pooled_grad, kernel_grad, bias_grad);
    }
    // The lanes take the same time however many cells pass; cell by cell
    // the time grows with them, and the two break even at about four cells
    // in ten (`cargo bench --bench throughput`, conv backward). The sums are
    // the same either way.
    if active.len() * 5 > FLAT * 2 {
        return conv_relu_pool_backward_lanes(image, pooled, argmax, pooled_grad, kernel_grad, bias_grad);
    }
    // Each channel's taps as three rows of four lanes (the fourth collects a
    // product nobody reads): a cell's patch is then three 4-lane steps. Each
    // lane adds `g * pixel` as the scalar twin does, in the same order, so the
    // sums are the same to the bit.
    let mut rows: [[[f32; 4]; 3]; K] = core::array::from_fn(|k| {
        core::array::from_fn(|ky| {
            [
                kernel_grad[ky][0][k],
                kernel_grad[ky][1][k],
                kernel_grad[ky][2][k],
                0.0,
            ]
        })
    });
    for &cell in active {
        let Some((y, x, k, g)) = passing_cell::<W, K, FLAT>(pooled, argmax, pooled_grad, usize::from(cell))
        else {
            continue;
        };
        let (Some(bias), Some(taps)) = (bias_grad.get_mut(k), rows.get_mut(k)) else {
            continue;
        };
        *bias += g;
        // Away from the border (and one column short of the right edge, where
        // the fourth lane would read past the row) the patch is whole.
        let interior = image
            .get(y.wrapping_sub(1)..y + 2)
            .filter(|_| x >= 1 && x + 3 <= W);
        if let Some(source) = interior {
            let gv = f32x4::splat(g);
            for (taps, row) in taps.iter_mut().zip(source) {
                if let Some(pixels) = row.get(x - 1..x + 3).and_then(|p| <[f32; 4]>::try_from(p).ok()) {
                    *taps = (f32x4::new(*taps) + f32x4::new(pixels) * gv).to_array();
                }
            }
            continue;
        }
        for (ky, taps) in taps.iter_mut().enumerate() {
            for (kx, tap) in taps.iter_mut().take(3).enumerate() {
                if let Some(pixel) = pixel_at(image, y + ky, x + kx) {
                    *tap += g * pixel;
                }
            }
        }
    }
    for (ky, taps) in kernel_grad.iter_mut().enumerate() {
        for (kx, tap) in taps.iter_mut().enumerate() {
            for (k, value) in tap.iter_mut().enumerate() {
                *value = rows[k][ky][kx];
            }
        }
    }
}

/// Scalar twin of [`conv_relu_pool_backward`], which it matches to the bit.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool_backward_scalar;
/// let image = [[1.0, 2.0], [3.0, -4.0]];
/// let mut kernel_grad = [[[0.0; 1]; 3]; 3];
/// let mut bias_grad = [0.0];
/// conv_relu_pool_backward_scalar::<2, 2, 1, 1>(&image, &[3.5], &[2], &[2.0], &mut kernel_grad, &mut bias_grad);
/// assert_eq!((bias_grad[0], kernel_grad[1][1][0]), (2.0, 6.0));
/// ```
pub fn conv_relu_pool_backward_scalar<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    kernel_grad: &mut ConvKernel<K>,
    bias_grad: &mut [f32; K],
) {
    const { check_sizes::<H, W, K, FLAT>() };
    for_each_active_cell::<W, K, FLAT>(pooled, argmax, pooled_grad, |y, x, k, g| {
        bias_grad[k] += g;
        // Away from the border the 3x3 patch is whole: no padding checks.
        let interior = image
            .get(y.wrapping_sub(1)..y + 2)
            .filter(|_| x >= 1 && x + 2 <= W);
        if let Some(rows) = interior {
            for (taps, row) in kernel_grad.iter_mut().zip(rows) {
                for (tap, &pixel) in taps.iter_mut().zip(&row[x - 1..]) {
                    tap[k] += g * pixel;
                }
            }
            return;
        }
        for (ky, taps) in kernel_grad.iter_mut().enumerate() {
            for (kx, tap) in taps.iter_mut().enumerate() {
                if let Some(pixel) = pixel_at(image, y + ky, x + kx) {
                    tap[k] += g * pixel;
                }
            }
        }
    });
}

/// Accumulates the gradient with respect to the input image into
/// `image_grad`, given the gradient at the pooled output.
///
/// ```
/// use tinycnn::kernels::conv_relu_pool_input_grad;
/// let mut kernel = [[[0.0; 1]; 3]; 3];
/// kernel[0][0][0] = 5.0; // looks up and to the left
/// let mut image_grad = [[0.0; 2]; 2];
/// conv_relu_pool_input_grad::<2, 2, 1, 1>(&kernel, &[1.0], &[3], &[1.0], &mut image_grad);
/// assert_eq!(image_grad, [[5.0, 0.0], [0.0, 0.0]]);
/// ```
pub fn conv_relu_pool_input_grad<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    kernel: &ConvKernel<K>,
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    image_grad: &mut [[f32; W]; H],
) {
    const { check_sizes::<H, W, K, FLAT>() };
    for_each_active_cell::<W, K, FLAT>(pooled, argmax, pooled_grad, |y, x, k, g| {
        for (ky, taps) in kernel.iter().enumerate() {
            for (kx, tap) in taps.iter().enumerate() {
                let target = (y + ky)
                    .checked_sub(1)
                    .zip((x + kx).checked_sub(1))
                    .and_then(|(iy, ix)| image_grad.get_mut(iy)?.get_mut(ix));
                if let Some(cell) = target {
                    *cell += g * tap[k];
                }
            }
        }
    });
}

/// For a pooled cell that passes gradient (positive after ReLU, a non-zero
/// gradient), `(y, x, k, gradient)` with `(y, x)` the winning convolution
/// position and `k` the channel.
#[inline]
fn passing_cell<const W: usize, const K: usize, const FLAT: usize>(
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    cell: usize,
) -> Option<(usize, usize, usize, f32)> {
    let (&value, &which, &g) = (pooled.get(cell)?, argmax.get(cell)?, pooled_grad.get(cell)?);
    if value <= 0.0 || g == 0.0 {
        return None;
    }
    let pw = W / 2;
    let (py, px) = ((cell / K) / pw, (cell / K) % pw);
    let which = usize::from(which & 3);
    Some((2 * py + which / 2, 2 * px + which % 2, cell % K, g))
}

/// Calls `f(y, x, k, gradient)` for every pooled cell that passes gradient,
/// with `(y, x)` the winning convolution position, in increasing cell order.
#[inline]
fn for_each_active_cell<const W: usize, const K: usize, const FLAT: usize>(
    pooled: &[f32; FLAT],
    argmax: &[u8; FLAT],
    pooled_grad: &[f32; FLAT],
    mut f: impl FnMut(usize, usize, usize, f32),
) {
    let mut visit = |cell: usize| {
        if let Some((y, x, k, g)) = passing_cell::<W, K, FLAT>(pooled, argmax, pooled_grad, cell) {
            f(y, x, k, g);
        }
    };
    let mut start = 0;
    if HAS_SIMD {
        // After ReLU and dropout the active cells are few and scattered: a
        // branch per cell would be mispredicted often, a bit mask of eight
        // cells at a time is not.
        let zero = f32x8::splat(0.0);
        while start + ROW_LANES <= FLAT {
            let active = lanes(pooled, start).simd_gt(zero) & lanes(pooled_grad, start).simd_ne(zero);
            let mut bits = active.to_bitmask();
            while bits != 0 {
                visit(start + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
            start += ROW_LANES;
        }
    }
    (start..FLAT).for_each(visit);
}
