//! Client certificates verified by the crate: the CA pool, expiry, CN and O.

use std::sync::Arc;

use portcullis_authn::{
    AuthenticatorChain, ClientCertificate, Credentials, Error, PeerCertificates,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn client(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    orgs: &[&str],
    expired: bool,
) -> CertificateDer<'static> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    params
        .signed_by(&KeyPair::generate().unwrap(), ca)
        .unwrap()
        .der()
        .clone()
}

async fn authenticate(
    authn: &ClientCertificate,
    chain: &[CertificateDer<'static>],
) -> Result<Option<portcullis_authn::UserInfo>, Error> {
    let headers = http::HeaderMap::new();
    AuthenticatorChain::new()
        .with(Arc::new(authn.clone()))
        .authenticate(&Credentials {
            headers: &headers,
            peer_certificates: &PeerCertificates::new(chain.to_vec()),
        })
        .await
        .map(|a| a.map(|a| Arc::unwrap_or_clone(a.user)))
}

#[tokio::test]
async fn cn_is_the_user_and_o_the_groups() {
    let ca = ca("client CA");
    let authn = ClientCertificate::from_pem(ca.pem().as_bytes()).unwrap();
    // rcgen keeps one value per attribute type: one O here.
    let cert = client(&ca, "jane", &["ops"], false);
    let user = authenticate(&authn, &[cert]).await.unwrap().unwrap();
    assert_eq!(user.name, "jane");
    assert_eq!(user.groups, ["ops", "system:authenticated"]);
    assert!(user.extra["authentication.kubernetes.io/credential-id"][0].starts_with("X509SHA256="));
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused() {
    let (ours, theirs) = (ca("ours"), ca("theirs"));
    let authn = ClientCertificate::from_pem(ours.pem().as_bytes()).unwrap();
    let cert = client(&theirs, "mallory", &["system:masters"], false);
    let e = authenticate(&authn, &[cert]).await.unwrap_err();
    assert!(matches!(e, Error::Certificate(_)), "{e}");
    // Presenting their CA as an intermediate changes nothing.
    let cert = client(&theirs, "mallory", &[], false);
    assert!(
        authenticate(&authn, &[cert, theirs.der().clone()])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = ca("client CA");
    let authn = ClientCertificate::from_pem(ca.pem().as_bytes()).unwrap();
    let e = authenticate(&authn, &[client(&ca, "jane", &[], true)])
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
}

#[tokio::test]
async fn no_certificate_is_not_mine_and_garbage_is_refused() {
    let ca = ca("client CA");
    let authn = ClientCertificate::from_pem(ca.pem().as_bytes()).unwrap();
    assert!(authenticate(&authn, &[]).await.unwrap().is_none());
    assert!(
        authenticate(&authn, &[CertificateDer::from(vec![1, 2, 3])])
            .await
            .is_err()
    );
    assert!(ClientCertificate::from_pem(b"").is_err());
}
