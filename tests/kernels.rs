//! SIMD kernels against their scalar twins, and small cases worked by hand.
// Index loops mirror the formulas they check.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;
use tinycnn::kernels::*;

const LENGTHS: [usize; 9] = [0, 1, 7, 8, 9, 15, 16, 17, 100];

#[test]
fn axpy_matches_scalar_on_every_tail_length() {
    let mut r = rng(1);
    for n in LENGTHS {
        let x = random_vec(&mut r, n, -2.0, 2.0);
        let y0 = random_vec(&mut r, n, -2.0, 2.0);
        let a = uniform(&mut r, -3.0, 3.0);
        let (mut simd, mut scalar) = (y0.clone(), y0.clone());
        axpy(a, &x, &mut simd);
        axpy_scalar(a, &x, &mut scalar);
        assert_all_close(&simd, &scalar, 1e-6, 1e-6, "axpy");
        if n > 0 {
            assert_ne!(simd, y0, "axpy changed nothing for n = {n}");
        }
    }
}

#[test]
fn dot_matches_scalar_on_every_tail_length() {
    let mut r = rng(2);
    for n in LENGTHS {
        let x = random_vec(&mut r, n, -1.0, 1.0);
        let y = random_vec(&mut r, n, -1.0, 1.0);
        let (s, f) = (dot(&x, &y), dot_scalar(&x, &y));
        assert!(close(s, f, 1e-5, 1e-5), "n = {n}: {s} vs {f}");
    }
}

#[test]
fn all_finite_finds_every_nan_and_infinity_wherever_it_is() {
    let mut r = rng(3);
    for n in [0, 1, 7, 8, 31, 32, 33, 64, 100] {
        let values = random_vec(&mut r, n, -1e30, 1e30);
        assert!(all_finite(&values), "n = {n}");
        for at in 0..n {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut spoiled = values.clone();
                spoiled[at] = bad;
                assert!(!all_finite(&spoiled), "{bad} at {at} of {n}");
            }
        }
    }
    assert!(all_finite(&[f32::MAX, f32::MIN, -0.0, f32::MIN_POSITIVE / 2.0]));
}

/// SIMD against scalar on random images; `bias` sets how many pooled cells
/// pass gradient (about 94% around 0, a few around -1.5: the SIMD kernel
/// takes another path for few cells than for many).
fn check_conv_backward<const H: usize, const W: usize, const K: usize, const FLAT: usize>(
    seed: u64,
    bias: f32,
) {
    let mut r = rng(seed);
    let kernel: ConvKernel<K> =
        core::array::from_fn(|_| core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0)));
    let bias: [f32; K] = random_array(&mut r, bias - 0.3, bias + 0.3);
    let start_kernel: ConvKernel<K> =
        core::array::from_fn(|_| core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0)));
    let start_bias: [f32; K] = random_array(&mut r, -1.0, 1.0);
    let (mut k_simd, mut b_simd) = (start_kernel, start_bias);
    let (mut k_scalar, mut b_scalar) = (start_kernel, start_bias);
    // Three samples into the same sums, as a batch does.
    for _ in 0..3 {
        let image: [[f32; W]; H] = random_image(&mut r);
        let (mut pooled, mut argmax) = ([0.0f32; FLAT], [0u8; FLAT]);
        conv_relu_pool_scalar::<H, W, K, FLAT>(&image, &kernel, &bias, &mut pooled, Some(&mut argmax));
        // Every other gradient zero, as dropout leaves them.
        let mut grad: [f32; FLAT] = random_array(&mut r, -1.0, 1.0);
        grad.iter_mut().step_by(2).for_each(|g| *g = 0.0);
        conv_relu_pool_backward(&image, &pooled, &argmax, &grad, &mut k_simd, &mut b_simd);
        conv_relu_pool_backward_scalar(&image, &pooled, &argmax, &grad, &mut k_scalar, &mut b_scalar);
    }
    let bits = |k: &ConvKernel<K>| {
        k.as_flattened()
            .as_flattened()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&k_simd), bits(&k_scalar), "kernel gradient, {H}x{W}x{K}");
    assert_eq!(
        b_simd.map(f32::to_bits),
        b_scalar.map(f32::to_bits),
        "bias gradient"
    );
    assert_ne!(k_simd, start_kernel, "no cell passed gradient");
}

