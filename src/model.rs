//! The network's parameters, its inference working memory, and the forward pass.

mod batch;
pub(crate) mod int8_kernel;
pub(crate) mod layers;

use crate::data::{Inputs, Samples};
use crate::kernels::{all_finite, argmax, softmax, softmax_cross_entropy, ConvKernel};
use crate::Error;
use bytemuck::{Pod, Zeroable};
use rand_core::RngCore;

pub use batch::BatchWorkspace;
pub use int8_kernel::Int8Kernel;

/// The book network's parameters as its forward pass reads them:
/// [`Params`]. Sealed: the crate implements it.
pub trait Network<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>: layers::Layers<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Network<H, W, K, FLAT, HIDDEN, CLASSES> for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

#[cfg(feature = "std")]
impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
        N: Network<H, W, K, FLAT, HIDDEN, CLASSES>,
    > Network<H, W, K, FLAT, HIDDEN, CLASSES> for std::boxed::Box<N>
{
}

/// All trainable parameters of the CNN, in the Keras layouts of the crate's
/// weight files (so a flat view of this struct is the blob's payload).
///
/// The const parameters are the sizes: an `H x W` one-channel input, `K`
/// convolution kernels, `FLAT = (H/2)*(W/2)*K` flattened values (stable Rust
/// cannot compute it inside a type, so it is spelled out and checked at
/// compile time), `HIDDEN` units and `CLASSES` classes. The defaults are the
/// Fashion-MNIST network.
///
/// The struct is 788,840 bytes at the default sizes: keep it in a `static`
/// (its zero value lives in `.bss`), borrow it from flash, or box it on the
/// host, never on the stack.
///
/// ```
/// use tinycnn::Params;
/// static PARAMS: Params = Params::zeroed();
/// assert_eq!(Params::<28, 28, 10, 1960, 100, 10>::COUNT, 197_210);
/// assert_eq!(core::mem::size_of_val(&PARAMS), 788_840);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params<
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
    /// `dense1.kernel`, shape `[FLAT, HIDDEN]`.
    pub dense1_kernel: [[f32; HIDDEN]; FLAT],
    /// `dense1.bias`, shape `[HIDDEN]`.
    pub dense1_bias: [f32; HIDDEN],
    /// `dense2.kernel`, shape `[HIDDEN, CLASSES]`.
    pub dense2_kernel: [[f32; CLASSES]; HIDDEN],
    /// `dense2.bias`, shape `[CLASSES]`.
    pub dense2_bias: [f32; CLASSES],
}

// SAFETY: `Params` is `repr(C)` and holds only `f32` arrays, so it has no
// padding and every bit pattern, all zeros included, is a valid value.
unsafe impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Zeroable for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

// SAFETY: as for `Zeroable` above; the type is also `Copy` and `'static`.
unsafe impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Pod for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
}

/// A bundle of `f32` parameters that optimizers can treat as one flat slice,
/// with an all-zero value usable in `const` context (for optimizer state in a
/// `static`).
pub trait ParamBuffer: Pod {
    /// The value with every parameter zero.
    const ZERO: Self;

    /// All parameters as one slice, in declaration order.
    #[inline]
    fn as_flat(&self) -> &[f32] {
        bytemuck::cast_slice(core::slice::from_ref(self))
    }

    /// All parameters as one mutable slice, in declaration order.
    #[inline]
    fn as_flat_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(core::slice::from_mut(self))
    }
}

/// Fixed-size `f32` arrays are parameter buffers too (handy for tests and
/// small custom models).
impl<const N: usize> ParamBuffer for [f32; N] {
    const ZERO: Self = [0.0; N];
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > ParamBuffer for Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    const ZERO: Self = Self::zeroed();
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    const SIZES_OK: () = {
        assert!(H >= 2 && W >= 2, "the input must be at least 2x2");
        assert!(
            K >= 1 && HIDDEN >= 1 && CLASSES >= 1,
            "every layer needs at least one unit"
        );
        assert!(FLAT == (H / 2) * (W / 2) * K, "FLAT must be (H/2)*(W/2)*K");
    };

