//! `portcullis connector test` against a real slapd: the identity, groups and LDAP operations
//! of a login, a refused login, and a misconfigured connector reported with its LDAP code.

use std::io::Write as _;
use std::process::{Command, Stdio};

use portcullis_testkit::slapd::{self, Slapd};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn connector_yaml(slapd: &Slapd, bind_dn: &str) -> String {
    let ca: String = slapd
        .ca_pem()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: Connector
metadata:
  name: corp
spec:
  type: ldap
  displayName: Example Corp
  ldap:
    host: {host}
    security: LDAPS
    bindDN: {bind_dn}
    bindPasswordRef: {{name: corp-ldap, key: password}}
    caBundle: |
{ca}    userSearch:
      baseDN: {people}
      usernameAttr: uid
      idAttr: uid
      emailAttr: mail
    groupSearch:
      baseDN: {groups}
      nameAttr: cn
      userMatchers:
      - {{userAttr: DN, groupAttr: member}}
      - {{userAttr: uid, groupAttr: memberUid}}
",
        host = slapd.ldaps_addr,
        people = slapd::PEOPLE_DN,
        groups = slapd::GROUPS_DN,
    )
}

fn run(dir: &std::path::Path, user: &str, password: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
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
        .arg(dir.join("bind-password"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
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
        connector_yaml(&slapd, slapd::SERVICE_DN),
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
        connector_yaml(&slapd, "cn=nobody,dc=example,dc=org"),
    )
    .unwrap();
    let (code, out, _) = run(dir.path(), "alice", "alice-pw");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("LDAP result 49 (invalidCredentials"), "{out}");
    assert!(out.contains("bindPasswordRef"), "{out}");
}
