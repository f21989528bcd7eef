//! The portcullis kinds (group `portcullis.dev`, version `v1alpha1`).
//!
//! Every kind is a Kubernetes-style object: `apiVersion`, `kind`, `metadata` and, for most,
//! `spec` and an optional `status` written only by portcullis. Role and binding kinds carry
//! `rules`, `subjects` and `roleRef` at the top level, as `rbac.authorization.k8s.io` does.
//! Unknown fields are rejected everywhere.

pub mod client;
pub mod cluster;
pub mod connector;
pub mod group;
pub mod project;
pub mod role;
pub mod user;
pub mod workspace;

/// API group of every portcullis kind.
pub const GROUP: &str = "portcullis.dev";
/// API version of every portcullis kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every portcullis kind.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// Defines a kind with the `apiVersion`/`kind`/`metadata`/`spec`/`status` envelope.
macro_rules! spec_kind {
    ($(#[$doc:meta])* $name:ident, $spec:ty, $status:ty) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Always `portcullis.dev/v1alpha1`.
            pub api_version: String,
            /// Always the kind's name.
            pub kind: String,
            /// Standard object metadata.
            #[serde(default)]
            pub metadata: $crate::ObjectMeta,
            /// Desired state.
            #[serde(default)]
            pub spec: $spec,
            /// Observed state, written by portcullis; ignored on create and update of the
            /// main resource.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<$status>,
        }

        impl $name {
            /// A new object with this name and spec, without status.
            pub fn new(name: impl Into<String>, spec: $spec) -> Self {
                Self {
                    api_version: $crate::kinds::API_VERSION.to_owned(),
                    kind: stringify!($name).to_owned(),
                    metadata: $crate::ObjectMeta {
                        name: name.into(),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }
    };
}
pub(crate) use spec_kind;
