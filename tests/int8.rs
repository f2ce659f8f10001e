//! The int8 model against the f32 model it came from, on the shipped test
//! subset; integer kernels against their scalar twins; the blob parser.

mod common;
use common::*;
use std::path::Path;
use tinycnn::kernels::*;
use tinycnn::quant::{compare, quantize, QuantModel, QuantWorkspace};
use tinycnn::{Error, FashionParams, FashionWorkspace};

type Model<'a> = QuantModel<'a, 28, 28, 10, 1960, 100, 10>;

fn trained() -> Box<FashionParams> {
    tinycnn::host::load_blob(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/board/fashion-adam.tcnn"))
        .unwrap()
}

fn quantized(params: &FashionParams) -> Vec<u32> {
    let data = tinycnn::host::FashionMnist::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset"),
    )
    .unwrap();
    let indices: Vec<u32> = (0..500).collect();
    let train = data.train();
    let calibration = tinycnn::data::Subset::new(&train, &indices);
    // u32 storage keeps the blob 4-byte aligned.
    let mut words = vec![0u32; Model::BLOB_BYTES.div_ceil(4)];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let n = quantize(params, &calibration, &mut FashionWorkspace::new(), bytes).unwrap();
    assert_eq!(n, Model::BLOB_BYTES);
    words
}

#[test]
fn int8_agrees_with_f32_on_the_test_subset() {
    let params = trained();
    let words = quantized(&params);
    let blob = &bytemuck::cast_slice::<u32, u8>(&words)[..Model::BLOB_BYTES];
    assert!(blob.len() <= 200_000, "{} bytes", blob.len());
    let model = Model::from_blob(blob).unwrap();
    let data = tinycnn::host::FashionMnist::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset"),
    )
    .unwrap();
    let test = data.test();
    let (agree, f32_correct, int8_correct) = compare(
        &*params,
        &model,
        &test,
        &mut FashionWorkspace::new(),
        &mut QuantWorkspace::new(),
    )
    .unwrap();
    let n = 1000;
    assert!(agree * 100 >= n * 97, "only {agree} of {n} predictions agree");
    let (a, b) = (f32_correct as f32 / n as f32, int8_correct as f32 / n as f32);
    assert!((a - b).abs() <= 0.005, "f32 {a}, int8 {b}");
    println!("f32 {a:.4}, int8 {b:.4}, agreement {agree}/{n}");
}

#[test]
fn the_int8_blob_parser_refuses_corruption() {
    let words = quantized(&trained());
    let blob = &bytemuck::cast_slice::<u32, u8>(&words)[..Model::BLOB_BYTES];
    let check = |mutate: &dyn Fn(&mut Vec<u8>)| -> Error {
        let mut copy = blob.to_vec();
        mutate(&mut copy);
        Model::from_blob(tinycnn::host::AlignedBytes::new(&copy).as_bytes()).unwrap_err()
    };
    assert!(matches!(check(&|b| b[0] = b'X'), Error::BadMagic { .. }));
    assert_eq!(check(&|b| b[4] = 7), Error::UnsupportedVersion { found: 7 });
    assert!(matches!(check(&|b| b[8] = 27), Error::Dimensions { .. }));
    assert!(matches!(check(&|b| b[5000] ^= 0x10), Error::Checksum { .. }));
    assert!(matches!(check(&|b| b.truncate(100)), Error::Length { .. }));
    assert!(matches!(check(&|b| b.push(0)), Error::Length { .. }));
    // A weight blob of the f32 model is not an int8 blob.
    let mut f32_blob = vec![0u8; FashionParams::BLOB_BYTES];
    trained().write_blob(&mut f32_blob).unwrap();
    assert!(matches!(Model::from_blob(&f32_blob), Err(Error::BadMagic { .. })));
    let model = Model::from_blob(blob).unwrap();
    assert!(matches!(
        model.predict(&[0u8; 100], &mut QuantWorkspace::new()),
        Err(Error::Length { .. })
    ));
}

