//! Stacks of layers: the book's network declared with `stack!` trains to the
//! same bits as `FashionTrainer` on `Params`; any stack's gradient matches
//! finite differences of its loss; the multi-channel convolution matches the
//! one-channel kernels where both apply.

mod common;
use common::*;
use rand_core::SeedableRng;
use rand_pcg::Pcg32;
use tinycnn::data::{Inputs, Subset};
use tinycnn::host::FashionMnist;
use tinycnn::host::ParallelTrainer;
use tinycnn::stack::Stack;
use tinycnn::train::{Adam, AdamConfig, Epoch, Head, HeadTrainer, Sgd, StreamingSgdTrainer, Train, Trainer};
use tinycnn::{FashionParams, FashionTrainer, ParamBuffer};

tinycnn::stack! {
    /// The book's network.
    struct Book: [28, 28, 1] => {
        Conv2d(10, 3), Relu, MaxPool2, Flatten, Dropout, Dense(100), Relu, Dense(10)
    }
}

tinycnn::stack! {
    /// Three channels, two convolutions (3x3 and 5x5), two dense layers.
    struct Deep: [8, 8, 3] => {
        Conv2d(4, 3), Relu, MaxPool2,
        Conv2d(6, 5), Relu, MaxPool2,
        Flatten, Dropout, Dense(8), Relu, Dense(3)
    }
}

type BookParams = <Book as Stack>::Params;

const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_books_stack_has_the_books_parameters_and_glorot_draws() {
    assert_eq!(Book::PARAMETERS, 197_210);
    assert_eq!(size_of::<BookParams>(), FashionParams::BYTES);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut Pcg32::seed_from_u64(4));
    let mut stacked: Box<BookParams> = Box::new([0.0; 197_210]);
    Book::init_glorot(&mut stacked, &mut Pcg32::seed_from_u64(4));
    assert_eq!(bits(stacked.as_flat()), bits(params.as_flat()));
}

/// Two epochs of 1,024 images of the shipped subset, batch 32, on the
/// book's `FashionTrainer` and on the book's network declared with
/// `stack!`, from the same Glorot draws.
fn both(dropout: f32, adam: bool) -> (Box<FashionParams>, Box<BookParams>) {
    let data = FashionMnist::load(SUBSET.as_ref()).unwrap();
    let all = data.train();
    let indices: Vec<u32> = (0..1024).collect();
    let train = Subset::new(&all, &indices);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut Pcg32::seed_from_u64(1));
    let mut stacked: Box<BookParams> = Box::new([0.0; 197_210]);
    stacked.as_flat_mut().copy_from_slice(params.as_flat());

    let mut trainer = FashionTrainer::boxed();
    trainer.set_dropout(dropout).unwrap();
    let mut stack_trainer = Trainer::<Book>::boxed();
    stack_trainer.set_dropout(dropout).unwrap();
    let mut order = vec![0u32; 1024];
    let (mut sgd, mut adam1, mut adam2) = (
        Sgd::new(0.05).unwrap(),
        Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap(),
        Adam::<BookParams>::boxed(AdamConfig::KERAS).unwrap(),
    );
    for number in 0..2 {
        let mut rng = Pcg32::seed_from_u64(10 + number);
        let epoch = Epoch::new(&mut order, 32, &mut rng).number(number as usize);
        let a = if adam {
            trainer.train_epoch(&mut params, &mut *adam1, &train, epoch)
        } else {
            trainer.train_epoch(&mut params, &mut sgd, &train, epoch)
        }
        .unwrap();
        let mut rng = Pcg32::seed_from_u64(10 + number);
        let epoch = Epoch::new(&mut order, 32, &mut rng).number(number as usize);
        let b = if adam {
            stack_trainer.train_epoch(&mut stacked, &mut *adam2, &train, epoch)
        } else {
            stack_trainer.train_epoch(&mut stacked, &mut sgd, &train, epoch)
        }
        .unwrap();
        assert_eq!(a.to_bits(), b.to_bits(), "epoch {number}: loss {a} vs {b}");
    }
    (params, stacked)
}

