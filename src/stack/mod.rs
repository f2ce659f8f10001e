//! A network as a stack of layers: the user's own small CNN.
//!
//! [`stack!`](crate::stack!) declares one in a few lines, spelling the input's
//! height, width and channels and each layer; it derives every size (a 3x3
//! convolution keeps the height and width, a 2x2 pool halves them, `Flatten`
//! multiplies them out) and checks the pairing when the crate builds:
//!
//! ```
//! tinycnn::stack! {
//!     /// An RGB 32x32 image, two convolutions, ten classes.
//!     pub struct Cifar: [32, 32, 3] => {
//!         Conv2d(16, 3), Relu, MaxPool2,
//!         Conv2d(32, 3), Relu, MaxPool2,
//!         Flatten, Dropout,
//!         Dense(64), Relu,
//!         Dense(10)
//!     }
//! }
//! use tinycnn::stack::Stack;
//! assert_eq!(Cifar::PARAMETERS, 3 * 3 * 3 * 16 + 16 + 3 * 3 * 16 * 32 + 32 + 8 * 8 * 32 * 64 + 64 + 64 * 10 + 10);
//! ```
//!
//! Layers, in the order a stack may hold them:
//! - `Conv2d(COUT, KS)`: `KS`x`KS` kernel (`KS` odd), SAME padding, stride
//!   1, bias; it is followed by `Relu`, and may be by `MaxPool2`, which run
//!   fused with it (the full-resolution map is never built when pooled);
//! - `Flatten`: the map as a vector, in height-width-channel order (Keras's);
//! - `Dropout`: before a dense layer, at the rate the trainer is given;
//! - `Dense(OUT)`: with bias; followed by `Relu` but for the last, whose
//!   outputs are the logits of a softmax cross-entropy; `Dense(OUT, i8)`
//!   keeps its kernel in 8 bits with a scale per output ([`Dense8`],
//!   trained by [`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer)).
//!
//! Every layer but the first takes a map that came out of a ReLU: its zeros
//! pass no gradient, so a dense layer lists its input's non-zero cells and
//! works on those alone, forward and backward, and a convolution's backward
//! passes gradient only where its output was positive.
//!
//! Parameters are one flat `[f32; N]` in Keras's order (each layer's kernel
//! then its bias; a convolution's kernel `(ky, kx, in, out)`, a dense
//! layer's `(in, out)`), so optimizers step them as one slice.

mod book;
mod book8;
mod conv;
mod deep;
mod dense;
mod dense8;
mod macros;
mod split;
pub(crate) mod workspace;

pub use book::Book;
pub use book8::Book8;
pub use conv::ConvState;
pub use conv::{ConvParams, ConvRelu, Full, MaxPool2, Pooling};
pub use deep::Deep;
pub use dense::{Dense, DenseParams, DenseState};
pub use dense8::{Dense8, Dense8Params};
pub use split::{Last, Split, SplitAt, WithSizes};
pub use workspace::Workspace;

use crate::Error;
use bytemuck::{Pod, Zeroable};
use rand_core::RngCore;

/// A value whose every number is zero, as a `const`: what lets a stack's
/// buffers live in a `static`. Every value a stack `S` needs has it under
/// this one name: its parameters and gradients (`S::Params`),
/// [`Workspace<S>`], [`Trainer<S>`](crate::Trainer) and the optimizers'
/// state ([`Adam<S::Params>`](crate::train::Adam)).
///
/// ```
/// use static_cell::ConstStaticCell;
/// use tinycnn::stack::{Deep, Stack, Workspace, Zeroed};
/// use tinycnn::train::Adam;
/// use tinycnn::Trainer;
/// type Params = <Deep as Stack>::Params;
/// static PARAMS: ConstStaticCell<Params> = ConstStaticCell::new(Zeroed::ZERO);
/// static TRAINER: ConstStaticCell<Trainer<Deep>> = ConstStaticCell::new(Zeroed::ZERO);
/// static ADAM: ConstStaticCell<Adam<Params>> = ConstStaticCell::new(Zeroed::ZERO);
/// static WORKSPACE: ConstStaticCell<Workspace<Deep>> = ConstStaticCell::new(Zeroed::ZERO);
/// assert_eq!(TRAINER.take().dropout(), 0.0);
/// ```
pub trait Zeroed: Sized {
    /// The all-zero value.
    const ZERO: Self;
}

macro_rules! zeroed_numbers {
    ($($t:ty),*) => {$(
        impl Zeroed for $t {
            const ZERO: Self = 0 as $t;
        }
    )*};
}
zeroed_numbers!(f32, u8, u16, usize);

