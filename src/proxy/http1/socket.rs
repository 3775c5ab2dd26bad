//! `proxy::http1::socket`: writes to the client, counted, within its timeout.
//!
//! Owns the two helpers every part of the connection writes to the client with;
//! the reads and writes themselves are [`crate::stream`]'s.

use crate::proxy::error::ProxyError;

use super::Downstream;

pub(super) async fn write_client(
    client: &mut Downstream,
    bytes: &'static [u8],
) -> Result<(), ProxyError> {
    client
        .stream
        .write_static(bytes, client.write_timeout)
        .await
        .map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += bytes.len() as u64;
    Ok(())
}

/// Writes all of `out` to the client and clears it, keeping its capacity.
pub(super) async fn write_all_client(
    client: &mut Downstream,
    out: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    if out.is_empty() {
        return Ok(());
    }
    let len = out.len();
    let result = client
        .stream
        .write_range(out, 0..len, client.write_timeout)
        .await;
    out.clear();
    result.map_err(|e| ProxyError::ClientIo(e.kind()))?;
    client.written_total += len as u64;
    Ok(())
}
