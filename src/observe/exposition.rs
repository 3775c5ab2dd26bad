//! `exposition`: the wire formats of the admin endpoints.
//!
//! Owns how a `control::Report` is written as JSON for `/stats` (documented in the
//! README; fields are only ever added) and as Prometheus text exposition format
//! 0.0.4 for `/metrics`. Called by the admin thread; pure formatting, no I/O.

use std::fmt::Write as _;

use crate::control::breaker::BreakerState;
use crate::control::handle::{BackendView, ClusterView, Report};
use crate::observe::h2::{H2Totals, H2_FLOODS, H2_REASONS, RESET_WAYS};
use crate::observe::logging::escape_json;
use crate::observe::stats::{LatencySummary, ERROR_KINDS};
use crate::observe::tls::{TlsTotals, TLS_CIPHERS, TLS_FAILURES, TLS_SNI, TLS_VERSIONS};
use crate::observe::tunnels::{TunnelCounters, TunnelTotals, DURATION_BUCKETS, TUNNEL_ENDS};

/// `/stats`: one JSON object.
pub fn stats_json(report: &Report) -> String {
    let mut out = String::with_capacity(4096);
    let t = &report.totals;
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"uptime_secs\":{},\"io_driver\":\"{}\",\"shards\":{},\"strategy\":\"{}\",",
        env!("CARGO_PKG_VERSION"),
        report.uptime.as_secs(),
        report.io_driver,
        report.shards,
        report.strategy
    );
    match report.shard {
        Some(s) => {
            let _ = write!(out, "\"shard\":{s},");
        }
        None => out.push_str("\"shard\":null,"),
    }
    let _ = write!(out, "\"window_secs\":{},", report.window.as_secs());
    let [c1, c2, c3, c4, c5] = t.responses_by_class();
    let _ = write!(
        out,
        "\"totals\":{{\"connections_accepted\":{},\"connections_refused\":{},\"proxy_untrusted\":{},\"proxy_invalid\":{},\"accept_errors\":{},\"active_connections\":{},\
         \"parked_connections\":{},\"requests\":{},\"responses\":{{\"1xx\":{c1},\"2xx\":{c2},\"3xx\":{c3},\"4xx\":{c4},\"5xx\":{c5}}},\
         \"status_codes\":{},\"errors\":{},",
        t.connections_accepted,
        t.connections_refused,
        t.proxy_untrusted,
        t.proxy_invalid,
        t.accept_errors,
        t.active_connections,
        t.parked_connections,
        t.requests,
        status_codes_json(&t.status_codes()),
        errors_json(&t.errors),
    );
    let _ = write!(
        out,
        "\"client_errors\":{},\"upstream_errors\":{},\"internal_errors\":{},\
         \"upstream_connects\":{},\"upstream_reuses\":{},\"retries\":{},\"retries_over_budget\":{},\"early_responses\":{},\
         \"active_upstream_requests\":{},\"pooled_idle_connections\":{},\"bytes_in\":{},\"bytes_out\":{},\
         \"reports_dropped\":{},\"access_log_dropped\":{}}},",
        t.client_errors,
        t.upstream_errors,
        t.internal_errors,
        t.upstream_connects,
        t.upstream_reuses,
        t.upstream_retries,
        t.retries_over_budget,
        t.early_responses,
        t.active_upstream_requests,
        t.pooled_idle_connections,
        t.bytes_in,
        t.bytes_out,
        t.reports_dropped,
        t.access_log_dropped,
    );
    out.push_str("\"latency\":");
    latency_json(&mut out, Some(report.latency));
    out.push_str(",\"tunnels\":");
    tunnel_totals_json(&mut out, &t.tunnels);
    out.push_str(",\"tls\":");
    tls_json(&mut out, &t.tls);
    out.push_str(",\"http2\":");
    h2_json(&mut out, &t.h2);
    out.push_str(",\"certificates\":[");
    for (i, c) in report.certificates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"listener\":");
        string_json(&mut out, &c.listener);
        out.push_str(",\"file\":");
        string_json(&mut out, &c.file);
        out.push_str(",\"names\":[");
        for (n, name) in c.names.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            string_json(&mut out, name);
        }
        let _ = write!(
            out,
            "],\"not_after\":{},\"days_left\":{}}}",
            c.not_after, c.days_left
        );
    }
    out.push_str("],\"listeners\":[");
    for (i, l) in report.listeners.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string_json(&mut out, &l.name);
        let _ = write!(
            out,
            ",\"address\":\"{}\",\"protocol\":\"{}\"}}",
            l.address, l.protocol
        );
    }
    out.push_str("],\"routes\":[");
    for (i, r) in report.routes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string_json(&mut out, &r.name);
        out.push_str(",\"listener\":");
        string_json(&mut out, &r.listener);
        out.push_str(",\"cluster\":");
        string_json(&mut out, &r.cluster);
        let _ = write!(out, ",\"requests\":{}}}", r.requests);
    }
    out.push_str("],\"clusters\":[");
    for (i, c) in report.clusters.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string_json(&mut out, &c.name);
        let _ = write!(
            out,
            ",\"strategy\":\"{}\",\"requests\":{},\"failures\":{},\"latency\":",
            c.strategy, c.requests, c.failures
        );
        latency_json(&mut out, c.latency);
        out.push('}');
    }
    out.push_str("],\"backends\":[");
    for (i, b) in report.backends.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        backend_json(&mut out, b);
    }
    out.push_str("]}\n");
    out
}

