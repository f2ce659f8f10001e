//! # tinycnn
//!
//! A small convolutional neural network that infers **and trains** without a
//! heap, from a laptop to a Cortex-M microcontroller, with every byte of
//! memory known at compile time.
//!
//! The network (default sizes, the classic Fashion-MNIST CNN):
//! `28x28x1 -> Conv2D 10x3x3 SAME + bias -> ReLU -> MaxPool 2x2 -> Flatten (1960)
//! -> Dropout (training) -> Dense 100 + ReLU -> Dense 10 -> softmax cross-entropy`.
//!
//! ```
//! use rand_core::SeedableRng;
//! use tinycnn::{FashionParams, Workspace};
//!
//! let mut params = FashionParams::boxed(); // 788,840 bytes: on the heap here, a `static` on firmware
//! params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(0));
//! let image = [[0.5f32; 28]; 28];
//! let class = params.predict(&image, &mut Workspace::new()).unwrap();
//! assert!(class < 10);
//! ```
//!
//! Layers of the crate, each using only those below it:
//! - [`kernels`]: pure functions on arrays, each SIMD kernel beside its scalar twin;
//! - [`model`] and [`data`]: parameters, forward pass, IDX parsing, samples;
//! - [`train`] and [`weights`]: backward, optimizers, the fit loop; the flash blob;
//! - `host` (feature `std`): files, gzip, safetensors, checkpoints, data-parallel training.
//!
//! Memory at the default sizes (bytes): parameters [`Params::BYTES`] = 788,840;
//! inference working memory [`Params::INFERENCE_BYTES`]; training working
//! memory [`Params::TRAINING_BYTES_SGD`] and [`Params::TRAINING_BYTES_ADAM`].
//! With dense1's kernel in 8 bits ([`Params8`], trained in place by
//! [`train::StreamingSgdTrainer`] with stochastic rounding) the parameters take
//! [`Params8::BYTES`] = 201,240 and training [`Params8::TRAINING_BYTES_SGD`] =
//! 41,400 more: the whole network trains in 256 KiB of RAM.
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
pub use model::{BatchWorkspace, Evaluation, Network, ParamBuffer, Params, Params8, Workspace};
pub use train::Trainer;

/// [`Params`] at the default (Fashion-MNIST) sizes, nameable in expressions:
/// `FashionParams::boxed()`.
pub type FashionParams = Params;
/// [`Params8`] at the default sizes, nameable in expressions:
/// `FashionParams8::boxed()`.
pub type FashionParams8 = Params8;
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
/// [`train::StreamingSgdTrainer`] at the default sizes, batches of up to 32.
pub type FashionStreamingSgdTrainer = train::StreamingSgdTrainer;
/// [`quant::QuantModel`] at the default sizes, nameable in expressions:
/// `FashionQuantModel::from_blob(&blob)`.
pub type FashionQuantModel<'a> = quant::QuantModel<'a>;
/// [`quant::QuantWorkspace`] at the default sizes.
pub type FashionQuantWorkspace = quant::QuantWorkspace;
