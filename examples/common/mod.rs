//! What the host examples share: finding the data, and reporting accuracy.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use tinycnn::data::Samples;
use tinycnn::host::{FashionMnist, HostError, CLASS_NAMES, DATA_DIR_ENV, SYSTEM_DATA_DIR};
use tinycnn::{FashionParams, FashionWorkspace};

/// Parses the command line into `A`, then runs `run`: a bad argument or an
/// error of the run ends with one line on stderr (`error: ...`) and exit
/// status 1; `--help` and `--version` print as clap does.
pub fn main<A: clap::Parser>(
    run: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    let args = match A::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        // clap's first line names the argument and the problem.
        Err(e) => {
            eprintln!(
                "{}",
                e.to_string().lines().next().unwrap_or("error: bad arguments")
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The subset shipped in this repository.
pub const SUBSET_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");

/// Loads Fashion-MNIST from `--data`, else `$TINYCNN_DATA`, else the system
/// package's directory, else the shipped subset (saying so, and how to get
/// the full set).
pub fn load_data(explicit: Option<&Path>) -> Result<FashionMnist, HostError> {
    if let Some(dir) = explicit {
        return FashionMnist::load(dir);
    }
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        return FashionMnist::load(Path::new(&dir));
    }
    let system = Path::new(SYSTEM_DATA_DIR);
    if system.join("train-images-idx3-ubyte.gz").exists() || system.join("train-images-idx3-ubyte").exists() {
        return FashionMnist::load(system);
    }
    eprintln!(
        "note: full Fashion-MNIST not found in {SYSTEM_DATA_DIR}; using the 6,000/1,000-image subset in {SUBSET_DIR} \
         (full set: `sudo apt-get install dataset-fashion-mnist`, or download Zalando's files and pass --data DIR)"
    );
    FashionMnist::load(&PathBuf::from(SUBSET_DIR))
}

/// Predictions over a data set as a confusion matrix: `[true][predicted]`.
pub fn confusion<S: Samples<28, 28> + ?Sized>(
    params: &impl Predict,
    samples: &S,
) -> Result<[[usize; 10]; 10], tinycnn::Error> {
    let mut ws = FashionWorkspace::new();
    confusion_with(samples, |image| params.predict(image, &mut ws))
}

/// The confusion matrix of `predict`'s classes over `samples`.
pub fn confusion_with<S: Samples<28, 28> + ?Sized>(
    samples: &S,
    mut predict: impl FnMut(&[[f32; 28]; 28]) -> Result<usize, tinycnn::Error>,
) -> Result<[[usize; 10]; 10], tinycnn::Error> {
    let mut matrix = [[0usize; 10]; 10];
    let mut image = [[0.0f32; 28]; 28];
    for i in 0..samples.len() {
        let label = samples.read(i, &mut image)?;
        let predicted = predict(&image)?;
        matrix[label][predicted] += 1;
    }
    Ok(matrix)
}

/// A model that predicts a class.
pub trait Predict {
    fn predict(&self, image: &[[f32; 28]; 28], ws: &mut FashionWorkspace) -> Result<usize, tinycnn::Error>;
}

impl Predict for FashionParams {
    fn predict(&self, image: &[[f32; 28]; 28], ws: &mut FashionWorkspace) -> Result<usize, tinycnn::Error> {
        FashionParams::predict(self, image, ws)
    }
}

/// Prints per-class accuracy and the confusion matrix; returns the accuracy.
pub fn report(matrix: &[[usize; 10]; 10]) -> f64 {
    let total: usize = matrix.iter().flatten().sum();
    let correct: usize = (0..10).map(|c| matrix[c][c]).sum();
    println!("\nper-class accuracy:");
    for (c, row) in matrix.iter().enumerate() {
        let n: usize = row.iter().sum();
        println!(
            "  {:>2} {:<12} {:.4}  ({} / {})",
            c,
            CLASS_NAMES[c],
            row[c] as f64 / n.max(1) as f64,
            row[c],
            n
        );
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    println!("      {}", (0..10).map(|c| format!("{c:>5}")).collect::<String>());
    for (c, row) in matrix.iter().enumerate() {
        println!(
            "  {c:>2}  {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        );
    }
    correct as f64 / total.max(1) as f64
}

/// A weight blob when the file starts with the blob's magic, safetensors otherwise.
pub fn load_weights(path: &std::path::Path) -> Result<Box<FashionParams>, tinycnn::host::HostError> {
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
