//! Checkpoints: any bytes load as a checkpoint or are refused with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(checkpoint) = tinycnn::host::checkpoint_from_safetensors::<4, 4, 2, 8, 3, 2>(data) {
        if let Some(adam) = checkpoint.adam {
            assert_eq!(adam.m.len(), tinycnn::Params::<4, 4, 2, 8, 3, 2>::COUNT);
            assert_eq!(adam.v.len(), adam.m.len());
        }
    }
});