/// A JSON string.
fn string_json(out: &mut String, s: &str) {
    out.push('"');
    escape_json(s, out);
    out.push('"');
}

fn errors_json(errors: &[u64; ERROR_KINDS.len()]) -> String {
    let items: Vec<String> = ERROR_KINDS
        .iter()
        .zip(errors)
        .map(|(k, n)| format!("\"{k}\":{n}"))
        .collect();
    format!("{{{}}}", items.join(","))
}

fn status_codes_json(codes: &[(u16, u64)]) -> String {
    let items: Vec<String> = codes.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect();
    format!("{{{}}}", items.join(","))
}

fn summary_json(out: &mut String, s: &LatencySummary) {
    let _ = write!(
        out,
        "{{\"count\":{},\"p50\":{:.3},\"p95\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3},\"mean\":{:.3}}}",
        s.count, s.p50, s.p95, s.p99, s.p999, s.max, s.mean
    );
}

fn latency_json(out: &mut String, latency: Option<(LatencySummary, LatencySummary)>) {
    match latency {
        Some((window, since_start)) => {
            out.push_str("{\"window\":");
            summary_json(out, &window);
            out.push_str(",\"since_start\":");
            summary_json(out, &since_start);
            out.push('}');
        }
        None => out.push_str("null"),
    }
}

/// `{"opened":..,"active":..,"bytes_up":..,"bytes_down":..}`.
fn tunnel_counts_json(out: &mut String, t: &TunnelCounters) {
    let _ = write!(
        out,
        "{{\"opened\":{},\"active\":{},\"bytes_up\":{},\"bytes_down\":{}",
        t.opened, t.active, t.bytes_up, t.bytes_down
    );
}

/// The shard-wide tunnel figures: counts, upgrades, endings, durations.
fn tunnel_totals_json(out: &mut String, t: &TunnelTotals) {
    tunnel_counts_json(out, &t.counts);
    let _ = write!(out, ",\"upgraded\":{},\"ends\":{{", t.upgraded);
    for (i, (name, n)) in TUNNEL_ENDS.iter().zip(t.ends).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{n}");
    }
    out.push_str("},\"duration_buckets\":{");
    for (i, n) in t.durations.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match DURATION_BUCKETS.get(i) {
            Some(bound) => {
                let _ = write!(out, "\"{bound}\":{n}");
            }
            None => {
                let _ = write!(out, "\"+Inf\":{n}");
            }
        }
    }
    let _ = write!(
        out,
        "}},\"duration_sum_seconds\":{}}}",
        t.duration_sum_micros as f64 / 1e6
    );
}

/// `{"a":1,"b":2}` from names and counts.
fn named_counts_json(out: &mut String, names: &[&str], counts: &[u64]) {
    out.push('{');
    for (i, (name, n)) in names.iter().zip(counts).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{n}");
    }
    out.push('}');
}

