//! `tls`: one TLS session (rustls), sans-io, over the caller's buffers.
//!
//! Owns driving a `rustls::Connection` by hand: ciphertext the caller read goes in
//! (`feed`), and every plaintext byte it yields comes straight out into the
//! caller's buffer, so nothing decrypted stays inside rustls and a connection
//! can park with no buffer of ringlb's. Plaintext to send is sealed into records
//! (`seal`), and whatever rustls must send of its own (handshake flights, session
//! tickets, alerts, key updates) is drained by `drain_output`. Never touches a
//! socket, never blocks, never panics on what a peer sends: a bad record is an
//! `Err` whose alert is left for `drain_output`.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer broke the protocol or refused ours (a handshake failure, a bad
    /// record, an alert): its fault, or a configuration the two sides do not
    /// share. Never worth retrying on the same connection.
    #[error("tls: {0}")]
    Protocol(#[from] rustls::Error),
    /// The peer sent a message larger than rustls buffers (a handshake message
    /// over 64 KiB): its fault.
    #[error("tls: {0}")]
    Overflow(io::Error),
}

/// What `feed` saw besides plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// The session goes on.
    Open,
    /// The peer sent `close_notify`: it sends nothing more.
    PeerClosed,
}

/// What was agreed in the handshake, for statistics and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: &'static str,
    /// The cipher suite's IANA-style name.
    pub cipher: &'static str,
    /// The session was resumed (a ticket or a session id), not a full handshake.
    pub resumed: bool,
}

/// One TLS session, client or server side.
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    /// The peer's `close_notify` arrived.
    peer_closed: bool,
    /// Where the peer's records stand: the header bytes of the next one seen so
    /// far (0..5), and the bytes the current one still owes.
    header_seen: u8,
    header: [u8; 2],
    owed: u16,
}

impl TlsSession {
    /// The server side of a new session.
    pub fn server(config: Arc<ServerConfig>) -> Result<TlsSession, TlsError> {
        Ok(TlsSession {
            conn: Connection::Server(ServerConnection::new(config)?),
            peer_closed: false,
            header_seen: 0,
            header: [0; 2],
            owed: 0,
        })
    }

    /// The client side of a new session to `name`.
    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsSession, TlsError> {
        Ok(TlsSession {
            conn: Connection::Client(ClientConnection::new(config, name)?),
            peer_closed: false,
            header_seen: 0,
            header: [0; 2],
            owed: 0,
        })
    }

    /// Takes all of `cipher` and appends every byte it decrypts to `plain`.
    /// On an error, the alert to send is waiting in `drain_output`.
    pub fn feed(&mut self, mut cipher: &[u8], plain: &mut Vec<u8>) -> Result<Fed, TlsError> {
        self.track_records(cipher);
        // Never hand rustls an empty reader: it would take it for the peer's EOF.
        while !cipher.is_empty() {
            let taken = self
                .conn
                .read_tls(&mut cipher)
                .map_err(TlsError::Overflow)?;
            let state = self.conn.process_new_packets()?;
            self.take_plaintext(plain);
            // After `close_notify` rustls takes nothing more: what follows is
            // ignored, as a closed session has nothing more to say.
            self.peer_closed |= state.peer_has_closed();
            if self.peer_closed || taken == 0 {
                break;
            }
        }
        Ok(if self.peer_closed {
            Fed::PeerClosed
        } else {
            Fed::Open
        })
    }

    /// The peer sent `close_notify`: nothing more will come, whatever the socket
    /// still does. At a TCP EOF without it, what came may have been cut short by
    /// someone in between.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Part of a record has come and the rest has not: the peer is in the middle
    /// of sending something.
    pub fn mid_record(&self) -> bool {
        self.owed > 0 || self.header_seen > 0
    }

