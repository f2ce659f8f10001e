//! Safetensors import: any bytes give parameters of the right shapes or a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinycnn::{kernels::all_finite, ParamBuffer};

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = tinycnn::host::params_from_safetensors::<4, 4, 2, 8, 3, 2>(data) {
        assert!(all_finite(params.as_flat()));
    }
});
