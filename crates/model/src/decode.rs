//! Strict decoding of objects from JSON and multi-document YAML.
//!
//! Strict means: `apiVersion` and `kind` must name a registered kind, every field must be
//! known (the error names the field's path), struct fields may not repeat, and input is
//! bounded in size, nesting depth and YAML alias expansion. Decoding checks shape only;
//! [`validate`](crate::validate) checks values.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;
use crate::kinds::API_VERSION;
use crate::registry::{Resource, kind_by_name, known_kinds};

/// Largest JSON object accepted, as kube-apiserver's 3 MiB request body limit.
pub const MAX_JSON_BYTES: usize = 3 * 1024 * 1024;
/// Largest YAML source accepted (a whole multi-document file).
pub const MAX_YAML_BYTES: usize = 16 * 1024 * 1024;
/// Deepest YAML nesting accepted; portcullis objects need fewer than 16 levels, and
/// serde_json stops JSON at 128.
pub const MAX_YAML_DEPTH: usize = 64;
/// Most YAML aliases (`*ref`) accepted in one source, against alias-expansion bombs.
pub const MAX_YAML_ALIASES: usize = 1_000;
/// Most events that alias replay may add in one source, against alias-expansion bombs.
pub const MAX_YAML_REPLAYED_EVENTS: usize = 100_000;

/// Where the input came from, for error messages.
#[derive(Clone, Copy)]
struct Origin<'a> {
    source_name: &'a str,
    document: Option<usize>,
}

impl Origin<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Decode {
            source_name: self.source_name.to_owned(),
            document: self.document,
            field: field.into(),
            message: message.into(),
            unknown_field: false,
        }
    }
}

/// The `apiVersion` and `kind` of an object, read before the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: Option<Value>,
    #[serde(default)]
    kind: Option<Value>,
}

/// Checks `apiVersion` and `kind` against the registry; returns the kind name.
fn check_type(origin: Origin<'_>, prefix: &str, tm: TypeMeta) -> Result<&'static str, Error> {
    let field = |name: &str| join(prefix, name);
    let api_version = match tm.api_version {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(origin.err(
                field("apiVersion"),
                format!("required; use {API_VERSION:?}"),
            ));
        }
        Some(_) => return Err(origin.err(field("apiVersion"), "must be a string")),
    };
    let kind = match tm.kind {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(origin.err(
                field("kind"),
                format!("required; known kinds: {}", known_kinds()),
            ));
        }
        Some(_) => return Err(origin.err(field("kind"), "must be a string")),
    };
    // Error messages echo input: keep what they quote short.
    let (kind, api_version) = (short(&kind), short(&api_version));
    let Some(info) = kind_by_name(kind) else {
        return Err(origin.err(
            field("kind"),
            format!(
                "unknown kind {kind:?} (apiVersion {api_version:?}); known kinds of \
                 {API_VERSION}: {}",
                known_kinds()
            ),
        ));
    };
    if api_version != API_VERSION {
        return Err(origin.err(
            field("apiVersion"),
            format!("kind {kind} is served as apiVersion {API_VERSION:?}, not {api_version:?}"),
        ));
    }
    Ok(info.kind)
}

/// At most 64 characters of `s`, for quoting input in messages.
fn short(s: &str) -> &str {
    s.char_indices()
        .nth(64)
        .and_then(|(i, _)| s.get(..i))
        .unwrap_or(s)
}

fn join(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if field.starts_with('[') => format!("{prefix}{field}"),
        (false, false) => format!("{prefix}.{field}"),
    }
}

/// The OpenAPI schema of each kind, made once, for [`check_shape`].
fn schemas() -> &'static HashMap<&'static str, Value> {
    static SCHEMAS: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        crate::registry::kinds()
            .iter()
            .filter_map(|k| Some((k.kind, crate::schema::openapi_schema(k.kind)?)))
            .collect()
    })
}

