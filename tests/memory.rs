//! The memory figures: each constant equals what its type holds, counted by
//! hand from the network's shapes, and the README's memory table states the
//! constants' values, so neither can drift from the other.

use tinycnn::stack::{Book, Book8, Stack};
use tinycnn::train::{Adam, AdamConfig, HeadTrainer, StreamingSgdTrainer};
use tinycnn::{FashionParams, FashionParams8, Params};

// The default network's shapes.
const K: usize = 10;
const H: usize = 28;
const W: usize = 28;
const FLAT: usize = 1960;
const HIDDEN: usize = 100;
const CLASSES: usize = 10;
const F32: usize = 4;

/// `n` rounded up to a multiple of `align`.
const fn padded(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

/// The parameters' values: conv kernel and bias, dense1, dense2.
const PARAMETERS: usize = 3 * 3 * K + K + FLAT * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES;
/// The forward pass's maps: pooled, hidden, logits.
const MAPS: usize = FLAT + HIDDEN + CLASSES;
/// The fused convolution's two rows of `K` channels, on the stack.
const CONV_ROWS: usize = 2 * K * W;

#[test]
fn each_constant_is_what_its_type_holds() {
    assert_eq!(PARAMETERS, 197_210);
    assert_eq!(FashionParams::BYTES, F32 * PARAMETERS);
    assert_eq!(size_of::<FashionParams>(), FashionParams::BYTES);
    assert_eq!(FashionParams::INFERENCE_BYTES, F32 * (MAPS + CONV_ROWS));

    // Trainer: the batch gradient, one sample's image, maps, pool winners
    // (u8), each dense layer's listed inputs (u16 and a count), the logits',
    // pooled map's and hidden layer's gradients, and the dropout rate;
    // padded to the counts' alignment.
    let trainer = F32 * PARAMETERS
        + F32 * (H * W + MAPS)
        + FLAT
        + 2 * (FLAT + HIDDEN)
        + 2 * size_of::<usize>()
        + F32 * (CLASSES + FLAT + HIDDEN + 1);
    assert_eq!(
        FashionParams::TRAINING_BYTES_SGD,
        padded(trainer, align_of::<usize>()) + F32 * CONV_ROWS
    );
    // Adam: both moments, its settings and a step count.
    assert_eq!(
        size_of::<Adam<FashionParams>>(),
        2 * FashionParams::BYTES + size_of::<AdamConfig>() + 4
    );
    assert_eq!(
        FashionParams::TRAINING_BYTES_ADAM,
        FashionParams::TRAINING_BYTES_SGD + size_of::<Adam<FashionParams>>()
    );

    // The last layer's trainer: the head and its gradient, the maps, the
    // pool winners (u8), each dense layer's listed inputs (u16 and a
    // count), the image and the logits' gradient, padded to the counts'
    // alignment; the convolution's rows.
    let head = HIDDEN * CLASSES + CLASSES;
    let head_trainer =
        F32 * (head + MAPS + H * W + CLASSES) + FLAT + 2 * (FLAT + HIDDEN) + 2 * size_of::<usize>();
    assert_eq!(
        HeadTrainer::<Book>::SGD_BYTES,
        padded(head_trainer, align_of::<usize>()) + F32 * head + F32 * CONV_ROWS
    );

    // dense1's kernel in 8 bits with a scale per hidden unit; the rest f32.
    assert_eq!(
        Book8::PARAMETER_BYTES,
        FLAT * HIDDEN + F32 * (HIDDEN + PARAMETERS - FLAT * HIDDEN)
    );
    assert_eq!(size_of::<FashionParams8>(), Book8::PARAMETER_BYTES);
    // Streaming SGD: the gradients but the wide kernel's, each sample's
    // gradient at the hidden layer (32 of them) and mask seed (u64), one
    // sample's image, maps, pool winners (u8), each dense layer's listed
    // inputs (u16 and a count), the pooled map's gradient, the logits'
    // gradient, and the two rates; the convolution's rows on the stack.
    let streaming = F32 * (PARAMETERS - FLAT * HIDDEN)
        + F32 * HIDDEN * 32
        + 8 * 32
        + F32 * (H * W + MAPS)
        + FLAT
        + 2 * (FLAT + HIDDEN)
        + 2 * size_of::<usize>()
        + F32 * (FLAT + CLASSES + 2);
    assert_eq!(
        StreamingSgdTrainer::<32>::BYTES,
        padded(streaming, align_of::<usize>()) + F32 * CONV_ROWS
    );
    assert_eq!(
        StreamingSgdTrainer::<32, Book8>::BYTES,
        StreamingSgdTrainer::<32>::BYTES
    );
}

/// The value of a constant the README names.
fn constant(name: &str) -> usize {
    match name {
        "Params::BYTES" => Params::<H, W, K, FLAT, HIDDEN, CLASSES>::BYTES,
        "Params::INFERENCE_BYTES" | "INFERENCE_BYTES" => FashionParams::INFERENCE_BYTES,
        "Params::TRAINING_BYTES_SGD" => FashionParams::TRAINING_BYTES_SGD,
        "Params::TRAINING_BYTES_ADAM" | "TRAINING_BYTES_ADAM" => FashionParams::TRAINING_BYTES_ADAM,
        "StreamingSgdTrainer::<32>::BYTES" => StreamingSgdTrainer::<32>::BYTES,
        "Book8::PARAMETER_BYTES" => Book8::PARAMETER_BYTES,
        "StreamingSgdTrainer::<32, Book8>::BYTES" => StreamingSgdTrainer::<32, Book8>::BYTES,
        "HeadTrainer::SGD_BYTES" => HeadTrainer::<Book>::SGD_BYTES,
        other => panic!("the README names `{other}`, which this test does not know"),
    }
}

fn number(text: &str) -> usize {
    text.trim()
        .trim_end_matches(" B")
        .trim_end_matches(" bytes")
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a byte count: {text:?}"))
}

#[test]
fn the_readme_states_the_constants() {
    let readme = include_str!("../README.md");
    let table = readme
        .split("## Memory, known at compile time")
        .nth(1)
        .expect("the README's memory section");
    let mut rows = 0;
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | what (`CONSTANT`) | tinycnn's bytes | a peer's |
        let Some((_, name)) = cells[1].split_once("(`") else {
            continue;
        };
        let name = name.trim_end_matches("`)");
        assert_eq!(number(cells[2]), constant(name), "{line}");
        rows += 1;
    }
    assert_eq!(rows, 8, "rows of the memory table checked");
}

