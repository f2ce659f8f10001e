//! Trains the CNN on Fashion-MNIST with one of the book's two recipes.
//!
//! ```text
//! cargo run --release --example train -- --recipe adam
//! cargo run --release --example train -- --recipe sgd --epochs 5 --out runs/quick
//! ```
//! Writes `model.safetensors`, `history.csv` and `training.png` into `--out`
//! (default `runs/<recipe>`), and after every epoch `checkpoint.safetensors`,
//! from which `--resume` continues an interrupted run exactly.

mod common;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand_core::SeedableRng;
use rand_pcg::Pcg32;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tinycnn::data::{split_stratified, IdxDataset, Samples, Subset};
use tinycnn::host::{load_stack_checkpoint, save_stack_checkpoint, AdamState, ParallelTrainer};
use tinycnn::stack::{Book, Book8, Deep, Split, Stack, Workspace};
use tinycnn::train::{
    Adam, AdamConfig, Epoch, Optimizer, Progress, Schedule, Sgd, State, StreamingSgdTrainer, Train,
};
use tinycnn::{FashionParams, ParamBuffer, Trainer};

tinycnn::stack! {
    /// `tinycnn::stack::Deep` with the first dense layer's kernel in 8 bits:
    /// what `--model deep --recipe sgd8` trains.
    struct Deep8: [28, 28, 1] => {
        Conv2d(16, 3), Relu, MaxPool2, Conv2d(32, 3), Relu, MaxPool2,
        Flatten, Dropout, Dense(100, i8), Relu, Dense(10)
    }
}

/// The largest batch `--recipe sgd8` takes (its trainer keeps each sample's
/// hidden-layer gradient until the batch's second pass).
const MAX_BATCH_SGD8: usize = 256;

/// The seed of the train/validation split: fixed, as in the book, whatever `--seed`.
const SPLIT_SEED: u64 = 42;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Recipe {
    /// Plain SGD, lr 0.01, batch 128, no dropout.
    Sgd,
    /// Adam (Keras defaults), batch 32, dropout 0.5 after flatten.
    Adam,
    /// The `sgd` recipe with the first dense layer's kernel in 8 bits
    /// (`stack::Book8`, or the deep model's twin), updated in place with
    /// stochastic rounding: the arithmetic of the firmware that trains in
    /// 256 KiB of RAM.
    Sgd8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Model {
    /// The book's network: one convolution (10 kernels), Dense 100, Dense 10.
    Book,
    /// Two convolutions (16 and 32 kernels) before Dense 100 and Dense 10
    /// (`tinycnn::stack::Deep`).
    Deep,
}

/// Train the Fashion-MNIST CNN.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Training recipe.
    #[arg(long, value_enum, default_value = "adam")]
    recipe: Recipe,
    /// The network to train.
    #[arg(long, value_enum, default_value = "book")]
    model: Model,
    /// Passes over the training set (at least 1).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = at_least_one)]
    epochs: usize,
    /// Mini-batch size (default: the recipe's).
    #[arg(long, allow_negative_numbers = true, value_parser = at_least_one)]
    batch: Option<usize>,
    /// Learning rate (default: the recipe's). A resumed run may lower it.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Seed of the initialization, shuffling and dropout.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    seed: u64,
    /// Directory with the four Fashion-MNIST IDX files (.gz or raw).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory (default: runs/<recipe>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run whose checkpoint is in the output directory.
    #[arg(long)]
    resume: bool,
    /// Threads that share each mini-batch. With more than one, each sample's
    /// dropout mask has its own seed: the run is the same for the same seed and
    /// thread count, but not the same as with one thread.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = at_least_one)]
    threads: usize,
    /// Another run's history.csv (or its output directory), drawn beside
    /// this run's curves in training.png.
    #[arg(long)]
    compare: Option<PathBuf>,
}

/// A count given on the command line: a whole number, at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| "too large".to_string()),
        Ok(_) => Err("must be at least 1".to_string()),
        Err(_) => Err("must be a whole number, at least 1".to_string()),
    }
}

