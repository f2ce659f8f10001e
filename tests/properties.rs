//! Properties over arbitrary sizes and values: each SIMD kernel equals its
//! scalar twin (subnormals included), and no kernel panics on NaN or infinity.

use proptest::prelude::*;
use tinycnn::kernels::*;

/// Finite values over a wide range, with subnormals and zeros mixed in.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -100.0f32..100.0,
        1 => prop::num::f32::SUBNORMAL,
        1 => Just(0.0f32),
        1 => -1e-30f32..1e-30,
    ]
}

/// Any bit pattern at all: NaN, infinity, subnormals.
fn any_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        value(),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        any::<f32>()
    ]
}

/// `|a - b|` within rounding of a sum whose terms have absolute sum `scale`.
fn agree(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-5 * scale + 1e-30
}

fn array<const N: usize>(s: impl Strategy<Value = f32>) -> impl Strategy<Value = [f32; N]> {
    prop::collection::vec(s, N).prop_map(|v| v.try_into().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn axpy_and_dot_equal_their_twins((x, y) in (0usize..70).prop_flat_map(|n| (prop::collection::vec(value(), n), prop::collection::vec(value(), n))), a in value()) {
        let (mut simd, mut scalar) = (y.clone(), y.clone());
        axpy(a, &x, &mut simd);
        axpy_scalar(a, &x, &mut scalar);
        for i in 0..y.len() {
            prop_assert!(agree(simd[i], scalar[i], (a * x[i]).abs() + y[i].abs()), "axpy[{}]: {} vs {}", i, simd[i], scalar[i]);
        }
        let scale: f32 = x.iter().zip(&y).map(|(p, q)| (p * q).abs()).sum();
        prop_assert!(agree(dot(&x, &y), dot_scalar(&x, &y), scale));
    }

    #[test]
    fn dense_and_its_backward_equal_their_twins(
        input in array::<37>(value()),
        kernel in prop::collection::vec(array::<21>(value()), 37),
        bias in array::<21>(value()),
        out_grad in array::<21>(value()),
    ) {
        let kernel: [[f32; 21]; 37] = kernel.try_into().unwrap();
        let (mut a, mut b) = ([0.0; 21], [0.0; 21]);
        dense(&input, &kernel, &bias, &mut a);
        dense_scalar(&input, &kernel, &bias, &mut b);
        for j in 0..21 {
            let scale: f32 = bias[j].abs() + (0..37).map(|i| (input[i] * kernel[i][j]).abs()).sum::<f32>();
            prop_assert!(agree(a[j], b[j], scale), "dense[{}]: {} vs {}", j, a[j], b[j]);
        }
        let (mut kg_a, mut kg_b) = ([[0.0; 21]; 37], [[0.0; 21]; 37]);
        let (mut bg_a, mut bg_b) = ([0.0; 21], [0.0; 21]);
        let (mut ig_a, mut ig_b) = ([0.0; 37], [0.0; 37]);
        dense_backward(&input, &kernel, &out_grad, &mut kg_a, &mut bg_a, Some(&mut ig_a));
        dense_backward_scalar(&input, &kernel, &out_grad, &mut kg_b, &mut bg_b, Some(&mut ig_b));
        prop_assert_eq!(bg_a, bg_b);
        for i in 0..37 {
            let scale: f32 = (0..21).map(|j| (kernel[i][j] * out_grad[j]).abs()).sum();
            prop_assert!(agree(ig_a[i], ig_b[i], scale), "input grad[{}]: {} vs {}", i, ig_a[i], ig_b[i]);
            for j in 0..21 {
                prop_assert!(agree(kg_a[i][j], kg_b[i][j], (input[i] * out_grad[j]).abs()));
            }
        }
    }

    /// 19 columns take the split vector path on 8- and 16-lane builds alike.
    #[test]
    fn conv_relu_pool_equals_its_twin_on_the_split_path(
        image in prop::collection::vec(array::<19>(value()), 11),
        taps in prop::collection::vec(array::<3>(value()), 9),
        bias in array::<3>(value()),
    ) {
        const { assert!(19 > LANES && 19 / 2 >= 8, "19 columns take the split path") };
        let image: [[f32; 19]; 11] = image.try_into().unwrap();
        conv_twins_agree::<11, 19, 135>(&image, &taps, &bias)?;
    }

    /// 13 columns take the row-at-a-time vector path (too short to split).
    #[test]
    fn conv_relu_pool_equals_its_twin_on_the_row_path(
        image in prop::collection::vec(array::<13>(value()), 9),
        taps in prop::collection::vec(array::<3>(value()), 9),
        bias in array::<3>(value()),
    ) {
        let image: [[f32; 13]; 9] = image.try_into().unwrap();
        conv_twins_agree::<9, 13, 72>(&image, &taps, &bias)?;
    }

    /// Three steps, each with its own gradient, comparing all of the state
    /// after each: parameters, both moments, the velocity.
    #[test]
    fn adam_and_momentum_equal_their_twins(
        (g, p) in (0usize..70).prop_flat_map(|n| (prop::collection::vec(value(), n), prop::collection::vec(value(), n))),
        lr in 1e-5f32..1.0,
    ) {
        let n = g.len();
        let grads = |step: usize| -> Vec<f32> { g.iter().enumerate().map(|(i, &x)| if (i + step).is_multiple_of(3) { -x } else { x * 0.5f32.powi(step as i32) }).collect() };
        let step = AdamStep { alpha: lr, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
        let (mut pa, mut ma, mut va) = (p.clone(), vec![0.0; n], vec![0.0; n]);
        let (mut pb, mut mb, mut vb) = (p.clone(), vec![0.0; n], vec![0.0; n]);
        let (mut qa, mut ua) = (p.clone(), vec![0.0; n]);
        let (mut qb, mut ub) = (p.clone(), vec![0.0; n]);
        let big = g.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
        for k in 0..3 {
            let gk = grads(k);
            adam_update(&mut pa, &mut ma, &mut va, &gk, step);
            adam_update_scalar(&mut pb, &mut mb, &mut vb, &gk, step);
            momentum_update(&mut qa, &mut ua, &gk, lr, 0.9);
            momentum_update_scalar(&mut qb, &mut ub, &gk, lr, 0.9);
            for i in 0..n {
                prop_assert!(agree(pa[i], pb[i], p[i].abs() + lr * 10.0 * (k + 1) as f32), "step {}: adam p[{}]: {} vs {}", k, i, pa[i], pb[i]);
                prop_assert!(agree(ma[i], mb[i], big), "step {}: adam m[{}]: {} vs {}", k, i, ma[i], mb[i]);
                prop_assert!(agree(va[i], vb[i], big * big), "step {}: adam v[{}]: {} vs {}", k, i, va[i], vb[i]);
                prop_assert!(agree(ua[i], ub[i], 3.0 * big), "step {}: velocity[{}]: {} vs {}", k, i, ua[i], ub[i]);
                prop_assert!(agree(qa[i], qb[i], p[i].abs() + 3.0 * lr * big * (k + 1) as f32), "step {}: momentum p[{}]: {} vs {}", k, i, qa[i], qb[i]);
            }
        }
    }

    #[test]
    fn kernels_do_not_panic_on_nan_or_infinity(
        image in prop::collection::vec(array::<12>(any_value()), 10),
        taps in array::<9>(any_value()),
        input in array::<30>(any_value()),
        kernel in prop::collection::vec(array::<9>(any_value()), 30),
        label in 0usize..12,
    ) {
        let image: [[f32; 12]; 10] = image.try_into().unwrap();
        let kernel_conv: ConvKernel<1> = core::array::from_fn(|ky| core::array::from_fn(|kx| [taps[ky * 3 + kx]]));
        let (mut pooled, mut argmax) = ([0.0f32; 30], [0u8; 30]);
        conv_relu_pool::<10, 12, 1, 30>(&image, &kernel_conv, &[0.0], &mut pooled, Some(&mut argmax));
        prop_assert!(argmax.iter().all(|&w| w < 4));
        let dense_kernel: [[f32; 9]; 30] = kernel.try_into().unwrap();
        let mut out = [0.0f32; 9];
        dense(&input, &dense_kernel, &[0.0; 9], &mut out);
        relu(&mut out);
        let mut grad = [0.0f32; 9];
        let result = softmax_cross_entropy(&out, label, 1.0, &mut grad);
        prop_assert_eq!(result.is_err(), label >= 9);
    }
}

#[test]
fn forward_and_training_refuse_non_finite_pixels() {
    let params = tinycnn::FashionParams::boxed();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut image = [[0.0f32; 28]; 28];
        image[27][27] = bad;
        let err = params
            .forward(&image, &mut tinycnn::FashionWorkspace::new())
            .unwrap_err();
        assert_eq!(err, tinycnn::Error::NonFinite { what: "image" });
    }
}

/// The SIMD convolution and its scalar twin sum in the same order with the
/// same rounding: their pooled maps and winners are equal.
fn conv_twins_agree<const H: usize, const W: usize, const FLAT: usize>(
    image: &[[f32; W]; H],
    taps: &[[f32; 3]],
    bias: &[f32; 3],
) -> Result<(), TestCaseError> {
    let kernel: ConvKernel<3> = core::array::from_fn(|ky| core::array::from_fn(|kx| taps[ky * 3 + kx]));
    let (mut a, mut b) = ([0.0f32; FLAT], [0.0f32; FLAT]);
    let (mut wa, mut wb) = ([0u8; FLAT], [0u8; FLAT]);
    conv_relu_pool::<H, W, 3, FLAT>(image, &kernel, bias, &mut a, Some(&mut wa));
    conv_relu_pool_scalar::<H, W, 3, FLAT>(image, &kernel, bias, &mut b, Some(&mut wb));
    prop_assert_eq!(a, b);
    prop_assert_eq!(wa, wb);
    Ok(())
}
