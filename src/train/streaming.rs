//! SGD without a gradient buffer the size of the model: the update of dense1
//! (99% of the parameters) is applied sample by sample from what the batch
//! kept, so training fits beside the parameters in a small RAM.

use super::dropout::{dropout, SampleStream};
use super::trainer::{run_epoch, Progress};
use crate::data::Samples;
use crate::kernels::{
    all_finite, axpy, conv_relu_pool, conv_relu_pool_backward, dense, dense_backward, dot,
    softmax_cross_entropy,
};
use crate::model::{Params, Workspace};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// Plain SGD in two passes over each mini-batch, holding at most `MAX_BATCH`
/// samples' worth of hidden-layer gradients (400 bytes each by default)
/// instead of a gradient of the whole model.
///
/// Pass one runs forward and backward for every sample with the batch's
/// starting parameters, adds up the gradients of the small layers (conv,
/// biases, dense2: 1,210 values) and keeps each sample's hidden-layer
/// gradient. Pass two reads each sample again, recomputes its pooled map
/// (with the same dropout mask, regenerated from a per-sample seed) and
/// subtracts `lr * x (outer) dh / batch` from dense1 in place; then the small
/// layers step. The result equals [`Trainer`](super::Trainer) with
/// [`Sgd`](super::Sgd) up to rounding, for about 15% more work (one more
/// convolution per sample).
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::train::StreamingSgdTrainer;
/// use tinycnn::Params;
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// params.init_glorot(&mut rng);
/// let mut trainer = StreamingSgdTrainer::<8, 4, 4, 2, 8, 4, 2>::new(0.5).unwrap();
/// let mut order = [0u32; 64];
/// let first = trainer.train_epoch(&mut params, &data[..], &mut order, 8, &mut rng, 0, &mut ()).unwrap();
/// let mut last = first;
/// for epoch in 1..20 {
///     last = trainer.train_epoch(&mut params, &data[..], &mut order, 8, &mut rng, epoch, &mut ()).unwrap();
/// }
/// assert!(last < first / 4.0);
/// ```
#[derive(Clone, Debug)]
pub struct StreamingSgdTrainer<
    const MAX_BATCH: usize = 32,
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    conv_kernel_grad: [[[f32; K]; 3]; 3],
    conv_bias_grad: [f32; K],
    dense1_bias_grad: [f32; HIDDEN],
    dense2_kernel_grad: [[f32; CLASSES]; HIDDEN],
    dense2_bias_grad: [f32; CLASSES],
    hidden_grads: [[f32; HIDDEN]; MAX_BATCH],
    mask_seeds: [u64; MAX_BATCH],
    ws: Workspace<FLAT, HIDDEN, CLASSES>,
    image: [[f32; W]; H],
    argmax: [u8; FLAT],
    logits_grad: [f32; CLASSES],
    pooled_grad: [f32; FLAT],
    lr: f32,
    dropout: f32,
}

