//! Training with dense1's kernel in 8 bits: the stochastic rounding is
//! unbiased, a column's rescaling keeps its weights, the 8-bit step is the
//! `f32` step plus zero-mean rounding noise, and the network learns.
// Index loops mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use rand_core::RngCore;
use tinycnn::kernels::{
    add_outer_sparse, add_outer_stochastic, add_outer_stochastic_dense, add_stochastic, double_column_scale,
    Dither, FRACTION_BITS, GRID_MAX,
};
use tinycnn::model::Int8Kernel;
use tinycnn::stack::{Book, Book8, Stack, Workspace};
use tinycnn::train::{Epoch, StreamingSgdTrainer};
use tinycnn::{Error, FashionParams, FashionParams8, FashionWorkspace};

const ONE: f64 = (1u64 << FRACTION_BITS) as f64;

/// The mean of `draws` stochastic roundings of `value + update` (in steps),
/// each with a fresh stream seeded from `rng`, and the exact sum.
fn mean_rounding(value: i8, update: i32, draws: usize, rng: &mut impl RngCore) -> f64 {
    let mut sum = 0i64;
    let mut dither = Dither::new(rng.next_u32());
    for i in 0..draws {
        if i % 64 == 0 {
            dither = Dither::new(rng.next_u32());
        }
        sum += i64::from(add_stochastic(value, update, dither.next_draw()));
    }
    sum as f64 / draws as f64
}

#[test]
fn stochastic_rounding_is_unbiased_within_its_derived_tolerance() {
    // The result is floor(v + d) with v = value + update / 2^F and d the
    // dither over 2^F equally likely values: it rounds up with probability
    // exactly frac(v), so its mean is v and each draw has variance
    // frac(v) (1 - frac(v)) <= 1/4. The generator's top bits are uniform
    // over its period; over N draws the mean's standard deviation is at most
    // 1 / (2 sqrt(N)). Tolerance: six of those.
    let draws = 200_000;
    let tolerance = 6.0 * 0.5 / (draws as f64).sqrt();
    let mut r = rng(11);
    for (value, steps) in [
        (0i8, 0.3f64),
        (5, -0.75),
        (-17, 0.001),
        (100, 0.5),
        (-127, 0.9999),
        (3, 2.25),
    ] {
        let update = (steps * ONE) as i32;
        let exact = f64::from(value) + f64::from(update) / ONE;
        let mean = mean_rounding(value, update, draws, &mut r);
        assert!(
            (mean - exact).abs() < tolerance,
            "{value} + {steps}: mean {mean}, exact {exact}, tolerance {tolerance}"
        );
    }
}

#[test]
fn updates_far_below_one_step_do_not_vanish() {
    // 20,000 updates of a thousandth of a step: 20 steps on average, where
    // rounding to nearest would never move. Each update adds a step with
    // probability about 1/1000, so one weight's total has variance about 20;
    // the mean over 50 weights lies within 6 sqrt(20 / 50) = 3.8 steps of 20.
    let update = (ONE / 1000.0) as i32;
    let mut r = rng(5);
    let mut total = 0i64;
    for _ in 0..50 {
        let mut dither = Dither::new(r.next_u32());
        let mut value = 0i8;
        for _ in 0..20_000 {
            value = add_stochastic(value, update, dither.next_draw()) as i8;
        }
        total += i64::from(value);
    }
    let expected = 20_000.0 * f64::from(update) / ONE;
    let mean = total as f64 / 50.0;
    assert!((mean - expected).abs() < 3.8, "mean {mean}, expected {expected}");
    // Rounded to nearest, the same update leaves a weight where it was.
    assert_eq!((0.0f64 + 1.0 / 1000.0).round(), 0.0);
}