#[test]
fn conv_backward_matches_scalar_to_the_bit() {
    check_conv_backward::<28, 28, 10, 1960>(11, 0.0);
    check_conv_backward::<6, 6, 3, 27>(12, 0.0);
    check_conv_backward::<5, 7, 2, 12>(13, 0.0);
    check_conv_backward::<4, 4, 1, 4>(14, 0.0);
    check_conv_backward::<2, 3, 2, 2>(15, 0.0);
    check_conv_backward::<20, 37, 20, 3600>(16, 0.0);
    // Few cells passing.
    check_conv_backward::<28, 28, 10, 1960>(17, -1.5);
    check_conv_backward::<20, 37, 20, 3600>(18, -1.5);
}

fn check_conv<const H: usize, const W: usize, const K: usize, const FLAT: usize>(seed: u64) {
    let mut r = rng(seed);
    let image: [[f32; W]; H] = random_image(&mut r);
    let kernel: ConvKernel<K> =
        core::array::from_fn(|_| core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0)));
    let bias: [f32; K] = random_array(&mut r, -0.3, 0.3);
    let (mut p_simd, mut p_scalar) = ([0.0f32; FLAT], [0.0f32; FLAT]);
    let (mut a_simd, mut a_scalar) = ([0u8; FLAT], [0u8; FLAT]);
    conv_relu_pool::<H, W, K, FLAT>(&image, &kernel, &bias, &mut p_simd, Some(&mut a_simd));
    conv_relu_pool_scalar::<H, W, K, FLAT>(&image, &kernel, &bias, &mut p_scalar, Some(&mut a_scalar));
    // The same sums in the same order with the same rounding.
    assert_eq!(p_simd, p_scalar, "pooled");
    assert_eq!(a_simd, a_scalar, "pooling winners");
    // The inference path (no argmax, SIMD vertical max) gives the same values.
    let mut p_infer = [0.0f32; FLAT];
    conv_relu_pool::<H, W, K, FLAT>(&image, &kernel, &bias, &mut p_infer, None);
    assert_eq!(p_infer, p_simd);
    if FLAT >= 1000 {
        // Random weights should leave both active and ReLU-zeroed cells.
        let zeros = p_simd.iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0 && zeros < FLAT, "{zeros} of {FLAT} zero");
    }
}

#[test]
fn conv_relu_pool_matches_scalar() {
    check_conv::<28, 28, 10, 1960>(3);
    check_conv::<9, 13, 3, 72>(4); // odd sizes: the last row and column are not pooled
    check_conv::<2, 2, 1, 1>(5);
    check_conv::<6, 18, 7, 189>(6); // rows longer than one lane and not a multiple of it
                                    // Widths the split vector path takes on 8- and 16-lane builds alike.
    const { assert!(17 > LANES && 17 / 2 >= 8 && 33 > LANES) };
    check_conv::<8, 17, 3, 96>(7);
    check_conv::<10, 33, 5, 400>(9);
}

