//! `labelSelector` and `fieldSelector` of list and watch requests.

use portcullis_model::LabelSelector;
use portcullis_store::KeyValue;

use super::Query;
use super::status::ApiError;

/// Reserved key under which [`super::objects::labels_of`] exposes `metadata.name`.
pub const NAME_FIELD: &str = "\u{0}metadata.name";
/// Reserved key under which [`super::objects::labels_of`] exposes `metadata.namespace`.
pub const NAMESPACE_FIELD: &str = "\u{0}metadata.namespace";

/// The selectors of one request. Empty selectors match everything.
#[derive(Debug, Default)]
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Vec<(String, bool, String)>,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector` from the query.
    pub fn from_query(q: &Query) -> Result<Filter, ApiError> {
        let labels = match q.get("labelSelector").map(|s| s.trim()) {
            None | Some("") => None,
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("unable to parse labelSelector {s:?}: {e}"))
            })?),
        };
        let mut fields = Vec::new();
        if let Some(fs) = q
            .get("fieldSelector")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            for term in fs.split(',') {
                let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                    (f, false, v)
                } else if let Some((f, v)) = term.split_once("==") {
                    (f, true, v)
                } else if let Some((f, v)) = term.split_once('=') {
                    (f, true, v)
                } else {
                    return Err(ApiError::bad_request(format!(
                        "invalid fieldSelector term {term:?}: expected FIELD=VALUE or FIELD!=VALUE"
                    )));
                };
                let key = match field.trim() {
                    "metadata.name" => NAME_FIELD,
                    "metadata.namespace" => NAMESPACE_FIELD,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {other} (supported: metadata.name, metadata.namespace)"
                        )));
                    }
                };
                fields.push((key.to_owned(), equal, value.trim().to_owned()));
            }
        }
        Ok(Filter { labels, fields })
    }

    /// True when the stored object matches every selector.
    pub fn matches_kv(&self, kv: &KeyValue) -> bool {
        if self.labels.is_none() && self.fields.is_empty() {
            return true;
        }
        let labels = super::objects::labels_of(kv);
        let fields_ok = self.fields.iter().all(|(key, equal, value)| {
            (labels.get(key).map(String::as_str).unwrap_or_default() == value) == *equal
        });
        let mut user_labels = labels;
        user_labels.remove(NAME_FIELD);
        user_labels.remove(NAMESPACE_FIELD);
        fields_ok && self.labels.as_ref().is_none_or(|s| s.matches(&user_labels))
    }
}
