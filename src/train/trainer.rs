//! Training the whole network: each sample's pass adds its gradient into
//! one buffer of the model's size, then the optimizer steps.

use super::dropout::check_rate;
use super::fit::{Epoch, History, Progress};
use super::optim::Optimizer;
use super::pass::{batch_scale, checked_loss, Grads, Kept, Pass, Target};
use crate::data::Samples;
use crate::model::{ParamBuffer, Params};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// Everything training needs besides the parameters, the optimizer and the
/// data: the gradient of a mini-batch, and what backward keeps of the one
/// sample in flight. Sizes as in [`Params`].
///
/// Backward runs right after each sample's forward pass and adds its
/// gradient into [`gradients`](Self::gradients); so only one sample's
/// activations exist at a time, whatever the batch size.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::train::{Epoch, Sgd, Trainer};
/// use tinycnn::Params;
///
/// // A 4x4 problem: class 1 when the image is bright.
/// let data: Vec<_> = (0..40).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// params.init_glorot(&mut rng);
/// let mut trainer = Trainer::new();
/// let mut sgd = Sgd::new(0.5).unwrap();
/// let mut order = [0u32; 40];
/// let mut losses = Vec::new();
/// for epoch in 0..20 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     losses.push(trainer.train_epoch(&mut params, &mut sgd, &data[..], epoch).unwrap());
/// }
/// assert!(losses[19] < losses[0] / 4.0);
/// ```
#[derive(Clone, Debug)]
// In the order written, so that where its arrays fall (and so the firmware's
// instruction counts) does not move with unrelated changes.
#[repr(C)]
pub struct Trainer<
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    grads: Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    pass: Pass<H, W, K, FLAT, HIDDEN, CLASSES>,
    /// The sample's gradient at dense1's outputs.
    hidden_grad: [f32; HIDDEN],
    dropout: f32,
}

