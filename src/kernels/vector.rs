//! The two loops everything else is built from: `y += a * x` and `x . y`.
//!
//! Each SIMD function has a scalar twin with the same signature, kept as the
//! reference the SIMD one is tested against.

use wide::{f32x4, f32x8};

/// The vector of `f32` the flat kernels (dense layers, updates) run on: the
/// widest one this build's target features keep in one register. 16 lanes
/// when AVX-512 is on (this repository's `.cargo/config.toml` builds for the
/// host's own core, `-C target-cpu=native`), else 8 (AVX, or two SSE
/// registers, or an array on targets without SIMD).
#[cfg(target_feature = "avx512f")]
pub(crate) type Vector = wide::f32x16;
/// The vector of `f32` the flat kernels run on (see the AVX-512 build).
#[cfg(not(target_feature = "avx512f"))]
pub(crate) type Vector = f32x8;

/// Lanes of the vector the dense layers and the optimizers'
/// updates run on: 16 with AVX-512, else 8.
///
/// ```
/// assert!(tinycnn::kernels::LANES == 8 || tinycnn::kernels::LANES == 16);
/// ```
pub const LANES: usize = core::mem::size_of::<Vector>() / core::mem::size_of::<f32>();

/// Lanes of the vectors the convolutions run on: eight, so that a 14-column
/// pooled row of the default model takes two runs of 8 and an image row
/// split into even and odd columns fits.
pub(crate) const ROW_LANES: usize = 8;

/// Whether `wide`'s vectors are SIMD registers on this target (on 32-bit
/// Cortex-M they are arrays, and loops written for a core's few registers
/// beat them).
pub(crate) const HAS_SIMD: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "wasm32"
));

/// A vector of `f32` lanes as the flat kernels use it, so that one kernel
/// serves [`Vector`] and the eight-lane vector for what is left after it.
pub(crate) trait Lanes:
    Copy
    + core::ops::Add<Output = Self>
    + core::ops::Sub<Output = Self>
    + core::ops::Mul<Output = Self>
    + core::ops::Div<Output = Self>
{
    /// Number of lanes.
    const N: usize;
    /// Every lane `x`.
    fn splat(x: f32) -> Self;
    /// The first `N` values, zeros past the end of `values`.
    fn load(values: &[f32]) -> Self;
    /// `self * a + b`, rounded once.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Writes the lanes to the front of `out` (as many as fit).
    fn store(self, out: &mut [f32]);
    /// Lane-wise square root.
    fn sqrt(self) -> Self;
    /// Zero where the magnitude is below [`FLUSH_BELOW`], else unchanged
    /// (NaN included).
    fn flush_tiny(self) -> Self;
}

/// Optimizer state whose magnitude falls below this is set to zero. A first
/// moment or velocity that small moves no parameter (its share of a step is
/// below 1e-23 of the learning rate), but left alone it decays through the
/// subnormal numbers, on which Intel cores take a slow microcode assist per
/// operation (a dense1 row that stays inactive decays by `beta1` per step
/// and is subnormal after about 800 steps).
pub(crate) const FLUSH_BELOW: f32 = 1e-30;

/// Scalar twin of [`Lanes::flush_tiny`].
#[inline]
pub(crate) fn flush_tiny(x: f32) -> f32 {
    if x.abs() < FLUSH_BELOW {
        0.0
    } else {
        x
    }
}

