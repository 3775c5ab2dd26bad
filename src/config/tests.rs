//! The configuration's rules, each with a test.

use super::env::{Kind, OVERRIDABLE};
use super::file::{parse_address, parse_hash_key, parse_status_range};
use super::*;

const ONE_BACKEND: &str = "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    parse(text, "t.toml", no_env())
        .expect_err("should be rejected")
        .0
}

/// The one error for `key`, with a message containing `fragment`.
fn assert_error(text: &str, key: &str, fragment: &str) {
    let errors = errors_of(text);
    assert!(
        errors
            .iter()
            .any(|e| e.file == "t.toml" && e.key == key && e.message.contains(fragment)),
        "no error for {key} containing {fragment:?}: {errors:?}"
    );
}

#[test]
fn the_example_file_parses() {
    let text = include_str!("../../config/ringlb.toml");
    let c = parse(text, "ringlb.toml", no_env()).unwrap();
    assert_eq!(c.listeners[0].address, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.server.shards, 0);
    assert_eq!(c.server.io, IoMode::Auto);
    assert_eq!(c.server.max_connections, 100_000);
    assert!(!c.server.transparent_huge_pages);
    assert_eq!(c.admin.listen, "127.0.0.1:9900".parse().unwrap());
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.timeouts.idle, Duration::from_secs(60));
    assert_eq!(c.limits.max_header_bytes, 16384);
    assert_eq!(c.clusters[0].balancer.strategy, Strategy::RoundRobin);
    assert_eq!(c.logging.level, LogLevel::Info);
    assert_eq!(c.clusters[0].backends[0].name, "app1");
    assert_eq!(
        c.clusters[0].backends[0].address,
        "127.0.0.1:9001".parse().unwrap()
    );
}

#[test]
fn missing_sections_take_defaults() {
    let c = parse(ONE_BACKEND, "t.toml", no_env()).unwrap();
    let mut expected = Config::default();
    expected.clusters[0].backends = vec![BackendConfig {
        name: "a".into(),
        address: "127.0.0.1:9001".parse().unwrap(),
        weight: 1,
    }];
    assert_eq!(c, expected);
}

