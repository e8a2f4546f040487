#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cityhub_fuzz::context(data));
