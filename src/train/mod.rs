//! Training: backward into static buffers, optimizers, dropout and the fit loop.

pub(crate) mod dropout;
mod head;
mod optim;
mod streaming;
pub(crate) mod trainer;

pub use dropout::dropout;
pub use head::{Head, HeadTrainer};
pub use optim::{Adam, AdamConfig, Optimizer, Schedule, Sgd, SgdMomentum, State, Update};
pub use streaming::StreamingSgdTrainer;
pub use trainer::{EpochStats, FitConfig, History, Progress, Trainer};