    /// Follows the record framing (a 5-byte header whose last two bytes are the
    /// length) over every ciphertext byte fed, for `mid_record`.
    fn track_records(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.owed > 0 {
                let n = bytes.len().min(usize::from(self.owed));
                self.owed -= n as u16;
                bytes = &bytes[n..];
                continue;
            }
            // Content type and version (bytes 0..3), then the length (3..5).
            let at = self.header_seen;
            if at >= 3 {
                self.header[usize::from(at - 3)] = bytes[0];
            }
            bytes = &bytes[1..];
            self.header_seen += 1;
            if self.header_seen == 5 {
                self.header_seen = 0;
                self.owed = u16::from_be_bytes(self.header);
            }
        }
    }

    /// Encrypts `plain` into `out`, after whatever output was waiting, and
    /// returns how much of it was taken: all of it once the handshake is over.
    /// Before that, rustls holds plaintext back, up to its buffer limit (64 KiB).
    pub fn seal(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> usize {
        let total = plain.len();
        self.drain_output(out);
        while !plain.is_empty() {
            // Each write's records are drained at once, so the writer refuses
            // more only while it holds plaintext back for the handshake.
            let taken = self.conn.writer().write(plain).unwrap_or(0);
            self.drain_output(out);
            if taken == 0 {
                break;
            }
            plain = &plain[taken..];
        }
        total - plain.len()
    }

    /// `seal` for several slices at once: they share records instead of each
    /// slice making its own. Returns how many bytes were taken (all of them once
    /// the handshake is over, unless more than rustls's buffer limit came at once).
    pub fn seal_vectored(&mut self, plain: &[std::io::IoSlice<'_>], out: &mut Vec<u8>) -> usize {
        self.drain_output(out);
        let taken = self.conn.writer().write_vectored(plain).unwrap_or(0);
        self.drain_output(out);
        taken
    }

    /// Moves every record rustls has waiting (handshake flights, tickets, alerts,
    /// key updates, sealed data) into `out`.
    pub fn drain_output(&mut self, out: &mut Vec<u8>) {
        // An empty write moves a key update we owe the peer (queued until we
        // next send data) into the output: it must not wait for data that may
        // never come.
        if !self.conn.is_handshaking() {
            let _ = self.conn.writer().write(&[]);
        }
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Says goodbye (`close_notify`) into `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain_output(out);
    }

    /// The handshake is not over yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// What was agreed, once the handshake is over.
    pub fn info(&self) -> Option<TlsInfo> {
        let version = self.conn.protocol_version()?.as_str()?;
        let cipher = self.conn.negotiated_cipher_suite()?.suite().as_str()?;
        Some(TlsInfo {
            version,
            cipher,
            resumed: self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }

    /// The name the client asked for (server side, once its hello arrived).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(server) => server.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The protocol agreed by ALPN, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The rustls connection, for what this wrapper does not cover.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn take_plaintext(&mut self, plain: &mut Vec<u8>) {
        let mut reader = self.conn.reader();
        loop {
            let n = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(chunk) => {
                    plain.extend_from_slice(chunk);
                    chunk.len()
                }
            };
            reader.consume(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::RootCertStore;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A self-signed certificate for `localhost`, and configs on both sides.
    fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        server.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    fn pair(versions: &[&'static rustls::SupportedProtocolVersion]) -> (TlsSession, TlsSession) {
        let (server, client) = configs(versions);
        (
            TlsSession::server(server).unwrap(),
            TlsSession::client(client, ServerName::try_from("localhost").unwrap()).unwrap(),
        )
    }

    /// Moves `bytes` from one side to the other in pieces of `step` bytes,
    /// collecting the plaintext that comes out.
    fn deliver(to: &mut TlsSession, bytes: &[u8], step: usize) -> (Vec<u8>, Fed) {
        let mut plain = Vec::new();
        let mut fed = Fed::Open;
        for piece in bytes.chunks(step.max(1)) {
            fed = to.feed(piece, &mut plain).unwrap();
        }
        (plain, fed)
    }

    /// Runs the handshake, each flight cut into pieces of `step` bytes.
    fn handshake(server: &mut TlsSession, client: &mut TlsSession, step: usize) {
        for _ in 0..10 {
            let mut out = Vec::new();
            client.drain_output(&mut out);
            assert!(deliver(server, &out, step).0.is_empty());
            let mut back = Vec::new();
            server.drain_output(&mut back);
            assert!(deliver(client, &back, step).0.is_empty());
            if !server.is_handshaking() && !client.is_handshaking() && back.is_empty() {
                return;
            }
        }
        panic!("the handshake did not end");
    }

    #[test]
    fn data_crosses_both_ways_whatever_the_cuts() {
        for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12]] {
            for step in [1, 2, 3, 7, 100, 5000, usize::MAX] {
                let (mut server, mut client) = pair(versions);
                handshake(&mut server, &mut client, step);
                let info = server.info().unwrap();
                assert_eq!(Some(info), client.info());
                assert!(!info.resumed);
                assert_eq!(server.server_name(), Some("localhost"));

                let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
                let mut wire = Vec::new();
                client.seal(request, &mut wire);
                assert_eq!(deliver(&mut server, &wire, step).0, request);

                let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
                let mut wire = Vec::new();
                server.seal(&big, &mut wire);
                assert_eq!(deliver(&mut client, &wire, step).0, big, "step {step}");
            }
        }
    }

    #[test]
    fn close_notify_is_seen_and_an_eof_without_it_is_not_clean() {
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]);
        handshake(&mut server, &mut client, usize::MAX);
        let mut wire = Vec::new();
        client.seal(b"last words", &mut wire);
        client.close(&mut wire);
        let (plain, fed) = deliver(&mut server, &wire, 3);
        assert_eq!(plain, b"last words");
        assert_eq!(fed, Fed::PeerClosed);
        assert!(server.peer_closed());

        // Data without close_notify: a TCP EOF now would not be a clean end.
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]);
        handshake(&mut server, &mut client, usize::MAX);
        let mut wire = Vec::new();
        client.seal(b"more to come", &mut wire);
        let (plain, fed) = deliver(&mut server, &wire, 3);
        assert_eq!((plain.as_slice(), fed), (&b"more to come"[..], Fed::Open));
        assert!(!server.peer_closed(), "a bare TCP EOF is not a clean close");
    }

    #[test]
    fn mid_record_follows_the_record_framing_byte_by_byte() {
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]);
        handshake(&mut server, &mut client, usize::MAX);
        let mut wire = Vec::new();
        client.seal(b"first", &mut wire);
        let first_end = 5 + usize::from(u16::from_be_bytes([wire[3], wire[4]]));
        client.seal(&[b'x'; 20_000], &mut wire);
        // 20,000 bytes are two records.
        let second_end = first_end
            + 5
            + usize::from(u16::from_be_bytes([
                wire[first_end + 3],
                wire[first_end + 4],
            ]));
        assert!(second_end < wire.len());
        let mut plain = Vec::new();
        for (i, byte) in wire.iter().enumerate() {
            server.feed(std::slice::from_ref(byte), &mut plain).unwrap();
            let boundary = [first_end, second_end, wire.len()].contains(&(i + 1));
            assert_eq!(server.mid_record(), !boundary, "after byte {i}");
        }
        assert_eq!(plain.len(), 5 + 20_000);
    }

    #[test]
    fn sealing_before_the_handshake_ends_takes_what_rustls_holds_back() {
        let (mut server, mut client) = pair(&[&rustls::version::TLS13]);
        let mut wire = Vec::new();
        let taken = client.seal(&[b'x'; 200_000], &mut wire);
        assert!(taken > 0 && taken < 200_000, "took {taken}");
        // The handshake (its ClientHello is in `wire`), after which what was held
        // back goes out.
        let mut received = Vec::new();
        let mut out = wire;
        for _ in 0..10 {
            client.drain_output(&mut out);
            server.feed(&out, &mut received).unwrap();
            out.clear();
            let mut back = Vec::new();
            server.drain_output(&mut back);
            client.feed(&back, &mut Vec::new()).unwrap();
        }
        assert!(!client.is_handshaking());
        assert_eq!(received, vec![b'x'; taken]);
        let mut wire = Vec::new();
        assert_eq!(client.seal(&[b'y'; 200_000], &mut wire), 200_000);
    }

    #[test]
    fn a_session_is_small_next_to_its_buffers() {
        // rustls's connection state inline; its buffers and keys are on the heap.
        let size = std::mem::size_of::<TlsSession>();
        assert!(size <= 2048, "TlsSession is {size} bytes");
    }

    #[test]
    fn garbage_is_an_error_with_an_alert_to_send() {
        let (mut server, _) = pair(&[&rustls::version::TLS13]);
        let mut plain = Vec::new();
        assert!(server
            .feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut plain)
            .is_err());
        let mut alert = Vec::new();
        server.drain_output(&mut alert);
        assert_eq!(alert.first(), Some(&0x15), "an alert record: {alert:?}");
        assert!(plain.is_empty());
    }

    #[test]
    fn a_session_ticket_resumes_the_next_session() {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let name = ServerName::try_from("localhost").unwrap();
        for resumed in [false, true] {
            let mut server = TlsSession::server(Arc::clone(&server_config)).unwrap();
            let mut client = TlsSession::client(Arc::clone(&client_config), name.clone()).unwrap();
            handshake(&mut server, &mut client, usize::MAX);
            // TLS 1.3 tickets come after the handshake: let the client read them.
            let mut wire = Vec::new();
            server.seal(b"hello", &mut wire);
            assert_eq!(deliver(&mut client, &wire, usize::MAX).0, b"hello");
            assert_eq!(server.info().unwrap().resumed, resumed);
        }
    }
}