#[test]
fn the_books_stack_trains_to_the_trainers_bits_with_sgd() {
    let (params, stacked) = both(0.0, false);
    assert_eq!(bits(stacked.as_flat()), bits(params.as_flat()));
}

#[test]
fn the_books_stack_trains_to_the_trainers_bits_with_adam_and_dropout() {
    let (params, stacked) = both(0.5, true);
    assert_eq!(bits(stacked.as_flat()), bits(params.as_flat()));
}

type DeepInput = <Deep as Stack>::Input;

tinycnn::stack! {
    /// A 1x1 convolution, then one without pooling before the dense layer.
    struct Unpooled: [6, 6, 2] => {
        Conv2d(3, 1), Relu, MaxPool2, Conv2d(4, 3), Relu, Flatten, Dense(3)
    }
}

/// `n` random inputs of `H`x`W`x`C` values in [0, 1), labelled in turn.
fn random_inputs<const H: usize, const W: usize, const C: usize>(
    n: usize,
    seed: u64,
) -> Vec<([[[f32; C]; W]; H], usize)> {
    let mut r = rng(seed);
    (0..n)
        .map(|i| {
            let mut input = [[[0.0f32; C]; W]; H];
            for v in input.as_flattened_mut().as_flattened_mut() {
                *v = uniform(&mut r, 0.0, 1.0);
            }
            (input, i % 3)
        })
        .collect()
}

/// Glorot draws for stack `S`, biases lifted off zero so that few cells sit
/// at a ReLU's kink.
fn lifted_params<S: Stack>() -> S::Params {
    let mut params = <S::Params as ParamBuffer>::ZERO;
    S::init_glorot(&mut params, &mut rng(5));
    for (i, p) in params.as_flat_mut().iter_mut().enumerate() {
        if *p == 0.0 {
            *p = 0.05 + 0.01 * (i % 7) as f32;
        }
    }
    params
}

/// Checks `grads`, a gradient of stack `S`'s mean loss on `data` at
/// `params` (in `range` of the flat parameters), against finite differences,
/// at every seventh parameter there (every one of a small range).
fn check_gradient_in<S: Stack>(
    data: &[(S::Input, usize)],
    params: &S::Params,
    grads: &[f32],
    range: core::ops::Range<usize>,
) where
    [(S::Input, usize)]: Inputs<S::Input>,
{
    let mut trainer = Trainer::<S>::boxed();
    let mut loss = |params: &S::Params| f64::from(trainer.evaluate(params, data).unwrap().loss);
    // One-sided differences each way: where they disagree, the point sits
    // at (or a step crosses) a ReLU's or a pooling window's kink, and it is
    // skipped (a handful at most); elsewhere their mean, the central
    // difference, must be the gradient.
    let eps = 1e-3f32;
    let centre = loss(params);
    let (mut checked, mut moving, mut kinks) = (0, 0, 0);
    let step = if range.len() < 200 { 1 } else { 7 };
    for i in range.step_by(step) {
        let mut moved = *params;
        moved.as_flat_mut()[i] += eps;
        let up = (loss(&moved) - centre) / f64::from(eps);
        moved.as_flat_mut()[i] = params.as_flat()[i] - eps;
        let down = (centre - loss(&moved)) / f64::from(eps);
        let g = f64::from(grads[i]);
        let tolerance = 1e-3 + 0.03 * g.abs();
        if (up - down).abs() > tolerance {
            kinks += 1;
            continue;
        }
        let central = (up + down) / 2.0;
        assert!(
            (central - g).abs() <= tolerance,
            "parameter {i}: finite differences {central}, backward {g}"
        );
        checked += 1;
        moving += usize::from(g.abs() > 1e-3);
    }
    assert!(kinks * 20 <= checked, "{kinks} kinks in {checked} points");
    assert!(
        checked > 20 && moving > checked / 4,
        "{moving} of {checked} parameters have a gradient"
    );
}