/// An item on black background, as Fashion-MNIST images are: where a pooling
/// window's patches see only black pixels the SIMD convolution leaves the
/// multiply-adds out, and must still give the bias through ReLU exactly, the
/// first cell as the winner, and the scalar twin's values; a tap that is not
/// finite (0 * inf is NaN) keeps it from leaving them out.
#[test]
fn conv_on_black_background_is_exact() {
    let mut r = rng(8);
    let mut image = [[0.0f32; 28]; 28];
    for row in image.iter_mut().skip(9).take(10) {
        row[10..18].copy_from_slice(&random_vec(&mut r, 8, 0.1, 1.0));
    }
    let mut kernel: ConvKernel<10> =
        core::array::from_fn(|_| core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0)));
    let bias: [f32; 10] = core::array::from_fn(|k| if k % 2 == 0 { 0.25 } else { -0.25 });
    let run = |kernel: &ConvKernel<10>| {
        let (mut simd, mut scalar) = (Box::new([0.0f32; 1960]), Box::new([0.0f32; 1960]));
        let mut winners = Box::new([9u8; 1960]);
        conv_relu_pool::<28, 28, 10, 1960>(&image, kernel, &bias, &mut simd, Some(&mut winners));
        conv_relu_pool_scalar::<28, 28, 10, 1960>(&image, kernel, &bias, &mut scalar, None);
        (simd, scalar, winners)
    };
    let (simd, scalar, winners) = run(&kernel);
    // Pooled row 0 sees image rows 0..=2 only: black.
    for (cell, (&value, &winner)) in simd.iter().zip(winners.iter()).enumerate().take(14 * 10) {
        let expected = bias[cell % 10].max(0.0);
        assert_eq!((value, winner), (expected, 0), "cell {cell}");
        assert_eq!(value.to_bits(), scalar[cell].to_bits(), "cell {cell}");
    }
    assert_all_close(&simd[..], &scalar[..], 1e-5, 1e-5, "pooled");
    kernel[1][1][0] = f32::INFINITY;
    let (simd, scalar, _) = run(&kernel);
    for cell in (0..14 * 10).step_by(10) {
        assert!(
            simd[cell].is_nan() && scalar[cell].is_nan(),
            "cell {cell}: {} vs {}",
            simd[cell],
            scalar[cell]
        );
    }
}

#[test]
fn conv_by_hand_on_a_3x3_image() {
    // image 1..9 row-major; kernel taps 1..9 for channel 0 and only the centre for channel 1.
    let image = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]];
    let mut kernel = [[[0.0f32; 2]; 3]; 3];
    for ky in 0..3 {
        for kx in 0..3 {
            kernel[ky][kx][0] = (ky * 3 + kx + 1) as f32;
        }
    }
    kernel[1][1][1] = -1.0;
    // Channel 0 at (0,0) with SAME padding: taps (1,1),(1,2),(2,1),(2,2) see 1,2,4,5:
    // 5*1 + 6*2 + 8*4 + 9*5 = 94; at (0,1): taps (1,0..2),(2,0..2) see 1,2,3,4,5,6:
    // 4*1+5*2+6*3+7*4+8*5+9*6 = 154; (1,0): 2*1+3*2+5*4+6*5+8*7+9*8 = 186;
    // (1,1): 1*1+2*2+...+9*9 = 285. Max is 285 at the bottom-right of the window (index 3).
    let (mut pooled, mut argmax) = ([0.0f32; 2], [0u8; 2]);
    conv_relu_pool::<3, 3, 2, 2>(&image, &kernel, &[1.0, 0.5], &mut pooled, Some(&mut argmax));
    assert_eq!(pooled[0], 286.0);
    assert_eq!(argmax[0], 3);
    // Channel 1 is 0.5 - pixel: max over 1,2,4,5 is -0.5, and ReLU makes it 0.
    assert_eq!(pooled[1], 0.0);
    assert_eq!(argmax[1], 0);
}

