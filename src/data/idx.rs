//! Zero-copy views of IDX files, the format of MNIST and Fashion-MNIST.
//!
//! An IDX file is a big-endian magic number `0x0000_08_NN` (`08`: unsigned
//! bytes, `NN`: number of dimensions), one big-endian `u32` per dimension,
//! then the data.

use super::Samples;
use crate::Error;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads the header of an IDX file of unsigned bytes with `N` dimensions:
/// returns the dimensions and the data, checked to be exactly as long as
/// they say.
fn parse_header<'a, const N: usize>(
    bytes: &'a [u8],
    what: &'static str,
    magic: u32,
) -> Result<([usize; N], &'a [u8]), Error> {
    let header_len = 4 + 4 * N;
    let header = bytes.get(..header_len).ok_or(Error::Length {
        what,
        expected: header_len,
        found: bytes.len(),
    })?;
    let word = |i: usize| {
        u32::from_be_bytes([
            header[4 * i],
            header[4 * i + 1],
            header[4 * i + 2],
            header[4 * i + 3],
        ])
    };
    let found = word(0);
    if found != magic {
        return Err(Error::BadMagic { what, found });
    }
    let mut dims = [0usize; N];
    let mut total = 1usize;
    for (i, dim) in dims.iter_mut().enumerate() {
        *dim = word(i + 1) as usize;
        total = total.checked_mul(*dim).ok_or(Error::Dimensions {
            what,
            detail: "dimensions overflow the address space",
        })?;
    }
    let data = &bytes[header_len..];
    if data.len() != total {
        return Err(Error::Length {
            what,
            expected: header_len + total,
            found: bytes.len(),
        });
    }
    Ok((dims, data))
}

/// The images of an IDX image file (`u8`, three dimensions: count, rows, columns).
///
/// ```
/// use tinycnn::data::IdxImages;
/// let file = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 10, 20, 30, 40];
/// let images = IdxImages::parse(&file).unwrap();
/// assert_eq!((images.len(), images.rows(), images.cols()), (2, 1, 2));
/// assert_eq!(images.image(1), Some(&[30u8, 40][..]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct IdxImages<'a> {
    pixels: &'a [u8],
    count: usize,
    rows: usize,
    cols: usize,
}

impl<'a> IdxImages<'a> {
    /// Checks the header and the length and borrows the pixels.
    ///
    /// # Errors
    /// [`Error::BadMagic`] when the file is not a 3-dimensional `u8` IDX file,
    /// [`Error::Length`] when it is shorter or longer than its header says.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let ([count, rows, cols], pixels) = parse_header::<3>(bytes, "IDX image file", IMAGES_MAGIC)?;
        Ok(Self {
            pixels,
            count,
            rows,
            cols,
        })
    }

    /// Number of images.
    pub const fn len(&self) -> usize {
        self.count
    }

    /// A view of pixels that [`parse`](Self::parse) accepted before.
    #[cfg(feature = "std")]
    pub(crate) const fn from_checked(pixels: &'a [u8], count: usize, rows: usize, cols: usize) -> Self {
        Self {
            pixels,
            count,
            rows,
            cols,
        }
    }

    /// `true` when the file holds no images.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Rows per image.
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// Columns per image.
    pub const fn cols(&self) -> usize {
        self.cols
    }

    /// The pixels of image `index`, row-major, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&'a [u8]> {
        let size = self.rows * self.cols;
        self.pixels
            .get(index.checked_mul(size)?..)?
            .get(..size)
            .filter(|_| index < self.count)
    }
}

/// The labels of an IDX label file (`u8`, one dimension).
///
/// ```
/// use tinycnn::data::IdxLabels;
/// let labels = IdxLabels::parse(&[0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4]).unwrap();
/// assert_eq!(labels.as_slice(), &[9, 0, 4]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct IdxLabels<'a> {
    labels: &'a [u8],
}

impl<'a> IdxLabels<'a> {
    /// Checks the header and the length and borrows the labels.
    ///
    /// # Errors
    /// [`Error::BadMagic`] when the file is not a 1-dimensional `u8` IDX file,
    /// [`Error::Length`] when it is shorter or longer than its header says.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let ([_count], labels) = parse_header::<1>(bytes, "IDX label file", LABELS_MAGIC)?;
        Ok(Self { labels })
    }

    /// A view of labels that [`parse`](Self::parse) accepted before.
    #[cfg(feature = "std")]
    pub(crate) const fn from_checked(labels: &'a [u8]) -> Self {
        Self { labels }
    }

    /// The labels, one byte each.
    pub const fn as_slice(&self) -> &'a [u8] {
        self.labels
    }

    /// Number of labels.
    pub const fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when the file holds no labels.
    pub const fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Images and labels of the same IDX data set, checked to agree in count and
/// to be `H x W`; pixels are read as `value / 255`.
///
/// ```
/// use tinycnn::data::{IdxDataset, IdxImages, IdxLabels, Samples};
/// let images = IdxImages::parse(&[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 255]).unwrap();
/// let labels = IdxLabels::parse(&[0, 0, 8, 1, 0, 0, 0, 1, 7]).unwrap();
/// let data = IdxDataset::<1, 2>::new(images, labels).unwrap();
/// let mut image = [[0.0; 2]; 1];
/// assert_eq!(data.read(0, &mut image), Ok(7));
/// assert_eq!(image, [[0.0, 1.0]]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct IdxDataset<'a, const H: usize = 28, const W: usize = 28> {
    images: IdxImages<'a>,
    labels: IdxLabels<'a>,
}

impl<'a, const H: usize, const W: usize> IdxDataset<'a, H, W> {
    /// Pairs images with labels.
    ///
    /// # Errors
    /// [`Error::Dimensions`] when the images are not `H x W` or the two counts differ.
    pub fn new(images: IdxImages<'a>, labels: IdxLabels<'a>) -> Result<Self, Error> {
        if images.rows() != H || images.cols() != W {
            return Err(Error::Dimensions {
                what: "IDX image file",
                detail: "image size differs from the model's input",
            });
        }
        if images.len() != labels.len() {
            return Err(Error::Dimensions {
                what: "IDX data set",
                detail: "image and label files hold different numbers of samples",
            });
        }
        Ok(Self { images, labels })
    }

    /// A pair that [`new`](Self::new) accepted before.
    #[cfg(feature = "std")]
    pub(crate) const fn from_checked(images: IdxImages<'a>, labels: IdxLabels<'a>) -> Self {
        Self { images, labels }
    }

    /// The images.
    pub const fn images(&self) -> IdxImages<'a> {
        self.images
    }

    /// The labels.
    pub const fn labels(&self) -> IdxLabels<'a> {
        self.labels
    }
}

impl<const H: usize, const W: usize> Samples<H, W> for IdxDataset<'_, H, W> {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn read(&self, index: usize, image: &mut [[f32; W]; H]) -> Result<usize, Error> {
        let pixels = self.images.image(index).ok_or(Error::IndexOutOfRange {
            index,
            len: self.len(),
        })?;
        for (out, &p) in image.as_flattened_mut().iter_mut().zip(pixels) {
            *out = f32::from(p) / 255.0;
        }
        Ok(usize::from(self.labels.as_slice()[index]))
    }
}