impl<T: Zeroed, const N: usize> Zeroed for [T; N] {
    const ZERO: Self = [T::ZERO; N];
}

/// One layer (or a fused run of layers) of a stack: its maps' types, its
/// parameter count, and what it keeps of a sample between the forward and
/// the backward pass.
///
/// Implemented by the crate's layers and by [`Chain`]; a stack's type is a
/// chain of them that [`stack!`](crate::stack!) spells out.
pub trait Layer {
    /// The map it reads.
    type In: Pod + Send + Sync;
    /// The map it writes.
    type Out: Pod + Send + Sync;
    /// Its output, and what backward needs of the sample in flight.
    type State: Zeroed + Zeroable + Send + Sync;
    /// The gradients backward passes between its parts, where they meet
    /// (none for a single layer): training memory that inference does not
    /// hold.
    type Junctions: Zeroed + Zeroable + Send + Sync;
    /// Its parameters as a type of their own (kernel then bias, `f32`,
    /// no padding): how a schedule that keeps part of a stack's gradient
    /// sizes its buffers.
    type Params: Zeroed + Zeroable + Send + Sync + 'static;
    /// How many `f32` parameters it has, kernel then bias.
    const PARAMS: usize;

    /// Whether it keeps a kernel in 8 bits ([`Dense8`]), whose gradient
    /// only [`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer)'s
    /// update in place stands for.
    const INT8: bool = false;
    /// How many parameters its `f32` export has (each 8-bit kernel as
    /// `f32`): the layout of its [`tensors`](Self::tensors).
    const F32_PARAMS: usize = Self::PARAMS;

    /// The largest buffer its kernels keep on the stack, in bytes.
    const FRAME_BYTES: usize;
    /// How many convolutions it holds (Keras's `Conv2D` layers).
    const CONVS: usize;
    /// How many dense layers it holds.
    const DENSES: usize;

    /// Each of its tensors, in the parameters' order: `at` is where its
    /// parameters start in the stack's, `convs` and `denses` how many of
    /// each layer come before it.
    fn tensors(at: usize, convs: usize, denses: usize, f: &mut impl FnMut(Tensor));

    /// Glorot-uniform initialization of its kernel (Keras's default, one
    /// draw per value in order), its bias zero.
    fn init_glorot(params: &mut [f32], rng: &mut impl RngCore);

    /// Writes its `f32` export ([`F32_PARAMS`](Self::F32_PARAMS) values)
    /// to `f32_params`.
    fn export(params: &[f32], f32_params: &mut [f32]) {
        let n = Self::PARAMS.min(params.len()).min(f32_params.len());
        f32_params[..n].copy_from_slice(&params[..n]);
    }

    /// Takes its parameters from their `f32` export: an 8-bit kernel on
    /// the grid of the first of `scales` (which it then passes over), or
    /// of scales of its own when `scales` is empty.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a weight that is not finite,
    /// [`Error::InvalidConfig`] for a scale that is not finite and positive.
    fn import(f32_params: &[f32], params: &mut [f32], scales: &mut &[f32]) -> Result<(), Error> {
        let _ = scales;
        let n = Self::PARAMS.min(params.len()).min(f32_params.len());
        params[..n].copy_from_slice(&f32_params[..n]);
        Ok(())
    }

    /// `f` of each 8-bit kernel's scales, in order.
    fn scales(params: &[f32], f: &mut impl FnMut(&[f32])) {
        let _ = (params, f);
    }

    /// `f` of each value of its `f32` export, in order.
    fn each_exported(params: &[f32], f: &mut impl FnMut(f32)) {
        params.iter().take(Self::PARAMS).for_each(|&v| f(v));
    }

    /// Forward of one sample: `input` (which a layer may change in place:
    /// dropout), its output into `state`. Dropout, where the layer has it,
    /// at `rate` drawn from `rng`.
    fn forward(
        params: &[f32],
        input: &mut Self::In,
        state: &mut Self::State,
        rate: f32,
        rng: &mut impl RngCore,
    );

    /// Forward of one sample for inference: no dropout, and nothing kept
    /// for backward that costs work (a convolution's pooling winners).
    fn infer(params: &[f32], input: &mut Self::In, state: &mut Self::State) {
        Self::forward(params, input, state, 0.0, &mut workspace::NoDraws);
    }

    /// The output [`forward`](Self::forward) wrote.
    fn output(state: &Self::State) -> &Self::Out;

