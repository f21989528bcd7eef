//! Versioned key-value store with the semantics of the Kubernetes registry.
//!
//! Every write gets a revision from one global, strictly increasing counter (etcd's
//! `mod_revision`); the API reports it as `metadata.resourceVersion`. Writes are
//! compare-and-swap on that revision; lists page with a continue token; watches replay
//! every event after a revision, in order, or fail with [`StoreError::Compacted`]
//! (HTTP 410 Gone) when that history is no longer kept.
#![deny(missing_docs)]

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod keys;
pub mod memory;
mod paging;
pub mod redb;
mod watch;

use std::pin::Pin;

use futures::Stream;

/// Revision of the whole store, as etcd counts them. Revision 0 means "never written".
pub type Revision = u64;

/// One stored value with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Full key, e.g. `/portcullis.dev/workspaces/ws-a`.
    pub key: String,
    /// The stored bytes (JSON of the object, opaque to the store).
    pub value: Vec<u8>,
    /// Revision at which the key was created (last created, if it was deleted since).
    pub create_revision: Revision,
    /// Revision of the last write of this key.
    pub mod_revision: Revision,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created; carries the new value.
    Added(KeyValue),
    /// The key was updated; carries the new value.
    Modified(KeyValue),
    /// The key was deleted; carries the last value, with `mod_revision` = the deletion's revision.
    Deleted(KeyValue),
}

impl WatchEvent {
    /// The key-value the event carries.
    pub fn kv(&self) -> &KeyValue {
        match self {
            WatchEvent::Added(kv) | WatchEvent::Modified(kv) | WatchEvent::Deleted(kv) => kv,
        }
    }

    /// The key-value the event carries, by value.
    pub fn into_kv(self) -> KeyValue {
        match self {
            WatchEvent::Added(kv) | WatchEvent::Modified(kv) | WatchEvent::Deleted(kv) => kv,
        }
    }
}

/// Events of a watch, in revision order. An `Err` ends the stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Filter applied to list results before paging (label selectors, field selectors).
pub type ListFilter<'a> = &'a (dyn Fn(&KeyValue) -> bool + Send + Sync);

/// Options of [`Store::list`].
#[derive(Default)]
pub struct ListOptions<'a> {
    /// At most this many items in the page; `None` or `Some(0)` is unlimited.
    pub limit: Option<usize>,
    /// Continue token from a previous page of the same list.
    pub continue_token: Option<String>,
    /// Only items for which this returns true are returned and counted against `limit`.
    pub filter: Option<ListFilter<'a>>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// Revision at which the list was read (the `resourceVersion` of the list).
    pub revision: Revision,
    /// Token for the next page, when more items remain.
    pub continue_token: Option<String>,
}

/// Errors of the store. Each maps to one Kubernetes `Status` reason.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists (409 AlreadyExists).
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// The key does not exist (404 NotFound).
    #[error("key {0:?} not found")]
    NotFound(String),
    /// The expected revision did not match the stored one (409 Conflict).
    #[error(
        "key {key:?} was modified: expected revision {expected}, stored revision {actual}; read it again and retry"
    )]
    Conflict {
        /// The key.
        key: String,
        /// Revision the caller expected.
        expected: Revision,
        /// Revision stored now.
        actual: Revision,
    },
    /// The requested revision has been compacted away (410 Gone / Expired).
    #[error(
        "revision {requested} is too old: history starts at revision {oldest}; list again and watch from the list's resourceVersion"
    )]
    Compacted {
        /// Revision asked for.
        requested: Revision,
        /// Oldest revision still available.
        oldest: Revision,
    },
    /// A continue token that this store did not issue or cannot decode (400 BadRequest).
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// The backend failed (500, or 503 when unreachable).
    #[error("store backend error: {0}")]
    Backend(String),
}

/// Versioned key-value store. Implementations: memory, redb, etcd.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces `key`. With `expected = Some(rev)` the write happens only if the stored
    /// `mod_revision` is `rev` ([`StoreError::Conflict`] otherwise). Missing key: [`StoreError::NotFound`].
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key`, with the same precondition as `update`. Returns the deleted value,
    /// its `mod_revision` set to the deletion's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Reads `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Lists keys starting with `prefix`, in key order, one page at a time.
    async fn list(&self, prefix: &str, options: ListOptions<'_>) -> Result<ListPage, StoreError>;

    /// Streams every change under `prefix` with revision greater than `after`, in order,
    /// then live changes. [`StoreError::Compacted`] if `after` is older than the kept history.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The current revision of the store.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Drops history at and below `revision`; watches from before it then fail with `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
