//! Fashion-MNIST from a directory of its four IDX files.

use super::{read_maybe_gz, HostError};
use crate::data::{IdxDataset, IdxImages, IdxLabels};
use std::path::{Path, PathBuf};
use std::vec::Vec;

/// Where Debian's and Ubuntu's `dataset-fashion-mnist` package puts the files.
pub const SYSTEM_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable naming a directory with the four files.
pub const DATA_DIR_ENV: &str = "TINYCNN_DATA";

/// The ten class names, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The training and test sets, read and checked.
///
/// ```no_run
/// use tinycnn::data::Samples;
/// let data = tinycnn::host::FashionMnist::load(tinycnn::host::SYSTEM_DATA_DIR.as_ref()).unwrap();
/// assert_eq!(data.train().len(), 60_000);
/// ```
#[derive(Debug, Clone)]
pub struct FashionMnist {
    dir: PathBuf,
    files: [Vec<u8>; 4],
}

impl FashionMnist {
    /// Reads the four files from `dir`, each as `NAME.gz` or plain `NAME`, and
    /// checks that they parse and agree.
    ///
    /// # Errors
    /// [`HostError::Io`] for a missing or unreadable file, [`HostError::Invalid`]
    /// for a malformed one, each naming the file.
    pub fn load(dir: &Path) -> Result<Self, HostError> {
        let mut files: [Vec<u8>; 4] = Default::default();
        for (bytes, name) in files.iter_mut().zip(FILES) {
            let gz = dir.join(std::format!("{name}.gz"));
            let plain = dir.join(name);
            *bytes = read_maybe_gz(if plain.exists() && !gz.exists() {
                &plain
            } else {
                &gz
            })?;
        }
        let data = Self {
            dir: dir.to_path_buf(),
            files,
        };
        for (i, name) in FILES.iter().enumerate().step_by(2) {
            let invalid = |error| HostError::Invalid {
                path: dir.join(name),
                error,
            };
            let images = IdxImages::parse(&data.files[i]).map_err(invalid)?;
            let labels = IdxLabels::parse(&data.files[i + 1]).map_err(|error| HostError::Invalid {
                path: dir.join(FILES[i + 1]),
                error,
            })?;
            IdxDataset::<28, 28>::new(images, labels).map_err(invalid)?;
            if let Some(&label) = labels
                .as_slice()
                .iter()
                .find(|&&l| usize::from(l) >= CLASS_NAMES.len())
            {
                let error = crate::Error::LabelOutOfRange {
                    label: label.into(),
                    classes: CLASS_NAMES.len(),
                };
                return Err(HostError::Invalid {
                    path: dir.join(FILES[i + 1]),
                    error,
                });
            }
        }
        Ok(data)
    }

    /// The directory the files came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The training set (60,000 images in the full data).
    pub fn train(&self) -> IdxDataset<'_> {
        self.pair(0)
    }

    /// The test set (10,000 images in the full data).
    pub fn test(&self) -> IdxDataset<'_> {
        self.pair(2)
    }

    fn pair(&self, i: usize) -> IdxDataset<'_> {
        // `load` checked exactly these bytes: only the header lengths are skipped here.
        let images = IdxImages::from_checked(&self.files[i][16..], self.files[i + 1].len() - 8, 28, 28);
        let labels = IdxLabels::from_checked(&self.files[i + 1][8..]);
        IdxDataset::from_checked(images, labels)
    }
}
