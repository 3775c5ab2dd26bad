//! `observe::tls`: what shards count about TLS handshakes on their listeners.
//!
//! Owns why a handshake failed ([`TlsFailure`], in the spelling of counters),
//! the counters a shard keeps (`ShardTlsStats`, plain `Cell`s: handshakes full and
//! resumed, versions, cipher suites, failures by reason) and their absolute
//! values in reports ([`TlsTotals`]). Nothing here blocks or touches another
//! thread's data.

use std::cell::Cell;

use crate::protocol::tls::TlsInfo;

/// Why a client's handshake failed, in the spelling of counters and logs.
pub const TLS_FAILURES: [&str; 12] = [
    // No handshake within `timeouts.header_read`.
    "timeout",
    // The client closed the connection without sending a byte (a TCP health
    // check or a port scan, usually).
    "empty",
    // The client closed the connection mid-handshake.
    "closed",
    // Reading or writing the socket failed (a reset).
    "io",
    // The first bytes were not a TLS record (plain HTTP to a TLS port, say).
    "not_tls",
    // No certificate for the name the client asked for, and no default.
    "no_certificate",
    // No version, cipher suite, group or signature scheme in common.
    "incompatible",
    // The client offered ALPN protocols, none of them the listener's.
    "no_alpn",
    // The client refused our certificate (an alert: unknown CA, bad or expired).
    "certificate_rejected",
    // The client sent another alert.
    "client_alert",
    // A malformed, unexpected or undecryptable message.
    "bad_message",
    // Anything else rustls refused.
    "other",
];

/// Why a handshake failed, as an index into `TLS_FAILURES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    Timeout = 0,
    Empty = 1,
    Closed = 2,
    Io = 3,
    NotTls = 4,
    NoCertificate = 5,
    Incompatible = 6,
    NoAlpn = 7,
    CertificateRejected = 8,
    ClientAlert = 9,
    BadMessage = 10,
    Other = 11,
}

impl TlsFailure {
    /// Its name in counters and logs.
    pub fn as_str(self) -> &'static str {
        TLS_FAILURES[self as usize]
    }

    /// The reason a rustls error stands for.
    pub fn of(error: &rustls::Error) -> TlsFailure {
        use rustls::AlertDescription as Alert;
        use rustls::Error as E;
        match error {
            E::PeerIncompatible(_) => TlsFailure::Incompatible,
            E::NoApplicationProtocol => TlsFailure::NoAlpn,
            E::AlertReceived(
                Alert::BadCertificate
                | Alert::UnknownCA
                | Alert::CertificateUnknown
                | Alert::CertificateExpired
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked,
            ) => TlsFailure::CertificateRejected,
            E::AlertReceived(_) => TlsFailure::ClientAlert,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError
            | E::PeerSentOversizedRecord => TlsFailure::BadMessage,
            // What rustls says when the certificate resolver found none.
            E::General(_) => TlsFailure::NoCertificate,
            _ => TlsFailure::Other,
        }
    }
}

/// The TLS versions counted, in this order.
pub const TLS_VERSIONS: [&str; 2] = ["TLSv1_2", "TLSv1_3"];

