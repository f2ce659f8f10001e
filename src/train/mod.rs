//! Training: one per-sample pass (forward, loss, backward), the schedules
//! that run it (the whole network, the last layer alone, streaming SGD; on
//! threads, `host::ParallelTrainer`), the one trait they share ([`Train`]),
//! optimizers, dropout, and the loop that drives epochs.

pub(crate) mod check;
pub(crate) mod fit;
mod head;
mod optim;
mod schedule;
mod streaming;
mod trainer;

pub use crate::kernels::dropout::dropout;
pub use check::DIVERGED_LOSS;
pub use fit::{Epoch, EpochStats, History, Progress};
pub use head::{Head, HeadOf, HeadTrainer, Tuning};
pub use optim::{Adam, AdamConfig, Optimizer, Schedule, Sgd, SgdMomentum, State, Update};
pub use schedule::Train;
pub use streaming::{StreamingSgdTrainer, Streams};
pub use trainer::Trainer;
