#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| workers::fuzz_harness::safetensors(data));
