//! `User`: a local user of the built-in identity source.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::spec_kind;

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
