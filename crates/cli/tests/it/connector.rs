//! `portcullis connector test` against a real slapd: the identity, groups and LDAP operations
//! of a login, a refused login, and a misconfigured connector reported with its LDAP code.

use std::io::Write as _;
use std::process::{Command, Stdio};

use portcullis_model::kinds::connector::LdapSecurity;
use portcullis_testkit::slapd::{self, Slapd};

use crate::up::{Up, ok, write};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The fixture's Connector (LDAPS with the test CA) as a file `apply` takes (JSON is YAML).
fn connector_file(slapd: &Slapd, bind_dn: &str) -> String {
    let mut spec = slapd::connector_spec(&slapd.ldaps_addr, LdapSecurity::Ldaps, slapd.ca_pem());
    if let Some(ldap) = spec.ldap.as_mut() {
        ldap.bind_dn = bind_dn.into();
    }
    serde_json::json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Connector",
        "metadata": { "name": "corp" },
        "spec": spec,
    })
    .to_string()
}

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run(dir: &std::path::Path, user: &str, password: &str) -> (i32, String, String) {
    let out = with_stdin(
        Command::new(BIN)
            .args([
                "connector",
                "test",
                "corp",
                "--username",
                user,
                "--password-stdin",
            ])
            .arg("-f")
            .arg(dir.join("corp.yaml"))
            .arg("--bind-password-file")
            .arg(dir.join("bind-password")),
        &format!("{password}\n"),
    );
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn connector_test_prints_identity_groups_and_operations() {
    let slapd = Slapd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("corp.yaml"),
        connector_file(&slapd, slapd::SERVICE_DN),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bind-password"),
        format!("{}\n", slapd::SERVICE_PASSWORD),
    )
    .unwrap();

    let (code, out, err) = run(dir.path(), "alice", "alice-pw");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("subject: corp:YWxpY2U"), "{out}");
    assert!(out.contains("email: alice@example.org (verified)"), "{out}");
    assert!(out.contains("RBAC groups: oidc:admins, oidc:devs"), "{out}");
    assert!(
        out.contains(&format!(
            "search base \"{}\" scope sub filter (uid=alice): 1 entries",
            slapd::PEOPLE_DN
        )),
        "{out}"
    );
    assert!(out.contains("filter (memberUid=alice): 1 entries"), "{out}");
    assert!(!out.contains("alice-pw") && !out.contains(slapd::SERVICE_PASSWORD));

    let (code, out, _) = run(dir.path(), "alice", "wrong");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no login"), "{out}");
    assert!(
        out.contains("result 49"),
        "the refused user bind is shown: {out}"
    );

    // A wrong service account: the LDAP result code and text, and what to check.
    std::fs::write(
        dir.path().join("corp.yaml"),
        connector_file(&slapd, "cn=nobody,dc=example,dc=org"),
    )
    .unwrap();
    let (code, out, _) = run(dir.path(), "alice", "alice-pw");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("LDAP result 49 (invalidCredentials"), "{out}");
    assert!(out.contains("bindPasswordRef"), "{out}");
}

#[test]
fn apply_reports_the_connection_check_and_the_server_tests_logins() {
    let slapd = Slapd::start().unwrap();
    let up = Up::start();
    let file = write(
        up.dir.path(),
        "corp.json",
        &connector_file(&slapd, slapd::SERVICE_DN),
    );
    // Valid, stored, but its bind password is not set: apply says so, apart from validation.
    let out = up.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection check failed"), "{err}");
    assert!(err.contains("set-bind-password"), "{err}");

    let kubeconfig = up.dir.path().join("admin.conf");
    let set = with_stdin(
        Command::new(BIN)
            .args(["connector", "set-bind-password", "corp", "--password-stdin"])
            .arg("--config")
            .arg(&kubeconfig),
        &format!("{}\n", slapd::SERVICE_PASSWORD),
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    // The server tests a login with the connector it serves.
    let out = with_stdin(
        Command::new(BIN)
            .args([
                "connector",
                "test",
                "corp",
                "--username",
                "bob",
                "--password-stdin",
            ])
            .arg("--config")
            .arg(&kubeconfig),
        "bob-pw\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("RBAC groups: oidc:ops"), "{stdout}");
    let yaml = ok(&up.cli(&["get", "connector", "corp", "-o", "yaml"]));
    assert!(!yaml.contains(slapd::SERVICE_PASSWORD), "{yaml}");
}
