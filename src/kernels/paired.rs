//! The int8 dense layer over a weight layout that pairs input rows, so a
//! core's dual 16-bit multiply-accumulate (`SMLAD` on a Cortex-M4) adds two
//! inputs' products to one output in one instruction.
//!
//! # The paired layout
//! The same `IN * OUT` bytes as the `[input][output]` layout, reordered: the
//! two rows of each pair of inputs fill `2 * OUT` bytes, pair after pair,
//! four bytes per pair of outputs `2j, 2j + 1`; for a pair of inputs `a, b`:
//! `[w(a, 2j), w(a, 2j + 1), w(b, 2j), w(b, 2j + 1)]`, the even output's two
//! weights stored plus 128 (their top bit flipped, see [`paired_byte`]). With
//! an odd `OUT` the last output keeps two bytes per pair of rows,
//! `[w(a, OUT - 1), w(b, OUT - 1)]`; with an odd `IN` the last row stays as
//! it is, at the end; neither is offset. [`paired_index`] says where each
//! weight goes.
//!
//! Which inputs pair is the layout's `pair_stride`: inputs `pair_stride`
//! apart, in bands of `2 * pair_stride` (1: neighbours `2k, 2k + 1`). A
//! layer whose inputs are often zero together that far apart skips more
//! pairs: after a convolution and max-pool, the same channel one pooled row
//! down (`pair_stride` = a pooled row's length) is zero with the input more
//! often than the next channel at the same place.
//!
//! # Two outputs from three instructions
//! Read as two signed 16-bit halves, a word is
//! `(w(a, 2j) + 128) + 256 w(a, 2j + 1)` and
//! `(w(b, 2j) + 128) + 256 w(b, 2j + 1)`. So one dual multiply-add
//! of the packed inputs `x(a), x(b)` with the word as it is (`SMLAD`
//! on a Cortex-M4, `pmaddwd` on x86-64) adds output `2j`'s two products,
//! plus 128 times the two inputs, plus 256 times output `2j + 1`'s two
//! products; the odd bytes alone, sign-extended (one `SXTB16` or shift),
//! give output `2j + 1`'s products in a second multiply-add. Summed over
//! every pair: `raw = sum(2j) + 128 * sigma + 256 * sum(2j + 1)`, with
//! `sigma` the sum of the inputs, so `sum(2j)` is
//! `raw - 128 * sigma - 256 * sum(2j + 1)`, exact in wrapping `i32`
//! arithmetic. Three instructions for four multiply-adds, where splitting
//! the word into two pairs of sign-extended bytes takes four.

use super::dsp::{
    add_word_products, list_pairs, listed_sums, EIGHT_SUMS, EIGHT_SUMS_REACH, ENTRIES_HOLD_ADDRESSES,
    RAW_HAS_ODD,
};
use super::vector::{HAS_SIMD, ROW_LANES};
use wide::{i16x16, i32x8};

/// The pair input `input` of `inputs` belongs to, and which of its two
/// inputs it is (0 or 1), when pairs join inputs `pair_stride` apart: the
/// inputs fall in bands of `2 * pair_stride`, and pair `m * pair_stride + j`
/// joins inputs `j` and `pair_stride + j` of band `m`. Inputs past the last
/// whole band pair with their neighbour; with an odd count the last input
/// has no partner (`None`). A stride of 0 counts as 1.
#[inline]
const fn pair_of(inputs: usize, pair_stride: usize, input: usize) -> Option<(usize, usize)> {
    let stride = if pair_stride == 0 { 1 } else { pair_stride };
    let band = 2 * stride;
    let banded = inputs / band * band;
    if input < banded {
        return Some((input / band * stride + input % stride, input % band / stride));
    }
    if inputs % 2 == 1 && input == inputs - 1 {
        return None;
    }
    let rest = input - banded;
    Some((banded / 2 + rest / 2, rest % 2))
}

