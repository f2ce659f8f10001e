//! Data-parallel training on the host. A mini-batch is shared out two ways:
//! by sample for the convolution and the last layer, and by row of dense1's
//! kernel for dense1 itself (forward, backward and the optimizer step). So a
//! thread keeps to its own rows of the one big layer, which hold all but
//! 1,210 of the default model's parameters: they and their optimizer state
//! stay in one core's caches, and what the threads hand each other is a few
//! kilobytes of activations per sample instead. (Sharing every weight out by
//! sample, each core's step had first to take back the lines the other core
//! had read: on a two-core virtual machine that took the `adam` step from 180
//! to 450 microseconds.) Every sum is taken in a fixed order, so a run is the
//! same for the same seed and thread count.

use crate::data::Samples;
use crate::kernels::conv::conv_relu_pool_backward_listed;
use crate::kernels::dense::{accumulate_rows, nonzero_positions, row_input_grads, LineRow, Outer, Terms};
use crate::kernels::{all_finite, axpy, conv_relu_pool, dense, dense_backward, relu, softmax_cross_entropy};
use crate::model::{ParamBuffer, Params};
use crate::train::dropout::{check_rate, dropout, SampleStream};
use crate::train::trainer::shuffled_batches;
use crate::train::{Optimizer, Progress, Schedule, State, Update};
use crate::Error;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use rand_core::RngCore;
use std::boxed::Box;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::vec::Vec;

/// Parameters per piece of the optimizer step outside dense1's kernel (a
/// multiple of the SIMD width, so each piece runs the same vector code as
/// the whole would).
const PIECE: usize = 16 * 1024;

/// Rows of dense1's kernel per piece of the step: small enough for the
/// piece's gradient, formed in the step, to stay in L1. Each thread's rows
/// are whole pieces.
const ROWS_PER_PIECE: usize = 16;

/// Rows of dense1's kernel whose terms are placed at a time when regrouping:
/// their places to write (two cache lines a row) stay in the first-level
/// cache, and every sample's positions are looked through once per block.
const REGROUP_ROWS: usize = 64;

/// Where dense1's kernel lies in the flat view of [`Params`] (`repr(C)`: the
/// convolution's kernel and bias come first).
const fn dense1_kernel_range<const K: usize, const FLAT: usize, const HIDDEN: usize>(
) -> core::ops::Range<usize> {
    10 * K..10 * K + FLAT * HIDDEN
}

/// The rows of dense1's kernel thread `thread` of `threads` owns in its
/// first run: whole pieces, as even a share as they allow.
fn owned_rows(thread: usize, threads: usize, rows: usize) -> Range<usize> {
    let per_thread = rows.div_ceil(ROWS_PER_PIECE).div_ceil(threads.max(1)) * ROWS_PER_PIECE;
    (thread * per_thread).min(rows)..((thread + 1) * per_thread).min(rows)
}

