//! The real `ringlb` binary as a child process: its configuration written to a
//! file, its stderr collected, its addresses read from its start-up line. For
//! tests that need a process of their own (signals, exit codes, process-wide
//! state such as a profiler's signal handler).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::WAIT;

/// Collects a child's stderr lines, and sends the address of its "listening on"
/// line (the proxy's start-up line) on the returned channel.
pub fn watch_stderr(
    child: &mut Child,
) -> (Arc<Mutex<Vec<String>>>, std::sync::mpsc::Receiver<String>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr piped");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let addr = line
                .split(" listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string);
            sink.lock().unwrap().push(line);
            if let Some(addr) = addr {
                let _ = tx.send(addr);
            }
        }
    });
    (log, rx)
}

/// The `ringlb` binary running a configuration, with its stderr collected.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    pub config: PathBuf,
}

impl Proxy {
    /// Starts `ringlb run` on `config` (TOML) and waits for its listening line.
    pub fn start(name: &str, config: &str) -> Proxy {
        Self::start_with(name, config, |_| {}).expect("proxy starts")
    }

    pub fn start_with(
        name: &str,
        config: &str,
        tune: impl FnOnce(&mut Command),
    ) -> Result<Proxy, (i32, Vec<String>)> {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringlb"));
        command
            .args(["run", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        tune(&mut command);
        let mut child = command.spawn().expect("spawn ringlb");
        let (log, rx) = watch_stderr(&mut child);
        match rx.recv_timeout(WAIT) {
            Ok(addr) => Ok(Proxy {
                child,
                addr: addr.parse().unwrap(),
                log,
                config: path,
            }),
            Err(_) => {
                // No start-up line in time: it exited, or it is stuck (or
                // says nothing at its log level); either way it ends here.
                let _ = child.kill();
                let status = child.wait().expect("ringlb exits");
                // Let the reader thread collect the last lines.
                std::thread::sleep(Duration::from_millis(50));
                let lines = log.lock().unwrap().clone();
                Err((status.code().unwrap_or(-1), lines))
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill() with a pid we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0);
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        wait_exit(&mut self.child).code().unwrap_or(-1)
    }

    pub fn log_contains(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Peak and current resident memory, in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config_for(backends: &[(&str, SocketAddr)], extra: &str) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshards = 1\n{extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [health_check]\nkind = \"none\"\n"
    );
    for (name, addr) in backends {
        text.push_str(&format!(
            "[[backends]]\nname = \"{name}\"\naddress = \"{addr}\"\n"
        ));
    }
    text
}

/// The admin address, from the start-up line.
pub fn admin_addr(proxy: &Proxy) -> SocketAddr {
    let log = proxy.log.lock().unwrap();
    log.iter()
        .find_map(|l| l.split(", admin on ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .expect("the start-up line names the admin address")
        .parse()
        .unwrap()
}

/// Waits (bounded) for a child to exit.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "ringlb did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}