    /// The same, to change in place.
    fn output_mut(state: &mut Self::State) -> &mut Self::Out;

    /// The positions of the input's non-zero cells that forward listed, in
    /// increasing order, if it keeps them.
    fn listed(state: &Self::State) -> Option<&[u16]>;

    /// Backward of the sample [`forward`](Self::forward) ran (with dropout
    /// at `rate`): the gradient at the output (zero where it is zero) is
    /// `out_grad`, non-zero at most at `active` when given; adds its
    /// parameters' gradient to `grads` and with `input_grad` writes the
    /// gradient at its input there (zero where the input is). The gradients
    /// between its parts go through `junctions`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        params: &[f32],
        grads: &mut [f32],
        input: &Self::In,
        state: &Self::State,
        junctions: &mut Self::Junctions,
        out_grad: &Self::Out,
        active: Option<&[u16]>,
        rate: f32,
        input_grad: Option<&mut Self::In>,
    );
}

/// A dense layer whose kernel a schedule updates one sample at a time
/// ([`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer)): [`Dense`]
/// in `f32`, [`Dense8`] on its 8-bit grid. The kernel's gradient is never
/// formed whole.
pub trait Streamed: Layer {
    /// Dropout on the input, as [`forward`](Layer::forward) draws it from
    /// `rng`, where the layer has it.
    fn drop_out(input: &mut Self::In, rate: f32, rng: &mut impl RngCore);

    /// Backward to the bias and the input of the sample forward ran (its
    /// input as forward left it): the bias's gradient added to
    /// `bias_grad`, the input's written to `input_grad` at the cells
    /// [`listed`](Layer::listed) (which it may list again).
    #[allow(clippy::too_many_arguments)]
    fn backward_inputs(
        params: &[f32],
        input: &Self::In,
        state: &mut Self::State,
        out_grad: &Self::Out,
        bias_grad: &mut Self::Out,
        input_grad: &mut Self::In,
        rate: f32,
    );

    /// Adds `-lr * input (outer) out_grad` to the kernel (random bits, for
    /// rounding, from `rng`).
    fn step_kernel(
        params: &mut [f32],
        input: &Self::In,
        out_grad: &Self::Out,
        lr: f32,
        rng: &mut impl RngCore,
    );
}

/// Layer `A`, then `B` on its output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chain<A, B>(A, B);

/// What a [`Chain`] keeps of a sample: both layers' states.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct ChainState<A: Layer, B: Layer> {
    first: A::State,
    second: B::State,
}

// SAFETY: the two states are `Zeroable`: all zero bytes form a valid value
// of each field.
unsafe impl<A: Layer, B: Layer> Zeroable for ChainState<A, B> {}

impl<A: Layer, B: Layer> Zeroed for ChainState<A, B> {
    const ZERO: Self = Self {
        first: A::State::ZERO,
        second: B::State::ZERO,
    };
}

/// A [`Chain`]'s parameters: `A`'s, then `B`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ChainParams<A, B> {
    /// The first layer's.
    pub first: A,
    /// The second's.
    pub second: B,
}

// SAFETY: two `Zeroable` values: all zero bytes form a valid value.
unsafe impl<A: Zeroable, B: Zeroable> Zeroable for ChainParams<A, B> {}
// SAFETY: two `Pod` values (an `f32` layer's parameters: `f32` arrays,
// 4-byte aligned), so no padding, every bit pattern valid; `Copy` and
// `'static` as its parts are.
unsafe impl<A: Pod, B: Pod> Pod for ChainParams<A, B> {}

impl<A: Zeroed, B: Zeroed> Zeroed for ChainParams<A, B> {
    const ZERO: Self = Self {
        first: A::ZERO,
        second: B::ZERO,
    };
}

impl<A: Zeroed + Pod, B: Zeroed + Pod> crate::ParamBuffer for ChainParams<A, B> {
    const ZERO: Self = <Self as Zeroed>::ZERO;
}

/// The gradients inside a [`Chain`]: both layers' junctions and the
/// gradient where the two meet (at `A`'s output).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct ChainJunctions<A: Layer, B: Layer> {
    first: A::Junctions,
    second: B::Junctions,
    between: A::Out,
}

// SAFETY: the junctions are `Zeroable` and the gradient between them is a
// `Pod` map: all zero bytes form a valid value of each field.
unsafe impl<A: Layer, B: Layer> Zeroable for ChainJunctions<A, B> {}