// SAFETY: a `Params`, a `Pass` (`f32`, `u8` and `u16` arrays and a
// `usize`), an `f32` array and an `f32`: all zero bytes form a valid value
// (dropout 0, no active cells).
unsafe impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Zeroable for Trainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Trainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
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
            grads: Params::zeroed(),
            pass: Pass::new(Kept::new()),
            hidden_grad: [0.0; HIDDEN],
            dropout: 0.0,
        }
    }

    /// A new trainer on the heap, never built on the stack.
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// Sets the dropout rate applied to the flattened pooled map in training.
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
    pub const fn gradients(&self) -> &Params<H, W, K, FLAT, HIDDEN, CLASSES> {
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
    /// let params = tinycnn::Params::<2, 2, 1, 1, 1, 2>::zeroed();
    /// let mut trainer = tinycnn::Trainer::new();
    /// let mut rng = rand_pcg::Pcg32::seed_from_u64(0);
    /// let loss = trainer.accumulate(&params, &[[0.0; 2]; 2], 1, 1.0, &mut rng).unwrap();
    /// assert!((loss - core::f32::consts::LN_2).abs() < 1e-6);
    /// assert_eq!(trainer.gradients().dense2_bias, [0.5, -0.5]);
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite pixel, [`Error::LabelOutOfRange`].
    pub fn accumulate(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        image: &[[f32; W]; H],
        label: usize,
        scale: f32,
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        self.pass.image = *image;
        self.accumulate_cached(params, Target { label, scale }, rng, None)
    }

    /// As [`accumulate`](Self::accumulate), and also writes the gradient of
    /// the loss with respect to each pixel to `image_grad` (a saliency map).
    ///
    /// # Errors
    /// As [`accumulate`](Self::accumulate).
    pub fn accumulate_with_input_grad(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        image: &[[f32; W]; H],
        label: usize,
        rng: &mut impl RngCore,
        image_grad: &mut [[f32; W]; H],
    ) -> Result<f32, Error> {
        self.pass.image = *image;
        *image_grad = [[0.0; W]; H];
        self.accumulate_cached(params, Target { label, scale: 1.0 }, rng, Some(image_grad))
    }

    /// The pass over the image already in place.
    fn accumulate_cached(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        target: Target,
        rng: &mut impl RngCore,
        image_grad: Option<&mut [[f32; W]; H]>,
    ) -> Result<f32, Error> {
        self.pass.forward(params, self.dropout, rng)?;
        let grads = Grads::of(&mut self.grads, &mut self.hidden_grad);
        self.pass
            .backward(params, target, self.dropout, grads, image_grad)
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
    /// [`Error::Empty`] for an empty batch, [`Error::Diverged`], and whatever
    /// reading a sample or [`accumulate`](Self::accumulate) returns.
    pub fn train_batch<S: Samples<H, W> + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        let scale = batch_scale(batch, usize::MAX)?;
        self.zero_gradients();
        let mut loss_sum = 0.0f32;
        for &index in batch {
            let label = samples.read(index as usize, &mut self.pass.image)?;
            loss_sum += self.accumulate_cached(params, Target { label, scale }, rng, None)?;
        }
        let loss = checked_loss(loss_sum, scale, [self.grads.as_flat()])?;
        optimizer.step(params.as_flat_mut(), self.grads.as_flat())?;
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order, in mini-batches of
    /// `epoch.batch_size`. Returns the mean of the batch losses.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Length`] for a short `epoch.order`,
    /// [`Error::InvalidConfig`] for a batch size of 0 or above the set's
    /// size, and whatever [`train_batch`](Self::train_batch) returns; on an
    /// error the parameters keep the last good step.
    pub fn train_epoch<S, O, R, P>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        mut epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        S: Samples<H, W> + ?Sized,
        O: Optimizer + ?Sized,
        R: RngCore,
        P: Progress,
    {
        epoch.run(samples.len(), |batch, rng| {
            self.train_batch(params, optimizer, samples, batch, rng)
        })
    }

    /// The book's loop: `epochs` epochs of [`train_epoch`](Self::train_epoch)
    /// from `epoch` on, each followed by an evaluation on `validation`;
    /// returns the per-epoch statistics.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::train::{Epoch, History, Sgd, Trainer};
    /// use tinycnn::Params;
    /// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
    /// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
    /// let mut rng = rand_pcg::Pcg32::seed_from_u64(2);
    /// params.init_glorot(&mut rng);
    /// let mut order = vec![0u32; 48];
    /// let history: History<8> = Trainer::new()
    ///     .fit(&mut params, &mut Sgd::new(0.5).unwrap(), &data[..48], &data[48..], 8,
    ///          Epoch::new(&mut order, 8, &mut rng))
    ///     .unwrap();
    /// assert_eq!(history.len(), 8);
    /// assert_eq!(history[7].validation.accuracy, 1.0);
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `epochs > E`, and whatever training or
    /// evaluation returns.
    pub fn fit<S, V, O, R, P, const E: usize>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        train: &S,
        validation: &V,
        epochs: usize,
        epoch: Epoch<'_, R, P>,
    ) -> Result<History<E>, Error>
    where
        S: Samples<H, W> + ?Sized,
        V: Samples<H, W> + ?Sized,
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
                    trainer.train_batch(params, &mut **optimizer, train, batch, rng)
                })
            },
            |(trainer, params, _)| params.evaluate(validation, &mut trainer.pass.ws),
        )
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Default for Trainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
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
    pub const TRAINING_BYTES_SGD: usize =
        core::mem::size_of::<Trainer<H, W, K, FLAT, HIDDEN, CLASSES>>() + 2 * K * W * 4;

    /// Working memory of training with [`Adam`](super::Adam), beyond the
    /// parameters: [`TRAINING_BYTES_SGD`](Self::TRAINING_BYTES_SGD) plus
    /// both moments.
    pub const TRAINING_BYTES_ADAM: usize = Self::TRAINING_BYTES_SGD
        + core::mem::size_of::<super::Adam<Params<H, W, K, FLAT, HIDDEN, CLASSES>>>();
}