fn tls_json(out: &mut String, t: &TlsTotals) {
    let _ = write!(
        out,
        "{{\"handshakes\":{{\"full\":{},\"resumed\":{}}},\"versions\":",
        t.full, t.resumed
    );
    named_counts_json(out, &TLS_VERSIONS, &t.versions);
    out.push_str(",\"ciphers\":");
    named_counts_json(out, &TLS_CIPHERS, &t.ciphers);
    out.push_str(",\"failures\":");
    named_counts_json(out, &TLS_FAILURES, &t.failures);
    out.push_str(",\"sni\":");
    named_counts_json(out, &TLS_SNI, &t.sni);
    out.push('}');
}

fn h2_json(out: &mut String, t: &H2Totals) {
    let _ = write!(
        out,
        "{{\"connections\":{},\"preface_failures\":{},\"streams\":{},\"floods\":{{",
        t.connections, t.preface_failures, t.streams
    );
    for (i, (flood, n)) in H2_FLOODS.iter().zip(t.floods).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\":{n}", flood.as_str());
    }
    let _ = write!(
        out,
        "}},\"upstream_connections\":{},\"upstream_streams\":{},\"resets\":{{",
        t.upstream_connections, t.upstream_streams
    );
    for (i, (way, counts)) in RESET_WAYS.iter().zip(&t.resets).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{way}\":");
        named_counts_json(out, &H2_REASONS, counts);
    }
    out.push_str("}}");
}

