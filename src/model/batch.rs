//! Inference on many images at once.
//!
//! One image at a time, dense1 reads every weight row an image lists from the
//! second-level cache (784 KB at the default sizes: more than a first-level
//! cache holds). A batch walks the kernel a slice of rows at a time and runs
//! every image of the batch through each slice while it sits in the
//! first-level cache. The numbers are those of [`Params::forward`] to the bit:
//! each output takes the same terms in the same order, only cut into parts.

use super::Params;
use crate::kernels::dense::{accumulate_rows, nonzero_positions, Listed};
use crate::kernels::{all_finite, argmax, conv_relu_pool, dense, relu};
use crate::Error;
use bytemuck::Zeroable;

/// Bytes of dense1's weight rows a slice holds: half of the 48 KiB
/// first-level data cache of current Intel cores (three quarters of a 32
/// KiB one), leaving the rest to the images' sums, inputs and lists. 16, 24
/// and 32 KiB measured within noise of each other on the default model.
const SLICE_BYTES: usize = 24 * 1024;

/// Working memory of [`Params::forward_batch`] and
/// [`Params::predict_batch`] for up to `B` images at a time (the other sizes
/// as in [`Workspace`](super::Workspace)).
///
/// 195,200 bytes at the defaults (`B = 16`): box it on the host
/// ([`boxed`](Self::boxed)). Batches pay off where a cache is too small for
/// dense1's kernel; a microcontroller without a data cache gains nothing
/// from them.
///
/// ```
/// use tinycnn::BatchWorkspace;
/// assert_eq!(core::mem::size_of::<BatchWorkspace>(), 195_200);
/// ```
#[derive(Clone, Debug)]
pub struct BatchWorkspace<
    const B: usize = 16,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    pooled: [[f32; FLAT]; B],
    positions: [[u16; FLAT]; B],
    hidden: [[f32; HIDDEN]; B],
    logits: [[f32; CLASSES]; B],
}

// SAFETY: only `f32` and `u16` arrays: all zero bytes form a valid value.
unsafe impl<const B: usize, const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> Zeroable
    for BatchWorkspace<B, FLAT, HIDDEN, CLASSES>
{
}

impl<const B: usize, const FLAT: usize, const HIDDEN: usize, const CLASSES: usize>
    BatchWorkspace<B, FLAT, HIDDEN, CLASSES>
{
    /// A zeroed workspace, usable in a `static`.
    ///
    /// ```
    /// use tinycnn::BatchWorkspace;
    /// static WS: BatchWorkspace<4> = BatchWorkspace::new();
    /// ```
    pub const fn new() -> Self {
        const { assert!(B > 0, "a batch holds at least one image") };
        Self {
            pooled: [[0.0; FLAT]; B],
            positions: [[0; FLAT]; B],
            hidden: [[0.0; HIDDEN]; B],
            logits: [[0.0; CLASSES]; B],
        }
    }

    /// A zeroed workspace on the heap, never on the stack.
    ///
    /// ```
    /// let ws = tinycnn::BatchWorkspace::<16>::boxed();
    /// ```
    #[cfg(feature = "std")]
    pub fn boxed() -> std::boxed::Box<Self> {
        const { assert!(B > 0, "a batch holds at least one image") };
        bytemuck::zeroed_box()
    }
}

