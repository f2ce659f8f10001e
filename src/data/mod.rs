//! Data: the [`Samples`] trait training reads through, IDX parsing, shuffling
//! and the stratified split.

mod idx;
mod samples;

pub use idx::{IdxDataset, IdxImages, IdxLabels};
pub use samples::{shuffle, split_stratified, Inputs, Samples, Subset};
