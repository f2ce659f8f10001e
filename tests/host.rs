//! Host I/O: the Keras-layout fixture, safetensors and blob round trips, and
//! files that must be refused with a reason naming them.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use tinycnn::data::Samples;
use tinycnn::host::{self, FashionMnist, HostError};
use tinycnn::weights::{Aligned, HEADER_BYTES};
use tinycnn::{Error, FashionParams, FashionWorkspace, ParamBuffer};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinycnn-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn reproduces_the_logits_of_an_independent_numpy_forward_pass() {
    let params: Box<FashionParams> =
        host::load_safetensors(&Path::new(FIXTURES).join("keras_layout.safetensors")).unwrap();
    let io = std::fs::read(Path::new(FIXTURES).join("keras_layout_io.safetensors")).unwrap();
    let io = safetensors::SafeTensors::deserialize(&io).unwrap();
    let images = io.tensor("images").unwrap();
    let logits = io.tensor("logits").unwrap();
    assert_eq!(images.shape(), &[8, 28, 28]);
    let expected: Vec<f32> = logits
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut ws = FashionWorkspace::new();
    for (n, pixels) in images.data().chunks_exact(784).enumerate() {
        let mut image = [[0.0f32; 28]; 28];
        for (v, &p) in image.as_flattened_mut().iter_mut().zip(pixels) {
            *v = f32::from(p) / 255.0;
        }
        let ours = params.forward(&image, &mut ws).unwrap();
        assert_all_close(
            ours,
            &expected[n * 10..(n + 1) * 10],
            1e-5,
            0.0,
            &format!("logits of image {n}"),
        );
    }
}

#[test]
fn safetensors_round_trip_and_refusals() {
    let dir = temp_dir("safetensors");
    let path = dir.join("model.safetensors");
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(1));
    params.dense1_bias[99] = 0.125;
    host::save_safetensors(&params, &path).unwrap();
    let loaded: Box<FashionParams> = host::load_safetensors(&path).unwrap();
    assert_eq!(loaded.as_flat(), params.as_flat());

    let refuse = |tensors: Vec<(&str, safetensors::Dtype, Vec<usize>)>| -> String {
        let buffers: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, dtype, shape)| vec![0u8; shape.iter().product::<usize>() * dtype.bitsize() / 8])
            .collect();
        let views: Vec<_> = tensors
            .iter()
            .zip(&buffers)
            .map(|((name, dtype, shape), b)| {
                (
                    *name,
                    safetensors::tensor::TensorView::new(*dtype, shape.clone(), b).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        let file = dir.join("bad.safetensors");
        std::fs::write(&file, bytes).unwrap();
        let err = host::load_safetensors::<28, 28, 10, 1960, 100, 10>(&file).unwrap_err();
        assert!(matches!(err, HostError::Safetensors { .. }));
        let text = err.to_string();
        assert!(text.starts_with(&file.display().to_string()), "{text}");
        text
    };
    let good = |name: &'static str| {
        let (_, shape, rank) = FashionParams::TENSOR_SHAPES
            .iter()
            .find(|t| t.0 == name)
            .copied()
            .unwrap();
        (name, safetensors::Dtype::F32, shape[..rank].to_vec())
    };
    let all = [
        "conv.kernel",
        "conv.bias",
        "dense1.kernel",
        "dense1.bias",
        "dense2.kernel",
        "dense2.bias",
    ];
    let mut wrong_shape: Vec<_> = all.iter().map(|n| good(n)).collect();
    wrong_shape[2].2 = vec![100, 1960];
    assert!(refuse(wrong_shape).contains("`dense1.kernel` has shape [100, 1960], expected [1960, 100]"));
    let mut wrong_dtype: Vec<_> = all.iter().map(|n| good(n)).collect();
    wrong_dtype[1].1 = safetensors::Dtype::F64;
    assert!(refuse(wrong_dtype).contains("`conv.bias` has dtype F64"));
    let missing: Vec<_> = all[..5].iter().map(|n| good(n)).collect();
    assert!(refuse(missing).contains("`dense2.bias` is missing"));

    std::fs::write(dir.join("garbage.safetensors"), b"not safetensors at all").unwrap();
    let err =
        host::load_safetensors::<28, 28, 10, 1960, 100, 10>(&dir.join("garbage.safetensors")).unwrap_err();
    assert!(err.to_string().contains("not a safetensors file"), "{err}");
}

