//! Continue tokens and page assembly shared by the backends that page in this process.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{KeyValue, ListOptions, ListPage, Revision, StoreError};

/// Longest continue token accepted, in bytes.
const MAX_TOKEN: usize = 4096;

#[derive(Serialize, Deserialize)]
struct Token {
    /// Prefix of the list the token belongs to.
    p: String,
    /// Last key returned.
    k: String,
    /// Revision of the first page.
    r: Revision,
}

/// Where a page starts.
pub(crate) struct Cursor {
    after: Option<String>,
    /// Revision reported for the whole list.
    pub(crate) revision: Revision,
}

impl Cursor {
    /// Decodes `token` (if any) for a list of `prefix`.
    pub(crate) fn start(
        prefix: &str,
        token: Option<&str>,
        current: Revision,
    ) -> Result<Cursor, StoreError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Cursor {
                after: None,
                revision: current,
            });
        };
        if token.len() > MAX_TOKEN {
            return Err(StoreError::InvalidContinue("token too long".into()));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| StoreError::InvalidContinue("not base64".into()))?;
        let t: Token = serde_json::from_slice(&bytes).map_err(|_| {
            StoreError::InvalidContinue("not a continue token of this server".into())
        })?;
        if t.p != prefix || !t.k.starts_with(prefix) {
            return Err(StoreError::InvalidContinue(
                "the token belongs to another list".into(),
            ));
        }
        Ok(Cursor {
            after: Some(t.k),
            revision: t.r,
        })
    }

    /// Lower bound of the key range of the page: after the previous page's last key, or the
    /// prefix itself on the first page (keys before it belong to other lists).
    pub(crate) fn lower_bound<'a>(&'a self, prefix: &'a str) -> std::ops::Bound<&'a str> {
        match &self.after {
            Some(k) => std::ops::Bound::Excluded(k.as_str()),
            None => std::ops::Bound::Included(prefix),
        }
    }

    /// True when `key` comes after the cursor.
    pub(crate) fn admits(&self, key: &str) -> bool {
        self.after.as_deref().is_none_or(|a| key > a)
    }
}

/// Collects one page from candidates in key order (all under `prefix`, after the cursor).
pub(crate) fn page<'a>(
    prefix: &str,
    cursor: &Cursor,
    candidates: impl Iterator<Item = &'a KeyValue>,
    options: &ListOptions<'_>,
) -> ListPage {
    let limit = options.limit.filter(|l| *l > 0);
    let mut items = Vec::new();
    let mut more = false;
    for kv in candidates {
        if !cursor.admits(&kv.key) || options.filter.is_some_and(|f| !f(kv)) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            more = true;
            break;
        }
        items.push(kv.clone());
    }
    let continue_token = match (more, items.last()) {
        (true, Some(last)) => {
            let t = Token {
                p: prefix.to_owned(),
                k: last.key.clone(),
                r: cursor.revision,
            };
            serde_json::to_vec(&t)
                .ok()
                .map(|b| URL_SAFE_NO_PAD.encode(b))
        }
        _ => None,
    };
    ListPage {
        items,
        revision: cursor.revision,
        continue_token,
    }
}
