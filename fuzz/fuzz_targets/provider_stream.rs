#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frontend::fuzz_harness::provider_stream(data));
