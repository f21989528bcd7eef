//! Kubernetes' `user.Info`.

use std::collections::BTreeMap;

/// The group every authenticated user is in.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";
/// The group of unauthenticated requests.
pub const SYSTEM_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user name of unauthenticated requests.
pub const SYSTEM_ANONYMOUS: &str = "system:anonymous";

/// A verified identity, spelled as Kubernetes' `user.Info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Unique id, when the source gives one.
    pub uid: String,
    /// Groups, `system:authenticated` included for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes (e.g. `authentication.kubernetes.io/credential-id`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user kube-apiserver gives requests without credentials.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: SYSTEM_ANONYMOUS.into(),
            groups: vec![SYSTEM_UNAUTHENTICATED.into()],
            ..UserInfo::default()
        }
    }

    /// Adds `system:authenticated` unless present.
    pub(crate) fn add_authenticated(&mut self) {
        if !self.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED) {
            self.groups.push(SYSTEM_AUTHENTICATED.into());
        }
    }
}
