//! Material: every TLS listener's certificates loaded, checked and ready to serve.
//!
//! Owns turning the `tls` tables of a checked [`Config`] into what the shards need:
//! one [`ListenerMaterial`] per TLS listener (its [`CertStore`], versions and ALPN),
//! from which each shard builds its own `rustls::ServerConfig` (its own session
//! cache and ticket keys: nothing shared on the handshake path). Reports every
//! problem with the files as configuration errors naming the key and the file, so
//! `ringlb check`, start-up and a reload refuse the same things. Must not touch
//! sockets or shard state.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};

use crate::config::{ClusterTls, Config, ConfigError, ConfigErrors, ListenerTls, TlsVersion};

use super::certs::{CertStore, Certificate};

/// Seconds since the Unix epoch now, for certificates' validity.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// TLS 1.2 sessions a shard remembers per listener for resumption by session id.
const SESSION_CACHE: usize = 4096;
/// Warn when a certificate expires within this many days.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// One TLS listener's certificates and settings.
#[derive(Debug)]
pub struct ListenerMaterial {
    /// The listener's name.
    pub listener: String,
    /// Its certificates, by SNI.
    pub store: Arc<CertStore>,
    /// The versions accepted.
    pub versions: &'static [&'static SupportedProtocolVersion],
    /// ALPN protocols offered, in order.
    pub alpn: Vec<Vec<u8>>,
    /// Session-ticket keys, one set for every shard (a ticket one shard issued
    /// resumes on any; rotated every 6 hours), kept by reloads that serve the
    /// same certificates.
    ticketer: Arc<dyn ProducesTickets>,
    provider: Arc<CryptoProvider>,
}

impl ListenerMaterial {
    /// A server configuration for one shard, with its own session cache (TLS
    /// 1.2 session ids) and the listener's session-ticket keys.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(self.versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&self.store) as _);
        config.alpn_protocols = self.alpn.clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = Arc::clone(&self.ticketer);
        Ok(Arc::new(config))
    }

    /// Whether `other` serves the same certificates.
    pub fn same_certificates(&self, other: &ListenerMaterial) -> bool {
        self.store.same_as(&other.store)
    }
}

/// TLS resumption tickets or sessions a shard keeps per cluster.
const CLIENT_SESSIONS: usize = 256;

/// One cluster's TLS to its backends.
#[derive(Debug)]
pub struct ClusterMaterial {
    /// The cluster's name.
    pub cluster: String,
    /// The name sent as SNI and verified; `None`: each backend's IP address.
    pub server_name: Option<ServerName<'static>>,
    roots: Option<Arc<RootCertStore>>,
    client_certificate: Option<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ClusterMaterial {
    /// Whether `other` trusts, names and presents the same (the same CA
    /// certificates, server name, verification and client certificate): then a
    /// reload that read the files again changes nothing, and connections made
    /// with this material may stay.
    pub fn same_as(&self, other: &ClusterMaterial) -> bool {
        self.server_name == other.server_name
            && match (&self.roots, &other.roots) {
                (None, None) => true,
                (Some(a), Some(b)) => a.roots == b.roots,
                _ => false,
            }
            && match (&self.client_certificate, &other.client_certificate) {
                (None, None) => true,
                (Some(a), Some(b)) => a.cert == b.cert,
                _ => false,
            }
    }

    /// A client configuration for one shard, with its own resumption cache,
    /// offering `alpn` (`http/1.1`, or `h2` for an HTTP/2 cluster).
    pub fn client_config(&self, alpn: &[u8]) -> Result<Arc<ClientConfig>, rustls::Error> {
        let builder = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)?;
        let builder = match &self.roots {
            Some(roots) => builder.with_root_certificates(Arc::clone(roots)),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified::new(Arc::clone(
                    &self.provider,
                )))),
        };
        let mut config = match &self.client_certificate {
            Some(key) => {
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(key))))
            }
            None => builder.with_no_client_auth(),
        };
        config.resumption = Resumption::in_memory_sessions(CLIENT_SESSIONS);
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }
}

