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
use tinycnn::stack::{Book, Book8, Stack};
use tinycnn::train::{Adam, AdamConfig, Optimizer, Sgd, StreamingSgdTrainer, Update};
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
    // The latency a user meets: every test image once, one at a time (the
    // full 10,000 where the data set is installed, else the shipped 1,000),
    // so neither the caches nor the branch predictor learn an image.
    let distinct = distinct_test_images();
    group.throughput(Throughput::Elements(distinct.len() as u64));
    group.bench_function(format!("{} distinct images one at a time", distinct.len()), |b| {
        b.iter(|| {
            distinct
                .iter()
                .map(|image| params.predict(image, &mut ws).unwrap())
                .sum::<usize>()
        })
    });
    // The best case beside it: one image again and again.
    group.throughput(Throughput::Elements(1));
    group.bench_function("1 image repeated", |b| {
        b.iter(|| params.predict(black_box(&images[0]), &mut ws).unwrap())
    });
    group.throughput(Throughput::Elements(1000));
    // In batches of 16: each slice of dense1's kernel serves 16 images from
    // the first-level cache.
    let mut batch_ws = tinycnn::BatchWorkspace::<16>::boxed();
    let mut classes = vec![0usize; images.len()];
    group.bench_function("1000 images", |b| {
        b.iter(|| {
            params
                .predict_batch(black_box(&images), &mut classes, &mut batch_ws)
                .unwrap();
            classes.iter().sum::<usize>()
        })
    });
    // The same 1,000 images through the scalar twins of the kernels.
    group.bench_function("1000 images scalar", |b| {
        b.iter(|| {
            images
                .iter()
                .map(|image| predict_scalar(&params, image))
                .sum::<usize>()
        })
    });
    // The int8 model quantized from the same weights (host SIMD on integers).
    let blob = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/board/fashion-adam.q8"))
        .expect("the shipped int8 blob");
    let blob = tinycnn::host::AlignedBytes::new(&blob);
    let model = tinycnn::FashionQuantModel::from_blob(blob.as_bytes()).unwrap();
    let mut qws = tinycnn::quant::QuantWorkspace::new();
    let pixels: Vec<&[u8]> = (0..1000).map(|i| test.images().image(i).unwrap()).collect();
    group.throughput(Throughput::Elements(1));
    group.bench_function("1 image int8 repeated", |b| {
        b.iter(|| model.predict(black_box(pixels[0]), &mut qws).unwrap())
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 distinct images int8 one at a time", |b| {
        b.iter(|| {
            pixels
                .iter()
                .map(|p| model.predict(p, &mut qws).unwrap())
                .sum::<usize>()
        })
    });
    group.finish();
}

/// The full test set where the system package installed it, else the
/// shipped subset's test images.
fn distinct_test_images() -> Vec<[[f32; 28]; 28]> {
    let full = FashionMnist::load(Path::new(tinycnn::host::SYSTEM_DATA_DIR));
    let data = full.unwrap_or_else(|_| subset());
    let test = data.test();
    let mut images = vec![[[0.0f32; 28]; 28]; test.len()];
    for (i, image) in images.iter_mut().enumerate() {
        test.read(i, image).unwrap();
    }
    images
}