// SAFETY: only `f32`, `u8` and `u64` arrays and a `Workspace` (all-float):
// all zero bytes form a valid value.
unsafe impl<
        const MAX_BATCH: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Zeroable for StreamingSgdTrainer<MAX_BATCH, H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const MAX_BATCH: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > StreamingSgdTrainer<MAX_BATCH, H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Working memory beyond the parameters (the permutation adds 4 bytes
    /// per training sample).
    pub const BYTES: usize = core::mem::size_of::<Self>() + 2 * K * W * 4;

    /// A trainer with learning rate `lr` and no dropout.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `lr` is finite and positive.
    pub fn new(lr: f32) -> Result<Self, Error> {
        let mut trainer = Self::zeroed_state();
        trainer.configure(lr, 0.0)?;
        Ok(trainer)
    }

    /// Every byte zero, usable in a `static` in `.bss`; call
    /// [`configure`](Self::configure) before training.
    pub const fn zeroed_state() -> Self {
        Self {
            conv_kernel_grad: [[[0.0; K]; 3]; 3],
            conv_bias_grad: [0.0; K],
            dense1_bias_grad: [0.0; HIDDEN],
            dense2_kernel_grad: [[0.0; CLASSES]; HIDDEN],
            dense2_bias_grad: [0.0; CLASSES],
            hidden_grads: [[0.0; HIDDEN]; MAX_BATCH],
            mask_seeds: [0; MAX_BATCH],
            ws: Workspace::new(),
            image: [[0.0; W]; H],
            argmax: [0; FLAT],
            logits_grad: [0.0; CLASSES],
            pooled_grad: [0.0; FLAT],
            lr: 0.0,
            dropout: 0.0,
        }
    }

    /// Sets the learning rate and the dropout rate.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `lr` is finite and positive and
    /// `dropout` is in `[0, 1)`.
    pub fn configure(&mut self, lr: f32, dropout: f32) -> Result<(), Error> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::InvalidConfig {
                what: "learning rate must be finite and positive",
            });
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::InvalidConfig {
                what: "dropout rate must be in [0, 1)",
            });
        }
        self.lr = lr;
        self.dropout = dropout;
        Ok(())
    }

    /// Forward (up to the logits) of the image in `self.image`, with the
    /// dropout mask of `seed`.
    fn forward(&mut self, params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>, seed: u64) {
        let rate = self.dropout;
        params.hidden_parts(
            &self.image,
            &mut self.ws,
            Some(&mut self.argmax),
            |pooled| {
                if rate > 0.0 {
                    dropout(pooled, rate, &mut SampleStream(seed));
                }
            },
            None,
        );
        dense(
            &self.ws.hidden,
            &params.dense2_kernel,
            &params.dense2_bias,
            &mut self.ws.logits,
        );
    }

    /// One SGD step on the samples at `batch` (at most `MAX_BATCH`); returns
    /// the batch's mean loss. On a non-finite loss or gradient returns
    /// [`Error::Diverged`] before changing any parameter.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Length`] for a batch over `MAX_BATCH`,
    /// [`Error::InvalidConfig`] before [`configure`](Self::configure),
    /// [`Error::Diverged`], and whatever reading a sample returns.
    pub fn train_batch<S: Samples<H, W> + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        samples: &S,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        if batch.is_empty() {
            return Err(Error::Empty { what: "batch" });
        }
        if batch.len() > MAX_BATCH {
            return Err(Error::Length {
                what: "batch",
                expected: MAX_BATCH,
                found: batch.len(),
            });
        }
        self.configure(self.lr, self.dropout)?;
        self.conv_kernel_grad = [[[0.0; K]; 3]; 3];
        self.conv_bias_grad = [0.0; K];
        self.dense1_bias_grad = [0.0; HIDDEN];
        self.dense2_kernel_grad = [[0.0; CLASSES]; HIDDEN];
        self.dense2_bias_grad = [0.0; CLASSES];
        let scale = 1.0 / batch.len() as f32;
        let keep_scale = 1.0 / (1.0 - self.dropout);
        let mut loss_sum = 0.0f32;

        // Pass one: every gradient but dense1's kernel, with the starting parameters.
        for (b, &index) in batch.iter().enumerate() {
            let label = samples.read(index as usize, &mut self.image)?;
            if !all_finite(self.image.as_flattened()) {
                return Err(Error::NonFinite { what: "image" });
            }
            self.mask_seeds[b] = rng.next_u64();
            self.forward(params, self.mask_seeds[b]);
            loss_sum += softmax_cross_entropy(&self.ws.logits, label, scale, &mut self.logits_grad)?;
            let hidden_grad = &mut self.hidden_grads[b];
            dense_backward(
                &self.ws.hidden,
                &params.dense2_kernel,
                &self.logits_grad,
                &mut self.dense2_kernel_grad,
                &mut self.dense2_bias_grad,
                Some(hidden_grad),
            );
            axpy(1.0, hidden_grad, &mut self.dense1_bias_grad);
            for ((dx, &x), row) in self
                .pooled_grad
                .iter_mut()
                .zip(&self.ws.pooled)
                .zip(&params.dense1_kernel)
            {
                // Zero inputs came out of ReLU or dropout and pass nothing back.
                *dx = if x != 0.0 {
                    dot(row, hidden_grad) * keep_scale
                } else {
                    0.0
                };
            }
            conv_relu_pool_backward(
                &self.image,
                &self.ws.pooled,
                &self.argmax,
                &self.pooled_grad,
                &mut self.conv_kernel_grad,
                &mut self.conv_bias_grad,
            );
        }
        let loss = loss_sum * scale;
        let small_finite = all_finite(self.conv_kernel_grad.as_flattened().as_flattened())
            && all_finite(&self.conv_bias_grad)
            && all_finite(&self.dense1_bias_grad)
            && all_finite(self.dense2_kernel_grad.as_flattened())
            && all_finite(&self.dense2_bias_grad);
        if !loss.is_finite() || !small_finite || !all_finite(self.hidden_grads[..batch.len()].as_flattened())
        {
            return Err(Error::Diverged);
        }

        // Pass two: dense1's kernel, one sample at a time, with the starting
        // convolution (the conv update waits until every sample is through).
        let rate = self.dropout;
        for (b, &index) in batch.iter().enumerate() {
            samples.read(index as usize, &mut self.image)?;
            conv_relu_pool(
                &self.image,
                &params.conv_kernel,
                &params.conv_bias,
                &mut self.ws.pooled,
                None,
            );
            if rate > 0.0 {
                dropout(&mut self.ws.pooled, rate, &mut SampleStream(self.mask_seeds[b]));
            }
            let hidden_grad = &self.hidden_grads[b];
            for (&x, row) in self.ws.pooled.iter().zip(params.dense1_kernel.iter_mut()) {
                if x != 0.0 {
                    axpy(-self.lr * x, hidden_grad, row);
                }
            }
        }
        let lr = self.lr;
        let step = |values: &mut [f32], grads: &[f32]| axpy(-lr, grads, values);
        step(
            params.conv_kernel.as_flattened_mut().as_flattened_mut(),
            self.conv_kernel_grad.as_flattened().as_flattened(),
        );
        step(&mut params.conv_bias, &self.conv_bias_grad);
        step(&mut params.dense1_bias, &self.dense1_bias_grad);
        step(
            params.dense2_kernel.as_flattened_mut(),
            self.dense2_kernel_grad.as_flattened(),
        );
        step(&mut params.dense2_bias, &self.dense2_bias_grad);
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order (see
    /// [`Trainer::train_epoch`](super::Trainer::train_epoch)); `batch_size`
    /// at most `MAX_BATCH`.
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](super::Trainer::train_epoch).
    #[allow(clippy::too_many_arguments)]
    pub fn train_epoch<S: Samples<H, W> + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
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
            |batch, rng| self.train_batch(params, samples, batch, rng),
        )
    }

    /// Loss and accuracy of `params` on `samples`, in this trainer's memory.
    ///
    /// # Errors
    /// As [`Params::evaluate`].
    pub fn evaluate<S: Samples<H, W> + ?Sized>(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        samples: &S,
    ) -> Result<crate::Evaluation, Error> {
        params.evaluate(samples, &mut self.ws)
    }
}
