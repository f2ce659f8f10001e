//! Fine-tuning on a Cortex-M4F (QEMU `mps2-an386`), the realistic case for a
//! microcontroller with little RAM: the model trained on the host stays in
//! flash, and only its last layer trains, in RAM, to a shifted data set:
//! Fashion-MNIST with inverted pixels (`1 - p`), which the host model never saw.
//!
//! ```text
//! cargo m4 m4_finetune
//! cargo run --release --example m4_finetune     # the same on the host
//! cargo netduino m4_finetune                    # the STM32F405's 1 MiB of flash and 128 KiB of SRAM
//! ```
//! Ends with `RESULT example=m4_finetune accuracy_before=... accuracy_after=... ram_static_bytes=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

use board::{build_setting, out, Meter};
use rand_core::SeedableRng;
use static_cell::ConstStaticCell;
use tinycnn::data::Samples;
use tinycnn::train::{Epoch, Head, HeadTrainer, Sgd};
use tinycnn::FashionParams;

/// Inverted training images to adapt on (at most as many as are embedded).
const IMAGES: usize = build_setting(option_env!("TINYCNN_IMAGES"), 1000);
/// Passes over them: more where the chip's flash holds fewer images.
const EPOCHS: usize = build_setting(
    option_env!("TINYCNN_EPOCHS"),
    if cfg!(board_netduinoplus2) { 10 } else { 5 },
);
const BATCH: usize = 16;
const LEARNING_RATE: f32 = 0.05;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(run)
}

fn run() -> bool {
    let params = match FashionParams::from_blob(&board::MODEL.0) {
        Ok(params) => params,
        Err(e) => {
            out!("error: model blob: {}", e);
            return false;
        }
    };
    static TRAINER: ConstStaticCell<HeadTrainer> = ConstStaticCell::new(HeadTrainer::new());
    let trainer = TRAINER.take();
    static HEAD: ConstStaticCell<Head> = ConstStaticCell::new(<Head as tinycnn::ParamBuffer>::ZERO);
    let head = HEAD.take();
    static ORDER: ConstStaticCell<[u32; IMAGES]> = ConstStaticCell::new([0; IMAGES]);
    let order = ORDER.take();
    head.copy_from(params);
    // Where the chip's flash holds no training images (the STM32F405's),
    // the first 140 test images are the new data and the others score it.
    let (train, test) = if cfg!(board_netduinoplus2) {
        (board::TEST.range(0, 140), board::TEST.range(140, usize::MAX))
    } else {
        (board::TRAIN.first(IMAGES), board::TEST)
    };
    let (train, test) = (train.inverted(), test.inverted());

    let Ok(before) = trainer.evaluate(params, head, &test) else {
        return false;
    };
    let before = before.accuracy;
    out!(
        "inverted test images, host model as it is: accuracy {:.4}",
        before
    );
    let Ok(mut sgd) = Sgd::new(LEARNING_RATE) else {
        return false;
    };
    let mut rng = rand_pcg::Pcg32::seed_from_u64(1);
    let meter = Meter::start();
    for epoch in 0..EPOCHS {
        match trainer.train_epoch(
            params,
            head,
            &mut sgd,
            &train,
            Epoch::new(order, BATCH, &mut rng).number(epoch),
        ) {
            Ok(loss) => out!("epoch {} train_loss {:.4}", epoch + 1, loss),
            Err(e) => {
                out!("error: {}", e);
                return false;
            }
        }
    }
    let images = train.len();
    let instructions = meter.read() / (images / BATCH * BATCH * EPOCHS).max(1) as u64;
    let Ok(after) = trainer.evaluate(params, head, &test) else {
        return false;
    };
    let after = after.accuracy;
    let (statics, stack) = board::ram_report();
    out!(
        "RESULT example=m4_finetune images={} epochs={} accuracy_before={:.4} accuracy_after={:.4} instructions_per_image={} ram_static_bytes={} stack_peak_bytes={}",
        images,
        EPOCHS,
        before,
        after,
        instructions,
        statics,
        stack
    );
    after > before + 0.2
}
