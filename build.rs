//! Two jobs, both for the examples only:
//! - the firmware examples embed real Fashion-MNIST images: unpack the first
//!   images of the shipped subset into `OUT_DIR` as raw bytes;
//! - on bare-metal targets, put the board's `memory.x` on the linker's path
//!   and link the examples with cortex-m-rt's `link.x`.

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Test images embedded in the firmware examples.
const TEST_IMAGES: usize = 500;
/// Training images embedded in the firmware training example.
const TRAIN_IMAGES: usize = 2000;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let subset = Path::new("data/fashion-mnist-subset");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", subset.display());
    // A packaged crate has no data folder: there is nothing to embed then.
    if subset.exists() {
        for (split, count) in [("t10k", TEST_IMAGES), ("train", TRAIN_IMAGES)] {
            let images = gunzip(&subset.join(format!("{split}-images-idx3-ubyte.gz")));
            let labels = gunzip(&subset.join(format!("{split}-labels-idx1-ubyte.gz")));
            fs::write(
                out.join(format!("{split}_images.bin")),
                &images[16..16 + count * 784],
            )
            .unwrap();
            fs::write(out.join(format!("{split}_labels.bin")), &labels[8..8 + count]).unwrap();
        }
    }

    println!("cargo::rustc-check-cfg=cfg(mps2_an505)");
    // Cores with the DSP extension's dual 16-bit multiply-accumulate (Cortex-M4/M7):
    // the int8 kernels use it.
    println!("cargo::rustc-check-cfg=cfg(tinycnn_dsp)");
    if env::var("TARGET").is_ok_and(|t| t.starts_with("thumbv7em")) {
        println!("cargo:rustc-cfg=tinycnn_dsp");
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let target = env::var("TARGET").unwrap_or_default();
        if target.starts_with("thumbv8m") {
            println!("cargo:rustc-cfg=mps2_an505");
        }
        // QEMU's MPS2 boards: an385/an386 (Cortex-M3/M4) and an505 (Cortex-M33).
        // The 4 MiB "flash" is RAM that QEMU loads the ELF into.
        let (flash, ram) = if target.starts_with("thumbv8m") {
            (0x1000_0000, 0x3800_0000)
        } else {
            (0, 0x2000_0000)
        };
        let memory = format!(
            "MEMORY\n{{\n  FLASH : ORIGIN = {flash:#010x}, LENGTH = 4M\n  RAM : ORIGIN = {ram:#010x}, LENGTH = 4M\n}}\n"
        );
        fs::write(out.join("memory.x"), memory).unwrap();
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-examples=-Tlink.x");
        if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
            println!("cargo:rustc-link-arg-examples=-Tdefmt.x");
        }
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    let raw = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut data)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    data
}
