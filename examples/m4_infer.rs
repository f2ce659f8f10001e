//! Inference on a Cortex-M4F (QEMU `mps2-an386`): parameters trained on the
//! host, borrowed from flash without copying, classify the first 500
//! Fashion-MNIST test images, also in flash.
//!
//! ```text
//! cargo m4 m4_infer          # on the board (QEMU)
//! cargo run --release --example m4_infer   # the same on the host
//! ```
//! Ends with `RESULT example=m4_infer accuracy=... instructions_per_image=...`.
//! The same source builds `m0_infer` (Cortex-M0, no FPU) and `m33_infer`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

use board::{out, zeroed_static, Meter};
use tinycnn::data::Samples;
use tinycnn::{FashionParams, Workspace};

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
    let workspace = zeroed_static!(Workspace, Workspace::new());
    let test = board::TEST;
    let mut image = [[0.0f32; 28]; 28];
    let (mut correct, mut instructions) = (0usize, 0u64);
    for i in 0..test.len() {
        let Ok(label) = test.read(i, &mut image) else { return false };
        let meter = Meter::start();
        let predicted = params.predict(&image, workspace);
        instructions += meter.read();
        match predicted {
            Ok(class) => correct += usize::from(class == label),
            Err(e) => {
                out!("error: image {}: {}", i, e);
                return false;
            }
        }
    }
    let (statics, stack) = board::ram_report();
    out!(
        "RESULT example={} images={} correct={} accuracy={:.4} instructions_per_image={} ram_static_bytes={} stack_peak_bytes={}",
        env!("CARGO_CRATE_NAME"),
        test.len(),
        correct,
        correct as f32 / test.len() as f32,
        instructions / test.len() as u64,
        statics,
        stack
    );
    true
}