    /// Number of trainable parameters.
    pub const COUNT: usize = 9 * K + K + FLAT * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES;

    /// Bytes the parameters occupy.
    pub const BYTES: usize = Self::COUNT * 4;

    /// Bytes of working memory for inference: the [`Workspace`] plus the two
    /// convolution rows the fused kernel keeps on the stack.
    pub const INFERENCE_BYTES: usize =
        core::mem::size_of::<Workspace<FLAT, HIDDEN, CLASSES>>() + 2 * K * W * 4;

    /// All parameters zero, usable in a `static`.
    ///
    /// ```
    /// static ZERO: tinycnn::Params = tinycnn::Params::zeroed();
    /// assert_eq!(ZERO.conv_bias, [0.0; 10]);
    /// ```
    pub const fn zeroed() -> Self {
        let () = Self::SIZES_OK;
        Self {
            conv_kernel: [[[0.0; K]; 3]; 3],
            conv_bias: [0.0; K],
            dense1_kernel: [[0.0; HIDDEN]; FLAT],
            dense1_bias: [0.0; HIDDEN],
            dense2_kernel: [[0.0; CLASSES]; HIDDEN],
            dense2_bias: [0.0; CLASSES],
        }
    }

    /// A zeroed, heap-allocated value, never built on the stack.
    ///
    /// ```
    /// let params = tinycnn::FashionParams::boxed();
    /// assert_eq!(params.dense2_bias, [0.0; 10]);
    /// ```
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        bytemuck::zeroed_box()
    }

    /// Glorot-uniform initialization of the kernels (Keras's default):
    /// `U(-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`; biases zero.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// let mut params = tinycnn::Params::<4, 4, 2, 8, 3, 2>::zeroed();
    /// params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(7));
    /// let limit = (6.0f32 / (8.0 + 3.0)).sqrt();
    /// assert!(params.dense1_kernel.as_flattened().iter().all(|w| w.abs() <= limit && *w != 0.0));
    /// assert_eq!(params.dense1_bias, [0.0; 3]);
    /// ```
    pub fn init_glorot(&mut self, rng: &mut impl RngCore) {
        let dense1 = self.dense1_kernel.as_flattened_mut();
        glorot_draws::<K, FLAT, HIDDEN, CLASSES>(
            &mut self.conv_kernel,
            |k, w| dense1[k] = w,
            &mut self.dense2_kernel,
            rng,
        );
        self.conv_bias = [0.0; K];
        self.dense1_bias = [0.0; HIDDEN];
        self.dense2_bias = [0.0; CLASSES];
    }

    /// Runs the network on one image (pixels in `[0, 1]`, row-major) and
    /// returns the logits, which live in `workspace`.
    ///
    /// ```
    /// use tinycnn::{Params, Workspace};
    /// let mut params = Params::<2, 2, 1, 1, 1, 2>::zeroed();
    /// params.conv_kernel[1][1][0] = 1.0; // centre tap: passes the pixel through
    /// params.dense1_kernel = [[1.0]];
    /// params.dense2_kernel = [[1.0, -1.0]];
    /// let mut ws = Workspace::new();
    /// let logits = params.forward(&[[0.25, 0.5], [0.0, 0.0]], &mut ws).unwrap();
    /// assert_eq!(logits, &[0.5, -0.5]);
    /// ```
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

    /// The hidden layer (after ReLU) for one image: the features the last
    /// layer classifies, as used to fine-tune only that layer
    /// ([`train::HeadTrainer`](crate::train::HeadTrainer)).
    ///
    /// ```
    /// use tinycnn::{Params, Workspace};
    /// let mut params = Params::<2, 2, 1, 1, 2, 2>::zeroed();
    /// params.dense1_bias = [0.5, -0.5];
    /// assert_eq!(params.features(&[[0.0; 2]; 2], &mut Workspace::new()), Ok(&[0.5, 0.0]));
    /// ```
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn features<'w>(
        &self,
        image: &[[f32; W]; H],
        workspace: &'w mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<&'w [f32; HIDDEN], Error> {
        if !all_finite(image.as_flattened()) {
            return Err(Error::NonFinite { what: "image" });
        }
        layers::hidden_parts(self, image, workspace, None, |_| (), None);
        Ok(&workspace.hidden)
    }

    /// The predicted class: the index of the largest logit (the first one on a tie).
    ///
    /// ```
    /// use tinycnn::{Params, Workspace};
    /// let mut params = Params::<2, 2, 1, 1, 1, 3>::zeroed();
    /// params.dense2_bias = [0.0, 2.0, 1.0];
    /// assert_eq!(params.predict(&[[0.0; 2]; 2], &mut Workspace::new()), Ok(1));
    /// ```
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

    /// Class probabilities: the softmax of the logits.
    ///
    /// ```
    /// use tinycnn::{Params, Workspace};
    /// let params = Params::<2, 2, 1, 1, 1, 4>::zeroed();
    /// let p = params.predict_proba(&[[0.0; 2]; 2], &mut Workspace::new()).unwrap();
    /// assert_eq!(p, [0.25; 4]);
    /// ```
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn predict_proba(
        &self,
        image: &[[f32; W]; H],
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<[f32; CLASSES], Error> {
        let mut probabilities = [0.0; CLASSES];
        softmax(self.forward(image, workspace)?, &mut probabilities);
        Ok(probabilities)
    }

    /// Mean cross-entropy loss and accuracy over every sample of `samples`.
    ///
    /// ```
    /// use tinycnn::{Params, Workspace};
    /// let params = Params::<2, 2, 1, 1, 1, 2>::zeroed();
    /// let data = [([[0.0; 2]; 2], 0), ([[1.0; 2]; 2], 1)];
    /// let e = params.evaluate(&data[..], &mut Workspace::new()).unwrap();
    /// assert_eq!((e.correct, e.total), (1, 2)); // all logits equal: class 0 every time
    /// assert!((e.loss - core::f32::consts::LN_2).abs() < 1e-6);
    /// ```
    ///
    /// # Errors
    /// [`Error::Empty`] for no samples, and whatever reading a sample or
    /// [`forward`](Self::forward) returns.
    pub fn evaluate<S: Samples<H, W> + ?Sized>(
        &self,
        samples: &S,
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<Evaluation, Error> {
        layers::evaluate(self, samples, workspace)
    }

    /// Accuracy over every sample of `samples`: the fraction predicted right.
    ///
    /// ```
    /// use tinycnn::{Params, Workspace};
    /// let params = Params::<2, 2, 1, 1, 1, 2>::zeroed();
    /// let data = [([[0.0; 2]; 2], 0), ([[0.0; 2]; 2], 0)];
    /// assert_eq!(params.score(&data[..], &mut Workspace::new()), Ok(1.0));
    /// ```
    ///
    /// # Errors
    /// As [`evaluate`](Self::evaluate).
    pub fn score<S: Samples<H, W> + ?Sized>(
        &self,
        samples: &S,
        workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<f32, Error> {
        Ok(self.evaluate(samples, workspace)?.accuracy)
    }
}

/// Mean loss and accuracy over `samples`, read one at a time into `image`,
/// with `logits_of` giving each image's logits.
pub(crate) fn evaluate_logits<
    const H: usize,
    const W: usize,
    const CLASSES: usize,
    S: Inputs<[[f32; W]; H]> + ?Sized,
>(
    samples: &S,
    image: &mut [[f32; W]; H],
    mut logits_of: impl FnMut(&[[f32; W]; H]) -> Result<[f32; CLASSES], Error>,
) -> Result<Evaluation, Error> {
    let mut grad = [0.0f32; CLASSES];
    evaluate_each(samples, image, |image, label| {
        let logits = logits_of(image)?;
        let loss = softmax_cross_entropy(&logits, label, 1.0, &mut grad)?;
        Ok((loss, argmax(&logits) == label))
    })
}

/// Mean loss and accuracy over `samples`, read one at a time into `input`,
/// with `score` giving each sample's loss and whether it was classed right.
pub(crate) fn evaluate_each<I, D: Inputs<I> + ?Sized>(
    samples: &D,
    input: &mut I,
    mut score: impl FnMut(&mut I, usize) -> Result<(f32, bool), Error>,
) -> Result<Evaluation, Error> {
    if samples.is_empty() {
        return Err(Error::Empty {
            what: "evaluation set",
        });
    }
    let mut loss_sum = 0.0f64;
    let mut correct = 0;
    for index in 0..samples.len() {
        let label = samples.read(index, input)?;
        let (loss, right) = score(input, label)?;
        loss_sum += f64::from(loss);
        correct += usize::from(right);
    }
    let total = samples.len();
    Ok(Evaluation {
        loss: (loss_sum / total as f64) as f32,
        accuracy: correct as f32 / total as f32,
        correct,
        total,
    })
}

/// One named tensor of [`Params`], in the Keras layout of the weight files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tensor<'a> {
    /// The name in weight files, e.g. `"dense1.kernel"`.
    pub name: &'static str,
    /// The shape, outermost axis first; only the first `rank` entries count.
    pub shape: [usize; 4],
    /// Number of axes.
    pub rank: usize,
    /// The values, row-major.
    pub values: &'a [f32],
}

impl Tensor<'_> {
    /// The shape as a slice of `rank` axes.
    pub fn dims(&self) -> &[usize] {
        &self.shape[..self.rank]
    }
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Params<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Names and shapes of the six tensors, in storage order.
    pub const TENSOR_SHAPES: [(&'static str, [usize; 4], usize); 6] = [
        ("conv.kernel", [3, 3, 1, K], 4),
        ("conv.bias", [K, 0, 0, 0], 1),
        ("dense1.kernel", [FLAT, HIDDEN, 0, 0], 2),
        ("dense1.bias", [HIDDEN, 0, 0, 0], 1),
        ("dense2.kernel", [HIDDEN, CLASSES, 0, 0], 2),
        ("dense2.bias", [CLASSES, 0, 0, 0], 1),
    ];

    /// The six tensors with their names and Keras shapes, in storage order.
    ///
    /// ```
    /// let params = tinycnn::FashionParams::boxed();
    /// let names: Vec<_> = params.tensors().iter().map(|t| t.name).collect();
    /// assert_eq!(names, ["conv.kernel", "conv.bias", "dense1.kernel", "dense1.bias", "dense2.kernel", "dense2.bias"]);
    /// assert_eq!(params.tensors()[2].dims(), &[1960, 100]);
    /// ```
    pub fn tensors(&self) -> [Tensor<'_>; 6] {
        let values: [&[f32]; 6] = [
            self.conv_kernel.as_flattened().as_flattened(),
            &self.conv_bias,
            self.dense1_kernel.as_flattened(),
            &self.dense1_bias,
            self.dense2_kernel.as_flattened(),
            &self.dense2_bias,
        ];
        let mut i = 0;
        values.map(|values| {
            let (name, shape, rank) = Self::TENSOR_SHAPES[i];
            i += 1;
            Tensor {
                name,
                shape,
                rank,
                values,
            }
        })
    }

    /// The six tensors' values, mutable, in the order of [`tensors`](Self::tensors).
    pub fn tensor_values_mut(&mut self) -> [&mut [f32]; 6] {
        [
            self.conv_kernel.as_flattened_mut().as_flattened_mut(),
            &mut self.conv_bias,
            self.dense1_kernel.as_flattened_mut(),
            &mut self.dense1_bias,
            self.dense2_kernel.as_flattened_mut(),
            &mut self.dense2_bias,
        ]
    }
}

/// Loss and accuracy over a data set, as [`Params::evaluate`] measures them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Evaluation {
    /// Mean softmax cross-entropy.
    pub loss: f32,
    /// `correct / total`.
    pub accuracy: f32,
    /// Samples predicted right.
    pub correct: usize,
    /// Samples evaluated.
    pub total: usize,
}

