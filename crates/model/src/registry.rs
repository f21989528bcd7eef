//! The registry of kinds, and [`Resource`]: one object of any kind.

use serde_json::Value;

use crate::ObjectMeta;
use crate::kinds::client::Client;
use crate::kinds::cluster::Cluster;
use crate::kinds::connector::Connector;
use crate::kinds::group::Group;
use crate::kinds::project::Project;
use crate::kinds::role::{
    ClusterScopeRole, ClusterScopeRoleBinding, KommanderRole, KommanderRoleBinding,
};
use crate::kinds::user::User;
use crate::kinds::workspace::Workspace;
use crate::kinds::{GROUP, VERSION};

/// How a kind is served: names, scope and subresources, as in API discovery
/// (`APIResource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindInfo {
    /// API group (`portcullis.dev`).
    pub group: &'static str,
    /// API version (`v1alpha1`).
    pub version: &'static str,
    /// Kind, e.g. `Workspace`.
    pub kind: &'static str,
    /// Plural resource name used in URLs, e.g. `workspaces`.
    pub plural: &'static str,
    /// Singular resource name, e.g. `workspace`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for the CLI, e.g. `ws`.
    pub short_names: &'static [&'static str],
    /// Whether the kind has a `status` (served as the `status` subresource).
    pub has_status: bool,
}

impl KindInfo {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

macro_rules! registry {
    ($($kind:ident: $plural:literal, $singular:literal, namespaced = $ns:literal,
       short = [$($short:literal),*], status = $status:literal;)*) => {
        static KINDS: &[KindInfo] = &[$(KindInfo {
            group: GROUP,
            version: VERSION,
            kind: stringify!($kind),
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            has_status: $status,
        }),*];

        /// One object of any portcullis kind.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Resource {
            $(
                #[doc = concat!("A [`", stringify!($kind), "`].")]
                $kind($kind),
            )*
        }

        impl Resource {
            /// The object's metadata.
            pub fn meta(&self) -> &ObjectMeta {
                match self { $(Resource::$kind(o) => &o.metadata,)* }
            }

            /// The object's metadata, for the server to set names, versions and timestamps.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self { $(Resource::$kind(o) => &mut o.metadata,)* }
            }

            /// The registry entry of the object's kind.
            pub fn kind_info(&self) -> &'static KindInfo {
                let kind = match self { $(Resource::$kind(_) => stringify!($kind),)* };
                // Every variant has an entry: both come from the same macro input.
                KINDS.iter().find(|k| k.kind == kind).unwrap_or(&FALLBACK)
            }

            /// The object as JSON, as the API serves it.
            pub fn to_json_value(&self) -> Value {
                let v = match self { $(Resource::$kind(o) => serde_json::to_value(o),)* };
                // Serialising these types cannot fail: every map has string keys.
                v.unwrap_or(Value::Null)
            }

            /// Decodes one object of the given kind from JSON, strictly; the caller has
            /// checked `kind` against the registry.
            pub(crate) fn deserialize_kind<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                de: D,
            ) -> Result<Option<Resource>, serde_path_to_error::Error<D::Error>> {
                Ok(Some(match kind {
                    $(stringify!($kind) => Resource::$kind(serde_path_to_error::deserialize(de)?),)*
                    _ => return Ok(None),
                }))
            }
        }

        /// The root schema of a kind, made by `generator`; `None` for an unknown kind.
        pub(crate) fn root_schema(
            kind: &str,
            generator: schemars::SchemaGenerator,
        ) -> Option<schemars::Schema> {
            match kind {
                $(stringify!($kind) => Some(generator.into_root_schema_for::<$kind>()),)*
                _ => None,
            }
        }

        /// Serialises as the object itself (its own `apiVersion` and `kind` say which it is),
        /// so a `Vec<Resource>` prints as a YAML stream or JSON array of objects.
        impl serde::Serialize for Resource {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $(Resource::$kind(o) => o.serialize(s),)* }
            }
        }

        $(
            impl From<$kind> for Resource {
                fn from(o: $kind) -> Self {
                    Resource::$kind(o)
                }
            }
        )*
    };
}

registry! {
    Workspace: "workspaces", "workspace", namespaced = false, short = ["ws"], status = true;
    Project: "projects", "project", namespaced = true, short = ["proj"], status = true;
    Cluster: "clusters", "cluster", namespaced = true, short = [], status = true;
    Group: "groups", "group", namespaced = false, short = [], status = false;
    KommanderRole: "kommanderroles", "kommanderrole", namespaced = true, short = ["kr"],
        status = true;
    KommanderRoleBinding: "kommanderrolebindings", "kommanderrolebinding", namespaced = true,
        short = ["krb"], status = true;
    ClusterScopeRole: "clusterscoperoles", "clusterscoperole", namespaced = true,
        short = ["csrole"], status = true;
    ClusterScopeRoleBinding: "clusterscoperolebindings", "clusterscoperolebinding",
        namespaced = true, short = ["csrb"], status = true;
    Client: "clients", "client", namespaced = false, short = [], status = false;
    User: "users", "user", namespaced = false, short = [], status = false;
    Connector: "connectors", "connector", namespaced = false, short = [], status = true;
}

/// Never returned: satisfies the type checker where a lookup cannot fail.
static FALLBACK: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "",
    plural: "",
    singular: "",
    namespaced: false,
    short_names: &[],
    has_status: false,
};

/// Every kind portcullis serves, in a stable order.
pub fn kinds() -> &'static [KindInfo] {
    KINDS
}

/// The kind served under this plural resource name (`workspaces`).
pub fn kind_by_plural(plural: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.plural == plural)
}

/// The kind with this name (`Workspace`).
pub fn kind_by_name(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// The kind a user typed on a command line: plural, singular, short name or kind,
/// case-insensitively, as kubectl resolves resource arguments.
pub fn kind_by_any_name(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| {
        k.plural.eq_ignore_ascii_case(name)
            || k.singular.eq_ignore_ascii_case(name)
            || k.kind.eq_ignore_ascii_case(name)
            || k.short_names.iter().any(|s| s.eq_ignore_ascii_case(name))
    })
}

/// `Workspace, Project, …`: for error messages.
pub(crate) fn known_kinds() -> String {
    KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
}

impl Resource {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.meta().name
    }

    /// `metadata.namespace`, or `""` for cluster-scoped objects.
    pub fn namespace(&self) -> &str {
        self.meta().namespace_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_an_entry() {
        let r = Resource::from(Workspace::new("a", Default::default()));
        assert_eq!(r.kind_info().plural, "workspaces");
        assert_eq!(
            kind_by_plural("clusterscoperolebindings").unwrap().kind,
            "ClusterScopeRoleBinding"
        );
        assert_eq!(kind_by_any_name("WS").unwrap().kind, "Workspace");
        assert_eq!(
            kind_by_any_name("kommanderRole").unwrap().plural,
            "kommanderroles"
        );
        assert!(kind_by_name("Secret").is_none());
        let mut plurals: Vec<_> = kinds().iter().map(|k| k.plural).collect();
        plurals.sort_unstable();
        plurals.dedup();
        assert_eq!(plurals.len(), kinds().len());
    }
}