/// [`FashionParams::predict`] written with the scalar twins of its kernels.
fn predict_scalar(params: &FashionParams, image: &[[f32; 28]; 28]) -> usize {
    let (mut pooled, mut hidden, mut logits) = ([0.0f32; 1960], [0.0f32; 100], [0.0f32; 10]);
    conv_relu_pool_scalar(image, &params.conv_kernel, &params.conv_bias, &mut pooled, None);
    dense_scalar(&pooled, &params.dense1_kernel, &params.dense1_bias, &mut hidden);
    relu(&mut hidden);
    dense_scalar(&hidden, &params.dense2_kernel, &params.dense2_bias, &mut logits);
    argmax(&logits)
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
        let mut adam = Adam::<FashionParams>::boxed(AdamConfig {
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
        let mut grads = FashionParams::boxed();
        group.bench_function(BenchmarkId::new(format!("{name} scalar"), batch), |b| {
            b.iter(|| {
                let batch_indices = &indices[start..start + batch];
                start = (start + batch) % (indices.len() - batch);
                let opt: &mut dyn Optimizer = if dropout > 0.0 { &mut *adam } else { &mut sgd };
                scalar_step(
                    &mut params,
                    &mut grads,
                    opt,
                    &train,
                    batch_indices,
                    dropout,
                    &mut rng,
                )
            })
        });
    }
    // The streaming schedule, batch 128, on f32 parameters and on 8-bit ones.
    let mut params = trained_params();
    let mut params8 = Book8::boxed_params();
    Book8::import::<Book>(&params, &mut params8, &[]).unwrap();
    let mut streaming = StreamingSgdTrainer::<128>::boxed(0.01).unwrap();
    let mut streaming8 = StreamingSgdTrainer::<128, Book8>::boxed(0.01).unwrap();
    let mut rng = Pcg32::seed_from_u64(1);
    let mut start = 0;
    group.throughput(Throughput::Elements(128));
    group.bench_function(BenchmarkId::new("streaming sgd, f32", 128), |b| {
        b.iter(|| {
            let batch_indices = &indices[start..start + 128];
            start = (start + 128) % (indices.len() - 128);
            streaming
                .train_batch(&mut params, &train, batch_indices, &mut rng)
                .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("streaming sgd, 8-bit dense1", 128), |b| {
        b.iter(|| {
            let batch_indices = &indices[start..start + 128];
            start = (start + 128) % (indices.len() - 128);
            streaming8
                .train_batch(&mut params8, &train, batch_indices, &mut rng)
                .unwrap()
        })
    });
    group.finish();
}

/// `Trainer::train_batch` written with the scalar twins of the kernels, for
/// the SIMD-against-scalar ratio of a whole step.
fn scalar_step(
    params: &mut FashionParams,
    grads: &mut FashionParams,
    optimizer: &mut dyn Optimizer,
    samples: &impl Samples<28, 28>,
    batch: &[u32],
    rate: f32,
    rng: &mut Pcg32,
) -> f32 {
    grads.as_flat_mut().fill(0.0);
    let scale = 1.0 / batch.len() as f32;
    let mut image = [[0.0f32; 28]; 28];
    let (mut pooled, mut argmax, mut pooled_grad) = ([0.0f32; 1960], [0u8; 1960], [0.0f32; 1960]);
    let (mut hidden, mut hidden_grad) = ([0.0f32; 100], [0.0f32; 100]);
    let (mut logits, mut logits_grad) = ([0.0f32; 10], [0.0f32; 10]);
    let mut loss = 0.0;
    for &index in batch {
        let label = samples.read(index as usize, &mut image).unwrap();
        conv_relu_pool_scalar(
            &image,
            &params.conv_kernel,
            &params.conv_bias,
            &mut pooled,
            Some(&mut argmax),
        );
        if rate > 0.0 {
            tinycnn::train::dropout(&mut pooled, rate, rng);
        }
        dense_scalar(&pooled, &params.dense1_kernel, &params.dense1_bias, &mut hidden);
        relu(&mut hidden);
        dense_scalar(&hidden, &params.dense2_kernel, &params.dense2_bias, &mut logits);
        loss += softmax_cross_entropy(&logits, label, scale, &mut logits_grad).unwrap();
        let g = &mut *grads;
        dense_backward_scalar(
            &hidden,
            &params.dense2_kernel,
            &logits_grad,
            &mut g.dense2_kernel,
            &mut g.dense2_bias,
            Some(&mut hidden_grad),
        );
        dense_backward_scalar(
            &pooled,
            &params.dense1_kernel,
            &hidden_grad,
            &mut g.dense1_kernel,
            &mut g.dense1_bias,
            Some(&mut pooled_grad),
        );
        if rate > 0.0 {
            pooled_grad.iter_mut().for_each(|d| *d /= 1.0 - rate);
        }
        conv_relu_pool_backward_scalar(
            &image,
            &pooled,
            &argmax,
            &pooled_grad,
            &mut g.conv_kernel,
            &mut g.conv_bias,
        );
    }
    let params = params.as_flat_mut();
    let (update, state) = optimizer.begin_step(params.len()).unwrap();
    match update {
        Update::Adam(step) => adam_update_scalar(params, state.first, state.second, grads.as_flat(), step),
        Update::Sgd { lr } => axpy_scalar(-lr, grads.as_flat(), params),
        Update::Momentum { .. } => unreachable!("not benchmarked"),
    }
    loss * scale
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Pcg32::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / 16_777_216.0 - 0.5)
        .collect()
}

/// The convolution's backward pass, SIMD or scalar.
type ConvBackward =
    fn(&[[f32; 28]; 28], &[f32; 1960], &[u8; 1960], &[f32; 1960], &mut ConvKernel<10>, &mut [f32; 10]);

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
    // Backward through pooling and the convolution, every cell given a
    // gradient (no dropout: the sgd recipe's case), over 64 images in turn
    // (one image again and again would let the branch predictor learn it):
    // with the trained weights, and with the weights a first epoch starts
    // from, whose convolution lets more cells through.
    let mut fresh = FashionParams::boxed();
    fresh.init_glorot(&mut Pcg32::seed_from_u64(1));
    let pooled_grad: [f32; 1960] = random(1960, 2).try_into().unwrap();
    let mut conv_grads = FashionParams::boxed();
    for (weights, conv) in [("", &params), (", first-epoch weights", &fresh)] {
        let cases: Vec<_> = (0..64)
            .map(|i| {
                let mut case = (
                    Box::new([[0.0f32; 28]; 28]),
                    Box::new([0.0f32; 1960]),
                    Box::new([0u8; 1960]),
                );
                data.test().read(i, &mut case.0).unwrap();
                conv_relu_pool(
                    &case.0,
                    &conv.conv_kernel,
                    &conv.conv_bias,
                    &mut case.1,
                    Some(&mut case.2),
                );
                case
            })
            .collect();
        group.throughput(Throughput::Elements(cases.len() as u64));
        for (name, backward) in [
            ("conv backward simd", conv_relu_pool_backward as ConvBackward),
            ("conv backward scalar", conv_relu_pool_backward_scalar),
        ] {
            group.bench_function(format!("{name}{weights}"), |b| {
                b.iter(|| {
                    for (image, pooled, argmax) in &cases {
                        backward(
                            black_box(image),
                            pooled,
                            argmax,
                            &pooled_grad,
                            &mut conv_grads.conv_kernel,
                            &mut conv_grads.conv_bias,
                        );
                    }
                })
            });
        }
    }
    group.throughput(Throughput::Elements(1));
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
    // The int8 convolution on the same image's pixels (scales as the
    // quantizer would pick them), against its scalar twin.
    let pixels: [[u8; 28]; 28] = image.map(|row| row.map(|p| (p * 255.0).round() as u8));
    let conv_i8: ConvKernelI8<10> = core::array::from_fn(|ky| {
        core::array::from_fn(|kx| {
            core::array::from_fn(|k| {
                let max = params
                    .conv_kernel
                    .as_flattened()
                    .iter()
                    .fold(1e-6f32, |m, taps| m.max(taps[k].abs()));
                (params.conv_kernel[ky][kx][k] / max * 127.0).round() as i8
            })
        })
    });
    let (conv_bias_i32, conv_requant) = ([0i32; 10], [Requant::from_real(0.0005); 10]);
    let mut pooled_i8 = [0u8; 1960];
    group.bench_function("conv+relu+pool int8 simd", |b| {
        b.iter(|| {
            conv_relu_pool_i8(
                black_box(&pixels),
                &conv_i8,
                &conv_bias_i32,
                &conv_requant,
                &mut pooled_i8,
            )
        })
    });
    group.bench_function("conv+relu+pool int8 scalar", |b| {
        b.iter(|| {
            conv_relu_pool_i8_scalar(
                black_box(&pixels),
                &conv_i8,
                &conv_bias_i32,
                &conv_requant,
                &mut pooled_i8,
            )
        })
    });
    // dense1 in int8 over the same map, in the paired layout, against its
    // scalar twin (scales as the quantizer would pick them).
    let pooled_max = pooled.iter().fold(1e-6f32, |m, &v| m.max(v));
    let pooled_u8: [u8; 1960] = pooled.map(|v| (v / pooled_max * 255.0).round() as u8);
    let w_max = params
        .dense1_kernel
        .as_flattened()
        .iter()
        .fold(1e-6f32, |m, w| m.max(w.abs()));
    let mut plain: Box<[[i8; 100]; 1960]> = bytemuck::zeroed_box();
    for (row, weights) in plain.iter_mut().zip(params.dense1_kernel.iter()) {
        for (q, &w) in row.iter_mut().zip(weights) {
            *q = (w / w_max * 127.0).round() as i8;
        }
    }
    let mut paired: Box<[[i8; 100]; 1960]> = bytemuck::zeroed_box();
    let pair_stride = tinycnn::quant::QuantModel::<28, 28, 10, 1960, 100, 10>::PAIR_STRIDE;
    pair_kernel(&plain, &mut paired, pair_stride);
    let (bias_i32, mut sums) = ([0i32; 100], [0i32; 100]);
    group.bench_function("dense1 int8 simd", |b| {
        b.iter(|| dense_i8_paired(black_box(&pooled_u8), &paired, &bias_i32, &mut sums, pair_stride))
    });
    group.bench_function("dense1 int8 scalar", |b| {
        b.iter(|| dense_i8_paired_scalar(black_box(&pooled_u8), &paired, &bias_i32, &mut sums, pair_stride))
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
    // dense1 in 8 bits (Book8): the fixed-point forward beside the f32
    // one above, and the update's two ways of rounding on the same inputs.
    let mut kernel8: Box<tinycnn::model::Int8Kernel<1960, 100>> = bytemuck::zeroed_box();
    kernel8.quantize(&params.dense1_kernel).unwrap();
    group.bench_function("dense1 8-bit forward", |b| {
        b.iter(|| {
            let mut input = pooled;
            dense_scaled_i8(
                &mut input,
                &kernel8.values,
                &kernel8.scales,
                &params.dense1_bias,
                &mut hidden,
            )
        })
    });
    // An update as the sgd recipe's: lr 0.01 over a batch of 128, a
    // thousandth of a step and less.
    let delta: Vec<f32> = out_grad.iter().map(|g| -0.01 / 128.0 * g * 0.1).collect();
    let delta: [f32; 100] = delta.try_into().unwrap();
    let mut values: Box<[[i8; 100]; 1960]> = bytemuck::zeroed_box();
    values.copy_from_slice(&kernel8.values);
    let mut scales = kernel8.scales;
    let mut rng = Pcg32::seed_from_u64(5);
    group.bench_function("dense1 8-bit update, draws per row", |b| {
        b.iter(|| add_outer_stochastic(&mut values, &mut scales, black_box(&pooled), &delta, &mut rng))
    });
    group.bench_function("dense1 8-bit update, a draw per value", |b| {
        b.iter(|| {
            let mut dither = Dither::new(rng.next_u32());
            add_outer_stochastic_dense(&mut values, &mut scales, black_box(&pooled), &delta, &mut dither)
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
