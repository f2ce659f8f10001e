//! The passes of a run of batches as every thread sees them: by sample for
//! the layers before and after the wide layer and the loss; by row of the
//! wide layer's kernel for its forward pass, its backward pass and its step.

use super::meeting::{lock, read, write, Attendance, Meeting};
use super::partition::{apply_in_pieces, ROWS_PER_PIECE};
use super::regroup::RowLane;
use crate::data::Inputs;
use crate::error::Divergence;
use crate::kernels::dense::{accumulate_rows, nonzero_positions, row_input_grads, LineRow, Terms};
use crate::kernels::dropout::{dropout, SampleStream};
use crate::kernels::{all_finite, axpy, relu};
use crate::model::ParamBuffer;
use crate::stack::workspace::check_input;
use crate::stack::{DenseState, Layer, Logits, Split, SplitAt, Stack, Zeroed};
use crate::train::check::checked_loss;
use crate::train::{Schedule, State, Update};
use crate::Error;
use bytemuck::Zeroable;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::boxed::Box;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::vec::Vec;

/// The layers of stack `S` before its wide layer.
pub(super) type Front<S> = <<S as Stack>::Layers as Split>::Front;
/// The wide layer.
pub(super) type Wide<S> = <<S as Stack>::Layers as Split>::Wide;
/// The layers after it.
pub(super) type Back<S> = <<S as Stack>::Layers as Split>::Back;

/// What a sample's own thread keeps of it from one pass to the next.
pub(super) struct Sample<S: Stack>
where
    S::Layers: Split,
{
    pub(super) input: S::Input,
    pub(super) label: usize,
    /// The front's maps: its output is the wide layer's input, after
    /// dropout.
    pub(super) front: <Front<S> as Layer>::State,
    /// The wide layer's sums, which the rows' owners add their terms to in
    /// turn, and the positions of its non-zero inputs.
    pub(super) wide: <Wide<S> as Layer>::State,
    /// The gradient at the wide layer's outputs (the loss scale included).
    pub(super) hidden_grad: <Wide<S> as Layer>::Out,
    /// The sample's dropout stream where the wide layer's mask left it.
    pub(super) stream: u64,
}

impl<S: Stack> Sample<S>
where
    S::Layers: Split,
{
    pub(super) fn boxed() -> Box<Self> {
        Box::new(Self {
            input: Zeroed::ZERO,
            label: 0,
            front: Zeroed::ZERO,
            wide: Zeroed::ZERO,
            hidden_grad: Zeroable::zeroed(),
            stream: 0,
        })
    }
}

/// The positions of the non-zero inputs of `wide` among `rows`.
fn active_in<'a, const FLAT: usize, const HIDDEN: usize>(
    wide: &'a DenseState<FLAT, HIDDEN>,
    rows: &Range<usize>,
) -> &'a [u16] {
    let active = wide.active();
    let start = active.partition_point(|&i| usize::from(i) < rows.start);
    let end = active.partition_point(|&i| usize::from(i) < rows.end);
    active.get(start..end).unwrap_or_default()
}

/// What a thread keeps of its share of the batch by sample.
pub(super) struct Lane<S: Stack>
where
    S::Layers: Split,
{
    /// The gradient of the thread's samples' losses, but for the wide
    /// layer's kernel, which the rows' owners form.
    pub(super) grads: Box<S::Params>,
    /// One sample's gradient at the wide layer's input at a time.
    pub(super) wide_input_grad: Box<<Wide<S> as Layer>::In>,
    /// The gradients inside the front and the back, and the back's maps.
    pub(super) front_junctions: Box<<Front<S> as Layer>::Junctions>,
    pub(super) back: Box<<Back<S> as Layer>::State>,
    pub(super) back_junctions: Box<<Back<S> as Layer>::Junctions>,
    pub(super) loss: f32,
    /// The first error the thread's samples met.
    pub(super) error: Option<Error>,
    /// Whether the thread had samples in the batch.
    pub(super) used: bool,
}

impl<S: Stack> Lane<S>
where
    S::Layers: Split,
{
    pub(super) fn new() -> Self {
        Self {
            grads: bytemuck::zeroed_box(),
            wide_input_grad: bytemuck::zeroed_box(),
            front_junctions: bytemuck::zeroed_box(),
            back: bytemuck::zeroed_box(),
            back_junctions: bytemuck::zeroed_box(),
            loss: 0.0,
            error: None,
            used: false,
        }
    }
}

