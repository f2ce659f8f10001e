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
use crate::stack::Book8;
use crate::stack::{Layer, Logits, Stack};
use crate::Error;

/// The first four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"TCNN";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the payload.
pub const HEADER_BYTES: usize = 36;

const F32_BLOB: BlobFormat = BlobFormat {
    magic: MAGIC,
    version: VERSION,
    what: "weight blob",
};

/// The header both blob formats share (the f32 one here, the int8 one of
/// [`crate::quant`]): magic, version, the five sizes, the payload length and
/// the payload's CRC-32, as little-endian words.
pub(crate) struct BlobFormat {
    pub(crate) magic: [u8; 4],
    pub(crate) version: u32,
    pub(crate) what: &'static str,
}

impl BlobFormat {
    /// Checks `blob` against this format, the model's `sizes` and the payload
    /// length it must have, then the checksum; returns the payload.
    pub(crate) fn payload<'a>(
        &self,
        blob: &'a [u8],
        sizes: [u32; 5],
        payload_bytes: usize,
    ) -> Result<&'a [u8], Error> {
        let what = self.what;
        let length = Error::Length {
            what,
            expected: HEADER_BYTES + payload_bytes,
            found: blob.len(),
        };
        let header = blob.get(..HEADER_BYTES).ok_or(length)?;
        let word = |i: usize| {
            u32::from_le_bytes([
                header[4 * i],
                header[4 * i + 1],
                header[4 * i + 2],
                header[4 * i + 3],
            ])
        };
        if header[..4] != self.magic {
            return Err(Error::BadMagic {
                what,
                found: u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
            });
        }
        if word(1) != self.version {
            return Err(Error::UnsupportedVersion { found: word(1) });
        }
        if [word(2), word(3), word(4), word(5), word(6)] != sizes {
            return Err(Error::Dimensions {
                what,
                detail: "the blob is for a model of other sizes",
            });
        }
        if word(7) as usize != payload_bytes || blob.len() != HEADER_BYTES + payload_bytes {
            return Err(length);
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

    /// Writes the header (`HEADER_BYTES` long) for `payload`.
    pub(crate) fn write_header(&self, header: &mut [u8], sizes: [u32; 5], payload: &[u8]) {
        self.write_header_for(header, sizes, payload.len(), crc32fast::hash(payload));
    }

    /// Writes the header for a payload of `length` bytes whose CRC-32 is `crc`.
    pub(crate) fn write_header_for(&self, header: &mut [u8], sizes: [u32; 5], length: usize, crc: u32) {
        let mut words = [0u32; 8];
        words[0] = self.version;
        words[1..6].copy_from_slice(&sizes);
        words[6] = length as u32;
        words[7] = crc;
        header[..4].copy_from_slice(&self.magic);
        for (chunk, word) in header[4..].chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
    }
}

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
        F32_BLOB.write_header(header, Self::size_words(), payload);
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
        F32_BLOB.payload(blob, Self::size_words(), Self::BYTES)
    }
}

impl Book8 {
    /// Size of the weight blob of the `f32` export (the book's network).
    pub const BLOB_BYTES: usize = crate::FashionParams::BLOB_BYTES;

    /// Hands the weight blob of the `f32` export of `params` (the book's
    /// network, [`Book8::export`](Stack::export); the format
    /// [`Params::write_blob`] writes, which [`Params::from_blob`] and the
    /// host's tools read) to `write`, a few hundred bytes at a time, without
    /// the export in memory: how firmware that trained in a small RAM sends
    /// its model out (a host file over semihosting, a serial line, flash
    /// pages). Stops at the first error `write` returns.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::stack::{Book, Book8, Stack};
    /// use tinycnn::FashionParams;
    /// let mut params8 = Book8::boxed_params();
    /// Book8::init_glorot(&mut params8, &mut rand_pcg::Pcg32::seed_from_u64(2));
    /// let mut blob = Vec::new();
    /// Book8::write_blob_with(&params8, |bytes| -> Result<(), ()> { Ok(blob.extend_from_slice(bytes)) }).unwrap();
    /// assert_eq!(blob.len(), Book8::BLOB_BYTES);
    /// let mut exported = FashionParams::boxed();
    /// Book8::export::<Book>(&params8, &mut exported);
    /// let mut aligned = vec![0u32; blob.len() / 4];
    /// bytemuck::cast_slice_mut::<u32, u8>(&mut aligned).copy_from_slice(&blob);
    /// assert_eq!(FashionParams::from_blob(bytemuck::cast_slice(&aligned)).unwrap(), &*exported);
    /// ```
    ///
    /// # Errors
    /// Whatever `write` returns.
    pub fn write_blob_with<E>(
        params: &<Self as Stack>::Params,
        mut write: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let each =
            |f: &mut dyn FnMut(f32)| <Self as Stack>::Layers::each_exported(params.as_flat(), &mut |v| f(v));
        let mut crc = crc32fast::Hasher::new();
        each(&mut |v| crc.update(&v.to_le_bytes()));
        let mut header = [0u8; HEADER_BYTES];
        F32_BLOB.write_header_for(
            &mut header,
            crate::FashionParams::size_words(),
            crate::FashionParams::BYTES,
            crc.finalize(),
        );
        write(&header)?;
        let mut chunk = [0u8; 256];
        let mut filled = 0;
        let mut result = Ok(());
        each(&mut |v| {
            if result.is_err() {
                return;
            }
            chunk[filled..filled + 4].copy_from_slice(&v.to_le_bytes());
            filled += 4;
            if filled == chunk.len() {
                result = write(&chunk);
                filled = 0;
            }
        });
        result?;
        write(&chunk[..filled])
    }
}

