//! The loop that drives a schedule's steps: epochs of shuffled mini-batches,
//! progress, and evaluation after each epoch.

use crate::data::shuffle;
use crate::model::Evaluation;
use crate::Error;
use rand_core::RngCore;

/// Called as training goes, so a host program can draw progress and firmware
/// can log. Both methods do nothing unless overridden; `()` is the silent one.
///
/// ```
/// struct Count(usize);
/// impl tinycnn::train::Progress for Count {
///     fn batch_done(&mut self, _epoch: usize, _batch: usize, _batches: usize, _loss: f32) {
///         self.0 += 1;
///     }
/// }
/// ```
pub trait Progress {
    /// Batch `batch` of `batches` in epoch `epoch` (both from 0) is done; `loss`
    /// is its mean loss.
    fn batch_done(&mut self, epoch: usize, batch: usize, batches: usize, loss: f32) {
        let _ = (epoch, batch, batches, loss);
    }

    /// An epoch of a `fit` is done.
    fn epoch_done(&mut self, stats: &EpochStats) {
        let _ = stats;
    }
}

impl Progress for () {}

impl<P: Progress + ?Sized> Progress for &mut P {
    fn batch_done(&mut self, epoch: usize, batch: usize, batches: usize, loss: f32) {
        (**self).batch_done(epoch, batch, batches, loss);
    }

    fn epoch_done(&mut self, stats: &EpochStats) {
        (**self).epoch_done(stats);
    }
}

/// How an epoch runs: its batch size and number, scratch for the
/// permutation, the random generator (shuffling and dropout), and who hears
/// of progress. Given to `train_epoch`, or to `fit` for its first epoch.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::train::Epoch;
/// let mut order = [0u32; 100];
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// let epoch = Epoch::new(&mut order, 10, &mut rng).number(3);
/// assert_eq!((epoch.number, epoch.batch_size), (3, 10));
/// ```
#[derive(Debug)]
pub struct Epoch<'a, R, P = ()> {
    /// The epoch's number, from 0: what [`Progress`] is told.
    pub number: usize,
    /// Samples per gradient step; the last partial batch of an epoch is
    /// dropped, as the book does.
    pub batch_size: usize,
    /// Scratch for the permutation: at least as long as the training set.
    pub order: &'a mut [u32],
    /// Shuffles the samples and draws dropout masks.
    pub rng: &'a mut R,
    /// Hears of every batch and epoch.
    pub progress: P,
}

impl<'a, R: RngCore> Epoch<'a, R> {
    /// Epoch 0 in batches of `batch_size`, with no progress shown.
    pub fn new(order: &'a mut [u32], batch_size: usize, rng: &'a mut R) -> Self {
        Self {
            number: 0,
            batch_size,
            order,
            rng,
            progress: (),
        }
    }
}

impl<'a, R: RngCore, P: Progress> Epoch<'a, R, P> {
    /// The same, numbered `number`.
    #[must_use]
    pub fn number(self, number: usize) -> Self {
        Self { number, ..self }
    }

