//! SGD without a gradient buffer the size of the model: the update of the
//! wide dense layer (nearly all of the parameters) is applied sample by
//! sample from what the batch kept, so training fits beside the parameters
//! in a small RAM.

use super::check::{batch_scale, checked_loss};
use super::fit::{Epoch, Progress};
use super::optim::{check_learning_rate, Sgd};
use super::schedule::Train;
use crate::data::Inputs;
use crate::kernels::axpy;
use crate::kernels::dropout::{check_rate, SampleStream};
use crate::model::{evaluate_each, Evaluation, ParamBuffer};
use crate::stack::workspace::{check_input, NoDraws};
use crate::stack::{Book, Layer, Logits, Split, Stack, Streamed, Tensor, Zeroed};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// The layers of stack `S` before its wide layer.
type Front<S> = <<S as Stack>::Layers as Split>::Front;
/// The wide layer.
type Wide<S> = <<S as Stack>::Layers as Split>::Wide;
/// The layers after it.
type Back<S> = <<S as Stack>::Layers as Split>::Back;

/// Plain SGD on a stack `S` (by default the book's network) in two passes
/// over each mini-batch, holding at most `MAX_BATCH` samples' worth of
/// gradients at the wide layer's outputs (400 bytes each for the book's
/// network) instead of a gradient of the whole model.
///
/// Pass one runs forward and backward for every sample with the batch's
/// starting parameters, adds up the gradients of every parameter but the
/// wide layer's kernel (1,210 values for the book's network) and keeps each
/// sample's gradient at the wide layer's outputs. Pass two reads each
/// sample again, recomputes the wide layer's input (with the same dropout
/// mask, drawn again from a per-sample seed) and subtracts
/// `lr * x (outer) dh / batch` from the kernel in place; then the other
/// parameters step. The result equals [`Trainer`](super::Trainer) with
/// [`Sgd`] up to rounding, for one more pass of the convolutions per sample.
///
/// The wide layer may keep its kernel in 8 bits (`Dense(OUT, i8)`,
/// [`Dense8`](crate::stack::Dense8); [`Book8`](crate::stack::Book8) for the
/// book's network): pass two then adds each sample's update to the grid
/// stochastically rounded ([`add_outer_stochastic`](crate::kernels::add_outer_stochastic),
/// random bits from the generator given to the step), so no `f32` copy of
/// the kernel exists either; `S::PARAMETER_BYTES + Self::BYTES` is the
/// whole training's RAM but the permutation.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Book;
/// use tinycnn::train::{Epoch, StreamingSgdTrainer};
/// use tinycnn::Params;
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
/// params.init_glorot(&mut rng);
/// let mut trainer = StreamingSgdTrainer::<8, Book<4, 4, 2, 8, 4, 2>>::new(0.5).unwrap();
/// let mut order = [0u32; 64];
/// let mut losses = Vec::new();
/// for epoch in 0..20 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     losses.push(trainer.train_epoch(&mut params, &data[..], epoch).unwrap());
/// }
/// assert!(losses[19] < losses[0] / 4.0);
/// ```
// In the order written, so that where its arrays fall (and so the firmware's
// instruction counts) does not move with unrelated changes.
#[repr(C)]
pub struct StreamingSgdTrainer<const MAX_BATCH: usize = 32, S: Stack = Book>
where
    S::Layers: Split,
{
    front_grads: <Front<S> as Layer>::Params,
    wide_bias_grad: <Wide<S> as Layer>::Out,
    back_grads: <Back<S> as Layer>::Params,
    hidden_grads: [<Wide<S> as Layer>::Out; MAX_BATCH],
    mask_seeds: [u64; MAX_BATCH],
    input: S::Input,
    front: <Front<S> as Layer>::State,
    front_junctions: <Front<S> as Layer>::Junctions,
    wide: <Wide<S> as Layer>::State,
    wide_input_grad: <Wide<S> as Layer>::In,
    back: <Back<S> as Layer>::State,
    back_junctions: <Back<S> as Layer>::Junctions,
    logits_grad: S::Logits,
    lr: f32,
    dropout: f32,
}

// SAFETY: the gradients and maps are `Zeroable` (parameters' types, `Pod`
// maps and the layers' states), the seeds `u64`, the rates `f32`: all zero
// bytes form a valid value.
unsafe impl<const MAX_BATCH: usize, S: Stack> Zeroable for StreamingSgdTrainer<MAX_BATCH, S> where
    S::Layers: Split
{
}

