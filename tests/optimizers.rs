//! One step of each optimizer, computed by hand.

use tinycnn::train::{Adam, AdamConfig, Optimizer, Sgd, SgdMomentum};
use tinycnn::Error;

#[test]
fn one_sgd_step_by_hand() {
    let mut p = [1.0f32, -2.0, 0.5];
    Sgd::new(0.1).unwrap().step(&mut p, &[1.0, -1.0, 0.0]).unwrap();
    assert_eq!(p, [0.9, -1.9, 0.5]);
}

#[test]
fn momentum_accumulates_velocity() {
    let mut opt = SgdMomentum::<[f32; 2]>::new(0.1, 0.9).unwrap();
    let mut p = [0.0f32, 0.0];
    opt.step(&mut p, &[1.0, 0.0]).unwrap(); // v = -0.1
    opt.step(&mut p, &[1.0, 0.0]).unwrap(); // v = -0.09 - 0.1 = -0.19
    assert!((p[0] - (-0.29)).abs() < 1e-6, "{}", p[0]);
    assert_eq!(p[1], 0.0);
}

#[test]
fn two_adam_steps_by_hand() {
    let config = AdamConfig {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };
    let mut adam = Adam::<[f32; 1]>::new(config).unwrap();
    let mut p = [1.0f32];
    // Step 1, g = 0.5: m = 0.05, v = 0.00025, alpha = 0.01 * sqrt(0.001) / 0.1,
    // p = 1 - alpha * 0.05 / (sqrt(0.00025) + 1e-7) = 1 - 0.0099999...
    adam.step(&mut p, &[0.5]).unwrap();
    let alpha1 = 0.01 * (0.001f64).sqrt() / 0.1;
    let expected1 = 1.0 - alpha1 * 0.05 / (0.00025f64.sqrt() + 1e-7);
    assert!(
        (f64::from(p[0]) - expected1).abs() < 1e-6,
        "{} vs {expected1}",
        p[0]
    );
    // Step 2, g = -1: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975.
    adam.step(&mut p, &[-1.0]).unwrap();
    let alpha2 = 0.01 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.9f64.powi(2));
    let expected2 = expected1 - alpha2 * -0.055 / (0.001_249_75f64.sqrt() + 1e-7);
    assert!(
        (f64::from(p[0]) - expected2).abs() < 1e-6,
        "{} vs {expected2}",
        p[0]
    );
    assert_eq!(adam.steps(), 2);
}

#[test]
fn optimizers_refuse_bad_settings_and_sizes() {
    assert!(matches!(Sgd::new(0.0), Err(Error::InvalidConfig { .. })));
    assert!(matches!(Sgd::new(f32::NAN), Err(Error::InvalidConfig { .. })));
    assert!(SgdMomentum::<[f32; 1]>::new(0.1, 1.0).is_err());
    assert!(Adam::<[f32; 1]>::new(AdamConfig {
        beta2: 1.0,
        ..AdamConfig::KERAS
    })
    .is_err());
    // A zero epsilon would step a parameter that never had a gradient by 0 / 0.
    assert!(matches!(
        Adam::<[f32; 1]>::new(AdamConfig {
            epsilon: 0.0,
            ..AdamConfig::KERAS
        }),
        Err(Error::InvalidConfig { .. })
    ));
    let mut adam = Adam::<[f32; 2]>::new(AdamConfig::KERAS).unwrap();
    let mut p = [0.0f32; 3];
    assert!(matches!(adam.step(&mut p, &[0.0; 3]), Err(Error::Length { .. })));
    assert!(matches!(
        Sgd::new(0.1).unwrap().step(&mut p, &[0.0; 2]),
        Err(Error::Length { .. })
    ));
    assert_eq!(p, [0.0; 3]);
}

/// A step taken in uneven pieces that start at multiples of the SIMD width
/// (as the parallel trainer's threads take it) equals the step taken whole,
/// bit for bit, for every optimizer, over several steps.
#[test]
fn a_step_in_pieces_equals_the_whole_step() {
    const N: usize = 203; // not a multiple of the SIMD width
    fn check<O: Optimizer + PartialEq + core::fmt::Debug>(mut whole: O, mut pieces: O) {
        let mut expected: Vec<f32> = (0..N).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut params = expected.clone();
        for step in 0..3 {
            let grads: Vec<f32> = (0..N).map(|i| ((i + step * 7) as f32 * 0.91).cos()).collect();
            whole.step(&mut expected, &grads).unwrap();
            let (update, mut state) = pieces.begin_step(N).unwrap();
            let (mut rest, mut grads_rest) = (&mut params[..], &grads[..]);
            for size in [8, 64, 16, 115] {
                let (p, p_rest) = rest.split_at_mut(size);
                let (g, g_rest) = grads_rest.split_at(size);
                let (s, s_rest) = state.split_at(size);
                update.apply(p, g, s);
                (rest, grads_rest, state) = (p_rest, g_rest, s_rest);
            }
            assert!(rest.is_empty());
            assert_eq!(params, expected, "step {step}");
            // All of the state: moments, velocity, the step count.
            assert_eq!(pieces, whole, "state after step {step}");
        }
    }
    check(Sgd::new(0.1).unwrap(), Sgd::new(0.1).unwrap());
    check(
        SgdMomentum::<[f32; N]>::new(0.1, 0.9).unwrap(),
        SgdMomentum::<[f32; N]>::new(0.1, 0.9).unwrap(),
    );
    check(
        Adam::<[f32; N]>::new(AdamConfig::KERAS).unwrap(),
        Adam::<[f32; N]>::new(AdamConfig::KERAS).unwrap(),
    );
}

/// Steps taken through a schedule, with the state held throughout, are the
/// steps `step` takes; the schedule counts a step only when it gives one.
#[test]
fn a_schedule_steps_as_step_does() {
    const N: usize = 37;
    let grads = |step: usize| -> Vec<f32> { (0..N).map(|i| ((i * 3 + step) as f32 * 0.41).sin()).collect() };
    let config = AdamConfig {
        lr: 0.01,
        ..AdamConfig::KERAS
    };
    let mut stepped = Adam::<[f32; N]>::new(config).unwrap();
    let mut expected = [0.5f32; N];
    for step in 0..4 {
        stepped.step(&mut expected, &grads(step)).unwrap();
    }
    let mut scheduled = Adam::<[f32; N]>::new(config).unwrap();
    let mut params = [0.5f32; N];
    {
        let (mut schedule, mut state) = scheduled.schedule(N).unwrap();
        for step in 0..4 {
            let update = schedule.next_update().unwrap();
            update.apply(&mut params, &grads(step), state.reborrow());
        }
    }
    assert_eq!(params, expected);
    assert_eq!(scheduled, stepped);
    // Handing out the state counts nothing.
    let before = scheduled.steps();
    assert!(scheduled.schedule(N).is_ok());
    assert_eq!(scheduled.steps(), before);
    assert!(scheduled.schedule(N + 1).is_err());
}
