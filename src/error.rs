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
    /// Training diverged: a batch's loss or gradient was NaN or infinite, or
    /// its loss exploded past [`DIVERGED_LOSS`](crate::train::DIVERGED_LOSS).
    /// The parameters are left as they were before the failed step.
    Diverged(Divergence),
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
            Error::Diverged(divergence) => divergence.fmt(f),
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

/// Where training diverged, and the loss it had reached.
///
/// ```
/// use tinycnn::error::Divergence;
/// use tinycnn::Error;
/// let e = Error::Diverged(Divergence { epoch: 3, batch: 12, loss: 3.1e22 });
/// assert_eq!(e.to_string(), "training diverged at epoch 3, batch 12: loss 3.1e22");
/// let step = Divergence { epoch: 0, batch: 0, loss: f32::NAN };
/// assert_eq!(step.to_string(), "training diverged: loss NaN");
/// let just_over = Divergence { epoch: 1, batch: 2, loss: 1001.0 };
/// assert_eq!(just_over.to_string(), "training diverged at epoch 1, batch 2: loss 1.0e3");
/// let small = Divergence { epoch: 1, batch: 2, loss: -0.0999 };
/// assert_eq!(small.to_string(), "training diverged at epoch 1, batch 2: loss -1.0e-1");
/// ```
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Divergence {
    /// The epoch, from 1; 0 for a step taken outside an epoch (`train_batch`).
    pub epoch: usize,
    /// The batch within the epoch, from 1; 0 outside an epoch.
    pub batch: usize,
    /// The batch's mean loss: NaN, infinite, or above the bound.
    pub loss: f32,
}

impl Divergence {
    /// A step's divergence with mean loss `loss`, not yet placed in an epoch.
    pub(crate) const fn of_step(loss: f32) -> Error {
        Error::Diverged(Divergence {
            epoch: 0,
            batch: 0,
            loss,
        })
    }
}

/// Equal when every field is, the loss compared by its bits (so a NaN loss
/// equals itself and `Error` stays `Eq`).
impl PartialEq for Divergence {
    fn eq(&self, other: &Self) -> bool {
        (self.epoch, self.batch, self.loss.to_bits()) == (other.epoch, other.batch, other.loss.to_bits())
    }
}

impl Eq for Divergence {}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch == 0 {
            write!(f, "training diverged: loss {}", Scientific(self.loss))
        } else {
            write!(
                f,
                "training diverged at epoch {}, batch {}: loss {}",
                self.epoch,
                self.batch,
                Scientific(self.loss)
            )
        }
    }
}

/// A value as `3.1e22`: one decimal and a power of ten, printed with the
/// fixed-point and integer formatting firmware links anyway (`{:e}` would
/// add its own code, kilobytes a full flash does not have).
struct Scientific(f32);

impl fmt::Display for Scientific {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0;
        if !value.is_finite() || value == 0.0 {
            return write!(f, "{value}");
        }
        let mut exponent = libm::floorf(libm::log10f(libm::fabsf(value))) as i32;
        let mut mantissa = value / libm::powf(10.0, exponent as f32);
        // One decimal: 9.96 reads 1.0 at the next power.
        if libm::fabsf(mantissa) >= 9.95 {
            mantissa /= 10.0;
            exponent += 1;
        }
        write!(f, "{mantissa:.1}e{exponent}")
    }
}

impl Error {
    /// The same error, a divergence placed at `batch` of `epoch` (both
    /// from 1); any other error unchanged.
    pub(crate) fn in_batch(self, epoch: usize, batch: usize) -> Self {
        match self {
            Error::Diverged(Divergence { loss, .. }) => Error::Diverged(Divergence { epoch, batch, loss }),
            other => other,
        }
    }
}
