//! Data-parallel training on the host: each mini-batch is split across
//! threads, each with its own [`Trainer`], and the gradients are summed in a
//! fixed order, so a run is the same for the same seed and thread count.

use crate::data::Samples;
use crate::kernels::dense::{accumulate_rows, Outer};
use crate::kernels::{all_finite, axpy};
use crate::model::{ParamBuffer, Params};
use crate::train::dropout::SampleStream;
use crate::train::trainer::run_epoch;
use crate::train::{Optimizer, Progress, State, Trainer};
use crate::Error;
use rand_core::RngCore;
use rayon::prelude::*;
use std::boxed::Box;
use std::vec::Vec;

/// Parameters per piece of the gradient sum and of the optimizer step, the
/// units those are spread over the threads in (a multiple of the SIMD width,
/// so each piece runs the same vector code as the whole would).
const PIECE: usize = 16 * 1024;

/// Rows of dense1's kernel per piece of the step when their gradient is formed
/// in the step itself: small enough for the piece's gradient to stay in L1.
const ROWS_PER_PIECE: usize = 16;

/// Where dense1's kernel lies in the flat view of [`Params`] (`repr(C)`: the
/// convolution's kernel and bias come first).
const fn dense1_kernel_range<const K: usize, const FLAT: usize, const HIDDEN: usize>(
) -> core::ops::Range<usize> {
    10 * K..10 * K + FLAT * HIDDEN
}

/// One thread's share of a batch as dense1's kernel gradient needs it.
struct Records<const HIDDEN: usize> {
    /// Each sample's non-zero inputs to dense1 as `(row, value)`, sample after sample.
    inputs: Vec<(u16, f32)>,
    /// Where each sample's inputs end in `inputs`.
    ends: Vec<usize>,
    /// Each sample's gradient at dense1's outputs (the loss scale included).
    hidden_grads: Vec<[f32; HIDDEN]>,
}

impl<const HIDDEN: usize> Records<HIDDEN> {
    const fn new() -> Self {
        Self {
            inputs: Vec::new(),
            ends: Vec::new(),
            hidden_grads: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.inputs.clear();
        self.ends.clear();
        self.hidden_grads.clear();
    }

    fn push<const H: usize, const W: usize, const K: usize, const FLAT: usize, const CLASSES: usize>(
        &mut self,
        trainer: &Trainer<H, W, K, FLAT, HIDDEN, CLASSES>,
    ) {
        let (active, inputs, hidden_grad) = trainer.dense1_record();
        let values = active
            .iter()
            .map(|&row| (row, inputs.get(usize::from(row)).copied().unwrap_or(0.0)));
        self.inputs.extend(values);
        self.ends.push(self.inputs.len());
        self.hidden_grads.push(*hidden_grad);
    }
}

/// A batch's records regrouped by row of dense1's kernel (a counting sort):
/// per row, the samples whose input there is not zero, in batch order.
struct ByRow<const HIDDEN: usize> {
    /// Row `i`'s terms are `terms[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    /// `(sample, input)`, samples numbered through the whole batch.
    terms: Vec<(u32, f32)>,
    /// Every sample's gradient at dense1's outputs, in batch order.
    hidden_grads: Vec<[f32; HIDDEN]>,
}

impl<const HIDDEN: usize> ByRow<HIDDEN> {
    const fn new() -> Self {
        Self {
            starts: Vec::new(),
            terms: Vec::new(),
            hidden_grads: Vec::new(),
        }
    }

