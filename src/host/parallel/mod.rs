//! Data-parallel training on the host. A mini-batch is shared out two ways:
//! by sample for the convolutions and the layers after the wide one (the
//! first dense layer, see [`Split`](crate::stack::Split)), and by row of
//! the wide layer's kernel for that layer itself (forward, backward and the
//! optimizer step). So a thread keeps to its own rows of the one big layer,
//! which hold all but 1,210 of the book model's parameters: they and their optimizer state
//! stay in one core's caches, and what the threads hand each other is a few
//! kilobytes of activations per sample instead. (Were every weight shared
//! out by sample, each core's step would first take back the cache lines the
//! other cores had read.) Every sum is taken in a fixed order, so a run is
//! the same for the same seed and thread count.
//!
//! The pieces: `partition` shares the rows out, `regroup` sorts a
//! batch's terms by row and forms the kernel gradient's rows, `meeting`
//! is where the threads wait for each other, and `run` holds the passes
//! each thread takes through a run of batches.

mod meeting;
mod partition;
mod regroup;
mod run;

use self::meeting::{write, Meeting};
use self::partition::{balanced_rows, owned_rows};
use self::regroup::RowLane;
use self::run::{Driver, Front, Lane, Run, Sample};
use crate::data::Inputs;
use crate::kernels::dropout::check_rate;
use crate::model::Evaluation;
use crate::model::ParamBuffer;
use crate::stack::{Book, Layer, Split, SplitAt, Stack, WithSizes, Workspace};
use crate::train::check::batch_scale;
use crate::train::fit::Batches;
use crate::train::{Epoch, Optimizer, Progress, Train};
use crate::Error;
use core::any::Any;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize};
use rand_core::RngCore;
use std::boxed::Box;
use std::sync::{Mutex, PoisonError, RwLock};
use std::vec::Vec;

/// Parallel training of a stack `S` (by default the book's network) that
/// splits each batch by sample and the wide layer's kernel (its first dense
/// layer, see [`Split`]) by row across its threads, which hand each other
/// the activations in between. Each sample's dropout mask comes from its own
/// seed, drawn in batch order from the caller's generator, so the masks do
/// not depend on which thread handles the sample.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::host::ParallelTrainer;
/// use tinycnn::stack::Book;
/// use tinycnn::train::{Epoch, Sgd};
/// use tinycnn::Params;
/// let data: Vec<_> = (0..64).map(|i| ([[(i % 2) as f32; 4]; 4], i % 2)).collect();
/// let run = |threads| {
///     let mut params = Params::<4, 4, 2, 8, 4, 2>::zeroed();
///     let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
///     params.init_glorot(&mut rng);
///     let mut trainer = ParallelTrainer::<Book<4, 4, 2, 8, 4, 2>>::new(threads).unwrap();
///     trainer.set_dropout(0.5).unwrap();
///     let mut order = [0u32; 64];
///     for epoch in 0..5 {
///         let epoch = Epoch::new(&mut order, 8, &mut rng).number(epoch);
///         trainer.train_epoch(&mut params, &mut Sgd::new(0.5).unwrap(), &data[..], epoch).unwrap();
///     }
///     params
/// };
/// assert_eq!(run(2), run(2));
/// ```
pub struct ParallelTrainer<S: Stack = Book>
where
    S::Layers: Split,
{
    dropout: f32,
    /// Where [`evaluate`](Self::evaluate) runs the model.
    workspace: Box<Workspace<S>>,
    lanes: Vec<RwLock<Lane<S>>>,
    /// Each thread's regrouped terms of the wide layer's rows
    /// (`RowLane<HIDDEN>`, whose size only [`Split::with_sizes`] names).
    row_lanes: Box<dyn Any + Send + Sync>,
    /// The batch's samples, in batch order.
    samples: Vec<RwLock<Box<Sample<S>>>>,
    /// Where each sample is: see [`Run::turns`].
    turns: Vec<AtomicUsize>,
    /// The rows of the wide layer's kernel each thread owns.
    rows: Vec<Range<usize>>,
    /// The parameters but for the wide layer's kernel, as the threads read
    /// them.
    small: RwLock<Box<S::Params>>,
    seeds: Vec<u64>,
    pool: rayon::ThreadPool,
}

