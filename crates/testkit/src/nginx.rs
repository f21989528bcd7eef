//! A real nginx (Debian `nginx`) on a free loopback port, with a generated configuration in a
//! temporary directory; stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{Error, PeerGuard, launch, watched};

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    /// The generated `nginx.conf`.
    pub config_path: PathBuf,
    _child: PeerGuard,
    dir: tempfile::TempDir,
}

fn binary() -> Result<PathBuf, Error> {
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        return Ok(debian.to_path_buf());
    }
    crate::find_binary("nginx", "nginx")
}

/// Whether this process runs as root (then nginx's workers are told to stay root: the
/// temporary directory is private to this user).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Nginx {
    /// Starts nginx with `workers` worker processes and the `server { … }` blocks that
    /// `servers(port)` returns (they must `listen 127.0.0.1:{port}`), and waits until it accepts
    /// connections. Its logs are `error.log` in the temporary directory.
    pub fn start(workers: usize, servers: impl Fn(u16) -> String) -> Result<Nginx, Error> {
        let bin = binary()?;
        let user = if running_as_root() {
            "user root root;\n"
        } else {
            ""
        };
        let launched = launch(
            "nginx",
            |port| {
                let dir = tempfile::tempdir().map_err(|e| Error(e.to_string()))?;
                let d = dir.path().display();
                let config = format!(
                    "{user}daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                     events {{ worker_connections 4096; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                       fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                       default_type text/plain;\n{}\n}}\n",
                    servers(port)
                );
                let config_path = dir.path().join("nginx.conf");
                std::fs::write(&config_path, config).map_err(|e| Error(e.to_string()))?;
                let mut command = watched(&bin);
                command
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&config_path)
                    .arg("-e")
                    .arg(dir.path().join("error.log"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Ok((command, (dir, config_path)))
            },
            |(dir, _)| {
                let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                (log.contains("emerg") && !log.contains("Address already in use"))
                    .then(|| format!("it refused its configuration:\n{log}"))
            },
        )?;
        let (dir, config_path) = launched.state;
        Ok(Nginx {
            url: format!("http://127.0.0.1:{}", launched.port),
            port: launched.port,
            config_path,
            _child: launched.child,
            dir,
        })
    }

    /// The error log so far (for a failing test's message).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}
