//! Writes the seed corpus of the fuzz targets (valid inputs of each format) when
//! `TINYCNN_WRITE_FUZZ_SEEDS` is set, and always checks that those inputs parse,
//! so the seeds stay valid as the formats evolve. Crashes the fuzzer finds are
//! added to `fuzz/regressions/` and replayed here.

use std::collections::BTreeMap;
use std::path::Path;
use tinycnn::data::{IdxImages, IdxLabels};
use tinycnn::host::AlignedBytes;
use tinycnn::quant::{quantize, QuantModel};
use tinycnn::train::{Adam, AdamConfig, Optimizer};
use tinycnn::{ParamBuffer, Params};

type Small = Params<4, 4, 2, 8, 3, 2>;
const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

fn small() -> Box<Small> {
    let mut params: Box<Small> = bytemuck::zeroed_box();
    for (i, v) in params.as_flat_mut().iter_mut().enumerate() {
        *v = (i as f32 * 0.37).sin();
    }
    params
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let params = small();
    let mut blob = vec![0u8; Small::BLOB_BYTES];
    params.write_blob(&mut blob).unwrap();
    let safetensors = tinycnn::host::safetensors_bytes(&*params).unwrap();
    let mut adam = Adam::<Small>::boxed(AdamConfig::KERAS).unwrap();
    adam.step(params.clone().as_flat_mut(), &vec![0.5; Small::COUNT])
        .unwrap();
    let path = std::env::temp_dir().join(format!("tinycnn-seed-{}.safetensors", std::process::id()));
    let info = BTreeMap::from([("recipe".to_string(), "adam".to_string())]);
    tinycnn::host::save_checkpoint(&path, &*params, Some(&*adam), 2, &info).unwrap();
    let checkpoint = std::fs::read(&path).unwrap();
    // idx target: first byte = length of the label file, then labels, then images.
    let labels = [0u8, 0, 8, 1, 0, 0, 0, 2, 1, 0];
    let mut images = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    images.extend([0, 64, 128, 255, 1, 2, 3, 4]);
    let mut idx = vec![labels.len() as u8];
    idx.extend(labels);
    idx.extend(images);
    // int8_blob target: the small model quantized, calibrated on two images.
    let calibration = [([[0.5f32; 4]; 4], 0usize), ([[1.0f32; 4]; 4], 1)];
    let mut int8 = vec![0u8; QuantModel::<4, 4, 2, 8, 3, 2>::BLOB_BYTES];
    quantize(
        &*params,
        &calibration[..],
        &mut tinycnn::Workspace::new(),
        &mut int8,
    )
    .unwrap();
    vec![
        ("blob", "valid", blob),
        ("int8_blob", "valid", int8),
        ("safetensors", "valid", safetensors),
        ("checkpoint", "valid", checkpoint),
        ("idx", "valid", idx),
    ]
}

#[test]
fn the_fuzz_seeds_are_valid_inputs() {
    for (target, name, bytes) in seeds() {
        match target {
            "blob" => {
                let mut aligned = vec![0u32; bytes.len() / 4];
                bytemuck::cast_slice_mut::<u32, u8>(&mut aligned).copy_from_slice(&bytes);
                assert!(Small::from_blob(bytemuck::cast_slice(&aligned)).is_ok());
            }
            "safetensors" => {
                assert!(tinycnn::host::params_from_safetensors::<4, 4, 2, 8, 3, 2>(&bytes).is_ok())
            }
            "int8_blob" => {
                let aligned = AlignedBytes::new(&bytes);
                assert!(QuantModel::<4, 4, 2, 8, 3, 2>::from_blob(aligned.as_bytes()).is_ok());
            }
            "checkpoint" => {
                let c = tinycnn::host::checkpoint_from_safetensors::<4, 4, 2, 8, 3, 2>(&bytes).unwrap();
                assert_eq!((c.epochs_done, c.adam.unwrap().steps), (2, 1));
            }
            _ => {
                let split = usize::from(bytes[0]) + 1;
                assert!(IdxLabels::parse(&bytes[1..split]).is_ok());
                assert!(IdxImages::parse(&bytes[split..]).is_ok());
            }
        }
        if std::env::var_os("TINYCNN_WRITE_FUZZ_SEEDS").is_some() {
            let dir = Path::new(FUZZ).join("corpus").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), &bytes).unwrap();
        }
    }
}

/// Parses `bytes` as the input of fuzz target `target`; must not panic.
fn parse_as(target: &str, bytes: &[u8]) {
    match target {
        "blob" => {
            let _ = Small::from_blob(AlignedBytes::new(bytes).as_bytes());
        }
        "safetensors" => {
            let _ = tinycnn::host::params_from_safetensors::<4, 4, 2, 8, 3, 2>(bytes);
        }
        "int8_blob" => {
            let aligned = AlignedBytes::new(bytes);
            if let Ok(model) = QuantModel::<4, 4, 2, 8, 3, 2>::from_blob(aligned.as_bytes()) {
                let _ = model.predict(&[200u8; 16], &mut tinycnn::quant::QuantWorkspace::new());
            }
        }
        "checkpoint" => {
            let _ = tinycnn::host::checkpoint_from_safetensors::<4, 4, 2, 8, 3, 2>(bytes);
        }
        _ => {
            if let Some((&split, rest)) = bytes.split_first() {
                let (labels, images) = rest.split_at(usize::from(split).min(rest.len()));
                let _ = IdxLabels::parse(labels);
                let _ = IdxImages::parse(images);
            }
        }
    }
}

#[test]
fn every_input_the_fuzzer_kept_or_crashed_on_is_handled() {
    let mut seen = 0;
    for kind in ["corpus", "regressions"] {
        for target in ["idx", "blob", "int8_blob", "safetensors", "checkpoint"] {
            let Ok(entries) = std::fs::read_dir(Path::new(FUZZ).join(kind).join(target)) else {
                continue;
            };
            for entry in entries {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                parse_as(target, &bytes);
                seen += 1;
            }
        }
    }
    assert!(seen >= 4, "only {seen} fuzz inputs found");
}
