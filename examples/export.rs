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
use tinycnn::stack::Deep;
use tinycnn::weights::StackBlob;
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
    /// The network the weights are of: `book` (a `TCNN` blob) or `deep`
    /// (`tinycnn::stack::Deep`, a `TCNS` blob).
    #[arg(long, default_value = "book")]
    model: String,
}

fn main() -> ExitCode {
    common::main(|args: Args| {
        let bytes = match args.model.as_str() {
            "book" => {
                let params = tinycnn::host::load_safetensors::<28, 28, 10, 1960, 100, 10>(&args.weights)?;
                tinycnn::host::save_blob(&params, &args.out)?;
                FashionParams::BLOB_BYTES
            }
            "deep" => {
                let params = tinycnn::host::load_stack::<Deep>(&args.weights)?;
                tinycnn::host::save_stack_blob::<Deep>(&params, &args.out)?;
                StackBlob::<Deep>::BYTES
            }
            other => return Err(format!("--model {other}: the models are book and deep").into()),
        };
        println!("wrote {} ({bytes} bytes)", args.out.display());
        Ok(())
    })
}
