//! Training any [`Stack`]: the per-sample pass over its layers, a batch's
//! step, epochs and `fit`, with SGD or Adam (any [`Optimizer`]).

use super::fit::{Epoch, History, Progress};
use super::pass::{batch_scale, checked_loss};
use super::Optimizer;
use crate::data::Inputs;
use crate::kernels::all_finite;
use crate::model::Evaluation;
use crate::stack::{Layer, Logits, Stack, Zeroed};
use crate::{Error, ParamBuffer};
use rand_core::RngCore;

/// The layers' state of a stack `S`.
type StateOf<S> = <<S as Stack>::Layers as Layer>::State;

/// Trains a [`Stack`]: the batch gradient, what the pass keeps of the one
/// sample in flight, and the dropout rate. Parameters and optimizer are
/// separate values, as for [`Trainer`](super::Trainer).
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Stack;
/// use tinycnn::train::{Epoch, Sgd, StackTrainer};
/// use tinycnn::ParamBuffer;
///
/// tinycnn::stack! {
///     /// Two channels of 8x8, one convolution, two classes.
///     pub struct Tiny: [8, 8, 2] => { Conv2d(4, 3), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// // Class 0: the first channel lit, class 1: the second; the other dimmer.
/// let data: Vec<_> = (0..64)
///     .map(|i| {
///         let mut pixel = [(i % 5) as f32 / 10.0; 2];
///         pixel[i % 2] = 1.0;
///         ([[pixel; 8]; 8], i % 2)
///     })
///     .collect();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// let mut params = <Tiny as Stack>::Params::ZERO;
/// Tiny::init_glorot(&mut params, &mut rng);
/// let mut trainer = StackTrainer::<Tiny>::boxed();
/// let mut sgd = Sgd::new(0.5).unwrap();
/// let mut order = [0u32; 64];
/// let before = trainer.evaluate(&params, &data[..]).unwrap();
/// for number in 0..10 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(number);
///     trainer.train_epoch(&mut params, &mut sgd, &data[..], epoch).unwrap();
/// }
/// let after = trainer.evaluate(&params, &data[..]).unwrap();
/// assert!(after.loss < before.loss / 2.0 && after.accuracy == 1.0, "{before:?} {after:?}");
/// ```
#[repr(C)]
pub struct StackTrainer<S: Stack> {
    grads: S::Params,
    state: StateOf<S>,
    input: S::Input,
    logits_grad: S::Logits,
    dropout: f32,
}

impl<S: Stack> StackTrainer<S> {
    /// Bytes of working memory of training with plain SGD, beyond the
    /// parameters: this trainer (the batch gradient and one sample's maps
    /// and gradients).
    pub const BYTES: usize = size_of::<Self>();

