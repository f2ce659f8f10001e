//! A stack's layers cut where a schedule needs them: at the wide dense
//! layer ([`Split`]) or before the last layer ([`Last`]).

use super::{Chain, ConvRelu, Dense, Dense8, DenseState, Layer, Pooling, Stack};
use bytemuck::Pod;
use core::marker::PhantomData;

/// A stack's layers cut at the first dense layer, the wide one after
/// `Flatten` (the book's holds 196,000 of its 197,210 parameters): the
/// convolutions before it ([`Front`](Self::Front)), it
/// ([`Wide`](Self::Wide), ReLU after it) and the dense layers after it
/// ([`Back`](Self::Back)). The schedules that treat that layer apart (by
/// rows across threads, or updated sample by sample) train any stack that
/// splits so.
///
/// ```
/// use tinycnn::stack::{Deep, Layer, Split, Stack};
/// type Layers = <Deep as Stack>::Layers;
/// assert_eq!(<<Layers as Split>::Wide as Layer>::PARAMS, 1568 * 100 + 100);
/// assert_eq!(<<Layers as Split>::Back as Layer>::PARAMS, 100 * 10 + 10);
/// ```
///
/// A stack without a convolution before its first dense layer, or without
/// a dense layer after it, does not split, and a schedule given it is
/// refused when the crate builds:
///
/// ```compile_fail
/// tinycnn::stack! {
///     pub struct OneDense: [8, 8, 1] => { Conv2d(4, 3), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// let trainer = tinycnn::host::ParallelTrainer::<OneDense>::new(2).unwrap();
/// ```
#[diagnostic::on_unimplemented(
    message = "the layers `{Self}` do not split at a wide dense layer",
    note = "a schedule that treats the first dense layer apart needs a convolution before it and a dense layer after it"
)]
pub trait Split: Layer {
    /// The convolutions, up to the flattened map.
    type Front: Layer<In = Self::In>;
    /// The first dense layer.
    type Wide: Layer<In = <Self::Front as Layer>::Out, Junctions = ()>;
    /// The dense layers after it, to the logits.
    type Back: Layer<In = <Self::Wide as Layer>::Out, Out = Self::Out>;
    /// Whether dropout comes before the wide layer.
    const DROPOUT: bool;

    /// `f` called with the wide layer's input and output sizes, as
    /// constants: `FLAT` inputs, `HIDDEN` outputs.
    fn with_sizes<F: WithSizes<Self>>(f: F) -> F::Output;
}

/// Work that needs a [`Split`]'s sizes as constants (see
/// [`Split::with_sizes`]).
pub trait WithSizes<L: Split + ?Sized> {
    /// What the work returns.
    type Output;

    /// The work, for a wide layer of `FLAT` inputs and `HIDDEN` outputs.
    fn call<const FLAT: usize, const HIDDEN: usize>(self) -> Self::Output
    where
        L::Front: Layer<Out = [f32; FLAT]>,
        L::Wide: Layer<In = [f32; FLAT], Out = [f32; HIDDEN], State = DenseState<FLAT, HIDDEN>>,
        L::Back: Layer<In = [f32; HIDDEN]>;
}

/// The last convolution, then the wide layer `$wide` (in `f32` or 8 bits).
macro_rules! split_at_wide {
    ($wide:ident) => {
        impl<
                const H: usize,
                const W: usize,
                const CIN: usize,
                const COUT: usize,
                const KS: usize,
                const FLAT: usize,
                I: Pod + Send + Sync,
                P: Pooling,
                const HIDDEN: usize,
                const DROPOUT: bool,
                B: Layer<In = [f32; HIDDEN]>,
            > Split
            for Chain<
                ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>,
                Chain<$wide<FLAT, HIDDEN, [f32; FLAT], true, DROPOUT>, B>,
            >
        {
            type Front = ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>;
            type Wide = $wide<FLAT, HIDDEN, [f32; FLAT], true, DROPOUT>;
            type Back = B;
            const DROPOUT: bool = DROPOUT;

            #[inline]
            fn with_sizes<F: WithSizes<Self>>(f: F) -> F::Output {
                f.call::<FLAT, HIDDEN>()
            }
        }
    };
}

split_at_wide!(Dense);
split_at_wide!(Dense8);

/// A convolution before the rest of the front.
impl<
        C: Layer,
        const H: usize,
        const W: usize,
        const CIN: usize,
        const COUT: usize,
        const KS: usize,
        const FLAT: usize,
        I: Pod + Send + Sync,
        P: Pooling,
        R,
    > Split for Chain<C, Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R>>