#[test]
fn integer_kernels_equal_their_scalar_twins_exactly() {
    let mut r = rng(3);
    let mut byte =
        |lo: i32, hi: i32| lo + (rand_core::RngCore::next_u32(&mut r) % (hi - lo + 1) as u32) as i32;
    let image: [[u8; 28]; 28] = core::array::from_fn(|_| core::array::from_fn(|_| byte(0, 255) as u8));
    let kernel: ConvKernelI8<10> =
        core::array::from_fn(|_| core::array::from_fn(|_| core::array::from_fn(|_| byte(-127, 127) as i8)));
    let bias: [i32; 10] = core::array::from_fn(|_| byte(-5000, 5000));
    let requant: [Requant; 10] = core::array::from_fn(|k| Requant::from_real(0.001 * (k + 1) as f64));
    let (mut a, mut b) = ([0u8; 1960], [0u8; 1960]);
    conv_relu_pool_i8::<28, 28, 10, 1960>(&image, &kernel, &bias, &requant, &mut a);
    conv_relu_pool_i8_scalar::<28, 28, 10, 1960>(&image, &kernel, &bias, &requant, &mut b);
    assert_eq!(a, b);
    assert!(a.contains(&0) && a.iter().any(|&v| v > 0 && v < 255));
    // The Cortex-M4 path, its 16-bit pairs taken apart in plain code here.
    let mut c = [0u8; 1960];
    conv_relu_pool_i8_dsp::<28, 28, 10, 1960>(&image, &kernel, &bias, &requant, &mut c);
    assert_eq!(c, b);
    // The SIMD layout at odd sizes: the last row and column are not pooled,
    // and the last run of eight windows overlaps the one before it.
    let odd_image: [[u8; 19]; 9] = core::array::from_fn(|_| core::array::from_fn(|_| byte(0, 255) as u8));
    let odd_kernel: ConvKernelI8<3> =
        core::array::from_fn(|_| core::array::from_fn(|_| core::array::from_fn(|_| byte(-128, 127) as i8)));
    let odd_requant = [Requant::from_real(0.0007); 3];
    let (mut f, mut g) = ([0u8; 108], [0u8; 108]);
    conv_relu_pool_i8::<9, 19, 3, 108>(&odd_image, &odd_kernel, &[-20, 0, 700], &odd_requant, &mut f);
    conv_relu_pool_i8_scalar::<9, 19, 3, 108>(&odd_image, &odd_kernel, &[-20, 0, 700], &odd_requant, &mut g);
    assert_eq!(f, g);
    assert!(f.iter().any(|&v| v > 0 && v < 255), "{f:?}");
    // Extreme taps (-128 and 127 survive the 16-bit packing), odd sizes.
    let image: [[u8; 7]; 5] = core::array::from_fn(|_| core::array::from_fn(|_| byte(0, 255) as u8));
    let kernel: ConvKernelI8<3> = core::array::from_fn(|ky| {
        core::array::from_fn(|kx| core::array::from_fn(|k| [-128i8, 127, -1][(ky + kx + k) % 3]))
    });
    let requant = [Requant::from_real(0.002); 3];
    let (mut d, mut e) = ([0u8; 18], [0u8; 18]);
    conv_relu_pool_i8_dsp::<5, 7, 3, 18>(&image, &kernel, &[0, 100, -100], &requant, &mut d);
    conv_relu_pool_i8_scalar::<5, 7, 3, 18>(&image, &kernel, &[0, 100, -100], &requant, &mut e);
    assert_eq!(d, e);
    assert!(d.iter().any(|&v| v > 0), "{d:?}");
    let dense_kernel: [[i8; 13]; 1960] =
        core::array::from_fn(|_| core::array::from_fn(|_| byte(-127, 127) as i8));
    let dense_bias: [i32; 13] = core::array::from_fn(|_| byte(-1000, 1000));
    let (mut x, mut y) = ([0i32; 13], [0i32; 13]);
    dense_i8(&a, &dense_kernel, &dense_bias, &mut x);
    dense_i8_scalar(&a, &dense_kernel, &dense_bias, &mut y);
    assert_eq!(x, y);
}

