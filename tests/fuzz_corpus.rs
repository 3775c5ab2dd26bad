//! The fuzz targets' corpora, replayed: every input in `fuzz/corpus/TARGET/` goes
//! through the same check the target runs (`ringlb::testkit::fuzz`), so a crash
//! the fuzzer once found, minimised into the corpus, stays fixed.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            inputs += 1;
        }
    }
    assert!(inputs > 0, "{target}: an empty corpus");
}

#[test]
fn request_head() {
    replay("request_head", ringlb::testkit::fuzz::request_head);
}

#[test]
fn response_head() {
    replay("response_head", ringlb::testkit::fuzz::response_head);
}

#[test]
fn chunked() {
    replay("chunked", ringlb::testkit::fuzz::chunked);
}

#[test]
fn config() {
    replay("config", ringlb::testkit::fuzz::config);
}

#[test]
fn h2_request() {
    replay("h2_request", ringlb::testkit::fuzz::h2_request);
}

#[test]
fn h2_meter() {
    replay("h2_meter", ringlb::testkit::fuzz::h2_meter);
}

#[test]
fn proxy_header() {
    replay("proxy_header", ringlb::testkit::fuzz::proxy_header);
}

#[test]
fn framing() {
    replay("framing", ringlb::testkit::fuzz::framing);
}
