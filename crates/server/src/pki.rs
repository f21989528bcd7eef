//! The management plane's own PKI: a CA, the serving certificate and the admin client
//! certificate, generated on first start in the data directory and reused afterwards.
//!
//! The layout follows kubeadm's: `pki/ca.crt` + `pki/ca.key`, the serving pair, and an
//! `admin.conf` kubeconfig whose client certificate has `CN=portcullis-admin` and
//! `O=portcullis:admins` (the X.509 break-glass credential).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// Common name of the admin client certificate.
pub const ADMIN_USER: &str = "portcullis-admin";
/// Organisation (= group) of the admin client certificate.
pub const ADMINS_GROUP: &str = "portcullis:admins";

/// Errors of PKI setup.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error(
        "{what}: {source}; delete the pki directory to regenerate it (clients must then trust the new CA)"
    )]
    Cert {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
    /// A PEM file did not hold what it should.
    #[error("{path}: not a valid PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
}

/// A certificate chain and its private key, as PEM and as rustls types.
#[derive(Debug)]
pub struct CertifiedKey {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// PEM of the private key (PKCS#8).
    pub key_pem: String,
}

impl CertifiedKey {
    /// The certificate as DER, for rustls.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(|_| PkiError::Pem {
            path: PathBuf::from("<memory>"),
            what: "certificate",
        })
    }

    /// The private key as DER, for rustls.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| PkiError::Pem {
            path: PathBuf::from("<memory>"),
            what: "private key",
        })
    }
}

/// Everything the server needs from the PKI.
#[derive(Debug)]
pub struct Pki {
    /// Path of `ca.crt`, printed for users to trust.
    pub ca_path: PathBuf,
    /// The CA certificate and key.
    pub ca: CertifiedKey,
    /// The serving certificate, signed by the CA.
    pub serving: CertifiedKey,
}

/// Loads the CA from `dir/pki`, creating it on first start, and issues a fresh serving
/// certificate for `hosts` (names or IP addresses; localhost, 127.0.0.1 and ::1 are always added).
pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
    let pki_dir = dir.join("pki");
    create_dir(&pki_dir)?;
    let ca_path = pki_dir.join("ca.crt");
    let ca_key_path = pki_dir.join("ca.key");
    let ca = if ca_path.exists() && ca_key_path.exists() {
        CertifiedKey {
            cert_pem: read(&ca_path)?,
            key_pem: read(&ca_key_path)?,
        }
    } else {
        let ca = new_ca()?;
        write_private(&ca_key_path, ca.key_pem.as_bytes())?;
        write_public(&ca_path, ca.cert_pem.as_bytes())?;
        ca
    };
    // The serving certificate is cheap: issue it at every start so that new --host names apply.
    let serving = issue_serving(&ca, hosts)?;
    write_public(&pki_dir.join("serving.crt"), serving.cert_pem.as_bytes())?;
    write_private(&pki_dir.join("serving.key"), serving.key_pem.as_bytes())?;
    Ok(Pki {
        ca_path,
        ca,
        serving,
    })
}

fn new_ca() -> Result<CertifiedKey, PkiError> {
    let key = KeyPair::generate().map_err(|source| PkiError::Cert {
        what: "generating the CA key",
        source,
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn("portcullis-ca", None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&key).map_err(|source| PkiError::Cert {
        what: "signing the CA certificate",
        source,
    })?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issuer(ca: &CertifiedKey) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|source| PkiError::Cert {
        what: "reading the CA key",
        source,
    })?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(|source| PkiError::Cert {
        what: "reading the CA certificate",
        source,
    })
}

fn issue_serving(ca: &CertifiedKey, hosts: &[String]) -> Result<CertifiedKey, PkiError> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut params = CertificateParams::default();
    for name in &names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                SanType::DnsName(name.clone().try_into().map_err(|source| PkiError::Cert {
                    what: "a --host name is not a valid DNS name",
                    source,
                })?)
            }
        };
        params.subject_alt_names.push(san);
    }
    params.distinguished_name = dn("portcullis", None);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign_leaf(ca, params, 365)
}

/// Issues a client certificate for `user` with `groups` as organisations, as kube-apiserver's
/// x509 authenticator reads them (CN = user name, O = groups).
pub fn issue_client(
    ca: &CertifiedKey,
    user: &str,
    groups: &[&str],
    days: i64,
) -> Result<CertifiedKey, PkiError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    for g in groups {
        name.push(DnType::OrganizationName, *g);
    }
    name.push(DnType::CommonName, user);
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign_leaf(ca, params, days)
}

fn sign_leaf(
    ca: &CertifiedKey,
    mut params: CertificateParams,
    days: i64,
) -> Result<CertifiedKey, PkiError> {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|source| PkiError::Cert {
        what: "generating a key",
        source,
    })?;
    let issuer = issuer(ca)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| PkiError::Cert {
            what: "signing a certificate",
            source,
        })?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    if let Some(o) = org {
        name.push(DnType::OrganizationName, o);
    }
    name.push(DnType::CommonName, cn);
    name
}

// === files ===

pub(crate) fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file readable by its owner only (0600), atomically (temp file + rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_mode(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_mode(path, bytes, 0o644)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), &[]).unwrap();
        let b = load_or_create(dir.path(), &["mgmt.example.com".into()]).unwrap();
        assert_eq!(a.ca.cert_pem, b.ca.cert_pem);
        assert_ne!(a.serving.cert_pem, b.serving.cert_pem);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join("pki/ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn client_cert_carries_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = load_or_create(dir.path(), &[]).unwrap();
        let c = issue_client(&pki.ca, ADMIN_USER, &[ADMINS_GROUP], 365).unwrap();
        let der = c.cert_der().unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn: Vec<_> = x
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let o: Vec<_> = x
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, [ADMIN_USER]);
        assert_eq!(o, [ADMINS_GROUP]);
    }
}
