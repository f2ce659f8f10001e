//! What every training schedule does, whatever it keeps and however it
//! shares the work: a batch's step, an epoch, an evaluation and a run of
//! epochs, the dropout rate set one way and the optimizer passed one way.

use super::fit::{Epoch, History, Progress};
use crate::data::Inputs;
use crate::model::Evaluation;
use crate::Error;
use rand_core::RngCore;

/// A schedule that trains the model `M` with the optimizer `O`:
/// [`Trainer`](super::Trainer) (any stack, any optimizer),
/// [`ParallelTrainer`](crate::host::ParallelTrainer) (any stack that
/// splits, on threads), [`HeadTrainer`](super::HeadTrainer) (a stack's last
/// layer, the model a [`Tuning`](super::Tuning)) and
/// [`StreamingSgdTrainer`](super::StreamingSgdTrainer) (plain SGD, no
/// gradient the size of the model). Code that drives training through it
/// takes any of them:
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Book;
/// use tinycnn::train::{Epoch, Sgd, StreamingSgdTrainer, Train, Trainer};
/// use tinycnn::Params;
///
/// /// Ten epochs of `trainer`; the first and last training loss.
/// fn ten_epochs<M, T: Train<M, Sgd, Input = [[f32; 4]; 4]>>(trainer: &mut T, model: &mut M) -> (f32, f32) {
///     let data: Vec<_> = (0..32).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
///     let (mut rng, mut order, mut sgd) = (rand_pcg::Pcg32::seed_from_u64(1), [0u32; 32], Sgd::new(0.5).unwrap());
///     trainer.set_dropout(0.1).unwrap();
///     let losses: Vec<f32> = (0..10)
///         .map(|n| {
///             let epoch = Epoch::new(&mut order, 8, &mut rng).number(n);
///             trainer.train_epoch(model, &mut sgd, &data[..], epoch).unwrap()
///         })
///         .collect();
///     (losses[0], losses[9])
/// }
/// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
/// params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(2));
/// let start = params.clone();
/// let (first, last) = ten_epochs(&mut Trainer::<Book<4, 4, 2, 8, 4, 2>>::new(), &mut params);
/// assert!(last < first / 2.0);
/// let mut params = start;
/// let (first, last) = ten_epochs(&mut StreamingSgdTrainer::<8, Book<4, 4, 2, 8, 4, 2>>::new(0.5).unwrap(), &mut params);
/// assert!(last < first / 2.0);
/// ```
pub trait Train<M: ?Sized, O: ?Sized> {
    /// One sample's input.
    type Input;

    /// Sets the dropout rate of the model's `Dropout` layers in training.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `rate` is in `[0, 1)`.
    fn set_dropout(&mut self, rate: f32) -> Result<(), Error>;

    /// The dropout rate.
    fn dropout(&self) -> f32;

    /// One step on the samples at `batch`; returns their mean loss. A
    /// diverged batch ([`Error::Diverged`]) leaves the model and the
    /// optimizer as they were.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Diverged`], [`Error::NonFinite`],
    /// [`Error::LabelOutOfRange`], and whatever reading a sample returns.
    fn train_batch<D: Inputs<Self::Input> + Sync + ?Sized>(
        &mut self,
        model: &mut M,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error>;

    /// One pass over `samples` in a fresh random order, in mini-batches of
    /// the epoch's size; returns the mean of the batch losses. An error
    /// names the epoch and batch; the model keeps the last good step.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Length`] for a short order,
    /// [`Error::InvalidConfig`] for a batch size of 0 or above the set's
    /// size, and whatever [`train_batch`](Self::train_batch) returns.
    fn train_epoch<D, R, P>(
        &mut self,
        model: &mut M,
        optimizer: &mut O,
        samples: &D,
        mut epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        D: Inputs<Self::Input> + Sync + ?Sized,
        R: RngCore,
        P: Progress + Send,
    {
        epoch.run(samples.len(), |batch, rng| {
            self.train_batch(model, optimizer, samples, batch, rng)
        })
    }

    /// Mean loss and accuracy of `model` on `samples`, without dropout.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NonFinite`], [`Error::LabelOutOfRange`],
    /// and whatever reading a sample returns.
    fn evaluate<D: Inputs<Self::Input> + Sync + ?Sized>(
        &mut self,
        model: &M,
        samples: &D,
    ) -> Result<Evaluation, Error>;

    /// `epochs` epochs of [`train_epoch`](Self::train_epoch) from `epoch`
    /// on, each followed by an evaluation on `validation`.
    ///
    /// # Errors
    /// As [`train_epoch`](Self::train_epoch) and
    /// [`evaluate`](Self::evaluate); [`Error::InvalidConfig`] for more
    /// epochs than `E`.
    fn fit<D, V, R, P, const E: usize>(
        &mut self,
        model: &mut M,
        optimizer: &mut O,
        train: &D,
        validation: &V,
        epochs: usize,
        epoch: Epoch<'_, R, P>,
    ) -> Result<History<E>, Error>
    where
        Self: Sized,
        D: Inputs<Self::Input> + Sync + ?Sized,
        V: Inputs<Self::Input> + Sync + ?Sized,
        R: RngCore,
        P: Progress + Send,
    {
        let mut state = (self, model, optimizer);
        epoch.fit(
            epochs,
            &mut state,
            |(schedule, model, optimizer), epoch| {
                let epoch = Epoch {
                    order: &mut *epoch.order,
                    batch_size: epoch.batch_size,
                    rng: &mut *epoch.rng,
                    number: epoch.number,
                    progress: &mut epoch.progress,
                };
                schedule.train_epoch(model, optimizer, train, epoch)
            },
            |(schedule, model, _)| schedule.evaluate(model, validation),
        )
    }
}
