//! `User`: a local user of the built-in identity source.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::spec_kind;
use crate::syntax;
use crate::validation::{DISPLAY_NAME_MAX_LEN, Errors};

spec_kind!(
    /// A local user (cluster-scoped); `metadata.name` is the login name.
    ///
    /// For small installs and the static admin. Only an argon2id hash of the password is
    /// stored.
    User,
    UserSpec,
    UserStatus
);

/// Desired state of a [`User`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    /// E-mail address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Whether the e-mail address is verified (the `email_verified` claim).
    #[serde(default)]
    pub email_verified: bool,
    /// Name shown in the dashboard and the `name` claim.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Groups the user is a member of (the `groups` claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Password hash as a PHC string with algorithm argon2id
    /// (`$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>`); empty means password login is off.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_hash: String,
    /// A disabled user cannot log in, and their refresh tokens stop working.
    #[serde(default)]
    pub disabled: bool,
}

/// Observed state of a [`User`] (none yet; kept for a uniform envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserStatus {}

// === validation ===

/// Longest e-mail address (RFC 5321 §4.5.3.1.3: a path is at most 256 octets with `<>`).
const EMAIL_MAX_LEN: usize = 254;

/// A plausible e-mail address: `local@domain`, the domain a DNS name.
pub(crate) fn check_email(email: &str) -> Result<(), String> {
    if email.len() > EMAIL_MAX_LEN {
        return Err(format!("may not be more than {EMAIL_MAX_LEN} characters"));
    }
    let bad = || "must be an e-mail address such as alice@example.com".to_owned();
    let (local, domain) = email.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
        || syntax::dns1123_subdomain(&domain.to_ascii_lowercase()).is_err()
    {
        return Err(bad());
    }
    Ok(())
}

/// Largest argon2 memory cost accepted, in KiB (1 GiB): verifying a hash allocates it, so
/// an unbounded `m` would let whoever writes a User exhaust memory at login.
const ARGON2_MAX_M_KIB: u32 = 1024 * 1024;
/// Largest argon2 time cost accepted.
const ARGON2_MAX_T: u32 = 16;
/// Largest argon2 parallelism accepted.
const ARGON2_MAX_P: u32 = 16;

/// A PHC string for argon2id (the PHC string format, and RFC 9106 for the parameters):
/// `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>`, salt and hash in unpadded
/// standard base64, at least 8 and 16 bytes.
pub(crate) fn check_argon2id_phc(phc: &str) -> Result<(), String> {
    let bad = |why: &str| {
        format!("must be an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>): {why}")
    };
    let parts: Vec<&str> = phc.split('$').collect();
    let [empty, alg, version, params, salt, hash] = parts.as_slice() else {
        return Err(bad("expected six '$'-separated parts"));
    };
    if !empty.is_empty() || *alg != "argon2id" {
        return Err(bad("the algorithm must be argon2id"));
    }
    if *version != "v=19" {
        return Err(bad("the version must be v=19"));
    }
    let mut values = [0u32; 3];
    let names = ["m", "t", "p"];
    let mut given = params.split(',');
    for (slot, name) in values.iter_mut().zip(names) {
        let value = given
            .next()
            .and_then(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| bad("parameters must be m=<KiB>,t=<passes>,p=<lanes>"))?;
        *slot = value;
    }
    if given.next().is_some() {
        return Err(bad("parameters must be m=<KiB>,t=<passes>,p=<lanes>"));
    }
    let [m, t, p] = values;
    if !(1..=ARGON2_MAX_P).contains(&p) || !(1..=ARGON2_MAX_T).contains(&t) {
        return Err(bad(&format!(
            "t must be 1..={ARGON2_MAX_T} and p 1..={ARGON2_MAX_P}"
        )));
    }
    // RFC 9106 §3.1: memory is at least 8 KiB per lane.
    if m < 8 * p || m > ARGON2_MAX_M_KIB {
        return Err(bad(&format!(
            "m must be between 8*p and {ARGON2_MAX_M_KIB} KiB"
        )));
    }
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    // Unpadded base64 of n bytes has ceil(4n/3) characters: 8 bytes → 11, 16 → 22.
    if !b64(salt) || !(11..=64).contains(&salt.len()) {
        return Err(bad("the salt must be 8 to 48 bytes of unpadded base64"));
    }
    if !b64(hash) || !(22..=128).contains(&hash.len()) {
        return Err(bad("the hash must be 16 to 96 bytes of unpadded base64"));
    }
    Ok(())
}

impl User {
    pub(crate) fn validate_fields(&self, errs: &mut Errors) {
        let spec = &self.spec;
        errs.max_len("spec.displayName", &spec.display_name, DISPLAY_NAME_MAX_LEN);
        if spec.email.is_empty() {
            if spec.email_verified {
                errs.required("spec.email", "emailVerified is true but no email is given");
            }
        } else {
            errs.check("spec.email", check_email(&spec.email));
        }
        errs.non_empty_unique("spec.groups", &spec.groups);
        if !spec.password_hash.is_empty() {
            errs.check("spec.passwordHash", check_argon2id_phc(&spec.password_hash));
        }
    }
}
