//! X.509 client certificates, as kube-apiserver's x509 authenticator: the chain is verified
//! against a CA pool for client authentication at the current time, then the user is the
//! leaf's subject CN and the groups its O attributes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::RwLock;

use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject as _};
use webpki::{EndEntityCert, KeyUsage};

use crate::authenticator::{Authenticated, Authenticator, Credentials, Outcome, chain_hash};
use crate::{Error, UserInfo};

/// Most certificates accepted in a presented chain (leaf and intermediates).
const MAX_CHAIN_LEN: usize = 8;

/// Most verified chains remembered; past that the memory starts again.
const CACHE_CAPACITY: usize = 4096;

/// Verified chains by the SHA-256 of their certificates: the identity, and until when (Unix
/// seconds: the earliest `notAfter` of the chain) it holds. A chain's signatures verify the
/// same way every time against the same roots, so only its validity period is checked again:
/// a client's every request costs a hash, not a signature verification (the cost of most
/// requests over a kept-alive connection otherwise).
/// Only verified chains are remembered, so their keys are no attacker's choice: hashed cheaply.
type Verified = HashMap<[u8; 32], (Arc<UserInfo>, i64), rustc_hash::FxBuildHasher>;

/// The client-certificate authenticator.
///
/// The chain is verified here, not assumed verified by the TLS layer, so a front end that
/// terminated TLS elsewhere, or accepted any client certificate in the handshake, can still
/// rely on it. A request without a client certificate is not this authenticator's; one with a
/// certificate that does not verify (other CA, expired, not for client auth, no CN) fails.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    roots: Vec<CertificateDer<'static>>,
    verified: Arc<RwLock<Verified>>,
}

impl ClientCertificate {
    /// An authenticator trusting the CA certificates of a PEM bundle.
    ///
    /// # Errors
    ///
    /// [`Error::Certificate`] when the bundle holds no certificate or one that is not a CA
    /// certificate webpki can use as a trust anchor.
    pub fn from_pem(pem: &[u8]) -> Result<ClientCertificate, Error> {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Certificate(format!("CA bundle does not parse as PEM: {e}")))?;
        ClientCertificate::new(roots)
    }

    /// An authenticator trusting these CA certificates (DER).
    ///
    /// # Errors
    ///
    /// [`Error::Certificate`] when `roots` is empty or holds an unusable certificate.
    pub fn new(roots: Vec<CertificateDer<'static>>) -> Result<ClientCertificate, Error> {
        if roots.is_empty() {
            return Err(Error::Certificate(
                "the client CA bundle holds no certificate; give a PEM file with the CA".into(),
            ));
        }
        for root in &roots {
            webpki::anchor_from_trusted_cert(root)
                .map_err(|e| Error::Certificate(format!("CA certificate is unusable: {e}")))?;
        }
        Ok(ClientCertificate {
            roots,
            verified: Arc::default(),
        })
    }

    /// Verifies `chain` (leaf first) at `now` and maps the leaf to a user.
    ///
    /// # Errors
    ///
    /// [`Error::Certificate`] when the chain does not verify or the leaf has no CN.
    pub fn verify(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Result<UserInfo, Error> {
        self.verify_keyed(chain, &chain_hash(chain), now)
            .map(Arc::unwrap_or_clone)
    }

    /// [`ClientCertificate::verify`] of a chain whose [`chain_hash`] is `key`.
    fn verify_keyed(
        &self,
        chain: &[CertificateDer<'_>],
        key: &[u8; 32],
        now: UnixTime,
    ) -> Result<Arc<UserInfo>, Error> {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if let Ok(verified) = self.verified.read()
            && let Some((user, not_after)) = verified.get(key)
            && now_secs <= *not_after
        {
            return Ok(user.clone());
        }
        let user = Arc::new(self.verify_uncached(chain, now)?);
        let not_after = chain
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
            .map(|(_, c)| c.validity().not_after.timestamp())
            .min()
            .unwrap_or(i64::MIN);
        if let Ok(mut verified) = self.verified.write() {
            if verified.len() >= CACHE_CAPACITY {
                verified.clear();
            }
            verified.insert(*key, (user.clone(), not_after));
        }
        Ok(user)
    }

    fn verify_uncached(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<UserInfo, Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| Error::Certificate("no certificate presented".into()))?;
        if chain.len() > MAX_CHAIN_LEN {
            return Err(Error::Certificate(format!(
                "chain of {} certificates is longer than the {MAX_CHAIN_LEN} accepted",
                chain.len()
            )));
        }
        let anchors = self
            .roots
            .iter()
            .map(webpki::anchor_from_trusted_cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Certificate(format!("CA certificate is unusable: {e}")))?;
        let end_entity = EndEntityCert::try_from(leaf)
            .map_err(|e| Error::Certificate(format!("leaf does not parse: {e}")))?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                intermediates,
                now,
                KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| Error::Certificate(format!("chain does not verify: {e}")))?;
        user_from_certificate(leaf)
    }
}

#[async_trait::async_trait]
impl Authenticator for ClientCertificate {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        self.outcome(credentials)
    }

    fn authenticate_now(&self, credentials: &Credentials<'_>) -> Option<Outcome> {
        Some(self.outcome(credentials))
    }
}

impl ClientCertificate {
    fn outcome(&self, credentials: &Credentials<'_>) -> Outcome {
        // The chain's hash was computed once for its connection.
        let peer = credentials.peer_certificates;
        let Some(key) = peer.hash() else {
            return Outcome::NotMine;
        };
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            portcullis_jose::unix_now_coarse(),
        ));
        match self.verify_keyed(peer.certificates(), key, now) {
            Ok(user) => Outcome::Authenticated(Authenticated {
                user,
                expires_at: None,
            }),
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// The user of a (verified) certificate: CN → name, each O → a group, plus
/// `system:authenticated` and, as kube-apiserver 1.32+, the credential id for audit.
fn user_from_certificate(der: &CertificateDer<'_>) -> Result<UserInfo, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Error::Certificate(format!("leaf does not parse: {e}")))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| Error::Certificate("the leaf has no subject common name".into()))?
        .to_owned();
    let mut user = UserInfo {
        name,
        groups: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect(),
        ..UserInfo::default()
    };
    user.add_authenticated();
    user.extra = BTreeMap::from([(
        "authentication.kubernetes.io/credential-id".to_owned(),
        vec![format!(
            "X509SHA256={}",
            crate::hex(&crate::sha256(der.as_ref()))
        )],
    )]);
    Ok(user)
}
