//! Conformance: request cases from public sources (the llhttp test suite, the HTTP
//! Garden's findings, Http11Probe, RFC 9110/9112; each case names its source in
//! `conformance/cases.rs`), sent as raw bytes through the real proxy to a real
//! origin, each with the outcome the RFC calls for.
//!
//! - `Reject`: ringlb answers with an error of its own (4xx/5xx, `Server: ringlb`),
//!   not with what the origin made of it.
//! - `Body`: the request reaches the origin, whose `/echo` answers with exactly the
//!   body it received.
//! - `Either`: the RFC lets a recipient accept or refuse; whichever ringlb does,
//!   it answers once (no second, smuggled request is answered).

mod support;

#[path = "conformance/cases.rs"]
mod cases;

use ringlb::shard::Driver;
use support::*;

pub struct Case {
    source: &'static str,
    bytes: &'static [u8],
    expect: Expect,
}

pub enum Expect {
    Reject,
    Body(&'static [u8]),
    Either,
}

/// The final response in `raw` (after any 1xx), and the bytes after it.
struct Answer {
    status: u16,
    own: bool,
    body: Vec<u8>,
    rest: usize,
}

fn answer(raw: &[u8]) -> Result<Answer, String> {
    let mut at = 0;
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        let head = match response.parse(&raw[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Err("no complete response".into()),
            Err(e) => return Err(format!("invalid response: {e}")),
        };
        let status = response.code.unwrap_or(0);
        let field = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let own = field("server").as_deref() == Some("ringlb");
        let length = field("content-length").and_then(|v| v.parse::<usize>().ok());
        at += head;
        if status < 200 {
            continue;
        }
        let end = length.map_or(raw.len(), |n| (at + n).min(raw.len()));
        return Ok(Answer {
            status,
            own,
            body: raw[at..end].to_vec(),
            rest: raw.len() - end,
        });
    }
}

/// What went wrong with one case, if anything.
fn judge(case: &Case, raw: &[u8]) -> Option<String> {
    let answer = match answer(raw) {
        Ok(a) => a,
        Err(e) => return Some(e),
    };
    if answer.rest != 0 {
        return Some(format!(
            "{} bytes after the response: a second request was answered",
            answer.rest
        ));
    }
    let refused = answer.status >= 400 && answer.own;
    match case.expect {
        Expect::Reject if refused => None,
        Expect::Reject => Some(format!("expected a refusal, got {}", answer.status)),
        Expect::Body(body) if answer.status == 200 && !answer.own => {
            if answer.body == body {
                None
            } else {
                Some(format!(
                    "the origin received {:?}, expected {:?}",
                    String::from_utf8_lossy(&answer.body),
                    String::from_utf8_lossy(body)
                ))
            }
        }
        Expect::Body(_) => Some(format!("expected it forwarded, got {}", answer.status)),
        Expect::Either if refused || (answer.status == 200 && !answer.own) => None,
        Expect::Either => Some(format!("neither forwarded nor refused: {}", answer.status)),
    }
}

fn run(driver: Driver) {
    let h = Harness::start(driver, 1, |_| {});
    let mut failures = Vec::new();
    for case in cases::CASES {
        let raw = exchange(h.addr, case.bytes);
        if let Some(why) = judge(case, &raw) {
            failures.push(format!(
                "{}\n  sent {:?}\n  got  {:?}\n  {why}",
                case.source,
                String::from_utf8_lossy(case.bytes),
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases::CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn public_cases_get_the_outcome_the_rfc_calls_for_io_uring() {
    run(Driver::IoUring);
}

#[test]
fn public_cases_get_the_outcome_the_rfc_calls_for_epoll() {
    run(Driver::Epoll);
}
