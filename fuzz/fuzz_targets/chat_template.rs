#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engine::fuzz_harness::chat_template(data));
