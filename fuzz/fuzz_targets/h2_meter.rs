//! Fuzz target: see `ringlb::testkit::fuzz::h2_meter` for what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlb::testkit::fuzz::h2_meter(data));