impl<A: Layer, B: Layer> Zeroed for ChainJunctions<A, B>
where
    A::Out: Zeroed,
{
    const ZERO: Self = Self {
        first: A::Junctions::ZERO,
        second: B::Junctions::ZERO,
        between: <A::Out as Zeroed>::ZERO,
    };
}

impl Zeroed for () {
    const ZERO: Self = ();
}

impl<A, B> Layer for Chain<A, B>
where
    A: Layer,
    A::Out: Zeroed,
    B: Layer<In = A::Out>,
{
    type In = A::In;
    type Out = B::Out;
    type State = ChainState<A, B>;
    type Junctions = ChainJunctions<A, B>;
    type Params = ChainParams<A::Params, B::Params>;
    const PARAMS: usize = A::PARAMS + B::PARAMS;

    const FRAME_BYTES: usize = if A::FRAME_BYTES > B::FRAME_BYTES {
        A::FRAME_BYTES
    } else {
        B::FRAME_BYTES
    };
    const CONVS: usize = A::CONVS + B::CONVS;
    const DENSES: usize = A::DENSES + B::DENSES;
    const INT8: bool = A::INT8 || B::INT8;
    const F32_PARAMS: usize = A::F32_PARAMS + B::F32_PARAMS;

    fn tensors(at: usize, convs: usize, denses: usize, f: &mut impl FnMut(Tensor)) {
        A::tensors(at, convs, denses, f);
        B::tensors(at + A::F32_PARAMS, convs + A::CONVS, denses + A::DENSES, f);
    }

    fn export(params: &[f32], f32_params: &mut [f32]) {
        let (first, second) = params.split_at(A::PARAMS.min(params.len()));
        let (f32_first, f32_second) = f32_params.split_at_mut(A::F32_PARAMS.min(f32_params.len()));
        A::export(first, f32_first);
        B::export(second, f32_second);
    }

    fn import(f32_params: &[f32], params: &mut [f32], scales: &mut &[f32]) -> Result<(), Error> {
        let (first, second) = params.split_at_mut(A::PARAMS.min(params.len()));
        let (f32_first, f32_second) = f32_params.split_at(A::F32_PARAMS.min(f32_params.len()));
        A::import(f32_first, first, scales)?;
        B::import(f32_second, second, scales)
    }

    fn scales(params: &[f32], f: &mut impl FnMut(&[f32])) {
        let (first, second) = params.split_at(A::PARAMS.min(params.len()));
        A::scales(first, f);
        B::scales(second, f);
    }

    fn each_exported(params: &[f32], f: &mut impl FnMut(f32)) {
        let (first, second) = params.split_at(A::PARAMS.min(params.len()));
        A::each_exported(first, f);
        B::each_exported(second, f);
    }

    fn init_glorot(params: &mut [f32], rng: &mut impl RngCore) {
        let (first, second) = params.split_at_mut(A::PARAMS.min(params.len()));
        A::init_glorot(first, rng);
        B::init_glorot(second, rng);
    }

    #[inline]
    fn forward(
        params: &[f32],
        input: &mut Self::In,
        state: &mut Self::State,
        rate: f32,
        rng: &mut impl RngCore,
    ) {
        let (first, second) = params.split_at(A::PARAMS.min(params.len()));
        A::forward(first, input, &mut state.first, rate, rng);
        B::forward(
            second,
            A::output_mut(&mut state.first),
            &mut state.second,
            rate,
            rng,
        );
    }

    #[inline]
    fn infer(params: &[f32], input: &mut Self::In, state: &mut Self::State) {
        let (first, second) = params.split_at(A::PARAMS.min(params.len()));
        A::infer(first, input, &mut state.first);
        B::infer(second, A::output_mut(&mut state.first), &mut state.second);
    }

    #[inline]
    fn output(state: &Self::State) -> &Self::Out {
        B::output(&state.second)
    }

    #[inline]
    fn output_mut(state: &mut Self::State) -> &mut Self::Out {
        B::output_mut(&mut state.second)
    }

    #[inline]
    fn listed(state: &Self::State) -> Option<&[u16]> {
        A::listed(&state.first)
    }

    #[inline]
    fn backward(
        params: &[f32],
        grads: &mut [f32],
        input: &Self::In,
        state: &Self::State,
        junctions: &mut Self::Junctions,
        out_grad: &Self::Out,
        active: Option<&[u16]>,
        rate: f32,
        input_grad: Option<&mut Self::In>,
    ) {
        let split = A::PARAMS.min(params.len()).min(grads.len());
        let (first_params, second_params) = params.split_at(split);
        let (first_grads, second_grads) = grads.split_at_mut(split);
        let ChainState { first, second } = state;
        let ChainJunctions {
            first: first_junctions,
            second: second_junctions,
            between,
        } = junctions;
        B::backward(
            second_params,
            second_grads,
            A::output(first),
            second,
            second_junctions,
            out_grad,
            active,
            rate,
            Some(between),
        );
        A::backward(
            first_params,
            first_grads,
            input,
            first,
            first_junctions,
            between,
            B::listed(second),
            rate,
            input_grad,
        );
    }
}

