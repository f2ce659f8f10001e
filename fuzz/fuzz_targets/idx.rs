//! IDX parsing: any bytes parse or are refused, and what parses reads back in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::data::{IdxDataset, IdxImages, IdxLabels, Samples};

fuzz_target!(|data: &[u8]| {
    // The first byte is the length of the label file; the image file follows it.
    let Some((&split, rest)) = data.split_first() else { return };
    let (labels, images) = rest.split_at(usize::from(split).min(rest.len()));
    let labels = IdxLabels::parse(labels);
    let images = IdxImages::parse(images);
    if let Ok(images) = images {
        for i in 0..images.len().min(4) {
            let image = images.image(i).expect("an image the header promised");
            assert_eq!(image.len(), images.rows() * images.cols());
        }
        assert!(images.image(images.len()).is_none());
        if let Ok(labels) = labels {
            if let Ok(set) = IdxDataset::<2, 2>::new(images, labels) {
                let mut image = [[0.0f32; 2]; 2];
                for i in 0..set.len().min(4) {
                    let _ = set.read(i, &mut image).expect("a sample the header promised");
                }
                assert!(set.read(set.len(), &mut image).is_err());
            }
        }
    }
});
