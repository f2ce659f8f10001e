//! Int8 inference on a Cortex-M0 (thumbv6m, no FPU; QEMU `mps2-an385`): the model quantized by the
//! `quantize` example, borrowed from flash without copying, classifies the
//! same 500 embedded test images as `m4_infer`, with integer arithmetic only.
//!
//! ```text
//! cargo m0 m0_infer_int8
//! ```
//! Ends with `RESULT example=m0_infer_int8 accuracy=... instructions_per_image=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(board::infer_int8_test_images)
}
