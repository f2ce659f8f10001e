//! The DSP extension's SIMD-within-a-register instructions (Cortex-M4/M7),
//! through inline assembly where `cfg(tinycnn_dsp)` is set (by `build.rs`,
//! for `thumbv7em` targets), each beside the plain arithmetic that gives the
//! same result everywhere else; the host tests the int8 kernels through the
//! plain forms.
//!
//! # The int8 convolution
//! Each output's 3x3 patch is packed in five words (three columns of two
//! pixels, a pair and a single pixel of the lower row), for the two
//! convolution rows of a pooled row side by side in memory. Then per channel
//! and pooling window the assembly sums the window's four patches (per patch
//! one `LDM`, one `MLA` and four `SMLAD`), keeps the largest, and applies
//! ReLU (`BIC`), the requantization from the product's high word (`UMULL`, a
//! shift, and `USAT` for the rounding, halving and clamp) and a strided
//! `STRB` into the pooled map. Only the windows whose patches reach a
//! non-zero pixel are summed (a Fashion-MNIST item sits on a black
//! background); the others take the channel's requantized bias.
//!
//! # The int8 dense1
//! Over the paired layout of [`paired`](super::paired): a word of four
//! weights holds two inputs' weights for two outputs, so one `SMLAD` of the
//! word as it is, with the two inputs packed in one register, adds the even
//! output's two products (plus terms removed at the end), and one `SXTB16`
//! of the odd bytes and a second `SMLAD` give the odd output's. The pairs of
//! inputs that are not both zero are listed once (`PKHBT`/`PKHTB` and
//! `UXTB16` regroup two words of inputs into four pairs, `USADA8` sums their
//! bytes), each entry holding its weights' address; then eight outputs at a
//! time are summed in registers, one loop per block with the block's offset
//! built into its two `LDRD` of the four weight words, which frees the
//! register a block address would take for the eighth sum.

/// `acc + low(a) * low(b) + high(a) * high(b)` on the signed 16-bit halves
/// of `a` and `b`, wrapping: one `SMLAD` on a core with the DSP extension.
#[inline(always)]
pub(super) fn dual_mac(a: u32, b: u32, acc: i32) -> i32 {
    #[cfg(all(target_arch = "arm", tinycnn_dsp))]
    {
        let out: i32;
        // SAFETY: SMLAD reads three general registers and writes a fourth; it
        // touches no memory and no stack (it may set the Q flag, which the
        // options leave unpromised).
        unsafe {
            core::arch::asm!(
                "smlad {out}, {a}, {b}, {acc}",
                out = lateout(reg) out,
                a = in(reg) a,
                b = in(reg) b,
                acc = in(reg) acc,
                options(pure, nomem, nostack),
            );
        }
        out
    }
    #[cfg(not(all(target_arch = "arm", tinycnn_dsp)))]
    {
        let half = |v: u32, shift: u32| i32::from((v >> shift) as u16 as i16);
        acc.wrapping_add(half(a, 0) * half(b, 0))
            .wrapping_add(half(a, 16) * half(b, 16))
    }
}

/// Lists the pairs of inputs of `input` that are not both zero, as the
/// paired layout of `pair_stride` pairs them (see
/// [the paired layout](super::paired)), in pair order, from the front of
/// `entries`: each entry the two inputs packed in 16-bit halves and `origin`
/// plus the pair's number times `entry_stride`. Returns how many were listed and the
/// sum of all the inputs. `entries` must have room for every pair; pairs
/// past its end are left out.
///
/// With the DSP extension, a band whose stride is a multiple of four is
/// listed in assembly, four pairs at a time: two words loaded (four inputs
/// and their four partners), their bytes summed (`USADA8`), regrouped into
/// the four pairs (two `PKH`, four `UXTB16`), and per pair one `STRD` of the
/// entry to the next free slot (whether or not it stays), the slot moved on
/// if it does: eight instructions a pair; four pairs of zeros (most of them,
/// past the edges of the item) take seven instructions together.
#[inline(always)]
pub(super) fn list_pairs(
    input: &[u8],
    pair_stride: usize,
    origin: u32,
    entry_stride: u32,
    entries: &mut [[u32; 2]],
) -> (usize, u32) {
    let stride = pair_stride.max(1);
    let mut listing = Listing {
        active: 0,
        sigma: 0,
        pair: 0,
        origin,
    };
    let (bands, rest) = input.split_at(input.len() / (2 * stride) * (2 * stride));
    for band in bands.chunks_exact(2 * stride) {
        let (first, second) = band.split_at(stride);
        let offset = origin.wrapping_add(listing.pair * entry_stride);
        let free = entries.get_mut(listing.active..).unwrap_or_default();
        if let Some((listed, band_sum)) = list_band(first, second, offset, entry_stride, free) {
            listing.active += listed;
            listing.sigma = listing.sigma.wrapping_add(band_sum);
            listing.pair += stride as u32;
            continue;
        }
        for (&a, &b) in first.iter().zip(second) {
            listing.push(a, b, entry_stride, entries);
        }
    }
    for two in rest.chunks_exact(2) {
        listing.push(two[0], two[1], entry_stride, entries);
    }
    (listing.active.min(entries.len()), listing.sigma)
}

