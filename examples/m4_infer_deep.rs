//! The deep model (`tinycnn::stack::Deep`: two convolutions, 162,710
//! parameters) on a Cortex-M4F (QEMU `mps2-an386`): trained on the host,
//! borrowed from flash without copying, it classifies the first 100
//! Fashion-MNIST test images.
//!
//! ```text
//! cargo m4 m4_infer_deep                        # on the board (QEMU)
//! cargo run --release --example m4_infer_deep   # the same on the host
//! cargo netduino m4_infer_deep                  # the STM32F405's memory map
//! ```
//! Ends with `RESULT example=m4_infer_deep accuracy=... instructions_per_image=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(board::infer_deep_test_images)
}