/// Checks `Trainer`'s gradient of stack `S`'s mean loss on `data` against
/// finite differences.
fn check_gradient<S: Stack>(data: &[(S::Input, usize)])
where
    [(S::Input, usize)]: Inputs<S::Input>,
{
    let params = lifted_params::<S>();
    let mut trainer = Trainer::<S>::boxed();
    let batch: Vec<u32> = (0..data.len() as u32).collect();
    let (_, grads) = trainer.gradient(&params, data, &batch, &mut rng(0)).unwrap();
    let grads = grads.as_flat().to_vec();
    check_gradient_in::<S>(data, &params, &grads, 0..S::PARAMETERS);
}

/// The gradient a step of plain SGD with rate 1 took: `before - after`.
fn step_taken(before: &[f32], after: &[f32]) -> Vec<f32> {
    before
        .iter()
        .zip(after)
        .map(|(&b, &a)| (f64::from(b) - f64::from(a)) as f32)
        .collect()
}

/// Checks the step of plain SGD at rate 1 that `schedule` takes on a batch
/// of the two-convolution stack against finite differences.
fn check_step(schedule: &mut impl Train<<Deep as Stack>::Params, Sgd, Input = DeepInput>) {
    let data = random_inputs::<8, 8, 3>(6, 3);
    let params = lifted_params::<Deep>();
    let batch: Vec<u32> = (0..data.len() as u32).collect();
    let mut stepped = params;
    schedule
        .train_batch(
            &mut stepped,
            &mut Sgd::new(1.0).unwrap(),
            &data[..],
            &batch,
            &mut rng(1),
        )
        .unwrap();
    let grads = step_taken(params.as_flat(), stepped.as_flat());
    check_gradient_in::<Deep>(&data, &params, &grads, 0..Deep::PARAMETERS);
}

#[test]
fn the_parallel_schedule_steps_along_the_gradient_of_a_two_convolution_stack() {
    check_step(&mut ParallelTrainer::<Deep>::new(2).unwrap());
}

#[test]
fn the_streaming_schedule_steps_along_the_gradient_of_a_two_convolution_stack() {
    check_step(&mut *StreamingSgdTrainer::<8, Deep>::boxed(0.5).unwrap());
}

#[test]
fn the_last_layer_schedule_steps_along_the_gradient_of_a_two_convolution_stacks_last_layer() {
    let data = random_inputs::<8, 8, 3>(6, 3);
    let params = lifted_params::<Deep>();
    let batch: Vec<u32> = (0..data.len() as u32).collect();
    let mut head = <Head<8, 3> as ParamBuffer>::ZERO;
    head.copy_from_flat(params.as_flat());
    let before = head;
    HeadTrainer::<Deep>::boxed()
        .train_batch(&params, &mut head, &mut Sgd::new(1.0).unwrap(), &data[..], &batch)
        .unwrap();
    let last = Deep::PARAMETERS - (8 * 3 + 3);
    let mut grads = vec![0.0f32; Deep::PARAMETERS];
    grads[last..].copy_from_slice(&step_taken(before.as_flat(), head.as_flat()));
    check_gradient_in::<Deep>(&data, &params, &grads, last..Deep::PARAMETERS);
}

