//! `listener::tls`: the server side of the TLS handshake on an accepted connection.
//!
//! Owns turning an [`Accepted`] plain connection of a TLS listener into one whose
//! stream is TLS: the handshake within `timeouts.header_read` (a client that
//! stalls is cut like a slow request head), its counters by outcome and reason,
//! and the alert or the plain-HTTP answer a failed client gets. Holds the
//! connection idle meanwhile, so a drain or a removed listener closes it. Knows
//! nothing of what the listener speaks once the handshake is over.

use std::io;
use std::time::{Duration, Instant};

use crate::log_debug;
use crate::observe::tls::TlsFailure;
use crate::protocol::tls::{TlsError, TlsSession};
use crate::proxy::proxied::Accepted;
use crate::shard::{ConnectionGuard, Shard, ShardTls};
use crate::stream::{linger_close, read_more, write_static, HandshakeError, Stream};

/// What a plain HTTP request sent to a TLS port gets, as nginx does.
const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 40\r\nconnection: close\r\n\r\nThis port speaks HTTPS, not plain HTTP.\n";
/// How long a plain HTTP client's answer may take to go out.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// First read size: a whole ClientHello usually fits.
const HELLO_READ: usize = 4 * 1024;
/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Runs the server handshake on `accepted` within `timeouts.header_read`.
/// `None` (counted and logged) when it failed: the connection is then closed.
pub async fn accept(
    shard: &Shard,
    guard: &ConnectionGuard,
    tls: &ShardTls,
    accepted: Accepted,
) -> Option<Accepted> {
    let peer = accepted.client;
    // A handshake is not a request: a drain or a removed listener may close it.
    shard.set_idle(guard, true);
    let result = handshake(shard, tls, accepted).await;
    shard.set_idle(guard, false);
    match result {
        Ok(accepted) => {
            shard.stats.tls.handshake(accepted.stream.tls_info());
            if let Some((_, how)) = tls.store().lookup(accepted.stream.server_name()) {
                shard.stats.tls.sni(how as usize);
            }
            Some(accepted)
        }
        Err((why, detail)) => {
            shard.stats.tls.failed(why);
            log_debug!(
                "shard {}: tls client {peer}: handshake failed: {} ({detail})",
                shard.index,
                why.as_str()
            );
            None
        }
    }
}

type Failed = (TlsFailure, String);

async fn handshake(shard: &Shard, tls: &ShardTls, accepted: Accepted) -> Result<Accepted, Failed> {
    let Accepted {
        stream,
        client,
        destination,
        early,
    } = accepted;
    let Stream::Plain(mut tcp) = stream else {
        return Err((TlsFailure::Other, "already TLS".into()));
    };
    let config = tls.config.clone().ok_or((
        TlsFailure::Other,
        "no TLS configuration on this shard".to_string(),
    ))?;
    let session = TlsSession::server(config).map_err(|e| (TlsFailure::Other, e.to_string()))?;
    let deadline = Instant::now() + shard.settings().header_read_timeout;
    // The first bytes say whether this is TLS at all (after a PROXY header, they
    // may have come with it).
    let mut incoming = early;
    if incoming.is_empty() {
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, read_more(&mut tcp, &mut incoming, HELLO_READ)).await {
            Ok(Ok(0)) => return Err((TlsFailure::Empty, "EOF".into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(io_failure(&e)),
            Err(_) => return Err((TlsFailure::Timeout, "timeouts.header_read".into())),
        }
    }
    if incoming[0] != HANDSHAKE_RECORD {
        if incoming[0].is_ascii_uppercase()
            && write_static(&mut tcp, PLAIN_HTTP, GOODBYE_TIMEOUT)
                .await
                .is_ok()
        {
            // Whatever else the client sent must not reset the answer away.
            linger_close(&mut tcp).await;
        }
        return Err((
            TlsFailure::NotTls,
            format!("first byte {:#04x}", incoming[0]),
        ));
    }
    match crate::stream::handshake(tcp, session, incoming, deadline).await {
        Ok((stream, plain)) => Ok(Accepted {
            stream: Stream::Tls(Box::new(stream)),
            client,
            destination,
            early: plain,
        }),
        Err(HandshakeError::Tls(e)) => {
            let why = match &e {
                TlsError::Protocol(e) => TlsFailure::of(e),
                TlsError::Overflow(_) => TlsFailure::BadMessage,
            };
            Err((why, e.to_string()))
        }
        Err(HandshakeError::Closed) => Err((TlsFailure::Closed, "EOF".into())),
        Err(HandshakeError::Io(e)) => Err(io_failure(&e)),
        Err(HandshakeError::TimedOut) => Err((TlsFailure::Timeout, "timeouts.header_read".into())),
    }
}

fn io_failure(e: &io::Error) -> Failed {
    let why = if e.kind() == io::ErrorKind::TimedOut {
        TlsFailure::Timeout
    } else {
        TlsFailure::Io
    };
    (why, e.to_string())
}
