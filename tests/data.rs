//! IDX parsing, splitting and subsets.
// Index loops mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use tinycnn::data::{split_stratified, IdxDataset, IdxImages, IdxLabels, Samples, Subset};
use tinycnn::Error;

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend(labels);
    v
}

#[test]
fn images_and_labels_parse_and_read_scaled() {
    let pixels: Vec<u8> = (0..2 * 28 * 28).map(|i| (i % 256) as u8).collect();
    let file = idx_images(2, 28, 28, &pixels);
    let labels = idx_labels(&[3, 9]);
    let data = IdxDataset::<28, 28>::new(
        IdxImages::parse(&file).unwrap(),
        IdxLabels::parse(&labels).unwrap(),
    )
    .unwrap();
    let mut image = [[0.0f32; 28]; 28];
    assert_eq!(data.read(1, &mut image), Ok(9));
    // Image 1 starts at pixel 784: 784 % 256 = 16.
    assert_eq!(image[0][0], 16.0 / 255.0);
    assert_eq!(image[0][1], 17.0 / 255.0);
    assert_eq!(
        data.read(2, &mut image),
        Err(Error::IndexOutOfRange { index: 2, len: 2 })
    );
}

#[test]
fn malformed_files_are_refused_with_the_reason() {
    let good = idx_images(1, 2, 2, &[1, 2, 3, 4]);
    assert!(IdxImages::parse(&good).is_ok());
    let mut wrong_magic = good.clone();
    wrong_magic[3] = 1;
    assert_eq!(
        IdxImages::parse(&wrong_magic).unwrap_err(),
        Error::BadMagic {
            what: "IDX image file",
            found: 0x801
        }
    );
    assert!(matches!(
        IdxImages::parse(&good[..good.len() - 1]),
        Err(Error::Length {
            expected: 20,
            found: 19,
            ..
        })
    ));
    assert!(matches!(IdxImages::parse(&good[..7]), Err(Error::Length { .. })));
    assert!(matches!(IdxImages::parse(&[]), Err(Error::Length { .. })));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(IdxImages::parse(&trailing), Err(Error::Length { .. })));
    // Dimensions whose product overflows.
    let huge = idx_images(u32::MAX, u32::MAX, u32::MAX, &[]);
    assert!(IdxImages::parse(&huge).is_err());
    assert!(matches!(IdxLabels::parse(&good), Err(Error::BadMagic { .. })));
    // Counts and sizes that disagree with each other or with the model.
    let images = IdxImages::parse(&good).unwrap();
    let two_labels = idx_labels(&[0, 1]);
    let err = IdxDataset::<2, 2>::new(images, IdxLabels::parse(&two_labels).unwrap()).unwrap_err();
    assert!(err.to_string().contains("different numbers"), "{err}");
    let one_label = idx_labels(&[0]);
    assert!(matches!(
        IdxDataset::<28, 28>::new(images, IdxLabels::parse(&one_label).unwrap()),
        Err(Error::Dimensions { .. })
    ));
}

#[test]
fn the_split_is_stratified_disjoint_and_seeded() {
    let labels: Vec<u8> = (0..1000u32).map(|i| ((i * 7 + i / 13) % 10) as u8).collect();
    let mut out = vec![0u32; 1000];
    let n_val = split_stratified::<10>(&labels, 0.2, &mut rng(42), &mut out).unwrap();
    let (val, train) = out.split_at(n_val);
    let mut per_class = [0usize; 10];
    let mut totals = [0usize; 10];
    val.iter()
        .for_each(|&i| per_class[labels[i as usize] as usize] += 1);
    labels.iter().for_each(|&l| totals[l as usize] += 1);
    for c in 0..10 {
        assert_eq!(per_class[c], (totals[c] as f32 * 0.2).round() as usize);
    }
    let mut all: Vec<u32> = out.clone();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert!(val.windows(2).all(|w| w[0] < w[1]) && train.windows(2).all(|w| w[0] < w[1]));
    let mut again = vec![0u32; 1000];
    split_stratified::<10>(&labels, 0.2, &mut rng(42), &mut again).unwrap();
    assert_eq!(out, again);
    split_stratified::<10>(&labels, 0.2, &mut rng(43), &mut again).unwrap();
    assert_ne!(out, again);
    assert!(split_stratified::<10>(&labels, 1.5, &mut rng(0), &mut again).is_err());
    assert!(split_stratified::<5>(&labels, 0.2, &mut rng(0), &mut again).is_err());
    assert!(split_stratified::<10>(&labels, 0.2, &mut rng(0), &mut again[..10]).is_err());
}

#[test]
fn subsets_read_through_their_indices() {
    let data = band_images::<4, 4>(10, 5, 0);
    let picked = Subset::new(&data[..], &[9, 0, 42]);
    let mut image = [[0.0f32; 4]; 4];
    assert_eq!(picked.read(0, &mut image), Ok(4));
    assert_eq!(image, data[9].0);
    assert_eq!(
        picked.read(2, &mut image),
        Err(Error::IndexOutOfRange { index: 42, len: 10 })
    );
    assert_eq!(
        picked.read(3, &mut image),
        Err(Error::IndexOutOfRange { index: 3, len: 3 })
    );
}
