//! `logging`: one line per event on stderr, as text for people or JSON for machines.
//!
//! Owns the process-wide level and format, set once at start (and on reload). Called
//! from every thread through the `log_*!` macros, which check the level before any
//! formatting, so a disabled level costs one relaxed atomic load. Never panics and
//! never blocks on anything but stderr's lock.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How important a line is. Lower is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Text for people, JSON (one object per line) for log pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the level and format for the whole process.
pub fn init(level: Level, format: Format) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    FORMAT.store(
        match format {
            Format::Text => 0,
            Format::Json => 1,
        },
        Ordering::Relaxed,
    );
}

/// Whether a line at `level` would be written.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line. Use the `log_*!` macros, which check `enabled` first.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    let mut line = String::with_capacity(128);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ts = Timestamp(now.as_secs(), now.subsec_millis());
    if FORMAT.load(Ordering::Relaxed) == 1 {
        let mut message = String::with_capacity(96);
        let _ = message.write_fmt(args);
        let _ = write!(
            line,
            "{{\"timestamp\":\"{ts}\",\"level\":\"{}\",\"message\":\"",
            level.as_str()
        );
        escape_json(&message, &mut line);
        line.push_str("\"}\n");
    } else {
        let _ = write!(line, "{ts} {:<5} ", level.as_str().to_ascii_uppercase());
        let _ = line.write_fmt(args);
        line.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Appends `s` to `out` with JSON string escaping.
pub fn escape_json(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends the current time (RFC 3339, UTC, milliseconds) to `out`.
pub fn write_now(out: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(out, "{}", Timestamp(now.as_secs(), now.subsec_millis()));
}

/// Whether lines are written as JSON.
pub fn json() -> bool {
    FORMAT.load(Ordering::Relaxed) == 1
}

/// RFC 3339 UTC time with milliseconds, from seconds since the epoch.
struct Timestamp(u64, u32);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400;
        let rem = self.0 % 86_400;
        // Civil-from-days (Howard Hinnant's algorithm), valid for any date after 1970.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            self.1
        )
    }
}

/// Logs at error level.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => {
        if $crate::observe::logging::enabled($crate::observe::logging::Level::Error) {
            $crate::observe::logging::write($crate::observe::logging::Level::Error, format_args!($($arg)*));
        }
    };
}

/// Logs at warn level.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => {
        if $crate::observe::logging::enabled($crate::observe::logging::Level::Warn) {
            $crate::observe::logging::write($crate::observe::logging::Level::Warn, format_args!($($arg)*));
        }
    };
}

/// Logs at info level.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => {
        if $crate::observe::logging::enabled($crate::observe::logging::Level::Info) {
            $crate::observe::logging::write($crate::observe::logging::Level::Info, format_args!($($arg)*));
        }
    };
}

/// Logs at debug level.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => {
        if $crate::observe::logging::enabled($crate::observe::logging::Level::Debug) {
            $crate::observe::logging::write($crate::observe::logging::Level::Debug, format_args!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(Timestamp(0, 0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_305_600 + 3_723, 45).to_string(),
            "2026-11-22T01:02:03.045Z"
        );
        assert_eq!(
            Timestamp(951_782_400, 0).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn json_escaping() {
        let mut out = String::new();
        escape_json("a\"b\\c\nd\u{1}", &mut out);
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u0001");
    }
}