/// One tensor of a stack's parameters, as Keras names and shapes it.
///
/// The names follow one rule: a stack's convolutions are `conv1`, `conv2`,
/// ... in order (`conv` when it has one), its dense layers `dense1`,
/// `dense2`, ...; each has a `kernel` (a convolution's `(ky, kx, in, out)`,
/// a dense layer's `(in, out)`) and a `bias`. The book's network is `conv`,
/// `dense1`, `dense2`.
///
/// ```
/// use tinycnn::stack::Stack;
/// tinycnn::stack! {
///     pub struct Two: [8, 8, 3] => { Conv2d(4, 3), Relu, MaxPool2, Conv2d(6, 5), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// let mut names = Vec::new();
/// Two::for_each_tensor(|t| names.push((t.name::<Two>().to_string(), t.dims().to_vec())));
/// assert_eq!(names[2], ("conv2.kernel".to_string(), vec![5, 5, 4, 6]));
/// assert_eq!(names[4], ("dense1.kernel".to_string(), vec![2 * 2 * 6, 2]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tensor {
    /// A convolution (`true`) or a dense layer.
    pub conv: bool,
    /// The layer's number among its kind, from 1.
    pub number: usize,
    /// The bias (`true`) or the kernel.
    pub bias: bool,
    /// The shape, the first `rank` entries.
    pub shape: [usize; 4],
    /// How many entries of `shape` count.
    pub rank: usize,
    /// Where its values start in the stack's parameters.
    pub at: usize,
}

impl Tensor {
    /// The shape.
    pub fn dims(&self) -> &[usize] {
        self.shape.get(..self.rank).unwrap_or_default()
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// `true` when it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its name in stack `S`, such as `conv2.kernel` (see [`Tensor`]).
    pub fn name<S: Stack>(&self) -> heapless::String<32> {
        use core::fmt::Write;
        let mut name = heapless::String::new();
        let part = if self.bias { "bias" } else { "kernel" };
        // 32 bytes hold any layer number a stack can have: `write!` cannot fail.
        let _ = match (self.conv, S::Layers::CONVS) {
            (true, 1) => write!(name, "conv.{part}"),
            (true, _) => write!(name, "conv{}.{part}", self.number),
            (false, _) => write!(name, "dense{}.{part}", self.number),
        };
        name
    }
}

/// The logits of a stack and its loss: softmax cross-entropy.
pub trait Logits: Pod + Zeroed {
    /// The number of classes.
    const CLASSES: usize;

    /// The loss of `self` against `label`, and `scale` times its gradient in
    /// `grad`.
    ///
    /// # Errors
    /// [`Error::LabelOutOfRange`].
    fn cross_entropy(&self, label: usize, scale: f32, grad: &mut Self) -> Result<f32, Error>;

    /// The class with the largest logit.
    fn class(&self) -> usize;
}

impl<const C: usize> Logits for [f32; C] {
    const CLASSES: usize = C;

    #[inline]
    fn cross_entropy(&self, label: usize, scale: f32, grad: &mut Self) -> Result<f32, Error> {
        crate::kernels::softmax_cross_entropy(self, label, scale, grad)
    }

    #[inline]
    fn class(&self) -> usize {
        crate::kernels::argmax(self)
    }
}

/// A network declared by [`stack!`](crate::stack!): its layers, their
/// parameters as one flat array, its input and logits.
pub trait Stack {
    /// The layers, chained.
    type Layers: Layer<In = Self::Input, Out = Self::Logits>;
    /// One sample's input map (`[[f32; W]; H]` for one channel,
    /// `[[[f32; C]; W]; H]` for several).
    type Input: Pod + Zeroed + Send + Sync;
    /// The last layer's outputs.
    type Logits: Logits + Send + Sync;
    /// Every parameter, flat: `[f32; PARAMETERS]`.
    type Params: crate::ParamBuffer + Send + Sync;
    /// The number of parameters.
    const PARAMETERS: usize;
    /// Bytes the parameters occupy.
    const PARAMETER_BYTES: usize = 4 * Self::PARAMETERS;

