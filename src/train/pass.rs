//! The per-sample pass of streaming SGD, which keeps the book's network in
//! its own shape: forward, the loss, and backward into caller-owned
//! gradients, dense1's kernel gradient left to the schedule, which forms it
//! from the hidden layer's gradient. [`Trainer`](super::Trainer), the
//! parallel schedule and the last layer's run the pass over any
//! [`Stack`](crate::stack::Stack) instead.
//!
//! Also the one place that checks a batch before a step and its gradient
//! after: [`batch_scale`] and [`checked_loss`].

use crate::error::Divergence;
use crate::kernels::conv::conv_relu_pool_backward_listed;
use crate::kernels::dense::nonzero_positions;
use crate::kernels::dropout::dropout;
use crate::kernels::{all_finite, dense, dense_backward, softmax_cross_entropy};
use crate::model::layers::{hidden_parts, Layers};
use crate::model::Workspace;
use crate::Error;
use rand_core::RngCore;

/// A dense layer's parameters, read-only.
pub(crate) struct Layer<'a, const IN: usize, const OUT: usize> {
    pub kernel: &'a [[f32; OUT]; IN],
    pub bias: &'a [f32; OUT],
}

/// Where a dense layer's gradient is added.
pub(crate) struct LayerGrads<'a, const IN: usize, const OUT: usize> {
    pub kernel: &'a mut [[f32; OUT]; IN],
    pub bias: &'a mut [f32; OUT],
}

/// The sample's label and the factor its loss and gradient are scaled by
/// (one over the batch size).
#[derive(Clone, Copy)]
pub(crate) struct Target {
    pub label: usize,
    pub scale: f32,
}

/// The loss of one sample at the last layer and backward through it: the
/// logits of `hidden` (the hidden layer after ReLU), the softmax
/// cross-entropy against `target`, the layer's gradient added to `grads`,
/// and with `hidden_grad` the gradient at the hidden layer's outputs written
/// there (zero where ReLU closed). Returns the sample's loss (unscaled).
pub(crate) fn last_layer_backward<const HIDDEN: usize, const CLASSES: usize>(
    hidden: &[f32; HIDDEN],
    layer: Layer<'_, HIDDEN, CLASSES>,
    target: Target,
    logits: &mut [f32; CLASSES],
    logits_grad: &mut [f32; CLASSES],
    grads: LayerGrads<'_, HIDDEN, CLASSES>,
    hidden_grad: Option<&mut [f32; HIDDEN]>,
) -> Result<f32, Error> {
    dense(hidden, layer.kernel, layer.bias, logits);
    let loss = softmax_cross_entropy(logits, target.label, target.scale, logits_grad)?;
    dense_backward(
        hidden,
        layer.kernel,
        logits_grad,
        grads.kernel,
        grads.bias,
        hidden_grad,
    );
    Ok(loss)
}

/// Where the network's gradient goes but dense1's kernel's, which the
/// schedule forms from `hidden` (the sample's gradient at dense1's outputs)
/// and the pooled map.
pub(crate) struct Grads<'a, const K: usize, const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> {
    pub conv_kernel: &'a mut [[[f32; K]; 3]; 3],
    pub conv_bias: &'a mut [f32; K],
    pub dense1_bias: &'a mut [f32; HIDDEN],
    pub hidden: &'a mut [f32; HIDDEN],
    pub dense2: LayerGrads<'a, HIDDEN, CLASSES>,
}

/// `f` of the positions of `pooled`'s non-zero cells (dense1's rows both
/// ways, and the cells backward visits), listed again on the stack when
/// backward needs them: the streaming schedule's point is a small RAM.
// A frame of its own: the list lives only while backward needs it.
#[inline(never)]
fn relisted<const FLAT: usize, R>(pooled: &[f32; FLAT], f: impl FnOnce(&[u16]) -> R) -> R {
    let mut positions = [0u16; FLAT];
    let len = nonzero_positions(pooled, &mut positions);
    f(positions.get(..len).unwrap_or_default())
}