/// Where weight `(input, output)` of an `[IN][OUT]` kernel sits in the
/// paired layout whose pairs join inputs `pair_stride` apart (see
/// [`dense_i8_paired`]), as an index into its flattened bytes.
///
/// ```
/// use tinycnn::kernels::paired_index;
/// // Rows 0 and 1, outputs 0 and 1: one word of four weights.
/// assert_eq!([(0, 0), (0, 1), (1, 0), (1, 1)].map(|(i, j)| paired_index::<3, 3>(i, j, 1)), [0, 1, 2, 3]);
/// // The odd last output of the pair of rows, then the odd last row as it is.
/// assert_eq!([paired_index::<3, 3>(0, 2, 1), paired_index::<3, 3>(1, 2, 1)], [4, 5]);
/// assert_eq!([paired_index::<3, 3>(2, 0, 1), paired_index::<3, 3>(2, 2, 1)], [6, 8]);
/// // Pairs two apart: rows 0 and 2 share the first word, rows 1 and 3 the next pair's.
/// assert_eq!([(0, 0), (2, 0), (1, 0), (3, 0)].map(|(i, j)| paired_index::<4, 2>(i, j, 2)), [0, 2, 4, 6]);
/// ```
#[inline]
pub const fn paired_index<const IN: usize, const OUT: usize>(
    input: usize,
    output: usize,
    pair_stride: usize,
) -> usize {
    let Some((pair, lower)) = pair_of(IN, pair_stride, input) else {
        return input * OUT + output;
    };
    let base = 2 * pair * OUT;
    if OUT % 2 == 1 && output == OUT - 1 {
        base + 4 * (OUT / 2) + lower
    } else {
        base + 4 * (output / 2) + 2 * lower + (output & 1)
    }
}

/// Weight `w` at `(input, output)` as the paired layout stores it, and back
/// (the conversion is its own inverse): the even output's weights of a whole
/// word plus 128, that is with the top bit flipped; every other weight as it
/// is.
///
/// ```
/// use tinycnn::kernels::paired_byte;
/// assert_eq!(paired_byte::<2, 3>(1, 0, -128), 0); // even output of a word: + 128
/// assert_eq!(paired_byte::<2, 3>(1, 0, 0), -128); // and back
/// assert_eq!(paired_byte::<2, 3>(1, 1, -5), -5); // odd output: as it is
/// assert_eq!(paired_byte::<2, 3>(1, 2, 7), 7); // the odd last output: as it is
/// ```
#[inline]
pub const fn paired_byte<const IN: usize, const OUT: usize>(input: usize, output: usize, w: i8) -> i8 {
    let odd_last_row = IN % 2 == 1 && input == IN - 1;
    let odd_last_output = OUT % 2 == 1 && output == OUT - 1;
    if odd_last_row || odd_last_output || output % 2 == 1 {
        w
    } else {
        w ^ i8::MIN
    }
}

/// Writes the `[input][output]` kernel `plain` in the paired layout whose
/// pairs join inputs `pair_stride` apart.
///
/// ```
/// use tinycnn::kernels::{pair_kernel, paired_byte, paired_index};
/// let plain = [[1i8, 2, 3], [4, 5, 6]];
/// let mut paired = [[0i8; 3]; 2];
/// pair_kernel(&plain, &mut paired, 1);
/// assert_eq!(paired, [[-127, 2, -124], [5, 3, 6]]); // weights 1 and 4 plus 128
/// assert_eq!(paired.as_flattened()[paired_index::<2, 3>(1, 2, 1)], 6);
/// assert_eq!(paired_byte::<2, 3>(1, 0, paired.as_flattened()[paired_index::<2, 3>(1, 0, 1)]), 4);
/// ```
pub fn pair_kernel<const IN: usize, const OUT: usize>(
    plain: &[[i8; OUT]; IN],
    paired: &mut [[i8; OUT]; IN],
    pair_stride: usize,
) {
    let flat = paired.as_flattened_mut();
    for (i, row) in plain.iter().enumerate() {
        for (j, &w) in row.iter().enumerate() {
            if let Some(slot) = flat.get_mut(paired_index::<IN, OUT>(i, j, pair_stride)) {
                *slot = paired_byte::<IN, OUT>(i, j, w);
            }
        }
    }
}

/// The sums a pair of outputs `2j, 2j + 1` starts from, `(raw, odd)` (see
/// the module's docs), for their biases and `sigma`, the sum of the inputs;
/// `has_odd` when the raw sum takes 256 times the odd sum too.
#[inline]
fn pair_start(even_bias: i32, odd_bias: i32, sigma: i32, has_odd: bool) -> (i32, i32) {
    let raw = even_bias.wrapping_sub(sigma.wrapping_mul(128));
    let raw = if has_odd {
        raw.wrapping_add(odd_bias.wrapping_mul(256))
    } else {
        raw
    };
    (raw, odd_bias)
}

