//! Fine-tuning the last layer alone: the rest of the network stays read-only
//! (in flash, on a microcontroller), so training needs RAM for one small
//! layer, not for the whole model.

use super::check::{batch_scale, checked_loss};
use super::fit::{Epoch, Progress};
use super::optim::Optimizer;
use super::schedule::Train;
use crate::data::{Inputs, Samples};
use crate::kernels::{argmax, dense};
use crate::model::{evaluate_each, evaluate_logits, Evaluation, ParamBuffer, Params, Workspace};
use crate::stack::workspace::{check_input, NoDraws};
use crate::stack::{Book, DenseParams, Last, Layer, Logits, Stack, Zeroed};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// A stack's last dense layer, trained apart from the rest of the model:
/// [`DenseParams`] (`kernel` `(in, out)`, `bias`). For the book's network,
/// `dense2`.
///
/// ```
/// let params = tinycnn::FashionParams::boxed();
/// let head = tinycnn::train::Head::from_params(&*params);
/// assert_eq!(core::mem::size_of_val(&head), 4_040);
/// ```
pub type Head<const HIDDEN: usize = 100, const CLASSES: usize = 10> = DenseParams<HIDDEN, CLASSES>;

/// The last layer of stack `S`.
type LastOf<S> = <<S as Stack>::Layers as Last>::Last;
/// Every layer of `S` but the last.
type BodyOf<S> = <<S as Stack>::Layers as Last>::Body;
/// The parameters of `S`'s last layer: its [`Head`].
pub type HeadOf<S> = <LastOf<S> as Layer>::Params;

impl<const HIDDEN: usize, const CLASSES: usize> Head<HIDDEN, CLASSES> {
    /// A copy of the book model's last layer, the starting point of
    /// fine-tuning.
    pub fn from_params<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    ) -> Self {
        let mut head = <Self as ParamBuffer>::ZERO;
        head.copy_from(params);
        head
    }

    /// Overwrites this head with the book model's last layer, in place (no
    /// copy of the layer passes through the stack).
    pub fn copy_from<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    ) {
        self.copy_from_flat(params.as_flat());
    }

    /// Overwrites this head with the last layer of any stack's parameters
    /// (their flat view): the last `HIDDEN * CLASSES + CLASSES` values.
    ///
    /// ```
    /// use tinycnn::stack::{Deep, Stack};
    /// use tinycnn::train::Head;
    /// use tinycnn::ParamBuffer;
    /// let mut params = Deep::boxed_params();
    /// params[Deep::PARAMETERS - 1] = 1.5;
    /// let mut head = <Head as ParamBuffer>::ZERO;
    /// head.copy_from_flat(params.as_flat());
    /// assert_eq!(head.bias[9], 1.5);
    /// ```
    pub fn copy_from_flat(&mut self, params: &[f32]) {
        let own = self.as_flat_mut();
        if let Some(last) = params.get(params.len().saturating_sub(own.len())..) {
            if last.len() == own.len() {
                own.copy_from_slice(last);
            }
        }
    }

    /// Logits of one image: the model's features through this layer.
    ///
    /// # Errors
    /// As [`Params::forward`].
    pub fn forward<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
        &self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        image: &[[f32; W]; H],
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<[f32; CLASSES], Error> {
        let mut logits = [0.0; CLASSES];
        dense(
            params.features(image, workspace)?,
            &self.kernel,
            &self.bias,
            &mut logits,
        );
        Ok(logits)
    }

    /// The predicted class of one image.
    ///
    /// # Errors
    /// As [`Params::forward`].
    pub fn predict<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
        &self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        image: &[[f32; W]; H],
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<usize, Error> {
        Ok(argmax(&self.forward(params, image, workspace)?))
    }

    /// Mean loss and accuracy over `samples`.
    ///
    /// # Errors
    /// As [`Params::evaluate`].
    pub fn evaluate<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        S: Samples<H, W> + ?Sized,
    >(
        &self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        samples: &S,
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<Evaluation, Error> {
        let mut image = [[0.0f32; W]; H];
        evaluate_logits(samples, &mut image, |image| {
            self.forward(params, image, workspace)
        })
    }
}

