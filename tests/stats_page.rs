//! The live statistics page (`GET /` on the admin listener) in a real browser:
//! headless Chromium (Debian's `chromium`, which CI installs), driven over the
//! DevTools protocol with the WebSocket client the other tests use. What is
//! checked is read from the rendered page, not from the JSON: backends listed, a
//! backend taken down shown as down, the drain button draining, ringlb's silence
//! said plainly, and 500 backends updated in place. A screenshot is saved as
//! `target/stats-page.png`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use support::*;
use tungstenite::{Message, WebSocket};

/// Headless Chromium and one page of it, over the DevTools protocol.
struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
}

impl Browser {
    fn launch(name: &str) -> Browser {
        let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{name}"));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium (Debian's package; CI installs it)");
        // It says where its DevTools endpoint is on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx.recv_timeout(WAIT).expect("chromium's DevTools address");
        let address: SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("DevTools");
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// Sends a command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(message.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().expect("a DevTools message") else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
            // Events: not needed.
        }
    }

    /// Opens `url` and waits until it has loaded (navigating returns before).
    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        let loaded = format!(
            "location.href === {} && document.readyState === 'complete'",
            json!(url)
        );
        wait_until(&format!("{url} to load"), || {
            self.eval(&loaded) == json!(true)
        });
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// The text of a backend's state cell, as rendered.
    fn backend_state(&mut self, name: &str) -> String {
        let value = self.eval(&format!(
            "(document.querySelector('tr[data-backend=\"{name}\"] td.state') || {{}}).textContent || ''"
        ));
        value.as_str().unwrap_or_default().to_string()
    }

    fn screenshot(&mut self, file: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join(file);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_shows_backends_their_failures_and_drains_one() {
    let mut h = Harness::start(ringlb::shard::Driver::Epoll, 3, |c| {
        let check = &mut c.clusters[0].health_check;
        check.kind = ringlb::config::CheckType::Http;
        check.interval = Duration::from_millis(100);
        check.healthy_threshold = 1;
        check.unhealthy_threshold = 1;
    });
    // Traffic all along, so the page's rates have something to show.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), h.addr);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::net::TcpStream::connect(addr).and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(WAIT))?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
                    s.read_to_end(&mut Vec::new())
                });
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let admin = h.server().admin_addr();
    let mut browser = Browser::launch("page");
    browser.navigate(&format!("http://{admin}/"));
    wait_until("the page to list the three backends", || {
        browser.eval("document.querySelectorAll('tr[data-backend]').length") == json!(3)
    });
    for name in ["app1", "app2", "app3"] {
        wait_until(&format!("{name} shown up"), || {
            browser.backend_state(name) == "up"
        });
    }
    // The requests made show in the page's own figures: the cluster row exists
    // and the latency tiles have numbers.
    wait_until("requests/s shown", || {
        browser.eval("parseFloat(document.getElementById('rps').textContent) > 0") == json!(true)
    });
    wait_until("latency shown", || {
        browser.eval("document.getElementById('p50').textContent.endsWith(' ms') && !document.getElementById('p50').textContent.startsWith('–')")
            == json!(true)
    });

    // A backend that goes away shows as down, and its row stands out.
    drop(h.origins.remove(1));
    wait_until("app2 shown down", || {
        browser.backend_state("app2") == "down"
    });
    assert_eq!(
        browser.eval("document.querySelector('tr[data-backend=\"app2\"]').className"),
        json!("down")
    );

    // The drain button, confirmed, drains it (asked of the page; checked in both).
    browser.eval(
        "window.confirm = () => true; document.querySelector('tr[data-backend=\"app1\"] button.drain').click(); true",
    );
    wait_until("app1 shown draining", || {
        browser.backend_state("app1") == "draining"
    });
    assert_eq!(h.backend("app1").state.as_str(), "draining");
    let shot = browser.screenshot("stats-page.png");
    eprintln!("screenshot: {}", shot.display());

    // ringlb stops answering: the page says so.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    if let Some(server) = h.server.take() {
        server.handle().abort();
        server.wait();
    }
    wait_until("the page to say ringlb is silent", || {
        browser
            .eval("document.getElementById('banner').textContent")
            .as_str()
            .is_some_and(|t| t.starts_with("ringlb is not answering"))
    });
}

#[test]
fn five_hundred_backends_are_updated_in_place() {
    let h = Harness::start(ringlb::shard::Driver::Epoll, 1, |c| {
        // 499 more backends nothing listens on (no checks, so they stay up).
        for i in 2..=500 {
            c.clusters[0].backends.push(ringlb::config::BackendConfig {
                name: format!("app{i}"),
                address: SocketAddr::from(([127, 0, 0, 1], 1)),
                weight: 1,
            });
            // Distinct addresses: the port is the backend's number.
            c.clusters[0]
                .backends
                .last_mut()
                .unwrap()
                .address
                .set_port(20_000 + i as u16);
        }
    });
    let admin = h.server().admin_addr();
    let mut browser = Browser::launch("five-hundred");
    browser.navigate(&format!("http://{admin}/"));
    wait_until("500 rows", || {
        browser.eval("document.querySelectorAll('tr[data-backend]').length") == json!(500)
    });
    // Mark the rows, let two more polls render, and find the same elements.
    browser.eval(
        "document.querySelectorAll('tr[data-backend]').forEach(r => r.marked = true); window.pollsAtMark = Number(document.body.dataset.polls); true",
    );
    wait_until("two more polls", || {
        browser.eval("Number(document.body.dataset.polls) >= window.pollsAtMark + 2") == json!(true)
    });
    assert_eq!(
        browser.eval("Array.from(document.querySelectorAll('tr[data-backend]')).every(r => r.marked === true)"),
        json!(true),
        "rows were rebuilt instead of updated"
    );
    assert_eq!(browser.backend_state("app500"), "up");
}

#[test]
fn with_a_token_the_page_asks_for_it_and_sends_it() {
    let h = Harness::start(ringlb::shard::Driver::Epoll, 2, |c| {
        c.admin.token = Some("a-long-enough-admin-token".into());
    });
    let admin = h.server().admin_addr();
    let mut browser = Browser::launch("token");
    browser.navigate(&format!("http://{admin}/"));
    wait_until("the page to ask for the token", || {
        browser
            .eval("document.getElementById('banner').textContent")
            .as_str()
            .is_some_and(|t| t.contains("token"))
    });
    assert_eq!(
        browser.eval("document.querySelectorAll('tr[data-backend]').length"),
        json!(0)
    );
    browser.eval(
        "const t = document.getElementById('token'); t.value = 'a-long-enough-admin-token'; t.dispatchEvent(new Event('change')); true",
    );
    wait_until("the backends with the token", || {
        browser.eval("document.querySelectorAll('tr[data-backend]').length") == json!(2)
    });
    // A button's request carries it too.
    browser.eval(
        "window.confirm = () => true; document.querySelector('tr[data-backend=\"app2\"] button.disable').click(); true",
    );
    wait_until("app2 shown disabled", || {
        browser.backend_state("app2") == "disabled"
    });
    assert_eq!(h.backend("app2").state.as_str(), "disabled");
}