/// `verify = false`: any certificate is taken, but the handshake's signatures
/// are still checked against it (the peer holds the key it presents). The tests'
/// clients use it too, to see which certificate a server chose.
#[derive(Debug)]
pub struct Unverified(Arc<CryptoProvider>);

impl Unverified {
    /// A verifier checking signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Unverified {
        Unverified(provider)
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Every TLS listener's and cluster's material, and what is worth a warning.
#[derive(Debug, Default)]
pub struct TlsMaterial {
    /// In the order of the listeners.
    pub listeners: Vec<Arc<ListenerMaterial>>,
    /// In the order of the clusters.
    pub clusters: Vec<Arc<ClusterMaterial>>,
    /// Certificates expired, not yet valid, expiring soon, or without a DNS name.
    pub warnings: Vec<ConfigError>,
}

impl TlsMaterial {
    /// Loads the certificates of every TLS listener in `config` (read from
    /// `origin`, which errors name), as of `now` (seconds since the Unix epoch).
    /// Every problem is reported, not only the first.
    pub fn load(config: &Config, origin: &str, now: i64) -> Result<TlsMaterial, ConfigErrors> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut material = TlsMaterial::default();
        let mut errors = Vec::new();
        let report = |list: &mut Vec<ConfigError>, key: String, message: String| {
            list.push(ConfigError {
                file: origin.to_string(),
                key,
                message,
            });
        };
        for (i, listener) in config.listeners.iter().enumerate() {
            let Some(tls) = &listener.tls else {
                continue;
            };
            let mut certificates = Vec::new();
            for (n, files) in tls.certificates.iter().enumerate() {
                let key = format!("listeners[{i}].tls.certificates[{n}]");
                match Certificate::load(&files.cert, &files.key, &provider) {
                    Ok(certificate) => {
                        for warning in warnings_of(&certificate, now) {
                            report(&mut material.warnings, key.clone(), warning);
                        }
                        certificates.push(certificate);
                    }
                    Err(e) => report(&mut errors, key, e.to_string()),
                }
            }
            if certificates.len() != tls.certificates.len() {
                continue;
            }
            let store = CertStore::new(certificates, tls.default.as_deref());
            if let Some(default) = &tls.default {
                if store.lookup(None).is_none() {
                    report(
                        &mut errors,
                        format!("listeners[{i}].tls.default"),
                        format!("{default:?} is not a name of any of the listener's certificates"),
                    );
                    continue;
                }
            }
            let ticketer = match rustls::crypto::ring::Ticketer::new() {
                Ok(ticketer) => ticketer,
                Err(e) => {
                    report(&mut errors, format!("listeners[{i}].tls"), e.to_string());
                    continue;
                }
            };
            let loaded = ListenerMaterial {
                listener: listener.name.clone(),
                store: Arc::new(store),
                versions: versions(tls),
                alpn: tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
                ticketer,
                provider: Arc::clone(&provider),
            };
            // Shards build theirs the same way: whatever fails, fails here, where
            // it refuses the start or the reload.
            if let Err(e) = loaded.server_config() {
                report(&mut errors, format!("listeners[{i}].tls"), e.to_string());
                continue;
            }
            material.listeners.push(Arc::new(loaded));
        }
        for (i, cluster) in config.clusters.iter().enumerate() {
            let Some(tls) = &cluster.tls else {
                continue;
            };
            match load_cluster(&cluster.name, tls, &provider, now) {
                Ok((loaded, warnings)) => {
                    for (field, warning) in warnings {
                        report(
                            &mut material.warnings,
                            format!("clusters[{i}].tls.{field}"),
                            warning,
                        );
                    }
                    material.clusters.push(Arc::new(loaded));
                }
                Err((field, message)) => {
                    report(&mut errors, format!("clusters[{i}].tls.{field}"), message)
                }
            }
        }
        if errors.is_empty() {
            Ok(material)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Keeps `previous`'s session-ticket keys for each listener that serves the
    /// same certificates as before, so that clients resume across a reload.
    pub fn keep_tickets(&mut self, previous: &TlsMaterial) {
        for material in &mut self.listeners {
            let Some(old) = previous.listener(&material.listener) else {
                continue;
            };
            if let Some(new) = Arc::get_mut(material) {
                if new.same_certificates(old) {
                    new.ticketer = Arc::clone(&old.ticketer);
                }
            }
        }
    }

    /// The material of the cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Arc<ClusterMaterial>> {
        self.clusters.iter().find(|m| m.cluster == name)
    }

