//! Inference on a Cortex-M4F (QEMU `mps2-an386`): parameters trained on the
//! host, borrowed from flash without copying, classify the first 500
//! Fashion-MNIST test images, also in flash.
//!
//! ```text
//! cargo m4 m4_infer          # on the board (QEMU)
//! cargo run --release --example m4_infer   # the same on the host
//! cargo netduino m4_infer    # the STM32F405: 240 images beside the model in its 1 MiB of flash
//! ```
//! Ends with `RESULT example=m4_infer accuracy=... instructions_per_image=...`.
//! `m0_infer` and `m33_infer` run the same code on other cores.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(board::infer_test_images)
}
