//! A short training on real Fashion-MNIST images (the shipped subset), with the
//! book's split and the `adam` recipe.

use rand_core::SeedableRng;
use rand_pcg::Pcg32;
use std::path::Path;
use tinycnn::data::{split_stratified, Samples, Subset};
use tinycnn::host::FashionMnist;
use tinycnn::train::{Adam, AdamConfig, Epoch, History};
use tinycnn::{FashionParams, FashionTrainer, FashionWorkspace};

#[test]
fn three_epochs_of_adam_on_the_subset_reach_80_percent() {
    let data =
        FashionMnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset")).unwrap();
    let all = data.train();
    let mut split = vec![0u32; all.len()];
    let n_val = split_stratified::<10>(
        all.labels().as_slice(),
        0.2,
        &mut Pcg32::seed_from_u64(42),
        &mut split,
    )
    .unwrap();
    assert_eq!(n_val, 1200);
    let (val_idx, train_idx) = split.split_at(n_val);
    let (train, validation) = (Subset::new(&all, train_idx), Subset::new(&all, val_idx));

    let mut rng = Pcg32::seed_from_u64(7);
    let mut params = FashionParams::boxed();
    params.init_glorot(&mut rng);
    let mut trainer = FashionTrainer::boxed();
    trainer.set_dropout(0.5).unwrap();
    let mut adam = Adam::<FashionParams>::boxed(AdamConfig::KERAS).unwrap();
    let mut order = vec![0u32; train.len()];
    let (epochs, batch_size) = (3, 32);
    let history: History<3> = trainer
        .fit(
            &mut params,
            &mut *adam,
            &train,
            &validation,
            epochs,
            Epoch::new(&mut order, batch_size, &mut rng),
        )
        .unwrap();
    assert!(history[2].train_loss < history[0].train_loss, "{history:?}");
    assert!(history[2].validation.accuracy > 0.78, "{history:?}");
    let test = params.score(&data.test(), &mut FashionWorkspace::new()).unwrap();
    assert!(test > 0.78, "test accuracy {test}");
    assert_eq!(data.test().len(), 1000);
}
