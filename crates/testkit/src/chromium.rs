//! A real `chromedriver` (Debian `chromium-driver`) on a free loopback port, and the
//! capabilities that start headless Chromium with a fresh profile; stopped on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, Error, free_port, wait_until};

/// A running chromedriver and a fresh Chromium profile directory.
#[derive(Debug)]
pub struct ChromeDriver {
    /// The WebDriver URL, `http://127.0.0.1:PORT`.
    pub url: String,
    profile: tempfile::TempDir,
    _child: ChildGuard,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it accepts connections.
    pub fn start() -> Result<ChromeDriver, Error> {
        let bin = crate::find_binary("chromedriver", "chromium-driver")?;
        for _attempt in 0..5 {
            let port = free_port()?;
            let child = Command::new(&bin)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Error(format!("starting chromedriver: {e}")))?;
            let mut guard = ChildGuard(child);
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            // Ready when it accepts; given up at once when it exited (a refused configuration).
            let up = wait_until(Duration::from_secs(20), || {
                !matches!(guard.0.try_wait(), Ok(None))
                    || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if up && matches!(guard.0.try_wait(), Ok(None)) {
                return Ok(ChromeDriver {
                    url: format!("http://127.0.0.1:{port}"),
                    profile: tempfile::tempdir().map_err(|e| Error(e.to_string()))?,
                    _child: guard,
                });
            }
            drop(guard);
        }
        Err(Error(
            "chromedriver did not start on loopback after 5 attempts".into(),
        ))
    }

    /// The Chromium binary (`/usr/bin/chromium` on Debian).
    pub fn chromium() -> Result<PathBuf, Error> {
        crate::find_binary("chromium", "chromium")
    }

    /// W3C capabilities for headless Chromium with the flags these machines need, a fresh
    /// profile, and `extra_args` (e.g. `--ignore-certificate-errors` for a test CA).
    pub fn capabilities(
        &self,
        extra_args: &[&str],
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,800",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", self.profile.path().display()));
        args.extend(extra_args.iter().map(|s| (*s).to_owned()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": Self::chromium()?.display().to_string(),
                "args": args,
            }),
        );
        Ok(caps)
    }
}
