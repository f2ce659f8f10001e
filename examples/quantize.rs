//! Quantizes a trained f32 model to an int8 blob for firmware (see
//! `tinycnn::quant`): activation scales calibrated on the first 500 training
//! images; prints the f32 and int8 test accuracy side by side.
//!
//! ```text
//! cargo run --release --example quantize -- --weights runs/adam/model.safetensors --out model.q8
//! ```

mod common;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tinycnn::data::{Samples, Subset};
use tinycnn::quant::{compare, quantize, QuantModel, QuantWorkspace};
use tinycnn::FashionWorkspace;

type Model<'a> = QuantModel<'a, 28, 28, 10, 1960, 100, 10>;

/// Quantize weights to an int8 blob.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// A `.safetensors` file in the Keras layout, or an f32 weight blob (`export`).
    #[arg(long)]
    weights: PathBuf,
    /// The int8 blob to write.
    #[arg(long)]
    out: PathBuf,
    /// Directory with the four Fashion-MNIST IDX files (.gz or raw).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training images to calibrate the activation scales on.
    #[arg(long, default_value_t = 500)]
    calibration: usize,
}

fn main() -> ExitCode {
    common::main(run)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let params = common::load_weights(&args.weights)?;
    let data = common::load_data(args.data.as_deref())?;
    let train = data.train();
    let indices: Vec<u32> = (0..args.calibration.min(train.len()) as u32).collect();
    let calibration = Subset::new(&train, &indices);
    // u32 storage keeps the blob at a 4-byte boundary, as the zero-copy view needs.
    let mut words = vec![0u32; Model::BLOB_BYTES.div_ceil(4)];
    let bytes = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..Model::BLOB_BYTES];
    quantize(&*params, &calibration, &mut FashionWorkspace::new(), bytes)?;
    let model = Model::from_blob(bytes)?;
    let test = data.test();
    let (agree, f32_correct, int8_correct) = compare(
        &*params,
        &model,
        &test,
        &mut FashionWorkspace::new(),
        &mut QuantWorkspace::new(),
    )?;
    tinycnn::host::write_atomically(&args.out, bytes)?;
    let n = test.len() as f64;
    println!(
        "wrote {} ({} bytes); test accuracy f32 {:.4}, int8 {:.4}; predictions agree on {} of {}",
        args.out.display(),
        Model::BLOB_BYTES,
        f32_correct as f64 / n,
        int8_correct as f64 / n,
        agree,
        test.len()
    );
    Ok(())
}