/// Output `2j` from the finished `raw` and odd sums of its pair.
#[inline]
fn pair_finish(raw: i32, odd: i32, has_odd: bool) -> i32 {
    if has_odd {
        raw.wrapping_sub(odd.wrapping_mul(256))
    } else {
        raw
    }
}

/// `out = bias + input . kernel` in integers, with `kernel` in the paired
/// layout of `pair_stride`; the same sums as [`dense_i8`](super::dense_i8)
/// on the plain one.
///
/// The pairs of inputs that are not both zero are listed first, each with
/// its inputs packed in 16-bit halves and the offset of its rows; then the
/// outputs are summed over the list with their sums kept in registers, two
/// sums per pair of outputs (see the module's docs). With SIMD registers
/// (the host), blocks of sixteen outputs, six blocks at a time, two
/// multiply-adds per 16-bit lane pair (`pmaddwd`); without, blocks of six in
/// general registers, which with the DSP extension (Cortex-M4) is assembly
/// with two multiply-adds per `SMLAD`, and elsewhere plain code (also what
/// the host tests for the layout, and what covers the outputs the SIMD
/// blocks leave).
///
/// ```
/// use tinycnn::kernels::{dense_i8, dense_i8_paired, pair_kernel};
/// let plain = [[1i8, -128, 3], [127, 5, -6], [7, 8, 9]];
/// let mut paired = [[0i8; 3]; 3];
/// pair_kernel(&plain, &mut paired, 1);
/// let (mut a, mut b) = ([0i32; 3], [0i32; 3]);
/// dense_i8_paired(&[255, 0, 3], &paired, &[1, 2, 3], &mut a, 1);
/// dense_i8(&[255, 0, 3], &plain, &[1, 2, 3], &mut b);
/// assert_eq!(a, b);
/// ```
#[inline(never)]
pub fn dense_i8_paired<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
    pair_stride: usize,
) {
    paired_with_list(input, kernel, bias, out, pair_stride, &mut [0; IN]);
}

/// [`dense_i8_paired`] with the list of pairs in `list`, scratch space the
/// caller keeps (the int8 model's workspace on Cortex-M4), so that it is not
/// cleared on every call: only its first entries, up to an end marker, are
/// ever read.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
#[inline(never)]
pub(crate) fn dense_i8_paired_listing<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
    pair_stride: usize,
    list: &mut [u32; IN],
) {
    paired_with_list(input, kernel, bias, out, pair_stride, list);
}

#[inline(always)]
fn paired_with_list<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
    pair_stride: usize,
    list: &mut [u32; IN],
) {
    let bytes = kernel.as_flattened();
    // Each entry: the two inputs packed as 16-bit halves, and `origin` plus
    // the byte offset of their pair of rows (`IN / 2` entries fit in `IN`
    // words). With the DSP extension the origin is the weights' address, so
    // that an entry is the address its weights are loaded from.
    let origin = if ENTRIES_HOLD_ADDRESSES {
        bytes.as_ptr() as usize as u32
    } else {
        0
    };
    let (entries, _) = list.as_chunks_mut::<2>();
    let (mut active, sigma) = list_pairs(&input[..IN / 2 * 2], pair_stride, origin, 2 * OUT as u32, entries);
    let sigma = sigma as i32;
    // An entry of zeros ends the list. When every pair is listed there is no
    // slot left for it: the last pair gives up its slot and is added apart.
    let spare = if active < entries.len() {
        None
    } else {
        active = active.saturating_sub(1);
        entries.get(active).copied()
    };
    if let Some(marker) = entries.get_mut(active) {
        *marker = [0, 0];
    }
    let list = List {
        marked: entries.get(..=active).unwrap_or_default(),
        spare,
        origin,
        aligned: OUT.is_multiple_of(2) && (bytes.as_ptr() as usize).is_multiple_of(4),
    };
    let mut start = 0;
    if HAS_SIMD {
        start = blocks_simd::<IN, OUT>(input, &list, bytes, bias, sigma, out);
    }
    while EIGHT_SUMS && start + 8 <= OUT && start < EIGHT_SUMS_REACH {
        let block = block_registers::<IN, OUT, 8>(input, &list, bytes, bias, sigma, start);
        out[start..start + 8].copy_from_slice(&block);
        start += 8;
    }
    while start + 6 <= OUT {
        let block = block_registers::<IN, OUT, 6>(input, &list, bytes, bias, sigma, start);
        out[start..start + 6].copy_from_slice(&block);
        start += 6;
    }
    if start + 4 <= OUT {
        let block = block_registers::<IN, OUT, 4>(input, &list, bytes, bias, sigma, start);
        out[start..start + 4].copy_from_slice(&block);
        start += 4;
    }
    if start + 2 <= OUT {
        let block = block_registers::<IN, OUT, 2>(input, &list, bytes, bias, sigma, start);
        out[start..start + 2].copy_from_slice(&block);
        start += 2;
    }
    tail(input, bytes, bias, start, out, pair_stride);
}

