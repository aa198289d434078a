#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frontend::fuzz_harness::openai_request(data));
