//! Backward against central finite differences of an independent f64 forward
//! pass, for a sample of every parameter tensor and of the input, at the
//! default sizes, with and without a fixed dropout mask.
// Index loops mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

mod common;
use common::reference;
use common::*;
use rand_core::RngCore;
use tinycnn::{FashionParams, FashionTrainer, ParamBuffer};

const BATCH: usize = 3;
const MASK_SEED: u64 = 99;
type Image = [[f32; 28]; 28];

struct Setup {
    params: Box<FashionParams>,
    trainer: Box<FashionTrainer>,
    batch: Vec<(Image, usize)>,
    dropout: f32,
}

fn setup(dropout: f32) -> Setup {
    let mut r = rng(11);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut r);
    // Non-zero biases, so their gradients are exercised away from the symmetric start.
    params
        .conv_bias
        .iter_mut()
        .for_each(|b| *b = uniform(&mut r, -0.1, 0.1));
    params
        .dense1_bias
        .iter_mut()
        .for_each(|b| *b = uniform(&mut r, -0.1, 0.1));
    params
        .dense2_bias
        .iter_mut()
        .for_each(|b| *b = uniform(&mut r, -0.1, 0.1));
    let mut trainer = FashionTrainer::boxed();
    trainer.set_dropout(dropout).unwrap();
    let batch = (0..BATCH).map(|i| (random_image(&mut r), i * 3 % 10)).collect();
    Setup {
        params,
        trainer,
        batch,
        dropout,
    }
}

/// The crate's mean gradient over the batch, masks drawn from `MASK_SEED`.
fn backward(s: &mut Setup) -> Vec<f32> {
    s.trainer.zero_gradients();
    let mut masks = rng(MASK_SEED);
    for (image, label) in &s.batch {
        s.trainer
            .accumulate(&s.params, image, *label, 1.0 / BATCH as f32, &mut masks)
            .unwrap();
    }
    s.trainer.gradients().as_flat().to_vec()
}

/// The reference mean loss, with the masks the crate drew.
fn reference_loss(s: &Setup, params: &FashionParams) -> f64 {
    let mut masks = rng(MASK_SEED);
    s.batch
        .iter()
        .map(|(image, label)| {
            let mask = (s.dropout > 0.0).then(|| reference::dropout_mask(&mut masks, s.dropout));
            let dropout = mask.as_deref().map(|m| (m, f64::from(s.dropout)));
            reference::loss(params, &reference::to_f64(image), *label, dropout)
        })
        .sum::<f64>()
        / BATCH as f64
}

fn check_all_tensors(dropout: f32) {
    let mut s = setup(dropout);
    let grads = backward(&mut s);
    let sizes = [
        ("conv.kernel", 90),
        ("conv.bias", 10),
        ("dense1.kernel", 196_000),
        ("dense1.bias", 100),
        ("dense2.kernel", 1000),
        ("dense2.bias", 10),
    ];
    let mut probe = s.params.clone();
    let eps = 1e-5f32;
    let mut r = rng(5);
    let mut start = 0;
    for (name, len) in sizes {
        // Its largest gradients and some random entries.
        let mut by_size: Vec<usize> = (start..start + len).collect();
        by_size.sort_by(|&a, &b| grads[b].abs().total_cmp(&grads[a].abs()));
        assert!(grads[by_size[0]].abs() > 1e-4, "{name}: the gradient is all zero");
        let mut picked: Vec<usize> = by_size[..6.min(len)].to_vec();
        picked.extend((0..6).map(|_| start + (r.next_u32() as usize % len)));
        for i in picked {
            let original = probe.as_flat()[i];
            let (above, below) = (original + eps, original - eps);
            probe.as_flat_mut()[i] = above;
            let up = reference_loss(&s, &probe);
            probe.as_flat_mut()[i] = below;
            let down = reference_loss(&s, &probe);
            probe.as_flat_mut()[i] = original;
            // The step actually taken, exactly: both ends are f32 values.
            let numeric = ((up - down) / (f64::from(above) - f64::from(below))) as f32;
            assert!(
                close(numeric, grads[i], 1e-5, 1e-3),
                "{name}: entry {i}: numeric {numeric} vs backward {}",
                grads[i]
            );
        }
        start += len;
    }
    assert_eq!(start, FashionParams::COUNT);
}

#[test]
fn gradients_match_finite_differences() {
    check_all_tensors(0.0);
}

#[test]
fn gradients_match_finite_differences_with_a_fixed_dropout_mask() {
    check_all_tensors(0.5);
}

#[test]
fn input_gradient_matches_finite_differences() {
    for dropout in [0.0, 0.5] {
        let s = setup(dropout);
        let mut trainer = FashionTrainer::boxed();
        trainer.set_dropout(dropout).unwrap();
        let (image, label) = s.batch[0];
        let mut image_grad = [[0.0f32; 28]; 28];
        trainer
            .accumulate_with_input_grad(&s.params, &image, label, &mut rng(MASK_SEED), &mut image_grad)
            .unwrap();
        let flat = image_grad.as_flattened().to_vec();
        let mask = (dropout > 0.0).then(|| reference::dropout_mask(&mut rng(MASK_SEED), dropout));
        let mut by_size: Vec<usize> = (0..784).collect();
        by_size.sort_by(|&a, &b| flat[b].abs().total_cmp(&flat[a].abs()));
        assert!(flat[by_size[0]].abs() > 1e-3);
        let mut picked = by_size[..8].to_vec();
        picked.extend([0, 27, 400, 783]);
        let eps = 1e-6;
        for i in picked {
            let loss_at = |delta: f64| {
                let mut probe = reference::to_f64(&image);
                probe.as_flattened_mut()[i] += delta;
                reference::loss(
                    &s.params,
                    &probe,
                    label,
                    mask.as_deref().map(|m| (m, f64::from(dropout))),
                )
            };
            let numeric = ((loss_at(eps) - loss_at(-eps)) / (2.0 * eps)) as f32;
            assert!(
                close(numeric, flat[i], 1e-5, 1e-3),
                "pixel {i}: numeric {numeric} vs backward {}",
                flat[i]
            );
        }
    }
}
