//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod reference;

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg32;

pub fn rng(seed: u64) -> Pcg32 {
    Pcg32::seed_from_u64(seed)
}

/// Uniform in [lo, hi).
pub fn uniform(rng: &mut impl RngCore, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * ((rng.next_u32() >> 8) as f32 / 16_777_216.0)
}

pub fn random_vec(rng: &mut impl RngCore, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| uniform(rng, lo, hi)).collect()
}

pub fn random_array<const N: usize>(rng: &mut impl RngCore, lo: f32, hi: f32) -> [f32; N] {
    core::array::from_fn(|_| uniform(rng, lo, hi))
}

pub fn random_image<const H: usize, const W: usize>(rng: &mut impl RngCore) -> [[f32; W]; H] {
    core::array::from_fn(|_| random_array(rng, 0.0, 1.0))
}

/// A learnable synthetic problem at any size: class `c` of `classes` is a bright
/// horizontal band at a height set by the class, plus noise.
pub fn band_images<const H: usize, const W: usize>(
    n: usize,
    classes: usize,
    seed: u64,
) -> Vec<([[f32; W]; H], usize)> {
    let mut r = rng(seed);
    (0..n)
        .map(|i| {
            let label = i % classes;
            let mut image = [[0.0f32; W]; H];
            let row = label * H / classes;
            for (y, line) in image.iter_mut().enumerate() {
                for px in line.iter_mut() {
                    let band = if y == row || y == row + 1 { 0.8 } else { 0.0 };
                    *px = (band + uniform(&mut r, 0.0, 0.3)).min(1.0);
                }
            }
            (image, label)
        })
        .collect()
}

/// `|a - b| <= abs + rel * max(|a|, |b|)`
pub fn close(a: f32, b: f32, abs: f32, rel: f32) -> bool {
    (a - b).abs() <= abs + rel * a.abs().max(b.abs())
}

pub fn assert_all_close(a: &[f32], b: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(close(*x, *y, abs, rel), "{what}[{i}]: {x} vs {y}");
    }
}

/// An example binary that `cargo test` builds beside the tests
/// (target/<profile>/examples/NAME).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    // `cargo test` builds the examples; `cargo test --test NAME` alone does not.
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --examples` first",
        binary.display()
    );
    binary
}