    fn regroup(&mut self, rows: usize, records: &[Records<HIDDEN>]) {
        self.starts.clear();
        self.starts.resize(rows + 2, 0);
        for &(row, _) in records.iter().flat_map(|r| &r.inputs) {
            if let Some(count) = self.starts.get_mut(usize::from(row) + 2) {
                *count += 1;
            }
        }
        // Prefix sums shifted by one: `starts[i + 1]` is where row `i` begins,
        // the next free slot of row `i` while the terms are placed.
        for i in 2..self.starts.len() {
            self.starts[i] += self.starts[i - 1];
        }
        self.terms.clear();
        self.terms.resize(self.starts[rows + 1], (0, 0.0));
        self.hidden_grads.clear();
        for record in records {
            let mut start = 0;
            for (&end, hidden_grad) in record.ends.iter().zip(&record.hidden_grads) {
                let sample = self.hidden_grads.len() as u32;
                for &(row, x) in record.inputs.get(start..end).unwrap_or_default() {
                    if let Some(slot) = self.starts.get_mut(usize::from(row) + 1) {
                        if let Some(term) = self.terms.get_mut(*slot) {
                            *term = (sample, x);
                        }
                        *slot += 1;
                    }
                }
                self.hidden_grads.push(*hidden_grad);
                start = end;
            }
        }
        self.starts.pop();
    }

    /// The largest input and the sum over samples of each one's largest
    /// output gradient, or `None` if an output gradient is NaN or infinite:
    /// what bounds the sums the terms form.
    fn bounds(&self) -> Option<(f32, f32)> {
        let inputs = self.terms.iter().map(|&(_, x)| x.abs()).fold(0.0f32, f32::max);
        let mut outputs = 0.0f32;
        for hidden_grad in &self.hidden_grads {
            if !all_finite(hidden_grad) {
                return None;
            }
            outputs += hidden_grad.iter().map(|g| g.abs()).fold(0.0f32, f32::max);
        }
        Some((inputs, outputs))
    }
}

/// The threads' regrouped records in thread order, which is batch order:
/// a row of dense1's kernel gradient takes the first thread's terms, then
/// the second's, and so on.
struct Regrouped<'a, const HIDDEN: usize>(&'a [ByRow<HIDDEN>]);

impl<const HIDDEN: usize> Regrouped<'_, HIDDEN> {
    /// Whether every row the terms form is certainly finite: every input and
    /// output gradient is, and no sum can reach overflow, its size being at
    /// most the largest input times the sum over samples of each one's
    /// largest output gradient (with room to spare for rounding).
    fn sums_certainly_finite(&self) -> bool {
        let (mut inputs, mut outputs) = (0.0f32, 0.0f32);
        for by_row in self.0 {
            let Some((i, o)) = by_row.bounds() else {
                return false;
            };
            (inputs, outputs) = (inputs.max(i), outputs + o);
        }
        inputs.is_finite() && inputs * outputs < 1e30
    }

    /// Forms rows `first..first + rows.len()` of the kernel gradient: each
    /// the sum of its terms in batch order, as adding the samples' outer
    /// products one after another would form it.
    fn form(&self, first: usize, rows: &mut [[f32; HIDDEN]]) {
        for (i, row) in (first..).zip(rows) {
            *row = [0.0; HIDDEN];
            for by_row in self.0 {
                let terms = by_row
                    .starts
                    .get(i..i + 2)
                    .and_then(|s| by_row.terms.get(s[0]..s[1]));
                let outer = Outer {
                    terms: terms.unwrap_or_default(),
                    grads: &by_row.hidden_grads,
                };
                accumulate_rows::<false, HIDDEN>(&outer, row);
            }
        }
    }
}