/// Blocks of sixteen outputs at the front of `out` on SIMD registers, as
/// many as fit (returns how many outputs that is), six blocks in flight: per
/// listed pair, each block's 32 weight bytes are sixteen 16-bit halves, two
/// per pair of outputs; one `pmaddwd` with the pair of inputs gives the raw
/// sums of eight pairs of outputs, and one more on the halves shifted right
/// by eight (their odd bytes, sign-extended) their odd outputs' sums.
#[inline]
fn blocks_simd<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    list: &List,
    bytes: &[i8],
    bias: &[i32; OUT],
    sigma: i32,
    out: &mut [i32; OUT],
) -> usize {
    const IN_FLIGHT: usize = 6;
    const BLOCK: usize = 2 * ROW_LANES;
    let mut start = 0;
    while start + BLOCK <= OUT {
        let blocks = ((OUT - start) / BLOCK).min(IN_FLIGHT);
        let starts = |b: usize| -> [(i32, i32); ROW_LANES] {
            core::array::from_fn(|t| {
                let at = start + b * BLOCK + 2 * t;
                let bias = |o: usize| bias.get(o).copied().unwrap_or(0);
                pair_start(bias(at), bias(at + 1), sigma, true)
            })
        };
        let mut raw: [i32x8; IN_FLIGHT] = core::array::from_fn(|b| i32x8::new(starts(b).map(|s| s.0)));
        let mut odd: [i32x8; IN_FLIGHT] = core::array::from_fn(|b| i32x8::new(starts(b).map(|s| s.1)));
        for [x, offset] in list.entries() {
            let inputs: i16x16 = bytemuck::cast(i32x8::splat(x as i32));
            for (b, (raw, odd)) in raw.iter_mut().zip(&mut odd).enumerate().take(blocks) {
                let at = offset as usize + 2 * (start + b * BLOCK);
                let Some(run) = bytes.get(at..at + 2 * BLOCK) else {
                    continue;
                };
                let halves: i16x16 = bytemuck::pod_read_unaligned(bytemuck::cast_slice::<i8, u8>(run));
                *raw += halves.dot(inputs);
                *odd += (halves >> 8u32).dot(inputs);
            }
        }
        for (b, (raw, odd)) in raw.iter().zip(&odd).enumerate().take(blocks) {
            let at = start + b * BLOCK;
            let (raw, odd) = (raw.to_array(), odd.to_array());
            for (t, pair) in out[at..at + BLOCK].chunks_exact_mut(2).enumerate() {
                pair.copy_from_slice(&[pair_finish(raw[t], odd[t], true), odd[t]]);
            }
        }
        start += blocks * BLOCK;
    }
    add_odd_row::<IN, OUT>(input, bytes, 0, &mut out[..start]);
    start
}

/// Outputs `start..` one at a time, each weight looked up by
/// [`paired_index`]: the blocks' remainder, and the whole scalar twin.
#[inline]
fn tail<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    bytes: &[i8],
    bias: &[i32; OUT],
    start: usize,
    out: &mut [i32; OUT],
    pair_stride: usize,
) {
    for (j, o) in out.iter_mut().enumerate().skip(start) {
        let mut sum = bias[j];
        for (i, &x) in input.iter().enumerate() {
            if x != 0 {
                let stored = bytes
                    .get(paired_index::<IN, OUT>(i, j, pair_stride))
                    .copied()
                    .unwrap_or(0);
                let w = paired_byte::<IN, OUT>(i, j, stored);
                sum = sum.wrapping_add(i32::from(w) * i32::from(x));
            }
        }
        *o = sum;
    }
}

