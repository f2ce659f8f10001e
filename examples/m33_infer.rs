//! Inference on a Cortex-M33 (thumbv8m.main with FPU; QEMU `mps2-an505`): the same model, images and code as `m4_infer`.
//!
//! ```text
//! cargo m33 m33_infer
//! ```
//! Ends with `RESULT example=m33_infer accuracy=... instructions_per_image=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(board::infer_test_images)
}
