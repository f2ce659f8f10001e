//! Training a whole [`Stack`]: each sample's forward pass over its layers,
//! its loss and its backward pass add the sample's gradient into one buffer
//! of the parameters' size; then the optimizer steps. Backward runs right
//! after each sample's forward pass, so only one sample's maps exist at a
//! time, whatever the batch size.

use super::check::{batch_scale, checked_loss};
use super::fit::{Epoch, History, Progress};
use super::optim::Optimizer;
use super::schedule::Train;
use crate::data::Inputs;
use crate::kernels::dropout::check_rate;
use crate::model::{Evaluation, ParamBuffer, Params};
use crate::stack::{Book, Layer, Logits, Stack, Workspace, Zeroed};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// Everything training a [`Stack`] needs besides the parameters, the
/// optimizer and the data: the gradient of a mini-batch, what the pass keeps
/// of the one sample in flight, and the dropout rate. By default the stack
/// is the book's network ([`Book`], parameters [`Params`]).
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Book;
/// use tinycnn::train::{Epoch, Sgd, Trainer};
/// use tinycnn::Params;
///
/// // A 4x4 problem: class 1 when the image is bright.
/// let data: Vec<_> = (0..40).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// params.init_glorot(&mut rng);
/// let mut trainer = Trainer::<Book<4, 4, 2, 8, 4, 2>>::new();
/// let mut sgd = Sgd::new(0.5).unwrap();
/// let mut order = [0u32; 40];
/// let mut losses = Vec::new();
/// for epoch in 0..20 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     losses.push(trainer.train_epoch(&mut params, &mut sgd, &data[..], epoch).unwrap());
/// }
/// assert!(losses[19] < losses[0] / 4.0);
/// ```
///
/// A stack of the user's own, declared with [`stack!`](crate::stack!):
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Stack;
/// use tinycnn::train::{Epoch, Sgd, Trainer};
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
/// let mut trainer = Trainer::<Tiny>::boxed();
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
// In the order written, so that where its arrays fall (and so the firmware's
// instruction counts) does not move with unrelated changes.
#[repr(C)]
pub struct Trainer<S: Stack = Book> {
    grads: S::Params,
    ws: Workspace<S>,
    junctions: <S::Layers as Layer>::Junctions,
    logits_grad: S::Logits,
    dropout: f32,
}

// SAFETY: the parameters' buffer and the logits are `Pod`, the workspace
// and the layers' junctions `Zeroable`, the rate an `f32`: all zero bytes
// form a valid value (dropout 0, no listed cells).
unsafe impl<S: Stack> Zeroable for Trainer<S> {}

impl<S: Stack> Trainer<S> {
    /// Bytes of working memory of training with plain SGD, beyond the
    /// parameters: this trainer (the batch gradient and one sample's maps,
    /// lists and gradients) and the largest buffer a layer's kernel keeps
    /// on the stack. The permutation adds 4 bytes per training sample, Adam
    /// its two moments.
    pub const BYTES: usize = size_of::<Self>() + S::Layers::FRAME_BYTES;

    /// A trainer with zero gradients and no dropout, usable in a `static`.
    ///
    /// ```
    /// use static_cell::ConstStaticCell;
    /// static TRAINER: ConstStaticCell<tinycnn::FashionTrainer> = ConstStaticCell::new(tinycnn::Trainer::new());
    /// let trainer: &'static mut tinycnn::FashionTrainer = TRAINER.take();
    /// assert_eq!(trainer.dropout(), 0.0);
    /// ```
    pub const fn new() -> Self {
        Self {
            grads: <S::Params as ParamBuffer>::ZERO,
            ws: Workspace::ZERO,
            junctions: Zeroed::ZERO,
            logits_grad: S::Logits::ZERO,
            dropout: 0.0,
        }
    }

