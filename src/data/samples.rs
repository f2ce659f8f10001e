//! Where training and evaluation read their samples from.

use crate::Error;
use rand_core::RngCore;

/// An indexed set of labelled images, read one at a time.
///
/// Nothing requires the set to be in RAM: firmware can implement this over
/// images in flash, on an SD card, or coming from a sensor.
///
/// ```
/// use tinycnn::data::Samples;
/// use tinycnn::Error;
///
/// /// Image `i` is all `i / 10`, labelled `i % 2`.
/// struct Ramp;
/// impl Samples<2, 2> for Ramp {
///     fn len(&self) -> usize { 10 }
///     fn read(&self, index: usize, image: &mut [[f32; 2]; 2]) -> Result<usize, Error> {
///         if index >= 10 { return Err(Error::IndexOutOfRange { index, len: 10 }); }
///         *image = [[index as f32 / 10.0; 2]; 2];
///         Ok(index % 2)
///     }
/// }
/// let mut image = [[0.0; 2]; 2];
/// assert_eq!(Ramp.read(3, &mut image), Ok(1));
/// assert_eq!(image[1][1], 0.3);
/// ```
pub trait Samples<const H: usize, const W: usize> {
    /// Number of samples.
    fn len(&self) -> usize;

    /// `true` when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes sample `index`'s image (pixels scaled to `[0, 1]`) into `image`
    /// and returns its label.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for `index >= len()`, or whatever reading fails with.
    fn read(&self, index: usize, image: &mut [[f32; W]; H]) -> Result<usize, Error>;
}

/// Images with their labels held in a slice.
impl<const H: usize, const W: usize> Samples<H, W> for [([[f32; W]; H], usize)] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn read(&self, index: usize, image: &mut [[f32; W]; H]) -> Result<usize, Error> {
        let (pixels, label) = self.get(index).ok_or(Error::IndexOutOfRange {
            index,
            len: self.len(),
        })?;
        *image = *pixels;
        Ok(*label)
    }
}

/// The samples of `inner` at the listed indices, in that order.
///
/// ```
/// use tinycnn::data::{Samples, Subset};
/// let all = [([[0.0]; 1], 0), ([[1.0]; 1], 1), ([[2.0]; 1], 2)];
/// let picked = Subset::new(&all[..], &[2, 0]);
/// let mut image = [[0.0]; 1];
/// assert_eq!(picked.len(), 2);
/// assert_eq!(picked.read(0, &mut image), Ok(2));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Subset<'a, S: ?Sized> {
    inner: &'a S,
    indices: &'a [u32],
}

impl<'a, S: ?Sized> Subset<'a, S> {
    /// A view of `inner` through `indices`; an index past the end of `inner`
    /// is reported when it is read.
    pub const fn new(inner: &'a S, indices: &'a [u32]) -> Self {
        Self { inner, indices }
    }

    /// The indices into the inner set.
    pub const fn indices(&self) -> &'a [u32] {
        self.indices
    }
}

impl<const H: usize, const W: usize, S: Samples<H, W> + ?Sized> Samples<H, W> for Subset<'_, S> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn read(&self, index: usize, image: &mut [[f32; W]; H]) -> Result<usize, Error> {
        let inner = self.indices.get(index).ok_or(Error::IndexOutOfRange {
            index,
            len: self.indices.len(),
        })?;
        self.inner.read(*inner as usize, image)
    }
}

/// Shuffles `values` in place (Fisher-Yates), one 32-bit draw per element.
///
/// ```
/// use rand_core::SeedableRng;
/// let mut v = [0u32, 1, 2, 3, 4, 5, 6, 7];
/// tinycnn::data::shuffle(&mut v, &mut rand_pcg::Pcg32::seed_from_u64(1));
/// let mut sorted = v;
/// sorted.sort();
/// assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7]);
/// assert_ne!(v, sorted);
/// ```
pub fn shuffle<T>(values: &mut [T], rng: &mut impl RngCore) {
    for i in (1..values.len()).rev() {
        values.swap(i, below(rng, i + 1));
    }
}