/// The threads' rows for the next run, when the pieces of [`ROWS_PER_PIECE`]
/// rows cost `costs` (in order) in the last batch: whole pieces, the cost
/// shared out as evenly as they allow. Which thread owns a row changes no
/// result, only the time.
fn balanced_rows(costs: &[usize], threads: usize, rows: usize) -> Vec<Range<usize>> {
    let total: usize = costs.iter().sum();
    let mut ranges = Vec::with_capacity(threads);
    let (mut start, mut piece, mut done) = (0, 0, 0);
    for thread in 1..=threads {
        // Up to the piece that reaches this thread's share, or the one before
        // it if that comes closer.
        let target = total * thread / threads.max(1);
        while done < target {
            let Some(&cost) = costs.get(piece) else {
                break;
            };
            if (done + cost).saturating_sub(target) > target - done {
                break;
            }
            done += cost;
            piece += 1;
        }
        let end = if thread == threads {
            rows
        } else {
            (piece * ROWS_PER_PIECE).min(rows)
        };
        ranges.push(start..end);
        start = end;
    }
    ranges
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a sample's own thread keeps of it from one pass to the next.
struct Sample<const H: usize, const W: usize, const FLAT: usize, const HIDDEN: usize> {
    image: [[f32; W]; H],
    label: usize,
    /// Dense1's input: the pooled map after dropout.
    pooled: [f32; FLAT],
    /// The winner of each pooling window.
    argmax: [u8; FLAT],
    /// The positions of `pooled`'s non-zero cells, in increasing order: the
    /// first `active_len`.
    active: [u16; FLAT],
    active_len: usize,
    /// Dense1's sums, which the rows' owners add their terms to in turn.
    sums: [f32; HIDDEN],
    /// The gradient at dense1's outputs (the loss scale included).
    hidden_grad: [f32; HIDDEN],
}

impl<const H: usize, const W: usize, const FLAT: usize, const HIDDEN: usize> Sample<H, W, FLAT, HIDDEN> {
    fn boxed() -> Box<Self> {
        Box::new(Self {
            image: [[0.0; W]; H],
            label: 0,
            pooled: [0.0; FLAT],
            argmax: [0; FLAT],
            active: [0; FLAT],
            active_len: 0,
            sums: [0.0; HIDDEN],
            hidden_grad: [0.0; HIDDEN],
        })
    }

    /// The positions of dense1's non-zero inputs.
    fn active(&self) -> &[u16] {
        self.active.get(..self.active_len).unwrap_or_default()
    }

    /// The positions of dense1's non-zero inputs among `rows`.
    fn active_in(&self, rows: &Range<usize>) -> &[u16] {
        let active = self.active();
        let start = active.partition_point(|&i| usize::from(i) < rows.start);
        let end = active.partition_point(|&i| usize::from(i) < rows.end);
        active.get(start..end).unwrap_or_default()
    }
}

/// What a thread keeps of its share of the batch by sample.
struct Lane<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
> {
    /// The gradient of the thread's samples' losses, but for dense1's
    /// kernel, which the rows' owners form.
    grads: Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>,
    /// One sample's gradient at the pooled map at a time.
    pooled_grad: Box<[f32; FLAT]>,
    loss: f32,
    /// The first error the thread's samples met.
    error: Option<Error>,
    /// Whether the thread had samples in the batch.
    used: bool,
}

impl<
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Lane<H, W, K, FLAT, HIDDEN, CLASSES>
{
    fn new() -> Self {
        Self {
            grads: bytemuck::zeroed_box(),
            pooled_grad: bytemuck::zeroed_box(),
            loss: 0.0,
            error: None,
            used: false,
        }
    }
}

/// A thread's share of the batch by row of dense1's kernel: what backward
/// gives its rows, and their terms regrouped by row (a counting sort): per
/// row, the samples whose input there is not zero, in batch order.
struct RowLane<const HIDDEN: usize> {
    /// The gradient at each sample's non-zero inputs in these rows, sample
    /// after sample.
    input_grads: Vec<f32>,
    /// Where each sample's values end in `input_grads`.
    ends: Vec<usize>,
    /// Where each term's input gradient goes in `input_grads`.
    slots: Vec<u32>,
    /// Row `first + i`'s terms are `terms[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    /// `(sample, input)`, samples numbered through the whole batch.
    terms: Vec<(u32, f32)>,
    /// Every sample's gradient at dense1's outputs, in batch order.
    hidden_grads: Vec<LineRow<HIDDEN>>,
    /// What [`bounds`](Self::bounds) found in the last batch.
    bounds: Option<(f32, f32)>,
    /// The rows' gradient, when it had to be formed and checked before the
    /// step; empty otherwise.
    formed: Vec<[f32; HIDDEN]>,
    /// What each piece of the rows cost in the last batch, in the units of
    /// [`measure_pieces`](Self::measure_pieces).
    piece_costs: Vec<usize>,
}

impl<const HIDDEN: usize> RowLane<HIDDEN> {
    const fn new() -> Self {
        Self {
            input_grads: Vec::new(),
            ends: Vec::new(),
            starts: Vec::new(),
            slots: Vec::new(),
            terms: Vec::new(),
            hidden_grads: Vec::new(),
            bounds: None,
            formed: Vec::new(),
            piece_costs: Vec::new(),
        }
    }

    /// Sets each piece's cost: its terms (which dense1's forward pass, its
    /// backward pass and the gradient's rows each take one at a time) and
    /// six for each row (reading it in the backward pass and stepping it;
    /// with two, the first of two threads took 10-25 us longer a batch in
    /// the backward pass and the second waited for it).
    fn measure_pieces(&mut self) {
        self.piece_costs.clear();
        let rows = self.starts.len().saturating_sub(1);
        for first in (0..rows).step_by(ROWS_PER_PIECE) {
            let last = (first + ROWS_PER_PIECE).min(rows);
            let terms = match (self.starts.get(first), self.starts.get(last)) {
                (Some(a), Some(b)) => b - a,
                _ => 0,
            };
            self.piece_costs.push(terms + 6 * (last - first));
        }
    }

    /// The gradient at sample `sample`'s non-zero inputs in these rows.
    fn input_grads_of(&self, sample: usize) -> &[f32] {
        let start = sample
            .checked_sub(1)
            .and_then(|s| self.ends.get(s))
            .copied()
            .unwrap_or(0);
        let end = self.ends.get(sample).copied().unwrap_or(start);
        self.input_grads.get(start..end).unwrap_or_default()
    }

    /// Regroups the non-zero inputs at `rows` of each sample (`(positions,
    /// inputs)`, in batch order) by row, given the samples' output gradients;
    /// then bounds the rows' sums and measures the pieces.
    ///
    /// A counting sort, its terms placed [`REGROUP_ROWS`] rows at a time: every
    /// sample's terms in the first rows, then in the next, so that the places
    /// written at a time stay in the first-level cache. (Placing all of a
    /// sample's terms before the next sample's wrote all over a megabyte: 14
    /// cycles a term. A scan by row, every sample's input at one row after
    /// another, touched a page per sample at each row: 7 cycles an input.)
    fn regroup<'a, const FLAT: usize>(
        &mut self,
        rows: &Range<usize>,
        samples: impl Iterator<Item = (&'a [u16], &'a [f32; FLAT])>,
    ) {
        let samples: Vec<_> = samples.collect();
        let row = |i: u16| usize::from(i).checked_sub(rows.start);
        // Row `r` begins at `starts[r]`; each sample's input gradients
        // follow the ones before it.
        self.starts.clear();
        self.starts.resize(rows.len() + 1, 0);
        self.ends.clear();
        let mut count = 0;
        for (positions, _) in &samples {
            for &i in *positions {
                if let Some(n) = row(i).and_then(|r| self.starts.get_mut(r + 1)) {
                    *n += 1;
                }
            }
            count += positions.len();
            self.ends.push(count);
        }
        for r in 1..self.starts.len() {
            self.starts[r] += self.starts[r - 1];
        }
        // Every place is written below: only places the last batch did not
        // have are cleared first (clearing all of them took 2% of an epoch).
        let len = self.starts.last().copied().unwrap_or(0);
        self.terms.truncate(len);
        self.terms.resize(len, (0, 0.0));
        self.slots.truncate(len);
        self.slots.resize(len, 0);
        // Where each row's next term goes, and how many of each sample's
        // positions are placed.
        let mut next_in_row = self.starts.get(..rows.len()).unwrap_or_default().to_vec();
        let mut placed = std::vec![0; samples.len()];
        let (terms, slots) = (&mut self.terms[..], &mut self.slots[..]);
        for block in (rows.start..rows.end).step_by(REGROUP_ROWS) {
            let end = (block + REGROUP_ROWS).min(rows.end);
            let places = samples.iter().zip(&mut placed).zip(&self.ends);
            for (sample, (((positions, inputs), placed), &sample_end)) in places.enumerate() {
                let first_slot = sample_end - positions.len();
                for &i in positions.get(*placed..).unwrap_or_default() {
                    if usize::from(i) >= end {
                        break;
                    }
                    let x = inputs.get(usize::from(i)).copied().unwrap_or(0.0);
                    if let Some(next) = row(i).and_then(|r| next_in_row.get_mut(r)) {
                        if let (Some(term), Some(slot)) = (terms.get_mut(*next), slots.get_mut(*next)) {
                            (*term, *slot) = ((sample as u32, x), (first_slot + *placed) as u32);
                        }
                        *next += 1;
                    }
                    *placed += 1;
                }
            }
        }
        self.bounds = self.bounds();
        self.measure_pieces();
    }

    /// The largest input and the sum over samples of each one's largest
    /// output gradient, or `None` if an output gradient is NaN or infinite:
    /// what bounds the sums the terms form.
    fn bounds(&self) -> Option<(f32, f32)> {
        let inputs = self.terms.iter().map(|&(_, x)| x.abs()).fold(0.0f32, f32::max);
        let mut outputs = 0.0f32;
        for LineRow(hidden_grad) in &self.hidden_grads {
            if !all_finite(hidden_grad) {
                return None;
            }
            outputs += hidden_grad.iter().map(|g| g.abs()).fold(0.0f32, f32::max);
        }
        Some((inputs, outputs))
    }

    /// Whether every row the terms form is certainly finite: every input and
    /// output gradient is, and no sum can reach overflow, its size being at
    /// most the largest input times the sum over samples of each one's
    /// largest output gradient (with room to spare for rounding).
    fn sums_certainly_finite(&self) -> bool {
        self.bounds
            .is_some_and(|(inputs, outputs)| inputs.is_finite() && inputs * outputs < 1e30)
    }

    /// Forms the lane's rows `first..first + rows.len()` of the kernel
    /// gradient: each the sum of its terms in batch order, as adding the
    /// samples' outer products one after another would form it.
    fn form(&self, first: usize, rows: &mut [[f32; HIDDEN]]) {
        for (i, row) in (first..).zip(rows) {
            *row = [0.0; HIDDEN];
            let terms = self.starts.get(i..i + 2).and_then(|s| self.terms.get(s[0]..s[1]));
            let outer = Outer {
                terms: terms.unwrap_or_default(),
                grads: &self.hidden_grads,
            };
            accumulate_rows::<false, HIDDEN>(&outer, row);
        }
    }
}

