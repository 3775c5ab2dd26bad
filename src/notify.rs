//! `notify`: telling the service manager what the process is doing.
//!
//! Owns systemd's notify protocol (`sd_notify`): one datagram to the socket named
//! by `NOTIFY_SOCKET` when ringlb is ready to serve, when it starts and ends a
//! reload, and when it begins to stop, so a `Type=notify` unit knows. Does
//! nothing when the variable is unset (not run by systemd). Never blocks, never
//! fails the caller: a manager that is gone is not ringlb's problem.

use std::os::unix::net::UnixDatagram;

/// The service is up: every listener accepts.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload has begun (`READY=1` follows when it is over, applied or refused).
pub fn reloading() {
    let message = format!(
        "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC={}",
        crate::sys::monotonic_micros()
    );
    send(&message);
}

/// A graceful shutdown has begun.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining connections");
}

fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    // `@name` is a socket in the abstract namespace.
    let _ = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|address| socket.send_to_addr(message.as_bytes(), &address))
        }
        None => socket.send_to(message.as_bytes(), &path),
    };
}
