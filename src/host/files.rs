//! Reading possibly gzip-compressed files, atomic writes, blobs on disk.

use super::HostError;
use crate::model::Params;
use std::boxed::Box;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::vec::Vec;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, decompressing it when it is gzip data (told by its
/// first two bytes, not its name).
///
/// # Errors
/// [`HostError::Io`] when the file cannot be read or its gzip data is corrupt
/// or truncated.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, HostError> {
    let raw = read_file(path)?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 2);
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| HostError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(e.kind(), std::format!("corrupt or truncated gzip data ({e})")),
        })?;
    Ok(out)
}

/// Reads a whole file; an error names it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, HostError> {
    fs::read(path).map_err(|source| HostError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` so that a reader sees either the old file or the
/// whole new one, never a part: a temporary file beside it, flushed and
/// synced, then renamed over it.
///
/// # Errors
/// [`HostError::Io`] naming the file that could not be written.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), HostError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        HostError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes the parameters as a weight blob (see [`crate::weights`]).
///
/// # Errors
/// [`HostError::Io`].
pub fn save_blob<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    path: &Path,
) -> Result<(), HostError> {
    let mut bytes = std::vec![0u8; Params::<H, W, K, FLAT, HIDDEN, CLASSES>::BLOB_BYTES];
    params
        .write_blob(&mut bytes)
        .map_err(|error| HostError::Invalid {
            path: path.to_path_buf(),
            error,
        })?;
    write_atomically(path, &bytes)
}

/// Writes the weight blob of stack `S`'s parameters (see
/// [`StackBlob`](crate::weights::StackBlob)) to a file, atomically.
///
/// # Errors
/// [`HostError::Io`].
pub fn save_stack_blob<S: crate::stack::Stack>(params: &S::Params, path: &Path) -> Result<(), HostError> {
    let mut bytes = std::vec![0u8; crate::weights::StackBlob::<S>::BYTES];
    crate::weights::StackBlob::<S>::write(params, &mut bytes).map_err(|error| HostError::Invalid {
        path: path.to_path_buf(),
        error,
    })?;
    write_atomically(path, &bytes)
}

/// Reads a weight blob from a file into a boxed copy of the parameters.
///
/// # Errors
/// [`HostError::Io`], and [`HostError::Invalid`] with the reason the blob
/// was refused.
pub fn load_blob<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    path: &Path,
) -> Result<Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>, HostError> {
    let bytes = read_file(path)?;
    let aligned = AlignedBytes::new(&bytes);
    let view = Params::from_blob(aligned.as_bytes()).map_err(|error| HostError::Invalid {
        path: path.to_path_buf(),
        error,
    })?;
    let mut params = bytemuck::zeroed_box::<Params<H, W, K, FLAT, HIDDEN, CLASSES>>();
    params.as_mut().clone_from(view);
    Ok(params)
}

/// Bytes copied to 4-byte aligned storage, as the zero-copy views of the weight
/// and int8 blobs need (a `Vec<u8>` promises no alignment).
///
/// ```
/// let copy = tinycnn::host::AlignedBytes::new(&[1, 2, 3]);
/// assert_eq!(copy.as_bytes(), &[1, 2, 3]);
/// assert_eq!(copy.as_bytes().as_ptr() as usize % 4, 0);
/// ```
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// An aligned copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = std::vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes, starting at a 4-byte boundary.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.words)[..self.len]
    }
}