/// A run of batches as every thread sees it: the passes of each batch, and
/// its step, which each thread takes for its own rows of the wide layer's
/// kernel (`FLAT` rows of `HIDDEN`).
pub(super) struct Run<'a, D: ?Sized, S: Stack, const FLAT: usize, const HIDDEN: usize>
where
    S::Layers: Split,
{
    pub(super) samples: &'a D,
    /// The samples of the run, batch after batch, and each one's seed.
    pub(super) indices: &'a [u32],
    pub(super) seeds: &'a [u64],
    pub(super) batch_size: usize,
    pub(super) scale: f32,
    pub(super) dropout: f32,
    /// Samples per thread.
    pub(super) chunk: usize,
    /// The rows of the wide layer's kernel each thread owns.
    pub(super) rows: &'a [Range<usize>],
    /// Where the wide layer's kernel lies in the flat parameters.
    pub(super) wide: Range<usize>,
    /// The parameters but for the wide layer's kernel, as the driver last
    /// stepped them (the kernel here is not used).
    pub(super) small: &'a RwLock<Box<S::Params>>,
    /// Each thread's rows of the wide layer's kernel, and their optimizer
    /// state.
    pub(super) owned: Vec<Mutex<Owned<'a, HIDDEN>>>,
    /// What only the thread that called for the run uses.
    pub(super) driver: Mutex<Driver<'a>>,
    /// The update of the next step, as the schedule will give it.
    pub(super) update: Mutex<Result<Update, Error>>,
    /// How many batches' small parameters the driver has stepped (the
    /// next batch starts from them).
    pub(super) small_steps: AtomicUsize,
    /// How many times a thread has read all it checks a batch by: the next
    /// batch waits for every thread to have done so.
    pub(super) checked: AtomicUsize,
    /// Set when a thread found rows of the kernel's gradient, formed
    /// before the step, NaN or infinite.
    pub(super) diverged: AtomicBool,
    pub(super) lanes: &'a [RwLock<Lane<S>>],
    pub(super) row_lanes: &'a [RwLock<RowLane<HIDDEN>>],
    pub(super) states: &'a [RwLock<Box<Sample<S>>>],
    /// Where each sample is: 0 until its thread has read and convolved it,
    /// then 1 + the number of rows' owners that have added their terms to
    /// its sums (which they do in thread order). Waiting on these rather
    /// than for every thread, a thread goes on to the next pass with the
    /// samples that are ready.
    pub(super) turns: &'a [AtomicUsize],
    pub(super) meeting: Meeting,
}

/// A thread's rows of the wide layer's kernel through a run, and their
/// optimizer state.
pub(super) type Owned<'a, const HIDDEN: usize> = (&'a mut [[f32; HIDDEN]], State<'a>);

/// What the thread that called for a run keeps to itself: the optimizer's
/// schedule, the small parameters with their state, and where the results go.
pub(super) struct Driver<'a> {
    pub(super) schedule: Schedule<'a>,
    pub(super) front: (&'a mut [f32], State<'a>),
    pub(super) back: (&'a mut [f32], State<'a>),
    /// Called with each batch's number and loss once it has stepped.
    pub(super) each: &'a mut (dyn FnMut(usize, f32) + Send),
    pub(super) result: Result<(), Error>,
}