#[test]
fn unknown_keys_and_sections_are_named() {
    assert_error(
        &format!("[server]\nbogus = 1\n{ONE_BACKEND}"),
        "server.bogus",
        "unknown key",
    );
    assert_error(
        &format!("[nope]\nx = 1\n{ONE_BACKEND}"),
        "nope",
        "unknown key",
    );
    assert_error(
        "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nport = 3\n",
        "backends[0].port",
        "unknown key",
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let errors = errors_of("[server]\nlisten = \n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].key.starts_with("line 2, column"), "{errors:?}");
}

#[test]
fn type_errors_name_the_key() {
    assert_error(
        &format!("[server]\nshards = \"two\"\n{ONE_BACKEND}"),
        "server.shards",
        "invalid type",
    );
    assert_error(
        &format!("[server]\ntransparent_huge_pages = \"yes\"\n{ONE_BACKEND}"),
        "server.transparent_huge_pages",
        "invalid type",
    );
    let c = parse(
        &format!("[server]\ntransparent_huge_pages = true\n{ONE_BACKEND}"),
        "t.toml",
        no_env(),
    )
    .unwrap();
    assert!(c.server.transparent_huge_pages);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("15us"), Ok(Duration::from_micros(15)));
    for bad in ["", "2", "s", "2 s", "2sec", "1.5s", "-1s", "2S", " 2s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert_error(
        &format!("[timeouts]\nconnect = \"2 sec\"\n{ONE_BACKEND}"),
        "timeouts.connect",
        "expected a duration like",
    );
    assert_error(
        &format!("[timeouts]\nidle = \"0s\"\n{ONE_BACKEND}"),
        "timeouts.idle",
        "greater than zero",
    );
    assert_error(
        &format!("[upstream]\nidle_timeout = \"0ms\"\n{ONE_BACKEND}"),
        "upstream.idle_timeout",
        "greater than zero",
    );
}

#[test]
fn addresses() {
    assert_eq!(parse_address(":9000"), Ok("0.0.0.0:9000".parse().unwrap()));
    assert_eq!(parse_address("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
    assert!(parse_address("localhost:80").is_err());
    assert!(parse_address("127.0.0.1").is_err());
    assert_error(
        &format!("[server]\nlisten = \"nowhere\"\n{ONE_BACKEND}"),
        "server.listen",
        "expected IP:port",
    );
    assert_error(
        &format!("[admin]\nlisten = \"x:1\"\n{ONE_BACKEND}"),
        "admin.listen",
        "expected IP:port",
    );
    assert_error(
        "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:0\"\n",
        "backends[0].address",
        "port must be between 1 and 65535",
    );
    // Port 0 is fine for listeners (tests use it).
    let c = parse(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{ONE_BACKEND}"
        ),
        "t",
        no_env(),
    );
    assert!(c.is_ok());
}

#[test]
fn server_rules() {
    assert_error(
        &format!("[server]\nshards = 1025\n{ONE_BACKEND}"),
        "server.shards",
        "at most 1024",
    );
    assert_error(
        &format!("[server]\nmax_connections = 0\n{ONE_BACKEND}"),
        "server.max_connections",
        "at least 1",
    );
    assert_error(
        &format!("[server]\nio = \"kqueue\"\n{ONE_BACKEND}"),
        "server.io",
        "auto, io_uring, epoll",
    );
    assert_error(
        &format!("[server]\nlisten = \"127.0.0.1:80\"\n[admin]\nlisten = \"127.0.0.1:80\"\n{ONE_BACKEND}"),
        "admin.listen",
        "must differ",
    );
}

#[test]
fn limit_rules() {
    assert_error(
        &format!("[limits]\nmax_header_bytes = 100\n{ONE_BACKEND}"),
        "limits.max_header_bytes",
        "between 1024 and 1048576",
    );
    assert_error(
        &format!("[limits]\nmax_headers = 0\n{ONE_BACKEND}"),
        "limits.max_headers",
        "between 1 and 512",
    );
    assert_error(
        &format!("[limits]\nmax_headers = 513\n{ONE_BACKEND}"),
        "limits.max_headers",
        "between 1 and 512",
    );
    assert_error(
        &format!("[limits]\nmax_body_bytes = 0\n{ONE_BACKEND}"),
        "limits.max_body_bytes",
        "at least 1",
    );
    assert_error(
        &format!("[upstream]\nmax_idle_per_backend = 100001\n{ONE_BACKEND}"),
        "upstream.max_idle_per_backend",
        "at most 100000",
    );
}

#[test]
fn health_check_settings() {
    let c = parse(
        &format!(
            "[health_check]\nkind = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\n\
             expect_status = \"200-204\"\nunhealthy_threshold = 4\nhealthy_threshold = 1\nstart = \"down\"\n{ONE_BACKEND}"
        ),
        "t.toml",
        no_env(),
    )
    .unwrap();
    let hc = &c.clusters[0].health_check;
    assert_eq!(hc.kind, CheckType::Tcp);
    assert_eq!(hc.interval, Duration::from_millis(500));
    assert_eq!(hc.expect_status, 200..=204);
    assert_eq!(
        (hc.unhealthy_threshold, hc.healthy_threshold, hc.start_up),
        (4, 1, false)
    );
    assert_error(
        &format!("[health_check]\nkind = \"icmp\"\n{ONE_BACKEND}"),
        "health_check.kind",
        "http, tcp, grpc, none",
    );
    assert_error(
        &format!("[health_check]\nexpect_status = \"2xx\"\n{ONE_BACKEND}"),
        "health_check.expect_status",
        "like \"200-399\"",
    );
    assert_error(
        &format!("[health_check]\nunhealthy_threshold = 0\n{ONE_BACKEND}"),
        "health_check.unhealthy_threshold",
        "between 1 and 100",
    );
    assert_error(
        &format!("[health_check]\nhealthy_threshold = 101\n{ONE_BACKEND}"),
        "health_check.healthy_threshold",
        "between 1 and 100",
    );
    assert_error(
        &format!("[health_check]\npath = \"health\"\n{ONE_BACKEND}"),
        "health_check.path",
        "must start with /",
    );
    assert_error(
        &format!("[health_check]\npath = \"/a b\"\n{ONE_BACKEND}"),
        "health_check.path",
        "spaces",
    );
    assert_error(
        &format!("[health_check]\nstart = \"maybe\"\n{ONE_BACKEND}"),
        "health_check.start",
        "up, down",
    );
    assert_error(
        &format!("[health_check]\ninterval = \"0s\"\n{ONE_BACKEND}"),
        "health_check.interval",
        "greater than zero",
    );
}

#[test]
fn retry_settings() {
    let c = parse(
        &format!("[retry]\nmax_retries = 3\nmax_buffered_body = 1024\nbudget_percent = 50\n{ONE_BACKEND}"),
        "t.toml",
        no_env(),
    )
    .unwrap();
    assert_eq!(
        c.clusters[0].retry,
        RetryConfig {
            max_retries: 3,
            max_buffered_body: 1024,
            budget_percent: 50
        }
    );
    assert_error(
        &format!("[retry]\nmax_retries = 8\n{ONE_BACKEND}"),
        "retry.max_retries",
        "at most 7",
    );
    assert_error(
        &format!("[retry]\nmax_buffered_body = 16777217\n{ONE_BACKEND}"),
        "retry.max_buffered_body",
        "at most 16777216",
    );
    assert_error(
        &format!("[retry]\nbudget_percent = 101\n{ONE_BACKEND}"),
        "retry.budget_percent",
        "at most 100",
    );
}

#[test]
fn breaker_settings() {
    let c = parse(
        &format!(
            "[circuit_breaker]\nenabled = false\nfailure_threshold = 7\nopen_for = \"5s\"\n\
             half_open_probes = 2\ncount_5xx = true\n{ONE_BACKEND}"
        ),
        "t.toml",
        env(&[("RINGLB_CIRCUIT_BREAKER_ENABLED", "true")]),
    )
    .unwrap();
    let expected = BreakerConfig {
        enabled: true,
        failure_threshold: 7,
        open_for: Duration::from_secs(5),
        half_open_probes: 2,
        count_5xx: true,
    };
    assert_eq!(c.clusters[0].circuit_breaker, expected);
    assert_error(
        &format!("[circuit_breaker]\nfailure_threshold = 0\n{ONE_BACKEND}"),
        "circuit_breaker.failure_threshold",
        "between 1 and 1000",
    );
    assert_error(
        &format!("[circuit_breaker]\nhalf_open_probes = 0\n{ONE_BACKEND}"),
        "circuit_breaker.half_open_probes",
        "between 1 and 100",
    );
    assert_error(
        &format!("[circuit_breaker]\nopen_for = \"soon\"\n{ONE_BACKEND}"),
        "circuit_breaker.open_for",
        "expected a duration",
    );
    let errors = parse(
        ONE_BACKEND,
        "t.toml",
        env(&[("RINGLB_CIRCUIT_BREAKER_COUNT_5XX", "yes")]),
    )
    .unwrap_err()
    .0;
    assert!(
        errors[0].message.contains("expected true or false"),
        "{errors:?}"
    );
}

#[test]
fn balancer_settings() {
    let c = parse(
        &format!(
            "[balancer]\nstrategy = \"consistent-hash\"\nhash_key = \"header:X-User\"\n\
             hash_algorithm = \"maglev\"\ntable_size = 251\nvirtual_nodes = 40\n\
             hash_bounded_load = 1.25\newma_decay = \"5s\"\n{ONE_BACKEND}"
        ),
        "t.toml",
        no_env(),
    )
    .unwrap();
    let b = &c.clusters[0].balancer;
    assert_eq!(b.strategy, Strategy::ConsistentHash);
    assert_eq!(b.hash_key, HashKey::Header("x-user".into()));
    assert_eq!(b.hash_algorithm, HashAlgorithm::Maglev);
    assert_eq!((b.table_size, b.virtual_nodes), (251, 40));
    assert_eq!(b.hash_bounded_load, Some(1.25));
    assert_eq!(b.ewma_decay, Duration::from_secs(5));
    for (key, expected) in [
        ("client-ip", HashKey::ClientIp),
        ("path", HashKey::Path),
        ("cookie:session", HashKey::Cookie("session".into())),
    ] {
        assert_eq!(parse_hash_key(key), Ok(expected));
    }
    for bad in ["", "ip", "header:", "header:a b", "cookie", "query:x"] {
        assert!(parse_hash_key(bad).is_err(), "{bad:?}");
    }
    assert_error(
        &format!("[balancer]\nhash_key = \"ip\"\n{ONE_BACKEND}"),
        "balancer.hash_key",
        "client-ip, path",
    );
    assert_error(
        &format!("[balancer]\ntable_size = 65536\n{ONE_BACKEND}"),
        "balancer.table_size",
        "prime",
    );
    assert_error(
        &format!("[balancer]\nvirtual_nodes = 0\n{ONE_BACKEND}"),
        "balancer.virtual_nodes",
        "between 1 and 1000",
    );
    assert_error(
        &format!("[balancer]\nhash_bounded_load = 1.0\n{ONE_BACKEND}"),
        "balancer.hash_bounded_load",
        "greater than 1.0",
    );
    assert_error(
        &format!("[balancer]\nhash_algorithm = \"rendezvous\"\n{ONE_BACKEND}"),
        "balancer.hash_algorithm",
        "ring, maglev",
    );
    let c = parse(
        &format!("[balancer]\nsticky = {{ cookie = \"srv\", ttl = \"30m\", secret = \"0123456789abcdef\" }}\n{ONE_BACKEND}"),
        "t",
        no_env(),
    )
    .unwrap();
    assert_eq!(
        c.clusters[0].balancer.sticky,
        Some(StickyConfig {
            cookie: "srv".into(),
            ttl: Duration::from_secs(1800),
            secret: Some("0123456789abcdef".into())
        })
    );
    assert_error(
        &format!("[balancer]\nsticky = {{ ttl = \"1h\" }}\n{ONE_BACKEND}"),
        "balancer.sticky.cookie",
        "expected a cookie name",
    );
    assert_error(
        &format!("[balancer]\nsticky = {{ cookie = \"a b\" }}\n{ONE_BACKEND}"),
        "balancer.sticky.cookie",
        "expected a cookie name",
    );
    assert_error(
        &format!("[balancer]\nsticky = {{ cookie = \"s\", secret = \"short\" }}\n{ONE_BACKEND}"),
        "balancer.sticky.secret",
        "at least 16",
    );
    assert_error(
        &format!("[balancer]\nsticky = {{ cookie = \"s\", colour = 1 }}\n{ONE_BACKEND}"),
        "balancer.sticky.colour",
        "unknown key",
    );
    for strategy in ["random", "p2c", "least-response", "consistent-hash"] {
        let c = parse(
            &format!("[balancer]\nstrategy = \"{strategy}\"\n{ONE_BACKEND}"),
            "t",
            no_env(),
        )
        .unwrap();
        assert_eq!(c.clusters[0].balancer.strategy.as_str(), strategy);
    }
}

#[test]
fn enumerations_list_their_values() {
    assert_error(
        &format!("[balancer]\nstrategy = \"fastest\"\n{ONE_BACKEND}"),
        "balancer.strategy",
        "round-robin, weighted-round-robin, least-conn, random, p2c, least-response, consistent-hash",
    );
    assert_error(
        &format!("[logging]\nlevel = \"loud\"\n{ONE_BACKEND}"),
        "logging.level",
        "error, warn, info, debug",
    );
    assert_error(
        &format!("[logging]\nformat = \"xml\"\n{ONE_BACKEND}"),
        "logging.format",
        "text, json",
    );
}

#[test]
fn backend_rules() {
    assert_error("", "backends", "at least one");
    assert_error(
        "[[backends]]\nname = \"a b\"\naddress = \"127.0.0.1:1\"\n",
        "backends[0].name",
        "A-Z a-z 0-9",
    );
    assert_error(
        "[[backends]]\nname = \"\"\naddress = \"127.0.0.1:1\"\n",
        "backends[0].name",
        "A-Z a-z 0-9",
    );
    assert_error(
        "[[backends]]\naddress = \"127.0.0.1:1\"\n",
        "backends[0].name",
        "missing",
    );
    assert_error(
        "[[backends]]\nname = \"a\"\n",
        "backends[0].address",
        "missing",
    );
    assert_error(
        "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\n",
        "backends[1].name",
        "already the name of backends[0]",
    );
    assert_error(
        "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[backends]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n",
        "backends[1].address",
        "already the address of backends[0]",
    );
    for w in ["0", "1001", "-1"] {
        assert_error(
            &format!("[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = {w}\n"),
            "backends[0].weight",
            "between 1 and 1000",
        );
    }
}

#[test]
fn every_error_is_reported() {
    let errors = errors_of(
        "[server]\nlisten = \"x\"\nio = \"y\"\n[timeouts]\nconnect = \"z\"\n[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 0\n",
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "server.listen",
        "server.io",
        "timeouts.connect",
        "backends[0].weight",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let shown = ConfigErrors(errors).to_string();
    assert_eq!(shown.lines().count(), 4);
    assert!(shown.lines().all(|l| l.starts_with("t.toml: ")));
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_overrides_apply() {
    let c = parse(
        ONE_BACKEND,
        "t.toml",
        env(&[
            ("RINGLB_BALANCER_STRATEGY", "least-conn"),
            ("RINGLB_SERVER_LISTEN", ":9000"),
            ("RINGLB_SERVER_MAX_CONNECTIONS", "10"),
            ("RINGLB_TIMEOUTS_BACKEND_RESPONSE", "5s"),
            ("RINGLB_LOGGING_LEVEL", "debug"),
            ("RINGLB_LOG", "ignored"),
            ("RINGLB_TEST_ANYTHING", "ignored"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.clusters[0].balancer.strategy, Strategy::LeastConn);
    assert_eq!(c.listeners[0].address, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(c.server.max_connections, 10);
    assert_eq!(c.timeouts.backend_response, Duration::from_secs(5));
    assert_eq!(c.logging.level, LogLevel::Debug);
}

#[test]
fn every_overridable_key_exists_in_the_file_format() {
    for (section, keys) in OVERRIDABLE {
        for (key, kind) in *keys {
            let value = match kind {
                Kind::Integer => "1",
                Kind::Text => "x",
                Kind::Boolean => "true",
            };
            let name = format!("RINGLB_{}_{}", section.to_uppercase(), key.to_uppercase());
            let result = parse(ONE_BACKEND, "t.toml", env(&[(&name, value)]));
            if let Err(errors) = result {
                assert!(
                    errors.0.iter().all(|e| !e.message.contains("unknown key")
                        && !e.message.contains("not a known setting")),
                    "{name}: {errors}"
                );
            }
        }
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let errors = parse(ONE_BACKEND, "t.toml", env(&[("RINGLB_SERVER_SHARDS", "x")]))
        .unwrap_err()
        .0;
    assert_eq!(errors[0].file, "env RINGLB_SERVER_SHARDS");
    assert_eq!(errors[0].key, "server.shards");
    assert!(errors[0].message.contains("expected an integer"));
    let errors = parse(
        ONE_BACKEND,
        "t.toml",
        env(&[("RINGLB_SERVER_COLOUR", "red")]),
    )
    .unwrap_err()
    .0;
    assert_eq!(errors[0].file, "env RINGLB_SERVER_COLOUR");
    assert!(errors[0].message.contains("not a known setting"));
    let errors = parse(ONE_BACKEND, "t.toml", env(&[("RINGLB_BACKENDS_NAME", "x")]))
        .unwrap_err()
        .0;
    assert_eq!(errors[0].file, "env RINGLB_BACKENDS_NAME");
}

#[test]
fn validate_applies_to_configs_built_in_code() {
    let mut c = Config::default();
    assert!(c.validate().is_err(), "no backends");
    c.clusters[0].backends.push(BackendConfig {
        name: "a".into(),
        address: "127.0.0.1:1".parse().unwrap(),
        weight: 0,
    });
    let errors = c.validate().unwrap_err().0;
    assert_eq!(errors[0].key, "backends[0].weight");
}

#[test]
fn status_ranges() {
    assert_eq!(parse_status_range("200-399"), Ok(200..=399));
    assert_eq!(parse_status_range("204"), Ok(204..=204));
    for bad in ["", "abc", "399-200", "99", "200-600", "2xx"] {
        assert!(parse_status_range(bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------
// The full form: listeners, routes and clusters.

/// Two listeners, three routes, two clusters: valid.
const FULL: &str = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:8080"

[[listeners]]
name = "internal"
address = "127.0.0.1:8081"

[[routes]]
listener = "web"
host = "API.example.com"
path_prefix = "/v1"
methods = ["GET", "POST"]
headers = { X-Tenant = "blue" }
cluster = "api"

[[routes]]
name = "static"
listener = "web"
path_prefix = "/static"
strip_prefix = true
set_request_headers = { X-Served-By = "ringlb" }
remove_request_headers = ["Cookie"]
cluster = "static"

[[routes]]
listener = "internal"
cluster = "api"

[[clusters]]
name = "api"
strategy = "least-conn"
health_check = { kind = "tcp", interval = "1s" }
retry = { max_retries = 1 }
timeouts = { connect = "500ms" }
backends = [
  { name = "api1", address = "127.0.0.1:9001", weight = 2 },
  { name = "api2", address = "127.0.0.1:9002" },
]

[[clusters]]
name = "static"
strategy = "consistent-hash"
hash_key = "path"
backends = [ { name = "s1", address = "127.0.0.1:9001" } ]
"#;

/// `FULL` with `from` replaced by `to`.
fn full_with(from: &str, to: &str) -> String {
    assert!(FULL.contains(from), "{from:?} is not in FULL");
    FULL.replacen(from, to, 1)
}

#[test]
fn the_full_form_parses() {
    let c = parse(FULL, "t.toml", no_env()).unwrap();
    assert_eq!(c.form, Form::Full);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[1].name, "internal");
    assert_eq!(c.listeners[1].address, "127.0.0.1:8081".parse().unwrap());
    let api = &c.routes[0];
    assert_eq!(api.name, "web-1", "a route without a name is LISTENER-N");
    assert_eq!(
        api.host.as_deref(),
        Some("api.example.com"),
        "hosts are lower-cased"
    );
    assert_eq!(api.path, Some(PathRule::Prefix("/v1".into())));
    assert_eq!(api.methods, ["GET", "POST"]);
    assert_eq!(api.headers, [("x-tenant".to_string(), "blue".to_string())]);
    let stat = &c.routes[1];
    assert_eq!(stat.name, "static");
    assert!(stat.strip_prefix);
    assert_eq!(
        stat.set_request_headers,
        [("x-served-by".to_string(), "ringlb".to_string())]
    );
    assert_eq!(stat.remove_request_headers, ["cookie"]);
    assert_eq!(c.routes[2].name, "internal-1");
    let cluster = c.cluster("api").unwrap();
    assert_eq!(cluster.balancer.strategy, Strategy::LeastConn);
    assert_eq!(cluster.health_check.kind, CheckType::Tcp);
    assert_eq!(cluster.health_check.interval, Duration::from_secs(1));
    assert_eq!(cluster.retry.max_retries, 1);
    assert_eq!(cluster.timeouts.connect, Some(Duration::from_millis(500)));
    assert_eq!(cluster.timeouts.backend_response, None);
    assert_eq!(cluster.backends[0].weight, 2);
    let stat = c.cluster("static").unwrap();
    assert_eq!(stat.balancer.hash_key, HashKey::Path);
    // The same address in two clusters under different names is fine.
    assert_eq!(stat.backends[0].address, cluster.backends[0].address);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_short_form_is_one_listener_one_cluster_one_catch_all_route() {
    let c = parse(
        &format!(
            "[server]\nlisten = \"127.0.0.1:81\"\n[balancer]\nstrategy = \"p2c\"\n{ONE_BACKEND}"
        ),
        "t.toml",
        no_env(),
    )
    .unwrap();
    assert_eq!(c.form, Form::Short);
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].name, DEFAULT_NAME);
    assert_eq!(c.listeners[0].address, "127.0.0.1:81".parse().unwrap());
    assert_eq!(
        c.routes,
        [RouteConfig::catch_all("default", "default", "default")]
    );
    assert_eq!(c.clusters.len(), 1);
    assert_eq!(c.clusters[0].name, DEFAULT_NAME);
    assert_eq!(c.clusters[0].balancer.strategy, Strategy::P2c);
}

#[test]
fn mixing_the_forms_says_how_to_convert() {
    assert_error(
        &format!("{FULL}\n[balancer]\nstrategy = \"p2c\"\n"),
        "balancer",
        "move its keys into each [[clusters]] entry",
    );
    assert_error(
        &format!("[server]\nlisten = \"127.0.0.1:1\"\n{FULL}"),
        "server.listen",
        "give each listener its address in [[listeners]]",
    );
    assert_error(
        &format!("{FULL}\n{ONE_BACKEND}"),
        "backends",
        "cannot be mixed",
    );
    // A short-form override in the environment says so too.
    let errors = parse(FULL, "t.toml", env(&[("RINGLB_BALANCER_STRATEGY", "p2c")]))
        .expect_err("refused")
        .0;
    assert!(
        errors
            .iter()
            .any(|e| e.file == "env RINGLB_BALANCER_STRATEGY"
                && e.key == "balancer.strategy"
                && e.message.contains("short form only")),
        "{errors:?}"
    );
    // Global sections stay global.
    let c = parse(
        &format!("[timeouts]\nconnect = \"1s\"\n[logging]\nlevel = \"warn\"\n{FULL}"),
        "t.toml",
        no_env(),
    )
    .unwrap();
    assert_eq!(c.timeouts.connect, Duration::from_secs(1));
}

#[test]
fn cluster_keys_are_named_where_they_are() {
    assert_error(
        &full_with("strategy = \"least-conn\"", "strategy = \"fastest\""),
        "clusters[0].strategy",
        "expected one of",
    );
    assert_error(
        &full_with("interval = \"1s\"", "interval = \"soon\""),
        "clusters[0].health_check.interval",
        "expected a duration",
    );
    assert_error(
        &full_with("max_retries = 1", "max_retries = 9"),
        "clusters[0].retry.max_retries",
        "at most 7",
    );
    assert_error(
        &full_with("connect = \"500ms\"", "connect = \"0s\""),
        "clusters[0].timeouts.connect",
        "greater than zero",
    );
    assert_error(
        &full_with("weight = 2", "weight = 0"),
        "clusters[0].backends[0].weight",
        "between 1 and 1000",
    );
    assert_error(
        &full_with(
            "hash_key = \"path\"",
            "hash_key = \"path\"\nvirtual_nodes = 0",
        ),
        "clusters[1].virtual_nodes",
        "between 1 and 1000",
    );
    assert_error(
        &full_with("name = \"s1\"", "name = \"s1\", port = 1"),
        "clusters[1].backends[0].port",
        "unknown key",
    );
    assert_error(
        &full_with(
            "[[clusters]]\nname = \"static\"",
            "[[clusters]]\nname = \"bad name\"",
        ),
        "clusters[1].name",
        "A-Z a-z 0-9",
    );
}

#[test]
fn cross_references_are_checked() {
    assert_error(
        &full_with("cluster = \"static\"", "cluster = \"nope\""),
        "routes[1].cluster",
        "no cluster is named \"nope\"",
    );
    assert_error(
        &full_with("listener = \"internal\"", "listener = \"nope\""),
        "routes[2].listener",
        "no listener is named \"nope\"",
    );
    // The internal listener loses its only route.
    assert_error(
        &full_with("listener = \"internal\"", "listener = \"web\""),
        "listeners[1].name",
        "has no route",
    );
    assert_error(
        &full_with("name = \"internal\"", "name = \"web\""),
        "listeners[1].name",
        "already the name of listeners[0]",
    );
    assert_error(
        &full_with(
            "address = \"127.0.0.1:8081\"",
            "address = \"127.0.0.1:8080\"",
        ),
        "listeners[1].address",
        "already the address of listeners[0]",
    );
    // All addresses and one of them, on the same port, overlap.
    assert_error(
        &full_with("address = \"127.0.0.1:8081\"", "address = \"0.0.0.0:8080\""),
        "listeners[1].address",
        "already the address of listeners[0]",
    );
    assert_error(
        &full_with(
            "[[clusters]]\nname = \"static\"",
            "[[clusters]]\nname = \"api\"",
        ),
        "clusters[1].name",
        "already the name of clusters[0]",
    );
    // Backend names are unique across the whole file.
    assert_error(
        &full_with("name = \"s1\"", "name = \"api1\""),
        "clusters[1].backends[0].name",
        "already the name of clusters[0].backends[0]",
    );
    assert_error(
        &full_with(
            "name = \"api2\", address = \"127.0.0.1:9002\"",
            "name = \"api2\", address = \"127.0.0.1:9001\"",
        ),
        "clusters[0].backends[1].address",
        "already the address of clusters[0].backends[0]",
    );
    assert_error(
        &full_with("name = \"static\"\nlistener", "name = \"web-1\"\nlistener"),
        "routes[1].name",
        "already the name of routes[0]",
    );
    assert_error(
        &full_with(
            "[[listeners]]\nname = \"web\"",
            "[admin]\nlisten = \"127.0.0.1:8080\"\n[[listeners]]\nname = \"web\"",
        ),
        "admin.listen",
        "must differ from the address of listener web",
    );
    assert_error(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:1\"\n[[routes]]\ncluster = \"c\"\n",
        "clusters",
        "at least one [[clusters]]",
    );
    assert_error(
        &full_with(
            "backends = [ { name = \"s1\", address = \"127.0.0.1:9001\" } ]",
            "backends = []",
        ),
        "clusters[1].backends",
        "at least one backend",
    );
}

#[test]
fn routes_are_checked() {
    let route = |fields: &str| {
        format!(
            "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:1\"\n[[routes]]\ncluster = \"c\"\n{fields}\n\
             [[clusters]]\nname = \"c\"\nbackends = [ {{ name = \"b\", address = \"127.0.0.1:2\" }} ]\n"
        )
    };
    // With one listener, a route may leave it out.
    let c = parse(&route(""), "t.toml", no_env()).unwrap();
    assert_eq!(c.routes[0].listener, "l");
    assert_error(
        &route("path = \"/a\"\npath_prefix = \"/b\""),
        "routes[0].path_prefix",
        "not both",
    );
    assert_error(&route("path = \"a\""), "routes[0].path", "starting with /");
    assert_error(
        &route("path_prefix = \"/a?b\""),
        "routes[0].path_prefix",
        "no query",
    );
    assert_error(
        &route("strip_prefix = true"),
        "routes[0].strip_prefix",
        "needs a path_prefix",
    );
    assert_error(
        &route("host = \"a b\""),
        "routes[0].host",
        "expected a host",
    );
    assert_error(
        &route("host = \"a.*.com\""),
        "routes[0].host",
        "expected a host",
    );
    let c = parse(&route("host = \"*.Example.com\""), "t.toml", no_env()).unwrap();
    assert_eq!(c.routes[0].host.as_deref(), Some("*.example.com"));
    assert_error(
        &route("methods = [\"G E T\"]"),
        "routes[0].methods[0]",
        "a method",
    );
    let c = parse(&route("methods = [\"get\"]"), "t.toml", no_env()).unwrap();
    assert_eq!(c.warnings[0].key, "routes[0].methods[0]");
    assert!(c.warnings[0].message.contains("did you mean \"GET\""));
    assert_error(
        &route("headers = { \"bad name\" = \"x\" }"),
        "routes[0].headers.bad name",
        "header name",
    );
    assert_error(
        &route("headers = { x = \"a\\nb\" }"),
        "routes[0].headers.x",
        "visible characters",
    );
    assert_error(
        &route("set_request_headers = { Content-Length = \"5\" }"),
        "routes[0].set_request_headers.content-length",
        "cannot set it",
    );
    assert_error(
        &route("remove_request_headers = [\"Host\"]"),
        "routes[0].remove_request_headers[0]",
        "cannot remove it",
    );
    assert_error(&route("name = \"\""), "routes[0].name", "A-Z a-z 0-9");
    // With several listeners, each route names its own.
    assert_error(
        "[[listeners]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[listeners]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n[[routes]]\ncluster = \"c\"\n",
        "routes[0].listener",
        "names its listener",
    );
}

#[test]
fn listeners_are_checked() {
    let listener = |fields: &str| {
        format!(
            "[[listeners]]\nname = \"l\"\n{fields}\n[[routes]]\ncluster = \"c\"\n\
             [[clusters]]\nname = \"c\"\nbackends = [ {{ name = \"b\", address = \"127.0.0.1:2\" }} ]\n"
        )
    };
    assert_error(&listener(""), "listeners[0].address", "missing");
    assert_error(
        &listener("address = \"x\""),
        "listeners[0].address",
        "IP:port",
    );
    assert_error(
        &listener("address = \"127.0.0.1:1\"\nprotocol = \"udp\""),
        "listeners[0].protocol",
        "expected \"http\", \"h2c\" or \"tcp\"",
    );
    assert_error(
        "[[routes]]\ncluster = \"c\"\n[[clusters]]\nname = \"c\"\nbackends = [ { name = \"b\", address = \"127.0.0.1:2\" } ]\n",
        "listeners",
        "at least one [[listeners]]",
    );
}

#[test]
fn routes_that_never_match_and_unused_clusters_are_warnings() {
    let text = format!(
        "{FULL}\n[[routes]]\nname = \"again\"\nlistener = \"internal\"\ncluster = \"static\"\n\
         [[clusters]]\nname = \"spare\"\nbackends = [ {{ name = \"x1\", address = \"127.0.0.1:9009\" }} ]\n"
    );
    let c = parse(&text, "t.toml", no_env()).expect("warnings do not refuse a file");
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["routes[3]", "clusters[2]"], "{:?}", c.warnings);
    assert!(c.warnings[0].message.contains("can never match"));
    assert!(c.warnings[1]
        .message
        .contains("no route or tcp listener uses"));
    assert!(c.summary().contains("warning: t.toml: routes[3]"));
}

#[test]
fn every_error_in_the_full_form_is_reported() {
    // A type error, an unknown key, a bad value and a broken reference, in one file.
    let text = FULL
        .replacen("address = \"127.0.0.1:8081\"", "address = 8081", 1)
        .replacen("methods = [\"GET\", \"POST\"]", "method = \"GET\"", 1)
        .replacen("strategy = \"least-conn\"", "strategy = \"fastest\"", 1)
        .replacen("cluster = \"static\"", "cluster = \"nope\"", 1);
    let errors = errors_of(&text);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "listeners[1].address",
        "routes[0].method",
        "clusters[0].strategy",
        "routes[1].cluster",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(errors.len(), 4, "one error per key: {errors:?}");
}

#[test]
fn the_admin_api_needs_a_token_off_loopback() {
    assert_error(
        &format!("[admin]\nlisten = \"0.0.0.0:9900\"\n{ONE_BACKEND}"),
        "admin.token",
        "not a loopback address",
    );
    assert_error(
        &format!("[admin]\nlisten = \"127.0.0.1:9900\"\ntoken = \"short\"\n{ONE_BACKEND}"),
        "admin.token",
        "at least 16",
    );
    let c = parse(
        &format!("[admin]\nlisten = \"0.0.0.0:9900\"\ntoken = \"0123456789abcdef\"\nhosts = [\"lb.internal\"]\n{ONE_BACKEND}"),
        "t.toml",
        no_env(),
    )
    .unwrap();
    assert_eq!(c.admin.hosts, ["lb.internal"]);
    // The environment can give the token.
    let c = parse(
        &format!("[admin]\nlisten = \"0.0.0.0:9900\"\n{ONE_BACKEND}"),
        "t.toml",
        env(&[("RINGLB_ADMIN_TOKEN", "from-the-environment")]),
    )
    .unwrap();
    assert_eq!(c.admin.token.as_deref(), Some("from-the-environment"));
    assert_error(
        &format!("[admin]\nhosts = [\"a b\"]\n{ONE_BACKEND}"),
        "admin.hosts[0]",
        "host name",
    );
}

#[test]
fn h2c_listeners_are_routed_and_refuse_tls() {
    let file = |extra: &str| {
        format!(
            "[[listeners]]\nname = \"h2\"\naddress = \"127.0.0.1:8081\"\nprotocol = \"h2c\"\n{extra}\n\
             [[routes]]\nlistener = \"h2\"\ncluster = \"app\"\n\
             [[clusters]]\nname = \"app\"\nbackends = [ {{ name = \"a1\", address = \"127.0.0.1:8082\" }} ]\n"
        )
    };
    let c = parse(&file(""), "t.toml", no_env()).expect("valid");
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::H2c);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_error(
        &file("tls = { certificates = [ { cert = \"c.pem\", key = \"k.pem\" } ] }"),
        "listeners[0].tls",
        "h2c is HTTP/2 without TLS",
    );
    // Like an http listener, it needs a route and names no cluster itself.
    assert_error(
        &file("cluster = \"app\""),
        "listeners[0].cluster",
        "only tcp listeners name a cluster",
    );
}

/// A file with a TCP listener `pg` on cluster `db`, and `extra` appended to the
/// cluster.
fn tcp_file(listener_extra: &str, cluster_extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"pg\"\naddress = \"127.0.0.1:5432\"\nprotocol = \"tcp\"\n{listener_extra}\n\
         [[clusters]]\nname = \"db\"\n{cluster_extra}\nbackends = [ {{ name = \"db1\", address = \"127.0.0.1:5433\" }} ]\n"
    )
}

#[test]
fn tcp_listeners_name_one_cluster_and_have_no_routes() {
    let c = parse(&tcp_file("cluster = \"db\"", ""), "t.toml", no_env()).expect("valid");
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::Tcp);
    assert_eq!(c.listeners[0].cluster.as_deref(), Some("db"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.summary().contains("tcp -> db"), "{}", c.summary());
    assert_error(&tcp_file("", ""), "listeners[0].cluster", "missing");
    assert_error(
        &tcp_file("cluster = \"nope\"", ""),
        "listeners[0].cluster",
        "no cluster is named \"nope\"",
    );
    let with_route = format!(
        "{}[[routes]]\nlistener = \"pg\"\ncluster = \"db\"\n",
        tcp_file("cluster = \"db\"", "")
    );
    assert_error(&with_route, "listeners[0].protocol", "has no routes");
    // An HTTP listener chooses clusters by its routes.
    assert_error(
        &full_with("name = \"web\"", "name = \"web\"\ncluster = \"api\""),
        "listeners[0].cluster",
        "only tcp listeners",
    );
}

#[test]
fn a_tcp_cluster_cannot_need_http() {
    for (cluster, why) in [
        ("strategy = \"least-response\"", "times HTTP responses"),
        (
            "strategy = \"consistent-hash\"\nhash_key = \"header:x-user\"",
            "reads the HTTP request",
        ),
        (
            "sticky = { cookie = \"lb\", secret = \"0123456789abcdef0123\" }",
            "HTTP cookie",
        ),
    ] {
        assert_error(
            &tcp_file("cluster = \"db\"", cluster),
            "listeners[0].cluster",
            why,
        );
    }
    let hashed = tcp_file(
        "cluster = \"db\"",
        "strategy = \"consistent-hash\"\nhash_key = \"client-ip\"",
    );
    parse(&hashed, "t.toml", no_env()).expect("client-ip hashing needs no HTTP");
}

#[test]
fn tunnel_idle_is_a_timeout() {
    let text = format!("[timeouts]\ntunnel_idle = \"90s\"\n{ONE_BACKEND}");
    let c = parse(&text, "t.toml", no_env()).expect("valid");
    assert_eq!(c.timeouts.tunnel_idle, Duration::from_secs(90));
    assert_eq!(
        Config::default().timeouts.tunnel_idle,
        Duration::from_secs(3600)
    );
    assert_error(
        &format!("[timeouts]\ntunnel_idle = \"0s\"\n{ONE_BACKEND}"),
        "timeouts.tunnel_idle",
        "",
    );
}

#[test]
fn proxy_protocol_settings() {
    let listener = |extra: &str| {
        format!(
            "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\n{extra}\n\
             [[routes]]\ncluster = \"api\"\n\
             [[clusters]]\nname = \"api\"\nupstream = {{ send_proxy = \"v2\" }}\n\
             health_check = {{ kind = \"tcp\", send_proxy = true }}\n\
             backends = [ {{ name = \"a1\", address = \"127.0.0.1:9001\" }} ]\n"
        )
    };
    let c = parse(
        &listener("accept_proxy = true\nproxy_trusted = [\"10.0.0.0/8\", \"2001:db8::1\"]"),
        "t.toml",
        no_env(),
    )
    .expect("valid");
    let l = &c.listeners[0];
    assert!(l.accept_proxy);
    assert_eq!(
        l.proxy_trusted,
        [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("2001:db8::1/128").unwrap()
        ]
    );
    assert_eq!(c.clusters[0].upstream.send_proxy, Some(ProxyVersion::V2));
    assert!(c.clusters[0].health_check.send_proxy);
    assert_error(
        &listener("accept_proxy = true"),
        "listeners[0].proxy_trusted",
        "accept_proxy needs",
    );
    assert_error(
        &listener("accept_proxy = true\nproxy_trusted = [\"10.0.0.0/33\"]"),
        "listeners[0].proxy_trusted[0]",
        "prefix length of 0 to 32",
    );
    assert_error(
        &listener("accept_proxy = true\nproxy_trusted = [\"ten\"]"),
        "listeners[0].proxy_trusted[0]",
        "expected an address",
    );
    let unused = parse(
        &listener("proxy_trusted = [\"10.0.0.0/8\"]"),
        "t.toml",
        no_env(),
    )
    .expect("a warning only");
    assert!(unused.warnings[0].message.contains("without accept_proxy"));
    assert_error(
        &full_with(
            "name = \"api\"\n",
            "name = \"api\"\nupstream = { send_proxy = \"v3\" }\n",
        ),
        "clusters[0].upstream.send_proxy",
        "expected one of v1, v2",
    );
    assert_error(
        &full_with(
            "strategy = \"consistent-hash\"\n",
            "strategy = \"consistent-hash\"\nhealth_check = { kind = \"tcp\", send_proxy = true }\n",
        ),
        "clusters[1].health_check.send_proxy",
        "needs upstream.send_proxy",
    );
}

#[test]
fn networks_contain_their_addresses() {
    let net = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(net.contains("10.1.200.3".parse().unwrap()));
    assert!(!net.contains("10.2.0.1".parse().unwrap()));
    // An IPv4 client seen through a dual-stack socket.
    assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
    assert!(!net.contains("2001:db8::1".parse().unwrap()));
    // Host bits are cleared; /0 holds everything of its family.
    assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("192.0.2.1".parse().unwrap()));
    let v6 = Cidr::parse("2001:db8::/32").unwrap();
    assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
    assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    for bad in [
        "10.0.0.0/",
        "10.0.0.0/08",
        "10.0.0.0/-1",
        "::/129",
        "10.0.0/8",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn listener_tls_settings() {
    let listener = |tls: &str| {
        format!(
            "[[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:8443\"\ntls = {tls}\n\
             [[routes]]\ncluster = \"api\"\n\
             [[clusters]]\nname = \"api\"\n\
             backends = [ {{ name = \"a1\", address = \"127.0.0.1:9001\" }} ]\n"
        )
    };
    let c = parse(
        &listener(
            "{ certificates = [ { cert = \"/etc/a.pem\", key = \"/etc/a.key\" } ], \
             default = \"a.example\", min_version = \"1.3\" }",
        ),
        "t.toml",
        no_env(),
    )
    .expect("valid");
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates,
        [CertificateFiles {
            cert: "/etc/a.pem".into(),
            key: "/etc/a.key".into()
        }]
    );
    assert_eq!(tls.default.as_deref(), Some("a.example"));
    assert_eq!(tls.min_version, TlsVersion::V1_3);
    assert_eq!(tls.alpn, ["http/1.1"]);
    assert!(c.warnings.is_empty());

    let no_default = parse(
        &listener("{ certificates = [ { cert = \"a.pem\", key = \"a.key\" } ] }"),
        "t.toml",
        no_env(),
    )
    .expect("a warning only");
    assert_eq!(no_default.warnings[0].key, "listeners[0].tls.default");

    for (tls, key, message) in [
        ("{ }", "listeners[0].tls.certificates", "at least one"),
        (
            "{ certificates = [ { cert = \"a.pem\" } ] }",
            "listeners[0].tls.certificates[0].key",
            "missing",
        ),
        (
            "{ certificates = [ { cert = \"a.pem\", key = \"a.key\" } ], min_version = \"1.1\" }",
            "listeners[0].tls.min_version",
            "expected \"1.2\" or \"1.3\"",
        ),
        (
            "{ certificates = [ { cert = \"a.pem\", key = \"a.key\" } ], alpn = [\"h2\", \"spdy/3\"] }",
            "listeners[0].tls.alpn[1]",
            "expected \"h2\" or \"http/1.1\", got \"spdy/3\"",
        ),
        (
            "{ certificates = [ { cert = \"a.pem\", key = \"a.key\" } ], ciphers = \"x\" }",
            "listeners[0].tls.ciphers",
            "unknown key",
        ),
    ] {
        assert_error(&listener(tls), key, message);
    }
}

#[test]
fn cluster_tls_settings() {
    let cluster = |tls: &str| {
        full_with(
            "name = \"api\"\n",
            &format!("name = \"api\"\ntls = {tls}\n"),
        )
    };
    let text =
        cluster("{ server_name = \"api.internal\", ca = \"/etc/ca.pem\", cert = \"c.pem\", key = \"c.key\" }");
    let c = parse(&text, "t.toml", no_env()).expect("valid");
    let tls = c.clusters[0].tls.as_ref().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
    assert!(tls.verify);
    assert_eq!(
        tls.client_certificate,
        Some(CertificateFiles {
            cert: "c.pem".into(),
            key: "c.key".into()
        })
    );
    let unverified = parse(&cluster("{ verify = false }"), "t.toml", no_env()).expect("a warning");
    assert_eq!(unverified.warnings[0].key, "clusters[0].tls.verify");
    for (tls, key, message) in [
        ("{ }", "clusters[0].tls.ca", "no built-in roots"),
        (
            "{ ca = \"ca.pem\", cert = \"c.pem\" }",
            "clusters[0].tls.key",
            "missing",
        ),
        (
            "{ ca = \"ca.pem\", server_name = \"not a name\" }",
            "clusters[0].tls.server_name",
            "expected a DNS name",
        ),
    ] {
        assert_error(&cluster(tls), key, message);
    }
}

#[test]
fn upstream_http2_settings() {
    let cluster = |upstream: &str, extra: &str| {
        format!(
            "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\n\
             [[routes]]\ncluster = \"grpc\"\n\
             [[clusters]]\nname = \"grpc\"\nupstream = {{ {upstream} }}\n{extra}\
             backends = [ {{ name = \"g1\", address = \"127.0.0.1:9001\" }} ]\n"
        )
    };
    let c = parse(
        &cluster("protocol = \"h2\", h2_max_streams = 50", ""),
        "t.toml",
        no_env(),
    )
    .expect("valid");
    let u = &c.clusters[0].upstream;
    assert_eq!((u.protocol, u.h2_max_streams), (UpstreamProtocol::H2, 50));
    // HTTP/1.1 probes may not reach an HTTP/2-only backend: TCP by default.
    assert_eq!(c.clusters[0].health_check.kind, CheckType::Tcp);
    let c = parse(&cluster("", ""), "t.toml", no_env()).expect("valid");
    assert_eq!(c.clusters[0].upstream.protocol, UpstreamProtocol::Http1);
    assert_eq!(c.clusters[0].health_check.kind, CheckType::Http);

    assert_error(
        &cluster("protocol = \"h3\"", ""),
        "clusters[0].upstream.protocol",
        "expected one of http1, h2",
    );
    assert_error(
        &cluster("protocol = \"h2\"", "health_check = { kind = \"http\" }\n"),
        "clusters[0].health_check.kind",
        "speak HTTP/1.1",
    );
    assert_error(
        &cluster("protocol = \"h2\", send_proxy = \"v1\"", ""),
        "clusters[0].upstream.send_proxy",
        "cannot go with upstream.protocol = \"h2\"",
    );
    let c = parse(
        &cluster(
            "protocol = \"h2\"",
            "health_check = { kind = \"grpc\", service = \"app.Greeter\" }\n",
        ),
        "t.toml",
        no_env(),
    )
    .expect("valid");
    let hc = &c.clusters[0].health_check;
    assert_eq!(
        (hc.kind, hc.service.as_str()),
        (CheckType::Grpc, "app.Greeter")
    );
    assert_error(
        &cluster("", "health_check = { kind = \"grpc\" }\n"),
        "clusters[0].health_check.kind",
        "need upstream.protocol = \"h2\"",
    );
    assert_error(
        &cluster("protocol = \"h2\", h2_max_streams = 0", ""),
        "clusters[0].upstream.h2_max_streams",
        "between 1 and 1000",
    );
}