/// Refuses a list where the schema wants a mapping: serde builds a struct from a sequence
/// too (`metadata: [a]` would set `name`), which Kubernetes' strict decoding does not allow.
fn check_shape(
    origin: Origin<'_>,
    field: &str,
    value: &Value,
    schema: &Value,
) -> Result<(), Error> {
    // Option<T> and documented enums come as alternatives; follow the one of the value's type.
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            for alt in alts {
                check_shape(origin, field, value, alt)?;
            }
        }
    }
    let wants_object =
        schema.get("type") == Some(&Value::from("object")) || schema.get("properties").is_some();
    match value {
        Value::Array(_) if wants_object => {
            Err(origin.err(field, "expected a mapping (object), found a list"))
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => items.iter().enumerate().try_for_each(|(i, item)| {
                check_shape(origin, &format!("{field}[{i}]"), item, item_schema)
            }),
            None => Ok(()),
        },
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            for (k, v) in map {
                let sub = props.and_then(|p| p.get(k)).or(extra);
                if let Some(sub) = sub {
                    check_shape(origin, &join(field, k), v, sub)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Turns a path-tracked serde error into field and message. For an unknown field the path
/// already ends with the field's own name.
fn path_error<E: std::fmt::Display>(
    origin: Origin<'_>,
    prefix: &str,
    e: serde_path_to_error::Error<E>,
) -> Error {
    let path = e.path().to_string();
    let path = if path == "." { "" } else { path.as_str() };
    let message = e.inner().to_string();
    Error::Decode {
        source_name: origin.source_name.to_owned(),
        document: origin.document,
        field: join(prefix, path),
        unknown_field: crate::error::is_unknown_field(&message),
        message,
    }
}

/// Decodes one object from a JSON value (as the management API receives it).
///
/// # Errors
///
/// [`Error::Decode`] naming the offending field.
pub fn decode_value(value: Value) -> Result<Resource, Error> {
    decode_value_at(
        Origin {
            source_name: "",
            document: None,
        },
        "",
        value,
    )
}

fn decode_value_at(origin: Origin<'_>, prefix: &str, value: Value) -> Result<Resource, Error> {
    if !value.is_object() {
        return Err(origin.err(
            prefix,
            "an object must be a mapping with apiVersion and kind",
        ));
    }
    let tm = TypeMeta::deserialize(&value).map_err(|e| origin.err(prefix, e.to_string()))?;
    let kind = check_type(origin, prefix, tm)?;
    if let Some(schema) = schemas().get(kind) {
        check_shape(origin, prefix, &value, schema)?;
    }
    match Resource::deserialize_kind(kind, value) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(origin.err(join(prefix, "kind"), format!("unknown kind {kind:?}"))),
        Err(e) => Err(path_error(origin, prefix, e)),
    }
}

/// Decodes one object from JSON bytes (at most [`MAX_JSON_BYTES`], nesting at most 128).
///
/// # Errors
///
/// [`Error::Decode`] naming the offending field; syntax errors give line and column.
pub fn decode_json(bytes: &[u8]) -> Result<Resource, Error> {
    let origin = Origin {
        source_name: "",
        document: None,
    };
    if bytes.len() > MAX_JSON_BYTES {
        return Err(origin.err(
            "",
            format!(
                "object is {} bytes, more than the limit of {MAX_JSON_BYTES}",
                bytes.len()
            ),
        ));
    }
    // Serde would also build a struct from a JSON array; an object must be a JSON object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(origin.err(
            "",
            "an object must be a JSON object with apiVersion and kind",
        ));
    }
    // First as a JSON value, for apiVersion, kind and shape; then typed from the bytes,
    // which also refuses repeated fields (a JSON value would keep the last silently).
    let value: Value = serde_json::from_slice(bytes).map_err(|e| origin.err("", e.to_string()))?;
    let tm = TypeMeta::deserialize(&value).map_err(|e| origin.err("", e.to_string()))?;
    let kind = check_type(origin, "", tm)?;
    if let Some(schema) = schemas().get(kind) {
        check_shape(origin, "", &value, schema)?;
    }
    drop(value);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let resource = match Resource::deserialize_kind(kind, &mut de) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(origin.err("kind", format!("unknown kind {kind:?}"))),
        Err(e) => return Err(path_error(origin, "", e)),
    };
    de.end().map_err(|e| origin.err("", e.to_string()))?;
    Ok(resource)
}

fn yaml_options() -> serde_saphyr::Options {
    yaml_options_with(serde_saphyr::Budget::default())
}

