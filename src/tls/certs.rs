//! Certificates: loading them from PEM files, and choosing one by SNI.
//!
//! Owns reading a certificate chain and its key (PKCS#8, PKCS#1 RSA or SEC1 EC),
//! checking that they belong together, reading the names (SAN) and the validity
//! dates, and the `CertStore` that answers a client's SNI with a certificate:
//! exact names before wildcards, then the default. Runs where configuration is
//! loaded (start, reload, `ringlb check`), never on a shard's request path except
//! `CertStore::resolve` during a handshake, which only reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be loaded. Always the configuration's fault (the
/// files named in it); never retried until the next reload.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("{}: no PEM private key (PKCS#8, RSA or EC) block", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: the key is not usable: {what}", path.display())]
    BadKey { path: PathBuf, what: String },
    #[error("{} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// A certificate chain and its key, loaded and checked.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The chain's file, for messages and metrics.
    pub cert_path: PathBuf,
    /// The key's file.
    pub key_path: PathBuf,
    /// The DNS names it is valid for (SAN), lower-case; wildcards as `*.example.com`.
    pub names: Vec<String>,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
}

impl Certificate {
    /// Loads `cert` (a PEM chain, leaf first) and `key`, with the crypto provider
    /// that will use them.
    pub fn load(
        cert: &Path,
        key: &Path,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Certificate, CertError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CertError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let invalid = |path: &Path, what: String| CertError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(cert, format!("invalid PEM: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(CertError::NoCertificate {
                path: cert.to_path_buf(),
            });
        };
        let (not_before, not_after) = validity(leaf)
            .ok_or_else(|| invalid(cert, "not an X.509 certificate (no validity dates)".into()))?;
        let names = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| invalid(cert, format!("not a usable X.509 certificate: {e:?}")))?
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect();
        let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => CertError::NoKey {
                path: key.to_path_buf(),
            },
            e => invalid(key, format!("invalid PEM: {e}")),
        })?;
        let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => CertError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            e => CertError::BadKey {
                path: key.to_path_buf(),
                what: e.to_string(),
            },
        })?;
        Ok(Certificate {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            names,
            not_before,
            not_after,
            key: Arc::new(certified),
        })
    }

    /// Whole days until it expires (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// How a client's SNI found its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SniMatch {
    /// One of the certificate's names, exactly.
    Exact = 0,
    /// A wildcard name (`*.example.com` for `a.example.com`).
    Wildcard = 1,
    /// No SNI: the default certificate.
    NoSni = 2,
    /// An SNI no certificate names: the default certificate.
    Unknown = 3,
}

/// A listener's certificates, and which one answers which name.
#[derive(Debug)]
pub struct CertStore {
    certificates: Vec<Certificate>,
    exact: HashMap<String, usize>,
    /// By the part after `*.`.
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
}

impl CertStore {
    /// The store for `certificates`; `default` is a DNS name one of them carries
    /// (checked by the caller), for clients without SNI or with an unknown one.
    /// When two certificates carry a name, the first one listed wins.
    pub fn new(certificates: Vec<Certificate>, default: Option<&str>) -> CertStore {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, certificate) in certificates.iter().enumerate() {
            for name in &certificate.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        let mut store = CertStore {
            certificates,
            exact,
            wildcard,
            default: None,
        };
        store.default = default.and_then(|name| store.by_name(name).map(|(i, _)| i));
        store
    }

    /// The certificates, in the order given.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// Whether `other` serves the same certificates (the same chains, in the same
    /// order, for the same default): then sessions resumed across a reload
    /// were authenticated by what is still served.
    pub fn same_as(&self, other: &CertStore) -> bool {
        self.default == other.default
            && self.certificates.len() == other.certificates.len()
            && self
                .certificates
                .iter()
                .zip(&other.certificates)
                .all(|(a, b)| a.key.cert == b.key.cert)
    }

    /// Which certificate answers `sni`, and how it was found; `None` when nothing
    /// does (no default): the handshake then fails.
    pub fn lookup(&self, sni: Option<&str>) -> Option<(usize, SniMatch)> {
        let Some(sni) = sni else {
            return self.default.map(|i| (i, SniMatch::NoSni));
        };
        self.by_name(sni)
            .or_else(|| self.default.map(|i| (i, SniMatch::Unknown)))
    }

    fn by_name(&self, name: &str) -> Option<(usize, SniMatch)> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Some((i, SniMatch::Exact));
        }
        // A TLS wildcard stands for exactly one label (RFC 6125 §6.4.3).
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).map(|&i| (i, SniMatch::Wildcard))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let (i, _) = self.lookup(hello.server_name())?;
        Some(Arc::clone(&self.certificates[i].key))
    }
}