/// Where a batch's threads wait for each other between passes: spinning,
/// since the waits are a few microseconds, and yielding after a while, for
/// more threads than cores.
struct Meeting {
    threads: usize,
    arrived: AtomicUsize,
    passed: AtomicUsize,
    /// Set when a thread panics, so that the others stop waiting for it.
    broken: AtomicBool,
}

impl Meeting {
    const fn new(threads: usize) -> Self {
        Self {
            threads,
            arrived: AtomicUsize::new(0),
            passed: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Returns once every thread has called it.
    fn wait(&self) {
        let round = self.passed.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.passed.fetch_add(1, Ordering::Release);
        } else {
            self.until(|| self.passed.load(Ordering::Acquire) != round);
        }
    }

    /// Returns once `done` does.
    fn until(&self, done: impl Fn() -> bool) {
        let mut spins = 0u32;
        while !done() {
            assert!(
                !self.broken.load(Ordering::Relaxed),
                "another training thread panicked"
            );
            if spins < 4096 {
                spins += 1;
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Marks the meeting broken if its thread unwinds.
struct Attendance<'a>(&'a Meeting);

impl Drop for Attendance<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Relaxed);
        }
    }
}

/// Parallel training that splits each batch by sample and dense1's kernel
/// by row across its threads, which hand each other the activations in
/// between. Each sample's dropout mask comes from its own seed, drawn in
/// batch order from the caller's generator, so the masks do not depend on
/// which thread handles the sample.
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
    dropout: f32,
    lanes: Vec<RwLock<Lane<H, W, K, FLAT, HIDDEN, CLASSES>>>,
    row_lanes: Vec<RwLock<RowLane<HIDDEN>>>,
    /// The batch's samples, in batch order.
    samples: Vec<RwLock<Box<Sample<H, W, FLAT, HIDDEN>>>>,
    /// Where each sample is: see [`Run::turns`].
    turns: Vec<AtomicUsize>,
    /// The rows of dense1's kernel each thread owns.
    rows: Vec<Range<usize>>,
    /// The parameters but for dense1's kernel, as the threads read them.
    small: RwLock<Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>>,
    seeds: Vec<u64>,
    pool: rayon::ThreadPool,
}

/// A run of batches as every thread sees it: the passes of each batch, and
/// its step, which each thread takes for its own rows of dense1's kernel.
struct Run<
    'a,
    S: ?Sized,
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
> {
    samples: &'a S,
    /// The samples of the run, batch after batch, and each one's seed.
    indices: &'a [u32],
    seeds: &'a [u64],
    batch_size: usize,
    scale: f32,
    dropout: f32,
    /// Samples per thread.
    chunk: usize,
    /// The rows of dense1's kernel each thread owns.
    rows: &'a [Range<usize>],
    /// The parameters but for dense1's kernel, as the driver last stepped
    /// them (dense1's kernel here is not used).
    small: &'a RwLock<Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>>,
    /// Each thread's rows of dense1's kernel, and their optimizer state.
    owned: Vec<Mutex<Owned<'a, HIDDEN>>>,
    /// What only the thread that called for the run uses.
    driver: Mutex<Driver<'a>>,
    /// The update of the next step, as the schedule will give it.
    update: Mutex<Result<Update, Error>>,
    /// How many batches' small parameters the driver has stepped (the
    /// next batch starts from them).
    small_steps: AtomicUsize,
    /// How many times a thread has read all it checks a batch by: the next
    /// batch waits for every thread to have done so.
    checked: AtomicUsize,
    /// Set when a thread found rows of dense1's kernel gradient, formed
    /// before the step, NaN or infinite.
    diverged: AtomicBool,
    lanes: &'a [RwLock<Lane<H, W, K, FLAT, HIDDEN, CLASSES>>],
    row_lanes: &'a [RwLock<RowLane<HIDDEN>>],
    states: &'a [RwLock<Box<Sample<H, W, FLAT, HIDDEN>>>],
    /// Where each sample is: 0 until its thread has read and convolved it,
    /// then 1 + the number of rows' owners that have added their terms to
    /// its sums (which they do in thread order). Waiting on these rather
    /// than for every thread, a thread goes on to the next pass with the
    /// samples that are ready.
    turns: &'a [AtomicUsize],
    meeting: Meeting,
}

/// A thread's rows of dense1's kernel through a run, and their optimizer
/// state.
type Owned<'a, const HIDDEN: usize> = (&'a mut [[f32; HIDDEN]], State<'a>);

/// What the thread that called for a run keeps to itself: the optimizer's
/// schedule, the small parameters with their state, and where the results go.
struct Driver<'a> {
    schedule: Schedule<'a>,
    front: (&'a mut [f32], State<'a>),
    back: (&'a mut [f32], State<'a>),
    /// Called with each batch's number and loss once it has stepped.
    each: &'a mut (dyn FnMut(usize, f32) + Send),
    result: Result<(), Error>,
}