struct EpochRow {
    epoch: usize,
    train_loss: f32,
    val_loss: f32,
    val_accuracy: f32,
    seconds: f64,
}

/// Draws the per-epoch progress bar, counting images.
struct Bar {
    bar: ProgressBar,
    batch_size: usize,
}

impl Bar {
    /// The bar of epoch `epoch` (from 0): `batches` batches of `batch_size`.
    fn new(epoch: usize, batches: usize, batch_size: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let bar = ProgressBar::new((batches * batch_size) as u64);
        bar.set_style(ProgressStyle::with_template(
            "epoch {prefix:>3} [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta} {msg}",
        )?);
        bar.set_prefix(format!("{}", epoch + 1));
        Ok(Self { bar, batch_size })
    }
}

impl Progress for Bar {
    fn batch_done(&mut self, _epoch: usize, batch: usize, _batches: usize, loss: f32) {
        self.bar.inc(self.batch_size as u64);
        if batch.is_multiple_of(16) {
            self.bar.set_message(format!("loss {loss:.4}"));
        }
    }
}

fn main() -> ExitCode {
    common::main(run)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (default_batch, default_lr, dropout) = match args.recipe {
        Recipe::Sgd | Recipe::Sgd8 => (128, 0.01, 0.0),
        Recipe::Adam => (32, AdamConfig::KERAS.lr, 0.5),
    };
    let batch_size = args.batch.unwrap_or(default_batch);
    let lr = args.lr.unwrap_or(default_lr);
    // The optimizers check the learning rate; checked here too, before any
    // file is read or written.
    Sgd::new(lr)?;
    let recipe_name = format!("{:?}", args.recipe).to_lowercase();
    let run_name = match args.model {
        Model::Book => recipe_name.clone(),
        Model::Deep => format!("deep-{recipe_name}"),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join(&run_name));
    std::fs::create_dir_all(&out)
        .map_err(|e| format!("{}: cannot create output directory: {e}", out.display()))?;
    // A run to draw beside this one, read before training so a wrong path
    // fails at once.
    let compared = match &args.compare {
        Some(path) => {
            let csv = if path.is_dir() {
                path.join("history.csv")
            } else {
                path.clone()
            };
            let text = std::fs::read_to_string(&csv).map_err(|e| format!("{}: {e}", csv.display()))?;
            let rows = parse_history(&text);
            if rows.is_empty() {
                return Err(format!("{}: no epochs in it", csv.display()).into());
            }
            Some((compared_name(&csv), rows))
        }
        None => None,
    };

    let data = common::load_data(args.data.as_deref())?;
    let train_all = data.train();
    let test = data.test();
    let mut split = vec![0u32; train_all.len()];
    let n_val = split_stratified::<10>(
        train_all.labels().as_slice(),
        0.2,
        &mut Pcg32::seed_from_u64(SPLIT_SEED),
        &mut split,
    )?;
    let (val_idx, train_idx) = split.split_at(n_val);
    let train = Subset::new(&train_all, train_idx);
    let validation = Subset::new(&train_all, val_idx);
    println!(
        "data: {} ({} train, {} validation, {} test); recipe {recipe_name}: batch {batch_size}, lr {lr}, dropout {dropout}, {} epochs, seed {}",
        data.dir().display(),
        train.len(),
        validation.len(),
        test.len(),
        args.epochs,
        args.seed
    );
    // What a checkpoint must agree on to be resumed: all but the learning
    // rate, which a run that diverged resumes with lowered.
    let mut settings = BTreeMap::from([
        ("recipe".to_string(), recipe_name.clone()),
        ("seed".to_string(), args.seed.to_string()),
        ("batch".to_string(), batch_size.to_string()),
        ("lr".to_string(), lr.to_string()),
        ("threads".to_string(), args.threads.to_string()),
        (
            "data".to_string(),
            format!("{} {} {}", train.len(), validation.len(), data.dir().display()),
        ),
    ]);
    let model_name = match args.model {
        Model::Book => "book",
        Model::Deep => "deep",
    };
    settings.insert("model".to_string(), model_name.to_string());
    let run = Run {
        args: &args,
        name: &run_name,
        batch_size,
        lr,
        dropout,
        out: &out,
        compared: compared.as_ref(),
        settings: &settings,
    };
    match (args.model, args.recipe) {
        (Model::Book, Recipe::Sgd8) => {
            let mut streaming = StreamingSgdTrainer::<MAX_BATCH_SGD8, Book8>::boxed(lr)?;
            run.sgd8::<Book8, Book, _>(&mut *streaming, &train, &validation, &test)
        }
        (Model::Deep, Recipe::Sgd8) => {
            let mut streaming = StreamingSgdTrainer::<MAX_BATCH_SGD8, Deep8>::boxed(lr)?;
            run.sgd8::<Deep8, Deep, _>(&mut *streaming, &train, &validation, &test)
        }
        (Model::Book, _) => run.f32::<Book>(&train, &validation, &test),
        (Model::Deep, _) => run.f32::<Deep>(&train, &validation, &test),
    }
}

