//! SGD training on a Cortex-M4F (QEMU `mps2-an386`) in under 900 KB of RAM,
//! parameters included: the streaming trainer applies dense1's update from
//! what each batch kept, so no gradient the size of the model exists. From
//! Glorot init, on real Fashion-MNIST images in flash, batch 32.
//!
//! ```text
//! cargo m4 m4_train_sgd
//! cargo run --release --example m4_train_sgd     # the same run on the host
//! ```
//! Ends with `RESULT example=m4_train_sgd ... final_loss=... accuracy=... ram_static_bytes=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

use board::{build_setting, out};
use rand_core::SeedableRng;
use static_cell::ConstStaticCell;
use tinycnn::train::StreamingSgdTrainer;
use tinycnn::FashionParams;

const IMAGES: usize = build_setting(option_env!("TINYCNN_IMAGES"), 2000);
const EPOCHS: usize = build_setting(option_env!("TINYCNN_EPOCHS"), 2);
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 0.05;
const SEED: u64 = build_setting(option_env!("TINYCNN_SEED"), 1) as u64;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(run)
}

fn run() -> bool {
    static PARAMS: ConstStaticCell<FashionParams> = ConstStaticCell::new(FashionParams::zeroed());
    let params = PARAMS.take();
    static TRAINER: ConstStaticCell<StreamingSgdTrainer<BATCH>> =
        ConstStaticCell::new(StreamingSgdTrainer::zeroed_state());
    let trainer = TRAINER.take();
    static ORDER: ConstStaticCell<[u32; IMAGES]> = ConstStaticCell::new([0; IMAGES]);
    let order = ORDER.take();
    let train = board::TRAIN.first(IMAGES);
    let mut rng = rand_pcg::Pcg32::seed_from_u64(SEED);
    params.init_glorot(&mut rng);
    let Some((loss, instructions_per_image)) = board::train_streaming(
        trainer,
        params,
        LEARNING_RATE,
        &train,
        (EPOCHS, BATCH),
        order,
        &mut rng,
    ) else {
        return false;
    };
    let Ok(evaluation) = trainer.evaluate(params, &board::TEST) else {
        return false;
    };
    let (statics, stack) = board::ram_report();
    out!(
        "RESULT example=m4_train_sgd images={} epochs={} final_loss={:.6} accuracy={:.4} instructions_per_image={} ram_static_bytes={} stack_peak_bytes={}",
        IMAGES,
        EPOCHS,
        loss,
        evaluation.accuracy,
        instructions_per_image,
        statics,
        stack
    );
    evaluation.accuracy > 0.5
}