tinycnn::stack! {
    /// Three channels of 16x16, two convolutions (3x3 and 5x5), a hidden layer.
    struct Deep: [16, 16, 3] => {
        Conv2d(8, 3), Relu, MaxPool2, Conv2d(12, 5), Relu, MaxPool2,
        Flatten, Dropout, Dense(20), Relu, Dense(4)
    }
}

#[test]
fn a_stacks_constants_are_what_its_types_hold() {
    use tinycnn::stack::{Stack, Workspace};
    use tinycnn::Trainer;
    let conv1 = 3 * 3 * 3 * 8 + 8;
    let conv2 = 5 * 5 * 8 * 12 + 12;
    let flat = 4 * 4 * 12;
    let parameters = conv1 + conv2 + flat * 20 + 20 + 20 * 4 + 4;
    assert_eq!(<Deep as Stack>::PARAMETERS, parameters);
    assert_eq!(<Deep as Stack>::PARAMETER_BYTES, F32 * parameters);
    assert_eq!(size_of::<<Deep as Stack>::Params>(), F32 * parameters);

    // Each layer's output and state: the convolutions' pooled maps and pool
    // winners (u8); each dense layer's outputs and listed inputs (u16 and a
    // count); the input.
    let maps = F32 * (8 * 8 * 8 + 4 * 4 * 12 + 20 + 4) + (8 * 8 * 8 + flat);
    let lists = 2 * (flat + 20) + 2 * size_of::<usize>();
    let input = F32 * 16 * 16 * 3;
    // The largest kernel buffer on the stack: two rows of the first
    // convolution (16 wide, 8 channels; the second's are 8 wide, 12).
    let frame = F32 * 2 * 16 * 8;
    let padded = |n: usize| n.div_ceil(align_of::<usize>()) * align_of::<usize>();
    let workspace = size_of::<Workspace<Deep>>();
    assert_eq!(workspace, padded(maps + lists + input));
    assert_eq!(Workspace::<Deep>::BYTES, workspace + frame);
    // Training adds the batch gradient, the gradients where the layers meet
    // (the two pooled maps, the hidden layer), the logits' gradient and the
    // rate.
    let junctions = F32 * (8 * 8 * 8 + flat + 20);
    assert_eq!(
        Trainer::<Deep>::BYTES,
        padded(F32 * parameters + workspace + junctions + F32 * (4 + 1)) + frame
    );
}
