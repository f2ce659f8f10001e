//! The network with dense1's kernel in 8 bits: parameters that train in a
//! quarter of the RAM.

use super::int8_kernel::nearest_step;
use super::layers;
use super::{glorot_draws, glorot_limit, Evaluation, Int8Kernel, Params, Workspace};
use crate::data::Samples;
use crate::kernels::{all_finite, argmax, ConvKernel, GRID_MAX};
use crate::Error;
use bytemuck::Zeroable;
use rand_core::RngCore;

/// The CNN with dense1's kernel (196,000 of the 197,210 parameters at the
/// default sizes) stored in 8 bits, one scale per hidden unit
/// ([`Int8Kernel`]); the convolution, dense2 and the biases stay `f32`.
/// 201,240 bytes at the default sizes against [`Params`]' 788,840: the
/// whole network trains on a microcontroller with 256 KiB of RAM
/// ([`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer) updates the
/// 8-bit kernel in place, stochastically rounded).
///
/// The small layers stay `f32` because they cost little (1,210 values,
/// 4,840 bytes) and their batch gradient exists whole anyway; dense1's does
/// not, so its kernel is the one that must learn on its grid.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::{Params8, Workspace};
/// static PARAMS: Params8 = Params8::zeroed();
/// assert_eq!(Params8::<28, 28, 10, 1960, 100, 10>::BYTES, 201_240);
/// let mut params = Params8::<4, 4, 2, 8, 3, 2>::zeroed();
/// params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(1));
/// assert!(params.predict(&[[0.5; 4]; 4], &mut Workspace::new()).unwrap() < 2);
/// ```
#[repr(C)]
#[derive(Clone, Debug, PartialEq)]
pub struct Params8<
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    /// `conv.kernel`, Keras shape `[3, 3, 1, K]`.
    pub conv_kernel: ConvKernel<K>,
    /// `conv.bias`, shape `[K]`.
    pub conv_bias: [f32; K],
    /// `dense1.kernel`, shape `[FLAT, HIDDEN]`, in 8 bits.
    pub dense1_kernel: Int8Kernel<FLAT, HIDDEN>,
    /// `dense1.bias`, shape `[HIDDEN]`.
    pub dense1_bias: [f32; HIDDEN],
    /// `dense2.kernel`, shape `[HIDDEN, CLASSES]`.
    pub dense2_kernel: [[f32; CLASSES]; HIDDEN],
    /// `dense2.bias`, shape `[CLASSES]`.
    pub dense2_bias: [f32; CLASSES],
}

