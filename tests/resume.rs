//! The training example survives being killed: `--resume` continues from the
//! last checkpoint and ends with the same weights, bit for bit, as a run that
//! was never interrupted. Runs the `train` example binary that `cargo test`
//! builds beside the tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");

fn train_binary() -> PathBuf {
    common::example_binary("train")
}

fn train(out: &Path, epochs: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(train_binary());
    command
        .args([
            "--recipe", "adam", "--epochs", epochs, "--seed", "9", "--data", SUBSET, "--out",
        ])
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinycnn-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn epochs_done(checkpoint: &Path) -> usize {
    tinycnn::host::load_checkpoint::<28, 28, 10, 1960, 100, 10>(checkpoint)
        .unwrap()
        .epochs_done
}

/// Epochs of the killed run: an epoch on the subset takes tens of
/// milliseconds, so the kill lands well before the last.
const EPOCHS: &str = "20";

#[test]
fn a_run_killed_mid_epoch_resumes_to_bit_identical_weights() {
    let whole = fresh_dir("whole");
    assert!(train(&whole, EPOCHS, &[]).status().unwrap().success());

    // Kill the second run with SIGKILL once its first checkpoint exists, part
    // way through the second epoch.
    let killed = fresh_dir("killed");
    let checkpoint = killed.join("checkpoint.safetensors");
    let mut child = train(&killed, EPOCHS, &[]).spawn().unwrap();
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    // The last checkpoint loads, and at most the epoch in flight was lost.
    let done = epochs_done(&checkpoint);
    assert!((1..20).contains(&done), "{done} epochs in the checkpoint");
    assert!(
        !killed.join("model.safetensors").exists(),
        "the killed run finished after all"
    );

    // A kill that lands while a file is being written leaves its temporary
    // copy beside it (never a half-written file under the real name); the
    // resumed run writes the same files through the same temporary names, so
    // none is left once it is done.
    let resumed = train(&killed, EPOCHS, &["--resume"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(resumed.status.success());
    // It trains only the epochs after the checkpoint's: the rows it trains
    // end with a speed, the rows it read back with "-".
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        stdout.contains(&format!("resuming after epoch {done}")),
        "{stdout}"
    );
    let trained: Vec<usize> = stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let epoch = fields.first()?.parse().ok()?;
            (fields.len() == 6 && fields[5].parse::<f64>().is_ok()).then_some(epoch)
        })
        .collect();
    assert_eq!(trained, (done + 1..=20).collect::<Vec<_>>(), "{stdout}");
    assert!(
        std::fs::read_dir(&killed).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "a temporary file was left behind"
    );
    let a = std::fs::read(whole.join("model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's weights differ from the uninterrupted run's"
    );
    assert_eq!(epochs_done(&killed.join("checkpoint.safetensors")), 20);
}

#[test]
fn an_8_bit_run_resumes_to_the_same_8_bit_weights() {
    // `sgd8` checkpoints its f32 export and dense1's scales; the 8-bit values
    // come back exactly, so the resumed run ends where the whole one does.
    let run = |out: &Path, epochs: &str, extra: &[&str]| {
        let status = Command::new(train_binary())
            .args([
                "--recipe", "sgd8", "--epochs", epochs, "--seed", "4", "--data", SUBSET, "--out",
            ])
            .arg(out)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (whole, resumed) = (fresh_dir("sgd8-whole"), fresh_dir("sgd8-resumed"));
    run(&whole, "2", &[]);
    run(&resumed, "1", &[]);
    assert_eq!(epochs_done(&resumed.join("checkpoint.safetensors")), 1);
    run(&resumed, "2", &["--resume"]);
    let a = std::fs::read(whole.join("model.safetensors")).unwrap();
    let b = std::fs::read(resumed.join("model.safetensors")).unwrap();
    assert!(a == b, "the resumed 8-bit run's weights differ");
}

#[test]
fn resume_refuses_a_checkpoint_from_other_settings() {
    let out = fresh_dir("settings");
    let first = train(&out, "1", &[]).status().unwrap();
    assert!(first.success());
    let output = Command::new(train_binary())
        .args([
            "--recipe", "adam", "--epochs", "2", "--seed", "10", "--data", SUBSET, "--resume", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("written with seed 9, this run has 10"),
        "{stderr}"
    );
}
