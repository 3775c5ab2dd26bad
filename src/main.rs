//! The `ringlb` command: parses arguments, loads the configuration and starts the
//! library. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ringlb::config::{self, BackendConfig, Config};
use ringlb::testkit::{h2_origin, origin};
use ringlb::{control, server, shard};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HELP: &str = "\
ringlb: a thread-per-core io_uring HTTP/1.1 load balancer

Usage: ringlb COMMAND [OPTIONS]   (ringlb -c FILE is ringlb run -c FILE)

Commands:
  run -c FILE          serve the configuration in FILE (--config FILE works too)
  check -c FILE        validate FILE and its certificates: a summary, or every error
  demo [--tls]         three origins on :9001-9003 behind :8080, admin :9900 (+ HTTPS :8443)
  origin --listen ADDR the small test origin [--name NAME] [--delay DUR] [--io MODE]
                       [--h2c: HTTP/2 with prior knowledge, and a gRPC echo service]
  help, --help         this text
  version, --version   the version

Signals: SIGTERM/SIGINT drain gracefully (a second one stops at once);
SIGHUP re-reads the configuration file and applies all of it (listeners, routes,
clusters, settings, the admin listener) but server.shards and server.io.
Environment: RINGLB_<SECTION>_<KEY> overrides one key, e.g. RINGLB_BALANCER_STRATEGY=least-conn.
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Demo {
        tls: bool,
    },
    Origin {
        listen: SocketAddr,
        name: String,
        io: config::IoMode,
        delay: std::time::Duration,
        h2c: bool,
    },
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command> {
    let mut config: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    let mut name = "origin".to_string();
    let mut io = config::IoMode::Auto;
    let mut delay = std::time::Duration::ZERO;
    let mut sub: Option<&str> = None;
    let mut tls = false;
    let mut h2c = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let mut value = || -> Result<String> {
            i += 1;
            args.get(i)
                .cloned()
                .with_context(|| format!("{arg} needs a value"))
        };
        match arg {
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "-V" | "--version" | "version" => return Ok(Command::Version),
            "-c" | "--config" => config = Some(value()?.into()),
            "--listen" => listen = Some(value()?),
            "--tls" => tls = true,
            "--h2c" => h2c = true,
            "--name" => name = value()?,
            "--delay" => {
                let text = value()?;
                delay =
                    config::parse_duration(&text).map_err(|e| anyhow::anyhow!("--delay: {e}"))?;
            }
            "--io" => {
                io = match value()?.as_str() {
                    "auto" => config::IoMode::Auto,
                    "io_uring" => config::IoMode::IoUring,
                    "epoll" => config::IoMode::Epoll,
                    other => bail!("--io: expected auto, io_uring or epoll, got {other:?}"),
                }
            }
            "run" | "check" | "demo" | "origin" if sub.is_none() => sub = Some(arg),
            _ => {
                if let Some(path) = arg.strip_prefix("--config=") {
                    config = Some(path.into());
                } else {
                    bail!("unexpected argument {arg:?} (see ringlb --help)");
                }
            }
        }
        i += 1;
    }
    match sub {
        Some("demo") => Ok(Command::Demo { tls }),
        Some("origin") => {
            let listen = listen.context("origin needs --listen ADDR")?;
            let listen = listen
                .parse()
                .with_context(|| format!("--listen: expected IP:port, got {listen:?}"))?;
            Ok(Command::Origin {
                listen,
                name,
                io,
                delay,
                h2c,
            })
        }
        Some("check") => Ok(Command::Check(config.context("check needs --config FILE")?)),
        Some("run") | None => match config {
            Some(path) => Ok(Command::Run(path)),
            None if sub.is_none() => Ok(Command::Help),
            None => bail!("run needs --config FILE"),
        },
        Some(other) => bail!("unknown command {other}"),
    }
}

