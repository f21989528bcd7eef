//! The resource types the management plane serves, from the `model` crate's registry: its
//! strict decoder and its validation rules become each type's [`Codec`].

use std::sync::Arc;

use portcullis_model::{Error as ModelError, FieldError, KindInfo};
use serde_json::Value;

use crate::api::registry::{AdmitRequest, Codec, DecodeFailure, Operation, Registry, ResourceType};
use crate::api::status::Cause;

/// Name of the static admin, a local user.
pub const STATIC_ADMIN: &str = "admin";
/// The static admin's e-mail address: the user name the management API sees in its ID
/// tokens (`.invalid` is reserved, RFC 2606, so no real mailbox or upstream account has it).
pub const STATIC_ADMIN_EMAIL: &str = "admin@portcullis.invalid";
/// File in the data directory holding the static admin's first password.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Every kind of `portcullis.dev/v1alpha1`.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    for k in portcullis_model::kinds() {
        r.register(resource_type(k));
    }
    r
}

fn resource_type(k: &'static KindInfo) -> ResourceType {
    ResourceType {
        group: k.group.to_owned(),
        version: k.version.to_owned(),
        kind: k.kind.to_owned(),
        plural: k.plural.to_owned(),
        singular: k.singular.to_owned(),
        namespaced: k.namespaced,
        short_names: k.short_names.iter().map(|s| (*s).to_owned()).collect(),
        has_status: k.has_status,
        // The User kind's admission keeps a way in: see [`UserCodec`].
        codec: if k.kind == "User" {
            Arc::new(UserCodec)
        } else {
            Arc::new(ModelCodec)
        },
        review: None,
    }
}

/// Decodes with [`portcullis_model::decode_value`] (unknown fields are errors naming their
/// path) and validates with the model's rules.
struct ModelCodec;

#[async_trait::async_trait]
impl Codec for ModelCodec {
    fn decode(&self, object: &Value) -> Result<Value, DecodeFailure> {
        let resource = portcullis_model::decode_value(object.clone()).map_err(decode_failure)?;
        portcullis_model::validate(&resource).map_err(invalid)?;
        Ok(resource.to_json_value())
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Result<(), DecodeFailure> {
        let old = portcullis_model::decode_value(old.clone()).map_err(decode_failure)?;
        let new = portcullis_model::decode_value(new.clone()).map_err(decode_failure)?;
        portcullis_model::validate_update(&old, &new).map_err(invalid)
    }
}

/// The User kind: the model's codec, and an admission rule: the static admin may be disabled
/// or deleted only once a `Connector` exists, or no one could log in at the issuer any more
/// (the X.509 break-glass certificate still works either way).
struct UserCodec;

#[async_trait::async_trait]
impl Codec for UserCodec {
    fn decode(&self, object: &Value) -> Result<Value, DecodeFailure> {
        ModelCodec.decode(object)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Result<(), DecodeFailure> {
        ModelCodec.validate_update(old, new)
    }

    async fn admit(&self, request: &AdmitRequest<'_>, new: &Value) -> Result<(), DecodeFailure> {
        let static_admin = request.request_name == STATIC_ADMIN;
        let locking_out = match request.operation {
            Operation::Delete => true,
            Operation::Create | Operation::Update => {
                new.pointer("/spec/disabled") == Some(&Value::Bool(true))
            }
        };
        if !(static_admin && locking_out) {
            return Ok(());
        }
        let connectors = request
            .store
            .list(
                &portcullis_store::keys::collection(portcullis_model::GROUP, "connectors", ""),
                portcullis_store::ListOptions {
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                DecodeFailure::Status(crate::api::status::ApiError::internal(format!(
                    "reading connectors: {e}"
                )))
            })?;
        if connectors.items.is_empty() {
            return Err(DecodeFailure::Forbidden(
                "the static admin can be disabled only once a Connector is set up; \
                 create one first, or no one can log in at the issuer"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn invalid(errors: Vec<FieldError>) -> DecodeFailure {
    DecodeFailure::Invalid(
        errors
            .into_iter()
            .map(|e| Cause {
                reason: e.reason.cause_type().to_owned(),
                message: e.message,
                field: e.field,
            })
            .collect(),
    )
}

fn decode_failure(e: ModelError) -> DecodeFailure {
    let message = e.to_string();
    let cause = match &e {
        ModelError::Decode {
            field,
            message,
            unknown_field,
            ..
        } => Cause {
            reason: if *unknown_field {
                "FieldValueUnknown".into()
            } else {
                "FieldValueInvalid".into()
            },
            message: message.clone(),
            field: field.clone(),
        },
        _ => Cause {
            reason: "FieldValueInvalid".into(),
            message: message.clone(),
            field: String::new(),
        },
    };
    DecodeFailure::BadRequest(format!("strict decoding error: {message}"), vec![cause])
}
