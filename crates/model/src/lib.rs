//! portcullis resource model: the Kubernetes-style kinds (group `portcullis.dev`, version
//! `v1alpha1`), their registry, strict YAML/JSON decoding, label selectors and the name and
//! label syntax rules. Pure data and logic, no I/O.
//!
//! - [`kinds`](mod@kinds) defines the kinds; [`registry`] lists them ([`kinds()`], [`kind_by_plural`],
//!   [`kind_by_name`]) and holds [`Resource`], one object of any kind.
//! - [`decode_json`], [`decode_value`] and [`decode_yaml_documents`] decode strictly:
//!   unknown fields and kinds are errors that name the field's path.
//! - [`validate`] and [`validate_update`] check values by Kubernetes' rules and return
//!   [`FieldError`]s shaped for a `422 Invalid` `Status`.
//! - [`openapi_schema`] and [`openapi_document`] give OpenAPI v3 schemas of the kinds.
#![deny(missing_docs)]

pub mod common;
pub mod decode;
pub mod error;
pub mod kinds;
pub mod label_selector;
pub mod meta;
pub mod registry;
pub mod schema;
pub mod syntax;
pub mod validation;

pub use common::{Condition, ConditionStatus, LocalObjectReference, SecretKeySelector};
pub use decode::{decode_json, decode_value, decode_yaml_documents};
pub use error::Error;
pub use kinds::client::{
    Client, ClientSpec, GrantType, IdTokenSigningAlg, check_redirect_uri, hash_client_secret,
};
pub use kinds::cluster::{Cluster, ClusterSpec};
pub use kinds::connector::{Connector, ConnectorSpec, ConnectorType};
pub use kinds::group::{ClaimPattern, Group, GroupSpec, PatternClaim};
pub use kinds::project::{Project, ProjectPlacement, ProjectSpec};
pub use kinds::role::{
    ClusterFailure, ClusterScopeRole, ClusterScopeRoleBinding, GLOBAL_NAMESPACE, KommanderRole,
    KommanderRoleBinding, MAX_STATUS_FAILURES, PolicyRule, RBAC_API_GROUP, RoleRef,
    SYNC_TO_PROJECT_ANNOTATION, Scope, SourceStatus, Subject, SubjectKind, resolve_scope,
};
pub use kinds::user::{User, UserSpec};
pub use kinds::workspace::{Workspace, WorkspaceSpec};
pub use kinds::{API_VERSION, GROUP, VERSION};
pub use label_selector::{LabelSelector, LabelSelectorOperator, LabelSelectorRequirement};
pub use meta::{ObjectMeta, OwnerReference};
pub use registry::{KindInfo, Resource, kind_by_any_name, kind_by_name, kind_by_plural, kinds};
pub use schema::{openapi_document, openapi_schema, openapi_schema_name};
pub use validation::{FieldError, FieldErrorType, validate, validate_update};