/// Working memory of one forward pass: the pooled map, the hidden layer and
/// the logits (8,280 bytes at the default sizes).
///
/// ```
/// static mut WS: tinycnn::Workspace = tinycnn::Workspace::new();
/// assert_eq!(core::mem::size_of::<tinycnn::Workspace>(), 8_280);
/// ```
#[derive(Clone, Debug)]
pub struct Workspace<const FLAT: usize = 1960, const HIDDEN: usize = 100, const CLASSES: usize = 10> {
    pub(crate) pooled: [f32; FLAT],
    pub(crate) hidden: [f32; HIDDEN],
    pub(crate) logits: [f32; CLASSES],
}

// SAFETY: only `f32` arrays: all zero bytes form a valid value.
unsafe impl<const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> Zeroable
    for Workspace<FLAT, HIDDEN, CLASSES>
{
}

impl<const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> Workspace<FLAT, HIDDEN, CLASSES> {
    /// A zeroed workspace, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            pooled: [0.0; FLAT],
            hidden: [0.0; HIDDEN],
            logits: [0.0; CLASSES],
        }
    }

    /// The hidden layer (after ReLU) of the last forward pass.
    pub fn hidden(&self) -> &[f32; HIDDEN] {
        &self.hidden
    }

    /// The pooled, flattened feature map of the last forward pass.
    pub fn pooled(&self) -> &[f32; FLAT] {
        &self.pooled
    }
}

