//! Two jobs, both for the examples only:
//! - the firmware examples embed real Fashion-MNIST images: unpack the first
//!   images of the shipped subset into `OUT_DIR` as raw bytes;
//! - on bare-metal targets, put the board's `memory.x` on the examples'
//!   linker path (never a dependent's) and link them with cortex-m-rt's
//!   `link.x`.
//!
//! `TINYCNN_BOARD` picks the board (see [`Board`]).

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let subset = Path::new("data/fashion-mnist-subset");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", subset.display());
    let board = Board::from_env();
    println!("cargo::rustc-check-cfg=cfg(board_microbit, board_netduinoplus2)");
    match board {
        Board::Microbit => println!("cargo:rustc-cfg=board_microbit"),
        Board::Netduinoplus2 => println!("cargo:rustc-cfg=board_netduinoplus2"),
        Board::Mps2 => {}
    }
    // A packaged crate has no data folder: there is nothing to embed then.
    if subset.exists() {
        let (test_images, train_images) = board.images();
        for (split, count) in [("t10k", test_images), ("train", train_images)] {
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
        if board == Board::Mps2 && target.starts_with("thumbv8m") {
            println!("cargo:rustc-cfg=mps2_an505");
        }
        fs::write(out.join("memory.x"), board.memory_x(&target)).unwrap();
        // The examples' memory layout reaches the examples alone: a firmware
        // crate that depends on tinycnn links with its own `memory.x`.
        println!("cargo:rustc-link-arg-examples=-L{}", out.display());
        println!("cargo:rustc-link-arg-examples=-Tlink.x");
        if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
            println!("cargo:rustc-link-arg-examples=-Tdefmt.x");
        }
    }
}

/// The board the firmware examples are built for: `TINYCNN_BOARD` (`mps2`,
/// the default, `microbit` or `netduinoplus2`). It sets the memory map they
/// link against, so the linker refuses what does not fit the chip, and how
/// many images they embed (also on the host, whose runs are compared with
/// the board's).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Board {
    /// QEMU's MPS2 boards: 4 MiB of "flash" (RAM that QEMU loads the ELF
    /// into) and 4 MiB of RAM.
    Mps2,
    /// BBC micro:bit v1: nRF51822 (Cortex-M0), 256 KiB of flash, 16 KiB of RAM.
    Microbit,
    /// Netduino Plus 2: STM32F405RG (Cortex-M4F), 1 MiB of flash at
    /// 0x08000000 (aliased at 0), 128 KiB of SRAM at 0x20000000 (its 64 KiB
    /// of CCM are left out: QEMU 7.2 does not map them).
    Netduinoplus2,
}

impl Board {
    fn from_env() -> Self {
        println!("cargo:rerun-if-env-changed=TINYCNN_BOARD");
        match env::var("TINYCNN_BOARD").as_deref() {
            Ok("microbit") => Board::Microbit,
            Ok("netduinoplus2") => Board::Netduinoplus2,
            Ok("mps2") | Ok("") | Err(_) => Board::Mps2,
            Ok(other) => panic!("TINYCNN_BOARD={other}: the boards are mps2, microbit and netduinoplus2"),
        }
    }

    /// Test and training images the examples embed: as many as fit beside
    /// the models in the chip's flash (on the STM32F405, fine-tuning adapts
    /// on some of the test images and scores on the others).
    fn images(self) -> (usize, usize) {
        match self {
            Board::Mps2 => (500, 2000),
            Board::Microbit => (40, 0),
            Board::Netduinoplus2 => (240, 0),
        }
    }

    /// The linker's memory regions for `target`.
    fn memory_x(self, target: &str) -> String {
        let (flash, flash_len, ram, ram_len) = match self {
            Board::Mps2 if target.starts_with("thumbv8m") => (0x1000_0000, "4M", 0x3800_0000u32, "4M"),
            Board::Mps2 => (0, "4M", 0x2000_0000, "4M"),
            Board::Microbit => {
                assert!(
                    target.starts_with("thumbv6m"),
                    "the micro:bit's Cortex-M0 takes thumbv6m-none-eabi, not {target}"
                );
                (0, "256K", 0x2000_0000, "16K")
            }
            Board::Netduinoplus2 => {
                assert!(
                    target.starts_with("thumbv7em"),
                    "the STM32F405's Cortex-M4F takes thumbv7em-none-eabihf, not {target}"
                );
                (0x0800_0000, "1024K", 0x2000_0000, "128K")
            }
        };
        // An example that defines the absolute symbol TINYCNN_RAM_BYTES
        // (m4_train_256k) links against that much RAM instead.
        format!(
            "MEMORY\n{{\n  FLASH : ORIGIN = {flash:#010x}, LENGTH = {flash_len}\n  RAM : ORIGIN = {ram:#010x}, LENGTH = DEFINED(TINYCNN_RAM_BYTES) ? TINYCNN_RAM_BYTES : {ram_len}\n}}\n"
        )
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