/// The first four bytes of a [`Stack`]'s weight blob.
pub const STACK_MAGIC: [u8; 4] = *b"TCNS";

const STACK_BLOB: BlobFormat = BlobFormat {
    magic: STACK_MAGIC,
    version: VERSION,
    what: "stack weight blob",
};

/// A stack's weight blob: the layout of the book's (magic `b"TCNS"`), its
/// five size words the stack's parameter count, input values,
/// convolutions, dense layers and classes; the payload its parameters in
/// order.
///
/// ```
/// use tinycnn::stack::Stack;
/// use tinycnn::weights::{Aligned, StackBlob};
/// use tinycnn::ParamBuffer;
/// tinycnn::stack! {
///     pub struct Rgb: [4, 4, 3] => { Conv2d(2, 3), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// let mut params = <Rgb as Stack>::Params::ZERO;
/// params[7] = 0.25;
/// let mut out = Aligned([0u8; 1024]);
/// let len = StackBlob::<Rgb>::write(&params, &mut out.0).unwrap();
/// assert_eq!(len, StackBlob::<Rgb>::BYTES);
/// assert_eq!(StackBlob::<Rgb>::view(&out.0[..len]).unwrap()[7], 0.25);
/// ```
pub struct StackBlob<S>(core::marker::PhantomData<S>);

impl<S: Stack> StackBlob<S> {
    /// Size of the blob in bytes.
    pub const BYTES: usize = HEADER_BYTES + S::PARAMETER_BYTES;

    fn size_words() -> [u32; 5] {
        let input = size_of::<S::Input>() / 4;
        let classes = <S::Logits as Logits>::CLASSES;
        [S::PARAMETERS, input, S::Layers::CONVS, S::Layers::DENSES, classes].map(|v| v as u32)
    }

    /// Writes the blob of `params` to the start of `out`; returns its length.
    ///
    /// # Errors
    /// [`Error::Length`] when `out` is shorter than [`BYTES`](Self::BYTES).
    pub fn write(params: &S::Params, out: &mut [u8]) -> Result<usize, Error> {
        let found = out.len();
        let out = out.get_mut(..Self::BYTES).ok_or(Error::Length {
            what: "blob buffer",
            expected: Self::BYTES,
            found,
        })?;
        let (header, payload) = out.split_at_mut(HEADER_BYTES);
        for (chunk, value) in payload.chunks_exact_mut(4).zip(params.as_flat()) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        STACK_BLOB.write_header(header, Self::size_words(), payload);
        Ok(Self::BYTES)
    }

    /// Checks a blob and views its payload as the stack's parameters,
    /// without copying.
    ///
    /// # Errors
    /// As [`Params::from_blob`]; [`Error::Dimensions`] when the blob is of
    /// another stack.
    pub fn view(blob: &[u8]) -> Result<&S::Params, Error> {
        let payload = STACK_BLOB.payload(blob, Self::size_words(), S::PARAMETER_BYTES)?;
        if cfg!(target_endian = "big") {
            return Err(Error::Dimensions {
                what: "stack weight blob",
                detail: "zero-copy needs a little-endian target",
            });
        }
        let params: &S::Params = bytemuck::try_from_bytes(payload).map_err(|_| Error::Misaligned {
            needed: core::mem::align_of::<S::Params>(),
        })?;
        if !all_finite(params.as_flat()) {
            return Err(Error::NonFinite {
                what: "stack weight blob",
            });
        }
        Ok(params)
    }
}
