//! Int8 inference on a BBC micro:bit v1 (nRF51822: Cortex-M0, 256 KiB of
//! flash, 16 KiB of RAM; QEMU `-machine microbit`), linked against the
//! chip's real memory map: the int8 model (198,566 bytes) borrowed from
//! flash classifies the first test images that fit beside it, with integer
//! arithmetic only. Built size-optimized and without `core::fmt`, whose
//! float formatting alone would not fit.
//!
//! ```text
//! cargo microbit microbit_infer_int8                                  # on the board (QEMU)
//! TINYCNN_BOARD=microbit cargo run --release --example microbit_infer_int8   # the same run on the host
//! ```
//! Ends with `RESULT example=microbit_infer_int8 ... accuracy=... logits_hash=...
//! instructions_per_image=... flash_bytes=... ram_static_bytes=... stack_peak_bytes=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

use board::{Line, Meter};
use static_cell::ConstStaticCell;
use tinycnn::quant::QuantWorkspace;
use tinycnn::FashionQuantModel;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(run)
}

fn run() -> bool {
    let Ok(model) = FashionQuantModel::from_blob(&board::MODEL_INT8.0) else {
        Line::new().text("error: the int8 blob").print();
        return false;
    };
    static WORKSPACE: ConstStaticCell<QuantWorkspace> = ConstStaticCell::new(QuantWorkspace::new());
    let workspace = WORKSPACE.take();
    let test = board::TEST;
    let (mut correct, mut instructions, mut logits_hash) = (0u64, 0u64, 0u32);
    for (i, &label) in test.labels.iter().enumerate() {
        let Some(pixels) = test.images.get(i * 784..(i + 1) * 784) else {
            return false;
        };
        let meter = Meter::start();
        let predicted = model.predict(pixels, workspace);
        instructions += meter.read();
        // Every integer logit, hashed: the board's must equal the host's.
        for &logit in workspace.logits() {
            logits_hash = (logits_hash.rotate_left(5) ^ logit as u32).wrapping_mul(0x9E37_79B1);
        }
        match predicted {
            Ok(class) => correct += u64::from(class == usize::from(label)),
            Err(_) => {
                Line::new().text("error: image ").number(i as u64).print();
                return false;
            }
        }
    }
    let n = test.labels.len() as u64;
    let (statics, stack) = board::ram_report();
    Line::new()
        .text("RESULT example=microbit_infer_int8 images=")
        .number(n)
        .text(" correct=")
        .number(correct)
        .text(" accuracy=")
        .ratio(correct, n)
        .text(" logits_hash=")
        .hex(logits_hash)
        .text(" instructions_per_image=")
        .number(instructions / n.max(1))
        .text(" flash_bytes=")
        .number(board::flash_used() as u64)
        .text(" ram_static_bytes=")
        .number(statics as u64)
        .text(" stack_peak_bytes=")
        .number(stack as u64)
        .print();
    // Chance is 0.1.
    correct * 2 > n
}