#[test]
fn max_pool_ties_go_to_the_first_cell_in_row_major_order() {
    // Centre-tap kernel: the conv output is the image itself.
    let mut kernel = [[[0.0f32; 1]; 3]; 3];
    kernel[1][1][0] = 1.0;
    let cases: [([[f32; 2]; 2], u8); 4] = [
        ([[1.0, 1.0], [1.0, 1.0]], 0),
        ([[0.0, 2.0], [2.0, 0.0]], 1),
        ([[0.0, 0.0], [3.0, 3.0]], 2),
        ([[0.0, 1.0], [1.0, 4.0]], 3),
    ];
    for (image, expected) in cases {
        let (mut pooled, mut argmax) = ([0.0f32], [9u8]);
        conv_relu_pool::<2, 2, 1, 1>(&image, &kernel, &[0.0], &mut pooled, Some(&mut argmax));
        assert_eq!(argmax[0], expected, "{image:?}");
        let mut scalar_argmax = [9u8];
        conv_relu_pool_scalar::<2, 2, 1, 1>(&image, &kernel, &[0.0], &mut pooled, Some(&mut scalar_argmax));
        assert_eq!(scalar_argmax[0], expected, "{image:?}");
        // The gradient goes to that one cell only.
        let mut image_grad = [[0.0f32; 2]; 2];
        conv_relu_pool_input_grad::<2, 2, 1, 1>(&kernel, &pooled, &argmax, &[1.0], &mut image_grad);
        let flat = image_grad.as_flattened();
        assert_eq!(flat.iter().sum::<f32>(), 1.0);
        assert_eq!(flat[usize::from(expected)], 1.0);
    }
    // The same windows side by side in a row wide enough for the SIMD path,
    // which pools eight windows at a time.
    let mut wide = [[0.0f32; 24]; 2];
    for (w, (image, _)) in cases.iter().cycle().take(12).enumerate() {
        for (y, row) in image.iter().enumerate() {
            wide[y][2 * w..2 * w + 2].copy_from_slice(row);
        }
    }
    let (mut pooled, mut argmax) = ([0.0f32; 12], [9u8; 12]);
    conv_relu_pool::<2, 24, 1, 12>(&wide, &kernel, &[0.0], &mut pooled, Some(&mut argmax));
    let expected: Vec<u8> = cases.iter().cycle().take(12).map(|c| c.1).collect();
    assert_eq!(argmax.to_vec(), expected);
    assert_eq!(pooled[..4], [1.0, 2.0, 3.0, 4.0]);
}

/// [`dense`] of `OUT` outputs against its scalar twin and the definition.
fn dense_case<const OUT: usize>(seed: u64) {
    let mut r = rng(seed);
    let mut input: [f32; 37] = random_array(&mut r, -1.0, 1.0);
    input.iter_mut().step_by(3).for_each(|v| *v = 0.0);
    let kernel: [[f32; OUT]; 37] = core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0));
    let bias: [f32; OUT] = random_array(&mut r, -1.0, 1.0);
    let (mut a, mut b) = ([0.0; OUT], [0.0; OUT]);
    dense(&input, &kernel, &bias, &mut a);
    dense_scalar(&input, &kernel, &bias, &mut b);
    assert_all_close(&a, &b, 1e-5, 1e-5, "dense");
    // Against the definition, zeros included.
    for j in 0..OUT {
        let expected: f32 = bias[j] + (0..37).map(|i| input[i] * kernel[i][j]).sum::<f32>();
        assert!(
            close(a[j], expected, 1e-5, 1e-5),
            "{OUT} outputs, output {j}: {} vs {expected}",
            a[j]
        );
    }
}

#[test]
fn dense_matches_scalar_with_zeros_in_the_input() {
    // Every way the outputs split into wide vectors, eight-lane vectors, a
    // quad and single values.
    dense_case::<1>(7);
    dense_case::<4>(8);
    dense_case::<7>(9);
    dense_case::<8>(10);
    dense_case::<13>(11);
    dense_case::<16>(12);
    dense_case::<28>(13);
    dense_case::<100>(14);
    dense_case::<111>(15);
}

#[test]
fn dense_backward_matches_scalar() {
    let mut r = rng(8);
    let mut input: [f32; 29] = random_array(&mut r, 0.0, 1.0);
    input.iter_mut().step_by(4).for_each(|v| *v = 0.0);
    let kernel: [[f32; 19]; 29] = core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0));
    let out_grad: [f32; 19] = random_array(&mut r, -1.0, 1.0);
    let start: [[f32; 19]; 29] = core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0));
    let (mut kg_a, mut kg_b) = (start, start);
    let (mut bg_a, mut bg_b) = ([0.5; 19], [0.5; 19]);
    let (mut ig_a, mut ig_b) = ([7.0; 29], [7.0; 29]);
    dense_backward(&input, &kernel, &out_grad, &mut kg_a, &mut bg_a, Some(&mut ig_a));
    dense_backward_scalar(&input, &kernel, &out_grad, &mut kg_b, &mut bg_b, Some(&mut ig_b));
    assert_all_close(
        kg_a.as_flattened(),
        kg_b.as_flattened(),
        1e-6,
        1e-6,
        "kernel grad",
    );
    assert_all_close(&bg_a, &bg_b, 1e-6, 1e-6, "bias grad");
    assert_all_close(&ig_a, &ig_b, 1e-5, 1e-5, "input grad");
    assert_eq!(ig_a[0], 0.0);
    assert_ne!(kg_a, start);
}

