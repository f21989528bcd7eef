//! Keys by OpenID discovery from an HTTPS issuer on loopback, trusted through the
//! configuration's certificateAuthority; readiness; an unreachable issuer harms no one else.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_authn::config::Issuer;
use portcullis_authn::{
    AuthenticationConfiguration, Error, JwtAuthenticator, KeySource, KeySourceFactory, StaticKeys,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// An HTTPS server on 127.0.0.1 answering paths with fixed JSON bodies; returns its base URL
/// and the PEM of its CA. Stops with the test's runtime.
async fn https_server(routes: impl Fn(&str) -> HashMap<String, String>) -> (String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let routes = Arc::new(routes(&base));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, routes) = (acceptor.clone(), Arc::clone(&routes));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let response = match routes.get(&path) {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned()
                    }
                };
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (base, ca.pem())
}

fn discovery_config(url: &str, ca: &str) -> AuthenticationConfiguration {
    let ca = ca.replace('\n', "\n      ");
    config(&format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {url}
    audiences: [kube]
    certificateAuthority: |
      {ca}
  claimMappings:
    username: {{claim: sub, prefix: "idp:"}}
"#
    ))
}

#[tokio::test]
async fn keys_come_from_discovery_and_readiness_follows() {
    let keys = key_set();
    let jwks = serde_json::to_string(&keys.jwks()).unwrap();
    let (url, ca) = https_server(|base| {
        HashMap::from([
            (
                "/.well-known/openid-configuration".to_owned(),
                json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
            ),
            ("/jwks".to_owned(), jwks.clone()),
        ])
    })
    .await;
    let jwt = JwtAuthenticator::new(
        &discovery_config(&url, &ca),
        &JwtAuthenticator::discovery_key_sources(),
    )
    .unwrap();
    assert!(!jwt.ready(), "not ready before discovery");
    assert!(jwt.prefetch_keys().await.is_empty());
    assert!(jwt.ready());
    let chain = chain_of(jwt);
    let token = keys.sign(&claims(&url, "kube", json!({}))).unwrap();
    assert_eq!(auth(&chain, &token).await.unwrap().unwrap().name, "idp:u-1");
}

#[tokio::test]
async fn a_discovery_document_of_another_issuer_is_refused() {
    let keys = key_set();
    let jwks = serde_json::to_string(&keys.jwks()).unwrap();
    let (url, ca) = https_server(|base| {
        HashMap::from([
            (
                "/.well-known/openid-configuration".to_owned(),
                json!({"issuer": "https://impostor.example", "jwks_uri": format!("{base}/jwks")})
                    .to_string(),
            ),
            ("/jwks".to_owned(), jwks.clone()),
        ])
    })
    .await;
    let jwt = JwtAuthenticator::new(
        &discovery_config(&url, &ca),
        &JwtAuthenticator::discovery_key_sources(),
    )
    .unwrap();
    let errors = jwt.prefetch_keys().await;
    assert!(
        matches!(errors.as_slice(), [Error::Keys { reason, .. }] if reason.contains("issuer")),
        "{errors:?}"
    );
    assert!(!jwt.ready());
    let token = keys.sign(&claims(&url, "kube", json!({}))).unwrap();
    assert!(auth(&chain_of(jwt), &token).await.is_err());
}

#[tokio::test]
async fn an_unreachable_issuer_fails_only_its_own_tokens() {
    // A port nothing listens on: bind, read the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = format!("https://127.0.0.1:{port}");
    let (up_keys, down_keys) = (key_set(), key_set());
    let yaml = format!(
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer: {{url: "{down}", audiences: [kube]}}
  claimMappings: {{username: {{claim: sub, prefix: "down:"}}}}
- issuer: {{url: "{ISSUER_A}", audiences: [kube]}}
  claimMappings: {{username: {{claim: sub, prefix: "up:"}}}}
"#
    );
    let up = StaticKeys::new(up_keys.verification_keys());
    let factory: KeySourceFactory = Arc::new(move |issuer: &Issuer| {
        if issuer.url == ISSUER_A {
            Ok(Arc::new(up.clone()) as Arc<dyn KeySource>)
        } else {
            (JwtAuthenticator::discovery_key_sources())(issuer)
        }
    });
    let jwt = JwtAuthenticator::new(&config(&yaml), &factory).unwrap();
    assert_eq!(jwt.prefetch_keys().await.len(), 1);
    assert!(!jwt.ready());
    let chain = chain_of(jwt);
    let e = auth(
        &chain,
        &down_keys.sign(&claims(&down, "kube", json!({}))).unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Keys { .. }), "{e}");
    let user = auth(
        &chain,
        &up_keys.sign(&claims(ISSUER_A, "kube", json!({}))).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(user.name, "up:u-1");
}