    /// A new trainer on the heap, never built on the stack.
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// Sets the dropout rate of the stack's `Dropout` (the book's network:
    /// on the flattened pooled map) in training.
    ///
    /// ```
    /// let mut trainer = tinycnn::FashionTrainer::boxed();
    /// assert!(trainer.set_dropout(0.5).is_ok());
    /// assert!(trainer.set_dropout(1.0).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `rate` is in `[0, 1)`.
    pub fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        self.dropout = check_rate(rate)?;
        Ok(())
    }

    /// The dropout rate.
    pub const fn dropout(&self) -> f32 {
        self.dropout
    }

    /// The gradient accumulated since the last [`zero_gradients`](Self::zero_gradients).
    pub const fn gradients(&self) -> &S::Params {
        &self.grads
    }

    /// Sets the accumulated gradient to zero.
    pub fn zero_gradients(&mut self) {
        self.grads.as_flat_mut().fill(0.0);
    }

    /// Forward and backward for one sample: adds `scale` times the gradient of
    /// its loss to [`gradients`](Self::gradients) and returns the loss itself.
    /// With dropout, the mask comes from `rng`.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::stack::Book;
    /// let params = tinycnn::Params::<2, 2, 1, 1, 1, 2>::zeroed();
    /// let mut trainer = tinycnn::Trainer::<Book<2, 2, 1, 1, 1, 2>>::new();
    /// let mut rng = rand_pcg::Pcg32::seed_from_u64(0);
    /// let loss = trainer.accumulate(&params, &[[0.0; 2]; 2], 1, 1.0, &mut rng).unwrap();
    /// assert!((loss - core::f32::consts::LN_2).abs() < 1e-6);
    /// assert_eq!(trainer.gradients().dense2_bias, [0.5, -0.5]);
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite input value, [`Error::LabelOutOfRange`].
    pub fn accumulate(
        &mut self,
        params: &S::Params,
        input: &S::Input,
        label: usize,
        scale: f32,
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        self.ws.input = *input;
        self.accumulate_cached(params, label, scale, rng, None)
    }

    /// As [`accumulate`](Self::accumulate) with `scale` 1, and also writes
    /// the gradient of the loss with respect to each input value to
    /// `input_grad` (for an image, a saliency map).
    ///
    /// # Errors
    /// As [`accumulate`](Self::accumulate).
    pub fn accumulate_with_input_grad(
        &mut self,
        params: &S::Params,
        input: &S::Input,
        label: usize,
        rng: &mut impl RngCore,
        input_grad: &mut S::Input,
    ) -> Result<f32, Error> {
        self.ws.input = *input;
        self.accumulate_cached(params, label, 1.0, rng, Some(input_grad))
    }

    /// The pass over the input already in place.
    fn accumulate_cached(
        &mut self,
        params: &S::Params,
        label: usize,
        scale: f32,
        rng: &mut impl RngCore,
        input_grad: Option<&mut S::Input>,
    ) -> Result<f32, Error> {
        const {
            assert!(
                !<S::Layers as Layer>::INT8,
                "Trainer forms every parameter's gradient: a stack with a Dense(_, i8) layer trains with StreamingSgdTrainer"
            )
        };
        self.ws.check_input()?;
        let params = params.as_flat();
        let Workspace { state, input } = &mut self.ws;
        S::Layers::forward(params, input, state, self.dropout, rng);
        let loss = S::Layers::output(state).cross_entropy(label, scale, &mut self.logits_grad)?;
        S::Layers::backward(
            params,
            self.grads.as_flat_mut(),
            input,
            state,
            &mut self.junctions,
            &self.logits_grad,
            None,
            self.dropout,
            input_grad,
        );
        Ok(loss)
    }
    /// One gradient step on the samples at `batch`: the mean gradient of
    /// their losses, then `optimizer`. Returns the batch's mean loss.
    ///
    /// If the loss or any gradient is NaN or infinite, or the loss is above
    /// [`DIVERGED_LOSS`](super::DIVERGED_LOSS), returns [`Error::Diverged`]
    /// and leaves `params` and the optimizer untouched; `train_epoch` and
    /// `fit` name the epoch and batch in it.
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
            let label = samples.read(index as usize, &mut self.ws.input)?;
            loss_sum += self.accumulate_cached(params, label, scale, rng, None)?;
        }
        let loss = checked_loss(loss_sum, scale, [self.grads.as_flat()])?;
        Ok((loss, &self.grads))
    }

    /// One pass over `samples` in a fresh random order, in mini-batches of
    /// `epoch.batch_size`; returns the mean of the batch losses.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Length`] for a short `epoch.order`,
    /// [`Error::InvalidConfig`] for a batch size of 0 or above the set's
    /// size, and whatever [`train_batch`](Self::train_batch) returns; on an
    /// error the parameters keep the last good step.
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

    /// Mean loss and accuracy of `params` on `samples` (no dropout), in
    /// this trainer's memory.
    ///
    /// # Errors
    /// As [`Workspace::evaluate`].
    pub fn evaluate<D: Inputs<S::Input> + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        self.ws.evaluate(params, samples)
    }

    /// The class `params` predicts for `input`, in this trainer's memory.
    ///
    /// # Errors
    /// As [`Workspace::predict`].
    pub fn predict(&mut self, params: &S::Params, input: &S::Input) -> Result<usize, Error> {
        self.ws.predict(params, input)
    }

    /// The logits of `input` under `params` (no dropout), in this trainer's
    /// memory.
    ///
    /// # Errors
    /// As [`Workspace::logits`].
    pub fn logits(&mut self, params: &S::Params, input: &S::Input) -> Result<&S::Logits, Error> {
        self.ws.logits(params, input)
    }
}

impl<S: Stack, O: Optimizer + ?Sized> Train<S::Params, O> for Trainer<S> {
    type Input = S::Input;

    fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        Trainer::set_dropout(self, rate)
    }

    fn dropout(&self) -> f32 {
        self.dropout
    }

    fn train_batch<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        Trainer::train_batch(self, params, optimizer, samples, batch, rng)
    }

    fn evaluate<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        Trainer::evaluate(self, params, samples)
    }
}

/// The same value as [`Trainer::new`], as [`Zeroed::ZERO`].
impl<S: Stack> Zeroed for Trainer<S> {
    const ZERO: Self = Self::new();
}

impl<S: Stack> Default for Trainer<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Working memory of training with plain SGD, beyond the parameters: the
    /// [`Trainer`] (the batch gradient and one sample's activations) and the
    /// convolution rows on the stack. The permutation buffer adds 4 bytes per
    /// training sample.
    pub const TRAINING_BYTES_SGD: usize = Trainer::<Book<H, W, K, FLAT, HIDDEN, CLASSES>>::BYTES;

    /// Working memory of training with [`Adam`](super::Adam), beyond the
    /// parameters: [`TRAINING_BYTES_SGD`](Self::TRAINING_BYTES_SGD) plus
    /// both moments.
    pub const TRAINING_BYTES_ADAM: usize = Self::TRAINING_BYTES_SGD
        + core::mem::size_of::<super::Adam<Params<H, W, K, FLAT, HIDDEN, CLASSES>>>();
}
