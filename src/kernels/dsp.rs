//! The DSP extension's SIMD-within-a-register instructions (Cortex-M4/M7),
//! through inline assembly where `cfg(tinycnn_dsp)` is set (by `build.rs`,
//! for `thumbv7em` targets), each beside the plain arithmetic that gives the
//! same result everywhere else; the host tests the int8 kernels through the
//! plain forms.

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

/// Adds one word of weights (`[w(2k, 2j), w(2k, 2j + 1), w(2k + 1, 2j),
/// w(2k + 1, 2j + 1)]`) times the packed inputs `x` (`x(2k)` low, `x(2k + 1)`
/// high) to the sums of outputs `2j` and `2j + 1`.
///
/// With the DSP extension: `SXTB16` sign-extends the even bytes, and with a
/// rotation the odd ones, into 16-bit pairs, and each pair takes one
/// `SMLAD`: four instructions for four multiply-adds. Elsewhere, four plain
/// multiply-adds.
#[inline(always)]
pub(super) fn word_products(x: u32, word: u32, even: i32, odd: i32) -> (i32, i32) {
    #[cfg(all(target_arch = "arm", tinycnn_dsp))]
    {
        let (even_bytes, odd_bytes): (u32, u32);
        // SAFETY: SXTB16 reads one general register and writes another; it
        // touches no memory, stack or flags.
        unsafe {
            core::arch::asm!(
                "sxtb16 {even}, {word}",
                "sxtb16 {odd}, {word}, ror #8",
                even = out(reg) even_bytes,
                odd = lateout(reg) odd_bytes,
                word = in(reg) word,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        (dual_mac(x, even_bytes, even), dual_mac(x, odd_bytes, odd))
    }
    #[cfg(not(all(target_arch = "arm", tinycnn_dsp)))]
    {
        let (a, b) = ((x & 0xffff) as i32, (x >> 16) as i32);
        let w = word.to_le_bytes().map(|v| i32::from(v as i8));
        (
            even.wrapping_add(a * w[0]).wrapping_add(b * w[2]),
            odd.wrapping_add(a * w[1]).wrapping_add(b * w[3]),
        )
    }
}
