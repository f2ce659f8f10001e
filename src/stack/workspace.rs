//! Running a stack: the maps of one input, and its logits.

use super::{Layer, Logits, Stack, Zeroed};
use crate::data::Inputs;
use crate::kernels::all_finite;
use crate::model::{evaluate_each, Evaluation, ParamBuffer};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// The layers' state of a stack `S`.
type StateOf<S> = <<S as Stack>::Layers as Layer>::State;

/// The working memory of running stack `S` on one input: each layer's
/// output (and what training keeps of it), and the input. Usable in a
/// `static` ([`ZERO`](Zeroed::ZERO)).
///
/// ```
/// use tinycnn::stack::{Stack, Workspace};
/// use tinycnn::ParamBuffer;
/// tinycnn::stack! {
///     pub struct Rgb: [4, 4, 3] => { Conv2d(2, 3), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// let mut params = <Rgb as Stack>::Params::ZERO;
/// params[<Rgb as Stack>::PARAMETERS - 1] = 1.0; // the last logit's bias
/// let mut ws = Workspace::<Rgb>::new();
/// assert_eq!(ws.predict(&params, &[[[0.5; 3]; 4]; 4]), Ok(1));
/// ```
#[repr(C)]
pub struct Workspace<S: Stack> {
    pub(crate) state: StateOf<S>,
    pub(crate) input: S::Input,
}

// SAFETY: the layers' state is `Zeroable` and the input `Pod`: all zero
// bytes form a valid value.
unsafe impl<S: Stack> Zeroable for Workspace<S> {}

impl<S: Stack> Zeroed for Workspace<S> {
    const ZERO: Self = Self {
        state: StateOf::<S>::ZERO,
        input: S::Input::ZERO,
    };
}

impl<S: Stack> Default for Workspace<S> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<S: Stack> Workspace<S> {
    /// Bytes of working memory of inference: this workspace, and the
    /// largest buffer a layer's kernel keeps on the stack (two convolution
    /// rows).
    pub const BYTES: usize = size_of::<Self>() + S::Layers::FRAME_BYTES;

    /// The all-zero workspace, as [`ZERO`](Zeroed::ZERO).
    pub const fn new() -> Self {
        Self::ZERO
    }

    /// The same, on the heap, never built on the stack.
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// The logits of `input` under `params`.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for an input that is not finite.
    pub fn logits(&mut self, params: &S::Params, input: &S::Input) -> Result<&S::Logits, Error> {
        self.input = *input;
        self.logits_in_place(params)
    }

    /// The class `params` predicts for `input`.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for an input that is not finite.
    pub fn predict(&mut self, params: &S::Params, input: &S::Input) -> Result<usize, Error> {
        Ok(self.logits(params, input)?.class())
    }

    /// Mean loss and accuracy of `params` on `samples`.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NonFinite`], [`Error::LabelOutOfRange`],
    /// and whatever reading a sample returns.
    pub fn evaluate<D: Inputs<S::Input> + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        let mut grad = S::Logits::ZERO;
        let Self { state, input } = self;
        evaluate_each(samples, input, |input, label| {
            let logits = forward_no_dropout::<S>(params, input, state)?;
            Ok((
                logits.cross_entropy(label, 1.0, &mut grad)?,
                logits.class() == label,
            ))
        })
    }

    /// Checks the input in place, for a forward pass.
    pub(crate) fn check_input(&self) -> Result<(), Error> {
        check_input::<S>(&self.input)
    }

    /// The logits of the input in place, without dropout.
    fn logits_in_place(&mut self, params: &S::Params) -> Result<&S::Logits, Error> {
        forward_no_dropout::<S>(params, &mut self.input, &mut self.state)
    }
}

/// Refuses an input that is not finite.
pub(crate) fn check_input<S: Stack>(input: &S::Input) -> Result<(), Error> {
    let () = S::PARAMS_MATCH;
    if all_finite(bytemuck::cast_slice(core::slice::from_ref(input))) {
        Ok(())
    } else {
        Err(Error::NonFinite { what: "image" })
    }
}

/// The logits of `input`, without dropout, in `state`.
fn forward_no_dropout<'s, S: Stack>(
    params: &S::Params,
    input: &mut S::Input,
    state: &'s mut StateOf<S>,
) -> Result<&'s S::Logits, Error> {
    check_input::<S>(input)?;
    S::Layers::infer(params.as_flat(), input, state);
    Ok(S::Layers::output(state))
}

/// The generator of a pass without dropout, which draws nothing.
pub(crate) struct NoDraws;

impl RngCore for NoDraws {
    fn next_u32(&mut self) -> u32 {
        0
    }

    fn next_u64(&mut self) -> u64 {
        0
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0);
    }
}