impl<D, S, const FLAT: usize, const HIDDEN: usize> Run<'_, D, S, FLAT, HIDDEN>
where
    D: Inputs<S::Input> + Sync + ?Sized,
    S: SplitAt<FLAT, HIDDEN>,
{
    /// Thread `thread`'s part of every batch, meeting the others in
    /// between; `driving` for the thread that called for the run.
    pub(super) fn thread(&self, thread: usize, driving: bool) {
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
            self.wide_forward(thread, rows);
            self.head(thread);
            self.meeting.wait();
            self.wide_backward(thread, rows);
            self.meeting.wait();
            self.front_backward(thread);
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
    fn read_all(&self) -> Vec<RwLockReadGuard<'_, Box<Sample<S>>>> {
        self.states.iter().take(self.batch_size).map(read).collect()
    }

    /// The parameters of the layers before the wide one, of the wide
    /// layer's bias, and of the layers after it, in `flat`.
    fn parts<'p>(&self, flat: &'p [f32]) -> (&'p [f32], &'p [f32; HIDDEN], &'p [f32]) {
        let (front, rest) = flat.split_at(self.wide.start.min(flat.len()));
        let rest = rest.get(self.wide.len()..).unwrap_or_default();
        let (bias, back) = rest.split_at(HIDDEN.min(rest.len()));
        (front, bias.try_into().unwrap_or(&[0.0; HIDDEN]), back)
    }

    /// The same, to change.
    fn parts_mut<'p>(&self, flat: &'p mut [f32]) -> (&'p mut [f32], &'p mut [f32], &'p mut [f32]) {
        let (front, rest) = flat.split_at_mut(self.wide.start.min(flat.len()));
        let rest = rest.get_mut(self.wide.len()..).unwrap_or_default();
        let (bias, back) = rest.split_at_mut(HIDDEN.min(rest.len()));
        (front, bias, back)
    }

    /// Reads the thread's samples, then runs the front, drops out and lists
    /// the wide layer's non-zero inputs. A thread stops at its first error,
    /// as if the rest of its samples were blank.
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
        let (front, bias, back) = self.parts_mut(lane.grads.as_flat_mut());
        for part in [front, bias, back] {
            part.fill(0.0);
        }
        let p = read(self.small);
        let first = k * self.batch_size;
        // The inputs first, all of them: their reads miss the caches, and
        // one after another they overlap, where between convolutions they
        // would wait in turn.
        for position in own.clone() {
            let (Some(&index), Some(sample)) =
                (self.indices.get(first + position), self.states.get(position))
            else {
                continue;
            };
            let mut sample = write(sample);
            let sample = &mut **sample;
            sample.wide.len = 0;
            sample.label = 0;
            sample.wide.out = *self.parts(p.as_flat()).1;
            if lane.error.is_none() {
                match self.samples.read(index as usize, &mut sample.input) {
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
                if let Err(e) = self.convolve_one(p.as_flat(), seed, &mut sample) {
                    lane.error = Some(e);
                }
            }
            self.reached(position, 1);
        }
    }

    fn convolve_one(&self, params: &[f32], seed: u64, sample: &mut Sample<S>) -> Result<(), Error> {
        check_input::<S>(&sample.input)?;
        let mut stream = SampleStream(seed);
        let (front_params, _, _) = self.parts(params);
        Front::<S>::forward(
            front_params,
            &mut sample.input,
            &mut sample.front,
            self.dropout,
            &mut stream,
        );
        let input = Front::<S>::output_mut(&mut sample.front);
        if <S::Layers as Split>::DROPOUT && self.dropout > 0.0 {
            dropout(input, self.dropout, &mut stream);
        }
        sample.wide.len = nonzero_positions(input, &mut sample.wide.positions);
        sample.stream = stream.0;
        Ok(())
    }

    /// Adds the terms of the thread's rows to every sample's sums at the
    /// wide layer's outputs, after the owners of the rows before them: each
    /// sum takes its terms in the order one thread would.
    fn wide_forward(&self, thread: usize, kernel: &[[f32; HIDDEN]]) {
        let rows = self.rows(thread);
        for (position, sample) in self.states.iter().take(self.batch_size).enumerate() {
            self.wait_for(position, thread + 1);
            let mut sample = write(sample);
            let sample = &mut **sample;
            let listed = OwnRows {
                input: Front::<S>::output(&sample.front),
                active: active_in(&sample.wide, &rows),
                rows: kernel,
                first: rows.start,
            };
            let mut sums = sample.wide.out;
            accumulate_rows::<true, HIDDEN>(&listed, &mut sums);
            sample.wide.out = sums;
            self.reached(position, thread + 2);
        }
    }

    /// ReLU, the layers after the wide one, the loss and backward to the
    /// wide layer's outputs, for the thread's samples, each as soon as its
    /// sums are whole.
    fn head(&self, thread: usize) {
        let Some(lane) = self.lanes.get(thread) else {
            return;
        };
        let mut lane = write(lane);
        let Lane {
            grads,
            back,
            back_junctions,
            loss,
            error,
            ..
        } = &mut *lane;
        let p = read(self.small);
        let (_, _, back_params) = self.parts(p.as_flat());
        let (_, bias_grad, back_grads) = self.parts_mut(grads.as_flat_mut());
        let whole = self.lanes.len() + 1;
        let mut logits_grad = S::Logits::ZERO;
        for position in self.own_samples(thread) {
            let Some(sample) = self.states.get(position) else {
                continue;
            };
            self.wait_for(position, whole);
            let mut sample = write(sample);
            let sample = &mut **sample;
            let mut hidden = sample.wide.out;
            relu(&mut hidden);
            let mut stream = SampleStream(sample.stream);
            Back::<S>::forward(back_params, &mut hidden, back, self.dropout, &mut stream);
            let logits = Back::<S>::output(back);
            match logits.cross_entropy(sample.label, self.scale, &mut logits_grad) {
                Ok(sample_loss) => *loss += sample_loss,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            Back::<S>::backward(
                back_params,
                back_grads,
                &hidden,
                back,
                back_junctions,
                &logits_grad,
                None,
                self.dropout,
                Some(&mut sample.hidden_grad),
            );
            axpy(1.0, &sample.hidden_grad, bias_grad);
        }
    }

    /// The gradient at every sample's non-zero inputs in the thread's rows,
    /// and the rows' terms regrouped for the step.
    fn wide_backward(&self, thread: usize, kernel: &[[f32; HIDDEN]]) {
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
            samples().map(|sample| (active_in(&sample.wide, &rows), Front::<S>::output(&sample.front))),
        );
        // Kept inputs were scaled by 1 / (1 - rate) on the way forward.
        let keep_scale =
            (<S::Layers as Split>::DROPOUT && self.dropout > 0.0).then(|| 1.0 / (1.0 - self.dropout));
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

    /// Backward through the front for the thread's samples, from the
    /// gradients the rows' owners found.
    fn front_backward(&self, thread: usize) {
        let Some(lane) = self.lanes.get(thread) else {
            return;
        };
        let row_lanes: Vec<_> = self.row_lanes.iter().map(read).collect();
        let p = read(self.small);
        let (front_params, _, _) = self.parts(p.as_flat());
        let mut lane = write(lane);
        let Lane {
            grads,
            wide_input_grad,
            front_junctions,
            ..
        } = &mut *lane;
        let (front_grads, _, _) = self.parts_mut(grads.as_flat_mut());
        let wide_input_grad: &mut [f32; FLAT] = wide_input_grad;
        for position in self.own_samples(thread) {
            let Some(sample) = self.states.get(position) else {
                continue;
            };
            let sample = read(sample);
            *wide_input_grad = [0.0; FLAT];
            for (owner, row_lane) in row_lanes.iter().enumerate() {
                let positions = active_in(&sample.wide, &self.rows(owner));
                for (&i, &grad) in positions.iter().zip(row_lane.input_grads_of(position)) {
                    if let Some(slot) = wide_input_grad.get_mut(usize::from(i)) {
                        *slot = grad;
                    }
                }
            }
            Front::<S>::backward(
                front_params,
                front_grads,
                &sample.input,
                &sample.front,
                front_junctions,
                wide_input_grad,
                Some(sample.wide.active()),
                self.dropout,
                None,
            );
        }
    }

    /// The batch's mean loss, with the small gradients summed in thread order
    /// (whatever order the threads finished in) into `small`, the front and
    /// back of the flat parameters' view; and, if the rows of the kernel's
    /// gradient could be NaN or infinite, those of the thread's rows
    /// formed and checked, with the other threads'.
    fn check(&self, thread: usize, small: &mut Vec<f32>) -> Result<f32, Error> {
        let wide = &self.wide;
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
            let parts = [flat.get(..wide.start), flat.get(wide.end..)];
            let grads = parts.into_iter().flatten().flatten();
            if i == 0 {
                loss_sum = lane.loss;
                small.extend(grads);
            } else {
                loss_sum += lane.loss;
                let mid = wide.start.min(small.len());
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
        let loss = checked_loss(loss_sum, self.scale, [&small[..]])?;
        // The wide layer's kernel gradient (all but 1,210 of the book
        // model's parameters) is not summed sample by sample: each row is
        // formed once, in the step, by the thread that owns it, from the
        // samples whose input there is not zero, in batch order. That is the
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
                return Err(Divergence::of_step(loss));
            }
        }
        Ok(loss)
    }

    /// The step of thread `thread`'s rows of the kernel, a piece at a
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
        let wide = &self.wide;
        let next = driver.schedule.next_update().and_then(|update| {
            let (front_grads, back_grads) = small.split_at(wide.start.min(small.len()));
            let (front, state) = &mut driver.front;
            apply_in_pieces(update, front, front_grads, state.reborrow());
            let (back, state) = &mut driver.back;
            apply_in_pieces(update, back, back_grads, state.reborrow());
            driver.schedule.peek_update()
        });
        *lock(&self.update) = next;
        let mut small = write(self.small);
        let flat = small.as_flat_mut();
        if let Some(front) = flat.get_mut(..wide.start) {
            front.copy_from_slice(driver.front.0);
        }
        if let Some(back) = flat.get_mut(wide.end..) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_lists_its_inputs_by_owner() {
        let mut wide = DenseState::<40, 4>::ZERO;
        wide.positions[..5].copy_from_slice(&[0, 15, 16, 31, 39]);
        wide.len = 5;
        assert_eq!(active_in(&wide, &(0..16)), &[0, 15]);
        assert_eq!(active_in(&wide, &(16..32)), &[16, 31]);
        assert_eq!(active_in(&wide, &(32..40)), &[39]);
        assert_eq!(active_in(&wide, &(40..40)), &[] as &[u16]);
    }
}