/// Where [`list_pairs`] has got to.
struct Listing {
    /// Entries listed.
    active: usize,
    /// Sum of the inputs so far.
    sigma: u32,
    /// Pairs taken so far.
    pair: u32,
    /// What the offsets count from.
    origin: u32,
}

impl Listing {
    /// Takes the next pair, inputs `a` and `b`: its entry is written to the
    /// next free slot, and stays there if either input is not zero.
    #[inline(always)]
    fn push(&mut self, a: u8, b: u8, entry_stride: u32, entries: &mut [[u32; 2]]) {
        if let Some(entry) = entries.get_mut(self.active) {
            *entry = [
                u32::from(a) | (u32::from(b) << 16),
                self.origin.wrapping_add(self.pair * entry_stride),
            ];
        }
        self.active += usize::from(a | b != 0);
        self.sigma = self.sigma.wrapping_add(u32::from(a) + u32::from(b));
        self.pair += 1;
    }
}

/// One pair of [`list_band`]'s loop, packed in `{x}`: the entry stored at
/// the next free slot, which moves on if the pair is not zero.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
macro_rules! list_band_pair {
    ($x:literal) => {
        concat!(
            "strd {",
            $x,
            "}, {offset}, [{next}]\n",
            "cmp {",
            $x,
            "}, #0\n",
            "it ne\n",
            "addne {next}, {next}, #8\n",
            "add {offset}, {offset}, {stride}\n",
        )
    };
}

/// A band of [`list_pairs`] in assembly, when its stride is a multiple of
/// four: the pairs of `first[j]` and `second[j]`, written from the front of
/// `free` with offsets from `offset` on; returns how many were listed and
/// the sum of the band's inputs, or `None` (nothing done) for a stride that
/// is not a multiple of four or too little room.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
#[inline(always)]
fn list_band(
    first: &[u8],
    second: &[u8],
    offset: u32,
    stride: u32,
    free: &mut [[u32; 2]],
) -> Option<(usize, u32)> {
    let n = first.len();
    if n == 0 || !n.is_multiple_of(4) || second.len() != n || free.len() < n {
        return None;
    }
    let (next, sigma): (*mut [u32; 2], u32);
    // SAFETY: the loop reads `n / 4` words of each of `first` and `second`
    // (`LDR` needs no alignment on a Cortex-M4) and writes each entry at the
    // next free slot, which is never past the pair being listed, so within
    // the first `n` entries of `free`.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {a}, [{first}], #4",
            "ldr {b}, [{second}], #4",
            "orrs {lo}, {a}, {b}",
            "beq 4f",
            "usada8 {sigma}, {a}, {zero}, {sigma}",
            "usada8 {sigma}, {b}, {zero}, {sigma}",
            "pkhbt {lo}, {a}, {b}, lsl #16",
            "pkhtb {hi}, {b}, {a}, asr #16",
            "uxtb16 {a}, {lo}",
            list_band_pair!("a"),
            "uxtb16 {lo}, {lo}, ror #8",
            list_band_pair!("lo"),
            "uxtb16 {a}, {hi}",
            list_band_pair!("a"),
            "uxtb16 {hi}, {hi}, ror #8",
            list_band_pair!("hi"),
            "cmp {first}, {end}",
            "bne 2b",
            "b 5f",
            // Four pairs of zeros: nothing to list or add.
            "4:",
            "add {offset}, {offset}, {stride}, lsl #2",
            "cmp {first}, {end}",
            "bne 2b",
            "5:",
            first = inout(reg) first.as_ptr() => _,
            second = inout(reg) second.as_ptr() => _,
            end = in(reg) first.as_ptr().wrapping_add(n),
            next = inout(reg) free.as_mut_ptr() => next,
            offset = inout(reg) offset => _,
            stride = in(reg) stride,
            sigma = inout(reg) 0u32 => sigma,
            zero = in(reg) 0u32,
            a = out(reg) _,
            b = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            options(nostack),
        );
    }
    Some(((next as usize - free.as_ptr() as usize) / 8, sigma))
}

