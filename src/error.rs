//! The crate's one error type.

use core::fmt;

/// Everything that can go wrong in tinycnn, as a value instead of a panic.
///
/// Every fallible function of the crate returns `Result<_, Error>`. The
/// [`Display`](core::fmt::Display) text says what was wrong in one line.
///
/// ```
/// use tinycnn::Error;
/// let e = Error::Length { what: "image", expected: 784, found: 10 };
/// assert_eq!(e.to_string(), "image has length 10, expected 784");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// A slice or file section had the wrong length.
    Length {
        /// What was measured.
        what: &'static str,
        /// The length that was needed.
        expected: usize,
        /// The length that was found.
        found: usize,
    },
    /// An input value (pixel, learning rate, ...) was NaN or infinite.
    NonFinite {
        /// Where the value was found.
        what: &'static str,
    },
    /// Training produced a NaN or infinite loss or gradient; the parameters were
    /// left as they were before the failed step.
    Diverged,
    /// A label was not below the number of classes.
    LabelOutOfRange {
        /// The label that was found.
        label: usize,
        /// The number of classes of the model.
        classes: usize,
    },
    /// A sample index was not below the number of samples.
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of samples.
        len: usize,
    },
    /// A configuration value was outside its allowed range.
    InvalidConfig {
        /// Which value, and its allowed range.
        what: &'static str,
    },
    /// A data set had no samples where at least one was needed.
    Empty {
        /// Which data set.
        what: &'static str,
    },
    /// A file did not start with the expected magic number.
    BadMagic {
        /// What kind of file was expected.
        what: &'static str,
        /// The magic number that was found.
        found: u32,
    },
    /// A file's declared dimensions did not match what was needed.
    Dimensions {
        /// What kind of file it was.
        what: &'static str,
        /// Explanation of the mismatch.
        detail: &'static str,
    },
    /// A versioned file had a version this build does not read.
    UnsupportedVersion {
        /// The version found in the file.
        found: u32,
    },
    /// A file's checksum did not match its contents.
    Checksum {
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum computed over the contents.
        computed: u32,
    },
    /// A byte buffer was not aligned for a zero-copy view.
    Misaligned {
        /// The alignment needed, in bytes.
        needed: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Length {
                what,
                expected,
                found,
            } => write!(f, "{what} has length {found}, expected {expected}"),
            Error::NonFinite { what } => write!(f, "{what} contains NaN or infinity"),
            Error::Diverged => write!(
                f,
                "training diverged (non-finite loss or gradient); parameters kept from the last good step"
            ),
            Error::LabelOutOfRange { label, classes } => {
                write!(f, "label {label} is out of range for {classes} classes")
            }
            Error::IndexOutOfRange { index, len } => {
                write!(f, "sample index {index} is out of range for {len} samples")
            }
            Error::InvalidConfig { what } => write!(f, "invalid configuration: {what}"),
            Error::Empty { what } => write!(f, "{what} has no samples"),
            Error::BadMagic { what, found } => {
                write!(f, "{what}: wrong magic number 0x{found:08x}")
            }
            Error::Dimensions { what, detail } => write!(f, "{what}: {detail}"),
            Error::UnsupportedVersion { found } => {
                write!(f, "unsupported file version {found}")
            }
            Error::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"
            ),
            Error::Misaligned { needed } => {
                write!(f, "buffer is not aligned to {needed} bytes")
            }
        }
    }
}

impl core::error::Error for Error {}