#[test]
fn the_last_layer_of_a_two_convolution_stack_fine_tunes() {
    // Class c: channel c brighter; the body keeps its Glorot draws.
    let mut r = rng(9);
    let data: Vec<(DeepInput, usize)> = (0..96)
        .map(|i| {
            let mut input = [[[0.0f32; 3]; 8]; 8];
            for pixel in input.as_flattened_mut() {
                for (c, v) in pixel.iter_mut().enumerate() {
                    *v = uniform(&mut r, 0.0, 0.5) + if c == i % 3 { 0.5 } else { 0.0 };
                }
            }
            (input, i % 3)
        })
        .collect();
    let params = lifted_params::<Deep>();
    let mut head = <Head<8, 3> as ParamBuffer>::ZERO;
    head.copy_from_flat(params.as_flat());
    let mut trainer = HeadTrainer::<Deep>::boxed();
    let before = trainer.evaluate(&params, &head, &data[..]).unwrap();
    let mut order = [0u32; 96];
    let mut sgd = Sgd::new(0.2).unwrap();
    for number in 0..20 {
        let epoch = Epoch::new(&mut order, 8, &mut r).number(number);
        trainer
            .train_epoch(&params, &mut head, &mut sgd, &data[..], epoch)
            .unwrap();
    }
    let after = trainer.evaluate(&params, &head, &data[..]).unwrap();
    assert!(after.loss < before.loss * 0.6, "{before:?} {after:?}");
    assert!(after.accuracy > before.accuracy + 0.4, "{before:?} {after:?}");
}

#[test]
fn a_two_convolution_three_channel_stack_has_the_gradient_of_its_loss() {
    check_gradient::<Deep>(&random_inputs(4, 3));
}

#[test]
fn a_stack_without_pooling_before_its_dense_layer_has_the_gradient_of_its_loss() {
    check_gradient::<Unpooled>(&random_inputs(4, 4));
}

#[test]
fn a_stack_of_several_channels_learns() {
    // Class c: channel c brighter.
    let mut r = rng(9);
    let data: Vec<(DeepInput, usize)> = (0..96)
        .map(|i| {
            let mut input = [[[0.0f32; 3]; 8]; 8];
            for pixel in input.as_flattened_mut() {
                for (c, v) in pixel.iter_mut().enumerate() {
                    *v = uniform(&mut r, 0.0, 0.5) + if c == i % 3 { 0.5 } else { 0.0 };
                }
            }
            (input, i % 3)
        })
        .collect();
    let mut params = <Deep as Stack>::Params::ZERO;
    let mut r = rng(2);
    Deep::init_glorot(&mut params, &mut r);
    let mut trainer = Trainer::<Deep>::boxed();
    trainer.set_dropout(0.25).unwrap();
    let mut adam = Adam::<<Deep as Stack>::Params>::boxed(AdamConfig::KERAS).unwrap();
    let mut order = [0u32; 96];
    let history: tinycnn::train::History<15> = trainer
        .fit(
            &mut params,
            &mut *adam,
            &data[..],
            &data[..],
            15,
            Epoch::new(&mut order, 8, &mut r),
        )
        .unwrap();
    let (first, last) = (history[0], history[history.len() - 1]);
    assert!(last.validation.loss < first.validation.loss / 2.0, "{history:?}");
    assert!(last.validation.accuracy > 0.9, "{history:?}");
    assert_eq!(data[..].len(), Inputs::len(&data[..]));
}

