//! The book's network as a stack: one 3x3 convolution over a one-channel
//! image with ReLU and a 2x2 max-pool, dropout, a dense layer with ReLU, and
//! the dense layer of the logits. Its parameters are [`Params`], whose
//! fields name the layers.

use super::{Chain, ConvRelu, Dense, MaxPool2, Stack};
use crate::model::Params;

/// The book's network at the sizes given ([`Params`]' sizes): the
/// [`Stack`] that [`Trainer`](crate::Trainer) trains by default. At the
/// default sizes it is what
///
/// ```text
/// tinycnn::stack! { struct Book: [28, 28, 1] => {
///     Conv2d(10, 3), Relu, MaxPool2, Flatten, Dropout, Dense(100), Relu, Dense(10)
/// } }
/// ```
///
/// declares, with [`Params`] (named fields, the same flat order) as its
/// parameters.
///
/// ```
/// use tinycnn::stack::{Book, Stack};
/// assert_eq!(<Book as Stack>::PARAMETERS, 197_210);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Book<
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
>;

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Stack for Book<H, W, K, FLAT, HIDDEN, CLASSES>
{
    type Layers = Chain<
        ConvRelu<H, W, 1, K, 3, FLAT, [[f32; W]; H], MaxPool2>,
        Chain<
            Dense<FLAT, HIDDEN, [f32; FLAT], true, true>,
            Dense<HIDDEN, CLASSES, [f32; HIDDEN], false, false>,
        >,
    >;
    type Input = [[f32; W]; H];
    type Logits = [f32; CLASSES];
    type Params = Params<H, W, K, FLAT, HIDDEN, CLASSES>;
    const PARAMETERS: usize = Params::<H, W, K, FLAT, HIDDEN, CLASSES>::COUNT;
}