impl<const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> Default
    for Workspace<FLAT, HIDDEN, CLASSES>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Glorot-uniform weights in the crate's order of draws, one 32-bit draw a
/// value: the convolution's, dense1's (each handed to `dense1` with its
/// place in the flattened kernel, so a kernel stored otherwise takes the same
/// weights), dense2's.
pub(crate) fn glorot_draws<const K: usize, const FLAT: usize, const HIDDEN: usize, const CLASSES: usize>(
    conv: &mut ConvKernel<K>,
    mut dense1: impl FnMut(usize, f32),
    dense2: &mut [[f32; CLASSES]; HIDDEN],
    rng: &mut impl RngCore,
) {
    fill_uniform(
        conv.as_flattened_mut().as_flattened_mut(),
        glorot_limit(9, 9 * K),
        rng,
    );
    let dense1_limit = glorot_limit(FLAT, HIDDEN);
    for k in 0..FLAT * HIDDEN {
        dense1(k, uniform(dense1_limit, rng));
    }
    fill_uniform(dense2.as_flattened_mut(), glorot_limit(HIDDEN, CLASSES), rng);
}

pub(crate) fn glorot_limit(fan_in: usize, fan_out: usize) -> f32 {
    libm::sqrtf(6.0 / (fan_in + fan_out) as f32)
}

/// Fills `values` from `U(-limit, limit)`, one 32-bit draw per value.
pub(crate) fn fill_uniform(values: &mut [f32], limit: f32, rng: &mut impl RngCore) {
    for v in values {
        *v = uniform(limit, rng);
    }
}

/// One draw from `U(-limit, limit)`.
pub(crate) fn uniform(limit: f32, rng: &mut impl RngCore) -> f32 {
    (2.0 * unit_interval(rng.next_u32()) - 1.0) * limit
}

/// Maps a random `u32` to `[0, 1)` with 24 bits of resolution (all an `f32` holds).
#[inline]
pub(crate) fn unit_interval(bits: u32) -> f32 {
    (bits >> 8) as f32 * (1.0 / 16_777_216.0)
}