/// Scalar twin of [`dense_i8_paired`]: each weight looked up by
/// [`paired_index`] and [`paired_byte`].
///
/// ```
/// // Paired: w(0,0), w(0,1), w(1,0), w(1,1) = 1, 5, -1, 5, the even output's plus 128.
/// let kernel = [[1i8 ^ i8::MIN, 5], [-1 ^ i8::MIN, 5]];
/// let mut out = [0i32; 2];
/// tinycnn::kernels::dense_i8_paired_scalar(&[2, 3], &kernel, &[0, 1], &mut out, 1);
/// assert_eq!(out, [2 - 3, 10 + 15 + 1]);
/// ```
pub fn dense_i8_paired_scalar<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    kernel: &[[i8; OUT]; IN],
    bias: &[i32; OUT],
    out: &mut [i32; OUT],
    pair_stride: usize,
) {
    tail(input, kernel.as_flattened(), bias, 0, out, pair_stride);
}

/// The pairs of rows [`dense_i8_paired`] adds up.
struct List<'a> {
    /// Entries `[packed inputs, origin + byte offset]`, ended by an entry of
    /// zeros.
    marked: &'a [[u32; 2]],
    /// The last pair, when it had to give its slot to the end marker.
    spare: Option<[u32; 2]>,
    /// What the entries' offsets count from.
    origin: u32,
    /// Whether the weights and every offset sit on 4-byte boundaries, as
    /// [`listed_sums`] needs.
    aligned: bool,
}

impl List<'_> {
    /// Every listed pair, `[packed inputs, byte offset]`: the entries before
    /// the end marker, then the spare.
    fn entries(&self) -> impl Iterator<Item = [u32; 2]> + '_ {
        let listed = self.marked.iter().take_while(|entry| entry[0] != 0);
        listed
            .chain(self.spare.as_ref())
            .map(|&entry| self.relative(entry))
    }

    /// An entry with its weights' place as an offset from the origin.
    fn relative(&self, [x, at]: [u32; 2]) -> [u32; 2] {
        [x, at.wrapping_sub(self.origin)]
    }
}

/// Outputs `start..start + B` in general registers (`B / 2` weight
/// words per pair of rows, `B` even), over the listed pairs of rows; with
/// the DSP extension two multiply-adds per instruction. A Cortex-M has room
/// for six sums beside the pointers, eight where the block's offset is built
/// into the assembly's loads (the DSP extension, see [`listed_sums`]).
#[inline]
fn block_registers<const IN: usize, const OUT: usize, const B: usize>(
    input: &[u8; IN],
    list: &List,
    bytes: &[i8],
    bias: &[i32; OUT],
    sigma: i32,
    start: usize,
) -> [i32; B] {
    // Raw and odd sum of each pair of outputs, side by side.
    let mut sums: [i32; B] = core::array::from_fn(|t| {
        let pair = start + (t & !1);
        let (raw, odd) = pair_start(bias[pair], bias[pair + 1], sigma, RAW_HAS_ODD);
        if t % 2 == 0 {
            raw
        } else {
            odd
        }
    });
    let block = bytes.get(2 * start..).unwrap_or_default();
    let add = |sums: &mut [i32; B], [x, offset]: [u32; 2]| add_word_products(x, block, offset as usize, sums);
    if list.aligned && !list.marked.is_empty() {
        // SAFETY: `marked` ends with its marker (it is not empty, and the
        // marker is its last entry); each entry is `origin` (the weights'
        // address where the DSP extension needs it) plus the offset of a
        // pair of rows, and the block's `2 * B` bytes from it end at or
        // before that pair's end; `aligned` holds for the weights and the
        // offsets, and `2 * start` is a multiple of 4 (`start` is even).
        unsafe { listed_sums(list.marked, bytes, list.origin, 2 * start, &mut sums) };
        if let Some(spare) = list.spare {
            add(&mut sums, list.relative(spare));
        }
    } else {
        list.entries().for_each(|entry| add(&mut sums, entry));
    }
    for pair in sums.chunks_exact_mut(2) {
        pair[0] = pair_finish(pair[0], pair[1], RAW_HAS_ODD);
    }
    add_odd_row::<IN, OUT>(input, bytes, start, &mut sums);
    sums
}

/// With an odd `IN`, the last row's products, which have no partner.
#[inline]
fn add_odd_row<const IN: usize, const OUT: usize>(
    input: &[u8; IN],
    bytes: &[i8],
    start: usize,
    sums: &mut [i32],
) {
    if IN.is_multiple_of(2) {
        return;
    }
    let x = i32::from(input[IN - 1]);
    for (t, sum) in sums.iter_mut().enumerate() {
        let w = bytes.get((IN - 1) * OUT + start + t).copied().unwrap_or(0);
        *sum = sum.wrapping_add(i32::from(w) * x);
    }
}
