//! SGD without a gradient buffer the size of the model: the update of dense1
//! (99% of the parameters) is applied sample by sample from what the batch
//! kept, so training fits beside the parameters in a small RAM.

use super::fit::{Epoch, Progress};
use super::optim::check_learning_rate;
use super::optim::Sgd;
use super::pass::{batch_scale, checked_loss, Grads, LayerGrads, Pass, Target};
use super::schedule::Train;
use crate::data::Inputs;
use crate::kernels::dropout::{check_rate, dropout, SampleStream};
use crate::kernels::{add_outer_stochastic, axpy, conv_relu_pool};
use crate::model::{Network, Params, Params8};
use crate::stack::Zeroed;
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// Parameters [`StreamingSgdTrainer`] trains: [`Params`] (dense1 updated
/// in `f32`) or [`Params8`] (dense1 updated on its 8-bit grid, each change
/// stochastically rounded with dither drawn from the epoch's generator).
/// Sealed: the crate implements it for those two.
pub trait StreamedParams<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>: Network<H, W, K, FLAT, HIDDEN, CLASSES> + sealed::Steps<K, FLAT, HIDDEN, CLASSES>
{
}

mod sealed {
    use crate::kernels::ConvKernel;
    use rand_core::RngCore;

    /// The layers SGD steps with the batch's gradient.
    pub struct SmallLayers<'a, const K: usize, const HIDDEN: usize, const CLASSES: usize> {
        pub conv_kernel: &'a mut ConvKernel<K>,
        pub conv_bias: &'a mut [f32; K],
        pub dense1_bias: &'a mut [f32; HIDDEN],
        pub dense2_kernel: &'a mut [[f32; CLASSES]; HIDDEN],
        pub dense2_bias: &'a mut [f32; CLASSES],
    }

    /// How the parameters take their steps.
    pub trait Steps<const K: usize, const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> {
        /// The layers whose batch gradient the schedule adds up.
        fn small_layers(&mut self) -> SmallLayers<'_, K, HIDDEN, CLASSES>;

        /// One sample's step of dense1's kernel: `-lr * input (outer)
        /// hidden_grad`.
        fn step_dense1(
            &mut self,
            input: &[f32; FLAT],
            hidden_grad: &[f32; HIDDEN],
            lr: f32,
            rng: &mut impl RngCore,
        );
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES> for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES> for Params8<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > sealed::Steps<K, FLAT, HIDDEN, CLASSES> for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    fn small_layers(&mut self) -> sealed::SmallLayers<'_, K, HIDDEN, CLASSES> {
        sealed::SmallLayers {
            conv_kernel: &mut self.conv_kernel,
            conv_bias: &mut self.conv_bias,
            dense1_bias: &mut self.dense1_bias,
            dense2_kernel: &mut self.dense2_kernel,
            dense2_bias: &mut self.dense2_bias,
        }
    }

    fn step_dense1(
        &mut self,
        input: &[f32; FLAT],
        hidden_grad: &[f32; HIDDEN],
        lr: f32,
        _: &mut impl RngCore,
    ) {
        for (&x, row) in input.iter().zip(self.dense1_kernel.iter_mut()) {
            if x != 0.0 {
                axpy(-lr * x, hidden_grad, row);
            }
        }
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > sealed::Steps<K, FLAT, HIDDEN, CLASSES> for Params8<H, W, K, FLAT, HIDDEN, CLASSES>
{
    fn small_layers(&mut self) -> sealed::SmallLayers<'_, K, HIDDEN, CLASSES> {
        sealed::SmallLayers {
            conv_kernel: &mut self.conv_kernel,
            conv_bias: &mut self.conv_bias,
            dense1_bias: &mut self.dense1_bias,
            dense2_kernel: &mut self.dense2_kernel,
            dense2_bias: &mut self.dense2_bias,
        }
    }

    fn step_dense1(
        &mut self,
        input: &[f32; FLAT],
        hidden_grad: &[f32; HIDDEN],
        lr: f32,
        rng: &mut impl RngCore,
    ) {
        let mut delta = [0.0f32; HIDDEN];
        for (d, &g) in delta.iter_mut().zip(hidden_grad) {
            *d = -lr * g;
        }
        let kernel = &mut self.dense1_kernel;
        add_outer_stochastic(&mut kernel.values, &mut kernel.scales, input, &delta, rng);
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Params8<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Working memory of training these parameters with
    /// [`StreamingSgdTrainer`], batches of up to 32, beyond the parameters
    /// ([`Params8::BYTES`]); the permutation adds 4 bytes per training
    /// sample. With both, the whole network trains in 256 KiB:
    ///
    /// ```
    /// use tinycnn::FashionParams8;
    /// assert_eq!(FashionParams8::TRAINING_BYTES_SGD, 41_400);
    /// assert!(FashionParams8::BYTES + FashionParams8::TRAINING_BYTES_SGD + 4 * 2000 < 256 * 1024);
    /// ```
    pub const TRAINING_BYTES_SGD: usize = StreamingSgdTrainer::<32, H, W, K, FLAT, HIDDEN, CLASSES>::BYTES;
}

#[cfg(feature = "std")]
impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
        P: StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES>,
    > StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES> for std::boxed::Box<P>
{
}

#[cfg(feature = "std")]
impl<
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
        P: sealed::Steps<K, FLAT, HIDDEN, CLASSES>,
    > sealed::Steps<K, FLAT, HIDDEN, CLASSES> for std::boxed::Box<P>
{
    fn small_layers(&mut self) -> sealed::SmallLayers<'_, K, HIDDEN, CLASSES> {
        (**self).small_layers()
    }

    fn step_dense1(
        &mut self,
        input: &[f32; FLAT],
        hidden_grad: &[f32; HIDDEN],
        lr: f32,
        rng: &mut impl RngCore,
    ) {
        (**self).step_dense1(input, hidden_grad, lr, rng);
    }
}

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
/// It trains [`Params`] or [`Params8`], whose dense1 kernel lives in 8 bits:
/// there pass two adds each sample's update to the grid stochastically
/// rounded ([`add_outer_stochastic`](crate::kernels::add_outer_stochastic),
/// random bits from the generator given to the step), so no `f32` copy of
/// the kernel exists either; `Params8::BYTES + Self::BYTES` is the whole
/// training's RAM but the permutation.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::train::{Epoch, StreamingSgdTrainer};
/// use tinycnn::Params;
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// params.init_glorot(&mut rng);
/// let mut trainer = StreamingSgdTrainer::<8, 4, 4, 2, 8, 4, 2>::new(0.5).unwrap();
/// let mut order = [0u32; 64];
/// let mut losses = Vec::new();
/// for epoch in 0..20 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     losses.push(trainer.train_epoch(&mut params, &data[..], epoch).unwrap());
/// }
/// assert!(losses[19] < losses[0] / 4.0);
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
    /// The pass lists the non-zero cells again in backward rather than
    /// keep the list: this schedule exists for a small RAM.
    pass: Pass<H, W, K, FLAT, HIDDEN, CLASSES>,
    lr: f32,
    dropout: f32,
}

