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

/// The conformance items of issue 23 as openid-client sees them (`peers/node/conformance.mjs`):
/// RS256 ID tokens for a client without idTokenSignedResponseAlg and ES256 for one with
/// ES256, POST at the authorization endpoint, id_token_hint, revocation of another client's
/// token, unknown scopes, and the userinfo access token in a form body.
#[test]
fn openid_client_sees_the_conformance_items() {
    let peers = peers();
    let up = Up::start();
    let redirect = "https://rp.example/callback";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bob_password = "bob-password-0123456789";
    let bob_hash = runtime
        .block_on(portcullis_oidc::hash_password(bob_password.into()))
        .unwrap();
    let manifest = format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: Client
metadata:
  name: rs-app
spec:
  redirectURIs: [\"{redirect}\"]
  secretHash: \"{hash}\"
---
apiVersion: portcullis.dev/v1alpha1
kind: Client
metadata:
  name: es-app
spec:
  redirectURIs: [\"{redirect}\"]
  secretHash: \"{hash}\"
  idTokenSignedResponseAlg: ES256
---
apiVersion: portcullis.dev/v1alpha1
kind: User
metadata:
  name: bob
spec:
  email: bob@example.com
  emailVerified: true
  passwordHash: \"{bob_hash}\"
",
        hash = portcullis_model::hash_client_secret(SECRET)
    );
    let file = write(up.dir.path(), "conformance.yaml", &manifest);
    ok(&up.cli(&["apply", "-f", file.to_str().unwrap()]));
    let password = std::fs::read_to_string(up.dir.path().join("admin-password")).unwrap();

    let out = Command::new("node")
        .arg(peers.join("conformance.mjs"))
        .current_dir(&peers)
        .env("NODE_EXTRA_CA_CERTS", up.dir.path().join("pki/ca.crt"))
        .env("ISSUER", &up.url)
        .env("RS_CLIENT_ID", "rs-app")
        .env("ES_CLIENT_ID", "es-app")
        .env("CLIENT_SECRET", SECRET)
        .env("REDIRECT_URI", redirect)
        .env("LOGIN_A", "admin")
        .env("PASSWORD_A", password.trim())
        .env("LOGIN_B", "bob")
        .env("PASSWORD_B", bob_password)
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
    use serde_json::json;

    // 1. Discovery lists RS256; each client gets the algorithm it registered (RS256 if none).
    assert_eq!(report["discovery"]["algs"], json!(["ES256", "RS256"]));
    assert_eq!(report["algorithms"]["rsIdToken"], "RS256");
    assert_eq!(report["algorithms"]["esIdToken"], "ES256");
    assert_eq!(report["algorithms"]["rsSub"], report["algorithms"]["esSub"]);
    // 2. POST at /auth completes the flow.
    assert_eq!(report["post"]["sub"], report["algorithms"]["rsSub"]);
    // 3. Another user's hint: login_required; not the issuer's token: invalid_request.
    assert_eq!(report["hint"]["other"], "login_required");
    assert_eq!(report["hint"]["garbage"], "invalid_request");
    assert_eq!(report["hint"]["own"], serde_json::Value::Null);
    // 4. RFC 7009 §2.1: the client is told; the token stays valid.
    assert_eq!(report["revocation"]["error"], "unauthorized_client");
    assert_eq!(report["revocation"]["status"], 400);
    assert_eq!(report["revocation"]["stillRefreshes"], true);
    // 5. address and phone are ignored.
    assert_eq!(report["scopes"]["granted"], "openid email");
    // 6. RFC 6750 §2.2 accepted, §2.3 refused; errors as challenge and JSON body.
    assert_eq!(report["userinfo"]["bodyStatus"], 200);
    assert_eq!(report["userinfo"]["bodySub"], report["algorithms"]["rsSub"]);
    assert_eq!(
        report["userinfo"]["librarySub"],
        report["algorithms"]["rsSub"]
    );
    assert_eq!(report["userinfo"]["queryStatus"], 400);
    assert_eq!(report["userinfo"]["queryError"], "invalid_request");
    assert_eq!(report["userinfo"]["badStatus"], 401);
    assert_eq!(report["userinfo"]["badError"], "invalid_token");
    assert!(
        report["userinfo"]["badChallenge"]
            .as_str()
            .unwrap()
            .contains("error=\"invalid_token\""),
        "{report}"
    );
    up.terminate();
}