    /// A trainer with zero gradients and no dropout, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            grads: <S::Params as ParamBuffer>::ZERO,
            state: StateOf::<S>::ZERO,
            input: S::Input::ZERO,
            logits_grad: S::Logits::ZERO,
            dropout: 0.0,
        }
    }

    /// The same, on the heap, never built on the stack.
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        let mut trainer = std::boxed::Box::<Self>::new_uninit();
        // SAFETY: every field of the trainer is a number, an array of
        // numbers, or a struct of those (the stack's states hold `f32`,
        // `u8`, `u16` and `usize` values): all zero bytes are a valid value.
        unsafe {
            core::ptr::write_bytes(trainer.as_mut_ptr(), 0, 1);
            trainer.assume_init()
        }
    }

    /// Sets the dropout rate (in `[0, 1)`) of every `Dropout` of the stack.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] outside `[0, 1)`.
    pub fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::InvalidConfig {
                what: "dropout rate must be in [0, 1)",
            });
        }
        self.dropout = rate;
        Ok(())
    }

    /// One sample's forward pass, its loss and backward, the gradient
    /// scaled by `scale` and added to the batch's. Returns the loss.
    fn accumulate(
        &mut self,
        params: &S::Params,
        label: usize,
        scale: f32,
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        if !all_finite(bytemuck::cast_slice(core::slice::from_ref(&self.input))) {
            return Err(Error::NonFinite { what: "input" });
        }
        let params = params.as_flat();
        S::Layers::forward(params, &mut self.input, &mut self.state, self.dropout, rng);
        let loss = S::Layers::output(&self.state).cross_entropy(label, scale, &mut self.logits_grad)?;
        S::Layers::backward(
            params,
            self.grads.as_flat_mut(),
            &self.input,
            &mut self.state,
            &self.logits_grad,
            None,
            self.dropout,
            None,
        );
        Ok(loss)
    }

    /// One gradient step on the samples at `batch`; returns the batch's
    /// mean loss. A diverged batch (as
    /// [`Trainer::train_batch`](super::Trainer::train_batch)) leaves
    /// `params` and the optimizer as they were.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Diverged`], [`Error::NonFinite`] for an
    /// input that is not finite, [`Error::LabelOutOfRange`], and whatever
    /// reading a sample returns.
    pub fn train_batch<D: Inputs<S::Input> + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        let (loss, grads) = self.gradient(params, samples, batch, rng)?;
        optimizer.step(params.as_flat_mut(), grads.as_flat())?;
        Ok(loss)
    }

    /// The mean loss of the samples at `batch` and its gradient, without a
    /// step: what [`train_batch`](Self::train_batch) steps along.
    ///
    /// # Errors
    /// As [`train_batch`](Self::train_batch).
    pub fn gradient<D: Inputs<S::Input> + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<(f32, &S::Params), Error> {
        let () = S::PARAMS_MATCH;
        let scale = batch_scale(batch, usize::MAX)?;
        self.grads.as_flat_mut().fill(0.0);
        let mut loss_sum = 0.0f32;
        for &index in batch {
            let label = samples.read(index as usize, &mut self.input)?;
            loss_sum += self.accumulate(params, label, scale, rng)?;
        }
        let loss = checked_loss(loss_sum, scale, [self.grads.as_flat()])?;
        Ok((loss, &self.grads))
    }

    /// One pass over `samples` in a fresh random order, in mini-batches of
    /// `epoch.batch_size`; returns the mean of the batch losses.
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](super::Trainer::train_epoch).
    pub fn train_epoch<D, O, R, P>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        mut epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        D: Inputs<S::Input> + ?Sized,
        O: Optimizer + ?Sized,
        R: RngCore,
        P: Progress,
    {
        epoch.run(samples.len(), |batch, rng| {
            self.train_batch(params, optimizer, samples, batch, rng)
        })
    }

    /// `epochs` epochs of [`train_epoch`](Self::train_epoch) from `epoch` on,
    /// each followed by an evaluation on `validation`.
    ///
    /// # Errors
    /// As [`train_epoch`](Self::train_epoch) and [`evaluate`](Self::evaluate);
    /// [`Error::InvalidConfig`] for more epochs than `E`.
    pub fn fit<D, V, O, R, P, const E: usize>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        train: &D,
        validation: &V,
        epochs: usize,
        epoch: Epoch<'_, R, P>,
    ) -> Result<History<E>, Error>
    where
        D: Inputs<S::Input> + ?Sized,
        V: Inputs<S::Input> + ?Sized,
        O: Optimizer + ?Sized,
        R: RngCore,
        P: Progress,
    {
        let mut state = (self, params, optimizer);
        epoch.fit(
            epochs,
            &mut state,
            |(trainer, params, optimizer), epoch| {
                epoch.run(train.len(), |batch, rng| {
                    trainer.train_batch(params, *optimizer, train, batch, rng)
                })
            },
            |(trainer, params, _)| trainer.evaluate(params, validation),
        )
    }

    /// Mean loss and accuracy of `params` on `samples` (no dropout).
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NonFinite`], [`Error::LabelOutOfRange`],
    /// and whatever reading a sample returns.
    pub fn evaluate<D: Inputs<S::Input> + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        if samples.is_empty() {
            return Err(Error::Empty {
                what: "evaluation set",
            });
        }
        let (mut loss_sum, mut correct) = (0.0f64, 0);
        for index in 0..samples.len() {
            let label = samples.read(index, &mut self.input)?;
            let logits = self.logits(params)?;
            loss_sum += f64::from(logits.cross_entropy(label, 1.0, &mut self.logits_grad)?);
            correct += usize::from(logits.class() == label);
        }
        let total = samples.len();
        Ok(Evaluation {
            loss: (loss_sum / total as f64) as f32,
            accuracy: correct as f32 / total as f32,
            correct,
            total,
        })
    }

    /// The class `params` predicts for `input`.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for an input that is not finite.
    pub fn predict(&mut self, params: &S::Params, input: &S::Input) -> Result<usize, Error> {
        self.input = *input;
        Ok(self.logits(params)?.class())
    }

    /// The logits of the input in `self.input`, without dropout.
    fn logits(&mut self, params: &S::Params) -> Result<S::Logits, Error> {
        let () = S::PARAMS_MATCH;
        if !all_finite(bytemuck::cast_slice(core::slice::from_ref(&self.input))) {
            return Err(Error::NonFinite { what: "input" });
        }
        S::Layers::forward(
            params.as_flat(),
            &mut self.input,
            &mut self.state,
            0.0,
            &mut NoDraws,
        );
        Ok(*S::Layers::output(&self.state))
    }
}

impl<S: Stack> Default for StackTrainer<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// The generator of a pass without dropout, which draws nothing.
struct NoDraws;

impl RngCore for NoDraws {
    fn next_u32(&mut self) -> u32 {
        0
    }

    fn next_u64(&mut self) -> u64 {
        0
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0);
    }
}
