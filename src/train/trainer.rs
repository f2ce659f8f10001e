//! Backward pass into static buffers, the training step, and the fit loop.

use super::dropout::{check_rate, dropout};
use super::optim::Optimizer;
use crate::data::{shuffle, Samples};
use crate::kernels::conv::conv_relu_pool_backward_listed;
use crate::kernels::dense::dense_backward_listed;
use crate::kernels::{all_finite, conv_relu_pool_input_grad, dense, dense_backward, softmax_cross_entropy};
use crate::model::{Evaluation, ParamBuffer, Params, Workspace};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// Everything training needs besides the parameters, the optimizer and the
/// data: the gradient of a mini-batch, and what backward keeps of the one
/// sample in flight. Sizes as in [`Params`].
///
/// Backward runs right after each sample's forward pass and adds its
/// gradient into [`gradients`](Self::gradients); so only one sample's
/// activations exist at a time, whatever the batch size. What it keeps: the
/// image, the pooled map after dropout (its zeros are the ReLU and dropout
/// masks, so no separate masks are stored), the winner of each pooling window
/// (one byte per cell), the hidden layer, and the gradients flowing back.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::train::{Sgd, Trainer};
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
/// let first = trainer.train_epoch(&mut params, &mut sgd, &data[..], &mut order, 8, &mut rng, 0, &mut ()).unwrap();
/// for epoch in 1..20 {
///     trainer.train_epoch(&mut params, &mut sgd, &data[..], &mut order, 8, &mut rng, epoch, &mut ()).unwrap();
/// }
/// let last = trainer.train_epoch(&mut params, &mut sgd, &data[..], &mut order, 8, &mut rng, 20, &mut ()).unwrap();
/// assert!(last < first / 4.0);
/// ```
#[derive(Clone, Debug)]
// In the order written, so that where its arrays fall does not move with
// unrelated changes: the compiler's own order, after a field was dropped,
// cost the Cortex-M4 11,000 instructions a training image.
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
    ws: Workspace<FLAT, HIDDEN, CLASSES>,
    image: [[f32; W]; H],
    argmax: [u8; FLAT],
    /// Positions of the pooled map's non-zero cells (after dropout), the
    /// first `active_len`: dense1's rows both ways, and the cells backward visits.
    active: [u16; FLAT],
    active_len: usize,
    logits_grad: [f32; CLASSES],
    hidden_grad: [f32; HIDDEN],
    pooled_grad: [f32; FLAT],
    dropout: f32,
}

// SAFETY: only `f32`, `u8` and `u16` arrays, a `Params` and a `Workspace`
// (both all-float), an `f32` and a `usize`: all zero bytes form a valid
// value (dropout 0, no active cells).
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

    /// An epoch of [`Trainer::fit`] is done.
    fn epoch_done(&mut self, stats: &EpochStats) {
        let _ = stats;
    }
}

impl Progress for () {}

/// Epochs and mini-batch size of [`Trainer::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FitConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per gradient step; the last partial batch of an epoch is dropped.
    pub batch_size: usize,
}