/// The validity dates of a DER certificate, in seconds since the Unix epoch:
/// Certificate → tbsCertificate → (version?, serial, signature, issuer) → validity.
fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = der(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // The version is optional: `[0] EXPLICIT`.
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    for _ in 0..3 {
        rest = der(rest)?.2; // serial, signature algorithm, issuer
    }
    let (tag, dates, _) = der(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, not_before, rest) = der(dates)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = der(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// One DER element: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let len = rest[..bytes]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (len, &rest[bytes..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as
/// seconds since the Unix epoch.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .map(|d| d.iter().fold(0i64, |n, &b| n * 10 + i64::from(b - b'0')))
    };
    let (year, at) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            // RFC 5280 §4.1.2.5.1: 50-99 are 19xx, 00-49 are 20xx.
            let yy = number(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let (month, day) = (number(at..at + 2)?, number(at + 2..at + 4)?);
    let (hour, minute, second) = (
        number(at + 4..at + 6)?,
        number(at + 6..at + 8)?,
        number(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> rustls::crypto::CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    /// Writes a new self-signed certificate for `names` and its key under a
    /// fresh directory; returns their paths.
    fn make(
        dir: &Path,
        file: &str,
        names: &[&str],
        dates: Option<(i32, i32)>,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some((from, to)) = dates {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 6, 30);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringlb-certs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_certificate_loads_with_its_names_and_dates() {
        let dir = temp_dir("load");
        let (cert, key) = make(
            &dir,
            "a",
            &["A.example.com", "*.b.example"],
            Some((2020, 2120)),
        );
        let c = Certificate::load(&cert, &key, &provider()).unwrap();
        assert_eq!(c.names, ["a.example.com", "*.b.example"]);
        assert_eq!(c.not_before, 1_577_836_800, "2020-01-01T00:00:00Z");
        assert_eq!(c.not_after, days_from_civil(2120, 6, 30) * 86_400);
        assert_eq!(c.days_left(c.not_after - 86_400 * 3), 3);
        assert!(c.days_left(c.not_after + 1) < 0);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = temp_dir("bad");
        let (cert, key) = make(&dir, "a", &["a.example"], None);
        let (_, other_key) = make(&dir, "b", &["b.example"], None);
        let missing = dir.join("missing.pem");
        let text = |e: CertError| e.to_string();

        let e = Certificate::load(&missing, &key, &provider()).unwrap_err();
        assert!(matches!(e, CertError::Read { .. }) && text(e).contains("missing.pem"));

        let e = Certificate::load(&cert, &other_key, &provider()).unwrap_err();
        assert!(matches!(e, CertError::Mismatch { .. }), "{e}");
        assert!(text(e).contains("b.key"));

        // A key where the certificate should be, and the reverse.
        let e = Certificate::load(&key, &key, &provider()).unwrap_err();
        assert!(matches!(e, CertError::NoCertificate { .. }), "{e}");
        let e = Certificate::load(&cert, &cert, &provider()).unwrap_err();
        assert!(matches!(e, CertError::NoKey { .. }), "{e}");

        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Certificate::load(&garbage, &key, &provider()).unwrap_err();
        assert!(matches!(e, CertError::Invalid { .. }), "{e}");
    }

    #[test]
    fn sni_finds_exact_names_before_wildcards_then_the_default() {
        let dir = temp_dir("sni");
        let load = |file: &str, names: &[&str]| {
            let (c, k) = make(&dir, file, names, None);
            Certificate::load(&c, &k, &provider()).unwrap()
        };
        let store = CertStore::new(
            vec![
                load("main", &["example.com", "www.example.com"]),
                load("wild", &["*.example.com"]),
                load("api", &["api.example.com"]),
            ],
            Some("example.com"),
        );
        for (sni, expect) in [
            (Some("example.com"), Some((0, SniMatch::Exact))),
            (Some("WWW.Example.com."), Some((0, SniMatch::Exact))),
            (Some("api.example.com"), Some((2, SniMatch::Exact))),
            (Some("shop.example.com"), Some((1, SniMatch::Wildcard))),
            // One label only.
            (Some("a.shop.example.com"), Some((0, SniMatch::Unknown))),
            (Some("other.test"), Some((0, SniMatch::Unknown))),
            (None, Some((0, SniMatch::NoSni))),
        ] {
            assert_eq!(store.lookup(sni), expect, "{sni:?}");
        }
        let strict = CertStore::new(vec![load("only", &["only.test"])], None);
        assert_eq!(strict.lookup(Some("other.test")), None);
        assert_eq!(strict.lookup(None), None);
        assert_eq!(strict.lookup(Some("only.test")), Some((0, SniMatch::Exact)));
    }

    #[test]
    fn der_times_read_both_forms() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(
            time(0x17, b"491231235959Z"),
            Some(days_from_civil(2050, 1, 1) * 86_400 - 1)
        );
        assert_eq!(
            time(0x18, b"21000301000000Z"),
            Some(days_from_civil(2100, 3, 1) * 86_400)
        );
        for bad in [
            &b"7001010000Z"[..],
            b"701301000000Z",
            b"700101000000",
            b"70010100000aZ",
        ] {
            assert_eq!(time(0x17, bad), None, "{bad:?}");
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
