//! Host conveniences (feature `std`): reading data files (raw or gzip),
//! Fashion-MNIST from a directory, safetensors in the Keras layout, weight
//! blobs on disk, and atomic file writes. Every error names the file.

mod checkpoint;
mod fashion;
mod files;
mod parallel;
mod safetensors;

pub use self::safetensors::{
    load_safetensors, load_stack, params_from_safetensors, safetensors_bytes, save_safetensors, save_stack,
    stack_from_safetensors, stack_safetensors_bytes,
};
pub use checkpoint::{
    checkpoint_from_safetensors, load_checkpoint, load_stack_checkpoint, save_checkpoint,
    save_stack_checkpoint, stack_checkpoint_from_safetensors, AdamState, Checkpoint, StackCheckpoint,
};
pub use fashion::{FashionMnist, CLASS_NAMES, DATA_DIR_ENV, SYSTEM_DATA_DIR};
pub use files::{load_blob, read_maybe_gz, save_blob, save_stack_blob, write_atomically, AlignedBytes};
pub use parallel::ParallelTrainer;

use std::fmt;
use std::path::PathBuf;
use std::string::String;

/// An error on the host, always with the file it concerns.
///
/// ```
/// let err = tinycnn::host::read_maybe_gz("/no/such/file".as_ref()).unwrap_err();
/// assert!(err.to_string().starts_with("/no/such/file: "));
/// ```
#[derive(Debug)]
pub enum HostError {
    /// The file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file's contents were refused by the core.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        error: crate::Error,
    },
    /// A safetensors file was malformed or did not fit the model.
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            HostError::Invalid { path, error } => write!(f, "{}: {error}", path.display()),
            HostError::Safetensors { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostError::Io { source, .. } => Some(source),
            HostError::Invalid { error, .. } => Some(error),
            HostError::Safetensors { .. } => None,
        }
    }
}
