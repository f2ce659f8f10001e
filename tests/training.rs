//! Training on a small synthetic problem: it learns, it is reproducible, and
//! it refuses bad input without touching the parameters.
// Index loops mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use tinycnn::train::{Adam, AdamConfig, Epoch, History, Sgd, SgdMomentum};
use tinycnn::{Error, FashionParams, FashionTrainer, FashionWorkspace, ParamBuffer};

type Data = Vec<([[f32; 28]; 28], usize)>;

fn data() -> (Data, Data) {
    (
        band_images::<28, 28>(600, 10, 1),
        band_images::<28, 28>(200, 10, 2),
    )
}

/// Adam with dropout for `epochs`; returns the parameters and the history.
fn train_adam(seed: u64, epochs: usize) -> (Box<FashionParams>, History<8>) {
    let (train, validation) = data();
    let mut r = rng(seed);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut r);
    let mut trainer = FashionTrainer::boxed();
    trainer.set_dropout(0.5).unwrap();
    let mut adam = Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap();
    let mut order = vec![0u32; train.len()];
    let (epochs, batch_size) = (epochs, 32);
    let history = trainer
        .fit(
            &mut params,
            &mut *adam,
            &train[..],
            &validation[..],
            epochs,
            Epoch::new(&mut order, batch_size, &mut r),
        )
        .unwrap();
    (params, history)
}

#[test]
fn adam_with_dropout_learns_the_synthetic_problem() {
    let (params, history) = train_adam(3, 4);
    let first = history[0];
    let last = history[history.len() - 1];
    assert!(last.train_loss < first.train_loss * 0.5, "{history:?}");
    assert!(last.validation.loss < first.validation.loss, "{history:?}");
    assert!(last.validation.accuracy > 0.95, "{history:?}");
    // Chance is 0.1: an untrained network does not score like that.
    let (_, validation) = data();
    let mut untrained = FashionParams::boxed();
    untrained.init_glorot(&mut rng(3));
    let before = untrained
        .score(&validation[..], &mut FashionWorkspace::new())
        .unwrap();
    let after = params
        .score(&validation[..], &mut FashionWorkspace::new())
        .unwrap();
    assert!(before < 0.5 && after > 0.95, "before {before}, after {after}");
}

#[test]
fn the_same_seed_gives_bit_identical_weights() {
    let (a, history_a) = train_adam(21, 2);
    let (b, history_b) = train_adam(21, 2);
    let (c, _) = train_adam(22, 2);
    assert!(a
        .as_flat()
        .iter()
        .zip(b.as_flat())
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(history_a, history_b);
    assert_ne!(a.as_flat(), c.as_flat());
}

#[test]
fn sgd_and_momentum_lower_the_loss() {
    let (train, validation) = data();
    for momentum in [0.0, 0.9] {
        let mut r = rng(4);
        let mut params = FashionParams::boxed();
        params.init_glorot(&mut r);
        let mut trainer = FashionTrainer::boxed();
        let mut order = vec![0u32; train.len()];
        let (epochs, batch_size) = (3, 16);
        let history: History<3> = if momentum == 0.0 {
            let mut sgd = Sgd::new(0.05).unwrap();
            trainer.fit(
                &mut params,
                &mut sgd,
                &train[..],
                &validation[..],
                epochs,
                Epoch::new(&mut order, batch_size, &mut r),
            )
        } else {
            let mut opt = SgdMomentum::<FashionParams>::boxed(0.01, momentum).unwrap();
            trainer.fit(
                &mut params,
                &mut *opt,
                &train[..],
                &validation[..],
                epochs,
                Epoch::new(&mut order, batch_size, &mut r),
            )
        }
        .unwrap();
        assert!(
            history[2].train_loss < history[0].train_loss,
            "momentum {momentum}: {history:?}"
        );
        assert!(
            history[2].validation.accuracy > 0.5,
            "momentum {momentum}: {history:?}"
        );
    }
}

#[test]
fn progress_hooks_see_every_batch_and_epoch() {
    struct Seen {
        batches: Vec<(usize, usize, usize)>,
        epochs: usize,
    }
    impl tinycnn::train::Progress for Seen {
        fn batch_done(&mut self, epoch: usize, batch: usize, batches: usize, loss: f32) {
            assert!(loss.is_finite());
            self.batches.push((epoch, batch, batches));
        }
        fn epoch_done(&mut self, stats: &tinycnn::train::EpochStats) {
            assert_eq!(stats.epoch, self.epochs);
            self.epochs += 1;
        }
    }
    let (train, validation) = data();
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(1));
    let mut seen = Seen {
        batches: vec![],
        epochs: 0,
    };
    let mut order = vec![0u32; 600];
    let (epochs, batch_size) = (2, 128);
    let _: History<2> = FashionTrainer::boxed()
        .fit(
            &mut params,
            &mut Sgd::new(0.01).unwrap(),
            &train[..],
            &validation[..],
            epochs,
            Epoch::new(&mut order, batch_size, &mut rng(1)).progress(&mut seen),
        )
        .unwrap();
    // 600 / 128: four full batches per epoch, the partial one dropped.
    assert_eq!(seen.batches.len(), 8);
    assert_eq!(seen.batches[7], (1, 3, 4));
    assert_eq!(seen.epochs, 2);
}

