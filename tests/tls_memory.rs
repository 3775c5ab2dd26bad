//! What idle TLS sessions hold: 2,000 server sessions after a handshake and one
//! exchange each, their clients gone, measured as the growth of this process's
//! resident memory.

use std::sync::Arc;

use ringlb::protocol::tls::TlsSession;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn idle_server_sessions_hold_little() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    let server = Arc::new(server);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let open = |server: &Arc<rustls::ServerConfig>| {
        let mut s = TlsSession::server(Arc::clone(server)).unwrap();
        let mut c = TlsSession::client(
            Arc::clone(&client),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let (mut plain, mut wire) = (Vec::new(), Vec::new());
        while s.is_handshaking() || c.is_handshaking() {
            c.drain_output(&mut wire);
            s.feed(&wire, &mut plain).unwrap();
            wire.clear();
            s.drain_output(&mut wire);
            c.feed(&wire, &mut plain).unwrap();
            wire.clear();
        }
        c.seal(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut wire);
        s.feed(&wire, &mut plain).unwrap();
        wire.clear();
        s.seal(&[b'x'; 1000], &mut wire);
        c.feed(&wire, &mut plain).unwrap();
        s
    };
    // Warm up what is allocated once.
    let warm: Vec<TlsSession> = (0..200).map(|_| open(&server)).collect();
    drop(warm);
    const N: usize = 2000;
    let before = rss_bytes();
    let held: Vec<TlsSession> = (0..N).map(|_| open(&server)).collect();
    let per = (rss_bytes() - before) / N;
    println!(
        "an idle server session: {per} bytes resident ({} of them inline)",
        std::mem::size_of::<TlsSession>()
    );
    // 7.0 KB measured with glibc malloc (4 KiB of it rustls's receive buffer).
    assert!(per < 12 * 1024, "{per}");
    drop(held);
}