    /// Fails to evaluate, when the crate builds, if the parameters' array
    /// and the layers disagree.
    #[doc(hidden)]
    const PARAMS_MATCH: () = assert!(
        size_of::<Self::Params>() == 4 * <Self::Layers as Layer>::PARAMS
            && Self::PARAMETERS == <Self::Layers as Layer>::PARAMS,
        "the stack's parameter count does not match its layers"
    );

    /// Zero parameters on the heap, never built on the stack: initialize
    /// with [`init_glorot`](Self::init_glorot) or a weight file.
    #[cfg(feature = "std")]
    fn boxed_params() -> std::boxed::Box<Self::Params> {
        bytemuck::zeroed_box()
    }

    /// Each tensor of the parameters, in their order (see [`Tensor`]).
    fn for_each_tensor(mut f: impl FnMut(Tensor)) {
        Self::Layers::tensors(0, 0, 0, &mut f);
    }

    /// Writes the `f32` export of `params` (each 8-bit kernel as `f32`,
    /// Keras's layout) as the parameters of `F`, the same layers in `f32`.
    /// Fails when the crate builds if `F`'s parameters are not that export.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::stack::{Book, Book8, Stack};
    /// let mut params8 = Book8::boxed_params();
    /// Book8::init_glorot(&mut params8, &mut rand_pcg::Pcg32::seed_from_u64(1));
    /// let mut params = Book::boxed_params();
    /// Book8::export::<Book>(&params8, &mut params);
    /// let mut again = Book8::boxed_params();
    /// let mut scales = Vec::new();
    /// Book8::for_each_scales(&params8, |s| scales.extend_from_slice(s));
    /// Book8::import::<Book>(&params, &mut again, &scales).unwrap();
    /// // By bytes: an 8-bit kernel's slots, read as f32, may be NaN.
    /// assert!(bytemuck::bytes_of(&*again) == bytemuck::bytes_of(&*params8));
    /// ```
    fn export<F: Stack>(params: &Self::Params, out: &mut F::Params) {
        const {
            assert!(
                F::PARAMETERS == <Self::Layers as Layer>::F32_PARAMS && !<F::Layers as Layer>::INT8,
                "export: the stack given is not this one's f32 export"
            )
        };
        Self::Layers::export(
            crate::ParamBuffer::as_flat(params),
            crate::ParamBuffer::as_flat_mut(out),
        );
    }

    /// Takes `params` from `f32_params`, the parameters of `F` (this
    /// stack's `f32` export): each 8-bit kernel on the grid of its scales
    /// in `scales` (each kernel's in turn, as
    /// [`for_each_scales`](Self::for_each_scales) gives them: every
    /// 8-bit value comes back exactly from an export taken with them), or
    /// on scales of its own (twice each column's largest magnitude over
    /// 127) when `scales` is empty.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite parameter,
    /// [`Error::InvalidConfig`] for a scale that is not finite and positive;
    /// `params` is left as it was.
    fn import<F: Stack>(
        f32_params: &F::Params,
        params: &mut Self::Params,
        scales: &[f32],
    ) -> Result<(), Error> {
        const {
            assert!(
                F::PARAMETERS == <Self::Layers as Layer>::F32_PARAMS && !<F::Layers as Layer>::INT8,
                "import: the stack given is not this one's f32 export"
            )
        };
        let f32_params = crate::ParamBuffer::as_flat(f32_params);
        if !crate::kernels::all_finite(f32_params) {
            return Err(Error::NonFinite { what: "parameter" });
        }
        if !scales.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(Error::InvalidConfig {
                what: "kernel scales must be finite and positive",
            });
        }
        let mut scales = scales;
        Self::Layers::import(f32_params, crate::ParamBuffer::as_flat_mut(params), &mut scales)
    }

    /// `f` of each 8-bit kernel's scales (one per output), in order.
    fn for_each_scales(params: &Self::Params, mut f: impl FnMut(&[f32])) {
        Self::Layers::scales(crate::ParamBuffer::as_flat(params), &mut f);
    }

    /// Glorot-uniform initialization of every kernel (Keras's default), one
    /// draw per value in the parameters' order; biases zero.
    fn init_glorot(params: &mut Self::Params, rng: &mut impl RngCore) {
        let () = Self::PARAMS_MATCH;
        Self::Layers::init_glorot(crate::ParamBuffer::as_flat_mut(params), rng);
    }
}
