//! Int8 inference: post-training quantization of a trained f32 model and the
//! integer forward pass, run from a flat, versioned, checksummed blob that
//! firmware borrows from flash without copying.
//!
//! Scales: the input is the image's own `u8` pixels (scale 1/255); weights
//! are `i8`, symmetric, one scale per output channel (`max |w| / 127`);
//! activations after ReLU are `u8` with zero point 0 (the non-negative half of
//! an asymmetric int8 range), their scale calibrated as the largest value seen
//! on a calibration set; biases are `i32` at the scale of the sums they join;
//! each layer's sums move to the next scale with a [`Requant`]. The logits are
//! brought to one common scale, so the class is an integer argmax.
//!
//! Blob layout (integers little-endian): magic `b"TCQ8"`, version 5, `H`,
//! `W`, `K`, `HIDDEN`, `CLASSES`, payload length, CRC-32 of the payload (nine
//! words); then the payload: the `i32` section (conv, dense1, dense2 biases;
//! then for each layer its multipliers and its shifts) and the `i8` section:
//! dense1's kernel in the paired layout of [`dense_i8_paired`](crate::kernels::dense_i8_paired) with pairs
//! [`QuantModel::PAIR_STRIDE`] apart (one pooled row), which lets a
//! Cortex-M4 take two inputs per instruction, first, so that it starts on a
//! 4-byte boundary and can be loaded a word at a time; then the conv and
//! dense2 kernels in the Keras layouts. Versions 1 (dense1 in the Keras
//! layout), 2 (the conv kernel first), 3 (the paired layout without the even
//! outputs' offset of 128) and 4 (pairs of neighbouring channels, the
//! channels reordered) are refused.

use crate::data::Samples;
use crate::kernels::{argmax, conv_relu_pool_i8, dense_i8, paired_byte, paired_index, ConvKernelI8, Requant};
use crate::model::{Params, Workspace};
use crate::Error;

/// The first four bytes of an int8 blob.
pub const MAGIC: [u8; 4] = *b"TCQ8";
/// The int8 blob format version.
pub const VERSION: u32 = 5;
use crate::weights::{BlobFormat, HEADER_BYTES};

const INT8_BLOB: BlobFormat = BlobFormat {
    magic: MAGIC,
    version: VERSION,
    what: "int8 blob",
};

/// Bytes of the `i32` section: biases, multipliers and shifts of three layers.
const fn ints<const K: usize, const HIDDEN: usize, const CLASSES: usize>() -> usize {
    3 * (K + HIDDEN + CLASSES)
}

/// An int8 model: a checked view of a blob, borrowing every array in place.
#[derive(Debug, Clone, Copy)]
pub struct QuantModel<
    'a,
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    conv_kernel: &'a ConvKernelI8<K>,
    /// In the paired layout ([`paired_index`]).
    dense1_kernel: &'a [[i8; HIDDEN]; FLAT],
    dense2_kernel: &'a [[i8; CLASSES]; HIDDEN],
    conv_bias: &'a [i32; K],
    dense1_bias: &'a [i32; HIDDEN],
    dense2_bias: &'a [i32; CLASSES],
    conv_requant: [Requant; K],
    dense1_requant: [Requant; HIDDEN],
    dense2_requant: [Requant; CLASSES],
}

/// Working memory of the int8 forward pass: 2,500 bytes at the default
/// sizes, and 7,840 more on cores with the DSP extension (Cortex-M4, M7),
/// where dense1's list of non-zero input pairs lives here rather than on the
/// stack, so that it is not cleared for every image (elsewhere that costs
/// less than the longer addressing of a list away from the stack).
#[derive(Debug, Clone)]
pub struct QuantWorkspace<const FLAT: usize = 1960, const HIDDEN: usize = 100, const CLASSES: usize = 10> {
    pooled: [u8; FLAT],
    hidden: [u8; HIDDEN],
    sums: [i32; HIDDEN],
    logits: [i32; CLASSES],
    #[cfg(all(target_arch = "arm", tinycnn_dsp))]
    pair_list: [u32; FLAT],
}

// SAFETY: only integer arrays: all zero bytes form a valid value.
unsafe impl<const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> bytemuck::Zeroable
    for QuantWorkspace<FLAT, HIDDEN, CLASSES>
{
}