    /// The material of the listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerMaterial>> {
        self.listeners.iter().find(|m| m.listener == name)
    }
}

/// A cluster's CA and client certificate, loaded; errors and warnings name the
/// field of its `tls` table.
#[allow(clippy::type_complexity)]
fn load_cluster(
    name: &str,
    tls: &ClusterTls,
    provider: &Arc<CryptoProvider>,
    now: i64,
) -> Result<(ClusterMaterial, Vec<(&'static str, String)>), (&'static str, String)> {
    let mut warnings = Vec::new();
    let roots = match (&tls.ca, tls.verify) {
        (Some(ca), true) => {
            let text = std::fs::read(ca)
                .map_err(|e| ("ca", format!("{}: cannot read: {e}", ca.display())))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&text) {
                let cert =
                    cert.map_err(|e| ("ca", format!("{}: invalid PEM: {e}", ca.display())))?;
                roots.add(cert).map_err(|e| {
                    (
                        "ca",
                        format!("{}: not a usable CA certificate: {e}", ca.display()),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(("ca", format!("{}: no PEM CERTIFICATE block", ca.display())));
            }
            Some(Arc::new(roots))
        }
        _ => None,
    };
    let client_certificate = match &tls.client_certificate {
        Some(files) => {
            let certificate = Certificate::load(&files.cert, &files.key, provider)
                .map_err(|e| ("cert", e.to_string()))?;
            warnings.extend(
                warnings_of(&certificate, now)
                    .into_iter()
                    .map(|w| ("cert", w)),
            );
            Some(Arc::clone(&certificate.key))
        }
        None => None,
    };
    let server_name = match &tls.server_name {
        Some(text) => Some(ServerName::try_from(text.clone()).map_err(|_| {
            (
                "server_name",
                format!("expected a DNS name or an IP address, got {text:?}"),
            )
        })?),
        None => None,
    };
    Ok((
        ClusterMaterial {
            cluster: name.to_string(),
            server_name,
            roots,
            client_certificate,
            provider: Arc::clone(provider),
        },
        warnings,
    ))
}

/// TLS 1.3 alone.
static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(tls: &ListenerTls) -> &'static [&'static SupportedProtocolVersion] {
    match tls.min_version {
        TlsVersion::V1_2 => rustls::ALL_VERSIONS,
        TlsVersion::V1_3 => &TLS13_ONLY,
    }
}

/// Which listeners' certificates are close to expiring (or have), each told once
/// per day of difference: the control thread asks every hour and logs what it
/// is told, so a certificate that is never reloaded is still warned about, daily,
/// from 14 days before it expires.
#[derive(Debug, Default)]
pub struct ExpiryWatch {
    /// Per certificate file: the days left last told.
    told: std::collections::HashMap<(String, std::path::PathBuf), i64>,
}

impl ExpiryWatch {
    /// The lines to log about `material`'s certificates as of `now` (seconds
    /// since the Unix epoch): those within `EXPIRY_WARNING_DAYS` of expiring, or
    /// expired, whose days left changed since last told.
    pub fn due(&mut self, material: &TlsMaterial, now: i64) -> Vec<String> {
        let mut lines = Vec::new();
        for listener in &material.listeners {
            for certificate in listener.store.certificates() {
                let Some(expiry) = expiry_line(certificate, now) else {
                    continue;
                };
                let key = (listener.listener.clone(), certificate.cert_path.clone());
                let days = certificate.days_left(now);
                if self.told.insert(key, days) == Some(days) {
                    continue;
                }
                lines.push(format!(
                    "listener {}: certificate {expiry} ({})",
                    listener.listener,
                    certificate.names.join(", ")
                ));
            }
        }
        lines
    }
}

/// `FILE: expired N day(s) ago` or `FILE: expires in N day(s)`, for a
/// certificate within `EXPIRY_WARNING_DAYS` of its end or past it.
fn expiry_line(certificate: &Certificate, now: i64) -> Option<String> {
    let file = certificate.cert_path.display();
    let days = certificate.days_left(now);
    if certificate.not_after <= now {
        Some(format!("{file}: expired {} day(s) ago", -days))
    } else if days < EXPIRY_WARNING_DAYS {
        Some(format!("{file}: expires in {days} day(s)"))
    } else {
        None
    }
}

/// What an operator should hear about a certificate that loaded.
fn warnings_of(certificate: &Certificate, now: i64) -> Vec<String> {
    let file = certificate.cert_path.display();
    let mut out: Vec<String> = expiry_line(certificate, now).into_iter().collect();
    if certificate.not_before > now {
        out.push(format!("{file}: not valid yet"));
    }
    if certificate.names.is_empty() {
        out.push(format!(
            "{file}: names no DNS name (SAN): it can only be the default"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CertificateFiles, ListenerConfig, ListenerProtocol};
    use std::path::{Path, PathBuf};

    fn make(dir: &Path, file: &str, names: &[&str], years: (i32, i32)) -> CertificateFiles {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = CertificateFiles {
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringlb-material-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config_with(tls: ListenerTls) -> Config {
        let mut config = Config::default();
        let mut listener = ListenerConfig::new(
            "https",
            "127.0.0.1:0".parse().unwrap(),
            ListenerProtocol::Http,
        );
        listener.tls = Some(tls);
        config.listeners = vec![listener];
        config
    }

    fn tls(certificates: Vec<CertificateFiles>, default: Option<&str>) -> ListenerTls {
        ListenerTls {
            certificates,
            default: default.map(str::to_string),
            min_version: TlsVersion::V1_2,
            alpn: vec!["http/1.1".into()],
        }
    }

    /// 2026-12-01T00:00:00Z.
    const NOW: i64 = 1_796_083_200;

    #[test]
    fn every_problem_is_an_error_naming_key_and_file() {
        let dir = temp_dir("errors");
        let good = make(&dir, "good", &["a.example"], (2020, 2100));
        let other = make(&dir, "other", &["b.example"], (2020, 2100));
        let mismatched = CertificateFiles {
            cert: good.cert.clone(),
            key: other.key.clone(),
        };
        let missing = CertificateFiles {
            cert: dir.join("missing.pem"),
            key: good.key.clone(),
        };
        let config = config_with(tls(vec![good, mismatched, missing], Some("a.example")));
        let errors = TlsMaterial::load(&config, "ringlb.toml", NOW)
            .unwrap_err()
            .0;
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("ringlb.toml: listeners[0].tls.certificates[1]: "));
        assert!(
            lines[0].contains("other.key does not match"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("ringlb.toml: listeners[0].tls.certificates[2]: "));
        assert!(lines[1].contains("missing.pem"), "{}", lines[1]);
    }

    #[test]
    fn the_default_must_be_a_name_of_a_certificate() {
        let dir = temp_dir("default");
        let config = config_with(tls(
            vec![make(&dir, "a", &["a.example", "*.b.example"], (2020, 2100))],
            Some("c.example"),
        ));
        let errors = TlsMaterial::load(&config, "f", NOW).unwrap_err().0;
        assert_eq!(errors[0].key, "listeners[0].tls.default");
        for default in ["a.example", "x.b.example"] {
            let mut config = config.clone();
            config.listeners[0].tls.as_mut().unwrap().default = Some(default.into());
            assert!(TlsMaterial::load(&config, "f", NOW).is_ok(), "{default}");
        }
    }

    #[test]
    fn expired_and_expiring_certificates_load_with_a_warning() {
        let dir = temp_dir("warnings");
        let config = config_with(tls(
            vec![
                make(&dir, "expired", &["old.example"], (2020, 2025)),
                make(&dir, "soon", &["soon.example"], (2020, 2026)),
                make(&dir, "later", &["later.example"], (2027, 2100)),
                make(&dir, "fine", &["fine.example"], (2020, 2100)),
            ],
            None,
        ));
        // 2025-12-25T00:00:00Z: "soon" (2026-01-01) is 7 days away.
        let material = TlsMaterial::load(&config, "f", 1_766_620_800).unwrap();
        let text: Vec<String> = material
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(text[0].contains("expired.pem: expired"), "{text:#?}");
        assert!(
            text[1].contains("soon.pem: expires in 7 day(s)"),
            "{text:#?}"
        );
        assert!(text[2].contains("later.pem: not valid yet"), "{text:#?}");
    }

    #[test]
    fn certificates_near_expiry_are_told_once_a_day() {
        let dir = temp_dir("expiry");
        let config = config_with(tls(
            vec![
                make(&dir, "soon", &["soon.example"], (2020, 2026)),
                make(&dir, "fine", &["fine.example"], (2020, 2100)),
            ],
            None,
        ));
        // 2025-12-24T12:00:00Z: "soon" (2026-01-01) is 7.5 days away.
        let now = 1_766_620_800 - 43_200;
        let material = TlsMaterial::load(&config, "f", now).unwrap();
        let mut watch = ExpiryWatch::default();
        let first = watch.due(&material, now);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].contains("soon.pem: expires in 7 day(s) (soon.example)"),
            "{first:?}"
        );
        // An hour later: nothing new. A day later: told again.
        assert!(watch.due(&material, now + 3_600).is_empty());
        let next = watch.due(&material, now + 86_400);
        assert!(next[0].contains("expires in 6 day(s)"), "{next:?}");
        let after = watch.due(&material, 1_767_225_600 + 86_400);
        assert!(after[0].contains("expired 1 day(s) ago"), "{after:?}");
    }

    #[test]
    fn each_shard_gets_a_config_that_serves_by_sni() {
        let dir = temp_dir("serve");
        let mut config = config_with(tls(
            vec![make(&dir, "a", &["a.example"], (2020, 2100))],
            Some("a.example"),
        ));
        config.listeners[0].tls.as_mut().unwrap().min_version = TlsVersion::V1_3;
        let material = TlsMaterial::load(&config, "f", NOW).unwrap();
        let listener = material.listener("https").unwrap();
        assert_eq!(listener.versions.len(), 1);
        let one = listener.server_config().unwrap();
        let two = listener.server_config().unwrap();
        assert!(!Arc::ptr_eq(&one, &two));
        assert_eq!(one.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(one.ticketer.enabled());
    }

    /// Runs a handshake between a client of `cluster`'s material and a server
    /// with `server`'s certificate; true if it completes.
    fn handshake_with(client: &ClusterMaterial, name: &str, server: &CertificateFiles) -> bool {
        handshake_asking(client, name, server, None)
    }

    /// The same, with a server that requires a client certificate issued by
    /// `client_ca` when one is given (mutual TLS).
    fn handshake_asking(
        client: &ClusterMaterial,
        name: &str,
        server: &CertificateFiles,
        client_ca: Option<&CertificateFiles>,
    ) -> bool {
        use crate::protocol::tls::TlsSession;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Certificate::load(&server.cert, &server.key, &provider).unwrap();
        // Served whatever name the client asks for.
        let default = certificate.names[0].clone();
        let store = CertStore::new(vec![certificate], Some(&default));
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(&ca.cert).unwrap() {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let server_config = builder.with_cert_resolver(Arc::new(store));
        let mut server = TlsSession::server(Arc::new(server_config)).unwrap();
        let name = client
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::try_from(name.to_string()).unwrap());
        let mut client =
            TlsSession::client(client.client_config(b"http/1.1").unwrap(), name).unwrap();
        for _ in 0..10 {
            let mut out = Vec::new();
            client.drain_output(&mut out);
            if server.feed(&out, &mut Vec::new()).is_err() {
                return false;
            }
            let mut back = Vec::new();
            server.drain_output(&mut back);
            if client.feed(&back, &mut Vec::new()).is_err() {
                return false;
            }
        }
        !client.is_handshaking() && !server.is_handshaking()
    }

    #[test]
    fn a_cluster_sends_its_client_certificate_to_a_backend_that_asks() {
        let dir = temp_dir("mutual");
        let backend = make(&dir, "backend", &["api.internal"], (2020, 2100));
        let ringlb = make(&dir, "ringlb", &["ringlb.internal"], (2020, 2100));
        let stranger = make(&dir, "stranger", &["ringlb.internal"], (2020, 2100));
        let mut config = Config::default();
        let tls = ClusterTls {
            server_name: Some("api.internal".into()),
            ca: Some(backend.cert.clone()),
            verify: true,
            client_certificate: None,
        };
        config.clusters[0].tls = Some(tls.clone());
        let without = TlsMaterial::load(&config, "f", NOW).unwrap();
        config.clusters[0].tls = Some(ClusterTls {
            client_certificate: Some(ringlb.clone()),
            ..tls
        });
        let with = TlsMaterial::load(&config, "f", NOW).unwrap();
        assert!(handshake_asking(
            &with.clusters[0],
            "",
            &backend,
            Some(&ringlb)
        ));
        assert!(
            !handshake_asking(&without.clusters[0], "", &backend, Some(&ringlb)),
            "no certificate"
        );
        assert!(
            !handshake_asking(&with.clusters[0], "", &backend, Some(&stranger)),
            "another issuer"
        );
    }

    #[test]
    fn a_cluster_verifies_its_backends_against_its_ca() {
        let dir = temp_dir("cluster");
        let backend = make(&dir, "backend", &["api.internal"], (2020, 2100));
        let stranger = make(&dir, "stranger", &["api.internal"], (2020, 2100));
        let mut config = Config::default();
        config.clusters[0].tls = Some(ClusterTls {
            server_name: Some("api.internal".into()),
            // A self-signed certificate is its own CA.
            ca: Some(backend.cert.clone()),
            verify: true,
            client_certificate: None,
        });
        let material = TlsMaterial::load(&config, "f", NOW).unwrap();
        let cluster = &material.clusters[0];
        assert!(handshake_with(cluster, "", &backend));
        assert!(!handshake_with(cluster, "", &stranger), "an unknown CA");

        let tls = config.clusters[0].tls.as_mut().unwrap();
        tls.server_name = Some("other.internal".into());
        let material = TlsMaterial::load(&config, "f", NOW).unwrap();
        assert!(
            !handshake_with(&material.clusters[0], "", &backend),
            "the wrong name"
        );

        let tls = config.clusters[0].tls.as_mut().unwrap();
        tls.verify = false;
        let material = TlsMaterial::load(&config, "f", NOW).unwrap();
        assert!(
            handshake_with(&material.clusters[0], "", &stranger),
            "verify = false"
        );

        let tls = config.clusters[0].tls.as_mut().unwrap();
        tls.verify = true;
        tls.ca = Some(dir.join("missing.pem"));
        let errors = TlsMaterial::load(&config, "f", NOW).unwrap_err().0;
        assert_eq!(errors[0].key, "clusters[0].tls.ca");
        assert!(
            errors[0].message.contains("missing.pem"),
            "{}",
            errors[0].message
        );
    }
}
