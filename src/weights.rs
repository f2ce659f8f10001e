//! The flash blob: parameters as a flat, versioned, checksummed little-endian
//! file that firmware borrows in place, without copying.
//!
//! Layout (all integers `u32` little-endian):
//!
//! | offset | content |
//! |---|---|
//! | 0 | magic `b"TCNN"` |
//! | 4 | format version, 1 |
//! | 8 | `H`, `W`, `K`, `HIDDEN`, `CLASSES` (five words) |
//! | 28 | payload length in bytes |
//! | 32 | CRC-32 (IEEE) of the payload |
//! | 36 | payload: the [`Params`] tensors in storage order, `f32` little-endian |
//!
//! The payload starts at a multiple of 4, so a blob placed at a 4-byte
//! boundary (see [`Aligned`]) is viewed as `&Params` directly.

use crate::kernels::all_finite;
use crate::model::{ParamBuffer, Params};
use crate::Error;

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"TCNN";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the payload.
pub const HEADER_BYTES: usize = 36;

/// Bytes wrapped so they start at a 4-byte boundary, for `include_bytes!`.
///
/// ```
/// use tinycnn::weights::Aligned;
/// static BLOB: &Aligned<[u8]> = &Aligned(*b"four");
/// assert_eq!(BLOB.0.as_ptr() as usize % 4, 0);
/// ```
/// On firmware: `static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!("model.tcnn"));`.
#[repr(C, align(4))]
pub struct Aligned<B: ?Sized>(pub B);

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Size of this model's blob in bytes.
    pub const BLOB_BYTES: usize = HEADER_BYTES + Self::BYTES;

    fn size_words() -> [u32; 5] {
        [H, W, K, HIDDEN, CLASSES].map(|v| v as u32)
    }

    /// Writes the blob to the start of `out` and returns its length.
    ///
    /// ```
    /// use tinycnn::{weights::Aligned, FashionParams};
    /// let mut params = FashionParams::boxed();
    /// params.dense2_bias[3] = 1.5;
    /// let mut out = Box::new(Aligned([0u8; FashionParams::BLOB_BYTES]));
    /// assert_eq!(params.write_blob(&mut out.0), Ok(FashionParams::BLOB_BYTES));
    /// let view = FashionParams::from_blob(&out.0).unwrap();
    /// assert_eq!(view.dense2_bias[3], 1.5);
    /// ```
    ///
    /// # Errors
    /// [`Error::Length`] when `out` is shorter than [`BLOB_BYTES`](Self::BLOB_BYTES).
    pub fn write_blob(&self, out: &mut [u8]) -> Result<usize, Error> {
        let found = out.len();
        let out = out.get_mut(..Self::BLOB_BYTES).ok_or(Error::Length {
            what: "blob buffer",
            expected: Self::BLOB_BYTES,
            found,
        })?;
        let (header, payload) = out.split_at_mut(HEADER_BYTES);
        for (chunk, value) in payload.chunks_exact_mut(4).zip(self.as_flat()) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        let mut words = [0u32; 8];
        words[0] = VERSION;
        words[1..6].copy_from_slice(&Self::size_words());
        words[6] = Self::BYTES as u32;
        words[7] = crc32fast::hash(payload);
        header[..4].copy_from_slice(&MAGIC);
        for (chunk, word) in header[4..].chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Ok(Self::BLOB_BYTES)
    }

    /// Checks a blob and views its payload as parameters, without copying.
    ///
    /// # Errors
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`],
    /// [`Error::Dimensions`] when the blob is for other sizes,
    /// [`Error::Length`], [`Error::Checksum`], [`Error::NonFinite`] for NaN or
    /// infinite weights, and [`Error::Misaligned`] when the payload is not at
    /// a 4-byte boundary (wrap the bytes in [`Aligned`]). A big-endian target
    /// cannot view the little-endian payload in place and gets
    /// [`Error::Dimensions`].
    pub fn from_blob(blob: &[u8]) -> Result<&Self, Error> {
        let payload = Self::check_blob(blob)?;
        if cfg!(target_endian = "big") {
            return Err(Error::Dimensions {
                what: "weight blob",
                detail: "zero-copy needs a little-endian target",
            });
        }
        let params: &Self = bytemuck::try_from_bytes(payload).map_err(|_| Error::Misaligned {
            needed: core::mem::align_of::<Self>(),
        })?;
        if !all_finite(params.as_flat()) {
            return Err(Error::NonFinite { what: "weight blob" });
        }
        Ok(params)
    }

    /// Validates the header and checksum and returns the payload.
    fn check_blob(blob: &[u8]) -> Result<&[u8], Error> {
        const WHAT: &str = "weight blob";
        let header = blob.get(..HEADER_BYTES).ok_or(Error::Length {
            what: WHAT,
            expected: Self::BLOB_BYTES,
            found: blob.len(),
        })?;
        let word = |i: usize| {
            u32::from_le_bytes([
                header[4 * i],
                header[4 * i + 1],
                header[4 * i + 2],
                header[4 * i + 3],
            ])
        };
        if header[..4] != MAGIC {
            return Err(Error::BadMagic {
                what: WHAT,
                found: u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
            });
        }
        if word(1) != VERSION {
            return Err(Error::UnsupportedVersion { found: word(1) });
        }
        if [word(2), word(3), word(4), word(5), word(6)] != Self::size_words() {
            return Err(Error::Dimensions {
                what: WHAT,
                detail: "the blob is for a model of other sizes",
            });
        }
        if word(7) as usize != Self::BYTES || blob.len() != Self::BLOB_BYTES {
            return Err(Error::Length {
                what: WHAT,
                expected: Self::BLOB_BYTES,
                found: blob.len(),
            });
        }
        let payload = &blob[HEADER_BYTES..];
        let computed = crc32fast::hash(payload);
        if computed != word(8) {
            return Err(Error::Checksum {
                stored: word(8),
                computed,
            });
        }
        Ok(payload)
    }
}