where
    Self: Layer<In = C::In>,
    Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R>: Split<In = C::Out>,
    Chain<C, <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::Front>: Layer<
        In = C::In,
        Out = <<Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::Front as Layer>::Out,
    >,
    <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::Back: Layer<Out = Self::Out>,
{
    type Front = Chain<C, <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::Front>;
    type Wide = <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::Wide;
    type Back = <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::Back;
    const DROPOUT: bool = <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::DROPOUT;

    #[inline]
    fn with_sizes<F: WithSizes<Self>>(f: F) -> F::Output {
        <Chain<ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>, R> as Split>::with_sizes(Outer(
            f,
            PhantomData::<Self>,
        ))
    }
}

/// `F`, work on the layers `L`, as work on the layers after `L`'s first.
struct Outer<F, L>(F, PhantomData<L>);

impl<F, C, R> WithSizes<R> for Outer<F, Chain<C, R>>
where
    C: Layer,
    R: Split<In = C::Out>,
    Chain<C, R>: Split<Front = Chain<C, R::Front>, Wide = R::Wide, Back = R::Back>,
    Chain<C, R::Front>: Layer<Out = <R::Front as Layer>::Out>,
    F: WithSizes<Chain<C, R>>,
{
    type Output = F::Output;

    #[inline]
    fn call<const FLAT: usize, const HIDDEN: usize>(self) -> F::Output
    where
        R::Front: Layer<Out = [f32; FLAT]>,
        R::Wide: Layer<In = [f32; FLAT], Out = [f32; HIDDEN], State = DenseState<FLAT, HIDDEN>>,
        R::Back: Layer<In = [f32; HIDDEN]>,
    {
        self.0.call::<FLAT, HIDDEN>()
    }
}

/// A stack's layers cut before the last, the dense layer of the logits:
/// what last-layer fine-tuning trains ([`Last`](Self::Last)) and what it
/// only runs ([`Body`](Self::Body)). Every stack splits so.
///
/// ```
/// use tinycnn::stack::{Book, Last, Layer, Stack};
/// type Layers = <Book as Stack>::Layers;
/// assert_eq!(<<Layers as Last>::Last as Layer>::PARAMS, 100 * 10 + 10);
/// ```
pub trait Last: Layer {
    /// Every layer but the last.
    type Body: Layer<In = Self::In>;
    /// The last layer.
    type Last: Layer<
        In = <Self::Body as Layer>::Out,
        Out = Self::Out,
        Junctions = (),
        Params: crate::ParamBuffer,
    >;
}

impl<A, const IN: usize, const OUT: usize, J: Pod + Send + Sync, const DROPOUT: bool> Last
    for Chain<A, Dense<IN, OUT, J, false, DROPOUT>>
where
    A: Layer<Out = J>,
    Self: Layer<In = A::In, Out = [f32; OUT]>,
{
    type Body = A;
    type Last = Dense<IN, OUT, J, false, DROPOUT>;
}

impl<A, B, C> Last for Chain<A, Chain<B, C>>
where
    A: Layer,
    Chain<B, C>: Last<In = A::Out>,
    Self: Layer<In = A::In, Out = <Chain<B, C> as Layer>::Out>,
    Chain<A, <Chain<B, C> as Last>::Body>:
        Layer<In = A::In, Out = <<Chain<B, C> as Last>::Body as Layer>::Out>,
{
    type Body = Chain<A, <Chain<B, C> as Last>::Body>;
    type Last = <Chain<B, C> as Last>::Last;
}

/// A stack whose layers [`Split`] with a wide layer of `FLAT` inputs and
/// `HIDDEN` outputs, the bound the
/// schedules that treat the wide layer apart state once. Every stack
/// [`Split::with_sizes`] calls its work with meets it.
#[doc(hidden)]
pub trait SplitAt<const FLAT: usize, const HIDDEN: usize>:
    Stack<
    Layers: Split<
        Front: Layer<Out = [f32; FLAT]>,
        Wide: Layer<In = [f32; FLAT], Out = [f32; HIDDEN], State = DenseState<FLAT, HIDDEN>>,
        Back: Layer<In = [f32; HIDDEN]>,
    >,
>
{
}

impl<S, const FLAT: usize, const HIDDEN: usize> SplitAt<FLAT, HIDDEN> for S where
    S: Stack<
        Layers: Split<
            Front: Layer<Out = [f32; FLAT]>,
            Wide: Layer<In = [f32; FLAT], Out = [f32; HIDDEN], State = DenseState<FLAT, HIDDEN>>,
            Back: Layer<In = [f32; HIDDEN]>,
        >,
    >
{
}