impl<const B: usize, const FLAT: usize, const HIDDEN: usize, const CLASSES: usize> Default
    for BatchWorkspace<B, FLAT, HIDDEN, CLASSES>
{
    fn default() -> Self {
        Self::new()
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
    /// The logits of up to `B` images, the same to the bit as
    /// [`forward`](Self::forward) gives one image at a time; they live in
    /// `workspace`, one array per image.
    ///
    /// ```
    /// use rand_core::SeedableRng;
    /// use tinycnn::BatchWorkspace;
    /// use tinycnn::{FashionParams, Workspace};
    /// let mut params = FashionParams::boxed();
    /// params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(1));
    /// let images = [[[0.25f32; 28]; 28], [[0.75f32; 28]; 28]];
    /// let mut ws = BatchWorkspace::<16>::boxed();
    /// let logits = params.forward_batch(&images, &mut ws).unwrap();
    /// assert_eq!(&logits[1], params.forward(&images[1], &mut Workspace::new()).unwrap());
    /// ```
    ///
    /// # Errors
    /// [`Error::Length`] for more than `B` images, [`Error::NonFinite`] when
    /// a pixel is NaN or infinite.
    pub fn forward_batch<'w, const B: usize>(
        &self,
        images: &[[[f32; W]; H]],
        workspace: &'w mut BatchWorkspace<B, FLAT, HIDDEN, CLASSES>,
    ) -> Result<&'w [[f32; CLASSES]], Error> {
        if images.len() > B {
            return Err(Error::Length {
                what: "batch of images (at most the workspace's batch)",
                expected: B,
                found: images.len(),
            });
        }
        if !images.iter().all(|image| all_finite(image.as_flattened())) {
            return Err(Error::NonFinite { what: "image" });
        }
        Ok(self.forward_checked_batch(images, workspace))
    }

    /// [`forward_batch`](Self::forward_batch) of at most `B` images already
    /// checked.
    fn forward_checked_batch<'w, const B: usize>(
        &self,
        images: &[[[f32; W]; H]],
        ws: &'w mut BatchWorkspace<B, FLAT, HIDDEN, CLASSES>,
    ) -> &'w [[f32; CLASSES]] {
        let mut counts = [0usize; B];
        let items = images
            .iter()
            .zip(&mut ws.pooled)
            .zip(&mut ws.positions)
            .zip(&mut ws.hidden)
            .zip(&mut counts);
        for ((((image, pooled), positions), hidden), count) in items {
            conv_relu_pool(image, &self.conv_kernel, &self.conv_bias, pooled, None);
            *count = nonzero_positions(pooled, positions);
            *hidden = self.dense1_bias;
        }
        // Each image's list advances by the positions below the slice's end:
        // at most a slice's worth, counted without a branch.
        let rows = (SLICE_BYTES / (HIDDEN * 4)).max(1);
        let mut done = [0usize; B];
        for end in (rows..FLAT + rows).step_by(rows) {
            // Positions are `u16` (`nonzero_positions` checks `FLAT` fits).
            let end = u16::try_from(end).unwrap_or(u16::MAX);
            let items = ws.pooled.iter().zip(&ws.positions).zip(&mut ws.hidden);
            for (((pooled, positions), hidden), (done, &count)) in
                items.zip(done.iter_mut().zip(&counts)).take(images.len())
            {
                let list = positions.get(*done..count).unwrap_or_default();
                let take = list.iter().take(rows).map(|&i| u16::from(i < end)).sum::<u16>();
                let take = usize::from(take);
                let slice = list.get(..take).unwrap_or_default();
                let terms = Listed {
                    input: pooled,
                    active: slice,
                    kernel: &self.dense1_kernel,
                };
                accumulate_rows::<false, HIDDEN>(&terms, hidden);
                *done += take;
            }
        }
        for (hidden, logits) in ws.hidden.iter_mut().zip(&mut ws.logits).take(images.len()) {
            relu(hidden);
            dense(hidden, &self.dense2_kernel, &self.dense2_bias, logits);
        }
        ws.logits.get(..images.len()).unwrap_or_default()
    }

    /// The predicted class of every image, written to `classes`: as
    /// [`predict`](Self::predict) one image at a time, `B` images at a time
    /// through [`forward_batch`](Self::forward_batch).
    ///
    /// ```
    /// use tinycnn::BatchWorkspace;
    /// use tinycnn::Params;
    /// let mut params = Params::<2, 2, 1, 1, 1, 3>::zeroed();
    /// params.dense2_bias = [0.0, 2.0, 1.0];
    /// let images = [[[0.0f32; 2]; 2]; 5];
    /// let mut classes = [9; 5];
    /// params.predict_batch(&images, &mut classes, &mut BatchWorkspace::<2, 1, 1, 3>::new()).unwrap();
    /// assert_eq!(classes, [1; 5]);
    /// ```
    ///
    /// # Errors
    /// [`Error::Length`] when `classes` is not as long as `images`,
    /// [`Error::NonFinite`] when a pixel is NaN or infinite; either way
    /// before a class is written.
    pub fn predict_batch<const B: usize>(
        &self,
        images: &[[[f32; W]; H]],
        classes: &mut [usize],
        workspace: &mut BatchWorkspace<B, FLAT, HIDDEN, CLASSES>,
    ) -> Result<(), Error> {
        if classes.len() != images.len() {
            return Err(Error::Length {
                what: "classes (one per image)",
                expected: images.len(),
                found: classes.len(),
            });
        }
        if !images.iter().all(|image| all_finite(image.as_flattened())) {
            return Err(Error::NonFinite { what: "image" });
        }
        for (images, classes) in images.chunks(B).zip(classes.chunks_mut(B)) {
            let logits = self.forward_checked_batch(images, workspace);
            for (class, logits) in classes.iter_mut().zip(logits) {
                *class = argmax(logits);
            }
        }
        Ok(())
    }
}
