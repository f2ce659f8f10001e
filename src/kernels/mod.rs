//! Pure functions on arrays and slices: the hot loops of the network.
//!
//! Every SIMD kernel (built on [`wide`]) has a scalar twin, named with a
//! `_scalar` suffix and the same signature, written for clarity; the tests
//! hold the two against each other. The model calls the SIMD ones. Nothing
//! here knows about models, optimizers or files.
//!
//! # NaN and infinity
//! The kernels are defined for finite values. Given NaN or infinity they do not
//! panic, but what they return is unspecified (arithmetic spreads NaN, while a
//! comparison, as in max-pooling and ReLU, may drop it). The entry points above
//! them keep such values out: [`Params::forward`](crate::Params::forward) and
//! training refuse a non-finite pixel with [`Error::NonFinite`](crate::Error::NonFinite),
//! a training step with a non-finite loss or gradient returns
//! [`Error::Diverged`](crate::Error::Diverged) without changing the parameters,
//! and weight files with NaN or infinite values are refused when read.

pub(crate) mod conv;
pub(crate) mod dense;
mod dsp;
mod int8;
pub(crate) mod paired;
mod softmax;
mod update;
pub(crate) mod vector;

pub use conv::{
    conv_relu_pool, conv_relu_pool_backward, conv_relu_pool_backward_scalar, conv_relu_pool_input_grad,
    conv_relu_pool_scalar, ConvKernel,
};
pub use dense::{dense, dense_backward, dense_backward_scalar, dense_scalar, relu};
pub use int8::{
    conv_relu_pool_i8, conv_relu_pool_i8_dsp, conv_relu_pool_i8_scalar, dense_i8, dense_i8_scalar,
    ConvKernelI8, Requant,
};
pub use paired::{dense_i8_paired, dense_i8_paired_scalar, pair_kernel, paired_byte, paired_index};
pub use softmax::{softmax, softmax_cross_entropy};
pub use update::{adam_update, adam_update_scalar, momentum_update, momentum_update_scalar, AdamStep};
pub use vector::{all_finite, argmax, axpy, axpy_scalar, dot, dot_scalar, larger, LANES};