#[test]
fn blobs_round_trip_zero_copy_and_refuse_corruption() {
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng(2));
    let mut blob = Box::new(Aligned([0u8; FashionParams::BLOB_BYTES]));
    params.write_blob(&mut blob.0).unwrap();
    let view = FashionParams::from_blob(&blob.0).unwrap();
    assert_eq!(view.as_flat(), params.as_flat());
    // Zero-copy: the view points into the blob.
    assert_eq!(
        view as *const FashionParams as usize,
        blob.0.as_ptr() as usize + HEADER_BYTES
    );

    let check = |mutate: &dyn Fn(&mut [u8]) -> usize| -> Error {
        let mut copy = Box::new(Aligned([0u8; FashionParams::BLOB_BYTES + 4]));
        copy.0[..FashionParams::BLOB_BYTES].copy_from_slice(&blob.0);
        let len = mutate(&mut copy.0);
        FashionParams::from_blob(&copy.0[..len]).unwrap_err()
    };
    let full = FashionParams::BLOB_BYTES;
    assert!(matches!(
        check(&|b| {
            b[0] = b'X';
            full
        }),
        Error::BadMagic { .. }
    ));
    assert_eq!(
        check(&|b| {
            b[4] = 2;
            full
        }),
        Error::UnsupportedVersion { found: 2 }
    );
    assert!(matches!(
        check(&|b| {
            b[20] = 50;
            full
        }),
        Error::Dimensions { .. }
    ));
    assert!(matches!(
        check(&|b| {
            b[40] ^= 1;
            full
        }),
        Error::Checksum { .. }
    ));
    assert!(matches!(check(&|_| full - 1), Error::Length { .. }));
    assert!(matches!(check(&|_| full + 4), Error::Length { .. }));
    assert!(matches!(check(&|_| 10), Error::Length { .. }));
    // NaN weights with a matching checksum are still refused.
    let mut nan = FashionParams::boxed();
    nan.dense2_bias[0] = f32::NAN;
    let mut nan_blob = Box::new(Aligned([0u8; FashionParams::BLOB_BYTES]));
    nan.write_blob(&mut nan_blob.0).unwrap();
    assert!(matches!(
        FashionParams::from_blob(&nan_blob.0),
        Err(Error::NonFinite { .. })
    ));
    // A payload off a 4-byte boundary cannot be viewed in place.
    let mut shifted = vec![0u32; FashionParams::BLOB_BYTES / 4 + 2];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut shifted);
    bytes[1..1 + FashionParams::BLOB_BYTES].copy_from_slice(&blob.0);
    assert!(matches!(
        FashionParams::from_blob(&bytes[1..1 + FashionParams::BLOB_BYTES]),
        Err(Error::Misaligned { .. })
    ));
    assert!(matches!(
        params.write_blob(&mut [0u8; 100]),
        Err(Error::Length { .. })
    ));

    // Through files.
    let dir = temp_dir("blob");
    host::save_blob(&params, &dir.join("model.tcnn")).unwrap();
    let loaded: Box<FashionParams> = host::load_blob(&dir.join("model.tcnn")).unwrap();
    assert_eq!(loaded.as_flat(), params.as_flat());
}

#[test]
fn the_shipped_subset_loads_and_bad_data_directories_are_named() {
    let data = FashionMnist::load(Path::new(SUBSET)).unwrap();
    assert_eq!((data.train().len(), data.test().len()), (6000, 1000));
    let mut image = [[0.0f32; 28]; 28];
    let label = data.test().read(0, &mut image).unwrap();
    assert_eq!(label, 9); // the first test image of Fashion-MNIST is an ankle boot
    assert!(image.as_flattened().iter().all(|v| (0.0..=1.0).contains(v)));

    let err = FashionMnist::load(Path::new("/no/such/dir")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/no/such/dir/train-images-idx3-ubyte.gz: "),
        "{err}"
    );

    // Truncated gzip: named, and said to be truncated.
    let dir = temp_dir("truncated");
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::copy(
            Path::new(SUBSET).join(format!("{name}.gz")),
            dir.join(format!("{name}.gz")),
        )
        .unwrap();
    }
    let labels = std::fs::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), &labels[..labels.len() / 2]).unwrap();
    let err = FashionMnist::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("truncated"),
        "{err}"
    );

    // Raw (uncompressed) files work too, and counts that disagree are refused.
    let raw = host::read_maybe_gz(&Path::new(SUBSET).join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &raw).unwrap();
    assert_eq!(FashionMnist::load(&dir).unwrap().test().len(), 1000);
    let mut fewer = raw[..8 + 999].to_vec();
    fewer[4..8].copy_from_slice(&999u32.to_be_bytes());
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &fewer).unwrap();
    let err = FashionMnist::load(&dir).unwrap_err().to_string();
    assert!(err.contains("different numbers of samples"), "{err}");
    let mut bad_magic = raw.clone();
    bad_magic[3] = 3;
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &bad_magic).unwrap();
    let err = FashionMnist::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte: IDX label file: wrong magic number 0x00000803"),
        "{err}"
    );
}

#[test]
fn atomic_writes_leave_no_temporary_file_and_name_unwritable_paths() {
    let dir = temp_dir("atomic");
    let path = dir.join("history.csv");
    host::write_atomically(&path, b"one").unwrap();
    host::write_atomically(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let err = host::write_atomically(Path::new("/no/such/dir/x.csv"), b"x").unwrap_err();
    assert!(err.to_string().starts_with("/no/such/dir/x.csv: "), "{err}");
}
