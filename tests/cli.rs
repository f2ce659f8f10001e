//! Bad input on the command line: each case ends with one line on stderr that
//! names the file and the problem, a non-zero exit, and no panic. The README
//! lists these cases and what they print.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/keras_layout.safetensors"
);
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinycnn-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the shipped subset, raw (not gzip) so single bytes are easy to change.
fn raw_subset(name: &str) -> PathBuf {
    let dir = scratch(name);
    for file in FILES {
        let bytes = tinycnn::host::read_maybe_gz(&Path::new(SUBSET).join(format!("{file}.gz"))).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

/// Runs an example, expects failure, returns its single stderr line.
fn fails(example: &str, args: &[&str]) -> String {
    let output = Command::new(common::example_binary(example))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "{example} {args:?} succeeded");
    assert_eq!(output.status.code(), Some(1), "{example} {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "{example} {args:?} printed {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn a_missing_data_directory() {
    let line = fails(
        "train",
        &[
            "--epochs",
            "1",
            "--data",
            "/no/such/dir",
            "--out",
            scratch("missing").to_str().unwrap(),
        ],
    );
    assert_eq!(
        line,
        "error: /no/such/dir/train-images-idx3-ubyte.gz: No such file or directory (os error 2)"
    );
}

#[test]
fn a_truncated_gzip_file() {
    let dir = scratch("truncated");
    for file in FILES {
        std::fs::copy(
            Path::new(SUBSET).join(format!("{file}.gz")),
            dir.join(format!("{file}.gz")),
        )
        .unwrap();
    }
    let gz = dir.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 3]).unwrap();
    let line = fails(
        "evaluate",
        &["--weights", FIXTURE, "--data", dir.to_str().unwrap()],
    );
    assert!(
        line.contains(&format!("{}: corrupt or truncated gzip data", gz.display())),
        "{line}"
    );
}

#[test]
fn a_wrong_magic_number() {
    let dir = raw_subset("magic");
    let path = dir.join("t10k-images-idx3-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2] = 9;
    std::fs::write(&path, bytes).unwrap();
    let line = fails(
        "evaluate",
        &["--weights", FIXTURE, "--data", dir.to_str().unwrap()],
    );
    assert_eq!(
        line,
        format!(
            "error: {}: IDX image file: wrong magic number 0x00000903",
            path.display()
        )
    );
}

#[test]
fn image_and_label_counts_that_disagree() {
    let dir = raw_subset("counts");
    let path = dir.join("train-labels-idx1-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    let mut fewer = bytes[..bytes.len() - 1].to_vec();
    fewer[4..8].copy_from_slice(&5999u32.to_be_bytes());
    std::fs::write(&path, fewer).unwrap();
    let line = fails(
        "evaluate",
        &["--weights", FIXTURE, "--data", dir.to_str().unwrap()],
    );
    assert_eq!(
        line,
        format!(
            "error: {}: IDX data set: image and label files hold different numbers of samples",
            dir.join("train-images-idx3-ubyte").display()
        )
    );
}

fn safetensors_with(name: &str, dtype: safetensors::Dtype, shape: Vec<usize>) -> PathBuf {
    let bytes = std::fs::read(FIXTURE).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let buffers: Vec<(String, Vec<u8>, Vec<usize>, safetensors::Dtype)> = file
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            if n == name {
                let len = shape.iter().product::<usize>() * dtype.bitsize() / 8;
                (n, vec![0u8; len], shape.clone(), dtype)
            } else {
                (n, t.data().to_vec(), t.shape().to_vec(), t.dtype())
            }
        })
        .collect();
    let views: Vec<_> = buffers
        .iter()
        .map(|(n, data, shape, dtype)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let path = scratch(name).join("bad.safetensors");
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn safetensors_with_a_wrong_shape_or_dtype() {
    let path = safetensors_with("dense2.kernel", safetensors::Dtype::F32, vec![10, 100]);
    let line = fails(
        "evaluate",
        &["--weights", path.to_str().unwrap(), "--data", SUBSET],
    );
    assert_eq!(
        line,
        format!(
            "error: {}: tensor `dense2.kernel` has shape [10, 100], expected [100, 10]",
            path.display()
        )
    );
    let path = safetensors_with("conv.bias", safetensors::Dtype::F16, vec![10]);
    let line = fails(
        "export",
        &[
            "--weights",
            path.to_str().unwrap(),
            "--out",
            "/tmp/never-written.tcnn",
        ],
    );
    assert_eq!(
        line,
        format!(
            "error: {}: tensor `conv.bias` has dtype F16, expected F32",
            path.display()
        )
    );
    assert!(!Path::new("/tmp/never-written.tcnn").exists());
}

#[test]
fn an_unwritable_output_directory() {
    let dir = scratch("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    let line = fails(
        "train",
        &["--epochs", "1", "--data", SUBSET, "--out", out.to_str().unwrap()],
    );
    assert_eq!(
        line,
        format!(
            "error: {}: cannot create output directory: Not a directory (os error 20)",
            out.display()
        )
    );
}

#[test]
fn settings_out_of_range() {
    let out = scratch("settings");
    let out = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--data", SUBSET, "--out", out];
        if !extra.contains(&"--epochs") {
            args.extend(["--epochs", "1"]);
        }
        args.extend_from_slice(extra);
        fails("train", &args)
    };
    for (flag, value) in [
        ("--batch", "0"),
        ("--batch", "-3"),
        ("--threads", "0"),
        ("--epochs", "0"),
        ("--epochs", "-1"),
    ] {
        let name = flag.trim_start_matches('-').to_uppercase();
        assert_eq!(
            run(&[flag, value]),
            format!("error: invalid value '{value}' for '{flag} <{name}>': must be at least 1")
        );
    }
    assert_eq!(
        run(&["--epochs", "two"]),
        "error: invalid value 'two' for '--epochs <EPOCHS>': must be a whole number, at least 1"
    );
    assert_eq!(
        run(&["--batch", "100000"]),
        "error: invalid configuration: batch size must be between 1 and the training set size"
    );
    for lr in [
        &["--lr=-1"][..],
        &["--lr", "-1"],
        &["--lr", "0"],
        &["--recipe", "sgd", "--lr", "-0.5"],
    ] {
        assert_eq!(
            run(lr),
            "error: invalid configuration: learning rate must be finite and positive",
            "{lr:?}"
        );
    }
    assert_eq!(
        run(&["--lr=nan"]),
        "error: invalid configuration: learning rate must be finite and positive"
    );
    assert_eq!(
        run(&["--recipe", "sgd8", "--threads", "2"]),
        "error: --recipe sgd8 trains on one thread"
    );
    assert_eq!(
        run(&["--recipe", "sgd8", "--batch", "300"]),
        "error: batch has length 300, expected 256"
    );
    let missing = format!("{out}/no-such-run/history.csv");
    assert!(run(&["--compare", &missing]).starts_with(&format!("error: {missing}: ")));
}

/// Runs `train` on the subset into `out`; returns its exit code and stderr.
fn train(out: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(common::example_binary("train"))
        .args(["--data", SUBSET, "--out"])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

/// The one line a diverged run ends with, checked for its shape: the epoch
/// and batch, a loss above the bound, the advice.
fn diverged_line(out: &Path, args: &[&str], epoch: usize) -> String {
    let (code, stderr) = train(out, args);
    assert_eq!(code, Some(1), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} printed {stderr:?}");
    let line = lines[0];
    let prefix = format!("error: training diverged at epoch {epoch}, batch ");
    let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{line}"));
    let (_batch, rest) = rest.split_once(": loss ").unwrap_or_else(|| panic!("{line}"));
    let (loss, advice) = rest.split_once(';').unwrap_or_else(|| panic!("{line}"));
    let loss: f32 = loss.parse().unwrap_or_else(|_| panic!("{line}"));
    assert!(loss.is_nan() || loss > tinycnn::train::DIVERGED_LOSS, "{line}");
    assert!(advice.starts_with(" lower --lr"), "{line}");
    assert!(
        !out.join("model.safetensors").exists(),
        "{args:?} wrote a final model"
    );
    line.to_string()
}

#[test]
fn a_diverging_run_fails_with_one_line_and_writes_no_model() {
    for args in [
        &["--recipe", "sgd", "--lr", "1e6"][..],
        &["--recipe", "sgd8", "--lr", "1e6"],
        &["--recipe", "adam", "--lr", "1e6"],
        &["--recipe", "sgd", "--lr", "1e6", "--threads", "2"],
    ] {
        let out = scratch("diverging");
        let line = diverged_line(&out, &[args, &["--epochs", "2"]].concat(), 1);
        assert!(line.ends_with("; lower --lr"), "{line}");
        assert!(!out.join("checkpoint.safetensors").exists(), "{args:?}");
    }
}

#[test]
fn a_run_that_diverges_after_an_epoch_keeps_its_checkpoint_and_resumes_with_a_lower_lr() {
    let out = scratch("diverging-later");
    let checkpoint = out.join("checkpoint.safetensors");
    let epochs_done = || {
        tinycnn::host::load_checkpoint::<28, 28, 10, 1960, 100, 10>(&checkpoint)
            .unwrap()
            .epochs_done
    };
    let sgd = ["--recipe", "sgd", "--seed", "3"];
    let (code, stderr) = train(&out, &[&sgd[..], &["--epochs", "1"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::remove_file(out.join("model.safetensors")).unwrap();
    let first_epoch = std::fs::read(&checkpoint).unwrap();

    // Epoch 2 with a learning rate that blows up at once.
    let line = diverged_line(
        &out,
        &[&sgd[..], &["--epochs", "3", "--resume", "--lr", "1e6"]].concat(),
        2,
    );
    assert!(
        line.ends_with("; lower --lr (--resume continues from the checkpoint of epoch 1)"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(&checkpoint).unwrap(),
        first_epoch,
        "the checkpoint changed"
    );

    // Resumed with a lower rate, the run trains epochs 2 and 3 and finishes.
    let (code, stderr) = train(
        &out,
        &[&sgd[..], &["--epochs", "3", "--resume", "--lr", "0.005"]].concat(),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(epochs_done(), 3);
    assert!(out.join("model.safetensors").exists());
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
}

#[test]
fn a_run_that_ends_at_chance_says_so() {
    // An SGD step of 1 kills every unit at once: the loss settles at ln 10,
    // under any bound, and validation scores one class in ten.
    let out = scratch("dead");
    let (code, stderr) = train(&out, &["--recipe", "sgd", "--lr", "1", "--epochs", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("warning: validation accuracy 0.")
            && lines[0].contains("is chance for 10 classes"),
        "{stderr}"
    );
    // A healthy run says nothing of it.
    let (code, stderr) = train(&scratch("alive"), &["--recipe", "sgd", "--epochs", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// The training losses in `out`'s history.
fn train_losses(out: &Path) -> Vec<f32> {
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    history
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn the_deep_model_trains_on_two_threads() {
    let out = scratch("deep-threads");
    let (code, stderr) = train(
        &out,
        &[
            "--model",
            "deep",
            "--recipe",
            "adam",
            "--epochs",
            "2",
            "--threads",
            "2",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let losses = train_losses(&out);
    assert!(losses[1] < losses[0] && losses[0] < 2.0, "{losses:?}");
}

/// The test accuracy `evaluate --model deep` gives the weights at `model`.
fn deep_accuracy(model: &Path) -> f32 {
    let evaluated = Command::new(common::example_binary("evaluate"))
        .args(["--model", "deep", "--data", SUBSET, "--weights"])
        .arg(model)
        .output()
        .unwrap();
    assert!(
        evaluated.status.success(),
        "{}",
        String::from_utf8_lossy(&evaluated.stderr)
    );
    String::from_utf8_lossy(&evaluated.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("accuracy=").map(|a| a.parse::<f32>().unwrap()))
        .unwrap()
}

#[test]
fn the_deep_model_trains_in_8_bits_and_exports_in_f32() {
    let out = scratch("deep-sgd8");
    let (code, stderr) = train(
        &out,
        &[
            "--model", "deep", "--recipe", "sgd8", "--epochs", "3", "--lr", "0.05", "--batch", "32",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let losses = train_losses(&out);
    assert!(losses[2] < losses[0] && losses[0] < 2.5, "{losses:?}");
    assert!(deep_accuracy(&out.join("model.safetensors")) > 0.5);
    // Resumed from its checkpoint (the export and the scales), it goes on.
    let (code, stderr) = train(
        &out,
        &[
            "--model", "deep", "--recipe", "sgd8", "--epochs", "4", "--lr", "0.05", "--batch", "32",
            "--resume",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(train_losses(&out).len(), 4);
}

#[test]
fn the_deep_model_trains_and_its_file_is_read_as_the_deep_model_only() {
    let out = scratch("deep");
    let (code, stderr) = train(&out, &["--model", "deep", "--recipe", "adam", "--epochs", "2"]);
    assert_eq!(code, Some(0), "{stderr}");
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let losses: Vec<f32> = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(losses[1] < losses[0], "{history}");
    let model = out.join("model.safetensors");
    let accuracy = deep_accuracy(&model);
    assert!(accuracy > 0.6, "{accuracy}");
    // Its checkpoint resumes it (not as the book's model).
    let (code, stderr) = train(
        &out,
        &["--model", "deep", "--recipe", "adam", "--epochs", "3", "--resume"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
    let whole = scratch("deep-whole");
    let (code, stderr) = train(&whole, &["--model", "deep", "--recipe", "adam", "--epochs", "3"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        std::fs::read(whole.join("model.safetensors")).unwrap()
            == std::fs::read(out.join("model.safetensors")).unwrap(),
        "the resumed run's model differs from the uninterrupted one's"
    );
    let checkpoint = out.join("checkpoint.safetensors");
    let line = fails(
        "train",
        &[
            "--recipe",
            "adam",
            "--epochs",
            "3",
            "--resume",
            "--data",
            SUBSET,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        line,
        format!("error: {}: tensor `conv.kernel` is missing", checkpoint.display())
    );
    // The deep model's file is not the book's, nor the book's the deep one's.
    let model = model.to_str().unwrap();
    let line = fails("evaluate", &["--data", SUBSET, "--weights", model]);
    assert_eq!(line, format!("error: {model}: tensor `conv.kernel` is missing"));
    let line = fails(
        "evaluate",
        &["--model", "deep", "--data", SUBSET, "--weights", FIXTURE],
    );
    assert_eq!(
        line,
        format!("error: {FIXTURE}: tensor `conv1.kernel` is missing")
    );
}
