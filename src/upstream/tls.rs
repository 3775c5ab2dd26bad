//! `upstream::tls`: TLS to a cluster's backends, on one shard.
//!
//! Owns a cluster's client configuration on a shard ([`UpstreamTls`]: its own
//! resumption cache, built from the material the control thread loaded) and the
//! client handshake on a new upstream connection, within the cluster's
//! `timeouts.connect`, a failure named by its reason. Never shared across shards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::log_debug;
use crate::protocol::tls::{TlsError, TlsSession};
use crate::proxy::error::ProxyError;
use crate::stream::{self, HandshakeError, Stream};
use crate::tls::material::ClusterMaterial;

/// A cluster's TLS to its backends on one shard.
#[derive(Debug)]
pub struct UpstreamTls {
    material: Arc<ClusterMaterial>,
    /// Offers ALPN `h2` alone (an HTTP/2 cluster), else `http/1.1`.
    h2: bool,
    /// `None` when it could not be built: then every handshake fails (never a
    /// plain connection to a cluster that asked for TLS).
    config: Option<Arc<ClientConfig>>,
}

impl UpstreamTls {
    /// This shard's configuration for a cluster's `material`; `h2`: the cluster
    /// speaks HTTP/2 to its backends, and a handshake must agree on ALPN `h2`.
    pub fn new(material: &Arc<ClusterMaterial>, h2: bool) -> UpstreamTls {
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let config = match material.client_config(alpn) {
            Ok(config) => Some(config),
            Err(e) => {
                crate::log_error!(
                    "cluster {}: cannot build its TLS configuration ({e}); its connections fail",
                    material.cluster
                );
                None
            }
        };
        UpstreamTls {
            material: Arc::clone(material),
            h2,
            config,
        }
    }

    /// Whether it was built from `material`, or from material with the same
    /// contents (a reload reads the files again).
    pub fn built_from(&self, material: &Arc<ClusterMaterial>, h2: bool) -> bool {
        self.h2 == h2 && (Arc::ptr_eq(&self.material, material) || self.material.same_as(material))
    }

    /// The client side of a handshake with the backend at `address` over `tcp`,
    /// finished by `deadline`. The name verified (and sent as SNI) is the
    /// cluster's `server_name`, else the backend's address.
    pub async fn handshake(
        &self,
        tcp: monoio::net::TcpStream,
        address: SocketAddr,
        deadline: Instant,
    ) -> Result<Stream, ProxyError> {
        let name = self
            .material
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
        let config = self
            .config
            .clone()
            .ok_or(ProxyError::UpstreamTls("other"))?;
        let session =
            TlsSession::client(config, name).map_err(|_| ProxyError::UpstreamTls("other"))?;
        match stream::handshake(tcp, session, Vec::new(), deadline).await {
            // Whatever a backend says before it is asked is not HTTP: ignored.
            Ok((stream, _)) => {
                let stream = Stream::Tls(Box::new(stream));
                // An HTTP/2 cluster's backend must agree to speak it.
                if self.h2 && stream.alpn() != Some(b"h2") {
                    log_debug!("tls to backend {address}: ALPN h2 was not agreed");
                    return Err(ProxyError::UpstreamTls("no_h2"));
                }
                Ok(stream)
            }
            Err(HandshakeError::TimedOut) => Err(ProxyError::ConnectTimeout),
            Err(HandshakeError::Closed) => Err(ProxyError::UpstreamTls("closed")),
            Err(HandshakeError::Io(e)) => Err(ProxyError::UpstreamIo(e.kind())),
            Err(HandshakeError::Tls(e)) => {
                log_debug!("tls to backend {address}: {e}");
                Err(ProxyError::UpstreamTls(reason(&e)))
            }
        }
    }
}

/// Why a handshake with a backend failed, for counters and logs.
fn reason(error: &TlsError) -> &'static str {
    use rustls::Error as E;
    match error {
        TlsError::Protocol(E::InvalidCertificate(_)) => "certificate",
        TlsError::Protocol(E::AlertReceived(_)) => "server_alert",
        TlsError::Protocol(E::PeerIncompatible(_)) => "incompatible",
        TlsError::Protocol(
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError
            | E::PeerSentOversizedRecord,
        )
        | TlsError::Overflow(_) => "bad_message",
        TlsError::Protocol(_) => "other",
    }
}
