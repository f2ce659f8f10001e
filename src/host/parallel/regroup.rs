//! A thread's share of the batch by row of the wide layer's kernel: the batch's
//! terms regrouped by row, the bound that says whether the rows' sums can be
//! trusted to stay finite, and the rows of the kernel gradient formed from
//! the terms.

use super::partition::ROWS_PER_PIECE;
use crate::kernels::all_finite;
use crate::kernels::dense::{accumulate_rows, LineRow, Outer};
use core::ops::Range;
use std::vec::Vec;

/// Rows of the wide layer's kernel whose terms are placed at a time when regrouping:
/// their places to write (two cache lines a row) stay in the first-level
/// cache, and every sample's positions are looked through once per block.
const REGROUP_ROWS: usize = 64;

/// A thread's share of the batch by row of the wide layer's kernel: what backward
/// gives its rows, and their terms regrouped by row (a counting sort): per
/// row, the samples whose input there is not zero, in batch order.
pub(super) struct RowLane<const HIDDEN: usize> {
    /// The gradient at each sample's non-zero inputs in these rows, sample
    /// after sample.
    pub(super) input_grads: Vec<f32>,
    /// Where each sample's values end in `input_grads`.
    pub(super) ends: Vec<usize>,
    /// Where each term's input gradient goes in `input_grads`.
    pub(super) slots: Vec<u32>,
    /// Row `first + i`'s terms are `terms[starts[i]..starts[i + 1]]`.
    pub(super) starts: Vec<usize>,
    /// `(sample, input)`, samples numbered through the whole batch.
    pub(super) terms: Vec<(u32, f32)>,
    /// Every sample's gradient at the wide layer's outputs, in batch order.
    pub(super) hidden_grads: Vec<LineRow<HIDDEN>>,
    /// What [`bounds`](Self::bounds) found in the last batch.
    pub(super) bounds: Option<(f32, f32)>,
    /// The rows' gradient, when it had to be formed and checked before the
    /// step; empty otherwise.
    pub(super) formed: Vec<[f32; HIDDEN]>,
    /// What each piece of the rows cost in the last batch, in the units of
    /// [`measure_pieces`](Self::measure_pieces).
    pub(super) piece_costs: Vec<usize>,
}

impl<const HIDDEN: usize> RowLane<HIDDEN> {
    pub(super) const fn new() -> Self {
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

    /// Sets each piece's cost: its terms (which the wide layer's forward pass, its
    /// backward pass and the gradient's rows each take one at a time) and
    /// six for each row (reading it in the backward pass and stepping it,
    /// which cost more than a term: weighed lighter, the thread with the
    /// first rows takes longer in the backward pass and the others wait).
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
    pub(super) fn input_grads_of(&self, sample: usize) -> &[f32] {
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
    /// written at a time stay in the first-level cache. (All of a sample's
    /// terms before the next sample's would write all over a megabyte; a
    /// scan by row, every sample's input at one row after another, would
    /// touch a page per sample at each row.)
    pub(super) fn regroup<'a, const FLAT: usize>(
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
        // have are cleared first.
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
    pub(super) fn sums_certainly_finite(&self) -> bool {
        self.bounds
            .is_some_and(|(inputs, outputs)| inputs.is_finite() && inputs * outputs < 1e30)
    }

    /// Forms the lane's rows `first..first + rows.len()` of the kernel
    /// gradient: each the sum of its terms in batch order, as adding the
    /// samples' outer products one after another would form it.
    pub(super) fn form(&self, first: usize, rows: &mut [[f32; HIDDEN]]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{RngCore, SeedableRng};
    use std::vec;

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
}