// SAFETY: `f32` and `i8` arrays only: all zero bytes form a valid value.
unsafe impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Zeroable for Params8<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Params8<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Bytes the parameters occupy.
    pub const BYTES: usize = core::mem::size_of::<Self>();

    /// All parameters zero, usable in a `static`; initialize with
    /// [`init_glorot`](Self::init_glorot) or
    /// [`quantize_from`](Self::quantize_from).
    pub const fn zeroed() -> Self {
        let () = Params::<H, W, K, FLAT, HIDDEN, CLASSES>::SIZES_OK;
        Self {
            conv_kernel: [[[0.0; K]; 3]; 3],
            conv_bias: [0.0; K],
            dense1_kernel: Int8Kernel::zeroed(),
            dense1_bias: [0.0; HIDDEN],
            dense2_kernel: [[0.0; CLASSES]; HIDDEN],
            dense2_bias: [0.0; CLASSES],
        }
    }

    /// A zeroed, heap-allocated value, never built on the stack.
    ///
    /// ```
    /// let params = tinycnn::FashionParams8::boxed();
    /// assert_eq!(params.dense1_kernel.values[1959], [0; 100]);
    /// ```
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        let () = Params::<H, W, K, FLAT, HIDDEN, CLASSES>::SIZES_OK;
        bytemuck::zeroed_box()
    }

    /// Glorot-uniform weights and zero biases, drawn as
    /// [`Params::init_glorot`] draws them (the same generator state gives
    /// the same weights), dense1's rounded to the nearest step of twice the
    /// Glorot limit over 127: within +-64 steps, room to grow.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::{Params, Params8};
    /// let mut f32_params = Params::<4, 4, 2, 8, 3, 2>::zeroed();
    /// f32_params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
    /// let mut params = Params8::<4, 4, 2, 8, 3, 2>::zeroed();
    /// params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
    /// assert_eq!(params.dense2_kernel, f32_params.dense2_kernel);
    /// let step = params.dense1_kernel.scales[0];
    /// let w = f32::from(params.dense1_kernel.values[5][1]) * step;
    /// assert!((w - f32_params.dense1_kernel[5][1]).abs() <= step / 2.0);
    /// ```
    pub fn init_glorot(&mut self, rng: &mut impl RngCore) {
        let scale = 2.0 * glorot_limit(FLAT, HIDDEN) / f32::from(GRID_MAX);
        self.dense1_kernel.scales = [scale; HIDDEN];
        let values = self.dense1_kernel.values.as_flattened_mut();
        glorot_draws::<K, FLAT, HIDDEN, CLASSES>(
            &mut self.conv_kernel,
            |k, w| values[k] = nearest_step(w / scale),
            &mut self.dense2_kernel,
            rng,
        );
        self.conv_bias = [0.0; K];
        self.dense1_bias = [0.0; HIDDEN];
        self.dense2_bias = [0.0; CLASSES];
    }

    /// `params` with dense1's kernel stored in 8 bits
    /// ([`Int8Kernel::quantize`]), the other layers copied.
    ///
    /// ```
    /// use tinycnn::{Params, Params8};
    /// let mut params = Params::<2, 2, 1, 1, 2, 2>::zeroed();
    /// params.dense1_kernel = [[0.5, -0.25]];
    /// params.dense2_bias = [1.0, 2.0];
    /// let mut params8 = Params8::zeroed();
    /// params8.quantize_from(&params).unwrap();
    /// let mut back = Params::zeroed();
    /// params8.to_params(&mut back);
    /// let step = params8.dense1_kernel.scales[0]; // 2 * 0.5 / 127
    /// assert!((back.dense1_kernel[0][0] - 0.5).abs() <= step / 2.0);
    /// assert_eq!(back.dense2_bias, params.dense2_bias);
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite parameter; `self` is left
    /// as it was.
    pub fn quantize_from(&mut self, params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>) -> Result<(), Error> {
        if !all_finite(bytemuck::cast_slice(core::slice::from_ref(params))) {
            return Err(Error::NonFinite { what: "parameter" });
        }
        self.dense1_kernel.quantize(&params.dense1_kernel)?;
        self.copy_other_layers(params);
        Ok(())
    }

    /// Undoes [`to_params`](Self::to_params) given the scales it was taken
    /// with: every 8-bit value comes back exactly (a value times its scale,
    /// divided by the scale and rounded, is the value again), so training
    /// resumes from a checkpoint of the export as if it had not stopped.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::{Params, Params8};
    /// let mut params8 = Params8::<4, 4, 2, 8, 3, 2>::zeroed();
    /// params8.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(5));
    /// let mut exported = Params::zeroed();
    /// params8.to_params(&mut exported);
    /// let mut restored = Params8::zeroed();
    /// restored.restore(&exported, &params8.dense1_kernel.scales).unwrap();
    /// assert_eq!(restored, params8);
    /// ```
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite parameter,
    /// [`Error::InvalidConfig`] for a scale that is not finite and positive;
    /// `self` is left as it was.
    pub fn restore(
        &mut self,
        params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        scales: &[f32; HIDDEN],
    ) -> Result<(), Error> {
        if !all_finite(bytemuck::cast_slice(core::slice::from_ref(params))) {
            return Err(Error::NonFinite { what: "parameter" });
        }
        self.dense1_kernel.quantize_with(&params.dense1_kernel, scales)?;
        self.copy_other_layers(params);
        Ok(())
    }

    /// Every layer but dense1's kernel, from `params`.
    fn copy_other_layers(&mut self, params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>) {
        self.conv_kernel = params.conv_kernel;
        self.conv_bias = params.conv_bias;
        self.dense1_bias = params.dense1_bias;
        self.dense2_kernel = params.dense2_kernel;
        self.dense2_bias = params.dense2_bias;
    }

    /// The parameters in `f32` (the export: weight files, the int8
    /// inference blob, and every tool that reads [`Params`]). The forward
    /// pass of the result computes what this one does, up to rounding.
    pub fn to_params(&self, params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>) {
        self.dense1_kernel.dequantize(&mut params.dense1_kernel);
        params.conv_kernel = self.conv_kernel;
        params.conv_bias = self.conv_bias;
        params.dense1_bias = self.dense1_bias;
        params.dense2_kernel = self.dense2_kernel;
        params.dense2_bias = self.dense2_bias;
    }

    /// Runs the network on one image and returns the logits, which live in
    /// `workspace` (as [`Params::forward`]).
    ///
    /// # Errors
    /// [`Error::NonFinite`] when a pixel is NaN or infinite.
    pub fn forward<'w>(
        &self,
        image: &[[f32; W]; H],
        workspace: &'w mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<&'w [f32; CLASSES], Error> {
        layers::logits(self, image, workspace)
    }

    /// The predicted class: the index of the largest logit.
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn predict(
        &self,
        image: &[[f32; W]; H],
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<usize, Error> {
        Ok(argmax(self.forward(image, workspace)?))
    }

    /// Mean cross-entropy loss and accuracy over every sample of `samples`.
    ///
    /// # Errors
    /// As [`Params::evaluate`].
    pub fn evaluate<S: Samples<H, W> + ?Sized>(
        &self,
        samples: &S,
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<Evaluation, Error> {
        layers::evaluate(self, samples, workspace)
    }
}
