//! Data-parallel training on the host: each mini-batch is split across
//! threads, each with its own [`Trainer`], and the gradients are summed in a
//! fixed order, so a run is the same for the same seed and thread count.

use crate::data::Samples;
use crate::kernels::{all_finite, axpy};
use crate::model::{ParamBuffer, Params};
use crate::train::dropout::SampleStream;
use crate::train::trainer::run_epoch;
use crate::train::{Optimizer, Progress, Trainer};
use crate::Error;
use rand_core::RngCore;
use rayon::prelude::*;
use std::boxed::Box;
use std::vec::Vec;

/// Parameters per piece of the gradient sum and of the optimizer step, the
/// units those are spread over the threads in (a multiple of the SIMD width,
/// so each piece runs the same vector code as the whole would).
const PIECE: usize = 16 * 1024;

/// A [`Trainer`] per thread. Each sample's dropout mask comes from its own
/// seed, drawn in batch order from the caller's generator, so the masks do
/// not depend on which thread handles the sample.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::host::ParallelTrainer;
/// use tinycnn::train::Sgd;
/// use tinycnn::Params;
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let run = |threads| {
///     let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
///     let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
///     params.init_glorot(&mut rng);
///     let mut trainer = ParallelTrainer::new(threads, 0.5).unwrap();
///     let mut order = [0u32; 64];
///     for epoch in 0..5 {
///         trainer.train_epoch(&mut params, &mut Sgd::new(0.5).unwrap(), &data[..], &mut order, 8, &mut rng, epoch, &mut ()).unwrap();
///     }
///     params
/// };
/// assert_eq!(run(2), run(2));
/// ```
pub struct ParallelTrainer<
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    trainers: Vec<Box<Trainer<H, W, K, FLAT, HIDDEN, CLASSES>>>,
    seeds: Vec<u64>,
    pool: rayon::ThreadPool,
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > ParallelTrainer<H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// `threads` trainers with dropout rate `dropout`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no threads or a dropout rate outside `[0, 1)`.
    pub fn new(threads: usize, dropout: f32) -> Result<Self, Error> {
        if threads == 0 {
            return Err(Error::InvalidConfig {
                what: "at least one thread is needed",
            });
        }
        let mut trainers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let mut trainer: Box<Trainer<H, W, K, FLAT, HIDDEN, CLASSES>> = bytemuck::zeroed_box();
            trainer.set_dropout(dropout)?;
            trainers.push(trainer);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|_| Error::InvalidConfig {
                what: "could not start the training threads",
            })?;
        Ok(Self {
            trainers,
            seeds: Vec::new(),
            pool,
        })
    }

    /// One gradient step on the samples at `batch`, split across the threads;
    /// as [`Trainer::train_batch`].
    ///
    /// # Errors
    /// As [`Trainer::train_batch`].
    pub fn train_batch<S: Samples<H, W> + Sync + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        if batch.is_empty() {
            return Err(Error::Empty { what: "batch" });
        }
        self.seeds.clear();
        self.seeds.extend(batch.iter().map(|_| rng.next_u64()));
        let scale = 1.0 / batch.len() as f32;
        let chunk = batch.len().div_ceil(self.trainers.len());
        let shared: &Params<H, W, K, FLAT, HIDDEN, CLASSES> = params;
        let (trainers, seeds, pool) = (&mut self.trainers, &self.seeds, &self.pool);
        let losses: Vec<Result<f32, Error>> = pool.install(|| {
            let work = trainers
                .par_iter_mut()
                .zip(batch.par_chunks(chunk).zip(seeds.par_chunks(chunk)));
            work.map(|(trainer, (indices, seeds))| {
                trainer.zero_gradients();
                let mut image = [[0.0f32; W]; H];
                let mut loss = 0.0f32;
                for (&index, &seed) in indices.iter().zip(seeds) {
                    let label = samples.read(index as usize, &mut image)?;
                    loss += trainer.accumulate(shared, &image, label, scale, &mut SampleStream(seed))?;
                }
                Ok(loss)
            })
            .collect()
        });
        // Losses and gradients are summed in thread order, whatever order the
        // threads finished in; the gradient a piece per task, each entry
        // adding the threads' values in the same order.
        let used = losses.len();
        let mut loss_sum = 0.0f32;
        for loss in losses {
            loss_sum += loss?;
        }
        let (first, rest) = trainers.split_at_mut(1);
        let rest = rest.get(..used.saturating_sub(1)).unwrap_or_default();
        let total = first[0].gradients_mut().as_flat_mut();
        let finite = pool.install(|| {
            total.par_chunks_mut(PIECE).enumerate().all(|(piece, sum)| {
                let range = piece * PIECE..piece * PIECE + sum.len();
                for other in rest {
                    axpy(
                        1.0,
                        other.gradients().as_flat().get(range.clone()).unwrap_or_default(),
                        sum,
                    );
                }
                all_finite(sum)
            })
        });
        let loss = loss_sum * scale;
        if !loss.is_finite() || !finite {
            return Err(Error::Diverged);
        }
        let params = params.as_flat_mut();
        let (update, state) = optimizer.begin_step(params.len())?;
        let mut pieces = Vec::with_capacity(params.len().div_ceil(PIECE));
        let (mut params, mut grads, mut state) = (params, &*total, state);
        while !params.is_empty() {
            let n = PIECE.min(params.len());
            let (p, params_rest) = params.split_at_mut(n);
            let (g, grads_rest) = grads.split_at(n.min(grads.len()));
            let (s, state_rest) = state.split_at(n);
            pieces.push((p, g, s));
            (params, grads, state) = (params_rest, grads_rest, state_rest);
        }
        pool.install(|| pieces.into_par_iter().for_each(|(p, g, s)| update.apply(p, g, s)));
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order; as
    /// [`Trainer::train_epoch`].
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`].
    #[allow(clippy::too_many_arguments)]
    pub fn train_epoch<S: Samples<H, W> + Sync + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        order: &mut [u32],
        batch_size: usize,
        rng: &mut impl RngCore,
        epoch: usize,
        progress: &mut impl Progress,
    ) -> Result<f32, Error> {
        run_epoch(
            samples.len(),
            order,
            batch_size,
            rng,
            epoch,
            progress,
            |batch, rng| self.train_batch(params, optimizer, samples, batch, rng),
        )
    }
}