#[test]
fn doubling_a_column_scale_keeps_its_weights_within_half_the_new_step() {
    let mut r = rng(3);
    let mut values = [[0i8; 4]; 64];
    for v in values.as_flattened_mut() {
        *v = (r.next_u32() % 255) as i8;
    }
    let values_before = values;
    let mut scales = [0.01f32, 0.02, 0.03, 0.04];
    double_column_scale(&mut values, &mut scales, 2);
    assert_eq!(scales, [0.01, 0.02, 0.06, 0.04]);
    for (row, before) in values.iter().zip(&values_before) {
        for j in 0..4 {
            if j != 2 {
                assert_eq!(row[j], before[j], "other columns untouched");
                continue;
            }
            let old = f32::from(before[j]) * 0.03;
            let new = f32::from(row[j]) * 0.06;
            assert!((new - old).abs() <= 0.03 + 1e-6, "{old} -> {new}");
            if before[j] % 2 == 0 {
                assert_eq!(
                    new,
                    f32::from(before[j] / 2) * 0.06,
                    "even values are kept exactly"
                );
            }
        }
    }
    // Ties to even: the half-step errors cancel over a run of odd values.
    let odd: Vec<i8> = (-63..64).map(|k| 2 * k + 1).collect();
    let halved_sum: i32 = odd
        .iter()
        .map(|&v| i32::from(tinycnn::kernels::halve_to_even(v)))
        .sum();
    let exact_sum: i32 = odd.iter().map(|&v| i32::from(v)).sum::<i32>() / 2;
    assert!((halved_sum - exact_sum).abs() <= 1, "{halved_sum} vs {exact_sum}");
}

#[test]
fn an_update_beyond_the_grid_rescales_its_column_instead_of_clipping() {
    let mut values = [[120i8, 0], [-60, 5]];
    let mut scales = [0.1f32, 0.1];
    // +2.0 on weight (0, 0), 12.0 + 20 steps: past 127.
    let rescaled = add_outer_stochastic(&mut values, &mut scales, &[1.0, 0.0], &[2.0, 0.0], &mut rng(9));
    assert_eq!(rescaled, 1);
    assert_eq!(scales, [0.2, 0.1]);
    // 12.0 + 2.0 = 14.0 = 70 steps of 0.2; -6.0 = -30 steps.
    assert_eq!(values, [[70, 0], [-30, 5]]);
    assert!(values
        .as_flattened()
        .iter()
        .all(|v| (-GRID_MAX..=GRID_MAX).contains(v)));
}

/// The mean change of every weight, in steps, over `trials` updates of
/// `input (outer) delta` from the same start by `update`, against
/// `input * delta / scale`, within six standard deviations of the mean of
/// `trials` roundings (sqrt(p (1 - p) / trials), p the update's fraction).
fn check_unbiased<const IN: usize, const OUT: usize>(
    input: [f32; IN],
    delta: [f32; OUT],
    scales: [f32; OUT],
    trials: u32,
    mut update: impl FnMut(&mut [[i8; OUT]; IN], &mut [f32; OUT], &[f32; IN], &[f32; OUT]),
) {
    let mut sums = [[0i64; OUT]; IN];
    for _ in 0..trials {
        let mut values = [[10i8; OUT]; IN];
        let mut s = scales;
        update(&mut values, &mut s, &input, &delta);
        assert_eq!(s, scales, "no rescaling here");
        for i in 0..IN {
            for j in 0..OUT {
                sums[i][j] += i64::from(values[i][j]) - 10;
            }
        }
    }
    for i in 0..IN {
        for j in 0..OUT {
            let expected = f64::from(input[i]) * f64::from(delta[j]) / f64::from(scales[j]);
            let mean = sums[i][j] as f64 / f64::from(trials);
            let p = expected - expected.floor();
            let tolerance = 6.0 * (p * (1.0 - p) / f64::from(trials)).sqrt() + 1e-4;
            assert!(
                (mean - expected).abs() <= tolerance,
                "({i}, {j}): {mean} vs {expected}"
            );
        }
    }
}

