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

/// Sends `method path` to the admin listener with `headers` (whole lines) and an
/// optional JSON body.
fn call(admin: SocketAddr, method: &str, path: &str, headers: &str, body: Option<&str>) -> Reply {
    let body_lines = match body {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "\r\n".to_string(),
    };
    request(
        admin,
        format!("{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{headers}Connection: close\r\n{body_lines}")
            .as_bytes(),
    )
}

/// Every backend's name, as the control thread has them.
fn backend_names(h: &Harness) -> Vec<String> {
    let backends = h.server().handle().backends().unwrap();
    backends.into_iter().map(|b| b.name).collect()
}

fn json(r: &Reply) -> serde_json::Value {
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

#[test]
fn the_runtime_api_adds_changes_and_removes_backends() {
    let h = Harness::start(Driver::Epoll, 1, |_| {});
    let admin = h.server().admin_addr();
    let third = spawn_origin(Driver::Epoll, "app3");

    let clusters = json(&get(admin, "/clusters"));
    assert_eq!(clusters[0]["name"], "default");
    assert_eq!(clusters[0]["strategy"], "round-robin");
    assert_eq!(clusters[0]["backends"][0]["name"], "app1");
    assert_eq!(json(&get(admin, "/clusters/default"))["name"], "default");
    assert_eq!(get(admin, "/clusters/nope").status, 404);

    // Add app3: it takes requests.
    let new = format!(
        "{{\"name\":\"app3\",\"address\":\"{}\",\"weight\":2}}",
        third.addr()
    );
    let r = call(admin, "POST", "/clusters/default/backends", "", Some(&new));
    assert_eq!(r.status, 201, "{}", r.text());
    let added = json(&r);
    assert_eq!(
        (added["name"].as_str(), added["weight"].as_u64()),
        (Some("app3"), Some(2))
    );
    assert_eq!(added["cluster"], "default");
    wait_until("app3 to serve", || get(h.addr, "/").text() == "app3\n");
    assert_eq!(
        json(&get(admin, "/backends/app3"))["address"],
        third.addr().to_string()
    );

    // Refusals: a taken name, an unknown cluster, bad JSON, a bad address or weight.
    let r = call(admin, "POST", "/clusters/default/backends", "", Some(&new));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(json(&r)["error"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let r = call(admin, "POST", "/clusters/nope/backends", "", Some(&new));
    assert_eq!(r.status, 404);
    for body in [
        "{\"name\":",
        "{\"name\":\"x\"}",
        "{\"name\":\"x\",\"address\":\"nowhere\"}",
        "{\"name\":\"x\",\"address\":\"127.0.0.1:1\",\"weight\":0}",
        "{\"name\":\"bad name\",\"address\":\"127.0.0.1:1\"}",
        "{\"name\":\"x\",\"address\":\"127.0.0.1:1\",\"colour\":\"red\"}",
    ] {
        let r = call(admin, "POST", "/clusters/default/backends", "", Some(body));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(json(&r)["error"].is_string());
    }

    // PUT sets the weight and the state.
    let r = call(admin, "PUT", "/backends/app3", "", Some("{\"weight\":5}"));
    assert_eq!((r.status, json(&r)["weight"].as_u64()), (200, Some(5)));
    let r = call(
        admin,
        "PUT",
        "/backends/app3",
        "",
        Some("{\"state\":\"disabled\"}"),
    );
    assert_eq!(json(&r)["state"], "disabled");
    wait_until("app3 to be skipped", || {
        (0..3).all(|_| get(h.addr, "/").text() == "app1\n")
    });
    assert_eq!(
        call(
            admin,
            "PUT",
            "/backends/app3",
            "",
            Some("{\"state\":\"sleepy\"}")
        )
        .status,
        400
    );
    assert_eq!(
        call(admin, "PUT", "/backends/app3", "", Some("{}")).status,
        400
    );
    assert_eq!(
        call(admin, "PUT", "/backends/nope", "", Some("{\"weight\":1}")).status,
        404
    );

    // DELETE removes it; a second time it is gone.
    let r = call(admin, "DELETE", "/backends/app3", "", None);
    assert_eq!((r.status, json(&r)["name"].as_str()), (200, Some("app3")));
    assert_eq!(
        call(admin, "DELETE", "/backends/app3", "", None).status,
        404
    );
    assert_eq!(backend_names(&h), ["app1"]);

    // Changes last until the next reload, which re-applies the configuration.
    let r = call(admin, "POST", "/clusters/default/backends", "", Some(&new));
    assert_eq!(r.status, 201);
    h.set_backends(h.backend_table(1));
    assert_eq!(backend_names(&h), ["app1"]);
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let token = "0123456789abcdef0123";
    let h = Harness::start(Driver::Epoll, 1, |c| c.admin.token = Some(token.into()));
    let admin = h.server().admin_addr();
    assert_eq!(get(admin, "/healthz").status, 200);
    for path in ["/stats", "/metrics", "/backends", "/clusters"] {
        let r = get(admin, path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        let wrong = call(
            admin,
            "GET",
            path,
            "Authorization: Bearer 0123456789abcdef0124\r\n",
            None,
        );
        assert_eq!(wrong.status, 401, "{path}");
        let right = call(
            admin,
            "GET",
            path,
            &format!("Authorization: Bearer {token}\r\n"),
            None,
        );
        assert_eq!(right.status, 200, "{path}");
    }
    assert_eq!(post(admin, "/backends/app1/drain").status, 401);
    let r = call(
        admin,
        "POST",
        "/backends/app1/drain",
        &format!("Authorization: Bearer {token}\r\n"),
        None,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_public_admin_listener_without_a_token_does_not_start() {
    let mut config = base_config(Driver::Epoll);
    config.admin.listen = "0.0.0.0:0".parse().unwrap();
    config.clusters[0]
        .backends
        .push(ringlb::config::BackendConfig {
            name: "a".into(),
            address: closed_port(),
            weight: 1,
        });
    match ringlb::start(config) {
        Err(ringlb::server::StartError::Config(errors)) => {
            assert!(errors.to_string().contains("admin.token"), "{errors}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("started with a public, unauthenticated admin listener"),
    }
}

#[test]
fn changes_a_web_page_could_send_are_refused() {
    let h = Harness::start(Driver::Epoll, 2, |_| {});
    let admin = h.server().admin_addr();
    let drain = |headers: &str, body: Option<(&str, &str)>| {
        let tail = match body {
            Some((content_type, body)) => format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            None => "\r\n".into(),
        };
        request(
            admin,
            format!("POST /backends/app1/drain HTTP/1.1\r\n{headers}Connection: close\r\n{tail}")
                .as_bytes(),
        )
        .status
    };
    let host = format!("Host: {admin}\r\n");
    // Cross-site request forgery.
    assert_eq!(
        drain(&format!("{host}Origin: https://evil.example\r\n"), None),
        403
    );
    assert_eq!(drain(&format!("{host}Origin: null\r\n"), None), 403);
    assert_eq!(
        drain(&format!("{host}Sec-Fetch-Site: cross-site\r\n"), None),
        403
    );
    // A page at an IP address is another site too.
    assert_eq!(
        drain(&format!("{host}Origin: http://203.0.113.5\r\n"), None),
        403
    );
    // A body with no type (a page's Blob).
    let untyped = request(
        admin,
        format!("POST /backends/app1/drain HTTP/1.1\r\n{host}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}")
            .as_bytes(),
    );
    assert_eq!(untyped.status, 415);
    // DNS rebinding: the page's own name in Host.
    assert_eq!(
        drain(&format!("Host: evil.example:{}\r\n", admin.port()), None),
        403
    );
    assert_eq!(drain("", None), 403, "no Host at all");
    // Bodies a form may post without asking.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        assert_eq!(
            drain(&host, Some((content_type, "x"))),
            415,
            "{content_type}"
        );
    }
    assert_eq!(
        h.server().handle().backends().unwrap()[0].state,
        AdminState::Enabled,
        "nothing was drained"
    );
    // What curl sends, and what the admin's own page would.
    assert_eq!(drain(&host, None), 200);
    assert_eq!(
        drain(
            &format!("{host}Origin: http://{admin}\r\nSec-Fetch-Site: same-origin\r\n"),
            None
        ),
        200
    );
    assert_eq!(
        drain(&format!("Host: localhost:{}\r\n", admin.port()), None),
        200
    );
    // Only POST, PUT and DELETE change anything.
    let r = get(admin, "/backends/app1/drain");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

/// `GET /debug/profile` refuses before any profiler starts (so these run in the
/// test process; tests/profile.rs takes real profiles in a child process).
#[test]
fn profiles_are_off_unless_configured_and_guarded_by_the_token() {
    let token = "0123456789abcdef0123";
    let auth = format!("Authorization: Bearer {token}\r\n");
    let off = Harness::start(Driver::Epoll, 1, |c| c.admin.token = Some(token.into()));
    let admin = off.server().admin_addr();
    assert_eq!(get(admin, "/debug/profile?seconds=1").status, 401);
    let r = call(admin, "GET", "/debug/profile?seconds=1", &auth, None);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("admin.profiling = true"), "{}", r.text());

    let on = Harness::start(Driver::Epoll, 1, |c| {
        c.admin.token = Some(token.into());
        c.admin.profiling = true;
    });
    let admin = on.server().admin_addr();
    assert_eq!(get(admin, "/debug/profile?seconds=1").status, 401);
    for bad in ["seconds=0", "seconds=61", "seconds=x", "format=pprof"] {
        let r = call(admin, "GET", &format!("/debug/profile?{bad}"), &auth, None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let r = call(admin, "POST", "/debug/profile", &auth, None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

/// DNS rebinding: a page whose own name resolves to the admin address could read
/// the figures. Without a token, reads must name the admin listener in `Host`;
/// with one, the token is the guard and any name may be used (scrapers).
#[test]
fn reads_from_another_name_need_the_token() {
    let open = Harness::start(Driver::Epoll, 1, |_| {});
    let admin = open.server().admin_addr();
    let rebound = call(admin, "GET", "/stats", "", None);
    assert_eq!(rebound.status, 200, "Host: the admin address itself");
    let evil = |admin: SocketAddr, path: &str, extra: &str| {
        request(
            admin,
            format!(
                "GET {path} HTTP/1.1\r\nHost: evil.example:{}\r\n{extra}Connection: close\r\n\r\n",
                admin.port()
            )
            .as_bytes(),
        )
    };
    for path in ["/stats", "/metrics", "/backends", "/clusters"] {
        assert_eq!(evil(admin, path, "").status, 403, "{path}");
    }
    // What holds no figures stays open to any name.
    assert_eq!(evil(admin, "/healthz", "").status, 200);
    assert_eq!(evil(admin, "/", "").status, 200);
    let localhost = request(
        admin,
        format!(
            "GET /stats HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            admin.port()
        )
        .as_bytes(),
    );
    assert_eq!(localhost.status, 200);

    let token = "0123456789abcdef0123";
    let guarded = Harness::start(Driver::Epoll, 1, |c| c.admin.token = Some(token.into()));
    let admin = guarded.server().admin_addr();
    assert_eq!(evil(admin, "/stats", "").status, 401);
    let auth = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(evil(admin, "/stats", &auth).status, 200);
}