#[test]
fn a_diverging_step_leaves_the_parameters_untouched() {
    let (train, _) = data();
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(5));
    // Logits finite but so far apart that the loss of label 1 overflows to infinity.
    params.dense2_bias[0] = f32::MAX;
    params.dense2_bias[1] = -f32::MAX;
    let before = params.clone();
    let mut trainer = FashionTrainer::boxed();
    let result = trainer.train_batch(
        &mut params,
        &mut Sgd::new(0.1).unwrap(),
        &train[..],
        &[0, 1, 2, 3],
        &mut rng(0),
    );
    assert!(matches!(result, Err(Error::Diverged(_))), "{result:?}");
    assert!(params
        .as_flat()
        .iter()
        .zip(before.as_flat())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn bad_samples_and_settings_are_refused() {
    let params = FashionParams::boxed();
    let mut trainer = FashionTrainer::boxed();
    let mut image = [[0.5f32; 28]; 28];
    image[3][4] = f32::NAN;
    assert_eq!(
        trainer.accumulate(&params, &image, 0, 1.0, &mut rng(0)),
        Err(Error::NonFinite { what: "image" })
    );
    assert_eq!(
        params.predict(&image, &mut FashionWorkspace::new()),
        Err(Error::NonFinite { what: "image" })
    );
    let ok = [[0.5f32; 28]; 28];
    assert_eq!(
        trainer.accumulate(&params, &ok, 10, 1.0, &mut rng(0)),
        Err(Error::LabelOutOfRange {
            label: 10,
            classes: 10
        })
    );
    assert!(trainer.set_dropout(-0.1).is_err() && trainer.set_dropout(f32::NAN).is_err());
    let (train, validation) = data();
    let mut params = FashionParams::boxed();
    let mut sgd = Sgd::new(0.1).unwrap();
    let mut short = vec![0u32; 10];
    let bad_order = trainer.train_epoch(
        &mut params,
        &mut sgd,
        &train[..],
        Epoch::new(&mut short, 32, &mut rng(0)),
    );
    assert!(matches!(bad_order, Err(Error::Length { .. })));
    let mut order = vec![0u32; 600];
    let zero_batch = trainer.train_epoch(
        &mut params,
        &mut sgd,
        &train[..],
        Epoch::new(&mut order, 0, &mut rng(0)),
    );
    assert!(matches!(zero_batch, Err(Error::InvalidConfig { .. })));
    let too_many: Result<History<2>, _> = trainer.fit(
        &mut params,
        &mut sgd,
        &train[..],
        &validation[..],
        3,
        Epoch::new(&mut order, 32, &mut rng(0)),
    );
    assert!(matches!(too_many, Err(Error::InvalidConfig { .. })));
    let empty: &[([[f32; 28]; 28], usize)] = &[];
    assert!(matches!(
        params.evaluate(empty, &mut FashionWorkspace::new()),
        Err(Error::Empty { .. })
    ));
}

// AIfES 2.2 on the same network needs 62,720 B to infer and
// 1,655,496 B (SGD) / 3,233,656 B (Adam) to train, beyond the parameters. Checked
// when the tests compile.
const _: () = assert!(FashionParams::INFERENCE_BYTES < 62_720);
const _: () = assert!(FashionParams::TRAINING_BYTES_SGD < 1_655_496);
const _: () = assert!(FashionParams::TRAINING_BYTES_ADAM < 3_233_656);

#[test]
fn streaming_sgd_equals_sgd_with_a_full_gradient() {
    let (train, _) = data();
    let mut start = FashionParams::boxed();
    start.init_glorot(&mut rng(8));
    let batch: Vec<u32> = (0..16).map(|i| i * 7).collect();

    let mut reference = start.clone();
    let loss_a = FashionTrainer::boxed()
        .train_batch(
            &mut reference,
            &mut Sgd::new(0.1).unwrap(),
            &train[..],
            &batch,
            &mut rng(0),
        )
        .unwrap();
    let mut streamed = start.clone();
    let mut trainer: Box<tinycnn::FashionStreamingSgdTrainer> = bytemuck::zeroed_box();
    trainer.configure(0.1, 0.0).unwrap();
    let loss_b = trainer
        .train_batch(&mut streamed, &train[..], &batch, &mut rng(0))
        .unwrap();

    assert!(close(loss_a, loss_b, 1e-6, 1e-6), "{loss_a} vs {loss_b}");
    assert_all_close(
        reference.as_flat(),
        streamed.as_flat(),
        1e-6,
        1e-4,
        "parameters after one step",
    );
    assert_ne!(streamed.as_flat(), start.as_flat());
    // Its memory stays far below a full gradient's.
    const { assert!(tinycnn::train::StreamingSgdTrainer::<32>::BYTES < 60_000) };
}

#[test]
fn streaming_sgd_with_dropout_learns_and_refuses_what_it_must() {
    let (train, validation) = data();
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(9));
    let mut trainer: Box<tinycnn::FashionStreamingSgdTrainer> = bytemuck::zeroed_box();
    let mut order = vec![0u32; train.len()];
    // Not configured yet: refused.
    assert!(matches!(
        trainer.train_epoch(&mut params, &train[..], Epoch::new(&mut order, 32, &mut rng(1))),
        Err(Error::InvalidConfig { .. })
    ));
    trainer.configure(0.05, 0.5).unwrap();
    let before = params
        .score(&validation[..], &mut FashionWorkspace::new())
        .unwrap();
    let mut r = rng(2);
    for epoch in 0..3 {
        trainer
            .train_epoch(
                &mut params,
                &train[..],
                Epoch::new(&mut order, 32, &mut r).number(epoch),
            )
            .unwrap();
    }
    let after = trainer.evaluate(&params, &validation[..]).unwrap().accuracy;
    assert!(after > 0.9 && after > before, "{before} -> {after}");
    let too_big: Vec<u32> = (0..33).collect();
    assert!(matches!(
        trainer.train_batch(&mut params, &train[..], &too_big, &mut r),
        Err(Error::Length { .. })
    ));
    // A diverging batch changes nothing.
    params.dense2_bias[0] = f32::MAX;
    params.dense2_bias[1] = -f32::MAX;
    let kept = params.clone();
    assert!(matches!(
        trainer.train_batch(&mut params, &train[..], &[0, 1, 2, 3], &mut r),
        Err(Error::Diverged(_))
    ));
    assert_eq!(params.as_flat(), kept.as_flat());
}