/// A random index below `n` (`n <= 2^32`) by multiply-shift: the bias is at
/// most `n / 2^32`, below 2e-5 for Fashion-MNIST's 60,000 images.
#[inline]
fn below(rng: &mut impl RngCore, n: usize) -> usize {
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// Splits sample indices `0..labels.len()` into a validation part holding
/// `round(fraction * count)` samples of each class and a training part with
/// the rest, choosing at random.
///
/// Writes the validation indices, then the training indices, each sorted, to
/// `out`, and returns the number of validation indices.
///
/// ```
/// use rand_core::SeedableRng;
/// let labels = [0u8, 1, 0, 1, 0, 1, 0, 1, 0, 1];
/// let mut out = [0u32; 10];
/// let n_val = tinycnn::data::split_stratified::<2>(&labels, 0.2, &mut rand_pcg::Pcg32::seed_from_u64(3), &mut out).unwrap();
/// assert_eq!(n_val, 2);
/// assert_eq!(labels[out[0] as usize] + labels[out[1] as usize], 1); // one of each class
/// ```
///
/// # Errors
/// [`Error::Length`] when `out` is shorter than `labels`,
/// [`Error::LabelOutOfRange`] for a label `>= CLASSES`, and
/// [`Error::InvalidConfig`] for a fraction outside `[0, 1]`.
pub fn split_stratified<const CLASSES: usize>(
    labels: &[u8],
    fraction: f32,
    rng: &mut impl RngCore,
    out: &mut [u32],
) -> Result<usize, Error> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::InvalidConfig {
            what: "validation fraction must be in [0, 1]",
        });
    }
    let found = out.len();
    let out = out.get_mut(..labels.len()).ok_or(Error::Length {
        what: "split output",
        expected: labels.len(),
        found,
    })?;
    let mut wanted = [0usize; CLASSES];
    for &label in labels {
        *wanted.get_mut(usize::from(label)).ok_or(Error::LabelOutOfRange {
            label: label.into(),
            classes: CLASSES,
        })? += 1;
    }
    for w in &mut wanted {
        *w = libm::roundf(*w as f32 * fraction) as usize;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = i as u32;
    }
    shuffle(out, rng);
    // Stable partition: the first `wanted[c]` shuffled indices of each class go first.
    let mut n_val = 0;
    for i in 0..out.len() {
        let class = usize::from(labels[out[i] as usize]);
        if wanted[class] > 0 {
            wanted[class] -= 1;
            out.swap(n_val, i);
            n_val += 1;
        }
    }
    let (validation, train) = out.split_at_mut(n_val);
    validation.sort_unstable();
    train.sort_unstable();
    Ok(n_val)
}

/// An indexed set of labelled inputs of a map type `I` (for a
/// [`Stack`](crate::stack::Stack), its input: `[[f32; W]; H]` for one
/// channel, `[[[f32; C]; W]; H]` for several), read one at a time.
///
/// Every one-channel image set ([`Samples`]) is one; so are slices of
/// `(input, label)` pairs of several channels.
///
/// ```
/// use tinycnn::data::Inputs;
/// let rgb = [([[[0.5f32; 3]; 2]; 2], 1usize)];
/// let mut input = [[[0.0; 3]; 2]; 2];
/// assert_eq!(rgb[..].read(0, &mut input), Ok(1));
/// assert_eq!(input[1][1][2], 0.5);
/// ```
pub trait Inputs<I> {
    /// Number of samples.
    fn len(&self) -> usize;

    /// `true` when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes sample `index`'s input into `input` and returns its label.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] for `index >= len()`, or whatever reading fails with.
    fn read(&self, index: usize, input: &mut I) -> Result<usize, Error>;
}

impl<const H: usize, const W: usize, S: Samples<H, W> + ?Sized> Inputs<[[f32; W]; H]> for S {
    fn len(&self) -> usize {
        Samples::len(self)
    }

    fn read(&self, index: usize, input: &mut [[f32; W]; H]) -> Result<usize, Error> {
        Samples::read(self, index, input)
    }
}

/// Inputs of several channels with their labels held in a slice.
impl<const H: usize, const W: usize, const C: usize> Inputs<[[[f32; C]; W]; H]>
    for [([[[f32; C]; W]; H], usize)]
{
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn read(&self, index: usize, input: &mut [[[f32; C]; W]; H]) -> Result<usize, Error> {
        let (value, label) = self.get(index).ok_or(Error::IndexOutOfRange {
            index,
            len: self.len(),
        })?;
        *input = *value;
        Ok(*label)
    }
}
