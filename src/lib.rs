//! # tinycnn
//!
//! Small convolutional neural networks that infer **and train** without a
//! heap, from a laptop to a Cortex-M microcontroller, with every byte of
//! memory known at compile time.
//!
//! A network is a stack of layers declared with [`stack!`]; [`Trainer`]
//! trains any stack with SGD or Adam:
//!
//! ```
//! tinycnn::stack! {
//!     /// RGB 32x32 images, two convolutions, ten classes.
//!     pub struct Cifar: [32, 32, 3] => {
//!         Conv2d(16, 3), Relu, MaxPool2, Conv2d(32, 3), Relu, MaxPool2,
//!         Flatten, Dropout, Dense(64), Relu, Dense(10)
//!     }
//! }
//! let trainer = tinycnn::Trainer::<Cifar>::boxed();
//! assert_eq!(tinycnn::Trainer::<Cifar>::BYTES % 4, 0);
//! ```
//!
//! The default network is the classic Fashion-MNIST CNN ([`stack::Book`],
//! parameters [`Params`] with named fields):
//! `28x28x1 -> Conv2D 10x3x3 SAME + bias -> ReLU -> MaxPool 2x2 -> Flatten (1960)
//! -> Dropout (training) -> Dense 100 + ReLU -> Dense 10 -> softmax cross-entropy`.
//!
//! ```
//! use rand_core::SeedableRng;
//! use tinycnn::{FashionParams, Workspace};
//!
//! let mut params = FashionParams::boxed(); // on the heap here, a `static` on firmware
//! params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(0));
//! let image = [[0.5f32; 28]; 28];
//! let class = params.predict(&image, &mut Workspace::new()).unwrap();
//! assert!(class < 10);
//! ```
//!
//! Layers of the crate, each using only those below it:
//! - [`kernels`]: pure functions on arrays, each SIMD kernel beside its scalar twin;
//! - [`model`] and [`data`]: the book's parameters and forward pass, IDX parsing, samples;
//! - [`mod@stack`]: layers, their forward and backward, the chain, [`stack!`];
//! - [`train`] and [`weights`]: trainers, optimizers, the fit loop; the flash blob;
//! - `host` (feature `std`): files, gzip, safetensors, checkpoints, data-parallel training.
//!
//! Memory: for any stack `S`, [`stack::Stack::PARAMETER_BYTES`],
//! [`stack::Workspace::BYTES`] (inference) and [`Trainer::BYTES`] (training
//! with SGD); for the book's network [`Params::BYTES`],
//! [`Params::INFERENCE_BYTES`], [`Params::TRAINING_BYTES_SGD`] and
//! [`Params::TRAINING_BYTES_ADAM`]. With dense1's kernel in 8 bits
//! ([`stack::Book8`], trained in place by [`train::StreamingSgdTrainer`]
//! with stochastic rounding), `Book8::PARAMETER_BYTES` and
//! `StreamingSgdTrainer::<32, Book8>::BYTES`: the whole network trains in
//! 256 KiB of RAM.
//!
//! Features: `std` (host conveniences), `defmt` (derives `defmt::Format` on
//! the error and report types).
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod data;
pub mod error;
#[cfg(feature = "std")]
pub mod host;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod stack;
pub mod train;
pub mod weights;

pub use error::Error;

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub use kernels::argmax;
pub use model::{BatchWorkspace, Evaluation, Network, ParamBuffer, Params, Workspace};
pub use train::Trainer;

/// [`Params`] at the default (Fashion-MNIST) sizes, nameable in expressions:
/// `FashionParams::boxed()`.
pub type FashionParams = Params;
/// The parameters of the book's network with dense1's kernel in 8 bits
/// ([`stack::Book8`]): one flat array, 201,240 bytes.
pub type FashionParams8 = <stack::Book8 as stack::Stack>::Params;
/// [`Workspace`] at the default sizes.
pub type FashionWorkspace = Workspace;
/// [`Trainer`] at the default sizes.
pub type FashionTrainer = Trainer;
/// [`train::Adam`] for the parameters at the default sizes:
/// `FashionAdam::boxed(AdamConfig::KERAS)`.
pub type FashionAdam = train::Adam<Params>;
/// [`train::Head`] at the default sizes.
pub type FashionHead = train::Head;
/// [`train::HeadTrainer`] at the default sizes.
pub type FashionHeadTrainer = train::HeadTrainer;
/// [`train::StreamingSgdTrainer`] of the book's network, batches of up to 32.
pub type FashionStreamingSgdTrainer = train::StreamingSgdTrainer;
/// [`train::StreamingSgdTrainer`] of the book's network with dense1's kernel
/// in 8 bits ([`stack::Book8`]), batches of up to 32.
pub type FashionStreamingSgdTrainer8 = train::StreamingSgdTrainer<32, stack::Book8>;
/// [`quant::QuantModel`] at the default sizes, nameable in expressions:
/// `FashionQuantModel::from_blob(&blob)`.
pub type FashionQuantModel<'a> = quant::QuantModel<'a>;
/// [`quant::QuantWorkspace`] at the default sizes.
pub type FashionQuantWorkspace = quant::QuantWorkspace;