macro_rules! impl_lanes {
    ($vector:ty, $n:expr) => {
        impl Lanes for $vector {
            const N: usize = $n;
            #[inline]
            fn splat(x: f32) -> Self {
                <$vector>::splat(x)
            }
            #[inline]
            fn load(values: &[f32]) -> Self {
                if let Some(whole) = values.first_chunk::<$n>() {
                    return <$vector>::new(*whole);
                }
                let mut lanes = [0.0; $n];
                lanes
                    .iter_mut()
                    .zip(values)
                    .for_each(|(lane, &value)| *lane = value);
                <$vector>::new(lanes)
            }
            #[inline]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$vector>::mul_add(self, a, b)
            }
            #[inline]
            fn store(self, out: &mut [f32]) {
                // A whole vector in one store where it fits (a loop over
                // the lanes is not always merged into one).
                if let Some(whole) = out.first_chunk_mut::<$n>() {
                    *whole = self.to_array();
                } else {
                    for (slot, value) in out.iter_mut().zip(self.to_array()) {
                        *slot = value;
                    }
                }
            }
            #[inline]
            fn sqrt(self) -> Self {
                #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
                {
                    <$vector>::new(self.to_array().map(hardware_sqrt))
                }
                #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
                {
                    <$vector>::sqrt(self)
                }
            }
            #[inline]
            fn flush_tiny(self) -> Self {
                if !HAS_SIMD {
                    // Lanes in an array: a compare per lane beats masks.
                    return <$vector>::new(self.to_array().map(flush_tiny));
                }
                let zero = <$vector>::splat(0.0);
                self.abs()
                    .simd_lt(<$vector>::splat(FLUSH_BELOW))
                    .select(zero, self)
            }
        }
    };
}

/// The FPU's square root instruction: `wide` has no Arm backend for 32-bit
/// Cortex-M and falls back to a software square root there, while the FPU of
/// every hard-float (`eabihf`) Cortex-M has `vsqrt.f32`. Rust exposes the
/// FPU's registers to `asm!` only with the double-precision `vfp2` feature,
/// which single-precision FPUs (M4F, M33) lack, so the value passes through
/// a core register and `s0` is saved around the instruction.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[inline]
fn hardware_sqrt(x: f32) -> f32 {
    let bits: u32;
    // SAFETY: the sequence reads and writes only `x`'s register and `s0`,
    // which it pushes first and pops last, so no register the compiler uses
    // changes; the push and pop stay within the stack below the stack pointer.
    unsafe {
        core::arch::asm!(
            "vpush {{s0}}",
            "vmov s0, {x}",
            "vsqrt.f32 s0, s0",
            "vmov {x}, s0",
            "vpop {{s0}}",
            x = inout(reg) x.to_bits() => bits,
            options(pure, nomem),
        );
    }
    f32::from_bits(bits)
}

impl_lanes!(f32x8, 8);
#[cfg(target_feature = "avx512f")]
impl_lanes!(wide::f32x16, 16);

/// `y[i] += a * x[i]` for every `i` below the shorter of the two lengths.
///
/// ```
/// let mut y = [1.0; 10];
/// tinycnn::kernels::axpy(2.0, &[3.0; 10], &mut y);
/// assert_eq!(y, [7.0; 10]);
/// ```
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    let wide = axpy_vectors::<Vector>(a, x, y);
    let narrow = wide + axpy_vectors::<f32x8>(a, &x[wide..], &mut y[wide..]);
    axpy_scalar(a, &x[narrow..], &mut y[narrow..]);
}

/// [`axpy`] over the whole vectors of `L` at the front of `x` and `y` (of
/// equal lengths); returns how many values that was. After the widest
/// vectors, eight-lane ones take what they leave, so a value takes the fused
/// multiply-add exactly when it would with eight lanes: every width rounds
/// alike.
#[inline]
fn axpy_vectors<L: Lanes>(a: f32, x: &[f32], y: &mut [f32]) -> usize {
    let av = L::splat(a);
    let mut done = 0;
    for (xc, yc) in x.chunks_exact(L::N).zip(y.chunks_exact_mut(L::N)) {
        L::load(xc).mul_add(av, L::load(yc)).store(yc);
        done += L::N;
    }
    done
}

/// Scalar twin of [`axpy`].
///
/// ```
/// let mut y = [1.0; 3];
/// tinycnn::kernels::axpy_scalar(-1.0, &[1.0, 2.0, 3.0], &mut y);
/// assert_eq!(y, [0.0, -1.0, -2.0]);
/// ```
#[inline]
pub fn axpy_scalar(a: f32, x: &[f32], y: &mut [f32]) {
    for (xv, yv) in x.iter().zip(y) {
        *yv += a * xv;
    }
}

