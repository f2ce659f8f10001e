//! Prints the test accuracy of a weight file on Fashion-MNIST: per class, the
//! confusion matrix, and last a line `accuracy=0.xxxx`.
//!
//! ```text
//! cargo run --release --example evaluate -- --weights runs/adam/model.safetensors
//! ```
//! Reads safetensors files in the Keras layout (ours, or one exported from
//! Keras; see the README) and weight blobs written by the `export` example.

mod common;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tinycnn::data::Samples;
use tinycnn::FashionParams;

/// Evaluate a weight file on the Fashion-MNIST test set.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// A `.safetensors` file in the Keras layout, or a weight blob.
    #[arg(long)]
    weights: PathBuf,
    /// Directory with the four Fashion-MNIST IDX files (.gz or raw).
    #[arg(long)]
    data: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let params = load_weights(&args.weights)?;
    let data = common::load_data(args.data.as_deref())?;
    let test = data.test();
    println!(
        "weights: {}\ndata: {} ({} test images)",
        args.weights.display(),
        data.dir().display(),
        test.len()
    );
    let matrix = common::confusion(&params, &test)?;
    let accuracy = common::report(&matrix);
    println!("accuracy={accuracy:.4}");
    Ok(())
}

/// A weight blob when the file starts with the blob's magic, safetensors otherwise.
fn load_weights(path: &std::path::Path) -> Result<Box<FashionParams>, tinycnn::host::HostError> {
    let mut magic = [0u8; 4];
    let is_blob = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map(|()| magic == tinycnn::weights::MAGIC)
        .unwrap_or(false);
    if is_blob {
        tinycnn::host::load_blob(path)
    } else {
        tinycnn::host::load_safetensors(path)
    }
}