/// The YAML options of every source: `budget` with the depth and alias limits that stop
/// expansion bombs, whatever the source's size.
fn yaml_options_with(mut budget: serde_saphyr::Budget) -> serde_saphyr::Options {
    budget.max_depth = MAX_YAML_DEPTH;
    budget.max_aliases = MAX_YAML_ALIASES;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_YAML_REPLAYED_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = alias_limits;
    // Kubernetes' strict decoding refuses repeated keys rather than keeping one.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // YAML 1.2 booleans only, so that a label value `yes` or `on` stays a string.
    options.strict_booleans = true;
    options.reject_unsupported_tags = true;
    options
}

/// The documents of a file that the user named on the command line (`apply -f`, `can-i
/// --policy`): not a request from the network, so its size is the user's choice.
///
/// JSON (what `kubectl get … -o json` writes: one value, or several one after another) is read
/// as JSON, which is several times faster than reading it as YAML. Anything else is YAML whose
/// budgets of nodes, events, scalar bytes and documents grow with the text (a node or an event
/// takes at least a byte of it, unless an alias replays it), while depth and aliases keep the
/// limits of network input: those stop expansion bombs, which no size of file excuses.
///
/// # Errors
///
/// A message saying where the text stops being JSON or YAML (line and column).
pub fn local_documents(text: &str) -> Result<Vec<Value>, String> {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        let json: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect();
        match json {
            Ok(docs) => return Ok(docs),
            // A YAML flow mapping also starts with `{`: try YAML before giving up, and name
            // both errors if neither reads it.
            Err(json_error) => {
                return local_yaml(text).map_err(|yaml_error| {
                    format!("not valid JSON ({json_error}) nor YAML ({yaml_error})")
                });
            }
        }
    }
    local_yaml(text).map_err(|e| format!("not valid YAML or JSON: {e}"))
}

fn local_yaml(text: &str) -> Result<Vec<Value>, String> {
    let mut budget = serde_saphyr::Budget::default();
    let size = text.len();
    budget.max_nodes = budget.max_nodes.max(size);
    budget.max_events = budget.max_events.max(size.saturating_mul(4));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(size);
    budget.max_total_comment_bytes = budget.max_total_comment_bytes.max(size);
    budget.max_documents = budget.max_documents.max(size / 4);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, yaml_options_with(budget))
            .map_err(|e| e.without_snippet().to_string())?;
    // Empty documents (`---` alone, or a trailing one) hold nothing.
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Decodes every object of a YAML stream (documents separated by `---`; empty documents
/// skipped). A document of kind `List` (as `kubectl get -o yaml` prints) contributes its
/// `items`.
///
/// `source_name` (a file name, `-` for stdin) only labels errors.
///
/// # Errors
///
/// [`Error::Decode`] naming the source, the document number and the field path
/// (`items[1].spec.foo` inside a list). Input over [`MAX_YAML_BYTES`], nested deeper than
/// [`MAX_YAML_DEPTH`] or with more aliases than the limits is refused.
pub fn decode_yaml_documents(source_name: &str, text: &str) -> Result<Vec<Resource>, Error> {
    let whole = Origin {
        source_name,
        document: None,
    };
    if text.len() > MAX_YAML_BYTES {
        return Err(whole.err(
            "",
            format!(
                "input is {} bytes, more than the limit of {MAX_YAML_BYTES}",
                text.len()
            ),
        ));
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| whole.err("", e.without_snippet().to_string()))?;
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        let origin = Origin {
            source_name,
            document: Some(i + 1),
        };
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            out.extend(decode_list(origin, doc)?);
        } else {
            out.push(decode_value_at(origin, "", doc)?);
        }
    }
    Ok(out)
}

/// `{apiVersion: v1, kind: List, metadata: {…}, items: […]}`.
fn decode_list(origin: Origin<'_>, doc: Value) -> Result<Vec<Resource>, Error> {
    let Value::Object(map) = doc else {
        return Err(origin.err("", "a List must be a mapping"));
    };
    let mut items = Vec::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("apiVersion" | "kind" | "metadata", _) => {}
            ("items", Value::Array(list)) => items = list,
            ("items", Value::Null) => {}
            ("items", _) => return Err(origin.err("items", "must be a list of objects")),
            (other, _) => {
                return Err(origin.err(
                    other,
                    "unknown field of a List; expected apiVersion, kind, metadata or items",
                ));
            }
        }
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| decode_value_at(origin, &format!("items[{i}]"), item))
        .collect()
}