impl<
        S: Samples<H, W> + Sync + ?Sized,
        const H: usize,
        const W: usize,
        const K: usize,
        const FLAT: usize,
        const HIDDEN: usize,
        const CLASSES: usize,
    > Run<'_, S, H, W, K, FLAT, HIDDEN, CLASSES>
{
    /// Thread `thread`'s part of every batch, meeting the others in
    /// between; `driving` for the thread that called for the run.
    fn thread(&self, thread: usize, driving: bool) {
        let _attendance = Attendance(&self.meeting);
        let mut owned = self.owned.get(thread).map(lock);
        let mut driver = driving.then(|| lock(&self.driver));
        let mut small = Vec::new();
        let threads = self.lanes.len();
        for k in 0..self.indices.len() / self.batch_size.max(1) {
            // The driver writes the next batch's update once it has stepped
            // this one's small parameters: read it first.
            let update = *lock(&self.update);
            let rows: &[[f32; HIDDEN]] = owned.as_deref().map_or(&[], |(rows, _)| rows);
            self.convolve(thread, k);
            self.dense1_forward(thread, rows);
            self.head(thread);
            self.meeting.wait();
            self.dense1_backward(thread, rows);
            self.meeting.wait();
            self.convolution_backward(thread);
            self.meeting.wait();
            // Every thread checks the batch the same way and comes to the
            // same decision, so none waits for another to make it.
            let checked = update.and_then(|update| Ok((update, self.check(thread, &mut small)?)));
            let (update, loss) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    if let Some(driver) = driver.as_deref_mut() {
                        driver.result = Err(e);
                    }
                    return;
                }
            };
            if let Some(driver) = driver.as_deref_mut() {
                self.step_small(driver, &small, loss, k);
            }
            if let Some((rows, state)) = owned.as_deref_mut() {
                self.step_rows(thread, update, rows, state.reborrow());
            }
            // The next batch starts from the stepped small parameters, and
            // only once every thread has read what its check needs.
            self.meeting.until(|| {
                self.small_steps.load(Ordering::Acquire) > k
                    && self.checked.load(Ordering::Acquire) >= (k + 1) * threads
            });
        }
    }

    /// The batch positions of thread `thread`'s samples.
    fn own_samples(&self, thread: usize) -> Range<usize> {
        let n = self.batch_size;
        (thread * self.chunk).min(n)..((thread + 1) * self.chunk).min(n)
    }

    fn rows(&self, thread: usize) -> Range<usize> {
        self.rows.get(thread).cloned().unwrap_or(FLAT..FLAT)
    }

    /// Returns once sample `position` has reached `turn`.
    fn wait_for(&self, position: usize, turn: usize) {
        if let Some(at) = self.turns.get(position) {
            self.meeting.until(|| at.load(Ordering::Acquire) >= turn);
        }
    }

    /// Marks sample `position` as having reached `turn`.
    fn reached(&self, position: usize, turn: usize) {
        if let Some(at) = self.turns.get(position) {
            at.store(turn, Ordering::Release);
        }
    }

    /// The batch's samples, in batch order, read-locked.
    fn read_all(&self) -> Vec<RwLockReadGuard<'_, Box<Sample<H, W, FLAT, HIDDEN>>>> {
        self.states.iter().take(self.batch_size).map(read).collect()
    }

    /// Reads the thread's samples, then convolves, pools, drops out and lists
    /// dense1's non-zero inputs. A thread stops at its first error, as if
    /// the rest of its samples were blank.
    fn convolve(&self, thread: usize, k: usize) {
        let Some(lane) = self.lanes.get(thread) else {
            return;
        };
        let mut lane = write(lane);
        let lane = &mut *lane;
        let own = self.own_samples(thread);
        lane.used = !own.is_empty();
        lane.loss = 0.0;
        lane.error = None;
        let g = &mut lane.grads;
        g.conv_kernel = [[[0.0; K]; 3]; 3];
        g.conv_bias = [0.0; K];
        g.dense1_bias = [0.0; HIDDEN];
        g.dense2_kernel = [[0.0; CLASSES]; HIDDEN];
        g.dense2_bias = [0.0; CLASSES];
        let p = read(self.small);
        let first = k * self.batch_size;
        // The images first, all of them: their reads miss the caches, and
        // one after another they overlap, where between convolutions they
        // would wait in turn.
        for position in own.clone() {
            let (Some(&index), Some(sample)) =
                (self.indices.get(first + position), self.states.get(position))
            else {
                continue;
            };
            let mut sample = write(sample);
            sample.active_len = 0;
            sample.label = 0;
            sample.sums = p.dense1_bias;
            if lane.error.is_none() {
                match self.samples.read(index as usize, &mut sample.image) {
                    Ok(label) => sample.label = label,
                    Err(e) => lane.error = Some(e),
                }
            }
        }
        for position in own {
            let (Some(&seed), Some(sample)) = (self.seeds.get(first + position), self.states.get(position))
            else {
                continue;
            };
            if lane.error.is_none() {
                let mut sample = write(sample);
                if let Err(e) = self.convolve_one(&p, seed, &mut sample) {
                    lane.error = Some(e);
                }
            }
            self.reached(position, 1);
        }
    }

    fn convolve_one(
        &self,
        p: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        seed: u64,
        sample: &mut Sample<H, W, FLAT, HIDDEN>,
    ) -> Result<(), Error> {
        if !all_finite(sample.image.as_flattened()) {
            return Err(Error::NonFinite { what: "image" });
        }
        conv_relu_pool(
            &sample.image,
            &p.conv_kernel,
            &p.conv_bias,
            &mut sample.pooled,
            Some(&mut sample.argmax),
        );
        if self.dropout > 0.0 {
            dropout(&mut sample.pooled, self.dropout, &mut SampleStream(seed));
        }
        sample.active_len = nonzero_positions(&sample.pooled, &mut sample.active);
        Ok(())
    }

    /// Adds the terms of the thread's rows to every sample's sums at dense1's
    /// outputs, after the owners of the rows before them: each sum takes its
    /// terms in the order one thread would.
    fn dense1_forward(&self, thread: usize, kernel: &[[f32; HIDDEN]]) {
        let rows = self.rows(thread);
        for (position, sample) in self.states.iter().take(self.batch_size).enumerate() {
            self.wait_for(position, thread + 1);
            let mut sample = write(sample);
            let sample = &mut **sample;
            let listed = OwnRows {
                input: &sample.pooled,
                active: sample.active_in(&rows),
                rows: kernel,
                first: rows.start,
            };
            let mut sums = sample.sums;
            accumulate_rows::<true, HIDDEN>(&listed, &mut sums);
            sample.sums = sums;
            self.reached(position, thread + 2);
        }
    }

    /// ReLU, dense2, the loss and backward to dense1's outputs, for the
    /// thread's samples, each as soon as its sums are whole.
    fn head(&self, thread: usize) {
        let Some(lane) = self.lanes.get(thread) else {
            return;
        };
        let mut lane = write(lane);
        let Lane {
            grads: g,
            loss,
            error,
            ..
        } = &mut *lane;
        let p = read(self.small);
        let whole = self.lanes.len() + 1;
        for position in self.own_samples(thread) {
            let Some(sample) = self.states.get(position) else {
                continue;
            };
            self.wait_for(position, whole);
            let mut sample = write(sample);
            let mut hidden = sample.sums;
            relu(&mut hidden);
            let mut logits = [0.0; CLASSES];
            dense(&hidden, &p.dense2_kernel, &p.dense2_bias, &mut logits);
            let mut logits_grad = [0.0; CLASSES];
            match softmax_cross_entropy(&logits, sample.label, self.scale, &mut logits_grad) {
                Ok(sample_loss) => *loss += sample_loss,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            dense_backward(
                &hidden,
                &p.dense2_kernel,
                &logits_grad,
                &mut g.dense2_kernel,
                &mut g.dense2_bias,
                Some(&mut sample.hidden_grad),
            );
            axpy(1.0, &sample.hidden_grad, &mut g.dense1_bias);
        }
    }

    /// The gradient at every sample's non-zero inputs in the thread's rows,
    /// and the rows' terms regrouped for the step.
    fn dense1_backward(&self, thread: usize, kernel: &[[f32; HIDDEN]]) {
        let Some(own) = self.row_lanes.get(thread) else {
            return;
        };
        let states = self.read_all();
        let mut own = write(own);
        let own = &mut *own;
        let rows = self.rows(thread);
        let samples = || states.iter().map(|sample| &***sample);
        own.formed.clear();
        own.hidden_grads.clear();
        own.hidden_grads
            .extend(samples().map(|sample| LineRow(sample.hidden_grad)));
        own.regroup(
            &rows,
            samples().map(|sample| (sample.active_in(&rows), &sample.pooled)),
        );
        // Kept inputs were scaled by 1 / (1 - rate) on the way forward.
        let keep_scale = (self.dropout > 0.0).then(|| 1.0 / (1.0 - self.dropout));
        let RowLane {
            input_grads,
            slots,
            starts,
            terms,
            hidden_grads,
            ..
        } = own;
        // Every slot is written below (the terms' slots cover them).
        input_grads.truncate(terms.len());
        input_grads.resize(terms.len(), 0.0);
        for (row, bounds) in kernel.iter().zip(starts.windows(2)) {
            let (Some(terms), Some(slots)) =
                (terms.get(bounds[0]..bounds[1]), slots.get(bounds[0]..bounds[1]))
            else {
                continue;
            };
            let mut slots = slots.iter();
            row_input_grads(row, terms, hidden_grads, |grad| {
                let slot = slots.next().and_then(|&slot| input_grads.get_mut(slot as usize));
                if let Some(slot) = slot {
                    *slot = keep_scale.map_or(grad, |keep_scale| grad * keep_scale);
                }
            });
        }
    }

    /// Backward through pooling and the convolution for the thread's
    /// samples, from the gradients the rows' owners found.
    fn convolution_backward(&self, thread: usize) {
        let Some(lane) = self.lanes.get(thread) else {
            return;
        };
        let row_lanes: Vec<_> = self.row_lanes.iter().map(read).collect();
        let mut lane = write(lane);
        let Lane {
            grads: g,
            pooled_grad,
            ..
        } = &mut *lane;
        for position in self.own_samples(thread) {
            let Some(sample) = self.states.get(position) else {
                continue;
            };
            let sample = read(sample);
            **pooled_grad = [0.0; FLAT];
            for (owner, row_lane) in row_lanes.iter().enumerate() {
                let positions = sample.active_in(&self.rows(owner));
                for (&i, &grad) in positions.iter().zip(row_lane.input_grads_of(position)) {
                    if let Some(slot) = pooled_grad.get_mut(usize::from(i)) {
                        *slot = grad;
                    }
                }
            }
            conv_relu_pool_backward_listed(
                &sample.image,
                &sample.pooled,
                sample.active(),
                &sample.argmax,
                pooled_grad,
                &mut g.conv_kernel,
                &mut g.conv_bias,
            );
        }
    }

    /// The batch's mean loss, with the small gradients summed in thread order
    /// (whatever order the threads finished in) into `small`, the front and
    /// back of the flat parameters' view; and, if the rows of dense1's
    /// kernel gradient could be NaN or infinite, those of the thread's rows
    /// formed and checked, with the other threads'.
    fn check(&self, thread: usize, small: &mut Vec<f32>) -> Result<f32, Error> {
        let dense1 = dense1_kernel_range::<K, FLAT, HIDDEN>();
        let lanes: Vec<_> = self.lanes.iter().map(read).filter(|lane| lane.used).collect();
        if lanes.is_empty() {
            return Err(Error::Empty { what: "batch" });
        }
        let mut loss_sum = 0.0f32;
        small.clear();
        for (i, lane) in lanes.iter().enumerate() {
            if let Some(e) = lane.error {
                return Err(e);
            }
            let flat = lane.grads.as_flat();
            let parts = [flat.get(..dense1.start), flat.get(dense1.end..)];
            let grads = parts.into_iter().flatten().flatten();
            if i == 0 {
                loss_sum = lane.loss;
                small.extend(grads);
            } else {
                loss_sum += lane.loss;
                let mid = dense1.start.min(small.len());
                let (front, back) = small.split_at_mut(mid);
                for (sum, part) in [front, back].into_iter().zip(parts) {
                    axpy(1.0, part.unwrap_or_default(), sum);
                }
            }
        }
        drop(lanes);
        let certain = self
            .row_lanes
            .iter()
            .map(read)
            .all(|lane| lane.sums_certainly_finite());
        self.checked.fetch_add(1, Ordering::Release);
        let loss = loss_sum * self.scale;
        if !loss.is_finite() || !all_finite(small) {
            return Err(Error::Diverged);
        }
        // Dense1's kernel gradient (all but 1,210 of the default model's
        // parameters) is not summed sample by sample: each row is formed
        // once, in the step, by the thread that owns it, from the samples
        // whose input there is not zero, in batch order. That is the
        // arithmetic of adding the samples' outer products one after another
        // (so it does not depend on the thread count). The step may form the
        // rows only if none can be NaN or infinite; if that is not certain,
        // each thread forms and checks its rows first, and all stop if any
        // found one that is not finite.
        if !certain {
            if let Some(lane) = self.row_lanes.get(thread) {
                let mut lane = write(lane);
                let lane = &mut *lane;
                lane.formed.clear();
                lane.formed.resize(self.rows(thread).len(), [0.0; HIDDEN]);
                let mut formed = core::mem::take(&mut lane.formed);
                lane.form(0, &mut formed);
                if !all_finite(formed.as_flattened()) {
                    self.diverged.store(true, Ordering::Relaxed);
                }
                lane.formed = formed;
            }
            self.meeting.wait();
            if self.diverged.load(Ordering::Relaxed) {
                return Err(Error::Diverged);
            }
        }
        Ok(loss)
    }

    /// The step of thread `thread`'s rows of dense1's kernel, a piece at a
    /// time, each piece's gradient formed in the step unless it was before.
    fn step_rows(&self, thread: usize, update: Update, rows: &mut [[f32; HIDDEN]], mut state: State<'_>) {
        let Some(lane) = self.row_lanes.get(thread) else {
            return;
        };
        let lane = read(lane);
        let mut scratch = [[0.0f32; HIDDEN]; ROWS_PER_PIECE];
        for (piece, params) in rows.chunks_mut(ROWS_PER_PIECE).enumerate() {
            let (here, rest) = state.split_at(params.len() * HIDDEN);
            let first = piece * ROWS_PER_PIECE;
            let grads = match lane.formed.get(first..first + params.len()) {
                Some(formed) if !formed.is_empty() => formed,
                _ => {
                    let grads = scratch.get_mut(..params.len()).unwrap_or_default();
                    lane.form(first, grads);
                    grads
                }
            };
            update.apply(params.as_flattened_mut(), grads.as_flattened(), here);
            state = rest;
        }
    }

    /// On the driving thread, once the batch is known to step: counts the
    /// step, steps the small parameters with their summed gradient `small`,
    /// and readies the next batch.
    fn step_small(&self, driver: &mut Driver<'_>, small: &[f32], loss: f32, k: usize) {
        let dense1 = dense1_kernel_range::<K, FLAT, HIDDEN>();
        let next = driver.schedule.next_update().and_then(|update| {
            let (front_grads, back_grads) = small.split_at(dense1.start.min(small.len()));
            let (front, state) = &mut driver.front;
            apply_in_pieces(update, front, front_grads, state.reborrow());
            let (back, state) = &mut driver.back;
            apply_in_pieces(update, back, back_grads, state.reborrow());
            driver.schedule.peek_update()
        });
        *lock(&self.update) = next;
        let mut small = write(self.small);
        let flat = small.as_flat_mut();
        if let Some(front) = flat.get_mut(..dense1.start) {
            front.copy_from_slice(driver.front.0);
        }
        if let Some(back) = flat.get_mut(dense1.end..) {
            back.copy_from_slice(driver.back.0);
        }
        for turn in self.turns {
            turn.store(0, Ordering::Relaxed);
        }
        (driver.each)(k, loss);
        self.small_steps.store(k + 1, Ordering::Release);
    }
}