/// The dot product over the shorter of the two lengths.
///
/// Always in eight lanes, even where the flat kernels' vector is wider: the lanes' sums
/// and their order of addition decide the rounding, and with eight every
/// x86-64 build (AVX2 or AVX-512) computes the same numbers, so a model
/// trains to the same weights on either kind of machine.
///
/// ```
/// assert_eq!(tinycnn::kernels::dot(&[1.0; 20], &[0.5; 20]), 10.0);
/// ```
#[inline]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x_chunks, x_rest) = x[..n].as_chunks::<ROW_LANES>();
    let (y_chunks, y_rest) = y[..n].as_chunks::<ROW_LANES>();
    let mut acc = f32x8::splat(0.0);
    for (xc, yc) in x_chunks.iter().zip(y_chunks) {
        acc = f32x8::new(*xc).mul_add(f32x8::new(*yc), acc);
    }
    acc.reduce_add() + dot_scalar(x_rest, y_rest)
}

/// Scalar twin of [`dot`].
///
/// ```
/// assert_eq!(tinycnn::kernels::dot_scalar(&[1.0, 2.0], &[3.0, 4.0]), 11.0);
/// ```
#[inline]
pub fn dot_scalar(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// Starts of the runs of `lanes` that cover `0..len`: one every `lanes`,
/// the last moved back to end at `len` (or to start at 0 when `len < lanes`),
/// overlapping the one before it rather than leaving a remainder.
#[inline]
pub(crate) fn runs(len: usize, lanes: usize) -> impl Iterator<Item = usize> {
    let last = len.saturating_sub(lanes);
    (0..len.div_ceil(lanes)).map(move |run| (run * lanes).min(last))
}

/// `true` when no value is NaN or infinite.
///
/// ```
/// assert!(tinycnn::kernels::all_finite(&[0.0, -1e30]));
/// assert!(!tinycnn::kernels::all_finite(&[0.0, f32::NAN]));
/// ```
#[inline]
pub fn all_finite(values: &[f32]) -> bool {
    if !HAS_SIMD {
        return values.iter().all(|v| v.is_finite());
    }
    // `v * 0` is 0 for a finite `v` and NaN otherwise, and a NaN survives
    // every later addition: one multiply-add per vector of values, no branch.
    // Four sums, so that the additions do not wait on each other.
    let zero = Vector::splat(0.0);
    let (chunks, rest) = values.as_chunks::<{ 4 * LANES }>();
    let mut sums = [zero; 4];
    for chunk in chunks {
        let (quarters, _) = chunk.as_chunks::<LANES>();
        for (sum, quarter) in sums.iter_mut().zip(quarters) {
            *sum = Vector::new(*quarter).mul_add(zero, *sum);
        }
    }
    let [a, b, c, d] = sums;
    ((a + b) + (c + d)).reduce_add() == 0.0 && rest.iter().all(|v| v.is_finite())
}

/// Index of the largest value, the first one on a tie (0 for an empty slice).
///
/// ```
/// assert_eq!(tinycnn::kernels::argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
/// ```
#[inline]
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// `a * b + c` as `wide`'s `mul_add` computes it in each lane: rounded once
/// where the target's vectors fuse the multiply-add (FMA), twice elsewhere.
/// A scalar twin that sums with it rounds as its SIMD kernel does.
///
/// ```
/// use tinycnn::kernels::mul_add;
/// assert_eq!(mul_add(2.0, 3.0, 1.0), 7.0);
/// ```
#[inline]
pub fn mul_add(a: f32, b: f32, c: f32) -> f32 {
    if HAS_SIMD {
        let [fused, ..] = f32x4::splat(a)
            .mul_add(f32x4::splat(b), f32x4::splat(c))
            .to_array();
        fused
    } else {
        a * b + c
    }
}

/// The larger of two values, as a compare and a select. For numbers it equals
/// `f32::max`, which on targets without a hardware maximum (Cortex-M) becomes
/// a call to a library routine that also sorts out NaNs; the kernels only
/// see finite values.
///
/// ```
/// assert_eq!(tinycnn::kernels::larger(-1.0, 2.0), 2.0);
/// ```
#[inline]
pub fn larger(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}
