//! Every training schedule against the one per-sample pass: the gradient of
//! the parameters each one trains against central finite differences of an
//! independent f64 forward pass, and each schedule's step against the
//! one-thread `Trainer` where it claims to match it bit for bit.
// Index loops mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

mod common;
use common::reference;
use common::*;
use rand_core::RngCore;
use tinycnn::train::{Head, HeadTrainer, Optimizer, Sgd, StreamingSgdTrainer};
use tinycnn::{FashionParams, FashionTrainer, ParamBuffer};

const BATCH: usize = 4;
type Image = [[f32; 28]; 28];

/// Glorot weights with non-zero biases, and a batch of random images.
fn setup() -> (Box<FashionParams>, Vec<(Image, usize)>) {
    let mut r = rng(21);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut r);
    for bias in [
        &mut params.conv_bias[..],
        &mut params.dense1_bias[..],
        &mut params.dense2_bias[..],
    ] {
        bias.iter_mut().for_each(|b| *b = uniform(&mut r, -0.1, 0.1));
    }
    let batch = (0..BATCH).map(|i| (random_image(&mut r), i * 7 % 10)).collect();
    (params, batch)
}

/// The reference mean loss of the batch, no dropout.
fn reference_loss(params: &FashionParams, batch: &[(Image, usize)]) -> f64 {
    batch
        .iter()
        .map(|(image, label)| reference::loss(params, &reference::to_f64(image), *label, None))
        .sum::<f64>()
        / batch.len() as f64
}

/// The gradient a step of plain SGD with rate 1 took: `before - after`,
/// exact in f64 up to the rounding of `after`.
fn step_taken(before: &[f32], after: &[f32]) -> Vec<f32> {
    before
        .iter()
        .zip(after)
        .map(|(&b, &a)| (f64::from(b) - f64::from(a)) as f32)
        .collect()
}

/// Central differences of the reference loss at the largest and some random
/// entries of each tensor in `tensors` (name, first flat index, length),
/// against `grads` (the model's flat layout).
fn check_against_finite_differences(
    params: &FashionParams,
    batch: &[(Image, usize)],
    grads: &[f32],
    tensors: &[(&str, usize, usize)],
) {
    let mut probe = *params;
    let eps = 1e-5f32;
    let mut r = rng(5);
    for &(name, start, len) in tensors {
        let mut by_size: Vec<usize> = (start..start + len).collect();
        by_size.sort_by(|&a, &b| grads[b].abs().total_cmp(&grads[a].abs()));
        assert!(grads[by_size[0]].abs() > 1e-4, "{name}: the gradient is all zero");
        let mut picked: Vec<usize> = by_size[..6.min(len)].to_vec();
        picked.extend((0..6).map(|_| start + (r.next_u32() as usize % len)));
        for i in picked {
            let original = probe.as_flat()[i];
            let (above, below) = (original + eps, original - eps);
            probe.as_flat_mut()[i] = above;
            let up = reference_loss(&probe, batch);
            probe.as_flat_mut()[i] = below;
            let down = reference_loss(&probe, batch);
            probe.as_flat_mut()[i] = original;
            let numeric = ((up - down) / (f64::from(above) - f64::from(below))) as f32;
            assert!(
                close(numeric, grads[i], 2e-5, 2e-3),
                "{name}: entry {i}: numeric {numeric} vs the schedule's {}",
                grads[i]
            );
        }
    }
}

/// Where each tensor starts in the flat view, and its length.
const TENSORS: [(&str, usize, usize); 6] = [
    ("conv.kernel", 0, 90),
    ("conv.bias", 90, 10),
    ("dense1.kernel", 100, 196_000),
    ("dense1.bias", 196_100, 100),
    ("dense2.kernel", 196_200, 1000),
    ("dense2.bias", 197_200, 10),
];