/// Where a piece of the optimizer step takes its gradient from.
enum Gradient<'a> {
    /// The summed gradient.
    Summed(&'a [f32]),
    /// Formed in the step: dense1's kernel from this row on.
    Rows(usize),
}

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
    records: Vec<Records<HIDDEN>>,
    by_rows: Vec<ByRow<HIDDEN>>,
    seeds: Vec<u64>,
    /// Shared so that an epoch can run on the pool while it borrows the rest.
    pool: std::sync::Arc<rayon::ThreadPool>,
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
            trainer.defer_dense1_kernel();
            trainers.push(trainer);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|_| Error::InvalidConfig {
                what: "could not start the training threads",
            })?;
        let pool = std::sync::Arc::new(pool);
        Ok(Self {
            records: (0..threads).map(|_| Records::new()).collect(),
            by_rows: (0..threads).map(|_| ByRow::new()).collect(),
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
        let (trainers, records, by_rows, seeds, pool) = (
            &mut self.trainers,
            &mut self.records,
            &mut self.by_rows,
            &self.seeds,
            &self.pool,
        );
        let losses: Vec<Result<f32, Error>> = pool.install(|| {
            let work = trainers
                .par_iter_mut()
                .zip(records.par_iter_mut().zip(by_rows.par_iter_mut()))
                .zip(batch.par_chunks(chunk).zip(seeds.par_chunks(chunk)));
            work.map(|((trainer, (record, by_row)), (indices, seeds))| {
                trainer.zero_gradients_but_dense1_kernel();
                record.clear();
                let mut image = [[0.0f32; W]; H];
                let mut loss = 0.0f32;
                for (&index, &seed) in indices.iter().zip(seeds) {
                    let label = samples.read(index as usize, &mut image)?;
                    loss += trainer.accumulate(shared, &image, label, scale, &mut SampleStream(seed))?;
                    record.push(trainer);
                }
                // Each thread regroups its own samples; the step takes the
                // threads' groups in thread order, which is batch order.
                by_row.regroup(FLAT, core::slice::from_ref(record));
                Ok(loss)
            })
            .collect()
        });
        // Losses and the small gradients are summed in thread order, whatever
        // order the threads finished in. Dense1's kernel gradient (all but
        // 1,210 of the default model's parameters) is not summed sample by
        // sample: each row is formed once, in the optimizer step, from the
        // samples whose input there is not zero, in batch order. That is the
        // arithmetic of adding the samples' outer products one after another
        // (so it does not depend on the thread count), without the
        // read-modify-write of scattered rows of a 784 KB buffer per sample,
        // its zeroing, its check, and its second reading by the step.
        let used = losses.len();
        let mut loss_sum = 0.0f32;
        for loss in losses {
            loss_sum += loss?;
        }
        let dense1 = dense1_kernel_range::<K, FLAT, HIDDEN>();
        let (first, rest) = trainers.split_at_mut(1);
        let rest = rest.get(..used.saturating_sub(1)).unwrap_or_default();
        let total = first[0].gradients_mut();
        let mut finite = true;
        for range in [0..dense1.start, dense1.end..total.as_flat().len()] {
            let sum = total.as_flat_mut().get_mut(range.clone()).unwrap_or_default();
            for other in rest {
                axpy(
                    1.0,
                    other.gradients().as_flat().get(range.clone()).unwrap_or_default(),
                    sum,
                );
            }
            finite &= all_finite(sum);
        }
        let by_row = Regrouped(by_rows.get(..used).unwrap_or_default());
        let loss = loss_sum * scale;
        if !loss.is_finite() || !finite {
            return Err(Error::Diverged);
        }
        let by_row = &by_row;
        // The step may form the rows only if none can be NaN or infinite; if
        // that is not certain, they are formed and checked first.
        let formed_in_step = by_row.sums_certainly_finite();
        if !formed_in_step {
            let kernel = &mut total.dense1_kernel;
            pool.install(|| {
                kernel
                    .par_chunks_mut(ROWS_PER_PIECE)
                    .enumerate()
                    .for_each(|(piece, rows)| by_row.form(piece * ROWS_PER_PIECE, rows));
            });
            if !all_finite(kernel.as_flattened()) {
                return Err(Error::Diverged);
            }
        }
        let grads = total.as_flat();
        let params = params.as_flat_mut();
        let (update, state) = optimizer.begin_step(params.len())?;
        let mut pieces: Vec<(&mut [f32], State<'_>, Gradient<'_>)> = Vec::new();
        let (mut params, mut state, mut at) = (params, state, 0);
        while !params.is_empty() {
            let rows_here = formed_in_step && dense1.contains(&at);
            let end = if rows_here {
                (at + ROWS_PER_PIECE * HIDDEN).min(dense1.end)
            } else if at < dense1.start {
                (at + PIECE).min(dense1.start)
            } else if at < dense1.end {
                (at + PIECE).min(dense1.end)
            } else {
                at + PIECE
            };
            let n = end.min(at + params.len()) - at;
            let (p, params_rest) = params.split_at_mut(n);
            let (s, state_rest) = state.split_at(n);
            let gradient = if rows_here {
                Gradient::Rows((at - dense1.start) / HIDDEN)
            } else {
                Gradient::Summed(grads.get(at..at + n).unwrap_or_default())
            };
            pieces.push((p, s, gradient));
            (params, state, at) = (params_rest, state_rest, at + n);
        }
        pool.install(|| {
            pieces
                .into_par_iter()
                .for_each(|(p, s, gradient)| match gradient {
                    Gradient::Summed(g) => update.apply(p, g, s),
                    Gradient::Rows(first_row) => {
                        let mut rows = std::vec![[0.0f32; HIDDEN]; p.len() / HIDDEN];
                        by_row.form(first_row, &mut rows);
                        update.apply(p, rows.as_flattened(), s);
                    }
                })
        });
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order; as
    /// [`Trainer::train_epoch`].
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`].
    #[allow(clippy::too_many_arguments)]
    pub fn train_epoch<S: Samples<H, W> + Sync + ?Sized, O: Optimizer + Send + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        order: &mut [u32],
        batch_size: usize,
        rng: &mut (impl RngCore + Send),
        epoch: usize,
        progress: &mut (impl Progress + Send),
    ) -> Result<f32, Error> {
        // The whole epoch runs on one of the pool's threads: each batch's
        // passes then start from a thread of the pool, which takes part in
        // them, instead of waking the pool from outside and sleeping until
        // it is done, twice a batch.
        let pool = std::sync::Arc::clone(&self.pool);
        pool.install(|| {
            run_epoch(
                samples.len(),
                order,
                batch_size,
                rng,
                epoch,
                progress,
                |batch, rng| self.train_batch(params, optimizer, samples, batch, rng),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Sgd;
    use rand_core::SeedableRng;

    type Small = Params<8, 8, 3, 48, 20, 3>;

    fn data() -> Vec<([[f32; 8]; 8], usize)> {
        (0..24)
            .map(|i| {
                let image = core::array::from_fn(|y| {
                    core::array::from_fn(|x| ((i * 7 + y * 3 + x * 5) % 11) as f32 / 10.0 - 0.3)
                });
                (image, i % 3)
            })
            .collect()
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Dense1's kernel gradient formed row by row in the step is, bit for
    /// bit, the sum of the samples' outer products taken one after another,
    /// whatever the thread count; with one thread the whole step is.
    #[test]
    fn the_step_matches_the_per_sample_sum_bit_for_bit() {
        let data = data();
        let mut params: std::boxed::Box<Small> = bytemuck::zeroed_box();
        params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
        params.conv_bias = [0.1; 3];
        let batch: Vec<u32> = (0..24).rev().collect();
        for threads in [1, 2, 3] {
            let mut parallel = ParallelTrainer::<8, 8, 3, 48, 20, 3>::new(threads, 0.5).unwrap();
            let mut stepped = params.clone();
            let mut rng = rand_pcg::Pcg32::seed_from_u64(9);
            parallel
                .train_batch(
                    &mut *stepped,
                    &mut Sgd::new(0.1).unwrap(),
                    &data[..],
                    &batch,
                    &mut rng,
                )
                .unwrap();
            assert!(
                Regrouped(&parallel.by_rows).sums_certainly_finite(),
                "the fast path ran"
            );
            // The same samples one by one, with the same dropout masks.
            let mut alone: std::boxed::Box<Trainer<8, 8, 3, 48, 20, 3>> = bytemuck::zeroed_box();
            alone.set_dropout(0.5).unwrap();
            let scale = 1.0 / batch.len() as f32;
            for (&index, &seed) in batch.iter().zip(&parallel.seeds) {
                let (image, label) = &data[index as usize];
                alone
                    .accumulate(&params, image, *label, scale, &mut SampleStream(seed))
                    .unwrap();
            }
            let mut expected = params.clone();
            Sgd::new(0.1)
                .unwrap()
                .step(expected.as_flat_mut(), alone.gradients().as_flat())
                .unwrap();
            let kernel = |p: &Small| bits(p.dense1_kernel.as_flattened());
            assert_eq!(kernel(&stepped), kernel(&expected), "{threads} threads");
            assert_ne!(kernel(&stepped), kernel(&params), "the step moved dense1");
            if threads == 1 {
                assert_eq!(bits(stepped.as_flat()), bits(expected.as_flat()));
            } else {
                let most = stepped
                    .as_flat()
                    .iter()
                    .zip(expected.as_flat())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(most < 1e-6, "{threads} threads: {most}");
            }
        }
    }

    /// A sample's non-zero inputs `(row, value)` and its output gradient.
    type Sample<'a> = (&'a [(u16, f32)], [f32; 4]);

    fn records(samples: &[Sample<'_>]) -> Records<4> {
        let mut records = Records::new();
        for (inputs, hidden_grad) in samples {
            records.inputs.extend_from_slice(inputs);
            records.ends.push(records.inputs.len());
            records.hidden_grads.push(*hidden_grad);
        }
        records
    }

    #[test]
    fn rows_are_formed_in_batch_order_across_threads() {
        let first = records(&[
            (&[(0, 2.0), (2, 1.0)], [1.0, 2.0, 3.0, 4.0]),
            (&[(2, 3.0)], [0.5; 4]),
        ]);
        let second = records(&[(&[(1, -1.0), (2, 0.25)], [4.0, 3.0, 2.0, 1.0])]);
        // Each thread regroups its own samples.
        let (mut by_first, mut by_second) = (ByRow::new(), ByRow::new());
        by_first.regroup(3, &[first]);
        by_second.regroup(3, &[second]);
        let threads = [by_first, by_second];
        let by_row = Regrouped(&threads);
        let mut rows = [[9.0f32; 4]; 3];
        by_row.form(0, &mut rows);
        assert_eq!(rows[0], [2.0, 4.0, 6.0, 8.0]);
        assert_eq!(rows[1], [-4.0, -3.0, -2.0, -1.0]);
        // 1 * [1, 2, 3, 4] + 3 * 0.5 + 0.25 * [4, 3, 2, 1]
        assert_eq!(rows[2], [3.5, 4.25, 5.0, 5.75]);
        assert!(by_row.sums_certainly_finite());
    }

    #[test]
    fn sums_that_could_overflow_or_hold_a_nan_are_not_trusted() {
        let trusted = |samples: &[Sample<'_>]| {
            let mut by_row = ByRow::new();
            by_row.regroup(1, &[records(samples)]);
            Regrouped(&[by_row]).sums_certainly_finite()
        };
        assert!(!trusted(&[(&[(0, 1e16)], [1e15, 0.0, 0.0, 0.0])]));
        assert!(!trusted(&[(&[(0, 1.0)], [f32::NAN, 0.0, 0.0, 0.0])]));
        assert!(trusted(&[(&[(0, 1e10)], [1e10, 0.0, 0.0, 0.0])]));
        // Bounds add up across threads: two samples each within the limit,
        // on different threads, together beyond it.
        let mut halves = [ByRow::new(), ByRow::new()];
        for by_row in &mut halves {
            by_row.regroup(1, &[records(&[(&[(0, 1e15)], [6e14, 0.0, 0.0, 0.0])])]);
        }
        assert!(Regrouped(&halves[..1]).sums_certainly_finite());
        assert!(!Regrouped(&halves).sums_certainly_finite());
    }
}