fn serve(config: Config, path: Option<PathBuf>) -> Result<ExitCode> {
    control::apply_logging(&config.logging);
    let signals = server::SignalForwarder::install().context("cannot install signal handlers")?;
    let server = server::start_with_file(config, path)?;
    signals
        .forward(server.handle())
        .context("cannot start the signal thread")?;
    ringlb::notify::ready();
    let report = server.wait();
    Ok(if report.unfinished_connections == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn demo(tls: bool) -> Result<ExitCode> {
    let (driver, _) = shard::choose_driver(config::IoMode::Auto)?;
    let mut origins = Vec::new();
    let mut config = Config::default();
    config.listeners[0].address = "127.0.0.1:8080".parse()?;
    config.admin.listen = "127.0.0.1:9900".parse()?;
    for (i, port) in (9001..=9003).enumerate() {
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let name = format!("app{}", i + 1);
        origins.push(
            origin::spawn(address, &name, driver)
                .with_context(|| format!("demo origin {name} on {address}"))?,
        );
        config.clusters[0].backends.push(BackendConfig {
            name,
            address,
            weight: 1,
        });
    }
    let https = if tls {
        Some(demo_tls(&mut config)?)
    } else {
        None
    };
    println!(
        "ringlb demo: three origins on 127.0.0.1:9001-9003 behind the balancer.\n\n  \
         curl http://127.0.0.1:8080/            # app1, app2, app3 (each shard keeps its own turn)\n  \
         curl http://127.0.0.1:8080/delay/200ms # a slow request\n  \
         curl http://127.0.0.1:8080/status/503  # an origin error, passed through\n  \
         curl http://127.0.0.1:9900/healthz     # the admin listener\n  \
         wrk -c 64 -d 10s http://127.0.0.1:8080/\n"
    );
    if let Some(dir) = &https {
        println!(
            "HTTPS on 127.0.0.1:8443, with a self-signed certificate for localhost in {}:\n\n  \
             curl --cacert {}/cert.pem https://localhost:8443/\n",
            dir.display(),
            dir.display()
        );
    }
    println!("Ctrl-C stops it.");
    let code = serve(config, None)?;
    drop(origins);
    if let Some(dir) = https {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(code)
}

/// Adds an HTTPS listener on 127.0.0.1:8443 to the demo, with a self-signed
/// certificate for `localhost` and 127.0.0.1 made now and written to a new
/// directory (the key readable by this user only). Returns the directory.
fn demo_tls(config: &mut Config) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("cannot make a certificate")?;
    let dir = std::env::temp_dir().join(format!("ringlb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)
        .and_then(|mut f| f.write_all(certified.signing_key.serialize_pem().as_bytes()))
        .with_context(|| format!("cannot write {}", key.display()))?;
    config.form = config::Form::Full;
    let mut https = config::ListenerConfig::new(
        "https",
        "127.0.0.1:8443".parse()?,
        config::ListenerProtocol::Http,
    );
    https.tls = Some(config::ListenerTls {
        certificates: vec![config::CertificateFiles { cert, key }],
        default: Some("localhost".into()),
        min_version: config::TlsVersion::V1_2,
        alpn: vec!["http/1.1".into()],
    });
    config.listeners.push(https);
    let cluster = config.clusters[0].name.clone();
    config
        .routes
        .push(config::RouteConfig::catch_all("https", "https", &cluster));
    Ok(dir)
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args)? {
        Command::Help => {
            print!(
                "{HELP}\nOrigin routes:\n  {}\n\nOrigin routes with --h2c:\n  {}\n",
                origin::ROUTES,
                h2_origin::H2_ROUTES
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("ringlb {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(path) => match config::load(&path).and_then(|config| {
            // The certificate files, once the rules pass.
            let origin = path.display().to_string();
            let tls = ringlb::tls::material::TlsMaterial::load(
                &config,
                &origin,
                ringlb::tls::material::unix_now(),
            )?;
            Ok((config, tls))
        }) {
            Ok((config, tls)) => {
                println!("{}: ok\n{}", path.display(), config.summary());
                for warning in &tls.warnings {
                    println!("warning: {warning}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Run(path) => match config::load(&path) {
            Ok(config) => serve(config, Some(path)),
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Demo { tls } => demo(tls),
        Command::Origin {
            listen,
            name,
            io,
            delay,
            h2c,
        } => {
            let (driver, _) = shard::choose_driver(io)?;
            if h2c {
                eprintln!(
                    "h2c origin {name} listening on {listen} ({})",
                    driver.as_str()
                );
                h2_origin::run(listen, &name, driver)?;
            } else {
                eprintln!("origin {name} listening on {listen} ({})", driver.as_str());
                origin::run(listen, &name, driver, delay)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringlb: {e:#}");
            ExitCode::from(1)
        }
    }
}
