//! Training the deep model (`tinycnn::stack::Deep`: two convolutions,
//! 162,710 parameters) on a Cortex-M4F (QEMU `mps2-an386`), from Glorot
//! init, on real Fashion-MNIST images in flash: the `adam` recipe (Adam,
//! batch 32, dropout 0.5), every buffer a `static`. Prints the loss per
//! epoch and the accuracy on the first 100 test images.
//!
//! ```text
//! cargo m4 m4_train_deep                                         # CI length: 500 images, 2 epochs
//! TINYCNN_IMAGES=2000 TINYCNN_EPOCHS=5 cargo m4 m4_train_deep    # longer
//! cargo run --release --example m4_train_deep                    # the same run on the host
//! ```
//! Ends with `RESULT example=m4_train_deep ... final_loss=... accuracy=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

use board::{build_setting, out, Log};
use rand_core::SeedableRng;
use static_cell::ConstStaticCell;
use tinycnn::stack::{Deep, Stack};
use tinycnn::train::{Adam, AdamConfig};
use tinycnn::{ParamBuffer, Trainer};

/// Training images (the first ones of the training set; at most 2,000 are embedded).
const IMAGES: usize = build_setting(option_env!("TINYCNN_IMAGES"), 500);
/// Passes over them.
const EPOCHS: usize = build_setting(option_env!("TINYCNN_EPOCHS"), 2);
const BATCH: usize = 32;
const SEED: u64 = 1;

type Params = <Deep as Stack>::Params;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(run)
}

fn run() -> bool {
    static PARAMS: ConstStaticCell<Params> = ConstStaticCell::new(Params::ZERO);
    let params = PARAMS.take();
    static TRAINER: ConstStaticCell<Trainer<Deep>> = ConstStaticCell::new(Trainer::new());
    let trainer = TRAINER.take();
    static ADAM: ConstStaticCell<Adam<Params>> = ConstStaticCell::new(Adam::zeroed_state());
    let adam = ADAM.take();
    static ORDER: ConstStaticCell<[u32; IMAGES]> = ConstStaticCell::new([0; IMAGES]);
    let order = ORDER.take();
    let train = board::TRAIN.first(IMAGES);
    let test = board::TEST.first(board::DEEP_IMAGES);

    let mut rng = rand_pcg::Pcg32::seed_from_u64(SEED);
    Deep::init_glorot(params, &mut rng);
    if let Err(e) = trainer
        .set_dropout(0.5)
        .and_then(|()| adam.configure(AdamConfig::KERAS))
    {
        out!("error: {}", e);
        return false;
    }
    out!(
        "training the deep model on {} images, {} epochs, batch {}",
        IMAGES,
        EPOCHS,
        BATCH
    );
    let Some((loss, instructions_per_image)) =
        board::train_epochs(EPOCHS, IMAGES, BATCH, order, &mut rng, Log, |epoch| {
            trainer.train_epoch(params, adam, &train, epoch)
        })
    else {
        return false;
    };
    let accuracy = match trainer.evaluate(params, &test) {
        Ok(evaluation) => evaluation.accuracy,
        Err(e) => {
            out!("error: {}", e);
            return false;
        }
    };
    let (statics, stack) = board::ram_report();
    out!(
        "RESULT example=m4_train_deep images={} epochs={} final_loss={:.6} accuracy={:.4} instructions_per_image={} ram_static_bytes={} stack_peak_bytes={}",
        IMAGES,
        EPOCHS,
        loss,
        accuracy,
        instructions_per_image,
        statics,
        stack
    );
    // A run that did not learn is a failure: chance is 0.1.
    accuracy > 0.5
}
