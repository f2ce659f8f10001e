//! What the book network's forward pass reads of its parameters
//! ([`Params`]), and the forward, predict and evaluate it runs.

use super::Params;
use crate::kernels::all_finite;
use crate::kernels::dense::{dense_backward_listed, dense_listed};
use crate::kernels::{conv_relu_pool, dense, relu, ConvKernel};
use crate::model::{evaluate_logits, Evaluation, Workspace};
use crate::Error;

/// The layers' parameters, read-only, and dense1's three operations. A
/// public trait in a private module: the crate's types implement it, and
/// [`Network`](super::Network) makes it nameable in bounds.
pub trait Layers<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>
{
    /// The convolution's kernel and bias.
    fn conv(&self) -> (&ConvKernel<K>, &[f32; K]);

    /// dense2's kernel and bias.
    fn dense2(&self) -> (&[[f32; CLASSES]; HIDDEN], &[f32; CLASSES]);

    /// dense1 before ReLU, over the listed inputs (the non-zero ones). An
    /// 8-bit kernel rounds its inputs to fixed point in place.
    fn dense1_listed(&self, input: &mut [f32; FLAT], active: &[u16], out: &mut [f32; HIDDEN]);

    /// dense1 before ReLU, without a list.
    fn dense1(&self, input: &mut [f32; FLAT], out: &mut [f32; HIDDEN]);

    /// Backward through dense1 at the listed inputs: its bias gradient
    /// added to `bias_grad` and the gradient at its input written to
    /// `input_grad`; its kernel's update is the schedule's to form.
    fn dense1_backward_listed(
        &self,
        input: &[f32; FLAT],
        active: &[u16],
        out_grad: &[f32; HIDDEN],
        bias_grad: &mut [f32; HIDDEN],
        input_grad: &mut [f32; FLAT],
    );
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Layers<H, W, K, FLAT, HIDDEN, CLASSES> for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    fn conv(&self) -> (&ConvKernel<K>, &[f32; K]) {
        (&self.conv_kernel, &self.conv_bias)
    }

    fn dense2(&self) -> (&[[f32; CLASSES]; HIDDEN], &[f32; CLASSES]) {
        (&self.dense2_kernel, &self.dense2_bias)
    }

    #[inline]
    fn dense1_listed(&self, input: &mut [f32; FLAT], active: &[u16], out: &mut [f32; HIDDEN]) {
        dense_listed(input, active, &self.dense1_kernel, &self.dense1_bias, out);
    }

    #[inline]
    fn dense1(&self, input: &mut [f32; FLAT], out: &mut [f32; HIDDEN]) {
        dense_in_own_frame(input, &self.dense1_kernel, &self.dense1_bias, out);
    }

    #[inline]
    fn dense1_backward_listed(
        &self,
        input: &[f32; FLAT],
        active: &[u16],
        out_grad: &[f32; HIDDEN],
        bias_grad: &mut [f32; HIDDEN],
        input_grad: &mut [f32; FLAT],
    ) {
        dense_backward_listed(
            input,
            active,
            &self.dense1_kernel,
            out_grad,
            None,
            bias_grad,
            Some(input_grad),
        );
    }
}

/// The forward pass up to the hidden layer, into `ws`, recording pooling
/// winners in `argmax` when given, and letting `after_pool` change the
/// pooled map before dense1 (training applies dropout there). Given
/// `active`, lists the positions of the pooled map's non-zero cells there
/// and returns how many there are (backward walks the same list). The
/// caller has checked the image.
#[inline]
pub(crate) fn hidden_parts<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    network: &impl Layers<H, W, K, FLAT, HIDDEN, CLASSES>,
    image: &[[f32; W]; H],
    ws: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    argmax: Option<&mut [u8; FLAT]>,
    after_pool: impl FnOnce(&mut [f32; FLAT]),
    active: Option<&mut [u16; FLAT]>,
) -> usize {
    let (kernel, bias) = network.conv();
    conv_relu_pool(image, kernel, bias, &mut ws.pooled, argmax);
    after_pool(&mut ws.pooled);
    let mut n = 0;
    if let Some(active) = active {
        n = crate::kernels::dense::nonzero_positions(&ws.pooled, active);
        network.dense1_listed(
            &mut ws.pooled,
            active.get(..n).unwrap_or_default(),
            &mut ws.hidden,
        );
    } else {
        network.dense1(&mut ws.pooled, &mut ws.hidden);
    }
    relu(&mut ws.hidden);
    n
}

/// The logits of `image` in `ws`.
///
/// # Errors
/// [`Error::NonFinite`] when a pixel is NaN or infinite.
#[inline]
pub(crate) fn logits<
    'w,
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    network: &impl Layers<H, W, K, FLAT, HIDDEN, CLASSES>,
    image: &[[f32; W]; H],
    ws: &'w mut Workspace<FLAT, HIDDEN, CLASSES>,
) -> Result<&'w [f32; CLASSES], Error> {
    if !all_finite(image.as_flattened()) {
        return Err(Error::NonFinite { what: "image" });
    }
    hidden_parts(network, image, ws, None, |_| (), None);
    let (kernel, bias) = network.dense2();
    dense(&ws.hidden, kernel, bias, &mut ws.logits);
    Ok(&ws.logits)
}

/// Mean loss and accuracy of `network` over every sample of `samples`.
///
/// # Errors
/// As [`Params::evaluate`].
pub(crate) fn evaluate<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
    S: crate::data::Inputs<[[f32; W]; H]> + ?Sized,
>(
    network: &impl Layers<H, W, K, FLAT, HIDDEN, CLASSES>,
    samples: &S,
    ws: &mut Workspace<FLAT, HIDDEN, CLASSES>,
) -> Result<Evaluation, Error> {
    let mut image = [[0.0f32; W]; H];
    evaluate_logits(samples, &mut image, |image| logits(network, image, ws).copied())
}

/// [`dense`] in a frame of its own, as the convolution is: its list of
/// non-zero inputs (two bytes an input) and the convolution's rows are then
/// never on the stack together, whichever caller the compiler inlines the
/// forward pass into (firmware counts the stack's peak).
#[inline(never)]
fn dense_in_own_frame<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    bias: &[f32; OUT],
    out: &mut [f32; OUT],
) {
    dense(input, kernel, bias, out);
}

/// A boxed network reads as the network (the host keeps big parameters on
/// the heap: `&mut params` of a `Box<Params>` works where `&mut Params` does).
#[cfg(feature = "std")]
impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
        N: Layers<H, W, K, FLAT, HIDDEN, CLASSES>,
    > Layers<H, W, K, FLAT, HIDDEN, CLASSES> for std::boxed::Box<N>
{
    fn conv(&self) -> (&ConvKernel<K>, &[f32; K]) {
        (**self).conv()
    }

    fn dense2(&self) -> (&[[f32; CLASSES]; HIDDEN], &[f32; CLASSES]) {
        (**self).dense2()
    }

    fn dense1_listed(&self, input: &mut [f32; FLAT], active: &[u16], out: &mut [f32; HIDDEN]) {
        (**self).dense1_listed(input, active, out);
    }

    fn dense1(&self, input: &mut [f32; FLAT], out: &mut [f32; HIDDEN]) {
        (**self).dense1(input, out);
    }

    fn dense1_backward_listed(
        &self,
        input: &[f32; FLAT],
        active: &[u16],
        out_grad: &[f32; HIDDEN],
        bias_grad: &mut [f32; HIDDEN],
        input_grad: &mut [f32; FLAT],
    ) {
        (**self).dense1_backward_listed(input, active, out_grad, bias_grad, input_grad);
    }
}