impl<const MAX_BATCH: usize, S: Stack> StreamingSgdTrainer<MAX_BATCH, S>
where
    S: Streams,
{
    /// Working memory beyond the parameters: this trainer and the largest
    /// buffer a layer's kernel keeps on the stack (the permutation adds 4
    /// bytes per training sample).
    pub const BYTES: usize = size_of::<Self>() + S::Layers::FRAME_BYTES;

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
            front_grads: Zeroed::ZERO,
            wide_bias_grad: Zeroed::ZERO,
            back_grads: Zeroed::ZERO,
            hidden_grads: [Zeroed::ZERO; MAX_BATCH],
            mask_seeds: [0; MAX_BATCH],
            input: Zeroed::ZERO,
            front: Zeroed::ZERO,
            front_junctions: Zeroed::ZERO,
            wide: Zeroed::ZERO,
            wide_input_grad: Zeroed::ZERO,
            back: Zeroed::ZERO,
            back_junctions: Zeroed::ZERO,
            logits_grad: Zeroed::ZERO,
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

    /// Forward of the input in place through every layer, dropout drawn
    /// from `stream`; returns the loss against `label` with its gradient
    /// (times `scale`) at the logits.
    fn forward(
        &mut self,
        params: &[f32],
        label: usize,
        scale: f32,
        rate: f32,
        stream: &mut impl RngCore,
    ) -> Result<f32, Error> {
        check_input::<S>(&self.input)?;
        let (front, wide, back) = split_params::<S>(params);
        Front::<S>::forward(front, &mut self.input, &mut self.front, rate, stream);
        Wide::<S>::forward(
            wide,
            Front::<S>::output_mut(&mut self.front),
            &mut self.wide,
            rate,
            stream,
        );
        Back::<S>::forward(
            back,
            Wide::<S>::output_mut(&mut self.wide),
            &mut self.back,
            rate,
            stream,
        );
        Back::<S>::output(&self.back).cross_entropy(label, scale, &mut self.logits_grad)
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
    pub fn train_batch<D>(
        &mut self,
        params: &mut S::Params,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error>
    where
        D: Inputs<S::Input> + ?Sized,
    {
        let scale = batch_scale(batch, MAX_BATCH)?;
        self.configure(self.lr, self.dropout)?;
        self.front_grads.as_flat_mut().fill(0.0);
        self.wide_bias_grad = Zeroed::ZERO;
        self.back_grads.as_flat_mut().fill(0.0);
        let rate = self.dropout;
        let mut loss_sum = 0.0f32;

        // Pass one: every gradient but the wide layer's kernel, with the
        // starting parameters; each sample's gradient at the wide layer's
        // outputs is kept.
        for (position, &index) in batch.iter().enumerate() {
            let (Some(hidden_grad), Some(seed)) = (
                self.hidden_grads.get_mut(position),
                self.mask_seeds.get_mut(position),
            ) else {
                break;
            };
            let label = samples.read(index as usize, &mut self.input)?;
            *seed = rng.next_u64();
            let mut stream = SampleStream(*seed);
            let (front, wide, back) = split_params::<S>(params.as_flat());
            let Self {
                front_grads,
                wide_bias_grad,
                back_grads,
                input,
                front: front_state,
                front_junctions,
                wide: wide_state,
                wide_input_grad,
                back: back_state,
                back_junctions,
                logits_grad,
                ..
            } = self;
            check_input::<S>(input)?;
            Front::<S>::forward(front, input, front_state, rate, &mut stream);
            let wide_input = Front::<S>::output_mut(front_state);
            Wide::<S>::forward(wide, wide_input, wide_state, rate, &mut stream);
            Back::<S>::forward(
                back,
                Wide::<S>::output_mut(wide_state),
                back_state,
                rate,
                &mut stream,
            );
            loss_sum += Back::<S>::output(back_state).cross_entropy(label, scale, logits_grad)?;
            Back::<S>::backward(
                back,
                back_grads.as_flat_mut(),
                Wide::<S>::output(wide_state),
                back_state,
                back_junctions,
                logits_grad,
                None,
                rate,
                Some(hidden_grad),
            );
            Wide::<S>::backward_inputs(
                wide,
                Front::<S>::output(front_state),
                wide_state,
                hidden_grad,
                wide_bias_grad,
                wide_input_grad,
                rate,
            );
            Front::<S>::backward(
                front,
                front_grads.as_flat_mut(),
                input,
                front_state,
                front_junctions,
                wide_input_grad,
                Wide::<S>::listed(wide_state),
                rate,
                None,
            );
        }
        let kept: &[<Wide<S> as Layer>::Out] = self.hidden_grads.get(..batch.len()).unwrap_or_default();
        let loss = checked_loss(
            loss_sum,
            scale,
            [
                self.front_grads.as_flat(),
                bytemuck::cast_slice(core::slice::from_ref(&self.wide_bias_grad)),
                self.back_grads.as_flat(),
                bytemuck::cast_slice(kept),
            ],
        )?;

        // Pass two: the wide layer's kernel, one sample at a time, with the
        // starting convolutions (their update waits until every sample is
        // through).
        let lr = self.lr;
        for ((&index, hidden_grad), &seed) in batch.iter().zip(&self.hidden_grads).zip(&self.mask_seeds) {
            samples.read(index as usize, &mut self.input)?;
            let mut stream = SampleStream(seed);
            let flat = params.as_flat_mut();
            let (front, rest) = flat.split_at_mut(<Front<S> as Layer>::PARAMS.min(flat.len()));
            let wide = rest.get_mut(..<Wide<S> as Layer>::PARAMS).unwrap_or_default();
            Front::<S>::infer(front, &mut self.input, &mut self.front);
            let wide_input = Front::<S>::output_mut(&mut self.front);
            Wide::<S>::drop_out(wide_input, rate, &mut stream);
            Wide::<S>::step_kernel(wide, wide_input, hidden_grad, lr, rng);
        }
        let step = |values: &mut [f32], grads: &[f32]| axpy(-lr, grads, values);
        let flat = params.as_flat_mut();
        let (front, rest) = flat.split_at_mut(<Front<S> as Layer>::PARAMS.min(flat.len()));
        let (wide, back) = rest.split_at_mut(<Wide<S> as Layer>::PARAMS.min(rest.len()));
        // Tensor by tensor, as the step of each would run alone.
        each_tensor::<Front<S>>(front, self.front_grads.as_flat(), step);
        let bias = wide
            .len()
            .saturating_sub(size_of::<<Wide<S> as Layer>::Out>() / 4);
        if let Some(wide_bias) = wide.get_mut(bias..) {
            step(
                wide_bias,
                bytemuck::cast_slice(core::slice::from_ref(&self.wide_bias_grad)),
            );
        }
        each_tensor::<Back<S>>(back, self.back_grads.as_flat(), step);
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order (see
    /// [`Trainer::train_epoch`](super::Trainer::train_epoch)); batch size
    /// at most `MAX_BATCH`.
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](super::Trainer::train_epoch).
    pub fn train_epoch<D, R, P>(
        &mut self,
        params: &mut S::Params,
        samples: &D,
        mut epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        D: Inputs<S::Input> + ?Sized,
        R: RngCore,
        P: Progress,
    {
        epoch.run(samples.len(), |batch, rng| {
            self.train_batch(params, samples, batch, rng)
        })
    }

    /// Loss and accuracy of `params` on `samples` (no dropout), in this
    /// trainer's memory.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NonFinite`], [`Error::LabelOutOfRange`],
    /// and whatever reading a sample returns.
    pub fn evaluate<D>(&mut self, params: &S::Params, samples: &D) -> Result<Evaluation, Error>
    where
        D: Inputs<S::Input> + ?Sized,
    {
        let mut input = self.input;
        evaluate_each(samples, &mut input, |input, label| {
            self.input = *input;
            let loss = self.forward(params.as_flat(), label, 1.0, 0.0, &mut NoDraws)?;
            Ok((loss, Back::<S>::output(&self.back).class() == label))
        })
    }
}

/// A stack [`StreamingSgdTrainer`] trains: its layers [`Split`] at a wide
/// dense layer that updates sample by sample ([`Streamed`]: `Dense(OUT)`
/// or `Dense(OUT, i8)`), the layers around it in `f32`. Every such stack
/// has it.
pub trait Streams:
    Stack<
    Layers: Split<
        Front: Layer<Out: Zeroed, Params: ParamBuffer>,
        Wide: Streamed<Out: Zeroed>,
        Back: Layer<Params: ParamBuffer>,
    >,
>
{
}

impl<S> Streams for S where
    S: Stack<
        Layers: Split<
            Front: Layer<Out: Zeroed, Params: ParamBuffer>,
            Wide: Streamed<Out: Zeroed>,
            Back: Layer<Params: ParamBuffer>,
        >,
    >
{
}

/// The parameters of the front, the wide layer and the back, in `flat`.
fn split_params<S: Stack>(flat: &[f32]) -> (&[f32], &[f32], &[f32])
where
    S::Layers: Split,
{
    let (front, rest) = flat.split_at(<Front<S> as Layer>::PARAMS.min(flat.len()));
    let (wide, back) = rest.split_at(<Wide<S> as Layer>::PARAMS.min(rest.len()));
    (front, wide, back)
}

/// `step` of each of `L`'s tensors in `params` with its gradient in
/// `grads` (both `L`'s own, `f32`).
fn each_tensor<L: Layer>(params: &mut [f32], grads: &[f32], mut step: impl FnMut(&mut [f32], &[f32])) {
    L::tensors(0, 0, 0, &mut |tensor: Tensor| {
        let range = tensor.at..tensor.at + tensor.len();
        if let (Some(values), Some(grads)) = (params.get_mut(range.clone()), grads.get(range)) {
            step(values, grads);
        }
    });
}

impl<const MAX_BATCH: usize, S: Stack> Train<S::Params, Sgd> for StreamingSgdTrainer<MAX_BATCH, S>
where
    S: Streams,
{
    type Input = S::Input;

    fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        StreamingSgdTrainer::set_dropout(self, rate)
    }

    fn dropout(&self) -> f32 {
        self.dropout
    }

    /// Steps at `optimizer`'s learning rate.
    fn train_batch<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut Sgd,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        self.configure(optimizer.lr(), self.dropout)?;
        StreamingSgdTrainer::train_batch(self, params, samples, batch, rng)
    }

    fn evaluate<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        StreamingSgdTrainer::evaluate(self, params, samples)
    }
}

/// The same value as [`StreamingSgdTrainer::zeroed_state`], as
/// [`Zeroed::ZERO`].
impl<const MAX_BATCH: usize, S: Stack> Zeroed for StreamingSgdTrainer<MAX_BATCH, S>
where
    S: Streams,
{
    const ZERO: Self = Self::zeroed_state();
}