#[test]
fn softmax_cross_entropy_by_hand() {
    // logits (1, 2, 3): softmax = e^z / (e + e^2 + e^3) = (0.09003057, 0.24472847, 0.66524096)
    let mut grad = [0.0f32; 3];
    let loss = softmax_cross_entropy(&[1.0, 2.0, 3.0], 0, 0.5, &mut grad).unwrap();
    assert!(close(loss, 2.407_606, 1e-6, 0.0), "loss {loss}"); // -ln(0.09003057)
    assert_all_close(
        &grad,
        &[0.5 * (0.090_030_57 - 1.0), 0.5 * 0.244_728_47, 0.5 * 0.665_240_96],
        1e-6,
        0.0,
        "grad",
    );
    // Huge logits stay finite.
    let loss = softmax_cross_entropy(&[1e30, -1e30, 0.0], 1, 1.0, &mut grad).unwrap();
    assert!(loss.is_finite() && loss > 1e29);
    assert_eq!(
        softmax_cross_entropy(&[0.0; 3], 3, 1.0, &mut grad),
        Err(tinycnn::Error::LabelOutOfRange { label: 3, classes: 3 })
    );
    let mut p = [0.0f32; 3];
    softmax(&[1.0, 2.0, 3.0], &mut p);
    assert_all_close(
        &p,
        &[0.090_030_57, 0.244_728_47, 0.665_240_96],
        1e-7,
        0.0,
        "softmax",
    );
}

#[test]
fn adam_and_momentum_match_scalar() {
    let mut r = rng(9);
    for n in LENGTHS {
        let grads = random_vec(&mut r, n, -1.0, 1.0);
        let p0 = random_vec(&mut r, n, -1.0, 1.0);
        let m0 = random_vec(&mut r, n, -0.1, 0.1);
        let v0 = random_vec(&mut r, n, 0.0, 0.1);
        let step = AdamStep {
            alpha: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        };
        let (mut pa, mut ma, mut va) = (p0.clone(), m0.clone(), v0.clone());
        let (mut pb, mut mb, mut vb) = (p0.clone(), m0.clone(), v0.clone());
        adam_update(&mut pa, &mut ma, &mut va, &grads, step);
        adam_update_scalar(&mut pb, &mut mb, &mut vb, &grads, step);
        assert_all_close(&pa, &pb, 1e-6, 1e-5, "adam params");
        assert_all_close(&ma, &mb, 1e-7, 1e-6, "adam m");
        assert_all_close(&va, &vb, 1e-7, 1e-6, "adam v");
        let (mut pa, mut va) = (p0.clone(), m0.clone());
        let (mut pb, mut vb) = (p0.clone(), m0.clone());
        momentum_update(&mut pa, &mut va, &grads, 0.1, 0.9);
        momentum_update_scalar(&mut pb, &mut vb, &grads, 0.1, 0.9);
        assert_all_close(&pa, &pb, 1e-6, 1e-6, "momentum params");
        assert_all_close(&va, &vb, 1e-6, 1e-6, "momentum velocity");
    }
}