/// Two epochs of Adam on `threads` threads, with dropout `rate`.
fn train_parallel(threads: usize, rate: f32) -> Box<FashionParams> {
    let (train, _) = data();
    let mut r = rng(11);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut r);
    let mut trainer = {
        let mut t = tinycnn::host::ParallelTrainer::<tinycnn::stack::Book>::new(threads).unwrap();
        t.set_dropout(rate).unwrap();
        t
    };
    let mut adam = Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap();
    let mut order = vec![0u32; train.len()];
    for epoch in 0..2 {
        trainer
            .train_epoch(
                &mut params,
                &mut *adam,
                &train[..],
                Epoch::new(&mut order, 32, &mut r).number(epoch),
            )
            .unwrap();
    }
    params
}

#[test]
fn parallel_training_is_reproducible_and_agrees_across_thread_counts() {
    // Same seed and thread count: the same parameters, bit for bit, with the
    // gradient sum and the optimizer step spread over the threads.
    let a = train_parallel(2, 0.5);
    assert_eq!(a.as_flat(), train_parallel(2, 0.5).as_flat());
    // Dropout masks come from per-sample seeds, so the thread count only
    // changes the order the gradient is summed in: rounding, nothing more.
    let one = train_parallel(1, 0.5);
    let three = train_parallel(3, 0.5);
    let most = one
        .as_flat()
        .iter()
        .zip(three.as_flat())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(most < 1e-3, "1 and 3 threads differ by {most}");
    assert_ne!(
        one.as_flat(),
        a.as_flat(),
        "threads should change the rounding somewhere"
    );
}