impl<S: Stack> ParallelTrainer<S>
where
    S::Layers: Split,
{
    /// `threads` threads, no dropout.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no threads.
    pub fn new(threads: usize) -> Result<Self, Error> {
        const {
            assert!(
                !<S::Layers as Layer>::INT8,
                "ParallelTrainer steps every parameter with the optimizer: a stack with a Dense(_, i8) layer trains with StreamingSgdTrainer"
            )
        };
        if threads == 0 {
            return Err(Error::InvalidConfig {
                what: "at least one thread is needed",
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|_| Error::InvalidConfig {
                what: "could not start the training threads",
            })?;
        struct Fresh(usize);
        impl<L: Split> WithSizes<L> for Fresh {
            type Output = (Box<dyn Any + Send + Sync>, usize);
            fn call<const FLAT: usize, const HIDDEN: usize>(self) -> Self::Output {
                let lanes: Vec<RwLock<RowLane<HIDDEN>>> =
                    (0..self.0).map(|_| RwLock::new(RowLane::new())).collect();
                (Box::new(lanes), FLAT)
            }
        }
        let (row_lanes, flat) = S::Layers::with_sizes(Fresh(threads));
        Ok(Self {
            dropout: 0.0,
            workspace: Workspace::boxed(),
            lanes: (0..threads).map(|_| RwLock::new(Lane::new())).collect(),
            row_lanes,
            samples: Vec::new(),
            turns: Vec::new(),
            rows: (0..threads).map(|t| owned_rows(t, threads, flat)).collect(),
            small: RwLock::new(bytemuck::zeroed_box()),
            seeds: Vec::new(),
            pool,
        })
    }

    /// Sets the dropout rate of the stack's `Dropout` layers.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `rate` is in `[0, 1)`.
    pub fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        self.dropout = check_rate(rate)?;
        Ok(())
    }

    /// The dropout rate.
    pub const fn dropout(&self) -> f32 {
        self.dropout
    }

    /// Mean loss and accuracy of `params` on `samples` (no dropout), on
    /// the calling thread.
    ///
    /// # Errors
    /// As [`Workspace::evaluate`].
    pub fn evaluate<D: Inputs<S::Input> + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        self.workspace.evaluate(params, samples)
    }

    /// One gradient step on the samples at `batch`, split across the threads;
    /// as [`Trainer::train_batch`](crate::Trainer::train_batch).
    ///
    /// # Errors
    /// As [`Trainer::train_batch`](crate::Trainer::train_batch).
    pub fn train_batch<D: Inputs<S::Input> + Sync + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        batch_scale(batch, usize::MAX)?;
        self.seeds.clear();
        self.seeds.extend(batch.iter().map(|_| rng.next_u64()));
        let mut loss = 0.0;
        self.run(
            params,
            optimizer,
            samples,
            batch,
            batch.len(),
            &mut |_, batch_loss| {
                loss = batch_loss;
            },
        )?;
        Ok(loss)
    }

    /// One pass over `samples` in a fresh random order; as
    /// [`Trainer::train_epoch`](crate::Trainer::train_epoch).
    ///
    /// # Errors
    /// As [`Trainer::train_epoch`](crate::Trainer::train_epoch).
    pub fn train_epoch<D, O, R, P>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        mut epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        D: Inputs<S::Input> + Sync + ?Sized,
        O: Optimizer + ?Sized,
        R: RngCore,
        P: Progress + Send,
    {
        let Batches {
            order,
            rng,
            mut tally,
        } = epoch.batches(samples.len())?;
        // Every seed the epoch's batches draw, drawn first: the generator
        // gives the same ones in the same order as batch after batch.
        self.seeds.clear();
        self.seeds.extend(order.iter().map(|_| rng.next_u64()));
        let batch_size = tally.batch_size;
        self.run(params, optimizer, samples, order, batch_size, &mut |b, loss| {
            tally.done(b, loss)
        })
        .map_err(|e| tally.failed(e))?;
        Ok(tally.mean())
    }

    /// Steps on each batch of `batch_size` of `indices` in turn (with the
    /// seeds in `self.seeds`), all on the pool, whose threads keep to the
    /// run from its first batch to its last; `each` hears of every batch
    /// that stepped. Stops at the first error.
    fn run<D: Inputs<S::Input> + Sync + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        indices: &[u32],
        batch_size: usize,
        each: &mut (dyn FnMut(usize, f32) + Send),
    ) -> Result<(), Error> {
        struct Sized<'t, 'a, S: Stack, D: ?core::marker::Sized, O: ?core::marker::Sized>
        where
            S::Layers: Split,
        {
            trainer: &'t mut ParallelTrainer<S>,
            params: &'a mut S::Params,
            optimizer: &'a mut O,
            samples: &'a D,
            indices: &'a [u32],
            batch_size: usize,
            each: &'a mut (dyn FnMut(usize, f32) + Send),
        }
        impl<S: Stack, D, O> WithSizes<S::Layers> for Sized<'_, '_, S, D, O>
        where
            S::Layers: Split,
            D: Inputs<S::Input> + Sync + ?core::marker::Sized,
            O: Optimizer + ?core::marker::Sized,
        {
            type Output = Result<(), Error>;
            fn call<const FLAT: usize, const HIDDEN: usize>(self) -> Self::Output
            where
                Front<S>: Layer<Out = [f32; FLAT]>,
                <S::Layers as Split>::Wide: Layer<
                    In = [f32; FLAT],
                    Out = [f32; HIDDEN],
                    State = crate::stack::DenseState<FLAT, HIDDEN>,
                >,
                <S::Layers as Split>::Back: Layer<In = [f32; HIDDEN]>,
            {
                self.trainer.run_sized::<D, O, FLAT, HIDDEN>(
                    self.params,
                    self.optimizer,
                    self.samples,
                    self.indices,
                    self.batch_size,
                    self.each,
                )
            }
        }
        S::Layers::with_sizes(Sized {
            trainer: self,
            params,
            optimizer,
            samples,
            indices,
            batch_size,
            each,
        })
    }

    /// [`run`](Self::run) with the wide layer's sizes.
    #[allow(clippy::too_many_arguments)]
    fn run_sized<D, O, const FLAT: usize, const HIDDEN: usize>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        indices: &[u32],
        batch_size: usize,
        each: &mut (dyn FnMut(usize, f32) + Send),
    ) -> Result<(), Error>
    where
        D: Inputs<S::Input> + Sync + ?core::marker::Sized,
        O: Optimizer + ?core::marker::Sized,
        S: SplitAt<FLAT, HIDDEN>,
    {
        let threads = self.lanes.len();
        let front = <Front<S> as Layer>::PARAMS;
        let wide = front..front + FLAT * HIDDEN;
        let (schedule, state) = optimizer.schedule(params.as_flat().len())?;
        let update = schedule.peek_update();
        {
            let mut small = write(&self.small);
            for range in [0..wide.start, wide.end..params.as_flat().len()] {
                let from = params.as_flat().get(range.clone()).unwrap_or_default();
                if let Some(to) = small.as_flat_mut().get_mut(range) {
                    to.copy_from_slice(from);
                }
            }
        }
        while self.samples.len() < batch_size {
            self.samples.push(RwLock::new(Sample::boxed()));
        }
        self.turns.resize_with(batch_size, || AtomicUsize::new(0));
        for turn in &mut self.turns {
            *turn.get_mut() = 0;
        }
        let row_lanes: &[RwLock<RowLane<HIDDEN>>] = self
            .row_lanes
            .downcast_ref::<Vec<RwLock<RowLane<HIDDEN>>>>()
            .ok_or(Error::InvalidConfig {
                what: "the trainer's rows do not match the stack",
            })?;
        let (front_params, rest) = params.as_flat_mut().split_at_mut(wide.start);
        let (kernel, back) = rest.split_at_mut(wide.len());
        let (front_state, rest_state) = state.split_at(wide.start);
        let (mut kernel_state, back_state) = rest_state.split_at(wide.len());
        let mut kernel: &mut [[f32; HIDDEN]] =
            bytemuck::try_cast_slice_mut(kernel).map_err(|_| Error::Length {
                what: "wide layer's kernel",
                expected: FLAT * HIDDEN,
                found: 0,
            })?;
        let mut owned = Vec::with_capacity(threads);
        for rows in &self.rows {
            let n = rows.len().min(kernel.len());
            let (here, rest) = core::mem::take(&mut kernel).split_at_mut(n);
            let (here_state, rest_state) = kernel_state.split_at(rows.len() * HIDDEN);
            owned.push(Mutex::new((here, here_state)));
            (kernel, kernel_state) = (rest, rest_state);
        }
        let run = Run::<D, S, FLAT, HIDDEN> {
            samples,
            indices,
            seeds: &self.seeds,
            batch_size,
            scale: 1.0 / batch_size as f32,
            dropout: self.dropout,
            chunk: batch_size.div_ceil(threads),
            rows: &self.rows,
            wide,
            small: &self.small,
            owned,
            driver: Mutex::new(Driver {
                schedule,
                front: (front_params, front_state),
                back: (back, back_state),
                each,
                result: Ok(()),
            }),
            update: Mutex::new(update),
            small_steps: AtomicUsize::new(0),
            checked: AtomicUsize::new(0),
            diverged: AtomicBool::new(false),
            lanes: &self.lanes,
            row_lanes,
            states: &self.samples,
            turns: &self.turns,
            meeting: Meeting::new(threads),
        };
        // The calling thread drives: on the pool (as in an epoch) it is one
        // of the threads; from outside, the first one stands in for it.
        let driving = self.pool.current_thread_index().unwrap_or(0);
        self.pool
            .broadcast(|context| run.thread(context.index(), context.index() == driving));
        let result = run
            .driver
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .result;
        // The next run's rows follow this run's last batch's work.
        let costs: Vec<usize> = row_lanes
            .iter()
            .flat_map(|lane| {
                lane.read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .piece_costs
                    .clone()
            })
            .collect();
        self.rows = balanced_rows(&costs, threads, FLAT);
        result
    }
}

