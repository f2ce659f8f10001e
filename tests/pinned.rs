//! Every schedule's model after a short seeded run on the shipped subset, held
//! by hash: a refactor that must keep training's arithmetic bit for bit fails
//! here at the first step that changes it.
//!
//! The hashes are of the host build (`target-cpu=native` with FMA, as
//! `.cargo/config.toml` sets; AVX2 and AVX-512 builds compute the same bits).
//! A change that means to alter the arithmetic updates them in its commit.

use rand_core::SeedableRng;
use rand_pcg::Pcg32;
use tinycnn::data::{Samples, Subset};
use tinycnn::host::{FashionMnist, ParallelTrainer};
use tinycnn::stack::{Book, Book8, Stack};
use tinycnn::train::{Adam, AdamConfig, Epoch, HeadTrainer, Sgd, StreamingSgdTrainer};
use tinycnn::{FashionHead, FashionParams, FashionTrainer, ParamBuffer};

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");
/// Training images of each run: enough for several batches of either recipe.
const IMAGES: u32 = 1024;

/// FNV-1a over the values' bits: any change of any bit changes it.
fn fnv1a(bits: impl IntoIterator<Item = u32>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for word in bits {
        for byte in word.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn hash_f32(values: &[f32]) -> u64 {
    fnv1a(values.iter().map(|v| v.to_bits()))
}

fn data() -> FashionMnist {
    FashionMnist::load(SUBSET.as_ref()).unwrap()
}

fn glorot(seed: u64) -> Box<FashionParams> {
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut Pcg32::seed_from_u64(seed));
    params
}

/// Two epochs of `train`, each with its own generator, as the train example
/// draws them.
fn two_epochs(mut train: impl FnMut(Epoch<'_, Pcg32>)) {
    let mut order = vec![0u32; IMAGES as usize];
    for number in 0..2 {
        let mut rng = Pcg32::seed_from_u64(100 + number as u64);
        train(Epoch::new(&mut order, 32, &mut rng).number(number));
    }
}

#[test]
fn the_trainers_adam_run_with_dropout() {
    let data = data();
    let indices: Vec<u32> = (0..IMAGES).collect();
    let all = data.train();
    let train = Subset::new(&all, &indices);
    let mut params = glorot(1);
    let mut trainer = FashionTrainer::boxed();
    trainer.set_dropout(0.5).unwrap();
    let mut adam = Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap();
    two_epochs(|epoch| {
        trainer
            .train_epoch(&mut params, &mut *adam, &train, epoch)
            .unwrap();
    });
    assert_eq!(hash_f32(params.as_flat()), 0x0b3a68f92495e51f);
}

#[test]
fn the_trainers_sgd_run() {
    let data = data();
    let indices: Vec<u32> = (0..IMAGES).collect();
    let all = data.train();
    let train = Subset::new(&all, &indices);
    let mut params = glorot(2);
    let mut trainer = FashionTrainer::boxed();
    let mut sgd = Sgd::new(0.05).unwrap();
    two_epochs(|epoch| {
        trainer.train_epoch(&mut params, &mut sgd, &train, epoch).unwrap();
    });
    assert_eq!(hash_f32(params.as_flat()), 0x7b8ac643c2427501);
}

#[test]
fn the_parallel_runs_on_two_threads() {
    let data = data();
    let indices: Vec<u32> = (0..IMAGES).collect();
    let all = data.train();
    let train = Subset::new(&all, &indices);
    let mut hashes = Vec::new();
    for dropout in [0.0, 0.5] {
        let mut params = glorot(3);
        let mut parallel = {
            let mut t = ParallelTrainer::<tinycnn::stack::Book>::new(2).unwrap();
            t.set_dropout(dropout).unwrap();
            t
        };
        if dropout > 0.0 {
            let mut adam = Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap();
            two_epochs(|epoch| {
                parallel
                    .train_epoch(&mut params, &mut *adam, &train, epoch)
                    .unwrap();
            });
        } else {
            let mut sgd = Sgd::new(0.05).unwrap();
            two_epochs(|epoch| {
                parallel
                    .train_epoch(&mut params, &mut sgd, &train, epoch)
                    .unwrap();
            });
        }
        hashes.push(hash_f32(params.as_flat()));
    }
    assert_eq!(hashes, [0xe0ccb12d55d17926, 0x3b989a533b058436]);
}

#[test]
fn the_streaming_runs_in_f32_and_in_8_bits() {
    let data = data();
    let indices: Vec<u32> = (0..IMAGES).collect();
    let all = data.train();
    let train = Subset::new(&all, &indices);
    let mut streaming = StreamingSgdTrainer::<32>::boxed(0.05).unwrap();
    let mut params = glorot(4);
    two_epochs(|epoch| {
        streaming.train_epoch(&mut *params, &train, epoch).unwrap();
    });
    let f32_hash = hash_f32(params.as_flat());

    let mut streaming = StreamingSgdTrainer::<32, Book8>::boxed(0.05).unwrap();
    let mut params8 = Book8::boxed_params();
    Book8::init_glorot(&mut params8, &mut Pcg32::seed_from_u64(4));
    two_epochs(|epoch| {
        streaming.train_epoch(&mut params8, &train, epoch).unwrap();
    });
    // dense1's values (after the convolution's 100 values and its 100
    // scales), then its scales.
    let value_bytes: &[u8] = bytemuck::cast_slice(&params8[200..49_200]);
    let values = value_bytes.iter().map(|&v| u32::from(v));
    let scales = params8[100..200].iter().map(|s| s.to_bits());
    let mut export = FashionParams::boxed();
    Book8::export::<Book>(&params8, &mut export);
    let int8_hash = fnv1a(values.chain(scales)) ^ hash_f32(export.as_flat());
    assert_eq!([f32_hash, int8_hash], [0xc9bf017b15635ceb, 0x8a55650b67afdb07]);
}

#[test]
fn the_last_layer_run() {
    let data = data();
    let indices: Vec<u32> = (0..IMAGES).collect();
    let all = data.train();
    let train = Subset::new(&all, &indices);
    assert_eq!(train.len(), IMAGES as usize);
    let params = glorot(5);
    let mut head = FashionHead::ZERO;
    head.copy_from(&params);
    let mut trainer = HeadTrainer::<tinycnn::stack::Book>::boxed();
    let mut sgd = Sgd::new(0.05).unwrap();
    two_epochs(|epoch| {
        trainer
            .train_epoch(&params, &mut head, &mut sgd, &train, epoch)
            .unwrap();
    });
    let hash = hash_f32(head.kernel.as_flattened()) ^ hash_f32(&head.bias).rotate_left(1);
    assert_eq!(hash, 0xa5675dd67638a7ee);
}