#[test]
fn parallel_training_refuses_bad_batches_without_touching_the_parameters() {
    let (mut train, _) = data();
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(6));
    let before = params.clone();
    let unchanged = |params: &FashionParams| {
        params
            .as_flat()
            .iter()
            .zip(before.as_flat())
            .all(|(a, b)| a.to_bits() == b.to_bits())
    };
    let mut trainer = {
        let mut t = tinycnn::host::ParallelTrainer::<tinycnn::stack::Book>::new(2).unwrap();
        t.set_dropout(0.5).unwrap();
        t
    };
    let mut adam = Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap();
    // A NaN pixel in the second thread's share of the batch.
    train[6].0[10][10] = f32::NAN;
    let result = trainer.train_batch(
        &mut params,
        &mut *adam,
        &train[..],
        &[0, 1, 2, 3, 4, 5, 6, 7],
        &mut rng(0),
    );
    assert_eq!(result, Err(Error::NonFinite { what: "image" }));
    assert!(unchanged(&params));
    assert_eq!(adam.steps(), 0, "the optimizer must not have stepped");
    // A loss that overflows: the gradient sum is checked before any piece steps.
    params.dense2_bias[0] = f32::MAX;
    params.dense2_bias[1] = -f32::MAX;
    let before = params.clone();
    let result = trainer.train_batch(&mut params, &mut *adam, &train[..], &[0, 1, 2, 3], &mut rng(0));
    assert!(matches!(result, Err(Error::Diverged(_))), "{result:?}");
    assert_eq!(params.as_flat(), before.as_flat());
    assert_eq!(adam.steps(), 0);
    // A sample index past the end.
    let result = trainer.train_batch(&mut params, &mut *adam, &train[..], &[0, 100_000], &mut rng(0));
    assert!(matches!(result, Err(Error::IndexOutOfRange { .. })), "{result:?}");
}

#[test]
fn dropout_keeps_the_expected_share_independently_and_draws_anew_each_call() {
    let n = 200_000;
    for rate in [0.1f32, 0.3, 0.5, 0.9] {
        let mut r = rng(7);
        let mut first = vec![1.0f32; n];
        tinycnn::train::dropout(&mut first, rate, &mut r);
        let keep = 1.0 - f64::from(rate);
        let scale = 1.0 / (1.0 - rate);
        assert!(
            first.iter().all(|&x| x == 0.0 || x == scale),
            "rate {rate}: kept values scaled"
        );
        let kept = first.iter().filter(|&&x| x != 0.0).count() as f64 / n as f64;
        let sd = (keep * (1.0 - keep) / n as f64).sqrt();
        assert!((kept - keep).abs() < 5.0 * sd, "rate {rate}: kept {kept}");
        // Neighbours (within one 64-bit draw and across two) are independent.
        let both = first.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64 / (n - 1) as f64;
        let sd = (keep * keep * (1.0 - keep * keep) / n as f64).sqrt();
        assert!(
            (both - keep * keep).abs() < 6.0 * sd,
            "rate {rate}: neighbours kept {both}"
        );
        // The next call draws a new mask; the same RNG state the same one.
        let mut second = vec![1.0f32; n];
        tinycnn::train::dropout(&mut second, rate, &mut r);
        assert_ne!(first, second, "rate {rate}");
        let mut again = vec![1.0f32; n];
        tinycnn::train::dropout(&mut again, rate, &mut rng(7));
        assert_eq!(first, again, "rate {rate}");
    }
}