impl<const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> QuantWorkspace<FLAT, HIDDEN, CLASSES> {
    /// A zeroed workspace, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            pooled: [0; FLAT],
            hidden: [0; HIDDEN],
            sums: [0; HIDDEN],
            logits: [0; CLASSES],
            #[cfg(all(target_arch = "arm", tinycnn_dsp))]
            pair_list: [0; FLAT],
        }
    }

    /// The logits of the last forward pass, at one common (unspecified) scale.
    pub fn logits(&self) -> &[i32; CLASSES] {
        &self.logits
    }
}

impl<const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> Default
    for QuantWorkspace<FLAT, HIDDEN, CLASSES>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<
        'a,
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > QuantModel<'a, H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Bytes of this model's int8 blob (198,566 at the default sizes).
    pub const BLOB_BYTES: usize =
        HEADER_BYTES + 4 * ints::<K, HIDDEN, CLASSES>() + 9 * K + FLAT * HIDDEN + HIDDEN * CLASSES;

    /// How far apart the inputs of each pair of dense1's paired layout are:
    /// a pooled row, so that a pair is one channel at one place and one
    /// pooled row down, zero together more often than two channels at one
    /// place (on the test images, 369 pairs of 980 not both zero against 411).
    pub const PAIR_STRIDE: usize = (W / 2) * K;

    fn sizes() -> [u32; 5] {
        [H, W, K, HIDDEN, CLASSES].map(|v| v as u32)
    }

    /// Checks an int8 blob and views it without copying.
    ///
    /// # Errors
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`], [`Error::Dimensions`]
    /// for other sizes, [`Error::Length`], [`Error::Checksum`], and
    /// [`Error::Misaligned`] when the blob does not start at a 4-byte boundary.
    pub fn from_blob(blob: &'a [u8]) -> Result<Self, Error> {
        const WHAT: &str = "int8 blob";
        let payload = INT8_BLOB.payload(blob, Self::sizes(), Self::BLOB_BYTES - HEADER_BYTES)?;
        if cfg!(target_endian = "big") {
            return Err(Error::Dimensions {
                what: WHAT,
                detail: "zero-copy needs a little-endian target",
            });
        }
        let (int_bytes, i8_bytes) = payload.split_at(4 * ints::<K, HIDDEN, CLASSES>());
        let ints: &[i32] =
            bytemuck::try_cast_slice(int_bytes).map_err(|_| Error::Misaligned { needed: 4 })?;
        let (biases, requant) = ints.split_at(K + HIDDEN + CLASSES);
        let (conv_bias, rest) = biases.split_at(K);
        let (dense1_bias, dense2_bias) = rest.split_at(HIDDEN);
        let requants = |offset: usize, n: usize, i: usize| Requant {
            multiplier: requant[offset + i],
            shift: requant[offset + n + i],
        };
        let (dense1_kernel, rest) = i8_bytes.split_at(FLAT * HIDDEN);
        let (conv_kernel, dense2_kernel) = rest.split_at(9 * K);
        let shape = || Error::Dimensions {
            what: WHAT,
            detail: "section sizes do not match the model",
        };
        Ok(Self {
            conv_kernel: bytemuck::try_from_bytes(conv_kernel).map_err(|_| shape())?,
            dense1_kernel: bytemuck::try_from_bytes(dense1_kernel).map_err(|_| shape())?,
            dense2_kernel: bytemuck::try_from_bytes(dense2_kernel).map_err(|_| shape())?,
            conv_bias: conv_bias.try_into().map_err(|_| shape())?,
            dense1_bias: dense1_bias.try_into().map_err(|_| shape())?,
            dense2_bias: dense2_bias.try_into().map_err(|_| shape())?,
            conv_requant: core::array::from_fn(|i| requants(0, K, i)),
            dense1_requant: core::array::from_fn(|i| requants(2 * K, HIDDEN, i)),
            dense2_requant: core::array::from_fn(|i| requants(2 * K + 2 * HIDDEN, CLASSES, i)),
        })
    }

    /// Runs the integer network on one image of `u8` pixels (row-major,
    /// `H * W` of them) and returns the predicted class.
    ///
    /// # Errors
    /// [`Error::Length`] when `pixels` is not `H * W` long.
    pub fn predict(
        &self,
        pixels: &[u8],
        workspace: &mut QuantWorkspace<FLAT, HIDDEN, CLASSES>,
    ) -> Result<usize, Error> {
        let image: &[[u8; W]; H] = bytemuck::try_from_bytes(pixels).map_err(|_| Error::Length {
            what: "image",
            expected: H * W,
            found: pixels.len(),
        })?;
        let ws = workspace;
        conv_relu_pool_i8(
            image,
            self.conv_kernel,
            self.conv_bias,
            &self.conv_requant,
            &mut ws.pooled,
        );
        #[cfg(all(target_arch = "arm", tinycnn_dsp))]
        crate::kernels::paired::dense_i8_paired_listing(
            &ws.pooled,
            self.dense1_kernel,
            self.dense1_bias,
            &mut ws.sums,
            Self::PAIR_STRIDE,
            &mut ws.pair_list,
        );
        #[cfg(not(all(target_arch = "arm", tinycnn_dsp)))]
        crate::kernels::dense_i8_paired(
            &ws.pooled,
            self.dense1_kernel,
            self.dense1_bias,
            &mut ws.sums,
            Self::PAIR_STRIDE,
        );
        for ((h, &sum), requant) in ws.hidden.iter_mut().zip(&ws.sums).zip(&self.dense1_requant) {
            *h = requant.to_u8(sum);
        }
        dense_i8(&ws.hidden, self.dense2_kernel, self.dense2_bias, &mut ws.logits);
        for (logit, requant) in ws.logits.iter_mut().zip(&self.dense2_requant) {
            *logit = requant.apply(*logit);
        }
        Ok(logits_argmax(&ws.logits))
    }
}

/// Index of the largest logit, the first on a tie.
fn logits_argmax(logits: &[i32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Largest absolute value of column `j` of a row-major `[rows][cols]` matrix.
fn column_max(values: &[f32], cols: usize, j: usize) -> f32 {
    values
        .iter()
        .skip(j)
        .step_by(cols)
        .fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Quantizes `params` to an int8 blob written to the start of `out`, with
/// activation scales calibrated on every sample of `calibration` (a few
/// hundred training images do). Returns the blob's length.
///
/// # Errors
/// [`Error::Length`] when `out` is shorter than the blob, [`Error::Empty`]
/// for no calibration samples, [`Error::NonFinite`] for non-finite weights,
/// and whatever reading a sample or the forward pass returns.
pub fn quantize<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
    S: Samples<H, W> + ?Sized,
>(
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    calibration: &S,
    workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let blob_bytes = QuantModel::<H, W, K, FLAT, HIDDEN, CLASSES>::BLOB_BYTES;
    let found = out.len();
    let out = out.get_mut(..blob_bytes).ok_or(Error::Length {
        what: "int8 blob buffer",
        expected: blob_bytes,
        found,
    })?;
    if calibration.is_empty() {
        return Err(Error::Empty {
            what: "calibration set",
        });
    }
    if !crate::kernels::all_finite(crate::ParamBuffer::as_flat(params)) {
        return Err(Error::NonFinite { what: "weights" });
    }
    // Activation ranges on the calibration set.
    let (mut pooled_max, mut hidden_max) = (0.0f32, 0.0f32);
    let mut image = [[0.0f32; W]; H];
    for i in 0..calibration.len() {
        calibration.read(i, &mut image)?;
        params.features(&image, workspace)?;
        pooled_max = workspace.pooled().iter().fold(pooled_max, |m, &v| m.max(v));
        hidden_max = workspace.hidden().iter().fold(hidden_max, |m, &v| m.max(v));
    }
    let pooled_scale = f64::from(pooled_max.max(1e-6)) / 255.0;
    let hidden_scale = f64::from(hidden_max.max(1e-6)) / 255.0;
    let input_scale = 1.0 / 255.0;

    let conv_flat = params.conv_kernel.as_flattened().as_flattened();
    let dense1_flat = params.dense1_kernel.as_flattened();
    let dense2_flat = params.dense2_kernel.as_flattened();
    let weight_scale =
        |values: &[f32], cols: usize, j: usize| f64::from(column_max(values, cols, j).max(1e-12)) / 127.0;
    let conv_w: [f64; K] = core::array::from_fn(|k| weight_scale(conv_flat, K, k));
    let dense1_w: [f64; HIDDEN] = core::array::from_fn(|j| weight_scale(dense1_flat, HIDDEN, j));
    let dense2_w: [f64; CLASSES] = core::array::from_fn(|c| weight_scale(dense2_flat, CLASSES, c));
    let logit_scale = dense2_w.iter().fold(0.0f64, |m, &s| m.max(s * hidden_scale));

    let (header, payload) = out.split_at_mut(HEADER_BYTES);
    let (int_bytes, i8_bytes) = payload.split_at_mut(4 * ints::<K, HIDDEN, CLASSES>());
    let mut ints = int_bytes.chunks_exact_mut(4);
    let mut put = |v: i32| {
        if let Some(chunk) = ints.next() {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    };
    let bias = |b: f32, scale: f64| libm::round(f64::from(b) / scale) as i32;
    (0..K).for_each(|k| put(bias(params.conv_bias[k], input_scale * conv_w[k])));
    (0..HIDDEN).for_each(|j| put(bias(params.dense1_bias[j], pooled_scale * dense1_w[j])));
    (0..CLASSES).for_each(|c| put(bias(params.dense2_bias[c], hidden_scale * dense2_w[c])));
    let conv_rq: [Requant; K] =
        core::array::from_fn(|k| Requant::from_real(input_scale * conv_w[k] / pooled_scale));
    let dense1_rq: [Requant; HIDDEN] =
        core::array::from_fn(|j| Requant::from_real(pooled_scale * dense1_w[j] / hidden_scale));
    let dense2_rq: [Requant; CLASSES] =
        core::array::from_fn(|c| Requant::from_real(hidden_scale * dense2_w[c] / logit_scale));
    for layer in [&conv_rq[..], &dense1_rq[..], &dense2_rq[..]] {
        layer.iter().for_each(|r| put(r.multiplier));
        layer.iter().for_each(|r| put(r.shift));
    }
    let weight = |w: f32, scale: f64| libm::round(f64::from(w) / scale).clamp(-127.0, 127.0) as i8 as u8;
    let (dense1_out, rest) = i8_bytes.split_at_mut(FLAT * HIDDEN);
    let (conv_out, dense2_out) = rest.split_at_mut(9 * K);
    for (i, (o, &w)) in conv_out.iter_mut().zip(conv_flat).enumerate() {
        *o = weight(w, conv_w[i % K]);
    }
    let pair_stride = QuantModel::<H, W, K, FLAT, HIDDEN, CLASSES>::PAIR_STRIDE;
    for (i, &w) in dense1_flat.iter().enumerate() {
        let (input, output) = (i / HIDDEN, i % HIDDEN);
        if let Some(o) = dense1_out.get_mut(paired_index::<FLAT, HIDDEN>(input, output, pair_stride)) {
            *o = paired_byte::<FLAT, HIDDEN>(input, output, weight(w, dense1_w[output]) as i8) as u8;
        }
    }
    for (i, (o, &w)) in dense2_out.iter_mut().zip(dense2_flat).enumerate() {
        *o = weight(w, dense2_w[i % CLASSES]);
    }
    INT8_BLOB.write_header(
        header,
        QuantModel::<H, W, K, FLAT, HIDDEN, CLASSES>::sizes(),
        payload,
    );
    Ok(blob_bytes)
}

/// Predicted class of every sample of `samples` by the f32 model and the int8
/// model side by side: `(agreeing predictions, f32 correct, int8 correct)`.
/// The int8 side reads the pixels back as `u8` (`round(p * 255)`).
///
/// # Errors
/// Whatever reading a sample or either forward pass returns.
pub fn compare<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
    S: Samples<H, W> + ?Sized,
>(
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    model: &QuantModel<'_, H, W, K, FLAT, HIDDEN, CLASSES>,
    samples: &S,
    workspace: &mut Workspace<FLAT, HIDDEN, CLASSES>,
    quant_workspace: &mut QuantWorkspace<FLAT, HIDDEN, CLASSES>,
) -> Result<(usize, usize, usize), Error> {
    let mut image = [[0.0f32; W]; H];
    let mut pixels = [[0u8; W]; H];
    let (mut agree, mut f32_correct, mut int8_correct) = (0, 0, 0);
    for i in 0..samples.len() {
        let label = samples.read(i, &mut image)?;
        for (p, &v) in pixels.as_flattened_mut().iter_mut().zip(image.as_flattened()) {
            *p = libm::roundf(v * 255.0).clamp(0.0, 255.0) as u8;
        }
        let a = argmax(params.forward(&image, workspace)?);
        let b = model.predict(pixels.as_flattened(), quant_workspace)?;
        agree += usize::from(a == b);
        f32_correct += usize::from(a == label);
        int8_correct += usize::from(b == label);
    }
    Ok((agree, f32_correct, int8_correct))
}
