//! npm `openid-client` (a certified OpenID Connect relying party) against `portcullis up`:
//! discovery, code flow with PKCE, ID token validation, userinfo, refresh, introspection,
//! revocation and logout, as the static admin logging in with its generated password.

use std::path::PathBuf;
use std::process::Command;

use crate::up::{Up, ok, write};

const SECRET: &str = "rp-secret-0123456789abcdef0123456789";

fn peers() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../peers/node");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "npm peers are not installed: run `cargo xtask deps` (it runs `npm ci` in peers/node)"
    );
    dir
}

#[test]
fn openid_client_completes_every_flow() {
    let peers = peers();
    let up = Up::start();
    let manifest = format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: Client
metadata:
  name: web-app
spec:
  displayName: Web app
  redirectURIs: [\"https://rp.example/callback\"]
  postLogoutRedirectURIs: [\"https://rp.example/logged-out\"]
  secretHash: \"{}\"
",
        portcullis_model::hash_client_secret(SECRET)
    );
    let file = write(up.dir.path(), "client.yaml", &manifest);
    ok(&up.cli(&["apply", "-f", file.to_str().unwrap()]));
    let password = std::fs::read_to_string(up.dir.path().join("admin-password")).unwrap();

    let out = Command::new("node")
        .arg(peers.join("rp.mjs"))
        .current_dir(&peers)
        .env("NODE_EXTRA_CA_CERTS", up.dir.path().join("pki/ca.crt"))
        .env("ISSUER", &up.url)
        .env("CLIENT_ID", "web-app")
        .env("CLIENT_SECRET", SECRET)
        .env("REDIRECT_URI", "https://rp.example/callback")
        .env("POST_LOGOUT_REDIRECT_URI", "https://rp.example/logged-out")
        .env("LOGIN", "admin")
        .env("PASSWORD", password.trim())
        .output()
        .expect("node is installed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "openid-client failed ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("openid-client report: {report}");
    assert!(out.status.success());

    assert_eq!(report["discovery"]["issuer"], up.url.as_str());
    for endpoint in [
        "revocation",
        "introspection",
        "endSession",
        "deviceAuthorization",
    ] {
        assert_eq!(report["discovery"][endpoint], true, "{endpoint}");
    }
    assert_eq!(report["code"]["email"], "admin@portcullis.invalid");
    assert_eq!(
        report["code"]["groups"],
        serde_json::json!(["portcullis:admins"])
    );
    assert_eq!(report["code"]["hasRefreshToken"], true);
    assert_eq!(report["code"]["hasSid"], true);
    assert_eq!(report["userinfo"]["sub"], report["code"]["sub"]);
    assert_eq!(report["refresh"]["rotated"], true);
    assert_eq!(report["refresh"]["sub"], report["code"]["sub"]);
    assert_eq!(report["introspection"]["accessActive"], true);
    assert_eq!(report["introspection"]["accessClient"], "web-app");
    assert_eq!(report["introspection"]["refreshActive"], true);
    assert_eq!(report["revocation"]["accessActive"], false);
    assert_eq!(report["revocation"]["refreshActive"], false);
    assert_eq!(report["revocation"]["refreshError"], "invalid_grant");
    assert_eq!(report["logout"]["status"], 303);
    assert_eq!(
        report["logout"]["location"],
        "https://rp.example/logged-out?state=bye"
    );
    assert_eq!(report["logout"]["sessionCleared"], true);
    assert_eq!(report["logout"]["loginShownAgain"], true);
    up.terminate();
}