/// State that decays without gradient (an inactive dense1 row) is set to
/// zero once it falls below 1e-30, never reaching the subnormal numbers that
/// cost a microcode assist per operation on Intel cores; above that it is
/// left alone. The SIMD and scalar updates agree value for value.
#[test]
fn decaying_optimizer_state_goes_to_zero_without_turning_subnormal() {
    let step = AdamStep {
        alpha: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };
    for n in LENGTHS {
        let zeros = vec![0.0f32; n];
        let start: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { 1.0 } else { -1e-20 }).collect();
        let (mut p_simd, mut m_simd, mut v_simd) = (
            zeros.clone(),
            start.clone(),
            start.iter().map(|x| x * x).collect::<Vec<_>>(),
        );
        let (mut p_scalar, mut m_scalar, mut v_scalar) = (p_simd.clone(), m_simd.clone(), v_simd.clone());
        let (mut velocity_simd, mut velocity_scalar) = (start.clone(), start.clone());
        let (mut q_simd, mut q_scalar) = (zeros.clone(), zeros.clone());
        for _ in 0..1000 {
            adam_update(&mut p_simd, &mut m_simd, &mut v_simd, &zeros, step);
            adam_update_scalar(&mut p_scalar, &mut m_scalar, &mut v_scalar, &zeros, step);
            momentum_update(&mut q_simd, &mut velocity_simd, &zeros, 0.1, 0.9);
            momentum_update_scalar(&mut q_scalar, &mut velocity_scalar, &zeros, 0.1, 0.9);
            for state in [&m_simd, &v_simd, &velocity_simd] {
                assert!(state.iter().all(|x| !x.is_subnormal()), "{n} values: {state:?}");
            }
        }
        assert_eq!(m_simd, m_scalar);
        assert_eq!(v_simd, v_scalar);
        assert_eq!(velocity_simd, velocity_scalar);
        assert_all_close(&p_simd, &p_scalar, 1e-6, 1e-6, "adam params");
        // 0.9^1000 = 1.7e-46: every first moment and velocity went to zero;
        // the second moments of 1.0 (0.999^1000 = 0.37) are still there, the
        // ones of 1e-40 were below the limit from the first step.
        assert!(m_simd.iter().chain(&velocity_simd).all(|&x| x == 0.0));
        for (i, &v) in v_simd.iter().enumerate() {
            let expected = if i % 2 == 0 { 0.999f32.powi(1000) } else { 0.0 };
            assert!((v - expected).abs() < 1e-3, "v[{i}] = {v}");
        }
    }
    // Just above the limit, one step leaves the value alone.
    let (mut p, mut m, mut v) = ([0.0f32; 16], [2e-30f32; 16], [1.0f32; 16]);
    adam_update(&mut p, &mut m, &mut v, &[0.0; 16], step);
    assert!(m.iter().all(|&x| (x - 1.8e-30).abs() < 1e-36), "{m:?}");
}

#[test]
fn the_simd_pooling_breaks_ties_like_the_scalar_twin() {
    // Centre-tap kernel, so the conv output is the image: a 2x16 image holds eight
    // windows with every kind of tie, which the 8-lane pooling path handles.
    let mut kernel = [[[0.0f32; 1]; 3]; 3];
    kernel[1][1][0] = 1.0;
    let top = [
        1.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 1.0, 5.0, 5.0, 2.0, 1.0, 0.0, 3.0, 4.0, 4.0,
    ];
    let bottom = [
        1.0, 1.0, 2.0, 0.0, 3.0, 3.0, 1.0, 4.0, 5.0, 5.0, 2.0, 2.0, 3.0, 0.0, 1.0, 4.0,
    ];
    let image = [top, bottom];
    let (mut pooled, mut argmax) = ([0.0f32; 8], [9u8; 8]);
    conv_relu_pool::<2, 16, 1, 8>(&image, &kernel, &[0.0], &mut pooled, Some(&mut argmax));
    assert_eq!(argmax, [0, 1, 2, 3, 0, 0, 1, 0]);
    assert_eq!(pooled, [1.0, 2.0, 3.0, 4.0, 5.0, 2.0, 3.0, 4.0]);
    let (mut pooled_scalar, mut argmax_scalar) = ([0.0f32; 8], [9u8; 8]);
    conv_relu_pool_scalar::<2, 16, 1, 8>(
        &image,
        &kernel,
        &[0.0],
        &mut pooled_scalar,
        Some(&mut argmax_scalar),
    );
    assert_eq!((pooled, argmax), (pooled_scalar, argmax_scalar));
}
