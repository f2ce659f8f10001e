//! How the wide layer's kernel is shared out among the threads: whole pieces of
//! rows, balanced by the work the last batch found in them.

use crate::train::{State, Update};
use core::ops::Range;
use std::vec::Vec;

/// Parameters per piece of the optimizer step outside the wide layer's kernel (a
/// multiple of the SIMD width, so each piece runs the same vector code as
/// the whole would).
pub(super) const PIECE: usize = 16 * 1024;

/// Rows of the wide layer's kernel per piece of the step: small enough for the
/// piece's gradient, formed in the step, to stay in L1. Each thread's rows
/// are whole pieces.
pub(super) const ROWS_PER_PIECE: usize = 16;

/// The rows of the wide layer's kernel thread `thread` of `threads` owns in its
/// first run: whole pieces, as even a share as they allow.
pub(super) fn owned_rows(thread: usize, threads: usize, rows: usize) -> Range<usize> {
    let per_thread = rows.div_ceil(ROWS_PER_PIECE).div_ceil(threads.max(1)) * ROWS_PER_PIECE;
    (thread * per_thread).min(rows)..((thread + 1) * per_thread).min(rows)
}

/// The threads' rows for the next run, when the pieces of [`ROWS_PER_PIECE`]
/// rows cost `costs` (in order) in the last batch: whole pieces, the cost
/// shared out as evenly as they allow. Which thread owns a row changes no
/// result, only the time.
pub(super) fn balanced_rows(costs: &[usize], threads: usize, rows: usize) -> Vec<Range<usize>> {
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

/// Applies `update` to `params` in pieces of [`PIECE`], as a step over the
/// whole range in pieces on several threads would.
pub(super) fn apply_in_pieces(update: Update, params: &mut [f32], grads: &[f32], mut state: State<'_>) {
    let mut at = 0;
    for piece in params.chunks_mut(PIECE) {
        let (here, rest) = state.split_at(piece.len());
        update.apply(piece, grads.get(at..at + piece.len()).unwrap_or_default(), here);
        (state, at) = (rest, at + piece.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

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
}
