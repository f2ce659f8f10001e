//! Stacks of several shapes against Keras: the same weights give the same
//! logits, and one SGD step the same weights, within 1e-5 of each tensor's
//! largest magnitude. The fixtures come from Keras itself
//! (`tests/fixtures/make_stack_fixtures.py`, beside them).

use safetensors::SafeTensors;
use tinycnn::data::Inputs;
use tinycnn::stack::{Logits, Stack};
use tinycnn::train::{Sgd, Trainer};
use tinycnn::ParamBuffer;

tinycnn::stack! {
    struct OneChannel: [12, 12, 1] => { Conv2d(4, 3), Relu, MaxPool2, Flatten, Dense(8), Relu, Dense(3) }
}
tinycnn::stack! {
    struct RgbTwoConvs: [12, 12, 3] => {
        Conv2d(4, 5), Relu, MaxPool2, Conv2d(6, 3), Relu, MaxPool2, Flatten, Dense(5)
    }
}
tinycnn::stack! {
    struct ThreeConvs: [16, 16, 3] => {
        Conv2d(4, 3), Relu, MaxPool2, Conv2d(8, 3), Relu, MaxPool2, Conv2d(8, 1), Relu, MaxPool2,
        Flatten, Dense(6), Relu, Dense(4)
    }
}
tinycnn::stack! {
    struct Unpooled: [6, 6, 2] => { Conv2d(3, 1), Relu, MaxPool2, Conv2d(4, 3), Relu, Flatten, Dense(3) }
}

fn values(file: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let tensor = file.tensor(name).unwrap_or_else(|_| panic!("{name} missing"));
    tensor
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `|a - b| <= 1e-5 * max |b|` for every value.
fn assert_close(found: &[f32], expected: &[f32], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}");
    let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in found.iter().zip(expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * largest,
            "{what}[{i}]: tinycnn {a}, Keras {b} (largest {largest})"
        );
    }
}

fn check<S: Stack>(name: &str)
where
    [(S::Input, usize)]: Inputs<S::Input>,
{
    let path = format!(
        "{}/tests/fixtures/stacks/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut params = tinycnn::host::stack_from_safetensors::<S>(&bytes).unwrap();

    let inputs = values(&file, "inputs");
    let labels = values(&file, "labels");
    let per_input = size_of::<S::Input>() / 4;
    let data: Vec<(S::Input, usize)> = inputs
        .chunks_exact(per_input)
        .zip(&labels)
        .map(|(input, &label)| {
            (
                bytemuck::pod_read_unaligned(bytemuck::cast_slice(input)),
                label as usize,
            )
        })
        .collect();
    assert_eq!(data.len(), 8);

    let mut trainer = Trainer::<S>::boxed();
    let mut logits = Vec::new();
    for (input, _) in &data {
        let out = *trainer.logits(&params, input).unwrap();
        logits.extend_from_slice(bytemuck::cast_slice(core::slice::from_ref(&out)));
    }
    assert_eq!(logits.len(), 8 * <S::Logits as Logits>::CLASSES);
    assert_close(&logits, &values(&file, "logits"), &format!("{name} logits"));

    let batch: Vec<u32> = (0..8).collect();
    let mut rng = rand_pcg::Pcg32::new(1, 1);
    trainer
        .train_batch(
            &mut params,
            &mut Sgd::new(0.1).unwrap(),
            &data[..],
            &batch,
            &mut rng,
        )
        .unwrap();
    let flat = params.as_flat();
    let mut tensors = 0;
    S::for_each_tensor(|t| {
        let name_after = format!("after.{}", t.name::<S>());
        assert_close(
            &flat[t.at..t.at + t.len()],
            &values(&file, &name_after),
            &format!("{name} {name_after}"),
        );
        tensors += 1;
    });
    assert_eq!(tensors, 2 * (S::Layers::CONVS + S::Layers::DENSES));
}

use tinycnn::stack::Layer;

#[test]
fn one_channel_one_convolution() {
    check::<OneChannel>("one_channel");
}

#[test]
fn three_channels_two_convolutions_kernels_5_and_3() {
    check::<RgbTwoConvs>("rgb_two_convs");
}

#[test]
fn three_convolutions_one_of_them_1x1() {
    check::<ThreeConvs>("three_convs");
}

#[test]
fn a_convolution_without_pooling_before_the_dense_layer() {
    check::<Unpooled>("unpooled");
}
