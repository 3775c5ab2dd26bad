//! TLS test support: certificates made at run time (rcgen) into files, TLS
//! listeners that serve them, and a real rustls client over a blocking socket.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

use ringlb::config::{CertificateFiles, ListenerConfig, ListenerTls, TlsVersion};
use ringlb::tls::material::Unverified;

use super::WAIT;

/// A certificate and key written to files, and the certificate as DER.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

/// A fresh directory for one test's files.
pub fn test_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate for `names` (DNS names or IP addresses), written as
/// `dir/file.pem` and `dir/file.key`.
pub fn make_cert(dir: &Path, file: &str, names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = dir.join(format!("{file}.pem"));
    let key = dir.join(format!("{file}.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    TestCert {
        cert,
        key,
        der: certified.cert.der().clone(),
    }
}

/// An HTTP listener on 127.0.0.1:0 serving `certs` over TLS.
pub fn tls_listener(name: &str, certs: &[&TestCert], default: Option<&str>) -> ListenerConfig {
    let mut listener = super::listener(name);
    listener.tls = Some(ListenerTls {
        certificates: certs
            .iter()
            .map(|c| CertificateFiles {
                cert: c.cert.clone(),
                key: c.key.clone(),
            })
            .collect(),
        default: default.map(String::from),
        min_version: TlsVersion::V1_2,
        alpn: vec!["http/1.1".into()],
    });
    listener
}

/// A client configuration trusting `roots`, speaking `versions`, offering `alpn`.
pub fn client_config(
    roots: &[&TestCert],
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&str],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.der.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A client configuration that accepts any certificate (signatures still
/// checked), to see which one a server chose: it never resumes, as a resumed
/// session shows the certificate of the session it resumed.
pub fn any_cert_config(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified::new(provider())))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS connection from a test.
pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` and completes a handshake for `name` (an IP address sends
/// no SNI). The error is the handshake's.
pub fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: &Arc<ClientConfig>,
) -> Result<TlsClient, io::Error> {
    let tcp = super::connect(addr);
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut client = StreamOwned::new(conn, tcp);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock)?;
    }
    Ok(client)
}

/// The rustls error behind a failed handshake's I/O error.
pub fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The certificate the server presented.
pub fn presented(client: &TlsClient) -> CertificateDer<'static> {
    client.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Sends a GET on an open TLS connection and reads the reply.
pub fn tls_get(client: &mut TlsClient, path: &str) -> super::Reply {
    use std::io::Write;
    let request = format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n");
    client.write_all(request.as_bytes()).unwrap();
    client.flush().unwrap();
    let mut pending = Vec::new();
    super::read_reply(client, &mut pending, false)
}

/// How long a test's TLS client waits on the socket.
pub fn set_timeouts(client: &TlsClient) {
    client.sock.set_read_timeout(Some(WAIT)).unwrap();
    client.sock.set_write_timeout(Some(WAIT)).unwrap();
}
