//! Int8 blobs: any bytes are accepted as an int8 model or refused, never a
//! panic, and an accepted model classifies any image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::quant::{QuantModel, QuantWorkspace};
use tinycnn::weights::Aligned;

type Small<'a> = QuantModel<'a, 4, 4, 2, 8, 3, 2>;

fuzz_target!(|data: &[u8]| {
    let mut storage = Box::new(Aligned([0u8; 4096]));
    let len = data.len().min(4096);
    storage.0[..len].copy_from_slice(&data[..len]);
    if let Ok(model) = Small::from_blob(&storage.0[..len]) {
        let class = model.predict(&[200u8; 16], &mut QuantWorkspace::new()).expect("a 4x4 image");
        assert!(class < 2);
    }
    if len > 1 {
        let _ = Small::from_blob(&storage.0[1..len]);
    }
});