/// The Cortex-M4 convolution computes only the columns whose 3x3 patch
/// reaches a non-zero pixel; black rows, margins and lone pixels in corners
/// must still give the scalar twin's result, positive biases included.
#[test]
fn the_dsp_convolution_skips_black_background_exactly() {
    let mut r = rng(5);
    let mut draw =
        |lo: i32, hi: i32| lo + (rand_core::RngCore::next_u32(&mut r) % (hi - lo + 1) as u32) as i32;
    let kernel: ConvKernelI8<10> =
        core::array::from_fn(|_| core::array::from_fn(|_| core::array::from_fn(|_| draw(-127, 127) as i8)));
    let bias: [i32; 10] = core::array::from_fn(|k| if k % 2 == 0 { draw(1, 3000) } else { draw(-3000, 0) });
    let requant: [Requant; 10] = core::array::from_fn(|k| Requant::from_real(0.002 * (k + 1) as f64));
    let mut images = vec![[[0u8; 28]; 28]];
    // An item in the middle with black margins and black rows above and below.
    let mut item = [[0u8; 28]; 28];
    for (y, row) in item.iter_mut().enumerate().take(22).skip(5) {
        for p in row.iter_mut().take(20 + y % 3).skip(7 - y % 2) {
            *p = draw(0, 255) as u8;
        }
    }
    images.push(item);
    // Lone pixels in the corners and on the edges.
    for (y, x) in [(0, 0), (0, 27), (27, 0), (27, 27), (13, 0), (0, 13), (14, 27)] {
        let mut image = [[0u8; 28]; 28];
        image[y][x] = 200;
        images.push(image);
    }
    for image in &images {
        let (mut a, mut b) = ([0u8; 1960], [0u8; 1960]);
        conv_relu_pool_i8_dsp::<28, 28, 10, 1960>(image, &kernel, &bias, &requant, &mut a);
        conv_relu_pool_i8_scalar::<28, 28, 10, 1960>(image, &kernel, &bias, &requant, &mut b);
        assert_eq!(a, b);
        // The background gives each channel's positive bias, requantized.
        assert!(b.iter().any(|&v| v > 0));
    }
}

/// `to_u8` takes a shorter path for the usual factors; it must give what
/// ReLU, `apply` and a clamp to `0..=255` give, for every kind of factor.
#[test]
fn requantization_to_u8_is_relu_apply_and_clamp() {
    let mut r = rng(9);
    let mut next = || rand_core::RngCore::next_u32(&mut r);
    let mut factors: Vec<Requant> = [1e-9, 1e-4, 0.001, 0.0123, 0.3, 0.5, 1.0, 2.0, 77.7, 1e9]
        .iter()
        .map(|&f| Requant::from_real(f))
        .collect();
    // Forged factors: negative or zero multipliers, shifts far out of range.
    for (multiplier, shift) in [
        (-1_500_000_000, 0),
        (0, 0),
        (1 << 30, 40),
        (1 << 30, -40),
        (i32::MAX, i32::MIN),
        (1 << 30, i32::MAX),
    ] {
        factors.push(Requant { multiplier, shift });
    }
    for requant in factors {
        for _ in 0..2000 {
            let value = match next() % 3 {
                0 => next() as i32,
                1 => (next() % 100_000) as i32 - 1000,
                _ => (next() % 600) as i32,
            };
            let expected = if value <= 0 {
                0
            } else {
                requant.apply(value).clamp(0, 255) as u8
            };
            assert_eq!(requant.to_u8(value), expected, "{requant:?} {value}");
        }
    }
}

#[test]
fn requantization_by_hand() {
    // 0.3 = 0.6 * 2^-1: multiplier round(0.6 * 2^31), shift -1.
    let r = Requant::from_real(0.3);
    assert_eq!((r.multiplier, r.shift), (1_288_490_189, -1));
    assert_eq!(r.apply(10), 3);
    assert_eq!(r.apply(5), 2); // 1.5 rounds away from zero
    assert_eq!(r.apply(-5), -2);
    assert_eq!(r.to_u8(-100), 0);
    assert_eq!(r.to_u8(10_000), 255);
    assert_eq!(Requant::from_real(0.0).apply(12345), 0);
    assert_eq!(Requant::from_real(1e-30).apply(i32::MAX), 0);
    assert_eq!(Requant::from_real(1e12).apply(1000), i32::MAX);
    assert_eq!(Requant::from_real(1e12).apply(-1000), i32::MIN);
    // Any multiplier and shift a blob may hold: no overflow, saturated results.
    for shift in [i32::MIN, -40, 0, 31, 32, 70, i32::MAX] {
        for multiplier in [i32::MIN, -1, 0, 1 << 30, i32::MAX] {
            let r = Requant { multiplier, shift };
            for value in [i32::MIN, -1, 0, 1, i32::MAX] {
                let _ = r.apply(value);
            }
        }
    }
    assert_eq!(
        Requant {
            multiplier: 1 << 30,
            shift: 40
        }
        .apply(1),
        i32::MAX
    );
}