#[test]
fn both_ways_of_rounding_a_kernel_update_are_unbiased_on_the_same_inputs() {
    // Under a step everywhere: the sparse draws, and the per-value dither.
    let small = (
        [0.7f32, 0.0, 1.3, 0.05],
        [0.004f32, -0.0025, 0.0, 0.0001],
        [0.01f32, 0.02, 0.01, 0.001],
    );
    // Over a step: per-value rounding only.
    let large = (
        [0.7f32, 0.0, 1.3, 0.05],
        [0.04f32, -0.025, 0.0, 0.01],
        [0.01f32, 0.02, 0.01, 0.001],
    );
    let mut r = rng(21);
    for (input, delta, scales) in [small, large] {
        check_unbiased(input, delta, scales, 20_000, |v, s, x, d| {
            add_outer_stochastic(v, s, x, d, &mut r);
        });
        check_unbiased(input, delta, scales, 20_000, |v, s, x, d| {
            add_outer_stochastic_dense(v, s, x, d, &mut Dither::new(r.next_u32()));
        });
    }
    let (input, delta, scales) = small;
    check_unbiased(input, delta, scales, 20_000, |v, s, x, d| {
        let mut steps = [0.0f32; 4];
        for j in 0..4 {
            steps[j] = d[j] / s[j];
        }
        add_outer_sparse(v, s, x, &mut steps, 1.3, &mut r);
    });
}

#[test]
fn the_sparse_draws_stay_unbiased_when_many_columns_move_in_a_row() {
    // 64 columns of 0.2 to 0.9 of a step for the largest input: a picked
    // row moves about 35 of them, so the chance that none has moved yet falls
    // below 2^-32 long before the last columns, which must still move as
    // often as their updates say.
    let delta: [f32; 64] =
        core::array::from_fn(|j| 0.2 + 0.7 * (j as f32 / 63.0) * if j % 3 == 0 { -1.0 } else { 1.0 });
    let scales = [1.0f32; 64];
    let input = [1.0f32, 0.5, 0.25, 0.03];
    let mut r = rng(31);
    check_unbiased(input, delta, scales, 20_000, |v, s, x, d| {
        add_outer_stochastic(v, s, x, d, &mut r);
    });
}

#[test]
fn a_sparse_update_moves_as_many_weights_as_the_updates_add_up_to() {
    // 2,000 rows of ten thousandths of a step, 100 columns: 0.0006 steps per
    // weight on average, 120 moves expected (each a Bernoulli draw; the count
    // has variance under 120: within 6 sqrt(120) = 66).
    let mut values = Box::new([[0i8; 100]; 2000]);
    let mut scales = [1.0f32; 100];
    let mut input = [0.0f32; 2000];
    for (i, x) in input.iter_mut().enumerate() {
        *x = (i % 7) as f32 / 6.0;
    }
    let delta = [0.0012f32; 100];
    let expected: f64 = input.iter().map(|&x| f64::from(x) * 0.0012 * 100.0).sum();
    add_outer_stochastic(&mut values, &mut scales, &input, &delta, &mut rng(4));
    let moved: i64 = values.as_flattened().iter().map(|&v| i64::from(v)).sum();
    assert!(values.as_flattened().iter().all(|&v| v == 0 || v == 1));
    assert!(
        (moved as f64 - expected).abs() < 6.0 * expected.sqrt(),
        "{moved} moves, {expected} expected"
    );
    for (row, &x) in values.iter().zip(&input) {
        if x == 0.0 {
            assert_eq!(row, &[0; 100], "a zero input moves nothing");
        }
    }
}