impl<S: Stack, O: Optimizer + ?Sized> Train<S::Params, O> for ParallelTrainer<S>
where
    S::Layers: Split,
{
    type Input = S::Input;

    fn set_dropout(&mut self, rate: f32) -> Result<(), Error> {
        ParallelTrainer::set_dropout(self, rate)
    }

    fn dropout(&self) -> f32 {
        self.dropout
    }

    fn train_batch<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        batch: &[u32],
        rng: &mut impl RngCore,
    ) -> Result<f32, Error> {
        ParallelTrainer::train_batch(self, params, optimizer, samples, batch, rng)
    }

    fn train_epoch<D, R, P>(
        &mut self,
        params: &mut S::Params,
        optimizer: &mut O,
        samples: &D,
        epoch: Epoch<'_, R, P>,
    ) -> Result<f32, Error>
    where
        D: Inputs<S::Input> + Sync + ?Sized,
        R: RngCore,
        P: Progress + Send,
    {
        ParallelTrainer::train_epoch(self, params, optimizer, samples, epoch)
    }

    fn evaluate<D: Inputs<S::Input> + Sync + ?Sized>(
        &mut self,
        params: &S::Params,
        samples: &D,
    ) -> Result<Evaluation, Error> {
        ParallelTrainer::evaluate(self, params, samples)
    }
}

