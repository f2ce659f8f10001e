//! Divergence: a batch whose mean loss is above `DIVERGED_LOSS` (or not
//! finite) stops every schedule with `Error::Diverged`, naming the epoch and
//! batch, and leaves the parameters as they were; a loss just under the bound
//! trains on.
//!
//! The loss is set exactly: with dense2's kernel zero, the logits are dense2's
//! bias, and a bias of `[0, b, 0, ...]` gives a sample of class 0 the loss
//! `ln(9 + e^b) - 0 = b` (to f32's precision for b in the hundreds) and a
//! sample of class 1 a loss of about 0.

mod common;
use common::*;
use tinycnn::error::Divergence;
use tinycnn::host::ParallelTrainer;
use tinycnn::stack::{Book8, Stack};
use tinycnn::train::{Epoch, HeadTrainer, Progress, Sgd, StreamingSgdTrainer, DIVERGED_LOSS};
use tinycnn::{Error, FashionHead, FashionParams, FashionTrainer, ParamBuffer};

type Image = [[f32; 28]; 28];

/// `n` blank images, class 0 and 1 in turn from `first`.
fn samples(n: usize, first: usize) -> Vec<(Image, usize)> {
    (0..n).map(|i| ([[0.0; 28]; 28], (first + i) % 2)).collect()
}

/// Logits of `[0, loss, 0, ...]` whatever the hidden layer holds.
fn set_loss(kernel: &mut [[f32; 10]; 100], bias: &mut [f32; 10], loss: f32) {
    *kernel = [[0.0; 10]; 100];
    *bias = [0.0; 10];
    bias[1] = loss;
}

fn params_with_loss(loss: f32) -> Box<FashionParams> {
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(1));
    set_loss(&mut params.dense2_kernel, &mut params.dense2_bias, loss);
    params
}

/// One step of class-0 samples with the batch loss set to `loss`: `step`
/// returns the schedule's result and whether the parameters kept their
/// values.
fn check_both_sides(schedule: &str, mut step: impl FnMut(f32) -> (Result<f32, Error>, bool)) {
    let under = DIVERGED_LOSS - 1.0;
    let (result, _) = step(under);
    let loss = result.unwrap_or_else(|e| panic!("{schedule}: a loss of {under} stopped it: {e}"));
    assert!(close(loss, under, 0.0, 1e-6), "{schedule}: loss {loss}");

    let over = DIVERGED_LOSS + 1.0;
    let (result, unchanged) = step(over);
    match result {
        Err(Error::Diverged(Divergence {
            epoch: 0,
            batch: 0,
            loss,
        })) => {
            assert!(close(loss, over, 0.0, 1e-6), "{schedule}: loss {loss}")
        }
        other => panic!("{schedule}: a loss of {over} gave {other:?}"),
    }
    assert!(unchanged, "{schedule}: a diverged step changed the parameters");
}

const BATCH: [u32; 4] = [0, 2, 4, 6];

/// [`check_both_sides`] for a schedule of the whole `f32` network: `step`
/// takes one step of `BATCH` of `data` on the parameters it is given.
fn check_whole_network(
    schedule: &str,
    mut step: impl FnMut(&mut FashionParams, &[(Image, usize)]) -> Result<f32, Error>,
) {
    let data = samples(8, 0);
    check_both_sides(schedule, |loss| {
        let mut params = params_with_loss(loss);
        let before = params.clone();
        let result = step(&mut params, &data);
        (result, params.as_flat() == before.as_flat())
    });
}

#[test]
fn the_whole_network_schedules_stop_above_the_bound_and_only_there() {
    let mut sgd = Sgd::new(0.01).unwrap();
    let mut trainer = FashionTrainer::boxed();
    check_whole_network("Trainer", |params, data| {
        trainer.train_batch(params, &mut sgd, data, &BATCH, &mut rng(2))
    });
    let mut parallel = {
        let mut t = ParallelTrainer::<tinycnn::stack::Book>::new(2).unwrap();
        t.set_dropout(0.0).unwrap();
        t
    };
    check_whole_network("ParallelTrainer", |params, data| {
        parallel.train_batch(params, &mut sgd, data, &BATCH, &mut rng(2))
    });
    let mut streaming = StreamingSgdTrainer::<32>::boxed(0.01).unwrap();
    check_whole_network("StreamingSgdTrainer (f32)", |params, data| {
        streaming.train_batch(params, data, &BATCH, &mut rng(2))
    });
}

#[test]
fn the_8_bit_schedule_stops_above_the_bound_and_only_there() {
    let data = samples(8, 0);
    let mut streaming = StreamingSgdTrainer::<32, Book8>::boxed(0.01).unwrap();
    check_both_sides("StreamingSgdTrainer (8-bit)", |loss| {
        let mut params = Book8::boxed_params();
        Book8::init_glorot(&mut params, &mut rng(1));
        // dense2 is the last 1,010 values: its kernel, then its bias.
        let (kernel, bias) = params[49_300..].split_at_mut(1000);
        set_loss(
            bytemuck::from_bytes_mut(bytemuck::cast_slice_mut(kernel)),
            bytemuck::from_bytes_mut(bytemuck::cast_slice_mut(bias)),
            loss,
        );
        let before = params.clone();
        let result = streaming.train_batch(&mut params, &data[..], &BATCH, &mut rng(2));
        let unchanged = params
            .iter()
            .zip(before.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits());
        (result, unchanged)
    });
}