/// What the pass keeps of the one sample in flight: the image, the pooled
/// map after dropout (its zeros are the ReLU and dropout masks, so no
/// separate masks are stored), the winner of each pooling window (one byte
/// per cell), the list of the map's non-zero cells (`L`), the hidden layer,
/// and the gradients flowing back but the hidden layer's (which the schedule
/// keeps, see [`Grads`]).
#[derive(Clone, Debug)]
#[repr(C)]
pub(crate) struct Pass<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
> {
    pub ws: Workspace<FLAT, HIDDEN, CLASSES>,
    pub image: [[f32; W]; H],
    argmax: [u8; FLAT],
    logits_grad: [f32; CLASSES],
    pooled_grad: [f32; FLAT],
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Pass<H, W, K, FLAT, HIDDEN, CLASSES>
{
    pub const fn new() -> Self {
        Self {
            ws: Workspace::new(),
            image: [[0.0; W]; H],
            argmax: [0; FLAT],
            logits_grad: [0.0; CLASSES],
            pooled_grad: [0.0; FLAT],
        }
    }

    /// Forward through the hidden layer of the image in [`image`](Self::image),
    /// with a dropout mask at `rate` drawn from `rng`.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite pixel.
    pub fn forward(
        &mut self,
        params: &impl Layers<H, W, K, FLAT, HIDDEN, CLASSES>,
        rate: f32,
        rng: &mut impl RngCore,
    ) -> Result<(), Error> {
        if !all_finite(self.image.as_flattened()) {
            return Err(Error::NonFinite { what: "image" });
        }
        hidden_parts(
            params,
            &self.image,
            &mut self.ws,
            Some(&mut self.argmax),
            |pooled| {
                if rate > 0.0 {
                    dropout(pooled, rate, rng);
                }
            },
            None,
        );
        Ok(())
    }

    /// The loss of the sample [`forward`](Self::forward) ran and backward
    /// through the whole network into `grads`, with dropout at `rate` (the
    /// rate forward used). Returns the sample's loss (unscaled).
    ///
    /// # Errors
    /// [`Error::LabelOutOfRange`].
    pub fn backward(
        &mut self,
        params: &impl Layers<H, W, K, FLAT, HIDDEN, CLASSES>,
        target: Target,
        rate: f32,
        grads: Grads<'_, K, FLAT, HIDDEN, CLASSES>,
    ) -> Result<f32, Error> {
        let (dense2_kernel, dense2_bias) = params.dense2();
        let loss = last_layer_backward(
            &self.ws.hidden,
            Layer {
                kernel: dense2_kernel,
                bias: dense2_bias,
            },
            target,
            &mut self.ws.logits,
            &mut self.logits_grad,
            grads.dense2,
            Some(&mut *grads.hidden),
        )?;
        let Self {
            ws,
            image,
            argmax,
            pooled_grad,
            ..
        } = self;
        let hidden_grad = &*grads.hidden;
        relisted(&ws.pooled, |active| {
            params.dense1_backward_listed(&ws.pooled, active, hidden_grad, grads.dense1_bias, pooled_grad);
            if rate > 0.0 {
                // Kept values were scaled by 1 / (1 - rate) on the way forward;
                // the gradient elsewhere is zero.
                let keep_scale = 1.0 / (1.0 - rate);
                for &cell in active {
                    if let Some(d) = pooled_grad.get_mut(usize::from(cell)) {
                        *d *= keep_scale;
                    }
                }
            }
            conv_relu_pool_backward_listed(
                image,
                &ws.pooled,
                active,
                argmax,
                pooled_grad,
                grads.conv_kernel,
                grads.conv_bias,
            );
        });
        Ok(loss)
    }
}

/// Checks a batch of indices before a step (not empty, at most `max`) and
/// returns the factor each sample's loss is scaled by.
///
/// # Errors
/// [`Error::Empty`], [`Error::Length`].
pub(crate) fn batch_scale(batch: &[u32], max: usize) -> Result<f32, Error> {
    if batch.is_empty() {
        return Err(Error::Empty { what: "batch" });
    }
    if batch.len() > max {
        return Err(Error::Length {
            what: "batch",
            expected: max,
            found: batch.len(),
        });
    }
    Ok(1.0 / batch.len() as f32)
}

/// The largest mean loss of a batch that training accepts; above it a step
/// returns [`Error::Diverged`].
///
/// A sample's loss is the log of the sum of its logits' exponentials minus
/// its true class's logit: at most the gap between the largest logit and the
/// true one, plus the log of the number of classes. A network at Glorot
/// initialization starts near `ln(classes)` (2.3 for 10 classes) and a
/// healthy run only lowers it: even a confidently wrong sample costs tens,
/// not hundreds. A batch mean of 1,000 means the true class trails the
/// largest logit by about 1,000 on average, which only a run whose steps
/// have blown up the weights reaches; such runs go on to 1e20 and beyond
/// within a few batches.
///
/// ```
/// assert_eq!(tinycnn::train::DIVERGED_LOSS, 1000.0);
/// ```
pub const DIVERGED_LOSS: f32 = 1000.0;

/// The batch's mean loss from the sum of its samples' losses, once it is
/// finite and at most [`DIVERGED_LOSS`], and every gradient in `grads` is
/// finite.
///
/// # Errors
/// [`Error::Diverged`] otherwise, with the loss.
pub(crate) fn checked_loss<'a>(
    loss_sum: f32,
    scale: f32,
    grads: impl IntoIterator<Item = &'a [f32]>,
) -> Result<f32, Error> {
    let loss = loss_sum * scale;
    if !loss.is_finite() || loss > DIVERGED_LOSS || !grads.into_iter().all(all_finite) {
        return Err(Divergence::of_step(loss));
    }
    Ok(loss)
}
