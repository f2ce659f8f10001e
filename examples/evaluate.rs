//! Prints the test accuracy of a weight file on Fashion-MNIST: per class, the
//! confusion matrix, and last a line `accuracy=0.xxxx`.
//!
//! ```text
//! cargo run --release --example evaluate -- --weights runs/adam/model.safetensors
//! ```
//! Reads safetensors files in the Keras layout (ours, or one exported from
//! Keras; see the README), weight blobs written by the `export` example, and
//! int8 blobs written by the `quantize` example.

mod common;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tinycnn::data::Samples;
use tinycnn::stack::{Deep, Workspace};

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
    /// The network the weights are of: `book` (safetensors, weight blobs,
    /// int8 blobs) or `deep` (`tinycnn::stack::Deep`, safetensors).
    #[arg(long, default_value = "book")]
    model: String,
}

fn main() -> ExitCode {
    common::main(run)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let data = common::load_data(args.data.as_deref())?;
    let test = data.test();
    let bytes = std::fs::read(&args.weights).map_err(|e| format!("{}: {e}", args.weights.display()))?;
    let matrix = if args.model == "deep" {
        let params = tinycnn::host::load_stack::<Deep>(&args.weights)?;
        println!("weights: {} (the deep model)", args.weights.display());
        let mut ws = Workspace::<Deep>::boxed();
        common::confusion_with(&test, |image| ws.predict(&params, image))?
    } else if args.model != "book" {
        return Err(format!("--model {}: the models are book and deep", args.model).into());
    } else if bytes.starts_with(&tinycnn::quant::MAGIC) {
        // An int8 blob: viewed in place, so copy it to 4-byte aligned storage first.
        let aligned = tinycnn::host::AlignedBytes::new(&bytes);
        let model = tinycnn::quant::QuantModel::<28, 28, 10, 1960, 100, 10>::from_blob(aligned.as_bytes())
            .map_err(|e| format!("{}: {e}", args.weights.display()))?;
        let mut ws = tinycnn::quant::QuantWorkspace::new();
        let images = test.images();
        let mut matrix = [[0usize; 10]; 10];
        for (i, &label) in test.labels().as_slice().iter().enumerate() {
            let pixels = images.image(i).ok_or("image missing")?;
            matrix[usize::from(label)][model.predict(pixels, &mut ws)?] += 1;
        }
        println!("weights: {} (int8)", args.weights.display());
        matrix
    } else {
        let params = common::load_weights(&args.weights)?;
        println!("weights: {}", args.weights.display());
        common::confusion(&*params, &test)?
    };
    println!("data: {} ({} test images)", data.dir().display(), test.len());
    let accuracy = common::report(&matrix);
    println!("accuracy={accuracy:.4}");
    Ok(())
}
