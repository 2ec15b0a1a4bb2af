#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridfed_fuzz::model_artifact(data));