fn backend_json(out: &mut String, b: &BackendView) {
    let s = &b.status;
    let c = &b.counters;
    let mut name = String::new();
    escape_json(&s.name, &mut name);
    let mut cluster = String::new();
    escape_json(&s.cluster, &mut cluster);
    let _ = write!(
        out,
        "{{\"name\":\"{name}\",\"cluster\":\"{cluster}\",\"address\":\"{}\",\"weight\":{},\"effective_weight\":{},\"state\":\"{}\",\
         \"healthy\":{},\"breaker\":\"{}\",\"active_requests\":{},\"requests\":{},\"selections\":{},\
         \"failures\":{},\"retries\":{},\"pooled_idle_connections\":{},\"bytes_in\":{},\"bytes_out\":{},\
         \"status_codes\":{},\"errors\":{},\"latency\":",
        s.address,
        s.weight,
        s.effective_weight,
        s.state.as_str(),
        s.healthy,
        s.breaker.as_str(),
        c.active_requests,
        c.requests,
        c.attempts,
        c.failures,
        c.retries,
        c.pooled_idle_connections,
        c.bytes_in,
        c.bytes_out,
        status_codes_json(&c.status_codes()),
        errors_json(&c.errors),
    );
    latency_json(out, b.latency);
    out.push_str(",\"tunnels\":");
    tunnel_counts_json(out, &c.tunnels);
    out.push_str("}}");
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Starts a metric family.
fn h2_metrics(out: &mut String, t: &H2Totals) {
    scalar(
        out,
        "ringlb_h2_connections_total",
        "counter",
        "HTTP/2 client connections that sent the preface and SETTINGS.",
        t.connections,
    );
    scalar(
        out,
        "ringlb_h2_preface_failures_total",
        "counter",
        "HTTP/2 client connections whose preface was wrong or late.",
        t.preface_failures,
    );
    scalar(
        out,
        "ringlb_h2_streams_total",
        "counter",
        "HTTP/2 streams clients opened.",
        t.streams,
    );
    family(
        out,
        "ringlb_h2_floods_total",
        "counter",
        "HTTP/2 client connections closed with GOAWAY(ENHANCE_YOUR_CALM) for sending more frames of a kind per second than allowed.",
    );
    for (flood, n) in H2_FLOODS.iter().zip(t.floods) {
        let _ = writeln!(
            out,
            "ringlb_h2_floods_total{{kind=\"{}\"}} {n}",
            flood.as_str()
        );
    }
    family(
        out,
        "ringlb_h2_resets_total",
        "counter",
        "HTTP/2 streams reset, by way (from_client, to_client, from_backend) and error code.",
    );
    for (way, counts) in RESET_WAYS.iter().zip(&t.resets) {
        for (reason, n) in H2_REASONS.iter().zip(counts) {
            let _ = writeln!(
                out,
                "ringlb_h2_resets_total{{way=\"{way}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    scalar(
        out,
        "ringlb_h2_upstream_connections_total",
        "counter",
        "HTTP/2 connections opened to backends (clusters with upstream.protocol = \"h2\").",
        t.upstream_connections,
    );
    scalar(
        out,
        "ringlb_h2_upstream_streams_total",
        "counter",
        "Streams sent to HTTP/2 backends: requests, retries included.",
        t.upstream_streams,
    );
}

fn tls_metrics(out: &mut String, t: &TlsTotals) {
    family(
        out,
        "ringlb_tls_handshakes_total",
        "counter",
        "TLS handshakes with clients that succeeded, full or resumed.",
    );
    let _ = writeln!(
        out,
        "ringlb_tls_handshakes_total{{kind=\"full\"}} {}",
        t.full
    );
    let _ = writeln!(
        out,
        "ringlb_tls_handshakes_total{{kind=\"resumed\"}} {}",
        t.resumed
    );
    family(
        out,
        "ringlb_tls_sessions_total",
        "counter",
        "TLS handshakes with clients that succeeded, by version.",
    );
    for (name, n) in TLS_VERSIONS.iter().zip(t.versions) {
        let _ = writeln!(out, "ringlb_tls_sessions_total{{version=\"{name}\"}} {n}");
    }
    family(
        out,
        "ringlb_tls_cipher_suites_total",
        "counter",
        "TLS handshakes with clients that succeeded, by cipher suite.",
    );
    for (name, n) in TLS_CIPHERS.iter().zip(t.ciphers) {
        let _ = writeln!(
            out,
            "ringlb_tls_cipher_suites_total{{cipher=\"{name}\"}} {n}"
        );
    }
    family(
        out,
        "ringlb_tls_handshake_failures_total",
        "counter",
        "TLS handshakes with clients that failed, by reason.",
    );
    for (name, n) in TLS_FAILURES.iter().zip(t.failures) {
        let _ = writeln!(
            out,
            "ringlb_tls_handshake_failures_total{{reason=\"{name}\"}} {n}"
        );
    }
    family(
        out,
        "ringlb_tls_sni_total",
        "counter",
        "TLS handshakes with clients that succeeded, by how SNI chose the certificate: exact, wildcard, none (no SNI: the default), unknown (a name no certificate carries: the default).",
    );
    for (name, n) in TLS_SNI.iter().zip(t.sni) {
        let _ = writeln!(out, "ringlb_tls_sni_total{{match=\"{name}\"}} {n}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A summary with extra labels: quantiles (seconds) over the window, `_sum` and
/// `_count` since start (Prometheus expects those two cumulative).
fn summary(
    out: &mut String,
    name: &str,
    labels: &str,
    (s, since_start): &(LatencySummary, LatencySummary),
) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (q, v) in [
        ("0.5", s.p50),
        ("0.95", s.p95),
        ("0.99", s.p99),
        ("0.999", s.p999),
    ] {
        let _ = writeln!(
            out,
            "{name}{{{labels}{sep}quantile=\"{q}\"}} {}",
            v / 1000.0
        );
    }
    let braces = |l: &str| {
        if l.is_empty() {
            String::new()
        } else {
            format!("{{{l}}}")
        }
    };
    let _ = writeln!(
        out,
        "{name}_sum{} {}",
        braces(labels),
        since_start.sum / 1000.0
    );
    let _ = writeln!(out, "{name}_count{} {}", braces(labels), since_start.count);
}

/// `/metrics`: Prometheus text exposition format 0.0.4. Counters are since start;
/// latency summaries' quantiles are over the sliding window (as Prometheus
/// summaries usually are), their `_sum` and `_count` since start.
pub fn metrics_text(report: &Report) -> String {
    let mut out = String::with_capacity(8192);
    let t = &report.totals;
    // Each backend's labels: its name and its cluster's.
    let names: Vec<String> = report
        .backends
        .iter()
        .map(|b| {
            format!(
                "backend=\"{}\",cluster=\"{}\"",
                label(&b.status.name),
                label(&b.status.cluster)
            )
        })
        .collect();

    family(
        &mut out,
        "ringlb_info",
        "gauge",
        "Version, io driver and strategy.",
    );
    let _ = writeln!(
        out,
        "ringlb_info{{version=\"{}\",io_driver=\"{}\",strategy=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        report.io_driver,
        report.strategy
    );
    scalar(
        &mut out,
        "ringlb_uptime_seconds",
        "gauge",
        "Seconds since start.",
        report.uptime.as_secs(),
    );
    scalar(
        &mut out,
        "ringlb_connections_total",
        "counter",
        "Client connections accepted.",
        t.connections_accepted,
    );
    scalar(
        &mut out,
        "ringlb_connections_refused_total",
        "counter",
        "Client connections closed at once because max_connections was reached.",
        t.connections_refused,
    );
    family(
        &mut out,
        "ringlb_proxy_header_rejected_total",
        "counter",
        "Connections closed on an accept_proxy listener: a peer not in proxy_trusted, or a malformed or late PROXY header.",
    );
    let _ = writeln!(
        out,
        "ringlb_proxy_header_rejected_total{{reason=\"untrusted\"}} {}",
        t.proxy_untrusted
    );
    let _ = writeln!(
        out,
        "ringlb_proxy_header_rejected_total{{reason=\"invalid\"}} {}",
        t.proxy_invalid
    );
    scalar(
        &mut out,
        "ringlb_active_connections",
        "gauge",
        "Open client connections.",
        t.active_connections,
    );
    scalar(
        &mut out,
        "ringlb_parked_connections",
        "gauge",
        "Idle client connections holding no buffers.",
        t.parked_connections,
    );
    scalar(
        &mut out,
        "ringlb_requests_received_total",
        "counter",
        "Requests whose head was read.",
        t.requests,
    );

    family(
        &mut out,
        "ringlb_requests_total",
        "counter",
        "Responses by status code and the backend of the request's last attempt (backend=\"\" when none was tried).",
    );
    let mut answered_by_backends = vec![0u64; t.status.len()];
    for (b, name) in report.backends.iter().zip(&names) {
        for (code, n) in b.counters.status_codes() {
            let _ = writeln!(out, "ringlb_requests_total{{{name},code=\"{code}\"}} {n}");
            if let Some(slot) = answered_by_backends.get_mut(usize::from(code) - 100) {
                *slot += n;
            }
        }
    }
    for (code, n) in t.status_codes() {
        let by_backends = answered_by_backends
            .get(usize::from(code) - 100)
            .copied()
            .unwrap_or(0);
        if n > by_backends {
            let _ = writeln!(
                out,
                "ringlb_requests_total{{backend=\"\",cluster=\"\",code=\"{code}\"}} {}",
                n - by_backends
            );
        }
    }

    family(
        &mut out,
        "ringlb_errors_total",
        "counter",
        "Failed requests by kind, and the backend of their last attempt (\"\" if none).",
    );
    let mut by_backends = [0u64; ERROR_KINDS.len()];
    for (b, name) in report.backends.iter().zip(&names) {
        for (i, kind) in ERROR_KINDS.iter().enumerate() {
            let n = b.counters.errors[i];
            by_backends[i] += n;
            if n > 0 {
                let _ = writeln!(out, "ringlb_errors_total{{{name},kind=\"{kind}\"}} {n}");
            }
        }
    }
    for (i, kind) in ERROR_KINDS.iter().enumerate() {
        let n = t.errors[i].saturating_sub(by_backends[i]);
        let _ = writeln!(
            out,
            "ringlb_errors_total{{backend=\"\",cluster=\"\",kind=\"{kind}\"}} {n}"
        );
    }
    scalar(
        &mut out,
        "ringlb_bytes_received_total",
        "counter",
        "Bytes read from clients.",
        t.bytes_in,
    );
    scalar(
        &mut out,
        "ringlb_bytes_sent_total",
        "counter",
        "Bytes written to clients.",
        t.bytes_out,
    );
    scalar(
        &mut out,
        "ringlb_accept_errors_total",
        "counter",
        "Accepts that failed for want of file descriptors or memory (each pauses that listener 10 ms).",
        t.accept_errors,
    );
    scalar(
        &mut out,
        "ringlb_early_responses_total",
        "counter",
        "Responses a backend sent before the request body was in (the client connection then closes).",
        t.early_responses,
    );
    scalar(
        &mut out,
        "ringlb_retries_over_budget_total",
        "counter",
        "Retries refused because the retry budget was spent.",
        t.retries_over_budget,
    );

    family(
        &mut out,
        "ringlb_request_duration_seconds",
        "summary",
        "Latency of proxied requests, from the first byte of the head to the last byte of the response.",
    );
    summary(
        &mut out,
        "ringlb_request_duration_seconds",
        "",
        &report.latency,
    );

    type Gauge = fn(&BackendView) -> u64;
    let per_backend: [(&str, &str, &str, Gauge); 8] = [
        (
            "ringlb_backend_up",
            "gauge",
            "1 when health checks say the backend is up.",
            |b| u64::from(b.status.healthy),
        ),
        (
            "ringlb_backend_breaker_state",
            "gauge",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            |b| match b.status.breaker {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            },
        ),
        (
            "ringlb_backend_weight",
            "gauge",
            "Effective weight (lower during slow start).",
            |b| u64::from(b.status.effective_weight),
        ),
        (
            "ringlb_backend_active_requests",
            "gauge",
            "Requests in flight to the backend.",
            |b| b.counters.active_requests,
        ),
        (
            "ringlb_backend_idle_connections",
            "gauge",
            "Pooled idle connections to the backend.",
            |b| b.counters.pooled_idle_connections,
        ),
        (
            "ringlb_upstream_attempts_total",
            "counter",
            "Attempts sent to the backend (its selections).",
            |b| b.counters.attempts,
        ),
        (
            "ringlb_upstream_retries_total",
            "counter",
            "Attempts on the backend that were retries.",
            |b| b.counters.retries,
        ),
        (
            "ringlb_upstream_failures_total",
            "counter",
            "Attempts that failed on the backend's side.",
            |b| b.counters.failures,
        ),
    ];
    for (name, kind, help, value) in per_backend {
        family(&mut out, name, kind, help);
        for (b, label) in report.backends.iter().zip(&names) {
            let _ = writeln!(out, "{name}{{{label}}} {}", value(b));
        }
    }
    family(
        &mut out,
        "ringlb_backend_request_duration_seconds",
        "summary",
        "Latency of requests answered by the backend.",
    );
    for (b, name) in report.backends.iter().zip(&names) {
        if let Some(latency) = &b.latency {
            summary(
                &mut out,
                "ringlb_backend_request_duration_seconds",
                name,
                latency,
            );
        }
    }

    tunnel_metrics(&mut out, &t.tunnels, report, &names);
    tls_metrics(&mut out, &t.tls);
    h2_metrics(&mut out, &t.h2);
    family(
        &mut out,
        "ringlb_tls_certificate_days_left",
        "gauge",
        "Whole days until each TLS listener's certificate expires (negative once it has).",
    );
    for c in &report.certificates {
        let _ = writeln!(
            out,
            "ringlb_tls_certificate_days_left{{listener=\"{}\",certificate=\"{}\"}} {}",
            label(&c.listener),
            label(&c.file),
            c.days_left
        );
    }

    family(
        &mut out,
        "ringlb_listener_info",
        "gauge",
        "Every listener, with its address and protocol.",
    );
    for l in &report.listeners {
        let _ = writeln!(
            out,
            "ringlb_listener_info{{listener=\"{}\",address=\"{}\",protocol=\"{}\"}} 1",
            label(&l.name),
            l.address,
            l.protocol
        );
    }
    family(
        &mut out,
        "ringlb_route_requests_total",
        "counter",
        "Requests each route matched.",
    );
    for r in &report.routes {
        let _ = writeln!(
            out,
            "ringlb_route_requests_total{{route=\"{}\",listener=\"{}\",cluster=\"{}\"}} {}",
            label(&r.name),
            label(&r.listener),
            label(&r.cluster),
            r.requests
        );
    }
    type ClusterCounter = fn(&ClusterView) -> u64;
    let per_cluster: [(&str, &str, ClusterCounter); 2] = [
        (
            "ringlb_cluster_requests_total",
            "Requests routed to the cluster.",
            |c| c.requests,
        ),
        (
            "ringlb_cluster_failures_total",
            "Requests routed to the cluster that failed.",
            |c| c.failures,
        ),
    ];
    for (name, help, value) in per_cluster {
        family(&mut out, name, "counter", help);
        for c in &report.clusters {
            let _ = writeln!(out, "{name}{{cluster=\"{}\"}} {}", label(&c.name), value(c));
        }
    }
    family(
        &mut out,
        "ringlb_cluster_request_duration_seconds",
        "summary",
        "Latency of requests the cluster's backends answered.",
    );
    for c in &report.clusters {
        if let Some(latency) = &c.latency {
            let labels = format!("cluster=\"{}\"", label(&c.name));
            summary(
                &mut out,
                "ringlb_cluster_request_duration_seconds",
                &labels,
                latency,
            );
        }
    }
    out
}

/// The tunnel families: shard-wide counts, endings and durations, and per backend.
fn tunnel_metrics(out: &mut String, t: &TunnelTotals, report: &Report, names: &[String]) {
    scalar(
        out,
        "ringlb_tunnels_total",
        "counter",
        "Tunnels opened (TCP listeners' connections and upgraded ones).",
        t.counts.opened,
    );
    scalar(
        out,
        "ringlb_tunnels_active",
        "gauge",
        "Tunnels open now.",
        t.counts.active,
    );
    scalar(
        out,
        "ringlb_tunnels_upgraded_total",
        "counter",
        "HTTP connections upgraded to a tunnel (WebSocket).",
        t.upgraded,
    );
    family(
        out,
        "ringlb_tunnel_bytes_total",
        "counter",
        "Bytes relayed by tunnels: up is client to backend, down is backend to client.",
    );
    let _ = writeln!(
        out,
        "ringlb_tunnel_bytes_total{{direction=\"up\"}} {}",
        t.counts.bytes_up
    );
    let _ = writeln!(
        out,
        "ringlb_tunnel_bytes_total{{direction=\"down\"}} {}",
        t.counts.bytes_down
    );
    family(
        out,
        "ringlb_tunnel_ends_total",
        "counter",
        "Finished tunnels by how they ended (failed: no backend could be reached).",
    );
    for (name, n) in TUNNEL_ENDS.iter().zip(t.ends) {
        let _ = writeln!(out, "ringlb_tunnel_ends_total{{end=\"{name}\"}} {n}");
    }
    family(
        out,
        "ringlb_tunnel_duration_seconds",
        "histogram",
        "How long tunnels were open.",
    );
    let mut cumulative = 0;
    for (i, n) in t.durations.iter().enumerate() {
        cumulative += n;
        match DURATION_BUCKETS.get(i) {
            Some(bound) => {
                let _ = writeln!(
                    out,
                    "ringlb_tunnel_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "ringlb_tunnel_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "ringlb_tunnel_duration_seconds_sum {}",
        t.duration_sum_micros as f64 / 1e6
    );
    let _ = writeln!(out, "ringlb_tunnel_duration_seconds_count {cumulative}");
    type Counter = fn(&TunnelCounters) -> u64;
    let per_backend: [(&str, &str, &str, Counter); 4] = [
        (
            "ringlb_backend_tunnels_total",
            "counter",
            "Tunnels opened to the backend.",
            |t| t.opened,
        ),
        (
            "ringlb_backend_tunnels_active",
            "gauge",
            "Tunnels open to the backend now.",
            |t| t.active,
        ),
        (
            "ringlb_backend_tunnel_bytes_up_total",
            "counter",
            "Bytes relayed from clients to the backend by tunnels.",
            |t| t.bytes_up,
        ),
        (
            "ringlb_backend_tunnel_bytes_down_total",
            "counter",
            "Bytes relayed from the backend to clients by tunnels.",
            |t| t.bytes_down,
        ),
    ];
    for (name, kind, help, value) in per_backend {
        family(out, name, kind, help);
        for (b, label) in report.backends.iter().zip(names) {
            let _ = writeln!(out, "{name}{{{label}}} {}", value(&b.counters.tunnels));
        }
    }
}
