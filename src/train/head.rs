//! Fine-tuning the last layer alone: the rest of the network stays read-only
//! (in flash, on a microcontroller), so training needs RAM for one small
//! layer, not for the whole model.

use super::fit::{Epoch, Progress};
use super::optim::Optimizer;
use super::pass::{batch_scale, checked_loss, last_layer_backward, Layer, LayerGrads, Target};
use crate::data::Samples;
use crate::kernels::{argmax, dense};
use crate::model::{evaluate_logits, Evaluation, ParamBuffer, Params, Workspace};
use crate::Error;
use bytemuck::{Pod, Zeroable};
use rand_core::RngCore;

/// The last dense layer (`dense2`), trained apart from the rest of the model.
///
/// ```
/// let params = tinycnn::FashionParams::boxed();
/// let head = tinycnn::train::Head::from_params(&params);
/// assert_eq!(core::mem::size_of_val(&head), 4_040);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Head<const HIDDEN: usize = 100, const CLASSES: usize = 10> {
    /// Kernel, `[HIDDEN, CLASSES]` as `dense2.kernel`.
    pub kernel: [[f32; CLASSES]; HIDDEN],
    /// Bias, as `dense2.bias`.
    pub bias: [f32; CLASSES],
}

// SAFETY: `repr(C)` and only `f32` arrays: no padding, every bit pattern valid.
unsafe impl<const HIDDEN: usize, const CLASSES: usize> Zeroable for Head<HIDDEN, CLASSES> {}
// SAFETY: as above; the type is `Copy` and `'static`.
unsafe impl<const HIDDEN: usize, const CLASSES: usize> Pod for Head<HIDDEN, CLASSES> {}

impl<const HIDDEN: usize, const CLASSES: usize> ParamBuffer for Head<HIDDEN, CLASSES> {
    const ZERO: Self = Self {
        kernel: [[0.0; CLASSES]; HIDDEN],
        bias: [0.0; CLASSES],
    };
}

impl<const HIDDEN: usize, const CLASSES: usize> Head<HIDDEN, CLASSES> {
    /// A copy of the model's last layer, the starting point of fine-tuning.
    pub fn from_params<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    ) -> Self {
        Self {
            kernel: params.dense2_kernel,
            bias: params.dense2_bias,
        }
    }

    /// Overwrites this head with the model's last layer, in place (no copy of
    /// the layer passes through the stack).
    pub fn copy_from<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    ) {
        self.kernel.copy_from_slice(&params.dense2_kernel);
        self.bias = params.dense2_bias;
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

/// Trains a [`Head`] on the features of a fixed model: the gradient of the
/// last layer, one sample's activations, and nothing of the size of the model
/// (about 12 KB at the default sizes).
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::train::{Epoch, Head, HeadTrainer, Sgd};
/// use tinycnn::{Params, Workspace};
///
/// // A fixed model whose features do not know the classes yet.
/// let mut params = Params::<4, 4, 2, 8, 6, 2>::zeroed();
/// let mut rng = rand_pcg::Pcg32::seed_from_u64(3);
/// params.init_glorot(&mut rng);
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let mut head = Head::from_params(&params);
/// let mut trainer = HeadTrainer::new();
/// let mut order = [0u32; 64];
/// for epoch in 0..30 {
///     let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///     trainer.train_epoch(&params, &mut head, &mut Sgd::new(0.5).unwrap(), &data[..], epoch).unwrap();
/// }
/// assert_eq!(head.evaluate(&params, &data[..], &mut Workspace::new()).unwrap().accuracy, 1.0);
/// ```
#[derive(Clone, Debug)]
pub struct HeadTrainer<
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    grads: Head<HIDDEN, CLASSES>,
    ws: Workspace<FLAT, HIDDEN, CLASSES>,
    image: [[f32; W]; H],
    logits: [f32; CLASSES],
    logits_grad: [f32; CLASSES],
}

// SAFETY: only `f32` arrays and all-float parts: all zero bytes are valid.
unsafe impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Zeroable for HeadTrainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > HeadTrainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Working memory of last-layer training with plain SGD, beyond the
    /// model in flash: this trainer and the head (the permutation adds 4
    /// bytes per sample).
    pub const SGD_BYTES: usize = core::mem::size_of::<Self>() + core::mem::size_of::<Head<HIDDEN, CLASSES>>();

    /// A trainer with zero gradients, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            grads: Head::ZERO,
            ws: Workspace::new(),
            image: [[0.0; W]; H],
            logits: [0.0; CLASSES],
            logits_grad: [0.0; CLASSES],
        }
    }

    /// A new trainer on the heap.
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// One gradient step of the head on the samples at `batch`; the model is
    /// only read. Returns the batch's mean loss; on a diverged batch (as
    /// [`Trainer::train_batch`](super::Trainer::train_batch)) returns
    /// [`Error::Diverged`] and leaves the head as it was.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::Diverged`], and whatever reading a sample or
    /// the forward pass returns.
    pub fn train_batch<S: Samples<H, W> + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        head: &mut Head<HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        batch: &[u32],
    ) -> Result<f32, Error> {
        let scale = batch_scale(batch, usize::MAX)?;
        self.grads.as_flat_mut().fill(0.0);
        let mut loss_sum = 0.0f32;
        for &index in batch {
            let label = samples.read(index as usize, &mut self.image)?;
            let hidden = params.features(&self.image, &mut self.ws)?;
            loss_sum += last_layer_backward(
                hidden,
                Layer {
                    kernel: &head.kernel,
                    bias: &head.bias,
                },
                Target { label, scale },
                &mut self.logits,
                &mut self.logits_grad,
                LayerGrads {
                    kernel: &mut self.grads.kernel,
                    bias: &mut self.grads.bias,
                },
                None,
            )?;
        }
        let loss = checked_loss(loss_sum, scale, [self.grads.as_flat()])?;
        optimizer.step(head.as_flat_mut(), self.grads.as_flat())?;
        Ok(loss)
    }

    /// Mean loss and accuracy of `head` over `samples`, in this trainer's
    /// working memory (so evaluation needs no [`Workspace`] of its own).
    ///
    /// # Errors
    /// As [`Params::evaluate`].
    pub fn evaluate<S: Samples<H, W> + ?Sized>(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        head: &Head<HIDDEN, CLASSES>,
        samples: &S,
    ) -> Result<Evaluation, Error> {
        let ws = &mut self.ws;
        evaluate_logits(samples, &mut self.image, |image| head.forward(params, image, ws))
    }

    /// One pass over `samples` in a fresh random order (see
    /// [`Trainer::train_epoch`](super::Trainer::train_epoch)).
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](super::Trainer::train_epoch).
    pub fn train_epoch<S, O, R, P>(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        head: &mut Head<HIDDEN, CLASSES>,
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
        epoch.run(samples.len(), |batch, _| {
            self.train_batch(params, head, optimizer, samples, batch)
        })
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Default for HeadTrainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
    fn default() -> Self {
        Self::new()
    }
}
