//! Int8 inference on a Cortex-M4F (QEMU `mps2-an386`): the model quantized by the
//! `quantize` example, borrowed from flash without copying, classifies the
//! same 500 embedded test images as `m4_infer`, with integer arithmetic only.
//!
//! ```text
//! cargo m4 m4_infer_int8
//! cargo netduino m4_infer_int8    # the STM32F405's memory map
//! ```
//! Ends with `RESULT example=m4_infer_int8 accuracy=... instructions_per_image=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(board::infer_int8_test_images)
}
