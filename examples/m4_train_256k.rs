//! The whole network trained from Glorot init on a Cortex-M4F (QEMU
//! `mps2-an386`) in 256 KiB of RAM, parameters included: dense1's kernel
//! lives in 8 bits ([`Book8`](tinycnn::stack::Book8), 201,240 bytes in all) and
//! the streaming trainer updates it in place, each change stochastically
//! rounded onto its grid; no gradient of dense1's kernel ever exists. The
//! linker gives this example 256 KiB of RAM (the `TINYCNN_RAM_BYTES` symbol
//! below sets memory.x's RAM length) and refuses statics that do not fit.
//! 2,000 Fashion-MNIST images in flash, batch 32, SGD lr 0.05, as
//! `m4_train_sgd` trains the `f32` parameters.
//!
//! ```text
//! cargo m4 m4_train_256k
//! cargo run --release --example m4_train_256k   # the same arithmetic on the host
//! ```
//! Ends with `RESULT example=m4_train_256k ... final_loss=... accuracy=...
//! model_hash=... instructions_per_image=... ram_bytes=...`, after writing the
//! trained model's `f32` export as a weight blob, which `evaluate` and
//! `quantize` read: the board to `target/m4_train_256k-board.tcnn` on the host
//! through semihosting, a few hundred bytes at a time; the host run, which
//! computes the same bits when built without fused multiply-adds, to
//! `target/m4_train_256k.tcnn`.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod board;

use board::{build_setting, out};
use rand_core::SeedableRng;
use static_cell::ConstStaticCell;
use tinycnn::stack::{Book8, Stack, Zeroed};
use tinycnn::train::StreamingSgdTrainer;
use tinycnn::FashionParams8;

const IMAGES: usize = build_setting(option_env!("TINYCNN_IMAGES"), 2000);
const EPOCHS: usize = build_setting(option_env!("TINYCNN_EPOCHS"), 2);
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 0.05;
const SEED: u64 = build_setting(option_env!("TINYCNN_SEED"), 1) as u64;

/// The RAM this example links against: memory.x's RAM region takes this
/// length when the symbol is defined.
const RAM_BYTES: usize = 256 * 1024;
#[cfg(target_os = "none")]
core::arch::global_asm!(".globl TINYCNN_RAM_BYTES", ".set TINYCNN_RAM_BYTES, {ram}", ram = const RAM_BYTES);

#[cfg_attr(target_os = "none", cortex_m_rt::entry)]
fn main() -> ! {
    board::main(run)
}

fn run() -> bool {
    static PARAMS: ConstStaticCell<FashionParams8> = ConstStaticCell::new(Zeroed::ZERO);
    let params = PARAMS.take();
    static TRAINER: ConstStaticCell<StreamingSgdTrainer<BATCH, Book8>> = ConstStaticCell::new(Zeroed::ZERO);
    let trainer = TRAINER.take();
    static ORDER: ConstStaticCell<[u32; IMAGES]> = ConstStaticCell::new([0; IMAGES]);
    let order = ORDER.take();
    let train = board::TRAIN.first(IMAGES);
    let mut rng = rand_pcg::Pcg32::seed_from_u64(SEED);
    Book8::init_glorot(params, &mut rng);
    out!("dense1 in 8 bits");
    let Some((loss, instructions_per_image)) = board::train_streaming(
        trainer,
        params,
        LEARNING_RATE,
        &train,
        (EPOCHS, BATCH),
        order,
        &mut rng,
    ) else {
        return false;
    };
    let Ok(evaluation) = trainer.evaluate(params, &board::TEST) else {
        return false;
    };
    let hash = model_hash(params);
    let (statics, stack) = board::ram_report();
    out!(
        "RESULT example=m4_train_256k images={} epochs={} final_loss={:.6} accuracy={:.4} model_hash={:08x} instructions_per_image={} ram_bytes={} ram_static_bytes={} stack_peak_bytes={}",
        IMAGES,
        EPOCHS,
        loss,
        evaluation.accuracy,
        hash,
        instructions_per_image,
        statics + stack,
        statics,
        stack
    );
    if !export(params) {
        return false;
    }
    // On the board the stack must not have reached the statics.
    let fits = !cfg!(target_os = "none") || statics + stack < RAM_BYTES;
    fits && evaluation.accuracy > 0.5
}

/// CRC-32 of every parameter's bytes, layer by layer: equal on the board
/// and the host when they trained the same bits.
fn model_hash(params: &FashionParams8) -> u32 {
    // The flat parameters: the convolution (100 values), dense1's scales
    // (100), its 8-bit values (49,000 slots), its bias (100), dense2 (1,010).
    let (floats, values) = (&params[..200], &params[200..49_200]);
    let mut hasher = crc32fast::Hasher::new();
    for values in [floats, &params[49_200..]] {
        for v in values {
            hasher.update(&v.to_le_bytes());
        }
    }
    hasher.update(bytemuck::cast_slice(values));
    hasher.finalize()
}

/// Writes the trained model's `f32` export, a weight blob, for the host's
/// tools: from the board into a host file through semihosting.
#[cfg(target_os = "none")]
fn export(params: &FashionParams8) -> bool {
    use cortex_m_semihosting::syscall;
    const PATH: &[u8] = b"target/m4_train_256k-board.tcnn\0";
    // SAFETY: semihosting OPEN takes a NUL-terminated path, a mode and the
    // path's length without the NUL; the runner starts QEMU with semihosting
    // enabled, so the call traps to the host.
    let handle = unsafe {
        syscall!(
            OPEN,
            PATH.as_ptr(),
            cortex_m_semihosting::nr::open::W_TRUNC_BINARY,
            PATH.len() - 1
        )
    } as isize;
    if handle < 0 {
        out!(
            "error: cannot open {} on the host",
            "target/m4_train_256k-board.tcnn"
        );
        return false;
    }
    let written = Book8::write_blob_with(params, |bytes| {
        // SAFETY: WRITE of a live buffer and its length to the handle OPEN
        // returned; it returns how many bytes were not written.
        match unsafe { syscall!(WRITE, handle, bytes.as_ptr(), bytes.len()) } {
            0 => Ok(()),
            _ => Err(()),
        }
    });
    // SAFETY: CLOSE of the handle OPEN returned.
    unsafe { syscall!(CLOSE, handle) };
    if written.is_err() {
        out!("error: the export was not written whole");
    }
    written.is_ok()
}

/// Writes the trained model's `f32` export, a weight blob, for the host's tools.
#[cfg(not(target_os = "none"))]
fn export(params: &FashionParams8) -> bool {
    let mut blob = Vec::with_capacity(Book8::BLOB_BYTES);
    let _ = Book8::write_blob_with(params, |bytes| -> Result<(), ()> {
        blob.extend_from_slice(bytes);
        Ok(())
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/m4_train_256k.tcnn");
    match tinycnn::host::write_atomically(&path, &blob) {
        Ok(()) => {
            println!("wrote {}", path.display());
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}
