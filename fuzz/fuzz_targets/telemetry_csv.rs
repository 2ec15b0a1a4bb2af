#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridfed_fuzz::telemetry_csv(data));
