//! In-memory backend, for tests and demos. Same semantics as the durable backends, nothing
//! survives the process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::{
    KeyValue, ListOptions, ListPage, Revision, Store, StoreError, WatchEvent, WatchStream, paging,
};

/// Events kept for watches that resume from an older revision.
const DEFAULT_HISTORY: usize = 10_000;
/// Live events buffered per watcher before it is told it lagged.
const WATCH_BUFFER: usize = 4096;

#[derive(Debug, Default)]
struct State {
    revision: Revision,
    data: BTreeMap<String, KeyValue>,
    history: VecDeque<(Revision, WatchEvent)>,
    /// Every revision at or below this one is gone from `history`.
    compacted: Revision,
}

/// The in-memory store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<(Revision, WatchEvent)>,
    history_limit: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store keeping the last 10,000 events for watches.
    pub fn new() -> MemoryStore {
        MemoryStore::with_history(DEFAULT_HISTORY)
    }

    /// An empty store keeping the last `history_limit` events for watches.
    pub fn with_history(history_limit: usize) -> MemoryStore {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        MemoryStore {
            state: Arc::new(Mutex::new(State::default())),
            events,
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }

    /// Applies one write under the lock: bumps the revision, records and publishes the event.
    fn commit(
        &self,
        state: &mut State,
        event_of: impl FnOnce(Revision) -> WatchEvent,
    ) -> WatchEvent {
        state.revision += 1;
        let rev = state.revision;
        let event = event_of(rev);
        match &event {
            WatchEvent::Added(kv) | WatchEvent::Modified(kv) => {
                state.data.insert(kv.key.clone(), kv.clone());
            }
            WatchEvent::Deleted(kv) => {
                state.data.remove(&kv.key);
            }
        }
        state.history.push_back((rev, event.clone()));
        while state.history.len() > self.history_limit {
            if let Some((r, _)) = state.history.pop_front() {
                state.compacted = r;
            }
        }
        // No receiver is not an error: nobody watches.
        let _ = self.events.send((rev, event.clone()));
        event
    }
}

fn check_expected(
    key: &str,
    current: &KeyValue,
    expected: Option<Revision>,
) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_owned(),
            expected: e,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let mut state = self.lock()?;
        if state.data.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        let event = self.commit(&mut state, |rev| {
            WatchEvent::Added(KeyValue {
                key: key.to_owned(),
                value,
                create_revision: rev,
                mod_revision: rev,
            })
        });
        Ok(event.into_kv())
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let mut state = self.lock()?;
        let current = state
            .data
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
        check_expected(key, current, expected)?;
        let create_revision = current.create_revision;
        let event = self.commit(&mut state, |rev| {
            WatchEvent::Modified(KeyValue {
                key: key.to_owned(),
                value,
                create_revision,
                mod_revision: rev,
            })
        });
        Ok(event.into_kv())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let mut state = self.lock()?;
        let current = state
            .data
            .get(key)
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?
            .clone();
        check_expected(key, &current, expected)?;
        let event = self.commit(&mut state, |rev| {
            WatchEvent::Deleted(KeyValue {
                mod_revision: rev,
                ..current
            })
        });
        Ok(event.into_kv())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock()?.data.get(key).cloned())
    }

    /// Later pages are read from the current state after the last key of the previous page
    /// (the apiserver's watch cache does the same); the list's revision is the first page's.
    async fn list(&self, prefix: &str, options: ListOptions<'_>) -> Result<ListPage, StoreError> {
        let state = self.lock()?;
        let cursor =
            paging::Cursor::start(prefix, options.continue_token.as_deref(), state.revision)?;
        let candidates = state
            .data
            .range::<str, _>((cursor.lower_bound(prefix), std::ops::Bound::Unbounded))
            .map(|(_, kv)| kv)
            .take_while(|kv| kv.key.starts_with(prefix));
        Ok(paging::page(prefix, &cursor, candidates, &options))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let (backlog, receiver) = {
            let state = self.lock()?;
            if after < state.compacted {
                return Err(StoreError::Compacted {
                    requested: after,
                    oldest: state.compacted + 1,
                });
            }
            let backlog: Vec<(Revision, WatchEvent)> = state
                .history
                .iter()
                .filter(|(rev, ev)| *rev > after && ev.kv().key.starts_with(prefix))
                .cloned()
                .collect();
            // Subscribing under the lock: no event can fall between backlog and live.
            (backlog, self.events.subscribe())
        };
        Ok(crate::watch::replay_then_live(
            backlog, receiver, after, prefix,
        ))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock()?.revision)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        while state.history.front().is_some_and(|(r, _)| *r <= revision) {
            state.history.pop_front();
        }
        state.compacted = state.compacted.max(revision.min(state.revision));
        Ok(())
    }
}
