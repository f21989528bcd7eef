//! Real kubectl for tests: each [`Kubectl`] has its own kubeconfig, `HOME` and cache directory
//! in a temporary directory, so commands never touch the user's and never share discovery
//! caches.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::Error;

/// kubectl 1.32 (what `kube-apiserver-recordings/kubectl-requests.jsonl` recorded): `$KUBECTL`,
/// else the gcloud packaging's `kubectl.1.32` beside a `kubectl` dispatcher (which would pick an
/// older kubectl for a v1.28 server), else `kubectl` on `PATH`; `None` without any.
pub fn binary() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(k));
    }
    let path = std::env::var_os("PATH")?;
    let on_path = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(&on_path).unwrap_or(on_path.clone());
    let pinned = real.with_file_name("kubectl.1.32");
    Some(if pinned.is_file() { pinned } else { on_path })
}

/// A kubeconfig for `server` (trusting `ca_pem`) with a bearer token.
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str, namespace: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: cluster\n  context:\n    cluster: cluster\n    user: user\n    namespace: {namespace}\ncurrent-context: cluster\n"
    )
}

/// kubectl with its own kubeconfig and directories.
#[derive(Debug)]
pub struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// What a kubectl command did.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1: killed, or it could not be run; the reason is in `stderr`).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    fn failed(reason: String) -> Output {
        Output {
            code: -1,
            stdout: String::new(),
            stderr: reason,
        }
    }
}

impl Kubectl {
    /// kubectl using `kubeconfig` (its text); `None` (and a line saying the test is skipped)
    /// when kubectl is not installed.
    ///
    /// # Errors
    ///
    /// The temporary directory cannot be made.
    pub fn new(kubeconfig: &str) -> Result<Option<Kubectl>, Error> {
        let Some(bin) = binary() else {
            println!("skipped: kubectl is not installed (set KUBECTL or put kubectl on PATH)");
            return Ok(None);
        };
        let dir = tempfile::tempdir().map_err(|e| Error(format!("temporary directory: {e}")))?;
        std::fs::write(dir.path().join("config"), kubeconfig)
            .map_err(|e| Error(format!("writing the kubeconfig: {e}")))?;
        Ok(Some(Kubectl { bin, dir }))
    }

    /// A kubectl command with these arguments (stdin, stdout and stderr piped; killed on drop).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", self.dir.path().join("config"))
            .env("HOME", self.dir.path())
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("cache").display()
            ))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs a command with `stdin` and extra environment, for at most 60 s.
    pub async fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = match c.spawn() {
            Ok(c) => c,
            Err(e) => return Output::failed(format!("running {}: {e}", self.bin.display())),
        };
        if let Some(mut input) = child.stdin.take()
            && let Err(e) = input.write_all(stdin.as_bytes()).await
        {
            return Output::failed(format!("writing kubectl's stdin: {e}"));
        }
        match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
            Ok(Ok(out)) => Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Ok(Err(e)) => Output::failed(format!("waiting for kubectl: {e}")),
            Err(_) => Output::failed("kubectl ran for more than 60 s".into()),
        }
    }

    /// Runs a command.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, "", &[]).await
    }

    /// `kubectl port-forward TARGET LOCAL:80` with extra environment, then `rounds` TCP
    /// connections to the local port, each sending a message that must come back (the echo
    /// "container" of the kube-apiserver double); kubectl is killed at the end.
    ///
    /// # Errors
    ///
    /// kubectl does not start forwarding, a connection fails, or an echo does not come back
    /// within 30 s or differs.
    pub async fn port_forward_echo(
        &self,
        target: &str,
        env: &[(&str, &str)],
        rounds: usize,
    ) -> Result<(), Error> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let fail = |what: String| Error(what);
        let local = crate::free_port()?;
        let mut command = self.command(&["port-forward", target, &format!("{local}:80")]);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| fail(format!("running kubectl: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("kubectl's stdout".into()))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let forwarding = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| fail("kubectl port-forward did not start within 30 s".into()))?
            .map_err(|e| fail(format!("reading kubectl: {e}")))?
            .unwrap_or_default();
        if !forwarding.contains(&format!("127.0.0.1:{local} -> 80")) {
            return Err(fail(format!("kubectl port-forward said {forwarding:?}")));
        }
        for round in 0..rounds {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local))
                .await
                .map_err(|e| fail(format!("connecting to the forwarded port: {e}")))?;
            let message = format!("through the tunnel, connection {round}");
            conn.write_all(message.as_bytes())
                .await
                .map_err(|e| fail(format!("writing: {e}")))?;
            let mut back = vec![0u8; message.len()];
            tokio::time::timeout(Duration::from_secs(30), conn.read_exact(&mut back))
                .await
                .map_err(|_| fail("no echo through port-forward within 30 s".into()))?
                .map_err(|e| fail(format!("reading the echo: {e}")))?;
            if back != message.as_bytes() {
                return Err(fail(format!(
                    "the echo differs: {:?}",
                    String::from_utf8_lossy(&back)
                )));
            }
        }
        let _ = child.kill().await;
        Ok(())
    }

    /// Writes a file beside the kubeconfig and returns its path.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn file(&self, name: &str, content: &str) -> Result<String, Error> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).map_err(|e| Error(format!("writing {name}: {e}")))?;
        Ok(path.display().to_string())
    }
}