/// The cipher suites counted (ring's, TLS 1.3 first), in this order.
pub const TLS_CIPHERS: [&str; 9] = [
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// How a client's SNI chose its certificate: a name of one exactly, a
/// wildcard, none sent (the default), or a name none carries (the default).
pub const TLS_SNI: [&str; 4] = ["exact", "wildcard", "none", "unknown"];

/// One shard's TLS counters.
#[derive(Debug, Default)]
pub struct ShardTlsStats {
    sni: [Cell<u64>; TLS_SNI.len()],
    full: Cell<u64>,
    resumed: Cell<u64>,
    versions: [Cell<u64>; TLS_VERSIONS.len()],
    ciphers: [Cell<u64>; TLS_CIPHERS.len()],
    failures: [Cell<u64>; TLS_FAILURES.len()],
}

impl ShardTlsStats {
    /// Counts a handshake that succeeded.
    pub fn handshake(&self, info: Option<TlsInfo>) {
        let Some(info) = info else {
            return bump(&self.full);
        };
        bump(if info.resumed {
            &self.resumed
        } else {
            &self.full
        });
        if let Some(i) = TLS_VERSIONS.iter().position(|v| *v == info.version) {
            bump(&self.versions[i]);
        }
        if let Some(i) = TLS_CIPHERS.iter().position(|c| *c == info.cipher) {
            bump(&self.ciphers[i]);
        }
    }

    /// Counts how a handshake's SNI chose its certificate (an index into
    /// `TLS_SNI`).
    pub fn sni(&self, how: usize) {
        if let Some(cell) = self.sni.get(how) {
            bump(cell);
        }
    }

    /// Counts a handshake that failed.
    pub fn failed(&self, why: TlsFailure) {
        bump(&self.failures[why as usize]);
    }

    /// The absolute values, for a report.
    pub fn totals(&self) -> TlsTotals {
        TlsTotals {
            full: self.full.get(),
            resumed: self.resumed.get(),
            versions: self.versions.each_ref().map(Cell::get),
            ciphers: self.ciphers.each_ref().map(Cell::get),
            failures: self.failures.each_ref().map(Cell::get),
            sni: self.sni.each_ref().map(Cell::get),
        }
    }
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}

/// TLS counters as absolute values, one shard's or all merged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsTotals {
    /// Full handshakes that succeeded.
    pub full: u64,
    /// Resumed handshakes (a ticket or a session id) that succeeded.
    pub resumed: u64,
    /// Successful handshakes by version, indexed like `TLS_VERSIONS`.
    pub versions: [u64; TLS_VERSIONS.len()],
    /// Successful handshakes by cipher suite, indexed like `TLS_CIPHERS`.
    pub ciphers: [u64; TLS_CIPHERS.len()],
    /// Failed handshakes by reason, indexed like `TLS_FAILURES`.
    pub failures: [u64; TLS_FAILURES.len()],
    /// Successful handshakes by how SNI chose the certificate, indexed like
    /// `TLS_SNI`.
    pub sni: [u64; TLS_SNI.len()],
}

impl TlsTotals {
    /// Adds another shard's counters.
    pub fn merge(&mut self, o: &TlsTotals) {
        self.full += o.full;
        self.resumed += o.resumed;
        add(&mut self.versions, &o.versions);
        add(&mut self.ciphers, &o.ciphers);
        add(&mut self.failures, &o.failures);
        add(&mut self.sni, &o.sni);
    }
}

fn add<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ring_cipher_suite_is_counted_by_name() {
        for suite in rustls::crypto::ring::ALL_CIPHER_SUITES {
            let name = suite.suite().as_str().unwrap();
            assert!(TLS_CIPHERS.contains(&name), "{name} is not counted");
        }
    }

    #[test]
    fn sni_counters_follow_the_store_s_matches() {
        use crate::tls::certs::SniMatch;
        for (how, name) in [
            (SniMatch::Exact, "exact"),
            (SniMatch::Wildcard, "wildcard"),
            (SniMatch::NoSni, "none"),
            (SniMatch::Unknown, "unknown"),
        ] {
            assert_eq!(TLS_SNI[how as usize], name);
        }
    }

    #[test]
    fn handshakes_and_failures_are_counted_and_merged() {
        let stats = ShardTlsStats::default();
        let info = TlsInfo {
            version: "TLSv1_3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            resumed: true,
        };
        stats.handshake(Some(info));
        stats.failed(TlsFailure::NotTls);
        let mut totals = stats.totals();
        totals.merge(&stats.totals());
        assert_eq!((totals.full, totals.resumed), (0, 2));
        assert_eq!(totals.versions, [0, 2]);
        assert_eq!(totals.ciphers[1], 2);
        assert_eq!(totals.failures[TlsFailure::NotTls as usize], 2);
        assert_eq!(TlsFailure::NotTls.as_str(), "not_tls");
    }
}
