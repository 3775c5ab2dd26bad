//! `protocol::h2::meter`: counts the frames an HTTP/2 client sends, by kind and
//! per second, and says when a kind goes past its cap: the floods the h2 crate
//! bounds in memory but not in CPU (CVE-2019-9512 pings, 9513 priority, 9515
//! settings, 9518 empty frames, 2023-44487 rapid reset; RFC 9113 §10.5).
//!
//! Owns [`FrameMeter`], a state machine over the plaintext bytes a server reads
//! (the client's preface, then 9-byte frame headers, payloads skipped), fed in any
//! chunks, and [`Caps`]. Reads headers only: the h2 crate parses and checks the
//! frames themselves. No I/O and no clock: the caller passes the time in whole
//! seconds.

/// Frames a client may send per second, by kind, before the connection is
/// closed with `GOAWAY(ENHANCE_YOUR_CALM)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// PING frames, acknowledgements included (a client acknowledges only the
    /// rare pings ringlb sends; h2 ignores the others, at a cost all the same).
    pub ping: u32,
    /// SETTINGS frames that are not acknowledgements.
    pub settings: u32,
    /// RST_STREAM frames (rapid reset).
    pub reset: u32,
    /// PRIORITY frames.
    pub priority: u32,
    /// Frames that carry nothing and end nothing: DATA without data (no payload,
    /// or padding alone) and without END_STREAM, HEADERS and CONTINUATION
    /// without payload or END_HEADERS.
    pub empty: u32,
    /// WINDOW_UPDATE frames.
    pub window_update: u32,
    /// Frames of a type RFC 9113 does not define (which h2 ignores).
    pub unknown: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            ping: 50,
            settings: 10,
            reset: 100,
            priority: 100,
            empty: 50,
            // A client acknowledges every half window it reads: at loopback
            // speed, with the 64 KiB default, tens of thousands a second.
            window_update: 100_000,
            unknown: 100,
        }
    }
}

/// Which cap a client went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Ping,
    Settings,
    Reset,
    Priority,
    Empty,
    WindowUpdate,
    Unknown,
}

impl Flood {
    /// For counters and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Flood::Ping => "ping",
            Flood::Settings => "settings",
            Flood::Reset => "reset",
            Flood::Priority => "priority",
            Flood::Empty => "empty_frames",
            Flood::WindowUpdate => "window_update",
            Flood::Unknown => "unknown_frames",
        }
    }
}

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const LAST_KNOWN: u8 = CONTINUATION;

/// SETTINGS and PING acknowledgements.
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;

/// Where the meter is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Inside the preface, this many bytes into it.
    Preface(usize),
    /// Inside a frame header, this many bytes into it.
    Header(usize),
    /// At a padded DATA frame's pad length, the frame this long in all: the
    /// byte that tells whether it carries any data.
    PadLength(u32),
    /// Inside a payload, this many bytes left.
    Payload(u32),
    /// Not an HTTP/2 client (a wrong preface): nothing more is metered, and h2
    /// closes the connection itself.
    Lost,
}

/// Frames counted this second, by kind (indexed like [`Flood`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ping: u32,
    pub settings: u32,
    pub reset: u32,
    pub priority: u32,
    pub empty: u32,
    pub window_update: u32,
    pub unknown: u32,
}

/// Frame counts per second over a client's bytes (see the module's comment).
#[derive(Debug, Clone)]
pub struct FrameMeter {
    caps: Caps,
    at: At,
    header: [u8; HEADER_LEN],
    /// The second `counts` are for.
    second: u64,
    counts: Counts,
    /// Frames seen in all, whole headers read.
    frames: u64,
    tripped: Option<Flood>,
}

impl FrameMeter {
    /// A meter expecting the client's preface first.
    pub fn new(caps: Caps) -> Self {
        FrameMeter {
            caps,
            at: At::Preface(0),
            header: [0; HEADER_LEN],
            second: 0,
            counts: Counts::default(),
            frames: 0,
            tripped: None,
        }
    }