#[test]
fn a_kernel_quantizes_refuses_nan_and_comes_back_within_half_a_step() {
    let mut r = rng(2);
    let mut weights = [[0.0f32; 5]; 30];
    for w in weights.as_flattened_mut() {
        *w = (r.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.2;
    }
    let mut kernel = Int8Kernel::<30, 5>::zeroed();
    kernel.quantize(&weights).unwrap();
    let mut back = [[0.0f32; 5]; 30];
    kernel.dequantize(&mut back);
    for (row, original) in back.iter().zip(&weights) {
        for j in 0..5 {
            assert!((row[j] - original[j]).abs() <= kernel.scales[j] / 2.0 * 1.0001);
        }
    }
    assert!(kernel.values.as_flattened().iter().all(|v| v.abs() <= 64));
    let before = kernel.clone();
    weights[3][1] = f32::NAN;
    assert!(matches!(kernel.quantize(&weights), Err(Error::NonFinite { .. })));
    assert_eq!(kernel, before);
}

#[test]
fn the_8_bit_forward_pass_matches_its_f32_export() {
    let mut params8 = Book8::boxed_params();
    Book8::init_glorot(&mut params8, &mut rng(4));
    let mut exported = FashionParams::boxed();
    Book8::export::<Book>(&params8, &mut exported);
    let (mut a, mut b) = (Workspace::<Book8>::boxed(), FashionWorkspace::new());
    for (image, _) in band_images::<28, 28>(20, 10, 3) {
        let ours = *a.logits(&params8, &image).unwrap();
        let theirs = *exported.forward(&image, &mut b).unwrap();
        // dense1 takes its inputs in 13-bit fixed point (relative error 2^-14
        // of the largest): logits of about 0.1 move in the fifth decimal.
        for (x, y) in ours.iter().zip(&theirs) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{ours:?} vs {theirs:?}");
        }
    }
    let mut nan = [[0.0f32; 28]; 28];
    nan[3][3] = f32::NAN;
    assert!(matches!(a.logits(&params8, &nan), Err(Error::NonFinite { .. })));
    // Taken back from its export on its own scales, it is itself again.
    let mut scales = Vec::new();
    Book8::for_each_scales(&params8, |s| scales.extend_from_slice(s));
    let mut again = Book8::boxed_params();
    Book8::import::<Book>(&exported, &mut again, &scales).unwrap();
    assert!(bytemuck::bytes_of(&*again) == bytemuck::bytes_of(&*params8));
    // A NaN in the export or a scale of zero is refused, nothing written.
    let mut broken = exported.clone();
    broken.dense1_kernel[5][5] = f32::NAN;
    assert!(matches!(
        Book8::import::<Book>(&broken, &mut again, &[]),
        Err(Error::NonFinite { .. })
    ));
    scales[3] = 0.0;
    assert!(matches!(
        Book8::import::<Book>(&exported, &mut again, &scales),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(bytemuck::bytes_of(&*again) == bytemuck::bytes_of(&*params8));
}

#[test]
fn an_8_bit_step_is_the_f32_step_plus_zero_mean_rounding_noise() {
    let train = band_images::<28, 28>(32, 10, 1);
    let mut start8 = Book8::boxed_params();
    Book8::init_glorot(&mut start8, &mut rng(8));
    let mut start = FashionParams::boxed();
    Book8::export::<Book>(&start8, &mut start);
    let batch: Vec<u32> = (0..32).collect();
    let lr = 0.5;

    let mut stepped = start.clone();
    let mut trainer = StreamingSgdTrainer::<32>::boxed(lr).unwrap();
    trainer
        .train_batch(&mut *stepped, &train[..], &batch, &mut rng(1))
        .unwrap();
    let mut stepped8 = start8.clone();
    StreamingSgdTrainer::<32, Book8>::boxed(lr)
        .unwrap()
        .train_batch(&mut stepped8, &train[..], &batch, &mut rng(1))
        .unwrap();

    // The small layers take the same gradient, up to the forward pass's rounding.
    assert_all_close(
        stepped.dense2_kernel.as_flattened(),
        &stepped8[49_300..50_300],
        1e-5,
        1e-3,
        "dense2",
    );
    // dense1's change in steps: the f32 change plus noise of mean zero.
    let values =
        |p: &FashionParams8| -> Vec<i8> { bytemuck::cast_slice::<f32, i8>(&p[200..49_200]).to_vec() };
    let scales = &start8[100..200];
    assert_eq!(&stepped8[100..200], scales, "no column needed rescaling");
    let (values8, start_values8) = (values(&stepped8), values(&start8));
    let (mut noise_sum, mut moved, mut f32_moved, mut n) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for i in 0..1960 {
        for j in 0..100 {
            let exact = f64::from((stepped.dense1_kernel[i][j] - start.dense1_kernel[i][j]) / scales[j]);
            let rounded = f64::from(values8[i * 100 + j]) - f64::from(start_values8[i * 100 + j]);
            noise_sum += rounded - exact;
            moved += rounded.abs();
            f32_moved += exact.abs();
            n += 1;
        }
    }
    let mean_noise = noise_sum / n as f64;
    assert!(
        f32_moved / (n as f64) > 0.01,
        "the step moves dense1: {}",
        f32_moved / n as f64
    );
    assert!(mean_noise.abs() < 0.01, "mean rounding noise {mean_noise} steps");
    assert!(moved > 0.5 * f32_moved, "{moved} steps moved, {f32_moved} in f32");
}

#[test]
fn the_whole_network_learns_in_8_bits() {
    let train = band_images::<28, 28>(600, 10, 1);
    let validation = band_images::<28, 28>(200, 10, 2);
    let mut params = Book8::boxed_params();
    let mut r = rng(9);
    Book8::init_glorot(&mut params, &mut r);
    let mut trainer = StreamingSgdTrainer::<32, Book8>::boxed(0.05).unwrap();
    let before = trainer.evaluate(&params, &validation[..]).unwrap().accuracy;
    let mut order = vec![0u32; train.len()];
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
    // And its memory fits a 256 KiB microcontroller beside 2,000 samples' order.
    const {
        assert!(
            Book8::PARAMETER_BYTES + StreamingSgdTrainer::<32, Book8>::BYTES + 4 * 2000
                < 256 * 1024 - 7 * 1024
        )
    };
}

#[test]
fn the_same_seed_trains_the_same_8_bit_model() {
    let train = band_images::<28, 28>(128, 10, 1);
    let run = || {
        let mut params = Book8::boxed_params();
        let mut r = rng(6);
        Book8::init_glorot(&mut params, &mut r);
        let mut trainer = StreamingSgdTrainer::<32, Book8>::boxed(0.05).unwrap();
        let mut order = vec![0u32; train.len()];
        trainer
            .train_epoch(&mut *params, &train[..], Epoch::new(&mut order, 32, &mut r))
            .unwrap();
        params
    };
    // Compared by bytes: the 8-bit values' slots read as f32 may be NaN.
    assert!(bytemuck::bytes_of(&*run()) == bytemuck::bytes_of(&*run()));
}

#[test]
fn the_export_blob_streams_out_whole_or_stops_at_the_first_failed_write() {
    let mut params8 = Book8::boxed_params();
    Book8::init_glorot(&mut params8, &mut rng(12));
    let mut blob = Vec::new();
    let mut writes = 0;
    Book8::write_blob_with(&params8, |bytes| -> Result<(), ()> {
        assert!(bytes.len() <= 256, "no big buffer behind it");
        writes += 1;
        blob.extend_from_slice(bytes);
        Ok(())
    })
    .unwrap();
    assert_eq!(blob.len(), Book8::BLOB_BYTES);
    assert!(writes > 3000);
    // The blob is the f32 export's, as `write_blob` writes it.
    let mut exported = FashionParams::boxed();
    Book8::export::<Book>(&params8, &mut exported);
    let mut expected = vec![0u8; FashionParams::BLOB_BYTES];
    exported.write_blob(&mut expected).unwrap();
    assert!(blob == expected);
    // A sink that fails on its third write sees no fourth.
    let mut calls = 0;
    let result = Book8::write_blob_with(&params8, |_| {
        calls += 1;
        if calls == 3 {
            Err("disk full")
        } else {
            Ok(())
        }
    });
    assert_eq!((result, calls), (Err("disk full"), 3));
}