#[test]
fn the_last_layer_schedule_steps_along_the_gradient_of_its_layer() {
    let (params, batch) = setup();
    let mut head = Head::from_params(&*params);
    let before = head;
    let indices: Vec<u32> = (0..BATCH as u32).collect();
    HeadTrainer::<tinycnn::stack::Book>::new()
        .train_batch(
            &*params,
            &mut head,
            &mut Sgd::new(1.0).unwrap(),
            &batch[..],
            &indices,
        )
        .unwrap();
    // The head's layout is dense2's: kernel, then bias.
    let mut grads = vec![0.0f32; FashionParams::COUNT];
    grads[196_200..].copy_from_slice(&step_taken(before.as_flat(), head.as_flat()));
    check_against_finite_differences(&params, &batch, &grads, &TENSORS[4..]);
}

#[test]
fn the_streaming_schedule_steps_along_the_gradient_of_every_tensor() {
    let (params, batch) = setup();
    let mut stepped = params.clone();
    let indices: Vec<u32> = (0..BATCH as u32).collect();
    StreamingSgdTrainer::<BATCH>::boxed(1.0)
        .unwrap()
        .train_batch(&mut stepped, &batch[..], &indices, &mut rng(1))
        .unwrap();
    let grads = step_taken(params.as_flat(), stepped.as_flat());
    check_against_finite_differences(&params, &batch, &grads, &TENSORS);
}

/// `Trainer`'s gradient of the batch (no dropout) and its SGD step.
fn trainer_step(params: &FashionParams, batch: &[(Image, usize)], lr: f32) -> (Box<FashionParams>, Vec<f32>) {
    let mut trainer = FashionTrainer::boxed();
    for (image, label) in batch {
        trainer
            .accumulate(params, image, *label, 1.0 / batch.len() as f32, &mut rng(0))
            .unwrap();
    }
    let mut stepped = Box::new(*params);
    Sgd::new(lr)
        .unwrap()
        .step(stepped.as_flat_mut(), trainer.gradients().as_flat())
        .unwrap();
    (stepped, trainer.gradients().as_flat().to_vec())
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_last_layer_schedule_is_the_trainers_step_of_that_layer_bit_for_bit() {
    let (params, batch) = setup();
    let (expected, _) = trainer_step(&params, &batch, 0.05);
    let mut head = Head::from_params(&*params);
    let indices: Vec<u32> = (0..BATCH as u32).collect();
    HeadTrainer::<tinycnn::stack::Book>::new()
        .train_batch(
            &*params,
            &mut head,
            &mut Sgd::new(0.05).unwrap(),
            &batch[..],
            &indices,
        )
        .unwrap();
    assert_eq!(bits(head.as_flat()), bits(&expected.as_flat()[196_200..]));
    assert_ne!(head, Head::from_params(&*params), "the step moved the head");
}

/// The streaming schedule sums every gradient but dense1's kernel as the
/// trainer does, so those step to the bit; dense1's kernel takes the batch's
/// terms one sample at a time, which rounds differently.
#[test]
fn the_streaming_schedule_is_the_trainers_step_to_the_bit_but_for_dense1s_kernel() {
    let (params, batch) = setup();
    let (expected, grads) = trainer_step(&params, &batch, 0.05);
    let mut stepped = params.clone();
    let indices: Vec<u32> = (0..BATCH as u32).collect();
    StreamingSgdTrainer::<BATCH>::boxed(0.05)
        .unwrap()
        .train_batch(&mut stepped, &batch[..], &indices, &mut rng(1))
        .unwrap();
    let (a, b) = (stepped.as_flat(), expected.as_flat());
    assert_eq!(bits(&a[..100]), bits(&b[..100]), "conv");
    assert_eq!(bits(&a[196_100..]), bits(&b[196_100..]), "dense1 bias and dense2");
    // One rounding of the weight per sample against one for the batch,
    // and the rounding of the terms themselves.
    for i in 100..196_100 {
        let moved = 0.05 * grads[i].abs();
        assert!(
            (a[i] - b[i]).abs() <= 1e-6 * moved + (BATCH + 1) as f32 * f32::EPSILON * b[i].abs(),
            "dense1 kernel entry {}: {} vs {}",
            i - 100,
            a[i],
            b[i]
        );
    }
    assert_ne!(bits(&a[100..196_100]), bits(&params.as_flat()[100..196_100]));
}
