//! Inference on a batch gives what one image at a time gives, to the bit,
//! and refuses bad input before writing anything.

mod common;
use common::*;
use std::path::Path;
use tinycnn::data::Samples;
use tinycnn::BatchWorkspace;
use tinycnn::{Error, FashionParams, Params, Workspace};

fn shipped_params() -> Box<FashionParams> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/board/fashion-adam.tcnn");
    tinycnn::host::load_blob(&path).unwrap()
}

fn fashion_images(n: usize) -> Vec<[[f32; 28]; 28]> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let data = tinycnn::host::FashionMnist::load(&dir).unwrap();
    let mut images = vec![[[0.0f32; 28]; 28]; n];
    for (i, image) in images.iter_mut().enumerate() {
        data.test().read(i, image).unwrap();
    }
    images
}

/// Logits of `images` one at a time.
fn one_by_one<
    const H: usize,
    const W: usize,
    const K: usize,
    const F: usize,
    const D: usize,
    const C: usize,
>(
    params: &Params<H, W, K, F, D, C>,
    images: &[[[f32; W]; H]],
) -> Vec<[f32; C]> {
    let mut ws = Workspace::new();
    images
        .iter()
        .map(|image| *params.forward(image, &mut ws).unwrap())
        .collect()
}

#[test]
fn a_batch_of_fashion_images_gets_the_logits_of_one_at_a_time_to_the_bit() {
    let params = shipped_params();
    let images = fashion_images(16);
    let mut ws = BatchWorkspace::<16>::boxed();
    let batch = params.forward_batch(&images, &mut ws).unwrap().to_vec();
    let single = one_by_one(&params, &images);
    assert_eq!(batch.len(), 16);
    for (i, (b, s)) in batch.iter().zip(&single).enumerate() {
        assert_eq!(b.map(f32::to_bits), s.map(f32::to_bits), "image {i}");
    }
    // A shorter batch in the same (now used) workspace.
    let again = params.forward_batch(&images[3..8], &mut ws).unwrap();
    assert_eq!(again, &single[3..8]);
}

/// A model whose dense1 has `D` units (vector blocks, a tail quad, a scalar
/// rest, or only some of them), on random images, through batches of 3.
fn odd_sizes_match<const D: usize>(seed: u64) {
    let mut r = rng(seed);
    let mut params = Params::<6, 10, 3, 45, D, 4>::zeroed();
    params.init_glorot(&mut r);
    params.dense1_bias = random_array(&mut r, -0.1, 0.1);
    let images: Vec<[[f32; 10]; 6]> = (0..8).map(|_| random_image(&mut r)).collect();
    let single = one_by_one(&params, &images);
    let mut ws = BatchWorkspace::<3, 45, D, 4>::new();
    for (chunk, expected) in images.chunks(3).zip(single.chunks(3)) {
        assert_eq!(
            params.forward_batch(chunk, &mut ws).unwrap(),
            expected,
            "{D} units"
        );
    }
    let mut classes = vec![usize::MAX; images.len()];
    params.predict_batch(&images, &mut classes, &mut ws).unwrap();
    let expected: Vec<usize> = single.iter().map(|logits| tinycnn::argmax(logits)).collect();
    assert_eq!(classes, expected, "{D} units");
}

#[test]
fn batches_match_one_at_a_time_for_every_kind_of_layer_width() {
    odd_sizes_match::<1>(1);
    odd_sizes_match::<4>(2);
    odd_sizes_match::<7>(3);
    odd_sizes_match::<8>(4);
    odd_sizes_match::<13>(5);
    odd_sizes_match::<16>(6);
    odd_sizes_match::<21>(7);
    odd_sizes_match::<100>(8);
    odd_sizes_match::<111>(9);
}

#[test]
fn predict_batch_classifies_more_images_than_a_batch_holds() {
    let params = shipped_params();
    let images = fashion_images(37);
    let mut classes = vec![usize::MAX; 37];
    params
        .predict_batch(&images, &mut classes, &mut BatchWorkspace::<8>::boxed())
        .unwrap();
    let mut ws = Workspace::new();
    let expected: Vec<usize> = images
        .iter()
        .map(|im| params.predict(im, &mut ws).unwrap())
        .collect();
    assert_eq!(classes, expected);
    // The shipped model is right about most of them.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let data = tinycnn::host::FashionMnist::load(&dir).unwrap();
    let mut image = [[0.0f32; 28]; 28];
    let right = (0..37)
        .filter(|&i| data.test().read(i, &mut image).unwrap() == classes[i])
        .count();
    assert!(right >= 30, "{right} of 37 right");
}

#[test]
fn bad_batches_are_refused_before_anything_is_written() {
    let params = shipped_params();
    let mut images = fashion_images(5);
    let mut ws = BatchWorkspace::<4>::boxed();
    assert_eq!(
        params.forward_batch(&images, &mut ws),
        Err(Error::Length {
            what: "batch of images (at most the workspace's batch)",
            expected: 4,
            found: 5
        })
    );
    let mut classes = vec![7usize; 4];
    assert!(matches!(
        params.predict_batch(&images, &mut classes, &mut ws),
        Err(Error::Length {
            expected: 5,
            found: 4,
            ..
        })
    ));
    images[4][27][3] = f32::NAN;
    let mut classes = vec![7usize; 5];
    assert_eq!(
        params.predict_batch(&images, &mut classes, &mut ws),
        Err(Error::NonFinite { what: "image" })
    );
    assert_eq!(classes, [7; 5], "no class written before the bad image was found");
    assert_eq!(
        params.forward_batch(&images[3..], &mut ws),
        Err(Error::NonFinite { what: "image" })
    );
}
