//! Full training epochs on the real Fashion-MNIST, each recipe three ways:
//! the core's [`Trainer`](tinycnn::Trainer) (one thread, what firmware
//! runs), and the host's [`ParallelTrainer`](tinycnn::host::ParallelTrainer)
//! on one thread and on two, interleaved in one process so that the ratios
//! compare runs made under the same conditions.
//!
//! `cargo bench --bench epochs` (data from `TINYCNN_DATA`, else
//! `/usr/share/datasets/fashion-mnist`). Each configuration trains from the
//! same initial weights for one epoch of 48,000 images (validation
//! excluded), five rounds; the medians are reported.

use rand_core::SeedableRng;
use rand_pcg::Pcg32;
use std::path::PathBuf;
use std::time::Instant;
use tinycnn::data::{split_stratified, Samples, Subset};
use tinycnn::host::{FashionMnist, ParallelTrainer};
use tinycnn::train::{Adam, AdamConfig, Epoch, Optimizer, Sgd};
use tinycnn::{FashionParams, FashionTrainer};

const ROUNDS: usize = 5;

#[derive(Clone, Copy)]
enum Recipe {
    Sgd,
    Adam,
}

impl Recipe {
    const fn name(self) -> &'static str {
        match self {
            Recipe::Sgd => "sgd",
            Recipe::Adam => "adam",
        }
    }
    /// Batch size and dropout rate of the book's recipe.
    const fn settings(self) -> (usize, f32) {
        match self {
            Recipe::Sgd => (128, 0.0),
            Recipe::Adam => (32, 0.5),
        }
    }
    fn optimizer(self) -> Box<dyn OptimizerSend> {
        match self {
            Recipe::Sgd => Box::new(Sgd::new(0.01).expect("the recipe's rate")),
            Recipe::Adam => Adam::<FashionParams>::boxed(AdamConfig::KERAS).expect("Keras's settings"),
        }
    }
}

/// An optimizer a thread pool can be handed.
trait OptimizerSend: Optimizer + Send {}
impl<T: Optimizer + Send + ?Sized> OptimizerSend for T {}

/// Seconds for one epoch of `recipe`: on the core's trainer (`threads` 0)
/// or on the host's with `threads` threads.
fn epoch_seconds<S: Samples<28, 28> + Sync + ?Sized>(recipe: Recipe, threads: usize, train: &S) -> f64 {
    let (batch, dropout) = recipe.settings();
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut Pcg32::seed_from_u64(1));
    let mut optimizer = recipe.optimizer();
    let mut order = vec![0u32; train.len()];
    let mut rng = Pcg32::seed_from_u64(2);
    // The two trainers' `train_epoch` take the same arguments.
    macro_rules! epoch {
        ($trainer:expr) => {
            $trainer
                .train_epoch(
                    &mut params,
                    &mut *optimizer,
                    train,
                    Epoch::new(&mut order, batch, &mut rng),
                )
                .expect("an epoch")
        };
    }
    let start = Instant::now();
    if threads == 0 {
        let mut trainer = FashionTrainer::boxed();
        trainer.set_dropout(dropout).expect("the recipe's rate");
        epoch!(trainer);
    } else {
        epoch!({
            let mut trainer = ParallelTrainer::<tinycnn::stack::Book>::new(threads).expect("threads");
            trainer.set_dropout(dropout).expect("dropout");
            trainer
        });
    }
    start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks.
    }
    let dir = std::env::var_os("TINYCNN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    let data = match FashionMnist::load(&dir) {
        Ok(data) => data,
        Err(e) => {
            eprintln!(
                "epochs: no Fashion-MNIST in {} ({e}); set TINYCNN_DATA",
                dir.display()
            );
            return;
        }
    };
    // The train example's split: 48,000 of the 60,000 training images.
    let all = data.train();
    let mut split = vec![0u32; all.len()];
    let n_val = split_stratified::<10>(
        all.labels().as_slice(),
        0.2,
        &mut Pcg32::seed_from_u64(42),
        &mut split,
    )
    .expect("a split");
    let train = Subset::new(&all, &split[n_val..]);
    let configs = [0, 1, 2].map(|threads| (Recipe::Sgd, threads)).into_iter();
    let configs: Vec<(Recipe, usize)> = configs
        .chain([0, 1, 2].map(|threads| (Recipe::Adam, threads)))
        .collect();
    let mut seconds = vec![Vec::new(); configs.len()];
    for _ in 0..ROUNDS {
        for (times, &(recipe, threads)) in seconds.iter_mut().zip(&configs) {
            times.push(epoch_seconds(recipe, threads, &train));
        }
    }
    println!(
        "epoch of {} images, median of {ROUNDS} interleaved rounds",
        train.len()
    );
    let medians: Vec<f64> = seconds.iter().cloned().map(median).collect();
    for (&(recipe, threads), &s) in configs.iter().zip(&medians) {
        let trainer = match threads {
            0 => "Trainer".to_string(),
            n => format!("ParallelTrainer, {n} thread{}", if n == 1 { "" } else { "s" }),
        };
        println!(
            "{:>4} {trainer:<28} {s:.3} s {:>7.0} images/s",
            recipe.name(),
            train.len() as f64 / s
        );
    }
    // Each round's own ratios as well: its three runs of a recipe follow each
    // other, so a change in the machine's load between rounds moves them less.
    for (three, recipe) in seconds.chunks(3).zip([Recipe::Sgd, Recipe::Adam]) {
        let ratios = |one: &[f64]| -> Vec<f64> { one.iter().zip(&three[2]).map(|(a, b)| a / b).collect() };
        let describe = |ratios: Vec<f64>| {
            let (low, high) = ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
            format!("{:.2}x (rounds {low:.2}-{high:.2})", median(ratios))
        };
        println!(
            "{:>4} 2 threads: {} one thread of the same trainer, {} the core's Trainer",
            recipe.name(),
            describe(ratios(&three[1])),
            describe(ratios(&three[0]))
        );
    }
}