/// Trains the last layer of a stack `S` (by default the book's network),
/// its [`Head`], on the features of the fixed rest of the model: the
/// gradient of the last layer, one sample's maps, and nothing of the size of
/// the model ([`SGD_BYTES`](Self::SGD_BYTES): 27,872 bytes for the book's network).
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Book;
/// use tinycnn::train::{Epoch, Head, HeadTrainer, Sgd};
/// use tinycnn::{Params, Workspace};
///
/// // A fixed model whose features do not know the classes yet.
/// let mut params = Params::<4, 4, 2, 8, 6, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(3);
/// params.init_glorot(&mut rng);
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut head = Head::from_params(&params);
/// let mut trainer = HeadTrainer::<Book<4, 4, 2, 8, 6, 2>>::new();
/// let mut order = [0u32; 64];
/// for epoch in 0..30 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     trainer.train_epoch(&params, &mut head, &mut Sgd::new(0.5).unwrap(), &data[..], epoch).unwrap();
/// }
/// assert_eq!(trainer.evaluate(&params, &head, &data[..]).unwrap().accuracy, 1.0);
/// ```
#[repr(C)]
pub struct HeadTrainer<S: Stack = Book>
where
    S::Layers: Last,
{
    grads: HeadOf<S>,
    body: <BodyOf<S> as Layer>::State,
    last: <LastOf<S> as Layer>::State,
    input: S::Input,
    logits_grad: S::Logits,
}

// SAFETY: the gradient is `Pod`, the states `Zeroable`, the input and
// logits `Pod`: all zero bytes form a valid value.
unsafe impl<S: Stack> Zeroable for HeadTrainer<S> where S::Layers: Last {}

impl<S: Stack> HeadTrainer<S>
where
    S::Layers: Last,
{
    /// Working memory of last-layer training with plain SGD, beyond the
    /// model in flash: this trainer and the head (the permutation adds 4
    /// bytes per sample).
    pub const SGD_BYTES: usize = size_of::<Self>() + size_of::<HeadOf<S>>() + S::Layers::FRAME_BYTES;

    /// A trainer with zero gradients, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            grads: Zeroed::ZERO,
            body: Zeroed::ZERO,
            last: Zeroed::ZERO,
            input: Zeroed::ZERO,
            logits_grad: Zeroed::ZERO,
        }
    }

    /// A new trainer on the heap.
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// The body's features of the input in place (checked), then the
    /// head's logits.
    fn forward(&mut self, params: &[f32], head: &HeadOf<S>) -> Result<&S::Logits, Error> {
        check_input::<S>(&self.input)?;
        BodyOf::<S>::infer(params, &mut self.input, &mut self.body);
        let features = BodyOf::<S>::output_mut(&mut self.body);
        LastOf::<S>::forward(head.as_flat(), features, &mut self.last, 0.0, &mut NoDraws);
        Ok(LastOf::<S>::output(&self.last))
    }

    /// One gradient step of the head on the samples at `batch`; the model is
    /// only read. Returns the batch's mean loss; on a diverged batch (as
    /// [`Trainer::train_batch`](super::Trainer::train_batch)) returns
    /// [`Error::Diverged`] and leaves the head as it was.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Diverged`], and whatever reading a sample or
    /// the forward pass returns.
    pub fn train_batch<D: Inputs<S::Input> + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &S::Params,
        head: &mut HeadOf<S>,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
    ) -> Result<f32, Error> {
        let scale = batch_scale(batch, usize::MAX)?;
        self.grads.as_flat_mut().fill(0.0);
        let mut loss_sum = 0.0f32;
        for &index in batch {
            let label = samples.read(index as usize, &mut self.input)?;
            let mut logits_grad = self.logits_grad;
            loss_sum +=
                self.forward(params.as_flat(), head)?
                    .cross_entropy(label, scale, &mut logits_grad)?;
            self.logits_grad = logits_grad;
            LastOf::<S>::backward(
                head.as_flat(),
                self.grads.as_flat_mut(),
                BodyOf::<S>::output(&self.body),
                &self.last,
                &mut (),
                &self.logits_grad,
                None,
                0.0,
                None,
            );
        }
        let loss = checked_loss(loss_sum, scale, [self.grads.as_flat()])?;
        optimizer.step(head.as_flat_mut(), self.grads.as_flat())?;
        Ok(loss)
    }

    /// Mean loss and accuracy of `head` over `samples`, in this trainer's
    /// working memory.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NonFinite`], [`Error::LabelOutOfRange`],
    /// and whatever reading a sample returns.
    pub fn evaluate<D: Inputs<S::Input> + ?Sized>(
        &mut self,
        params: &S::Params,
        head: &HeadOf<S>,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        let mut input = self.input;
        let mut grad = S::Logits::ZERO;
        evaluate_each(samples, &mut input, |input, label| {
            self.input = *input;
            let logits = self.forward(params.as_flat(), head)?;
            Ok((
                logits.cross_entropy(label, 1.0, &mut grad)?,
                logits.class() == label,
            ))
        })
    }

    /// One pass over `samples` in a fresh random order (see
    /// [`Trainer::train_epoch`](super::Trainer::train_epoch)).
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](super::Trainer::train_epoch).
    pub fn train_epoch<D, O, R, P>(
        &mut self,
        params: &S::Params,
        head: &mut HeadOf<S>,
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
        epoch.run(samples.len(), |batch, _| {
            self.train_batch(params, head, optimizer, samples, batch)
        })
    }
}

