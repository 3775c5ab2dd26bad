//! The admin API: backend listing, drain, enable and disable, through the control
//! thread to every shard.

mod support;

use std::net::SocketAddr;

use ringlb::control::handle::AdminState;
use ringlb::shard::Driver;
use support::*;

fn post(admin: SocketAddr, path: &str) -> Reply {
    request(
        admin,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

both_drivers! {
    fn drain_lets_in_flight_requests_finish_and_sends_no_new_ones(driver) {
        let h = Harness::start(driver, 2, |_| {});
        let admin = h.server().admin_addr();
        let addr = h.addr;
        // Round-robin starts at app1: this slow request is in flight there.
        let slow = std::thread::spawn(move || get(addr, "/delay/400ms"));
        wait_until("the slow request to reach app1", || h.origins[0].connections() == 1);
        let r = post(admin, "/backends/app1/drain");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.text().contains(r#""name":"app1""#), "{}", r.text());
        assert!(r.text().contains(r#""state":"draining""#), "{}", r.text());
        let slow = slow.join().unwrap();
        assert_eq!((slow.status, slow.text().as_str()), (200, "app1\n"));
        wait_until("shards to skip app1", || {
            (0..2).all(|_| get(addr, "/").text() == "app2\n")
        });

        let r = post(admin, "/backends/app1/enable");
        assert!(r.text().contains(r#""state":"enabled""#), "{}", r.text());
        wait_until("app1 back", || get(addr, "/").text() == "app1\n");

        let r = post(admin, "/backends/app1/disable");
        assert!(r.text().contains(r#""state":"disabled""#), "{}", r.text());
        wait_until("shards to skip app1", || {
            (0..2).all(|_| get(addr, "/").text() == "app2\n")
        });
    }
}

#[test]
fn listing_errors_and_reloads() {
    let h = Harness::start(Driver::Epoll, 2, |_| {});
    let admin = h.server().admin_addr();
    let r = get(admin, "/backends");
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.starts_with('[') && text.trim_end().ends_with(']'),
        "{text}"
    );
    assert!(text.contains(r#""name":"app1""#) && text.contains(r#""name":"app2""#));
    assert!(text.contains(r#""healthy":true"#) && text.contains(r#""breaker":"closed""#));

    assert_eq!(post(admin, "/backends/nope/drain").status, 404);
    assert_eq!(post(admin, "/backends/app1/explode").status, 404);
    assert_eq!(get(admin, "/backends/app1/drain").status, 405);

    // An operator's drain survives a reload that keeps the backend.
    assert_eq!(post(admin, "/backends/app1/drain").status, 200);
    h.set_backends(h.backend_table(2));
    let states = h.server().handle().backends().unwrap();
    assert_eq!(states[0].state, AdminState::Draining);
    assert_eq!(states[0].weight, 2);
    wait_until("only app2 serves", || {
        (0..2).all(|_| get(h.addr, "/").text() == "app2\n")
    });
}