#[test]
fn the_last_layer_schedule_stops_above_the_bound_and_only_there() {
    let data = samples(8, 0);
    let params = params_with_loss(0.0);
    let mut trainer = HeadTrainer::<tinycnn::stack::Book>::boxed();
    check_both_sides("HeadTrainer", |loss| {
        let mut head = FashionHead::ZERO;
        set_loss(&mut head.kernel, &mut head.bias, loss);
        let before = head;
        let result = trainer.train_batch(
            &params,
            &mut head,
            &mut Sgd::new(0.01).unwrap(),
            &data[..],
            &BATCH,
        );
        (result, head.kernel == before.kernel && head.bias == before.bias)
    });
}

/// Counts the batches an epoch stepped.
#[derive(Default)]
struct Count {
    epoch: usize,
    batches: usize,
}

impl Progress for Count {
    fn batch_done(&mut self, epoch: usize, _batch: usize, _batches: usize, _loss: f32) {
        self.epoch = epoch;
        self.batches += 1;
    }
}

/// Half the samples of class 0: a batch of four with three or four of them
/// has a mean loss of at least 3/4 of 1,500, above the bound; one with two or
/// fewer at most 750, under it. So an epoch steps some batches, then stops.
const MIXED_LOSS: f32 = 1500.0;

/// The epoch number (from 0) of the epochs run below.
const NUMBER: usize = 2;

/// Runs `train` on an epoch of 64 samples, half of class 0, in batches of 4,
/// numbered [`NUMBER`], and checks that it stopped with a divergence named
/// after the batches it stepped, 1-based; returns how many it stepped.
fn check_located(
    schedule: &str,
    train: impl FnOnce(&[(Image, usize)], Epoch<'_, rand_pcg::Pcg32, &mut Count>) -> Result<f32, Error>,
) -> usize {
    let data = samples(64, 0);
    let mut order = vec![0u32; data.len()];
    let mut count = Count::default();
    let mut r = rng(5);
    let epoch = Epoch::new(&mut order, 4, &mut r)
        .number(NUMBER)
        .progress(&mut count);
    match train(&data, epoch) {
        Err(Error::Diverged(d)) => {
            assert_eq!(d.epoch, NUMBER + 1, "{schedule}: {d}");
            assert_eq!(d.batch, count.batches + 1, "{schedule}: {d}");
            assert!(d.loss > DIVERGED_LOSS, "{schedule}: {d}");
            assert!(
                count.batches > 0,
                "{schedule}: the test wants a batch stepped first"
            );
        }
        other => panic!("{schedule}: {other:?}"),
    }
    count.batches
}

#[test]
fn an_epoch_names_the_epoch_and_batch_that_diverged() {
    let mut sgd = Sgd::new(0.01).unwrap();
    let mut params = params_with_loss(MIXED_LOSS);
    let stepped = check_located("Trainer", |data, epoch| {
        FashionTrainer::boxed().train_epoch(&mut params, &mut sgd, data, epoch)
    });
    // The same permutation, so the same batch, on two threads.
    let mut params = params_with_loss(MIXED_LOSS);
    let mut parallel = {
        let mut t = ParallelTrainer::<tinycnn::stack::Book>::new(2).unwrap();
        t.set_dropout(0.0).unwrap();
        t
    };
    let parallel_stepped = check_located("ParallelTrainer", |data, epoch| {
        parallel.train_epoch(&mut params, &mut sgd, data, epoch)
    });
    assert_eq!(parallel_stepped, stepped);

    let mut params = params_with_loss(MIXED_LOSS);
    let mut streaming = StreamingSgdTrainer::<32>::boxed(0.01).unwrap();
    check_located("StreamingSgdTrainer", |data, epoch| {
        streaming.train_epoch(&mut *params, data, epoch)
    });

    let params = params_with_loss(0.0);
    let mut head = FashionHead::ZERO;
    set_loss(&mut head.kernel, &mut head.bias, MIXED_LOSS);
    check_located("HeadTrainer", |data, epoch| {
        HeadTrainer::<tinycnn::stack::Book>::boxed().train_epoch(&params, &mut head, &mut sgd, data, epoch)
    });
}

#[test]
fn fit_names_the_epoch_it_diverged_in() {
    let (data, validation) = (samples(64, 0), samples(8, 1));
    let mut order = vec![0u32; data.len()];
    let mut params = params_with_loss(MIXED_LOSS);
    let mut r = rng(5);
    let result: Result<tinycnn::train::History<4>, Error> = FashionTrainer::boxed().fit(
        &mut params,
        &mut Sgd::new(0.01).unwrap(),
        &data[..],
        &validation[..],
        4,
        Epoch::new(&mut order, 4, &mut r).number(6),
    );
    match result {
        Err(Error::Diverged(d)) => assert_eq!(d.epoch, 7, "{d}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_diverged_step_reads_as_one_line() {
    let e = Error::Diverged(Divergence {
        epoch: 3,
        batch: 12,
        loss: 3.1e22,
    });
    assert_eq!(
        e.to_string(),
        "training diverged at epoch 3, batch 12: loss 3.1e22"
    );
}