// SAFETY: only `f32` and `u64` arrays, a `Pass` (`f32` and `u8` arrays and
// an empty cell list) and two `f32`: all zero bytes form a valid value.
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

    /// A trainer with learning rate `lr` and no dropout, on the heap.
    ///
    /// ```
    /// let trainer = tinycnn::train::StreamingSgdTrainer::<32>::boxed(0.05).unwrap();
    /// assert_eq!(tinycnn::train::StreamingSgdTrainer::<32>::BYTES, core::mem::size_of_val(&*trainer) + 2 * 10 * 28 * 4);
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    #[cfg(feature = "std")]
    pub fn boxed(lr: f32) -> Result<std::boxed::Box<Self>, Error> {
        let mut trainer: std::boxed::Box<Self> = bytemuck::zeroed_box();
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
            pass: Pass::new(),
            lr: 0.0,
            dropout: 0.0,
        }
    }

    /// Sets the dropout rate.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `rate` is in `[0, 1)`.
    pub fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        self.dropout = check_rate(rate)?;
        Ok(())
    }

    /// Sets the learning rate and the dropout rate, as a trainer zeroed in
    /// a `static` needs before it trains.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `lr` is finite and positive and
    /// `dropout` is in `[0, 1)`.
    pub fn configure(&mut self, lr: f32, dropout: f32) -> Result<(), Error> {
        check_learning_rate(lr)?;
        self.dropout = check_rate(dropout)?;
        self.lr = lr;
        Ok(())
    }

    /// One SGD step on the samples at `batch` (at most `MAX_BATCH`); returns
    /// the batch's mean loss. On a diverged batch (as
    /// [`Trainer::train_batch`](super::Trainer::train_batch)) returns
    /// [`Error::Diverged`] before changing any parameter.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Length`] for a batch over `MAX_BATCH`,
    /// [`Error::InvalidConfig`] before [`configure`](Self::configure),
    /// [`Error::Diverged`], and whatever reading a sample returns.
    pub fn train_batch<P, S>(
        &mut self,
        params: &mut P,
        samples: &S,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error>
    where
        P: StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES>,
        S: Inputs<[[f32; W]; H]> + ?Sized,
    {
        let scale = batch_scale(batch, MAX_BATCH)?;
        self.configure(self.lr, self.dropout)?;
        self.conv_kernel_grad = [[[0.0; K]; 3]; 3];
        self.conv_bias_grad = [0.0; K];
        self.dense1_bias_grad = [0.0; HIDDEN];
        self.dense2_kernel_grad = [[0.0; CLASSES]; HIDDEN];
        self.dense2_bias_grad = [0.0; CLASSES];
        let rate = self.dropout;
        let mut loss_sum = 0.0f32;

        // Pass one: every gradient but dense1's kernel, with the starting
        // parameters; each sample's gradient at dense1's outputs is kept.
        let kept = self.hidden_grads.iter_mut().zip(&mut self.mask_seeds);
        for (&index, (hidden_grad, seed)) in batch.iter().zip(kept) {
            let label = samples.read(index as usize, &mut self.pass.image)?;
            *seed = rng.next_u64();
            self.pass.forward(params, rate, &mut SampleStream(*seed))?;
            let grads = Grads {
                conv_kernel: &mut self.conv_kernel_grad,
                conv_bias: &mut self.conv_bias_grad,
                dense1_bias: &mut self.dense1_bias_grad,
                hidden: hidden_grad,
                dense2: LayerGrads {
                    kernel: &mut self.dense2_kernel_grad,
                    bias: &mut self.dense2_bias_grad,
                },
            };
            loss_sum += self.pass.backward(params, Target { label, scale }, rate, grads)?;
        }
        let loss = checked_loss(
            loss_sum,
            scale,
            [
                self.conv_kernel_grad.as_flattened().as_flattened(),
                &self.conv_bias_grad,
                &self.dense1_bias_grad,
                self.dense2_kernel_grad.as_flattened(),
                &self.dense2_bias_grad,
                self.hidden_grads
                    .get(..batch.len())
                    .unwrap_or_default()
                    .as_flattened(),
            ],
        )?;

        // Pass two: dense1's kernel, one sample at a time, with the starting
        // convolution (the conv update waits until every sample is through).
        let kept = self.hidden_grads.iter().zip(&self.mask_seeds);
        for (&index, (hidden_grad, &seed)) in batch.iter().zip(kept) {
            let pooled = &mut self.pass.ws.pooled;
            samples.read(index as usize, &mut self.pass.image)?;
            let (conv_kernel, conv_bias) = params.conv();
            conv_relu_pool(&self.pass.image, conv_kernel, conv_bias, pooled, None);
            if rate > 0.0 {
                dropout(pooled, rate, &mut SampleStream(seed));
            }
            params.step_dense1(pooled, hidden_grad, self.lr, rng);
        }
        let lr = self.lr;
        let step = |values: &mut [f32], grads: &[f32]| axpy(-lr, grads, values);
        let layers = params.small_layers();
        step(
            layers.conv_kernel.as_flattened_mut().as_flattened_mut(),
            self.conv_kernel_grad.as_flattened().as_flattened(),
        );
        step(layers.conv_bias, &self.conv_bias_grad);
        step(layers.dense1_bias, &self.dense1_bias_grad);
        step(
            layers.dense2_kernel.as_flattened_mut(),
            self.dense2_kernel_grad.as_flattened(),
        );
        step(layers.dense2_bias, &self.dense2_bias_grad);
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order (see
    /// [`Trainer::train_epoch`](super::Trainer::train_epoch)); batch size
    /// at most `MAX_BATCH`.
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](super::Trainer::train_epoch).
    pub fn train_epoch<N, S, R, P>(
        &mut self,
        params: &mut N,
        samples: &S,
        mut epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        N: StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES>,
        S: Inputs<[[f32; W]; H]> + ?Sized,
        R: RngCore,
        P: Progress,
    {
        epoch.run(samples.len(), |batch, rng| {
            self.train_batch(params, samples, batch, rng)
        })
    }

    /// Loss and accuracy of `params` on `samples`, in this trainer's memory.
    ///
    /// # Errors
    /// As [`Params::evaluate`].
    pub fn evaluate<N, S>(&mut self, params: &N, samples: &S) -> Result<crate::Evaluation, Error>
    where
        N: Network<H, W, K, FLAT, HIDDEN, CLASSES>,
        S: Inputs<[[f32; W]; H]> + ?Sized,
    {
        crate::model::layers::evaluate(params, samples, &mut self.pass.ws)
    }
}

impl<
        const MAX_BATCH: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
        N: StreamedParams<H, W, K, FLAT, HIDDEN, CLASSES>,
    > Train<N, Sgd> for StreamingSgdTrainer<MAX_BATCH, H, W, K, FLAT, HIDDEN, CLASSES>
{
    type Input = [[f32; W]; H];

    fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        StreamingSgdTrainer::set_dropout(self, rate)
    }

    fn dropout(&self) -> f32 {
        self.dropout
    }

    /// Steps at `optimizer`'s learning rate.
    fn train_batch<D: Inputs<[[f32; W]; H]> + Sync + ?Sized>(
        &mut self,
        params: &mut N,
        optimizer: &mut Sgd,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        self.configure(optimizer.lr(), self.dropout)?;
        StreamingSgdTrainer::train_batch(self, params, samples, batch, rng)
    }

    fn evaluate<D: Inputs<[[f32; W]; H]> + Sync + ?Sized>(
        &mut self,
        params: &N,
        samples: &D,
    ) -> Result<crate::Evaluation, Error> {
        StreamingSgdTrainer::evaluate(self, params, samples)
    }
}

/// The same value as [`StreamingSgdTrainer::zeroed_state`], as
/// [`Zeroed::ZERO`].
impl<
        const MAX_BATCH: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Zeroed for StreamingSgdTrainer<MAX_BATCH, H, W, K, FLAT, HIDDEN, CLASSES>
{
    const ZERO: Self = Self::zeroed_state();
}