/// Writes `history.csv` and `training.png` beside the model, says so, prints
/// the test accuracy, and warns when validation stayed at chance.
fn finish(
    out: &Path,
    rows: &[EpochRow],
    name: &str,
    compared: Option<&(String, Vec<EpochRow>)>,
    accuracy: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    tinycnn::host::write_atomically(&out.join("history.csv"), history_csv(rows).as_bytes())?;
    if let Err(e) = plot(&out.join("training.png"), rows, name, compared) {
        eprintln!(
            "warning: {}: plot not written: {e}",
            out.join("training.png").display()
        );
    }
    println!(
        "\nwrote {}/{{model.safetensors, history.csv, training.png, checkpoint.safetensors}}",
        out.display()
    );
    println!("test accuracy={accuracy:.4}");
    if let Some(last) = rows.last().filter(|last| last.val_accuracy <= CHANCE_ACCURACY) {
        eprintln!(
            "warning: validation accuracy {:.4} is chance for 10 classes: the network learned nothing (its units dead after too large a step?); lower --lr",
            last.val_accuracy
        );
    }
    Ok(())
}

/// Refuses a checkpoint written with other settings than `settings` (but
/// for the learning rate, which a resumed run may lower), and says where the
/// run resumes.
fn check_settings(
    path: &Path,
    info: &BTreeMap<String, String>,
    settings: &BTreeMap<String, String>,
    lr: f32,
) -> Result<(), String> {
    for (key, value) in settings.iter().filter(|(key, _)| *key != "lr") {
        // A checkpoint without a model entry is the book's.
        let unnamed = if key == "model" { "book" } else { "nothing" };
        let saved = info.get(key).map(String::as_str).unwrap_or(unnamed);
        if saved != value {
            return Err(format!(
                "{}: written with {key} {saved}, this run has {value}",
                path.display()
            ));
        }
    }
    let done = info.get("history").map_or(0, |h| parse_history(h).len());
    println!("resuming after epoch {done} from {}", path.display());
    if let Some(saved) = info.get("lr").filter(|saved| **saved != lr.to_string()) {
        println!("learning rate {lr} (the checkpoint's run had {saved})");
    }
    Ok(())
}

/// A training error as the one line the run ends with: a divergence with
/// what to do about it.
fn training_error(e: tinycnn::Error, epoch: usize) -> String {
    match e {
        tinycnn::Error::Diverged(_) if epoch > 0 => {
            format!("{e}; lower --lr (--resume continues from the checkpoint of epoch {epoch})")
        }
        tinycnn::Error::Diverged(_) => format!("{e}; lower --lr"),
        e => e.to_string(),
    }
}

/// One training run: its settings, where it writes, and the epochs it
/// drives through any schedule ([`Train`]).
struct Run<'a> {
    args: &'a Args,
    name: &'a str,
    batch_size: usize,
    lr: f32,
    dropout: f32,
    out: &'a Path,
    compared: Option<&'a (String, Vec<EpochRow>)>,
    settings: &'a BTreeMap<String, String>,
}