#[test]
fn forged_biases_wrap_instead_of_panicking() {
    let input = [255u8; 16];
    let kernel = [[127i8; 9]; 16];
    let bias = [i32::MAX; 9];
    let (mut a, mut b) = ([0i32; 9], [0i32; 9]);
    dense_i8(&input, &kernel, &bias, &mut a);
    dense_i8_scalar(&input, &kernel, &bias, &mut b);
    assert_eq!(a, b);
    assert!(a.iter().all(|&v| v < 0), "the sums wrapped: {a:?}");
    let image = [[255u8; 12]; 10];
    let conv = [[[127i8; 1]; 3]; 3];
    let (mut p, mut q) = ([0u8; 30], [0u8; 30]);
    conv_relu_pool_i8::<10, 12, 1, 30>(&image, &conv, &[i32::MAX], &[Requant::from_real(1.0)], &mut p);
    conv_relu_pool_i8_scalar::<10, 12, 1, 30>(&image, &conv, &[i32::MAX], &[Requant::from_real(1.0)], &mut q);
    assert_eq!(p, q);
}

/// The paired layout is a permutation, and the three paired dense kernels
/// give the plain kernel's sums exactly, at the model's sizes and at odd
/// ones, with neighbouring inputs paired and inputs farther apart.
#[test]
fn paired_dense_equals_the_plain_one() {
    fn check<const IN: usize, const OUT: usize>(seed: u64, zeros: u32, pair_stride: usize) {
        let mut r = rng(seed);
        let mut draw =
            |lo: i32, hi: i32| lo + (rand_core::RngCore::next_u32(&mut r) % (hi - lo + 1) as u32) as i32;
        // Every index used once.
        let mut seen = vec![false; IN * OUT];
        for i in 0..IN {
            for j in 0..OUT {
                let at = paired_index::<IN, OUT>(i, j, pair_stride);
                assert!(!seen[at], "{IN}x{OUT}: ({i}, {j}) -> {at} twice");
                seen[at] = true;
            }
        }
        let mut plain: Box<[[i8; OUT]; IN]> = bytemuck::zeroed_box();
        for row in plain.iter_mut() {
            row.iter_mut().for_each(|w| *w = draw(-128, 127) as i8);
        }
        let mut paired: Box<[[i8; OUT]; IN]> = bytemuck::zeroed_box();
        pair_kernel(&plain, &mut paired, pair_stride);
        // Inputs with runs of zeros, so that some pairs are half or all zero.
        let input: [u8; IN] = core::array::from_fn(|_| {
            if draw(0, 99) < zeros as i32 {
                0
            } else {
                draw(1, 255) as u8
            }
        });
        let bias: [i32; OUT] = core::array::from_fn(|_| draw(-100_000, 100_000));
        let mut expected = [0i32; OUT];
        dense_i8_scalar(&input, &plain, &bias, &mut expected);
        let (mut a, mut b, mut c) = ([0i32; OUT], [0i32; OUT], [0i32; OUT]);
        dense_i8_paired(&input, &paired, &bias, &mut a, pair_stride);
        // The same weights one byte off a word boundary, where the six-sum
        // loop of a Cortex-M4 (whole words) gives way to the plain one.
        let mut shifted = vec![0u8; IN * OUT + 1];
        shifted[1..].copy_from_slice(bytemuck::cast_slice(paired.as_flattened()));
        let odd: &[[i8; OUT]; IN] = bytemuck::from_bytes(&shifted[1..]);
        dense_i8_paired(&input, odd, &bias, &mut b, pair_stride);
        dense_i8_paired_scalar(&input, &paired, &bias, &mut c, pair_stride);
        assert_eq!(
            (a, b, c),
            (expected, expected, expected),
            "{IN}x{OUT}, pairs {pair_stride} apart"
        );
    }
    for pair_stride in [1, 140] {
        check::<1960, 100>(31, 70, pair_stride);
        check::<1960, 100>(32, 0, pair_stride);
    }
    check::<7, 5>(33, 30, 1); // an odd last row and an odd last output
    check::<8, 13>(34, 50, 1); // outputs past the blocks of six and four
    check::<1, 1>(35, 0, 1);
    check::<2, 6>(36, 0, 1); // one pair, listed apart from the end marker
    check::<9, 17>(37, 40, 1); // SIMD blocks of eight with an odd last row
    check::<6, 200>(38, 20, 1); // more SIMD blocks than are kept in flight at once
    check::<23, 9>(39, 40, 4); // two bands of 8, then neighbours, then an odd last row
    check::<20, 6>(40, 30, 3); // bands whose stride is no multiple of four
    check::<12, 6>(41, 0, 100); // a stride too long for one band: all neighbours
}
