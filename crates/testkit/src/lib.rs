//! Test helpers for portcullis: real peers started on free loopback ports and stopped on drop.
//! Only loopback addresses are ever used.
//!
//! - [`kube_apiserver::Double`]: an in-process kube-apiserver double built to the recordings of
//!   a real v1.28.4 server (discovery, RBAC and core kinds, watch, server-side apply,
//!   impersonation, access reviews, exec/attach/port-forward over WebSocket and SPDY/3.1).
//! - [`envtest::KubeApiServer`]: the real kube-apiserver of `KUBEBUILDER_ASSETS` with etcd.
//! - [`kubectl::Kubectl`]: real kubectl with its own kubeconfig and directories.
//! - [`Etcd`]: a real etcd.
//! - [`nginx::Nginx`], [`caddy::Caddy`]: real reverse proxies with generated configurations.
//! - [`chromium::ChromeDriver`]: chromedriver with headless Chromium capabilities.
//! - [`slapd::Slapd`]: a real OpenLDAP slapd with TLS and a fixture directory.
#![deny(missing_docs)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod caddy;
pub mod chromium;
pub mod envtest;
pub mod kube_apiserver;
pub mod kubectl;
pub mod nginx;
pub mod rbac_dump;
pub mod slapd;

/// Errors starting a peer.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A free TCP port on 127.0.0.1 (bound and released; a later bind by the peer may race with
/// another process, which the launchers detect by their readiness check).
pub fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error(format!("no free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error(e.to_string()))
}

/// Polls `probe` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn find_binary(name: &str, package: &str) -> Result<PathBuf, Error> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            Error(format!(
                "`{name}` is not installed: run `cargo xtask deps` (or apt-get install {package})"
            ))
        })
}

/// A real etcd on free loopback ports with a temporary data directory.
#[derive(Debug)]
pub struct Etcd {
    /// Client URL, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it accepts client connections.
    pub fn start() -> Result<Etcd, Error> {
        let bin = find_binary("etcd", "etcd-server")?;
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| Error(e.to_string()))?;
            let client = free_port()?;
            let peer = free_port()?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(&bin)
                .arg("--name=test")
                .arg(format!("--data-dir={}", dir.path().display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=test={peer_url}"))
                .arg("--log-level=error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Error(format!("starting etcd: {e}")))?;
            let mut guard = ChildGuard(child);
            let addr: SocketAddr = ([127, 0, 0, 1], client).into();
            let up = wait_until(Duration::from_secs(20), || {
                matches!(guard.0.try_wait(), Ok(None))
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if up && matches!(guard.0.try_wait(), Ok(None)) {
                return Ok(Etcd {
                    endpoint: client_url,
                    _child: guard,
                    _dir: dir,
                });
            }
            // Port taken between probe and bind, or a slow start: try again on new ports.
            drop(guard);
        }
        Err(Error(
            "etcd did not start on loopback after 5 attempts".into(),
        ))
    }
}

/// A peer started through [`watched`]: stopped (SIGTERM, then SIGKILL after ten seconds) when
/// dropped, and also when this process ends without dropping it (a peer kept in a `static`, a
/// test killed at its timeout), because its wrapper sees its standard input close.
#[derive(Debug)]
pub struct PeerGuard(Child);

impl Drop for PeerGuard {
    fn drop(&mut self) {
        // End of input: the wrapper sends SIGTERM to the peer and exits when it has.
        drop(self.0.stdin.take());
        let child = &mut self.0;
        if !wait_until(Duration::from_secs(10), || {
            !matches!(child.try_wait(), Ok(None))
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// The wrapper: runs the peer (`$0 $@`), stops it with SIGTERM once its own standard input
/// reaches its end, and exits with the peer's status when the peer exits by itself. (A
/// background list's input would be `/dev/null`; the watcher reads the wrapper's through fd 3.)
const WRAPPER: &str = r#"exec 3<&0
"$0" "$@" &
peer=$!
( read -r _ <&3; kill -TERM "$peer" 2>/dev/null ) &
watcher=$!
wait "$peer"
status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;

/// A command running `program` under the wrapper that stops it when this process goes away
/// (add the peer's arguments to it).
pub(crate) fn watched(program: &std::path::Path) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(WRAPPER)
        .arg(program)
        .stdin(std::process::Stdio::piped());
    command
}

/// A peer process listening on a free loopback port.
pub(crate) struct Launched<T> {
    pub(crate) child: PeerGuard,
    pub(crate) port: u16,
    pub(crate) state: T,
}

/// Starts a peer on a free loopback port: `prepare(port)` writes its configuration and returns
/// the command (from [`watched`]) and what the peer keeps (its temporary directory). Ready when
/// it accepts on the port. A peer that exits is given up at once: when `refused(&state)` finds
/// why (a refused configuration) that is the error; otherwise the port was likely taken
/// between probe and bind, and it is tried again on a new port (5 times).
pub(crate) fn launch<T>(
    what: &str,
    mut prepare: impl FnMut(u16) -> Result<(Command, T), Error>,
    refused: impl Fn(&T) -> Option<String>,
) -> Result<Launched<T>, Error> {
    for _attempt in 0..5 {
        let port = free_port()?;
        let (mut command, state) = prepare(port)?;
        let child = command
            .spawn()
            .map_err(|e| Error(format!("starting {what}: {e}")))?;
        let mut child = PeerGuard(child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let up = wait_until(Duration::from_secs(20), || {
            !matches!(child.0.try_wait(), Ok(None))
                || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if up && matches!(child.0.try_wait(), Ok(None)) {
            return Ok(Launched { child, port, state });
        }
        drop(child);
        if let Some(why) = refused(&state) {
            return Err(Error(format!("{what} did not start: {why}")));
        }
    }
    Err(Error(format!(
        "{what} did not start on loopback after 5 attempts"
    )))
}

/// The machine a benchmark ran on, for its report: core count and CPU model.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cores} cores, {cpu}")
}