/// Without the DSP extension [`list_pairs`] takes every band in plain code.
#[cfg(not(all(target_arch = "arm", tinycnn_dsp)))]
#[inline(always)]
fn list_band(_: &[u8], _: &[u8], _: u32, _: u32, _: &mut [[u32; 2]]) -> Option<(usize, u32)> {
    None
}

/// Whether the first sum of [`word_products`] takes the whole 16-bit halves
/// (each even byte unsigned plus 256 times the odd byte above it), as one
/// `SMLAD` does, or the even bytes alone, unsigned, as four plain
/// multiply-adds do more cheaply.
pub(super) const RAW_HAS_ODD: bool = cfg!(all(target_arch = "arm", tinycnn_dsp));

/// Adds one word of weights in the paired layout (`[w(2k, 2j) + 128,
/// w(2k, 2j + 1), w(2k + 1, 2j) + 128, w(2k + 1, 2j + 1)]`) times the packed
/// inputs `x` (`x(2k)` low, `x(2k + 1)` high) to the raw sum and the odd sum
/// of outputs `2j`, `2j + 1` (see [the paired layout](super::paired) and
/// [`RAW_HAS_ODD`]).
///
/// With the DSP extension: one `SMLAD` of the word as it is, one `SXTB16`
/// of its odd bytes and one `SMLAD` of those: three instructions for four
/// multiply-adds. Elsewhere, four plain multiply-adds, the even bytes
/// unsigned.
#[inline(always)]
pub(super) fn word_products(x: u32, word: u32, raw: i32, odd: i32) -> (i32, i32) {
    #[cfg(all(target_arch = "arm", tinycnn_dsp))]
    {
        let odd_bytes: u32;
        // SAFETY: SXTB16 reads one general register and writes another; it
        // touches no memory, stack or flags.
        unsafe {
            core::arch::asm!(
                "sxtb16 {odd}, {word}, ror #8",
                odd = lateout(reg) odd_bytes,
                word = in(reg) word,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        (dual_mac(x, word, raw), dual_mac(x, odd_bytes, odd))
    }
    #[cfg(not(all(target_arch = "arm", tinycnn_dsp)))]
    {
        let (a, b) = ((x & 0xffff) as i32, (x >> 16) as i32);
        let bytes = word.to_le_bytes();
        (
            raw.wrapping_add(a * i32::from(bytes[0]))
                .wrapping_add(b * i32::from(bytes[2])),
            odd.wrapping_add(a * i32::from(bytes[1] as i8))
                .wrapping_add(b * i32::from(bytes[3] as i8)),
        )
    }
}

/// One entry of [`listed_sums`]'s loops, which take two per turn: the
/// entry (inputs in r6, offset in r12, the list ended at zero inputs), its
/// weight words (`LDM`), and per word the raw sum by `SMLAD` of the word, the
/// odd sum by `SMLAD` of its sign-extended odd bytes.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
macro_rules! listed_sums_entry {
    ($word0:literal => $raw0:literal, $odd0:literal $(; $word:literal => $raw:literal, $odd:literal)*) => {
        concat!(
            "ldrd r6, r12, [r0], #8\n",
            "cbz r6, 3f\n",
            "add r12, r12, r1\n",
            "ldm r12, {{", $word0, $(", ", $word,)* "}}\n",
            listed_sums_entry!(@word $word0, $raw0, $odd0),
            $(listed_sums_entry!(@word $word, $raw, $odd),)*
        )
    };
    (@word $word:literal, $raw:literal, $odd:literal) => {
        concat!(
            "smlad ", $raw, ", r6, ", $word, ", ", $raw, "\n",
            "sxtb16 ", $word, ", ", $word, ", ror #8\n",
            "smlad ", $odd, ", r6, ", $word, ", ", $odd, "\n",
        )
    };
}

/// [`listed_sums`]'s loop over the list for the words and sums given, two
/// entries per turn; r12 is the entry's offset, then its address.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
macro_rules! listed_sums_loop {
    ($entries:expr, $block:expr; $($word:tt => $raw:tt, $odd:tt, $s_raw:expr, $s_odd:expr);+) => {
        core::arch::asm!(
            "push {{r6, r7}}",
            "2:",
            listed_sums_entry!($($word => $raw, $odd);+),
            listed_sums_entry!($($word => $raw, $odd);+),
            "b 2b",
            "3:",
            "pop {{r6, r7}}",
            inout("r0") $entries.as_ptr() => _,
            in("r1") $block,
            $(inout($raw) *$s_raw, inout($odd) *$s_odd, out($word) _,)+
            out("r12") _,
            options(readonly),
        )
    };
}

/// Whether [`list_pairs`]'s entries hold the address of their weights (the
/// origin the weights' address) rather than an offset: with the DSP
/// extension, where the assembly loads from them directly.
pub(super) const ENTRIES_HOLD_ADDRESSES: bool = cfg!(all(target_arch = "arm", tinycnn_dsp));

/// Whether [`listed_sums`] takes blocks of eight sums (with the DSP
/// extension, up to [`EIGHT_SUMS_REACH`] outputs); elsewhere eight sums
/// would spill from the registers.
pub(super) const EIGHT_SUMS: bool = cfg!(all(target_arch = "arm", tinycnn_dsp));

/// The outputs blocks of eight reach: one assembly loop per block, each
/// with its block's byte offset built into its loads.
pub(super) const EIGHT_SUMS_REACH: usize = 128;

/// Adds to `B` sums (the raw and odd sums of outputs `2j..2j + B` of a
/// paired dense layer, side by side) the products of every listed pair of
/// rows (see [`word_products`]): each entry holds the two inputs packed in
/// 16-bit halves and `origin` plus the byte offset of the pair's rows in
/// `bytes`; the block's `B / 2` weight words start `start_byte` further.
/// The list ends at the first entry whose inputs are zero.
///
/// With the DSP extension, eight, six and four sums are written out in
/// assembly, because the compiler's version keeps some sums on the stack and
/// tests bounds: per entry one load of the entry, the words (`LDM`, or two
/// `LDRD` at the block's offset built into the loop, which frees the
/// register of the block's address for an eighth sum), and per word one
/// `SXTB16` and two `SMLAD`, two entries per turn of the loop: 16.5
/// instructions for sixteen multiply-adds (eight sums), 13.5 for twelve
/// (six), 10.5 for eight (four).
///
/// # Safety
/// An entry with zero inputs must end `entries`; every listed offset plus
/// `start_byte + 2 * B` must lie within `bytes`. With the DSP extension,
/// `origin` must be the address of `bytes`, which must start at a 4-byte
/// boundary, and every offset and `start_byte` must be a multiple of 4.
#[inline(always)]
pub(super) unsafe fn listed_sums<const B: usize>(
    entries: &[[u32; 2]],
    bytes: &[i8],
    origin: u32,
    start_byte: usize,
    sums: &mut [i32; B],
) {
    #[cfg(all(target_arch = "arm", tinycnn_dsp))]
    {
        // SAFETY (all three): the caller guarantees the list's end marker,
        // that each entry is its weights' address, the bounds and the
        // alignment `LDM` and `LDRD` need. r6 (which LLVM may reserve) is
        // saved on the stack and restored before the block ends; r7 with
        // it, so that it can hold a sum meanwhile.
        if let Ok(eight) = <&mut [i32; 8]>::try_from(sums.as_mut_slice()) {
            if unsafe { eight_sums(entries, start_byte, eight) } {
                return;
            }
        }
        let block = start_byte;
        if let Ok([s0, s1, s2, s3, s4, s5]) = <&mut [i32; 6]>::try_from(sums.as_mut_slice()) {
            unsafe {
                listed_sums_loop!(entries, block;
                    "r9" => "r2", "r3", s0, s1;
                    "r10" => "r4", "r5", s2, s3;
                    "r11" => "r8", "lr", s4, s5);
            }
            return;
        }
        if let Ok([s0, s1, s2, s3]) = <&mut [i32; 4]>::try_from(sums.as_mut_slice()) {
            unsafe {
                listed_sums_loop!(entries, block;
                    "r9" => "r2", "r3", s0, s1;
                    "r10" => "r4", "r5", s2, s3);
            }
            return;
        }
    }
    let block = bytes.get(start_byte..).unwrap_or_default();
    for &[x, at] in entries.iter().take_while(|entry| entry[0] != 0) {
        add_word_products(x, block, at.wrapping_sub(origin) as usize, sums);
    }
}

/// One entry of [`eight_sums`]'s loop at byte offset `{off}` of its pair of
/// rows: the entry (inputs in r6, weights' address in r12), the four words
/// by two `LDRD` (the last into r12 itself), and per word the raw and the
/// odd sum.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
macro_rules! eight_sums_entry {
    () => {
        concat!(
            "ldrd r6, r12, [r0], #8\n",
            "cbz r6, 3f\n",
            "ldrd r9, r10, [r12, #{off}]\n",
            "ldrd r11, r12, [r12, #{off8}]\n",
            listed_sums_entry!(@word "r9", "r1", "r2"),
            listed_sums_entry!(@word "r10", "r3", "r4"),
            listed_sums_entry!(@word "r11", "r5", "r7"),
            listed_sums_entry!(@word "r12", "r8", "lr"),
        )
    };
}

/// Eight sums of [`listed_sums`] at block byte offset `start_byte`, the
/// offset built into the loads of one of sixteen loops; returns `false`
/// (nothing done) for an offset past [`EIGHT_SUMS_REACH`] outputs or not a
/// multiple of 16.
///
/// # Safety
/// As [`listed_sums`].
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
#[inline(always)]
unsafe fn eight_sums(entries: &[[u32; 2]], start_byte: usize, sums: &mut [i32; 8]) -> bool {
    /// The loop for one offset; the sum meant for r7 passes through r9.
    #[inline(always)]
    unsafe fn at<const OFF: usize>(entries: &[[u32; 2]], sums: &mut [i32; 8]) {
        let [s0, s1, s2, s3, s4, s5, s6, s7] = sums;
        // SAFETY: as for `listed_sums`, which this is part of.
        unsafe {
            core::arch::asm!(
                "push {{r6, r7}}",
                "mov r7, r9",
                "2:",
                eight_sums_entry!(),
                eight_sums_entry!(),
                "b 2b",
                "3:",
                "mov r9, r7",
                "pop {{r6, r7}}",
                off = const OFF,
                off8 = const OFF + 8,
                inout("r0") entries.as_ptr() => _,
                inout("r1") *s0,
                inout("r2") *s1,
                inout("r3") *s2,
                inout("r4") *s3,
                inout("r5") *s4,
                inout("r9") *s5,
                inout("r8") *s6,
                inout("lr") *s7,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                options(readonly),
            );
        }
    }
    macro_rules! offsets {
        ($($block:literal)+) => {
            match start_byte {
                $(b if b == 16 * $block => unsafe { at::<{ 16 * $block }>(entries, sums) },)+
                _ => return false,
            }
        };
    }
    offsets!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    true
}

/// Adds `x` (two inputs packed in 16-bit halves) times the weight words
/// from byte `offset` of `block` to the sums of their outputs, two per word
/// (see [`word_products`]); nothing past the end of `block`, which the
/// callers' bounds never reach.
#[inline(always)]
pub(super) fn add_word_products<const B: usize>(x: u32, block: &[i8], offset: usize, sums: &mut [i32; B]) {
    let words = block.get(offset..offset + 2 * B).unwrap_or_default();
    for (q, word) in words.chunks_exact(4).enumerate() {
        let word = u32::from_le_bytes([word[0] as u8, word[1] as u8, word[2] as u8, word[3] as u8]);
        (sums[2 * q], sums[2 * q + 1]) = word_products(x, word, sums[2 * q], sums[2 * q + 1]);
    }
}

/// What ends a list of [`Patch`]es: no patch starts with `u32::MAX`, whose
/// 16-bit halves are out of a pixel's reach.
pub(super) const PATCH_END: [u32; 5] = [u32::MAX; 5];

/// The nine pixels of one convolution output's 3x3 patch in five words, as
/// [`SMLAD`](dual_mac) takes them: the columns left of, at and right of the
/// output (each with its upper and middle pixel as 16-bit halves), the lower
/// row's pixels left of and at the output (a pair too), and its pixel right
/// of the output.
pub(super) type Patch = [u32; 5];

/// One channel of a 3x3 convolution as [`window_maxima`] takes it.
#[derive(Clone, Copy)]
pub(super) struct ChannelTaps {
    /// The taps matching a [`Patch`]'s four pairs, as 16-bit pairs.
    pub(super) pairs: [u32; 4],
    /// The tap matching a patch's last word.
    pub(super) corner: i32,
    /// The channel's bias.
    pub(super) bias: i32,
}

/// A patch's sum into r12 (its last word's register), and the larger of it
/// and lr kept in lr: one step of [`window_maxima`]'s loop.
#[cfg(all(target_arch = "arm", tinycnn_dsp))]
macro_rules! window_maxima_sum {
    () => {
        concat!(
            "mla r12, r12, r8, r9\n",
            "smlad r12, r6, r2, r12\n",
            "smlad r12, r7, r3, r12\n",
            "smlad r12, r10, r4, r12\n",
            "smlad r12, r11, r5, r12\n",
            "cmp lr, r12\n",
            "it lt\n",
            "movlt lr, r12\n",
        )
    };
}

/// A requantization to `u8` by a positive factor below 2^-2 (a right shift
/// `right` of 33 or more, the usual case), computed from the product's high
/// word alone, 32-bit instructions only: rounding half up,
/// `(p + 2^(right-1)) >> right`, equals `(q + 1) >> 1` for
/// `q = p >> (right - 1)`, the high word shifted by `right - 33`.
#[derive(Clone, Copy)]
pub(super) struct HighWord {
    /// The fixed-point multiplier.
    pub(super) multiplier: u32,
    /// `right - 33`.
    pub(super) shift: u32,
}

impl HighWord {
    /// ReLU, then the requantization, clamped to 255.
    #[inline]
    pub(super) fn to_u8(self, value: i32) -> u8 {
        if value <= 0 {
            return 0;
        }
        let q = ((u64::from(value.unsigned_abs()) * u64::from(self.multiplier)) >> 32) as u32 >> self.shift;
        ((q + 1) >> 1).min(255) as u8
    }
}

/// The sum of one convolution output: the bias, plus the corner tap times
/// the patch's last word, plus its four pairs times the four pairs of taps.
#[inline(always)]
pub(super) fn patch_sum(&[left, centre, right, lower, last]: &Patch, taps: &ChannelTaps) -> i32 {
    let ChannelTaps { pairs, corner, bias } = *taps;
    let sum = bias.wrapping_add((last as i32).wrapping_mul(corner));
    let sum = dual_mac(left, pairs[0], sum);
    let sum = dual_mac(centre, pairs[1], sum);
    let sum = dual_mac(right, pairs[2], sum);
    dual_mac(lower, pairs[3], sum)
}

/// The patches of the two convolution rows of a pooled row as
/// [`window_maxima`] takes them, checked once for all channels: `upper` ends
/// with the [`PATCH_END`] after an even count, and `lower` sits right after
/// it in memory (`W + 1` patches on), with a patch for each of `upper`'s.
pub(super) struct PatchRows<'a, const W: usize> {
    upper: &'a [Patch],
    windows: usize,
}

impl<'a, const W: usize> PatchRows<'a, W> {
    /// The two rows, if they are laid out as described.
    #[inline]
    pub(super) fn new(upper: &'a [Patch], lower: &'a [Patch]) -> Option<Self> {
        let windows = upper.len().saturating_sub(1) / 2;
        let marked = upper.last().map(|p| p[0]) == Some(u32::MAX) && upper.len() % 2 == 1;
        let adjacent = core::ptr::eq(lower.as_ptr(), upper.as_ptr().wrapping_add(W + 1));
        (marked && adjacent && windows > 0 && lower.len() >= 2 * windows).then_some(Self { upper, windows })
    }
}

/// One channel's pooled row: for each pooling window, the largest of the
/// four sums (see [`patch_sum`]) of its two columns in the two convolution
/// rows of `rows`, through ReLU and `form`, into `cells[K * w]`. Returns
/// whether it did the row, which only the DSP extension's assembly does
/// (`false`, nothing written, elsewhere or when `cells` is too short).
///
/// The assembly takes a window at a time: per window four `LDM` of a patch
/// (two through an address built from the upper one's), four `MLA` and
/// sixteen `SMLAD`, the largest sum kept, then ReLU by one `BIC`, `UMULL`,
/// a shift, `USAT` for the rounding, halving and clamp, and a strided
/// `STRB`: 44 instructions for 36 multiply-adds, pooling and
/// requantization; the two rows are summed together so that no row of sums
/// is stored and read back for the pooling.
#[inline(always)]
pub(super) fn window_maxima<const W: usize, const K: usize>(
    rows: &PatchRows<'_, W>,
    taps: &ChannelTaps,
    form: HighWord,
    cells: &mut [u8],
) -> bool {
    let fits = cells.len() > (rows.windows - 1) * K;
    if !(cfg!(all(target_arch = "arm", tinycnn_dsp)) && fits) {
        return false;
    }
    #[cfg(not(all(target_arch = "arm", tinycnn_dsp)))]
    let _ = (taps, form, rows.upper);
    #[cfg(all(target_arch = "arm", tinycnn_dsp))]
    // SAFETY: `rows` was checked by `PatchRows::new`: the upper row ends
    // with the marker after an even count, so the loop, which tests for it
    // at the first patch of each window, stops there; the lower row sits
    // `W + 1` patches after the upper and holds a patch for each one of the
    // upper's before the marker; `cells` reaches each window's cell.
    // r6 and r7 (which LLVM may reserve) are saved on the stack with the
    // requantization's constants and restored before the block ends.
    unsafe {
        let ChannelTaps { pairs, corner, bias } = *taps;
        core::arch::asm!(
            "push {{r6, r7, r10, r11}}",
            "ldm r0!, {{r6, r10, r11, r12, lr}}",
            "cmn r6, #1",
            "beq 3f",
            "2:",
            // The upper row's two columns.
            "mla lr, lr, r8, r9",
            "smlad lr, r6, r2, lr",
            "smlad lr, r10, r3, lr",
            "smlad lr, r11, r4, lr",
            "smlad lr, r12, r5, lr",
            "ldm r0!, {{r6, r7, r10, r11, r12}}",
            window_maxima_sum!(),
            // The lower row's, `W + 1` patches further.
            "add r6, r0, #{lower_first}",
            "ldm r6, {{r6, r7, r10, r11, r12}}",
            window_maxima_sum!(),
            "add r6, r0, #{lower_second}",
            "ldm r6, {{r6, r7, r10, r11, r12}}",
            window_maxima_sum!(),
            // ReLU, requantization, the cell.
            "ldrd r6, r7, [sp, #8]",
            "bic lr, lr, lr, asr #31",
            "umull r10, lr, lr, r6",
            "lsr lr, lr, r7",
            "add lr, lr, #1",
            "usat lr, #8, lr, asr #1",
            "strb lr, [r1], #{k}",
            "ldm r0!, {{r6, r10, r11, r12, lr}}",
            "cmn r6, #1",
            "bne 2b",
            "3:",
            "pop {{r6, r7, r10, r11}}",
            lower_first = const (W + 1) * 20 - 40,
            lower_second = const (W + 1) * 20 - 20,
            k = const K,
            inout("r0") rows.upper.as_ptr() => _,
            inout("r1") cells.as_mut_ptr() => _,
            in("r2") pairs[0],
            in("r3") pairs[1],
            in("r4") pairs[2],
            in("r5") pairs[3],
            in("r8") corner,
            in("r9") bias,
            inout("r10") form.multiplier => _,
            inout("r11") form.shift => _,
            out("r12") _,
            out("lr") _,
        );
    }
    true
}
