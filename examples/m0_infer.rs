//! Inference on a Cortex-M0 (thumbv6m, no FPU; QEMU `mps2-an385`, whose Cortex-M3 runs M0 code): the same model, images and code as `m4_infer`.
//!
//! ```text
//! cargo m0 m0_infer
//! ```
//! Ends with `RESULT example=m0_infer accuracy=... instructions_per_image=...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(board::infer_test_images)
}