#[cfg(test)]
mod tests {
    use super::meeting::read;
    use super::*;
    use crate::kernels::dropout::SampleStream;
    use crate::kernels::{all_finite, axpy};
    use crate::model::Params;
    use crate::stack::Zeroed;
    use crate::train::{Sgd, Trainer};
    use rand_core::SeedableRng;

    type Small = Params<8, 8, 3, 48, 20, 3>;

    fn row_lanes(
        parallel: &ParallelTrainer<crate::stack::Book<8, 8, 3, 48, 20, 3>>,
    ) -> &[RwLock<RowLane<20>>] {
        parallel
            .row_lanes
            .downcast_ref::<Vec<RwLock<RowLane<20>>>>()
            .unwrap()
    }

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

    /// The step, with dense1 split by row across the threads, is bit for bit
    /// the step of the samples' gradients summed one after another for
    /// dense1's kernel, whatever the thread count; with one thread every
    /// gradient is the one-thread pass's to the bit.
    #[test]
    fn the_step_matches_the_per_sample_sum_bit_for_bit() {
        let data = data();
        let mut params: std::boxed::Box<Small> = bytemuck::zeroed_box();
        params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
        params.conv_bias = [0.1; 3];
        let batch: Vec<u32> = (0..24).rev().collect();
        for threads in [1, 2, 3, 5] {
            let mut parallel =
                ParallelTrainer::<crate::stack::Book<8, 8, 3, 48, 20, 3>>::new(threads).unwrap();
            parallel.set_dropout(0.5).unwrap();
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
            let lanes = row_lanes(&parallel).iter().map(read);
            assert!(
                lanes.into_iter().all(|lane| lane.sums_certainly_finite()),
                "the fast path ran"
            );
            // The same samples one by one, with the same dropout masks.
            let mut alone: std::boxed::Box<Trainer<crate::stack::Book<8, 8, 3, 48, 20, 3>>> =
                bytemuck::zeroed_box();
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
                // The step of the other parameters runs on the slices before
                // and after dense1's kernel, whose last few values take the
                // scalar (unfused) path: the same gradient stepped so.
                let grads = alone.gradients().as_flat();
                let dense1 = 30..30 + 48 * 20;
                let mut sliced = params.clone();
                for range in [0..dense1.start, dense1.clone(), dense1.end..grads.len()] {
                    axpy(-0.1, &grads[range.clone()], &mut sliced.as_flat_mut()[range]);
                }
                assert_eq!(bits(stepped.as_flat()), bits(sliced.as_flat()));
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

    /// Inputs so large that the rows' sums could overflow: the rows are
    /// formed and checked before the step, which then is the same.
    #[test]
    fn rows_that_might_overflow_are_formed_first_with_the_same_result() {
        let data = data();
        let mut params: std::boxed::Box<Small> = bytemuck::zeroed_box();
        params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
        params.conv_bias = [1e33; 3];
        // dense1's weights shrunk as much, so that the logits and the loss
        // stay moderate: only the kernel gradient's sums are that large.
        for w in params.dense1_kernel.as_flattened_mut() {
            *w *= 1e-33;
        }
        let batch: Vec<u32> = (0..12).collect();
        for threads in [1, 2, 3] {
            let mut parallel =
                ParallelTrainer::<crate::stack::Book<8, 8, 3, 48, 20, 3>>::new(threads).unwrap();
            parallel.set_dropout(0.0).unwrap();
            let mut stepped = params.clone();
            let mut rng = rand_pcg::Pcg32::seed_from_u64(9);
            let mut sgd = Sgd::new(0.1).unwrap();
            parallel
                .train_batch(&mut *stepped, &mut sgd, &data[..], &batch, &mut rng)
                .unwrap();
            let lanes: Vec<_> = row_lanes(&parallel).iter().map(read).collect();
            assert!(!lanes.iter().all(|lane| lane.sums_certainly_finite()));
            assert!(lanes.iter().any(|lane| !lane.formed.is_empty()));
            let mut alone: std::boxed::Box<Trainer<crate::stack::Book<8, 8, 3, 48, 20, 3>>> =
                bytemuck::zeroed_box();
            for &index in &batch {
                let (image, label) = &data[index as usize];
                let scale = 1.0 / batch.len() as f32;
                alone.accumulate(&params, image, *label, scale, &mut rng).unwrap();
            }
            let mut expected = params.clone();
            sgd.step(expected.as_flat_mut(), alone.gradients().as_flat())
                .unwrap();
            let kernel = |p: &Small| bits(p.dense1_kernel.as_flattened());
            assert_eq!(kernel(&stepped), kernel(&expected), "{threads} threads");
            assert!(all_finite(stepped.as_flat()));
        }
    }

    /// Training with rows owned one way or another (rebalanced after every
    /// batch) gives the same parameters, bit for bit.
    #[test]
    fn who_owns_a_row_changes_no_result() {
        let data = data();
        let run = |rows: Option<[Range<usize>; 2]>| {
            let mut params: std::boxed::Box<Small> = bytemuck::zeroed_box();
            params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
            let mut parallel = ParallelTrainer::<crate::stack::Book<8, 8, 3, 48, 20, 3>>::new(2).unwrap();
            parallel.set_dropout(0.5).unwrap();
            let mut rng = rand_pcg::Pcg32::seed_from_u64(9);
            let mut adam: std::boxed::Box<crate::train::Adam<Small>> = bytemuck::zeroed_box();
            adam.configure(crate::train::AdamConfig::KERAS).unwrap();
            for batch in [[0u32, 5, 9, 2, 7, 11, 3, 20], [1, 4, 6, 8, 10, 12, 14, 16]] {
                if let Some(rows) = rows.clone() {
                    parallel.rows = rows.to_vec();
                }
                parallel
                    .train_batch(&mut *params, &mut *adam, &data[..], &batch, &mut rng)
                    .unwrap();
            }
            bits(params.as_flat())
        };
        let balanced = run(None);
        assert_eq!(balanced, run(Some([0..16, 16..48])));
        assert_eq!(balanced, run(Some([0..48, 48..48])));
        assert_eq!(balanced, run(Some([0..0, 0..48])));
    }

    crate::stack! {
        /// Two channels, two convolutions (the second unpooled), dropout
        /// before both dense layers.
        struct Two: [8, 8, 2] => {
            Conv2d(4, 3), Relu, MaxPool2, Conv2d(6, 3), Relu,
            Flatten, Dropout, Dense(12), Relu, Dropout, Dense(3)
        }
    }

    /// On a stack of two convolutions and two dropouts, the step is the sum
    /// of the samples' gradients as `Trainer` forms them with the same
    /// masks: the wide layer's kernel to the bit, the rest within rounding.
    #[test]
    fn a_two_convolution_stack_steps_as_the_per_sample_sum() {
        type Params = <Two as Stack>::Params;
        let mut r = rand_pcg::Pcg32::seed_from_u64(4);
        let data: Vec<([[[f32; 2]; 8]; 8], usize)> = (0..12)
            .map(|i| {
                let mut input = [[[0.0f32; 2]; 8]; 8];
                for v in input.as_flattened_mut().as_flattened_mut() {
                    *v = (r.next_u32() % 100) as f32 / 100.0;
                }
                (input, i % 3)
            })
            .collect();
        let mut params = <Params as Zeroed>::ZERO;
        Two::init_glorot(&mut params, &mut r);
        for b in params.as_flat_mut().iter_mut().filter(|b| **b == 0.0) {
            *b = 0.05;
        }
        let batch: Vec<u32> = (0..12).rev().collect();
        let wide = 4 * 3 * 3 * 2 + 4 + 3 * 3 * 4 * 6 + 6;
        let wide = wide..wide + 96 * 12;
        for threads in [1, 2, 3] {
            let mut parallel = ParallelTrainer::<Two>::new(threads).unwrap();
            parallel.set_dropout(0.3).unwrap();
            let mut stepped = params;
            let mut rng = rand_pcg::Pcg32::seed_from_u64(9);
            parallel
                .train_batch(
                    &mut stepped,
                    &mut Sgd::new(0.1).unwrap(),
                    &data[..],
                    &batch,
                    &mut rng,
                )
                .unwrap();
            let mut alone = Trainer::<Two>::boxed();
            alone.set_dropout(0.3).unwrap();
            let scale = 1.0 / batch.len() as f32;
            for (&index, &seed) in batch.iter().zip(&parallel.seeds) {
                let (input, label) = &data[index as usize];
                alone
                    .accumulate(&params, input, *label, scale, &mut SampleStream(seed))
                    .unwrap();
            }
            let mut expected = params;
            Sgd::new(0.1)
                .unwrap()
                .step(expected.as_flat_mut(), alone.gradients().as_flat())
                .unwrap();
            assert_eq!(
                bits(&stepped[wide.clone()]),
                bits(&expected[wide.clone()]),
                "{threads} threads"
            );
            let most = stepped
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(most < 1e-6, "{threads} threads: {most}");
            assert_ne!(bits(&stepped), bits(&params), "the step moved the parameters");
        }
    }
}