    /// Meters `bytes`, the next the client sent, read during second `now`. Once
    /// a cap is passed it stays passed: the connection is to be closed.
    pub fn feed(&mut self, mut bytes: &[u8], now: u64) -> Result<(), Flood> {
        if let Some(flood) = self.tripped {
            return Err(flood);
        }
        if now != self.second {
            self.second = now;
            self.counts = Counts::default();
        }
        while !bytes.is_empty() {
            match self.at {
                At::Lost => return Ok(()),
                At::Preface(seen) => {
                    let n = bytes.len().min(PREFACE.len() - seen);
                    if bytes[..n] != PREFACE[seen..seen + n] {
                        self.at = At::Lost;
                        return Ok(());
                    }
                    bytes = &bytes[n..];
                    self.at = if seen + n == PREFACE.len() {
                        At::Header(0)
                    } else {
                        At::Preface(seen + n)
                    };
                }
                At::Header(have) => {
                    let n = bytes.len().min(HEADER_LEN - have);
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if have + n < HEADER_LEN {
                        self.at = At::Header(have + n);
                        continue;
                    }
                    let length =
                        u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]]);
                    let (kind, flags) = (self.header[3], self.header[4]);
                    self.frames += 1;
                    let padded = flags & FLAG_PADDED != 0 && flags & FLAG_END_STREAM == 0;
                    if kind == DATA && padded && length > 0 {
                        // Whether it carries data is in its first payload byte.
                        self.at = At::PadLength(length);
                        continue;
                    }
                    self.count(kind, flags, length)?;
                    self.at = if length == 0 {
                        At::Header(0)
                    } else {
                        At::Payload(length)
                    };
                }
                At::PadLength(length) => {
                    let pad = u32::from(bytes[0]);
                    bytes = &bytes[1..];
                    // Padding alone (or more padding than the frame holds, which
                    // h2 refuses): an empty frame.
                    let data = length.saturating_sub(1 + pad);
                    self.count(DATA, 0, data)?;
                    self.at = if length == 1 {
                        At::Header(0)
                    } else {
                        At::Payload(length - 1)
                    };
                }
                At::Payload(left) => {
                    let n = bytes.len().min(left as usize);
                    bytes = &bytes[n..];
                    let left = left - n as u32;
                    self.at = if left == 0 {
                        At::Header(0)
                    } else {
                        At::Payload(left)
                    };
                }
            }
        }
        Ok(())
    }

    /// Counts one frame by its header.
    fn count(&mut self, kind: u8, flags: u8, length: u32) -> Result<(), Flood> {
        let c = &mut self.counts;
        let caps = &self.caps;
        let (count, cap, flood) = match kind {
            PING => (&mut c.ping, caps.ping, Flood::Ping),
            SETTINGS if flags & FLAG_ACK == 0 => (&mut c.settings, caps.settings, Flood::Settings),
            RST_STREAM => (&mut c.reset, caps.reset, Flood::Reset),
            PRIORITY => (&mut c.priority, caps.priority, Flood::Priority),
            WINDOW_UPDATE => (
                &mut c.window_update,
                caps.window_update,
                Flood::WindowUpdate,
            ),
            DATA if length == 0 && flags & FLAG_END_STREAM == 0 => {
                (&mut c.empty, caps.empty, Flood::Empty)
            }
            HEADERS | CONTINUATION if length == 0 && flags & FLAG_END_HEADERS == 0 => {
                (&mut c.empty, caps.empty, Flood::Empty)
            }
            k if k > LAST_KNOWN => (&mut c.unknown, caps.unknown, Flood::Unknown),
            _ => return Ok(()),
        };
        *count += 1;
        if *count > cap {
            self.tripped = Some(flood);
            Err(flood)
        } else {
            Ok(())
        }
    }

    /// This second's counts.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Frames seen in all (whole headers).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The cap passed, if one was.
    pub fn tripped(&self) -> Option<Flood> {
        self.tripped
    }
}

