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
//! a training step with a non-finite (or exploded) loss or gradient returns
//! [`Error::Diverged`](crate::Error::Diverged) without changing the parameters,
//! and weight files with NaN or infinite values are refused when read.

mod channels;
pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod dropout;
mod dsp;
mod int8;
pub(crate) mod paired;
mod rounding;
mod scaled_i8;
mod softmax;
mod update;
pub(crate) mod vector;

#[doc(hidden)]
pub use channels::conv_relu_pool_channels_backward_scalar;
pub use channels::{conv_relu_pool_channels, conv_relu_pool_channels_backward};
pub use conv::{conv_relu_pool, conv_relu_pool_backward, conv_relu_pool_input_grad, ConvKernel};
pub use dense::{dense, dense_backward, relu};
pub use int8::{conv_relu_pool_i8, dense_i8, ConvKernelI8, Requant};
pub use rounding::{add_stochastic, halve_to_even, Dither, FRACTION_BITS};
#[doc(hidden)]
pub use scaled_i8::{add_outer_sparse, add_outer_stochastic_dense};
pub use scaled_i8::{
    add_outer_stochastic, dense_scaled_i8, dense_scaled_i8_listed, double_column_scale,
    scaled_i8_input_grad_listed, GRID_MAX,
};
pub use softmax::{softmax, softmax_cross_entropy};
pub use vector::{all_finite, argmax, axpy, dot, LANES};

// The scalar twins, the per-architecture variants, the optimizers' update
// kernels and the layout helpers: reachable for the crate's tests, benches
// and host schedule, not part of the documented API.
#[doc(hidden)]
pub use conv::{conv_relu_pool_backward_scalar, conv_relu_pool_scalar};
#[doc(hidden)]
pub use dense::{
    accumulate_rows, dense_backward_scalar, dense_scalar, nonzero_positions, row_input_grads, LineRow, Outer,
    Terms,
};
#[doc(hidden)]
pub use int8::{conv_relu_pool_i8_dsp, conv_relu_pool_i8_scalar, dense_i8_scalar};
#[doc(hidden)]
pub use paired::{dense_i8_paired, dense_i8_paired_scalar, pair_kernel, paired_byte, paired_index};
#[doc(hidden)]
pub use update::{adam_update, adam_update_scalar, momentum_update, momentum_update_scalar, AdamStep};
#[doc(hidden)]
pub use vector::{axpy_scalar, dot_scalar, larger, mul_add};