#[test]
fn the_multi_channel_convolution_is_the_one_channel_kernel_on_one_channel() {
    use tinycnn::kernels::{
        conv_relu_pool_backward_scalar, conv_relu_pool_channels, conv_relu_pool_channels_backward,
        conv_relu_pool_scalar,
    };
    let mut r = rng(6);
    let image: [[f32; 6]; 6] = random_image(&mut r);
    let kernel: [[[f32; 4]; 3]; 3] =
        core::array::from_fn(|_| core::array::from_fn(|_| random_array(&mut r, -1.0, 1.0)));
    let bias: [f32; 4] = random_array(&mut r, -0.2, 0.2);
    let (mut pooled, mut argmax) = ([0.0f32; 36], [0u8; 36]);
    conv_relu_pool_scalar::<6, 6, 4, 36>(&image, &kernel, &bias, &mut pooled, Some(&mut argmax));
    let (mut pooled2, mut argmax2) = ([0.0f32; 36], [0u8; 36]);
    let flat_kernel = kernel.as_flattened().as_flattened();
    conv_relu_pool_channels::<6, 6, 1, 4, 3, 36, true>(
        image.as_flattened(),
        flat_kernel,
        &bias,
        &mut pooled2,
        Some(&mut argmax2),
    );
    assert_all_close(&pooled2, &pooled, 1e-6, 1e-6, "pooled");
    assert!(pooled.iter().any(|&p| p > 0.0));
    let grad: [f32; 36] = random_array(&mut r, -1.0, 1.0);
    let (mut kernel_grad, mut bias_grad) = ([[[0.0f32; 4]; 3]; 3], [0.0f32; 4]);
    conv_relu_pool_backward_scalar::<6, 6, 4, 36>(
        &image,
        &pooled,
        &argmax,
        &grad,
        &mut kernel_grad,
        &mut bias_grad,
    );
    let (mut kernel_grad2, mut bias_grad2) = ([0.0f32; 36], [0.0f32; 4]);
    conv_relu_pool_channels_backward::<6, 6, 1, 4, 3, 36, true>(
        image.as_flattened(),
        flat_kernel,
        &pooled,
        &argmax,
        &grad,
        None,
        &mut kernel_grad2,
        &mut bias_grad2,
        None,
    );
    assert_all_close(
        &kernel_grad2,
        kernel_grad.as_flattened().as_flattened(),
        1e-5,
        1e-5,
        "kernel gradient",
    );
    assert_all_close(&bias_grad2, &bias_grad, 1e-5, 1e-5, "bias gradient");
}

/// The multi-channel backward against its scalar twin: the same sums in
/// another order, pooled and not, with and without the input's gradient.
#[test]
fn the_multi_channel_backward_is_its_scalar_twin() {
    use tinycnn::kernels::{
        conv_relu_pool_channels, conv_relu_pool_channels_backward, conv_relu_pool_channels_backward_scalar,
    };
    fn check<const POOL: bool, const FLAT: usize>(seed: u64) {
        const H: usize = 6;
        const W: usize = 8;
        let mut r = rng(seed);
        let input: Vec<f32> = random_vec(&mut r, H * W * 3, -1.0, 1.0);
        let kernel: Vec<f32> = random_vec(&mut r, 5 * 5 * 3 * 4, -1.0, 1.0);
        let bias: [f32; 4] = random_array(&mut r, -0.2, 0.2);
        let (mut out, mut argmax) = ([0.0f32; FLAT], [0u8; FLAT]);
        conv_relu_pool_channels::<H, W, 3, 4, 5, FLAT, POOL>(
            &input,
            &kernel,
            &bias,
            &mut out,
            Some(&mut argmax),
        );
        let grad: [f32; FLAT] = random_array(&mut r, -1.0, 1.0);
        let run = |scalar: bool| {
            let (mut kernel_grad, mut bias_grad, mut input_grad) =
                (vec![0.0f32; kernel.len()], [0.0f32; 4], vec![0.0f32; input.len()]);
            let f = if scalar {
                conv_relu_pool_channels_backward_scalar::<H, W, 3, 4, 5, FLAT, POOL>
            } else {
                conv_relu_pool_channels_backward::<H, W, 3, 4, 5, FLAT, POOL>
            };
            f(
                &input,
                &kernel,
                &out,
                &argmax,
                &grad,
                None,
                &mut kernel_grad,
                &mut bias_grad,
                Some(&mut input_grad),
            );
            (kernel_grad, bias_grad, input_grad)
        };
        let (fast, scalar) = (run(false), run(true));
        assert!(fast.0.iter().any(|&g| g != 0.0), "no gradient reached the kernel");
        assert_all_close(&fast.0, &scalar.0, 1e-5, 1e-5, "kernel gradient");
        assert_all_close(&fast.1, &scalar.1, 1e-5, 1e-5, "bias gradient");
        assert_all_close(&fast.2, &scalar.2, 1e-5, 1e-5, "input gradient");
    }
    check::<true, { 3 * 4 * 4 }>(1);
    check::<false, { 6 * 8 * 4 }>(2);
}