/// The training images.
type Image = [[f32; 28]; 28];

impl Run<'_> {
    fn checkpoint_path(&self) -> PathBuf {
        self.out.join("checkpoint.safetensors")
    }

    /// The epochs from `rows.len()` on of `schedule` training `model` with
    /// `optimizer`, each followed by its row (validation included) and
    /// `save` of the checkpoint with the settings and the history.
    #[allow(clippy::too_many_arguments)]
    fn epochs<M: ?Sized, O: ?Sized, T: Train<M, O, Input = Image>>(
        &self,
        schedule: &mut T,
        model: &mut M,
        optimizer: &mut O,
        train: &Subset<'_, IdxDataset<'_>>,
        validation: &Subset<'_, IdxDataset<'_>>,
        rows: &mut Vec<EpochRow>,
        mut save: impl FnMut(&M, &O, usize, &BTreeMap<String, String>) -> Result<(), Box<dyn std::error::Error>>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut order = vec![0u32; train.len()];
        let batches = train.len() / self.batch_size;
        println!("\n{}", EpochRow::HEADER);
        for row in rows.iter() {
            println!("{}", row.table_line(None));
        }
        for epoch in rows.len()..self.args.epochs {
            let mut progress = Bar::new(epoch, batches, self.batch_size)?;
            let start = Instant::now();
            // Each epoch draws from its own stream, so a resumed run repeats
            // an uninterrupted one bit for bit.
            let mut rng = epoch_rng(self.args.seed, epoch);
            let epoch_of = Epoch::new(&mut order, self.batch_size, &mut rng)
                .number(epoch)
                .progress(&mut progress);
            let train_loss = schedule
                .train_epoch(model, optimizer, train, epoch_of)
                .map_err(|e| training_error(e, epoch))?;
            let train_seconds = start.elapsed().as_secs_f64();
            progress.bar.finish_and_clear();
            let val = schedule.evaluate(model, validation)?;
            let row = EpochRow {
                epoch: epoch + 1,
                train_loss,
                val_loss: val.loss,
                val_accuracy: val.accuracy,
                seconds: start.elapsed().as_secs_f64(),
            };
            println!(
                "{}",
                row.table_line(Some((batches * self.batch_size) as f64 / train_seconds))
            );
            rows.push(row);
            let mut info = self.settings.clone();
            info.insert("history".to_string(), history_csv(rows));
            save(model, optimizer, epoch + 1, &info)?;
        }
        Ok(())
    }

    /// The `sgd` or `adam` recipe on stack `S`, on one thread ([`Trainer`])
    /// or several ([`ParallelTrainer`]); the model in the stack's Keras
    /// layout.
    fn f32<S>(
        &self,
        train: &Subset<'_, IdxDataset<'_>>,
        validation: &Subset<'_, IdxDataset<'_>>,
        test: &IdxDataset<'_>,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        S: Stack<Input = Image>,
        S::Layers: Split,
    {
        let mut params = S::boxed_params();
        S::init_glorot(&mut params, &mut Pcg32::seed_from_u64(self.args.seed));
        let mut optimizer = Opt::<S::Params>::of(self.args.recipe, self.lr)?;
        let checkpoint_path = self.checkpoint_path();
        let mut rows = Vec::new();
        if self.args.resume {
            let checkpoint = load_stack_checkpoint::<S>(&checkpoint_path)?;
            check_settings(&checkpoint_path, &checkpoint.info, self.settings, self.lr)?;
            params = checkpoint.params;
            optimizer.restore(checkpoint.adam.as_ref())?;
            rows = parse_history(checkpoint.info.get("history").map(String::as_str).unwrap_or(""));
        }
        let save = |params: &S::Params, optimizer: &Opt<S::Params>, done, info: &BTreeMap<String, String>| {
            save_stack_checkpoint::<S>(&checkpoint_path, params, optimizer.adam(), done, info)?;
            Ok(())
        };
        match self.args.threads {
            1 => {
                let mut trainer = Trainer::<S>::boxed();
                trainer.set_dropout(self.dropout)?;
                self.epochs(
                    &mut *trainer,
                    &mut *params,
                    &mut optimizer,
                    train,
                    validation,
                    &mut rows,
                    save,
                )?;
            }
            threads => {
                let mut parallel = ParallelTrainer::<S>::new(threads)?;
                parallel.set_dropout(self.dropout)?;
                self.epochs(
                    &mut parallel,
                    &mut *params,
                    &mut optimizer,
                    train,
                    validation,
                    &mut rows,
                    save,
                )?;
            }
        }
        let mut ws = Workspace::<S>::boxed();
        let matrix = common::confusion_with(test, |image| ws.predict(&params, image))?;
        let accuracy = common::report(&matrix);
        tinycnn::host::save_stack::<S>(&params, &self.out.join("model.safetensors"))?;
        finish(self.out, &rows, self.name, self.compared, accuracy)
    }

    /// The `sgd8` recipe: stack `S8`, whose wide dense layer keeps its
    /// kernel in 8 bits, trained by `streaming` (SGD without a gradient of
    /// that kernel); checkpoints and the model are its `f32` export, stack
    /// `S`, with the 8-bit layer's scales beside them in the checkpoint.
    fn sgd8<S8, S, T>(
        &self,
        streaming: &mut T,
        train: &Subset<'_, IdxDataset<'_>>,
        validation: &Subset<'_, IdxDataset<'_>>,
        test: &IdxDataset<'_>,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        S8: Stack<Input = Image>,
        S: Stack<Input = Image>,
        T: Train<S8::Params, Sgd, Input = Image>,
    {
        if self.args.threads > 1 {
            return Err("--recipe sgd8 trains on one thread".into());
        }
        let mut params8 = S8::boxed_params();
        S8::init_glorot(&mut params8, &mut Pcg32::seed_from_u64(self.args.seed));
        let mut export = S::boxed_params();
        let checkpoint_path = self.checkpoint_path();
        let mut rows = Vec::new();
        if self.args.resume {
            let checkpoint = load_stack_checkpoint::<S>(&checkpoint_path)?;
            check_settings(&checkpoint_path, &checkpoint.info, self.settings, self.lr)?;
            // The checkpoint holds the f32 export and the scales it was taken with.
            let scales = checkpoint
                .info
                .get(SCALES_KEY)
                .and_then(|text| parse_scales(text))
                .ok_or_else(|| format!("{}: no dense1 scales in it", checkpoint_path.display()))?;
            S8::import::<S>(&checkpoint.params, &mut params8, &scales)?;
            rows = parse_history(checkpoint.info.get("history").map(String::as_str).unwrap_or(""));
        }
        streaming.set_dropout(self.dropout)?;
        let mut sgd = Sgd::new(self.lr)?;
        let save = |params8: &S8::Params, _: &Sgd, done, info: &BTreeMap<String, String>| {
            S8::export::<S>(params8, &mut export);
            let mut scales = Vec::new();
            S8::for_each_scales(params8, |s| scales.extend_from_slice(s));
            let mut info = info.clone();
            info.insert(SCALES_KEY.to_string(), scales_text(&scales));
            save_stack_checkpoint::<S>(&checkpoint_path, &export, None, done, &info)?;
            Ok(())
        };
        self.epochs(
            streaming,
            &mut *params8,
            &mut sgd,
            train,
            validation,
            &mut rows,
            save,
        )?;
        let mut ws = Workspace::<S8>::boxed();
        let matrix = common::confusion_with(test, |image| ws.predict(&params8, image))?;
        let accuracy = common::report(&matrix);
        // The export: what weight files, `evaluate` and `quantize` read.
        S8::export::<S>(&params8, &mut export);
        tinycnn::host::save_stack::<S>(&export, &self.out.join("model.safetensors"))?;
        finish(self.out, &rows, self.name, self.compared, accuracy)
    }
}

/// The validation accuracy at or under which a run has learned nothing:
/// one class in ten is chance, and a network whose ReLUs all died predicts
/// one class for every image. A run that learns anything passes it within
/// its first batches.
const CHANCE_ACCURACY: f32 = 0.15;

/// Where an `sgd8` checkpoint keeps dense1's scales (the export's weights
/// are `value * scale`): one per hidden unit.
const SCALES_KEY: &str = "dense1_scales";

/// Scales as text that reads back to the same bits.
fn scales_text(scales: &[f32]) -> String {
    scales
        .iter()
        .map(|s| format!("{:08x}", s.to_bits()))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_scales(text: &str) -> Option<Vec<f32>> {
    text.split(',')
        .map(|hex| u32::from_str_radix(hex, 16).ok().map(f32::from_bits))
        .collect()
}

/// The random stream of one epoch (shuffling and dropout), derived from the seed.
fn epoch_rng(seed: u64, epoch: usize) -> Pcg32 {
    Pcg32::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The recipes' optimizers, so a checkpoint can reach Adam's state.
enum Opt<P = FashionParams> {
    Sgd(Sgd),
    Adam(Box<Adam<P>>),
}

impl<P: ParamBuffer> Opt<P> {
    /// The recipe's optimizer at learning rate `lr`.
    fn of(recipe: Recipe, lr: f32) -> Result<Self, tinycnn::Error> {
        Ok(match recipe {
            Recipe::Sgd | Recipe::Sgd8 => Opt::Sgd(Sgd::new(lr)?),
            Recipe::Adam => Opt::Adam(Adam::boxed(AdamConfig {
                lr,
                ..AdamConfig::KERAS
            })?),
        })
    }

    /// Adam, when the recipe has it: what a checkpoint keeps.
    fn adam(&self) -> Option<&Adam<P>> {
        match self {
            Opt::Adam(adam) => Some(adam),
            Opt::Sgd(_) => None,
        }
    }

    /// Adam's state from a checkpoint, when the recipe has Adam.
    fn restore(&mut self, state: Option<&AdamState>) -> Result<(), tinycnn::Error> {
        if let (Opt::Adam(adam), Some(state)) = (self, state) {
            adam.restore(state.steps, &state.m, &state.v)?;
        }
        Ok(())
    }
}

impl<P: ParamBuffer> Optimizer for Opt<P> {
    fn schedule(&mut self, len: usize) -> Result<(Schedule<'_>, State<'_>), tinycnn::Error> {
        match self {
            Opt::Sgd(sgd) => sgd.schedule(len),
            Opt::Adam(adam) => adam.schedule(len),
        }
    }
}

impl EpochRow {
    /// The column names of [`table_line`](Self::table_line).
    const HEADER: &str = "epoch train_loss   val_loss   val_acc  seconds  images/s";

    fn table_line(&self, images_per_second: Option<f64>) -> String {
        let speed = images_per_second.map_or("-".to_string(), |v| format!("{v:.0}"));
        format!(
            "{:>5} {:>10.4} {:>10.4} {:>9.4} {:>8.2} {:>9}",
            self.epoch, self.train_loss, self.val_loss, self.val_accuracy, self.seconds, speed
        )
    }
}

const HISTORY_HEADER: &str = "epoch,train_loss,val_loss,val_accuracy,seconds";

fn history_csv(rows: &[EpochRow]) -> String {
    let mut csv = format!("{HISTORY_HEADER}\n");
    for r in rows {
        csv += &format!(
            "{},{},{},{},{:.3}\n",
            r.epoch, r.train_loss, r.val_loss, r.val_accuracy, r.seconds
        );
    }
    csv
}

fn parse_history(csv: &str) -> Vec<EpochRow> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Some(EpochRow {
                epoch: f.first()?.parse().ok()?,
                train_loss: f.get(1)?.parse().ok()?,
                val_loss: f.get(2)?.parse().ok()?,
                val_accuracy: f.get(3)?.parse().ok()?,
                seconds: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// A curve of the loss plot: its name, the value it reads, its colour.
type Curve = (&'static str, fn(&EpochRow) -> f32, plotters::style::RGBColor);

/// What to call a compared run in the plot's legend: its directory's name.
fn compared_name(csv: &Path) -> String {
    csv.parent().and_then(|dir| dir.file_name()).map_or_else(
        || "compared".to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Loss (train and validation) and validation accuracy per epoch, with a
/// compared run's curves beside them (dashed). Text needs a TrueType font from
/// the system; without one the curves are drawn unlabelled.
fn plot(
    path: &Path,
    rows: &[EpochRow],
    name: &str,
    compared: Option<&(String, Vec<EpochRow>)>,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    const FONTS: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    let font = FONTS.iter().find_map(|f| std::fs::read(f).ok());
    let labelled = match font {
        Some(bytes) => plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .is_ok(),
        None => false,
    };
    let root = BitMapBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let all = || rows.iter().chain(compared.iter().flat_map(|(_, c)| c.iter()));
    let epochs = all().map(|r| r.epoch).max().unwrap_or(0).max(2) as f64;
    let max_loss = all()
        .flat_map(|r| [r.train_loss, r.val_loss])
        .fold(0.0f32, f32::max) as f64
        * 1.05;
    let min_acc = all().map(|r| r.val_accuracy).fold(1.0f32, f32::min) as f64 - 0.01;
    let mut loss_chart = ChartBuilder::on(&left);
    let mut acc_chart = ChartBuilder::on(&right);
    for chart in [&mut loss_chart, &mut acc_chart] {
        chart
            .margin(15)
            .x_label_area_size(if labelled { 35 } else { 0 })
            .y_label_area_size(if labelled { 50 } else { 0 });
    }
    if labelled {
        loss_chart.caption("loss", ("sans-serif", 22));
        acc_chart.caption("validation accuracy", ("sans-serif", 22));
    }
    let mut loss = loss_chart.build_cartesian_2d(1.0..epochs, 0.0..max_loss.max(1e-3))?;
    let mut acc = acc_chart.build_cartesian_2d(1.0..epochs, min_acc.max(0.0)..1.0)?;
    if labelled {
        loss.configure_mesh().x_desc("epoch").draw()?;
        acc.configure_mesh().x_desc("epoch").draw()?;
    }
    let points = |rows: &[EpochRow], f: fn(&EpochRow) -> f32| {
        rows.iter()
            .map(move |r| (r.epoch as f64, f(r) as f64))
            .collect::<Vec<_>>()
    };
    // This run solid; the compared run dashed, in the same colours.
    let mut runs = vec![(name.to_string(), rows, false)];
    if let Some((other, other_rows)) = compared {
        runs.push((format!("{other} (dashed)"), other_rows.as_slice(), true));
    }
    for (run, rows, dashed) in runs {
        let curves: [Curve; 2] = [
            ("train", |r: &EpochRow| r.train_loss, BLUE),
            ("validation", |r: &EpochRow| r.val_loss, RED),
        ];
        for (what, f, colour) in curves {
            let label = format!("{run} {what}");
            let style = colour.stroke_width(2);
            let series = if dashed {
                loss.draw_series(DashedLineSeries::new(points(rows, f), 6, 4, style))?
            } else {
                loss.draw_series(LineSeries::new(points(rows, f), style))?
            };
            if labelled {
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
            }
        }
        let style = GREEN.stroke_width(2);
        let accuracy = points(rows, |r| r.val_accuracy);
        let series = if dashed {
            acc.draw_series(DashedLineSeries::new(accuracy, 6, 4, style))?
        } else {
            acc.draw_series(LineSeries::new(accuracy, style))?
        };
        if labelled {
            series
                .label(run)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN));
        }
    }
    if labelled {
        loss.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        if compared.is_some() {
            acc.configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}