/// What [`HeadTrainer`] trains through [`Train`]: the fixed rest of a
/// stack's model (in flash, on a microcontroller) and the head that learns.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::Book;
/// use tinycnn::train::{Epoch, Head, HeadTrainer, Sgd, Train, Tuning};
/// use tinycnn::Params;
/// let mut params = Params::<4, 4, 2, 8, 6, 2>::zeroed();
/// params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut head = Head::from_params(&params);
/// let mut tuning = Tuning::<Book<4, 4, 2, 8, 6, 2>> { params: &params, head: &mut head };
/// let mut trainer = HeadTrainer::<Book<4, 4, 2, 8, 6, 2>>::new();
/// let (mut order, mut rng) = ([0u32; 64], rand_pcg::Pcg32::seed_from_u64(4));
/// let mut sgd = Sgd::new(0.5).unwrap();
/// for epoch in 0..30 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     Train::train_epoch(&mut trainer, &mut tuning, &mut sgd, &data[..], epoch).unwrap();
/// }
/// let fit = Train::<_, Sgd>::evaluate(&mut trainer, &tuning, &data[..]).unwrap();
/// assert_eq!(fit.accuracy, 1.0);
/// ```
pub struct Tuning<'a, S: Stack>
where
    S::Layers: Last,
{
    /// The model, read only: every layer but the last is used.
    pub params: &'a S::Params,
    /// The last layer, trained.
    pub head: &'a mut HeadOf<S>,
}

impl<S: Stack, O: Optimizer + ?Sized> Train<Tuning<'_, S>, O> for HeadTrainer<S>
where
    S::Layers: Last,
{
    type Input = S::Input;

    /// Only 0: fine-tuning keeps the body's features as they are.
    fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        if rate == 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidConfig {
                what: "last-layer training runs without dropout",
            })
        }
    }

    fn dropout(&self) -> f32 {
        0.0
    }

    fn train_batch<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        model: &mut Tuning<'_, S>,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
        _: &mut impl RngCore,
    ) -> Result<f32, Error> {
        HeadTrainer::train_batch(self, model.params, model.head, optimizer, samples, batch)
    }

    fn evaluate<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        model: &Tuning<'_, S>,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        HeadTrainer::evaluate(self, model.params, model.head, samples)
    }
}

/// The same value as [`HeadTrainer::new`], as [`Zeroed::ZERO`].
impl<S: Stack> Zeroed for HeadTrainer<S>
where
    S::Layers: Last,
{
    const ZERO: Self = Self::new();
}

impl<S: Stack> Default for HeadTrainer<S>
where
    S::Layers: Last,
{
    fn default() -> Self {
        Self::new()
    }
}
