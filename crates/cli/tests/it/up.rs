//! `portcullis up`, then `apply`/`get`/`delete` round trips with the CLI and with kubectl.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A `portcullis up` child process, terminated on drop.
pub(crate) struct Up {
    child: Child,
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
    /// The startup banner, from the URL line to the `try:` line.
    pub(crate) banner: Vec<String>,
}

impl Up {
    pub(crate) fn start() -> Up {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "up",
            "--store",
            "memory",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path());
        Up::spawn(cmd, dir)
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Up {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            assert!(
                Instant::now() < deadline,
                "portcullis up did not report its URL"
            );
            let line = lines.next().expect("portcullis up exited early").unwrap();
            if let Some(url) = line.strip_prefix("portcullis is running at ") {
                break url.trim().to_owned();
            }
        };
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let last = line.starts_with("  try:");
            banner.push(line);
            if last {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Up {
            child,
            url,
            dir,
            banner,
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.conf")
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.kubeconfig())
            .output()
            .unwrap()
    }

    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "portcullis up ignored SIGTERM");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const WORKSPACE: &str = "apiVersion: portcullis.dev/v1alpha1
kind: Workspace
metadata:
  name: team-a
  labels:
    env: prod
spec:
  displayName: Team A
";

#[test]
fn up_prints_where_it_runs_and_stops_cleanly_on_sigterm() {
    let up = Up::start();
    assert!(up.url.starts_with("https://127.0.0.1:"), "{}", up.url);
    assert!(up.dir.path().join("pki/ca.crt").exists());
    assert!(up.kubeconfig().exists());
    let status = up.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn cli_apply_get_delete_round_trip() {
    let up = Up::start();
    let file = write(up.dir.path(), "ws.yaml", WORKSPACE);
    let f = file.to_str().unwrap();
    assert_eq!(
        ok(&up.cli(&["apply", "-f", f])).trim(),
        "workspace.portcullis.dev/team-a created"
    );
    assert_eq!(
        ok(&up.cli(&["apply", "-f", f])).trim(),
        "workspace.portcullis.dev/team-a unchanged"
    );
    let changed = WORKSPACE.replace("Team A", "Team A (renamed)");
    let file2 = write(up.dir.path(), "ws2.yaml", &changed);
    assert_eq!(
        ok(&up.cli(&["apply", "-f", file2.to_str().unwrap()])).trim(),
        "workspace.portcullis.dev/team-a configured"
    );

    let table = ok(&up.cli(&["get", "workspaces"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("team-a"), "{table}");
    let yaml = ok(&up.cli(&["get", "ws", "team-a", "-o", "yaml"]));
    assert!(yaml.contains("displayName: Team A (renamed)"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&ok(&up.cli(&[
        "get",
        "workspaces",
        "-l",
        "env=prod",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    let none: serde_json::Value = serde_json::from_str(&ok(&up.cli(&[
        "get",
        "workspaces",
        "-l",
        "env!=prod",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);

    assert_eq!(
        ok(&up.cli(&["delete", "workspace", "team-a"])).trim(),
        "workspace.portcullis.dev \"team-a\" deleted"
    );
    let gone = up.cli(&["get", "workspace", "team-a"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("not found"),
        "{gone:?}"
    );
}

#[test]
fn apply_reports_validation_errors_with_the_field_path() {
    let up = Up::start();
    let bad = write(
        up.dir.path(),
        "bad.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: Team_A\nspec: {}\n",
    );
    let out = up.cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metadata.name"), "{err}");
    let unknown = write(
        up.dir.path(),
        "unknown.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: ok\nspec:\n  colour: red\n",
    );
    let out = up.cli(&["apply", "-f", unknown.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.colour"), "{err}");
}

/// kubectl is a real client of the management API: discovery, tables, get by name, delete.
#[test]
fn kubectl_gets_workspaces_with_admin_conf() {
    let up = Up::start();
    let file = write(up.dir.path(), "ws.yaml", WORKSPACE);
    ok(&up.cli(&["apply", "-f", file.to_str().unwrap()]));
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(up.kubeconfig())
            .args(args)
            .env("HOME", up.dir.path())
            .output()
            .expect("kubectl is installed by `cargo xtask test`")
    };
    let table = ok(&kubectl(&["get", "workspaces"]));
    assert!(
        table.contains("NAME") && table.contains("team-a"),
        "{table}"
    );
    let one = ok(&kubectl(&[
        "get",
        "workspace",
        "team-a",
        "-o",
        "jsonpath={.spec.displayName}",
    ]));
    assert_eq!(one, "Team A");
    let missing = kubectl(&["get", "workspace", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{missing:?}"
    );
    ok(&kubectl(&["delete", "workspace", "team-a"]));
    let after = ok(&kubectl(&["get", "workspaces", "-o", "name"]));
    assert_eq!(after.trim(), "");

    // kubectl auth can-i sends its reviews as protobuf.
    let yes = kubectl(&["auth", "can-i", "create", "workspaces.portcullis.dev"]);
    assert_eq!(
        String::from_utf8_lossy(&yes.stdout).trim(),
        "yes",
        "{yes:?}"
    );
    assert!(yes.status.success());
    let no = kubectl(&[
        "auth",
        "can-i",
        "delete",
        "workspaces.portcullis.dev",
        "--as",
        "bob",
    ]);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no", "{no:?}");
    let rules = ok(&kubectl(&["auth", "can-i", "--list", "-n", "default"]));
    assert!(rules.contains("*.*"), "{rules}");
}

#[test]
fn serve_reads_a_config_file_and_rejects_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write(
        dir.path(),
        "portcullis.yaml",
        &format!(
            "dataDir: {}\nlisten: 127.0.0.1:0\nstore: {{ type: redb }}\nhosts: [mgmt.example.com]\n",
            data.display()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--config").arg(&config);
    let up = Up::spawn(cmd, dir);
    assert!(data.join("portcullis.redb").exists());
    assert!(data.join("admin.conf").exists());
    let table = ok(&Command::new(BIN)
        .args(["get", "workspaces", "--config"])
        .arg(data.join("admin.conf"))
        .output()
        .unwrap());
    assert_eq!(table, "");
    drop(up);

    let bad_dir = tempfile::tempdir().unwrap();
    let bad = write(
        bad_dir.path(),
        "bad.yaml",
        "listen: 127.0.0.1:0\nlisten_port: 9\n",
    );
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_port"), "{err}");
}

/// kubectl's client-side apply (create, then merge patch), strict server-side field validation
/// through the OpenAPI v3 document, and `explain` from the same document.
#[test]
fn kubectl_apply_and_explain_use_the_openapi_document() {
    let up = Up::start();
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(up.kubeconfig())
            .args(args)
            .env("HOME", up.dir.path())
            .output()
            .expect("kubectl is installed by `cargo xtask test`")
    };
    let file = write(up.dir.path(), "ws.yaml", WORKSPACE);
    let f = file.to_str().unwrap();
    assert_eq!(
        ok(&kubectl(&["apply", "-f", f])).trim(),
        "workspace.portcullis.dev/team-a created"
    );
    assert_eq!(
        ok(&kubectl(&["apply", "-f", f])).trim(),
        "workspace.portcullis.dev/team-a unchanged"
    );
    let changed = write(
        up.dir.path(),
        "ws2.yaml",
        &WORKSPACE.replace("Team A", "Team B"),
    );
    assert_eq!(
        ok(&kubectl(&["apply", "-f", changed.to_str().unwrap()])).trim(),
        "workspace.portcullis.dev/team-a configured"
    );
    assert_eq!(
        ok(&kubectl(&[
            "get",
            "ws",
            "team-a",
            "-o",
            "jsonpath={.spec.displayName}"
        ])),
        "Team B"
    );
    let bad = write(
        up.dir.path(),
        "bad.yaml",
        "apiVersion: portcullis.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: bad\nspec:\n  colour: red\n",
    );
    let out = kubectl(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.colour"),
        "{out:?}"
    );
    let explained = ok(&kubectl(&["explain", "workspace"]));
    assert!(explained.contains("KIND:       Workspace"), "{explained}");
}

/// Without `--policy`, can-i asks the running management API (SelfSubjectAccessReview, or
/// SubjectAccessReview with `--as`).
#[test]
fn can_i_asks_the_management_api() {
    let up = Up::start();
    let ask = |args: &[&str]| {
        let out = up.cli(&[&["can-i"], args].concat());
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(
        ask(&["delete", "workspaces.portcullis.dev", "team-a"]),
        (0, "yes".into())
    );
    assert_eq!(
        ask(&["list", "workspaces.portcullis.dev", "--as", "bob"]),
        (1, "no".into())
    );
    assert_eq!(
        ask(&[
            "get",
            "/healthz",
            "--as",
            "bob",
            "--as-group",
            "system:authenticated"
        ]),
        (0, "yes".into())
    );
}

#[test]
fn who_can_and_auth_rules_read_the_management_planes_rbac() {
    let up = Up::start();
    let out = up.cli(&[
        "who-can",
        "delete",
        "workspaces.portcullis.dev",
        "-o",
        "json",
    ]);
    let answers: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let subjects: Vec<(String, String, String)> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["name"].as_str().unwrap().to_owned(),
                a["binding"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The bootstrap binding: the break-glass group and the static admin.
    for (kind, name) in [
        ("Group", "portcullis:admins"),
        ("User", "admin@portcullis.invalid"),
    ] {
        assert!(
            subjects
                .iter()
                .any(|(k, n, b)| k == kind && n == name && b.contains("portcullis:admins")),
            "{kind} {name} in {subjects:?}"
        );
    }
    let out = up.cli(&["who-can", "impersonate", "users", "-n", "nowhere"]);
    assert!(ok(&out).contains("portcullis:admins"));

    let out = up.cli(&[
        "auth",
        "rules",
        "--as",
        "admin@portcullis.invalid",
        "-n",
        "default",
        "-o",
        "json",
    ]);
    let rules: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(rules["resourceRules"][0]["verbs"], serde_json::json!(["*"]));
    let out = up.cli(&[
        "auth", "rules", "--as", "nobody", "-n", "default", "-o", "json",
    ]);
    let rules: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(
        !rules["resourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["verbs"] == serde_json::json!(["*"])),
        "{rules}"
    );
}

#[test]
fn admin_reset_password_rotates_the_static_admins_password() {
    let up = Up::start();
    let first = std::fs::read_to_string(up.dir.path().join("admin-password")).unwrap();
    let out = up.cli(&["admin", "reset-password"]);
    let new = ok(&out);
    let new = new.trim();
    assert_eq!(new.len(), 24, "{new}");
    assert_ne!(new, first.trim());
    // A user that does not exist is a clear error, exit 1.
    let out = up.cli(&["admin", "reset-password", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    up.terminate();
}

/// `up` says which algorithms it publishes; a changed `oidc.signingKey` applies at the next
/// start, with the new algorithm's key published before it signs.
#[test]
fn up_says_which_signing_algorithms_it_publishes_and_a_changed_setting_applies_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = |signing_key: &str| {
        let config = write(
            dir.path(),
            "portcullis.yaml",
            &format!(
                "dataDir: {}\nlisten: 127.0.0.1:0\nstore: {{ type: redb }}\noidc: {{ signingKey: {signing_key} }}\n",
                data.display()
            ),
        );
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(&config);
        Up::spawn(cmd, tempfile::tempdir().unwrap())
    };
    let signing = |up: &Up| {
        up.banner
            .iter()
            .find_map(|l| l.strip_prefix("  signing keys:"))
            .unwrap_or_else(|| panic!("no signing keys line in {:?}", up.banner))
            .trim()
            .to_owned()
    };
    // The form of earlier versions: one algorithm.
    let up = start("ES256");
    assert!(signing(&up).starts_with("ES256  ("), "{}", signing(&up));
    up.terminate();
    let up = start("[ES256, RS256]");
    assert!(
        signing(&up).starts_with("ES256, RS256 (published; signs in 60 min)"),
        "{}",
        signing(&up)
    );
    up.terminate();

    // A fresh installation with the default signs with both at once.
    let up = Up::start();
    assert!(
        signing(&up).starts_with("ES256, RS256  ("),
        "{}",
        signing(&up)
    );
    up.terminate();
}
