//! The JWT authenticator of a configuration file, reloaded when the file changes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::Error;
use crate::authenticator::{Authenticator, Credentials, Outcome};
use crate::config::{AuthenticationConfiguration, MAX_FILE_BYTES};
use crate::jwt::{JwtAuthenticator, KeySourceFactory};

/// What the reloader last did, for a readiness or status endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Number of configurations loaded (1 after the initial load).
    pub generation: u64,
    /// SHA-256 (hex) of the file content in use.
    pub active_sha256: String,
    /// Why the last changed content was refused (the previous configuration stays in use);
    /// `None` once a good file is loaded.
    pub last_error: Option<String>,
}

struct Shared {
    path: PathBuf,
    keys: KeySourceFactory,
    current: ArcSwap<JwtAuthenticator>,
    status: Mutex<ReloadStatus>,
    /// SHA-256 of the content last tried, good or bad: a bad file is reported once.
    last_seen: Mutex<[u8; 32]>,
}

/// A [`JwtAuthenticator`] built from a file that is read again every `interval`; a changed
/// file that is valid replaces the configuration (the token cache starts empty), one that is
/// not leaves the old one in use, logs why, and shows it in [`ReloadStatus::last_error`].
/// The poller thread stops when this handle is dropped.
pub struct ReloadingJwtAuthenticator {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ReloadingJwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingJwtAuthenticator")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<(String, [u8; 32]), Error> {
    let io = |message: String| Error::Io {
        path: path.display().to_string(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| io(e.to_string()))?
        .len();
    if len > MAX_FILE_BYTES as u64 {
        return Err(io(format!(
            "the file is {len} bytes, more than the {MAX_FILE_BYTES} accepted"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| io(e.to_string()))?;
    let hash = crate::sha256(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| io("the file is not UTF-8".into()))?;
    Ok((text, hash))
}

fn build(text: &str, keys: &KeySourceFactory) -> Result<JwtAuthenticator, Error> {
    JwtAuthenticator::new(&AuthenticationConfiguration::from_yaml(text)?, keys)
}

impl ReloadingJwtAuthenticator {
    /// Loads `path` and starts polling it every `interval`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is invalid at start (there is no old configuration to keep).
    pub fn start(
        path: impl Into<PathBuf>,
        keys: KeySourceFactory,
        interval: Duration,
    ) -> Result<ReloadingJwtAuthenticator, Error> {
        let path = path.into();
        let (text, hash) = read(&path)?;
        let first = build(&text, &keys)?;
        let shared = Arc::new(Shared {
            path,
            keys,
            current: ArcSwap::from_pointee(first),
            status: Mutex::new(ReloadStatus {
                generation: 1,
                active_sha256: crate::hex(&hash),
                last_error: None,
            }),
            last_seen: Mutex::new(hash),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let poller = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("authn-config-reload".into())
            .spawn(move || {
                // Ends when the handle drops its sender.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    poller.poll();
                }
            })
            .map_err(|e| Error::Io {
                path: "authn-config-reload thread".into(),
                message: e.to_string(),
            })?;
        Ok(ReloadingJwtAuthenticator {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The configuration in use now.
    pub fn current(&self) -> Arc<JwtAuthenticator> {
        self.shared.current.load_full()
    }

    /// What the reloader last did.
    pub fn status(&self) -> ReloadStatus {
        lock(&self.shared.status).clone()
    }

    /// Checks the file now instead of waiting for the next poll.
    pub fn reload_now(&self) {
        self.shared.poll();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn poll(&self) {
        let (text, hash) = match read(&self.path) {
            Ok(read) => read,
            Err(e) => {
                self.refuse(&e);
                return;
            }
        };
        {
            let mut last_seen = lock(&self.last_seen);
            if *last_seen == hash {
                return;
            }
            *last_seen = hash;
        }
        match build(&text, &self.keys) {
            Ok(authenticator) => {
                self.current.store(Arc::new(authenticator));
                let mut status = lock(&self.status);
                status.generation += 1;
                status.active_sha256 = crate::hex(&hash);
                status.last_error = None;
                tracing::info!(path = %self.path.display(), generation = status.generation,
                    "authentication configuration reloaded");
            }
            Err(e) => self.refuse(&e),
        }
    }

    fn refuse(&self, e: &Error) {
        let message = e.to_string();
        let mut status = lock(&self.status);
        if status.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(path = %self.path.display(), error = %message,
                "authentication configuration not reloaded; the previous one stays in use");
        }
        status.last_error = Some(message);
    }
}

impl Drop for ReloadingJwtAuthenticator {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for ReloadingJwtAuthenticator {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let current = self.current();
        current.authenticate(credentials).await
    }

    fn authenticate_now(&self, credentials: &Credentials<'_>) -> Option<Outcome> {
        self.shared.current.load().authenticate_now(credentials)
    }
}
