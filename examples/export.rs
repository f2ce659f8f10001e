//! Writes a safetensors weight file as a weight blob for firmware: flat,
//! versioned, checksummed, little-endian, borrowed from flash without copying
//! (see `tinycnn::weights`).
//!
//! ```text
//! cargo run --release --example export -- --weights runs/adam/model.safetensors --out model.tcnn
//! ```
//! In firmware: `static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!("model.tcnn"));`
//! then `let params = Params::from_blob(&BLOB.0)?;`.

mod common;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tinycnn::FashionParams;

/// Export weights as a blob for firmware.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// A `.safetensors` file in the Keras layout.
    #[arg(long)]
    weights: PathBuf,
    /// The blob to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    common::main(|args: Args| {
        let params = tinycnn::host::load_safetensors::<28, 28, 10, 1960, 100, 10>(&args.weights)?;
        tinycnn::host::save_blob(&params, &args.out)?;
        println!(
            "wrote {} ({} bytes)",
            args.out.display(),
            FashionParams::BLOB_BYTES
        );
        Ok(())
    })
}
