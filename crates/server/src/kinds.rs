//! The resource types the management plane serves, from the `model` crate's registry: its
//! strict decoder and its validation rules become each type's [`Codec`].

use std::sync::Arc;

use portcullis_model::{Error as ModelError, FieldError, KindInfo};
use serde_json::Value;

use crate::api::registry::{Codec, DecodeFailure, Registry, ResourceType};
use crate::api::status::Cause;

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
        codec: Arc::new(ModelCodec),
        review: None,
    }
}

/// Decodes with [`portcullis_model::decode_value`] (unknown fields are errors naming their
/// path) and validates with the model's rules.
struct ModelCodec;

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
        ModelError::Decode { field, message, .. } => Cause {
            reason: if message.contains("unknown field") {
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
