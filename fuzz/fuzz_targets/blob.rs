//! Weight blobs: any bytes are accepted as a model or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::weights::Aligned;
use tinycnn::{kernels::all_finite, ParamBuffer, Params};

type Small = Params<4, 4, 2, 8, 3, 2>;

fuzz_target!(|data: &[u8]| {
    // Copy into aligned storage, as firmware's include_bytes! wrapper does.
    let mut storage = Box::new(Aligned([0u8; 4096]));
    let len = data.len().min(4096);
    storage.0[..len].copy_from_slice(&data[..len]);
    if let Ok(params) = Small::from_blob(&storage.0[..len]) {
        assert!(all_finite(params.as_flat()));
        // What was accepted writes back to the same bytes.
        let mut again = vec![0u8; Small::BLOB_BYTES];
        params.write_blob(&mut again).unwrap();
        assert_eq!(&again[..], &storage.0[..len]);
    }
    // Off a 4-byte boundary the payload is refused, never misread.
    if len > 1 {
        let _ = Small::from_blob(&storage.0[1..len]);
    }
});
