//! A real `chromedriver` (Debian `chromium-driver`) on a free loopback port, and the
//! capabilities that start headless Chromium with a fresh profile; stopped on drop.

use std::path::PathBuf;
use std::process::Stdio;

use crate::{Error, PeerGuard, launch, watched};

/// A running chromedriver and a fresh Chromium profile directory.
#[derive(Debug)]
pub struct ChromeDriver {
    /// The WebDriver URL, `http://127.0.0.1:PORT`.
    pub url: String,
    profile: tempfile::TempDir,
    _child: PeerGuard,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it accepts connections.
    pub fn start() -> Result<ChromeDriver, Error> {
        let bin = crate::find_binary("chromedriver", "chromium-driver")?;
        let launched = launch(
            "chromedriver",
            |port| {
                let mut command = watched(&bin);
                command
                    .arg(format!("--port={port}"))
                    .arg("--allowed-ips=127.0.0.1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                Ok((command, ()))
            },
            |()| None,
        )?;
        Ok(ChromeDriver {
            url: format!("http://127.0.0.1:{}", launched.port),
            profile: tempfile::tempdir().map_err(|e| Error(e.to_string()))?,
            _child: launched.child,
        })
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
