//! Throughput on the host: inference, training steps, and each SIMD kernel
//! beside its scalar twin, in one process so the ratios compare like with like.
//!
//! `cargo bench --bench throughput` (criterion; results in target/criterion).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg32;
use std::hint::black_box;
use std::path::Path;
use tinycnn::data::{Samples, Subset};
use tinycnn::host::FashionMnist;
use tinycnn::kernels::*;
use tinycnn::train::{Adam, AdamConfig, Sgd};
use tinycnn::{FashionParams, FashionTrainer, FashionWorkspace, ParamBuffer};

fn trained_params() -> Box<FashionParams> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/board/fashion-adam.tcnn");
    tinycnn::host::load_blob(&path).expect("the shipped model blob")
}

fn subset() -> FashionMnist {
    FashionMnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset")).unwrap()
}

fn inference(c: &mut Criterion) {
    let params = trained_params();
    let data = subset();
    let test = data.test();
    let mut images = vec![[[0.0f32; 28]; 28]; 1000];
    for (i, image) in images.iter_mut().enumerate() {
        test.read(i, image).unwrap();
    }
    let mut ws = FashionWorkspace::new();
    let mut group = c.benchmark_group("inference");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1 image", |b| {
        b.iter(|| params.predict(black_box(&images[0]), &mut ws).unwrap())
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 images", |b| {
        b.iter(|| {
            images
                .iter()
                .map(|image| params.predict(image, &mut ws).unwrap())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn training(c: &mut Criterion) {
    let data = subset();
    let train = data.train();
    let indices: Vec<u32> = (0..train.len() as u32).collect();
    let train = Subset::new(&train, &indices);
    let mut group = c.benchmark_group("training step");
    for (name, batch, dropout) in [("adam, dropout 0.5", 32usize, 0.5f32), ("sgd", 128, 0.0)] {
        let mut params = trained_params();
        let mut trainer = FashionTrainer::boxed();
        trainer.set_dropout(dropout).unwrap();
        let mut adam: Box<Adam<FashionParams>> = bytemuck::zeroed_box();
        adam.configure(AdamConfig {
            lr: 1e-6,
            ..AdamConfig::KERAS
        })
        .unwrap();
        let mut sgd = Sgd::new(1e-6).unwrap();
        let mut rng = Pcg32::seed_from_u64(1);
        let mut start = 0;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter(|| {
                let batch_indices = &indices[start..start + batch];
                start = (start + batch) % (indices.len() - batch);
                if dropout > 0.0 {
                    trainer
                        .train_batch(&mut params, &mut *adam, &train, batch_indices, &mut rng)
                        .unwrap()
                } else {
                    trainer
                        .train_batch(&mut params, &mut sgd, &train, batch_indices, &mut rng)
                        .unwrap()
                }
            })
        });
    }
    group.finish();
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Pcg32::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / 16_777_216.0 - 0.5)
        .collect()
}

fn kernels(c: &mut Criterion) {
    let params = trained_params();
    let data = subset();
    let mut image = [[0.0f32; 28]; 28];
    data.test().read(0, &mut image).unwrap();
    let mut pooled = [0.0f32; 1960];
    let mut argmax = [0u8; 1960];
    let mut group = c.benchmark_group("kernels");
    group.bench_function("conv+relu+pool simd", |b| {
        b.iter(|| {
            conv_relu_pool(
                black_box(&image),
                &params.conv_kernel,
                &params.conv_bias,
                &mut pooled,
                Some(&mut argmax),
            )
        })
    });
    group.bench_function("conv+relu+pool scalar", |b| {
        b.iter(|| {
            conv_relu_pool_scalar(
                black_box(&image),
                &params.conv_kernel,
                &params.conv_bias,
                &mut pooled,
                Some(&mut argmax),
            )
        })
    });
    conv_relu_pool(&image, &params.conv_kernel, &params.conv_bias, &mut pooled, None);
    let mut hidden = [0.0f32; 100];
    group.bench_function("dense1 simd", |b| {
        b.iter(|| {
            dense(
                black_box(&pooled),
                &params.dense1_kernel,
                &params.dense1_bias,
                &mut hidden,
            )
        })
    });
    group.bench_function("dense1 scalar", |b| {
        b.iter(|| {
            dense_scalar(
                black_box(&pooled),
                &params.dense1_kernel,
                &params.dense1_bias,
                &mut hidden,
            )
        })
    });
    let out_grad: [f32; 100] = random(100, 1).try_into().unwrap();
    let mut grads = FashionParams::boxed();
    let mut input_grad = [0.0f32; 1960];
    group.bench_function("dense1 backward simd", |b| {
        b.iter(|| {
            dense_backward(
                black_box(&pooled),
                &params.dense1_kernel,
                &out_grad,
                &mut grads.dense1_kernel,
                &mut grads.dense1_bias,
                Some(&mut input_grad),
            )
        })
    });
    group.bench_function("dense1 backward scalar", |b| {
        b.iter(|| {
            dense_backward_scalar(
                black_box(&pooled),
                &params.dense1_kernel,
                &out_grad,
                &mut grads.dense1_kernel,
                &mut grads.dense1_bias,
                Some(&mut input_grad),
            )
        })
    });
    let g = random(FashionParams::COUNT, 2);
    let mut p = random(FashionParams::COUNT, 3);
    let (mut m, mut v) = (vec![0.0f32; g.len()], vec![0.0f32; g.len()]);
    let step = AdamStep {
        alpha: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };
    group.throughput(Throughput::Elements(g.len() as u64));
    group.bench_function("adam update simd", |b| {
        b.iter(|| adam_update(&mut p, &mut m, &mut v, black_box(&g), step))
    });
    group.bench_function("adam update scalar", |b| {
        b.iter(|| adam_update_scalar(&mut p, &mut m, &mut v, black_box(&g), step))
    });
    let _ = grads.as_flat();
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = inference, training, kernels
}
criterion_main!(benches);