/// The forward pass's terms over one thread's rows of dense1's kernel: each
/// listed input among them times its row.
struct OwnRows<'a, const FLAT: usize, const HIDDEN: usize> {
    input: &'a [f32; FLAT],
    /// Positions of the inputs that count, in increasing order, all in the rows.
    active: &'a [u16],
    rows: &'a [[f32; HIDDEN]],
    /// The position of the first row.
    first: usize,
}

impl<const FLAT: usize, const HIDDEN: usize> Terms<HIDDEN> for OwnRows<'_, FLAT, HIDDEN> {
    #[inline(always)]
    fn each(&self) -> impl Iterator<Item = (f32, &[f32; HIDDEN])> {
        self.active.iter().filter_map(|&i| {
            let i = usize::from(i);
            Some((*self.input.get(i)?, self.rows.get(i.wrapping_sub(self.first))?))
        })
    }
}

/// Applies `update` to `params` in pieces of [`PIECE`], as a step over the
/// whole range in pieces on several threads would.
fn apply_in_pieces(update: Update, params: &mut [f32], grads: &[f32], mut state: State<'_>) {
    let mut at = 0;
    for piece in params.chunks_mut(PIECE) {
        let (here, rest) = state.split_at(piece.len());
        update.apply(piece, grads.get(at..at + piece.len()).unwrap_or_default(), here);
        (state, at) = (rest, at + piece.len());
    }
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
    /// `threads` threads with dropout rate `dropout`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no threads or a dropout rate outside `[0, 1)`.
    pub fn new(threads: usize, dropout: f32) -> Result<Self, Error> {
        if threads == 0 {
            return Err(Error::InvalidConfig {
                what: "at least one thread is needed",
            });
        }
        let dropout = check_rate(dropout)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|_| Error::InvalidConfig {
                what: "could not start the training threads",
            })?;
        Ok(Self {
            dropout,
            lanes: (0..threads).map(|_| RwLock::new(Lane::new())).collect(),
            row_lanes: (0..threads).map(|_| RwLock::new(RowLane::new())).collect(),
            samples: Vec::new(),
            turns: Vec::new(),
            rows: (0..threads).map(|t| owned_rows(t, threads, FLAT)).collect(),
            small: RwLock::new(bytemuck::zeroed_box()),
            seeds: Vec::new(),
            pool,
        })
    }

    /// One gradient step on the samples at `batch`, split across the threads;
    /// as [`Trainer::train_batch`](crate::Trainer::train_batch).
    ///
    /// # Errors
    /// As [`Trainer::train_batch`](crate::Trainer::train_batch).
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
        progress: &mut (impl Progress + Send),
    ) -> Result<f32, Error> {
        let order = shuffled_batches(samples.len(), order, batch_size, rng)?;
        // Every seed the epoch's batches draw, drawn first: the generator
        // gives the same ones in the same order as batch after batch.
        self.seeds.clear();
        self.seeds.extend(order.iter().map(|_| rng.next_u64()));
        let batches = order.len() / batch_size;
        let mut loss_sum = 0.0f64;
        self.run(params, optimizer, samples, order, batch_size, &mut |b, loss| {
            loss_sum += f64::from(loss);
            progress.batch_done(epoch, b, batches, loss);
        })?;
        Ok((loss_sum / batches as f64) as f32)
    }

    /// Steps on each batch of `batch_size` of `indices` in turn (with the
    /// seeds in `self.seeds`), all on the pool, whose threads keep to the
    /// run from its first batch to its last; `each` hears of every batch
    /// that stepped. Stops at the first error.
    fn run<S: Samples<H, W> + Sync + ?Sized, O: Optimizer + ?Sized>(
        &mut self,
        params: &mut Params<H, W, K, FLAT, HIDDEN, CLASSES>,
        optimizer: &mut O,
        samples: &S,
        indices: &[u32],
        batch_size: usize,
        each: &mut (dyn FnMut(usize, f32) + Send),
    ) -> Result<(), Error> {
        let threads = self.lanes.len();
        let dense1 = dense1_kernel_range::<K, FLAT, HIDDEN>();
        let (schedule, state) = optimizer.schedule(params.as_flat().len())?;
        let update = schedule.peek_update();
        {
            let mut small = write(&self.small);
            for range in [0..dense1.start, dense1.end..params.as_flat().len()] {
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
        let (front, rest) = params.as_flat_mut().split_at_mut(dense1.start);
        let (kernel, back) = rest.split_at_mut(dense1.len());
        let (front_state, rest_state) = state.split_at(dense1.start);
        let (mut kernel_state, back_state) = rest_state.split_at(dense1.len());
        let mut kernel: &mut [[f32; HIDDEN]] =
            bytemuck::try_cast_slice_mut(kernel).map_err(|_| Error::Length {
                what: "dense1 kernel",
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
        let run = Run {
            samples,
            indices,
            seeds: &self.seeds,
            batch_size,
            scale: 1.0 / batch_size as f32,
            dropout: self.dropout,
            chunk: batch_size.div_ceil(threads),
            rows: &self.rows,
            small: &self.small,
            owned,
            driver: Mutex::new(Driver {
                schedule,
                front: (front, front_state),
                back: (back, back_state),
                each,
                result: Ok(()),
            }),
            update: Mutex::new(update),
            small_steps: AtomicUsize::new(0),
            checked: AtomicUsize::new(0),
            diverged: AtomicBool::new(false),
            lanes: &self.lanes,
            row_lanes: &self.row_lanes,
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
        let costs: Vec<usize> = self
            .row_lanes
            .iter_mut()
            .flat_map(|lane| {
                lane.get_mut()
                    .unwrap_or_else(PoisonError::into_inner)
                    .piece_costs
                    .clone()
            })
            .collect();
        self.rows = balanced_rows(&costs, threads, FLAT);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{Sgd, Trainer};
    use rand_core::SeedableRng;
    use std::vec;

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

    /// The step, with dense1 split by row across the threads, is bit for bit
    /// the step of the samples' gradients summed one after another for
    /// dense1's kernel, whatever the thread count; with one thread the whole
    /// step is.
    #[test]
    fn the_step_matches_the_per_sample_sum_bit_for_bit() {
        let data = data();
        let mut params: std::boxed::Box<Small> = bytemuck::zeroed_box();
        params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
        params.conv_bias = [0.1; 3];
        let batch: Vec<u32> = (0..24).rev().collect();
        for threads in [1, 2, 3, 5] {
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
            let lanes = parallel.row_lanes.iter().map(read);
            assert!(
                lanes.into_iter().all(|lane| lane.sums_certainly_finite()),
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

    /// Inputs so large that the rows' sums could overflow: the rows are
    /// formed and checked before the step, which then is the same.
    #[test]
    fn rows_that_might_overflow_are_formed_first_with_the_same_result() {
        let data = data();
        let mut params: std::boxed::Box<Small> = bytemuck::zeroed_box();
        params.init_glorot(&mut rand_pcg::Pcg32::seed_from_u64(3));
        params.conv_bias = [1e33; 3];
        let batch: Vec<u32> = (0..12).collect();
        for threads in [1, 2, 3] {
            let mut parallel = ParallelTrainer::<8, 8, 3, 48, 20, 3>::new(threads, 0.0).unwrap();
            let mut stepped = params.clone();
            let mut rng = rand_pcg::Pcg32::seed_from_u64(9);
            let mut sgd = Sgd::new(0.1).unwrap();
            parallel
                .train_batch(&mut *stepped, &mut sgd, &data[..], &batch, &mut rng)
                .unwrap();
            let lanes: Vec<_> = parallel.row_lanes.iter().map(read).collect();
            assert!(!lanes.iter().all(|lane| lane.sums_certainly_finite()));
            assert!(lanes.iter().any(|lane| !lane.formed.is_empty()));
            let mut alone: std::boxed::Box<Trainer<8, 8, 3, 48, 20, 3>> = bytemuck::zeroed_box();
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
            let mut parallel = ParallelTrainer::<8, 8, 3, 48, 20, 3>::new(2, 0.5).unwrap();
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

    #[test]
    fn rows_are_shared_out_in_whole_pieces_that_cover_the_kernel() {
        for (rows, threads) in [(1960, 2), (1960, 3), (48, 3), (48, 5), (7, 2)] {
            let ranges: Vec<_> = (0..threads).map(|t| owned_rows(t, threads, rows)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[threads - 1].end, rows);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert!(pair[0].end % ROWS_PER_PIECE == 0 || pair[0].end == rows);
            }
        }
        assert_eq!(owned_rows(0, 2, 1960), 0..992);
        assert_eq!(owned_rows(1, 2, 1960), 992..1960);
    }

    #[test]
    fn rows_follow_the_work_in_whole_pieces() {
        // Five pieces of 16 rows, the last 4 rows short; the work is at the end.
        let costs = [1, 1, 1, 10, 7];
        assert_eq!(balanced_rows(&costs, 2, 68), vec![0..64, 64..68]);
        assert_eq!(balanced_rows(&costs, 3, 68), vec![0..48, 48..64, 64..68]);
        assert_eq!(balanced_rows(&costs, 1, 68), vec![0..68]);
        // Even work: even rows; no work at all: every row to the last thread.
        assert_eq!(balanced_rows(&[5; 4], 2, 64), vec![0..32, 32..64]);
        assert_eq!(balanced_rows(&[0; 4], 2, 64), vec![0..0, 0..64]);
        // More threads than pieces: some own nothing, all rows are owned.
        let ranges = balanced_rows(&[3, 3], 4, 20);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(20));
        assert!(ranges.windows(2).all(|pair| pair[0].end == pair[1].start));
    }

    /// A sample's non-zero inputs (positions, the whole input) and its output
    /// gradient.
    type Terms = (&'static [u16], [f32; 20], [f32; 4]);

    fn lane(rows: &Range<usize>, samples: &[Terms]) -> RowLane<4> {
        let mut lane = RowLane::new();
        lane.hidden_grads = samples.iter().map(|s| LineRow(s.2)).collect();
        lane.regroup(
            rows,
            samples.iter().map(|(positions, inputs, _)| (*positions, inputs)),
        );
        lane
    }

    fn input(values: &[(usize, f32)]) -> [f32; 20] {
        let mut input = [0.0; 20];
        for &(i, x) in values {
            input[i] = x;
        }
        input
    }

    #[test]
    fn rows_are_formed_from_their_terms_in_batch_order() {
        // The lane owns rows 16..19: its first row is the kernel's 16th.
        let samples = [
            (
                &[16, 18][..],
                input(&[(16, 2.0), (18, 1.0)]),
                [1.0, 2.0, 3.0, 4.0],
            ),
            (&[18][..], input(&[(18, 3.0)]), [0.5; 4]),
            (
                &[17, 18][..],
                input(&[(17, -1.0), (18, 0.25)]),
                [4.0, 3.0, 2.0, 1.0],
            ),
        ];
        let lane = lane(&(16..19), &samples);
        let mut rows = [[9.0f32; 4]; 3];
        lane.form(0, &mut rows);
        assert_eq!(rows[0], [2.0, 4.0, 6.0, 8.0]);
        assert_eq!(rows[1], [-4.0, -3.0, -2.0, -1.0]);
        // 1 * [1, 2, 3, 4] + 3 * 0.5 + 0.25 * [4, 3, 2, 1]
        assert_eq!(rows[2], [3.5, 4.25, 5.0, 5.75]);
        let mut last = [[9.0f32; 4]; 1];
        lane.form(2, &mut last);
        assert_eq!(last[0], rows[2]);
        assert!(lane.sums_certainly_finite());
    }

    #[test]
    fn terms_are_grouped_by_row_in_batch_order_across_blocks() {
        // Rows 5..200 of 210: several blocks of `REGROUP_ROWS`, the last short.
        const FLAT: usize = 210;
        let rows = 5..200;
        let mut rng = rand_pcg::Pcg32::seed_from_u64(4);
        let inputs: Vec<[f32; FLAT]> = (0..9)
            .map(|_| {
                core::array::from_fn(|_| {
                    let u = rng.next_u32();
                    if u % 3 == 0 {
                        (u % 1000) as f32 + 1.0
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let positions: Vec<Vec<u16>> = inputs
            .iter()
            .map(|x| rows.clone().filter(|&i| x[i] != 0.0).map(|i| i as u16).collect())
            .collect();
        let mut lane = RowLane::<4>::new();
        lane.hidden_grads = vec![LineRow([1.0; 4]); inputs.len()];
        lane.regroup(&rows, positions.iter().map(|p| &p[..]).zip(&inputs));
        // Sample after sample, each sample's positions in order.
        let first_slots: Vec<usize> = positions
            .iter()
            .scan(0, |n, p| {
                *n += p.len();
                Some(*n - p.len())
            })
            .collect();
        let ends: Vec<usize> = first_slots
            .iter()
            .zip(&positions)
            .map(|(f, p)| f + p.len())
            .collect();
        assert_eq!(lane.ends, ends);
        assert_eq!(lane.starts.len(), rows.len() + 1);
        for (r, row) in rows.clone().enumerate() {
            let listing: Vec<usize> = (0..inputs.len()).filter(|&s| inputs[s][row] != 0.0).collect();
            let terms: Vec<(u32, f32)> = listing.iter().map(|&s| (s as u32, inputs[s][row])).collect();
            let slots: Vec<u32> = listing
                .iter()
                .map(|&s| {
                    (first_slots[s] + positions[s].iter().position(|&i| usize::from(i) == row).unwrap())
                        as u32
                })
                .collect();
            let (start, end) = (lane.starts[r], lane.starts[r + 1]);
            assert_eq!(lane.terms[start..end], terms[..], "row {row}");
            assert_eq!(lane.slots[start..end], slots[..], "row {row}");
        }
    }

    #[test]
    fn sums_that_could_overflow_or_hold_a_nan_are_not_trusted() {
        let trusted = |samples: &[Terms]| lane(&(0..1), samples).sums_certainly_finite();
        let one = |x: f32, g: f32| (&[0u16][..], input(&[(0, x)]), [g, 0.0, 0.0, 0.0]);
        assert!(!trusted(&[one(1e16, 1e15)]));
        assert!(!trusted(&[one(1.0, f32::NAN)]));
        assert!(trusted(&[one(1e10, 1e10)]));
        // Bounds add up over the batch: two samples each within the limit,
        // together beyond it.
        assert!(trusted(&[one(1e15, 6e14)]));
        assert!(!trusted(&[one(1e15, 6e14), one(1e15, 6e14)]));
    }

    #[test]
    fn a_sample_lists_its_inputs_by_owner() {
        let mut sample = Sample::<2, 2, 40, 4>::boxed();
        sample.active[..5].copy_from_slice(&[0, 15, 16, 31, 39]);
        sample.active_len = 5;
        assert_eq!(sample.active_in(&(0..16)), &[0, 15]);
        assert_eq!(sample.active_in(&(16..32)), &[16, 31]);
        assert_eq!(sample.active_in(&(32..40)), &[39]);
        assert_eq!(sample.active_in(&(40..40)), &[] as &[u16]);
    }
}
