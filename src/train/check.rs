//! The one place that checks a batch before a step and its loss and
//! gradient after: [`batch_scale`] and [`checked_loss`], for every schedule.

use crate::error::Divergence;
use crate::kernels::all_finite;
use crate::Error;

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