/// What one epoch of [`Trainer::fit`] measured.
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
    /// static mut TRAINER: tinycnn::Trainer = tinycnn::Trainer::new();
    /// ```
    pub const fn new() -> Self {
        Self {
            grads: Params::zeroed(),
            ws: Workspace::new(),
            image: [[0.0; W]; H],
            argmax: [0; FLAT],
            active: [0; FLAT],
            active_len: 0,
            logits_grad: [0.0; CLASSES],
            hidden_grad: [0.0; HIDDEN],
            pooled_grad: [0.0; FLAT],
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
        self.image = *image;
        self.accumulate_cached(params, label, scale, rng, None)
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
        self.image = *image;
        *image_grad = [[0.0; W]; H];
        self.accumulate_cached(params, label, 1.0, rng, Some(image_grad))
    }

    fn accumulate_cached(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        label: usize,
        scale: f32,
        rng: &mut impl RngCore,
        image_grad: Option<&mut [[f32; W]; H]>,
    ) -> Result<f32, Error> {
        if !all_finite(self.image.as_flattened()) {
            return Err(Error::NonFinite { what: "image" });
        }
        let rate = self.dropout;
        let active_len = params.hidden_parts(
            &self.image,
            &mut self.ws,
            Some(&mut self.argmax),
            |pooled| {
                if rate > 0.0 {
                    dropout(pooled, rate, rng);
                }
            },
            Some(&mut self.active),
        );
        let active = self.active.get(..active_len).unwrap_or_default();
        dense(
            &self.ws.hidden,
            &params.dense2_kernel,
            &params.dense2_bias,
            &mut self.ws.logits,
        );
        let loss = softmax_cross_entropy(&self.ws.logits, label, scale, &mut self.logits_grad)?;
        let g = &mut self.grads;
        dense_backward(
            &self.ws.hidden,
            &params.dense2_kernel,
            &self.logits_grad,
            &mut g.dense2_kernel,
            &mut g.dense2_bias,
            Some(&mut self.hidden_grad),
        );
        dense_backward_listed(
            &self.ws.pooled,
            active,
            &params.dense1_kernel,
            &self.hidden_grad,
            Some(&mut g.dense1_kernel),
            &mut g.dense1_bias,
            Some(&mut self.pooled_grad),
        );
        if rate > 0.0 {
            // Kept values were scaled by 1 / (1 - rate) on the way forward;
            // the gradient elsewhere is zero.
            let keep_scale = 1.0 / (1.0 - rate);
            for &cell in active {
                if let Some(d) = self.pooled_grad.get_mut(usize::from(cell)) {
                    *d *= keep_scale;
                }
            }
        }
        self.active_len = active.len();
        conv_relu_pool_backward_listed(
            &self.image,
            &self.ws.pooled,
            active,
            &self.argmax,
            &self.pooled_grad,
            &mut g.conv_kernel,
            &mut g.conv_bias,
        );
        if let Some(image_grad) = image_grad {
            conv_relu_pool_input_grad(
                &params.conv_kernel,
                &self.ws.pooled,
                &self.argmax,
                &self.pooled_grad,
                image_grad,
            );
        }
        Ok(loss)
    }

    /// One gradient step on the samples at `batch`: the mean gradient of
    /// their losses, then `optimizer`. Returns the batch's mean loss.
    ///
    /// If the loss or any gradient is NaN or infinite, returns
    /// [`Error::Diverged`] and leaves `params` and the optimizer untouched.
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
        if batch.is_empty() {
            return Err(Error::Empty { what: "batch" });
        }
        self.zero_gradients();
        let scale = 1.0 / batch.len() as f32;
        let mut loss_sum = 0.0f32;
        for &index in batch {
            let label = samples.read(index as usize, &mut self.image)?;
            loss_sum += self.accumulate_cached(params, label, scale, rng, None)?;
        }
        let loss = loss_sum * scale;
        if !loss.is_finite() || !all_finite(self.grads.as_flat()) {
            return Err(Error::Diverged);
        }
        optimizer.step(params.as_flat_mut(), self.grads.as_flat())?;
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order, in mini-batches of
    /// `batch_size` (the last partial batch is dropped, as the book does).
    /// `order` is scratch space for the permutation, at least `samples.len()`
    /// long. Returns the mean of the batch losses.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Length`] for a short `order`,
    /// [`Error::InvalidConfig`] for a batch size of 0 or above the set's
    /// size, and whatever [`train_batch`](Self::train_batch) returns; on an
    /// error the parameters keep the last good step.
    #[allow(clippy::too_many_arguments)]
    pub fn train_epoch<S: Samples<H, W> + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        order: &mut [u32],
        batch_size: usize,
        rng: &mut impl RngCore,
        epoch: usize,
        progress: &mut impl Progress,
    ) -> Result<f32, Error> {
        run_epoch(
            samples.len(),
            order,
            batch_size,
            rng,
            epoch,
            progress,
            |batch, rng| self.train_batch(params, optimizer, samples, batch, rng),
        )
    }

    /// The book's loop: `config.epochs` epochs of
    /// [`train_epoch`](Self::train_epoch), each followed by an evaluation on
    /// `validation`; returns the per-epoch statistics.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::train::{FitConfig, History, Sgd, Trainer};
    /// use tinycnn::Params;
    /// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
    /// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
    /// let mut rng = rand_pcg::Pcg32::seed_from_u64(2);
    /// params.init_glorot(&mut rng);
    /// let mut order = vec![0u32; 48];
    /// let history: History<8> = Trainer::new()
    ///     .fit(&mut params, &mut Sgd::new(0.5).unwrap(), &data[..48], &data[48..], &mut order,
    ///          FitConfig { epochs: 8, batch_size: 8 }, &mut rng, &mut ())
    ///     .unwrap();
    /// assert_eq!(history.len(), 8);
    /// assert_eq!(history[7].validation.accuracy, 1.0);
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `config.epochs > E`, and whatever
    /// training or evaluation returns.
    #[allow(clippy::too_many_arguments)]
    pub fn fit<S, V, O, const E: usize>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        train: &S,
        validation: &V,
        order: &mut [u32],
        config: FitConfig,
        rng: &mut impl RngCore,
        progress: &mut impl Progress,
    ) -> Result<History<E>, Error>
    where
        S: Samples<H, W> + ?Sized,
        V: Samples<H, W> + ?Sized,
        O: Optimizer + ?Sized,
    {
        if config.epochs > E {
            return Err(Error::InvalidConfig {
                what: "more epochs than the history can hold",
            });
        }
        let mut history = History::new();
        for epoch in 0..config.epochs {
            let train_loss = self.train_epoch(
                params,
                optimizer,
                train,
                order,
                config.batch_size,
                rng,
                epoch,
                progress,
            )?;
            let stats = EpochStats {
                epoch,
                train_loss,
                validation: params.evaluate(validation, &mut self.ws)?,
            };
            progress.epoch_done(&stats);
            history.push(stats).map_err(|_| Error::InvalidConfig {
                what: "more epochs than the history can hold",
            })?;
        }
        Ok(history)
    }
}

/// One epoch over `n` samples: a fresh permutation in `order`, then `step` on
/// each full batch of indices; returns the mean of the batch losses.
pub(crate) fn run_epoch<R: RngCore>(
    n: usize,
    order: &mut [u32],
    batch_size: usize,
    rng: &mut R,
    epoch: usize,
    progress: &mut impl Progress,
    mut step: impl FnMut(&[u32], &mut R) -> Result<f32, Error>,
) -> Result<f32, Error> {
    let order = shuffled_batches(n, order, batch_size, rng)?;
    let batches = order.len() / batch_size;
    let mut loss_sum = 0.0f64;
    for (b, batch) in order.chunks_exact(batch_size).enumerate() {
        let loss = step(batch, rng)?;
        loss_sum += f64::from(loss);
        progress.batch_done(epoch, b, batches, loss);
    }
    Ok((loss_sum / batches as f64) as f32)
}

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