    /// The same, telling `progress` of every batch.
    pub fn progress<Q: Progress>(self, progress: Q) -> Epoch<'a, R, Q> {
        Epoch {
            number: self.number,
            batch_size: self.batch_size,
            order: self.order,
            rng: self.rng,
            progress,
        }
    }

    /// One epoch over `n` samples: a fresh permutation, then `step` on each
    /// full batch of indices; returns the mean of the batch losses.
    pub(crate) fn run(
        &mut self,
        n: usize,
        mut step: impl FnMut(&[u32], &mut R) -> Result<f32, Error>,
    ) -> Result<f32, Error> {
        let Batches {
            order,
            rng,
            mut tally,
        } = self.batches(n)?;
        for (b, batch) in order.chunks_exact(tally.batch_size).enumerate() {
            let loss = step(batch, rng).map_err(|e| tally.failed(e))?;
            tally.done(b, loss);
        }
        Ok(tally.mean())
    }

    /// The epoch's batches over `n` samples, in a fresh permutation, for a
    /// schedule that steps through them itself, and the tally it tells of
    /// each batch's loss.
    ///
    /// # Errors
    /// As [`shuffled_batches`].
    pub(crate) fn batches(&mut self, n: usize) -> Result<Batches<'_, R, P>, Error> {
        let order = shuffled_batches(n, self.order, self.batch_size, self.rng)?;
        Ok(Batches {
            tally: Tally {
                progress: &mut self.progress,
                epoch: self.number,
                batch_size: self.batch_size,
                batches: order.len() / self.batch_size,
                stepped: 0,
                loss_sum: 0.0,
            },
            order,
            rng: self.rng,
        })
    }

    /// `epochs` epochs from this one on, each run by `train` (which returns
    /// its mean loss) and followed by `validate`, both given `state`;
    /// returns their statistics.
    pub(crate) fn fit<T, const E: usize>(
        mut self,
        epochs: usize,
        state: &mut T,
        mut train: impl FnMut(&mut T, &mut Self) -> Result<f32, Error>,
        mut validate: impl FnMut(&mut T) -> Result<Evaluation, Error>,
    ) -> Result<History<E>, Error> {
        const TOO_MANY: Error = Error::InvalidConfig {
            what: "more epochs than the history can hold",
        };
        if epochs > E {
            return Err(TOO_MANY);
        }
        let mut history = History::new();
        for _ in 0..epochs {
            let train_loss = train(state, &mut self)?;
            let stats = EpochStats {
                epoch: self.number,
                train_loss,
                validation: validate(state)?,
            };
            self.progress.epoch_done(&stats);
            history.push(stats).map_err(|_| TOO_MANY)?;
            self.number += 1;
        }
        Ok(history)
    }
}

/// An epoch's full batches, one after another in `order`, with the
/// generator and the tally of their losses.
pub(crate) struct Batches<'e, R, P> {
    pub order: &'e [u32],
    pub rng: &'e mut R,
    pub tally: Tally<'e, P>,
}

/// The losses of an epoch's batches so far, each also told to the progress.
pub(crate) struct Tally<'e, P> {
    progress: &'e mut P,
    epoch: usize,
    pub batch_size: usize,
    batches: usize,
    stepped: usize,
    loss_sum: f64,
}

impl<P: Progress> Tally<'_, P> {
    /// Batch `batch` stepped with mean loss `loss`.
    pub fn done(&mut self, batch: usize, loss: f32) {
        self.loss_sum += f64::from(loss);
        self.stepped += 1;
        self.progress.batch_done(self.epoch, batch, self.batches, loss);
    }

    /// The error of the batch after the last one done, a divergence placed
    /// at that batch of this epoch.
    pub fn failed(&self, error: Error) -> Error {
        error.in_batch(self.epoch + 1, self.stepped + 1)
    }

    /// The mean of the batch losses.
    pub fn mean(&self) -> f32 {
        (self.loss_sum / self.batches as f64) as f32
    }
}

/// What one epoch of a `fit` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EpochStats {
    /// The epoch, from 0.
    pub epoch: usize,
    /// Mean of the epoch's batch losses (with dropout active).
    pub train_loss: f32,
    /// Loss and accuracy on the validation set after the epoch.
    pub validation: Evaluation,
}

/// Per-epoch statistics of a fit, at most `E` epochs.
pub type History<const E: usize = 64> = heapless::Vec<EpochStats, E>;

/// Checks an epoch's settings, writes a fresh permutation of `0..n` to
/// `order` and returns the part of it that makes full batches.
pub(crate) fn shuffled_batches<'a>(
    n: usize,
    order: &'a mut [u32],
    batch_size: usize,
    rng: &mut impl RngCore,
) -> Result<&'a [u32], Error> {
    if n == 0 {
        return Err(Error::Empty { what: "training set" });
    }
    if u32::try_from(n).is_err() {
        return Err(Error::InvalidConfig {
            what: "training set has more than 2^32 samples",
        });
    }
    if batch_size == 0 || batch_size > n {
        return Err(Error::InvalidConfig {
            what: "batch size must be between 1 and the training set size",
        });
    }
    let found = order.len();
    let order = order.get_mut(..n).ok_or(Error::Length {
        what: "order buffer",
        expected: n,
        found,
    })?;
    for (i, slot) in order.iter_mut().enumerate() {
        *slot = i as u32;
    }
    shuffle(order, rng);
    Ok(order.get(..n / batch_size * batch_size).unwrap_or_default())
}