/// One frame's bytes: a header and `payload`. For tests and fuzzing.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's first bytes: the preface, SETTINGS, a request, some DATA,
    /// two pings (one an ACK), a PING whose payload looks like a frame header.
    fn conversation() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &[0x82, 0x86, 0x84]));
        bytes.extend(frame(DATA, 0, 1, &[7; 300]));
        bytes.extend(frame(DATA, FLAG_PADDED, 1, &[2, b'd', 0, 0]));
        bytes.extend(frame(DATA, FLAG_END_STREAM, 1, &[]));
        bytes.extend(frame(PING, 0, 0, &frame(RST_STREAM, 0, 1, &[])[..8]));
        bytes.extend(frame(PING, FLAG_ACK, 0, &[0; 8]));
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]));
        bytes
    }

    fn expected() -> Counts {
        Counts {
            ping: 2,
            settings: 1,
            window_update: 1,
            ..Counts::default()
        }
    }

    #[test]
    fn counts_the_same_however_the_bytes_are_cut() {
        let bytes = conversation();
        for size in 1..=bytes.len() {
            let mut meter = FrameMeter::new(Caps::default());
            for chunk in bytes.chunks(size) {
                meter.feed(chunk, 1).unwrap();
            }
            assert_eq!(meter.counts(), expected(), "chunks of {size}");
            assert_eq!(meter.frames(), 8, "chunks of {size}");
        }
    }

    #[test]
    fn a_cap_trips_past_its_limit_within_one_second_and_stays_tripped() {
        let caps = Caps {
            reset: 3,
            ..Caps::default()
        };
        let mut meter = FrameMeter::new(caps);
        meter.feed(PREFACE, 10).unwrap();
        let reset = frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
        for _ in 0..3 {
            meter.feed(&reset, 10).unwrap();
        }
        // A new second starts the count again.
        for _ in 0..3 {
            meter.feed(&reset, 11).unwrap();
        }
        assert_eq!(meter.feed(&reset, 11), Err(Flood::Reset));
        assert_eq!(meter.tripped(), Some(Flood::Reset));
        assert_eq!(
            meter.feed(&frame(PING, FLAG_ACK, 0, &[0; 8]), 12),
            Err(Flood::Reset)
        );
    }

    #[test]
    fn every_kind_has_its_cap() {
        let one = Caps {
            ping: 1,
            settings: 1,
            reset: 1,
            priority: 1,
            empty: 1,
            window_update: 1,
            unknown: 1,
        };
        let floods = [
            (frame(PING, 0, 0, &[0; 8]), Flood::Ping),
            (frame(SETTINGS, 0, 0, &[]), Flood::Settings),
            (frame(RST_STREAM, 0, 1, &[0; 4]), Flood::Reset),
            (frame(PRIORITY, 0, 1, &[0; 5]), Flood::Priority),
            (frame(DATA, 0, 1, &[]), Flood::Empty),
            (frame(HEADERS, 0, 1, &[]), Flood::Empty),
            (frame(CONTINUATION, 0, 1, &[]), Flood::Empty),
            (
                frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 1]),
                Flood::WindowUpdate,
            ),
            (frame(0x20, 0, 0, &[1, 2]), Flood::Unknown),
        ];
        for (bytes, flood) in floods {
            let mut meter = FrameMeter::new(one);
            meter.feed(PREFACE, 0).unwrap();
            meter.feed(&bytes, 0).unwrap();
            assert_eq!(meter.feed(&bytes, 0), Err(flood), "{flood:?}");
        }
        // Padding alone is empty too; a PING is counted, acknowledgement or not.
        for bytes in [
            frame(DATA, FLAG_PADDED, 1, &[3, 0, 0, 0]),
            frame(DATA, FLAG_PADDED, 1, &[0]),
        ] {
            let mut meter = FrameMeter::new(one);
            meter.feed(PREFACE, 0).unwrap();
            meter.feed(&bytes, 0).unwrap();
            assert_eq!(meter.feed(&bytes, 0), Err(Flood::Empty));
        }
        let mut meter = FrameMeter::new(one);
        meter.feed(PREFACE, 0).unwrap();
        meter.feed(&frame(PING, FLAG_ACK, 0, &[0; 8]), 0).unwrap();
        assert_eq!(meter.feed(&frame(PING, 0, 0, &[0; 8]), 0), Err(Flood::Ping));
        // Settings acknowledgements, and frames that carry or end something, are free.
        let mut meter = FrameMeter::new(one);
        meter.feed(PREFACE, 0).unwrap();
        for _ in 0..10 {
            meter
                .feed(&frame(DATA, FLAG_PADDED, 1, &[1, b'x', 0]), 0)
                .unwrap();
            meter
                .feed(&frame(DATA, FLAG_PADDED | FLAG_END_STREAM, 1, &[0]), 0)
                .unwrap();
            meter.feed(&frame(SETTINGS, FLAG_ACK, 0, &[]), 0).unwrap();
            meter
                .feed(&frame(DATA, FLAG_END_STREAM, 1, &[]), 0)
                .unwrap();
            meter.feed(&frame(DATA, 0, 1, &[1]), 0).unwrap();
            meter
                .feed(&frame(HEADERS, FLAG_END_HEADERS, 3, &[]), 0)
                .unwrap();
        }
    }

    #[test]
    fn a_wrong_preface_stops_metering() {
        let mut meter = FrameMeter::new(Caps::default());
        meter.feed(b"GET / HTTP/1.1\r\n\r\n", 0).unwrap();
        meter
            .feed(&frame(PING, 0, 0, &[0; 8]).repeat(100), 0)
            .unwrap();
        assert_eq!(meter.frames(), 0);
    }
}
