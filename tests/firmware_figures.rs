//! The figures the firmware examples print, computed on the host from the same
//! embedded model blobs and the same first 500 test images. `scripts/firmware.sh`
//! (run by CI) checks that the boards print these same figures.

use std::path::Path;
use tinycnn::data::Samples;
use tinycnn::host::FashionMnist;
use tinycnn::quant::QuantWorkspace;
use tinycnn::{FashionParams, FashionQuantModel, FashionWorkspace};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn m4_infer_and_m4_infer_int8_figures() {
    let data = FashionMnist::load(&Path::new(ROOT).join("data/fashion-mnist-subset")).unwrap();
    let test = data.test();
    let params: Box<FashionParams> =
        tinycnn::host::load_blob(&Path::new(ROOT).join("examples/board/fashion-adam.tcnn")).unwrap();
    let blob = std::fs::read(Path::new(ROOT).join("examples/board/fashion-adam.q8")).unwrap();
    let aligned = tinycnn::host::AlignedBytes::new(&blob);
    let model = FashionQuantModel::from_blob(aligned.as_bytes()).unwrap();
    let (mut ws, mut qws) = (FashionWorkspace::new(), QuantWorkspace::new());
    let mut image = [[0.0f32; 28]; 28];
    let (mut f32_correct, mut int8_correct) = (0, 0);
    for i in 0..500 {
        let label = test.read(i, &mut image).unwrap();
        f32_correct += usize::from(params.predict(&image, &mut ws).unwrap() == label);
        int8_correct +=
            usize::from(model.predict(test.images().image(i).unwrap(), &mut qws).unwrap() == label);
    }
    // RESULT example=m4_infer ... correct=460 accuracy=0.9200
    assert_eq!(f32_correct, 460);
    // RESULT example=m4_infer_int8 ... correct=459 accuracy=0.9180
    assert_eq!(int8_correct, 459);
}
