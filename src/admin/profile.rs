//! `admin::profile`: `GET /debug/profile?seconds=N&format=svg|folded`, a CPU
//! profile of the whole process (every shard, the control thread, health checks)
//! for a few seconds, as a flame graph SVG or as folded stacks.
//!
//! Owns the one-profile-at-a-time slot and the sampling (pprof: `SIGPROF` at
//! [`FREQUENCY`] Hz of the process's CPU time, each sample unwound and counted;
//! symbols resolved once at the end). Must not run on the admin thread, which
//! keeps answering `/stats` meanwhile, and must never leave the timer or the
//! signal handler installed: off, it costs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;

/// Samples per second of CPU time (prime, so it does not beat with timers).
pub const FREQUENCY: i32 = 99;
/// Longest profile one request may ask for.
pub const MAX_SECONDS: u64 = 60;
/// When `seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 10;

/// Why no profile was taken. All are the operator's to fix, and none is retried.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProfileError {
    /// `admin.profiling` is false (404).
    #[error("profiling is off: set admin.profiling = true and reload")]
    Off,
    /// This build has no profiler (404).
    #[error("this ringlb was built without the `profiling` feature")]
    NotBuilt,
    /// A bad `seconds` or `format` (400).
    #[error("{0}")]
    BadRequest(&'static str),
    /// Another profile is being taken (409).
    #[error("a profile is already being taken")]
    Busy,
    /// The sampler could not start or report (500).
    #[error("the profiler failed: {0}")]
    Failed(String),
}

impl ProfileError {
    /// The status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ProfileError::Off | ProfileError::NotBuilt => 404,
            ProfileError::BadRequest(_) => 400,
            ProfileError::Busy => 409,
            ProfileError::Failed(_) => 500,
        }
    }
}

/// What the profile is returned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A flame graph (`image/svg+xml`), to open in a browser.
    Svg,
    /// One line per distinct stack, `thread;outer;...;inner COUNT`, the input of
    /// flamegraph.pl, inferno and speedscope, and easy to diff.
    Folded,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Svg => "image/svg+xml",
            Format::Folded => "text/plain; charset=utf-8",
        }
    }
}

/// A profile asked for: how long, and in what form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub duration: Duration,
    pub format: Format,
}

impl Asked {
    /// Reads `seconds` (1 to [`MAX_SECONDS`], default [`DEFAULT_SECONDS`]) and
    /// `format` (`svg`, the default, or `folded`) from the query's values.
    pub fn parse(seconds: Option<&str>, format: Option<&str>) -> Result<Asked, ProfileError> {
        let seconds = match seconds {
            None => DEFAULT_SECONDS,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if (1..=MAX_SECONDS).contains(&n) => n,
                _ => return Err(ProfileError::BadRequest("seconds must be 1 to 60")),
            },
        };
        let format = match format {
            None | Some("svg") => Format::Svg,
            Some("folded") => Format::Folded,
            Some(_) => return Err(ProfileError::BadRequest("format must be svg or folded")),
        };
        Ok(Asked {
            duration: Duration::from_secs(seconds),
            format,
        })
    }
}

/// Whether a profile is being taken. Process-wide, like the sampler itself (one
/// `SIGPROF` handler, one timer), so an admin listener a reload moved shares it.
static TAKING: AtomicBool = AtomicBool::new(false);

/// The right to take the one profile at a time; given back when dropped.
#[derive(Debug)]
pub struct Held(());

/// Takes the slot, or says a profile is already being taken.
pub fn claim() -> Result<Held, ProfileError> {
    TAKING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| Held(()))
        .map_err(|_| ProfileError::Busy)
}

impl Drop for Held {
    fn drop(&mut self) {
        TAKING.store(false, Ordering::Release);
    }
}

/// A finished profile.
#[derive(Debug)]
pub struct Profile {
    pub body: Vec<u8>,
    /// Samples taken (each 1/[`FREQUENCY`] s of some thread's CPU time).
    pub samples: u64,
}

/// Samples the whole process for `asked.duration` (blocking the calling
/// thread), then resolves symbols and renders the profile.
#[cfg(feature = "profiling")]
pub fn take(asked: Asked, _slot: &Held) -> Result<Profile, ProfileError> {
    let failed = |e: pprof::Error| ProfileError::Failed(e.to_string());
    // Samples that land inside the unwinder (libgcc), the dynamic loader or the
    // vDSO are dropped rather than unwound from there: unwinding from inside the
    // unwinder can deadlock. pprof's usual list also drops the C library, but a
    // proxy spends most of its CPU in system calls, whose wrappers are there:
    // that dropped about 4 samples in 5 of a loaded shard (PERF.md). Unwinding
    // from the C library is safe here because ringlb never unwinds while
    // serving (release builds abort on a panic), so no thread is inside
    // `dl_iterate_phdr` on the unwinder's behalf when a sample comes. The list
    // names shared objects: in the static binary (the container image) only the
    // vDSO matches, and that same argument is what keeps it safe.
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libgcc", "ld-linux", "vdso"])
        .build()
        .map_err(failed)?;
    std::thread::sleep(asked.duration);
    let report = guard.report().build().map_err(failed)?;
    // Stop sampling before rendering, which takes CPU of its own.
    drop(guard);
    let samples = report.data.values().map(|&n| n.max(0) as u64).sum();
    let body = match asked.format {
        Format::Svg => {
            let mut svg = Vec::new();
            let mut options = pprof::flamegraph::Options::default();
            options.title = format!(
                "ringlb {}: CPU for {} s",
                env!("CARGO_PKG_VERSION"),
                asked.duration.as_secs()
            );
            report
                .flamegraph_with_options(&mut svg, &mut options)
                .map_err(failed)?;
            svg
        }
        Format::Folded => folded(&report).into_bytes(),
    };
    Ok(Profile { body, samples })
}

/// Without the profiler built in, there is nothing to take.
#[cfg(not(feature = "profiling"))]
pub fn take(_asked: Asked, _slot: &Held) -> Result<Profile, ProfileError> {
    Err(ProfileError::NotBuilt)
}

/// The report as folded stacks, thread first, outermost frame next, sorted so
/// that two profiles diff line by line.
#[cfg(feature = "profiling")]
fn folded(report: &pprof::Report) -> String {
    let mut lines: Vec<String> = report
        .data
        .iter()
        .map(|(frames, count)| {
            let mut line = frames.thread_name_or_id();
            for frame in frames.frames.iter().rev() {
                for symbol in frame.iter().rev() {
                    line.push(';');
                    line.push_str(&symbol.name());
                }
            }
            line.push_str(&format!(" {count}"));
            line
        })
        .collect();
    lines.sort_unstable();
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_bounded() {
        let asked = Asked::parse(None, None).unwrap();
        assert_eq!(asked.duration, Duration::from_secs(DEFAULT_SECONDS));
        assert_eq!(asked.format, Format::Svg);
        let folded = Asked::parse(Some("60"), Some("folded")).unwrap();
        assert_eq!(folded.duration, Duration::from_secs(60));
        assert_eq!(folded.format, Format::Folded);
        for bad in ["0", "61", "-1", "1.5", ""] {
            assert!(matches!(
                Asked::parse(Some(bad), None),
                Err(ProfileError::BadRequest(_))
            ));
        }
        assert!(Asked::parse(None, Some("pprof")).is_err());
    }

    #[test]
    fn one_profile_at_a_time() {
        let held = claim().unwrap();
        assert_eq!(claim().unwrap_err(), ProfileError::Busy);
        drop(held);
        assert!(claim().is_ok());
    }
}
