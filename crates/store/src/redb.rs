//! Embedded backend: one redb file. Every acknowledged write is durable (redb commits with
//! `Durability::Immediate`); writes that arrive together are committed together — one
//! transaction, one sync — and each caller is answered after that commit (group commit).

use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    KeyValue, ListOptions, ListPage, Revision, Store, StoreError, WatchEvent, WatchStream, paging,
};

const KV: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("kv");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
const COMPACTED: &str = "compacted";

/// Events kept for watches that resume from an older revision.
const DEFAULT_HISTORY: u64 = 10_000;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Live events buffered per watcher before it is told it lagged.
const WATCH_BUFFER: usize = 4096;

enum Op {
    Create(String, Vec<u8>),
    Update(String, Vec<u8>, Option<Revision>),
    Delete(String, Option<Revision>),
    Compact(Revision),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Option<KeyValue>, StoreError>>,
}

/// The redb store.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    writes: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<(Revision, WatchEvent)>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

// === record encoding ===
// kv value: create_revision (8 bytes BE) | mod_revision (8) | value
// event:    type (1: 0 added, 1 modified, 2 deleted) | create (8) | mod (8) | key length (4) | key | value

fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = || StoreError::Backend(format!("stored record of {key:?} is corrupt"));
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: u64_at(bytes, 0).ok_or_else(corrupt)?,
        mod_revision: u64_at(bytes, 8).ok_or_else(corrupt)?,
        value: bytes.get(16..).ok_or_else(corrupt)?.to_vec(),
    })
}

fn encode_event(ev: &WatchEvent) -> Vec<u8> {
    let (t, kv) = match ev {
        WatchEvent::Added(kv) => (0u8, kv),
        WatchEvent::Modified(kv) => (1, kv),
        WatchEvent::Deleted(kv) => (2, kv),
    };
    let mut out = Vec::with_capacity(21 + kv.key.len() + kv.value.len());
    out.push(t);
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(kv.key.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(kv.key.as_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_event(bytes: &[u8]) -> Result<WatchEvent, StoreError> {
    let corrupt = || StoreError::Backend("stored event is corrupt".into());
    let t = *bytes.first().ok_or_else(corrupt)?;
    let create_revision = u64_at(bytes, 1).ok_or_else(corrupt)?;
    let mod_revision = u64_at(bytes, 9).ok_or_else(corrupt)?;
    let len = bytes
        .get(17..21)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(corrupt)? as usize;
    let key = std::str::from_utf8(bytes.get(21..21 + len).ok_or_else(corrupt)?)
        .map_err(|_| corrupt())?
        .to_owned();
    let value = bytes.get(21 + len..).ok_or_else(corrupt)?.to_vec();
    let kv = KeyValue {
        key,
        value,
        create_revision,
        mod_revision,
    };
    Ok(match t {
        0 => WatchEvent::Added(kv),
        1 => WatchEvent::Modified(kv),
        2 => WatchEvent::Deleted(kv),
        _ => return Err(corrupt()),
    })
}

/// Page cache of the database file. redb's default (1 GiB) lets the cache grow to a
/// gigabyte under a write load such as refresh token rotation; the management plane's state
/// is far smaller, and pages not cached are read from the OS page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

impl RedbStore {
    /// Opens (or creates) the store file. Another process holding the file is an error.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_history(path, DEFAULT_HISTORY)
    }

    /// Opens the store keeping the last `history` events for watches.
    pub fn open_with_history(path: &Path, history: u64) -> Result<RedbStore, StoreError> {
        // A store dropped a moment ago in this process may still be closing (its writer
        // thread ends after the last handle goes): wait a little for the lock before failing.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(path)
            {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::park_timeout(std::time::Duration::from_millis(20));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Backend(format!(
                        "{} is in use by another process; stop it or choose another --data-dir",
                        path.display()
                    )));
                }
                Err(other) => {
                    return Err(StoreError::Backend(format!("{}: {other}", path.display())));
                }
            }
        };
        let db = Arc::new(db);
        {
            let mut tx = db.begin_write().map_err(backend)?;
            tx.set_durability(Durability::Immediate).map_err(backend)?;
            tx.open_table(KV).map_err(backend)?;
            tx.open_table(EVENTS).map_err(backend)?;
            tx.open_table(META).map_err(backend)?;
            tx.commit().map_err(backend)?;
        }
        let (writes, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let writer_db = db.clone();
        let writer_events = events.clone();
        std::thread::Builder::new()
            .name("portcullis-redb-writer".into())
            .spawn(move || writer(writer_db, rx, writer_events, history.max(1)))
            .map_err(backend)?;
        Ok(RedbStore { db, writes, events })
    }

    async fn submit(&self, op: Op) -> Result<Option<KeyValue>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Request { op, reply })
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }
}

/// The single writer: takes every request waiting, applies them in one transaction, commits
/// once, then answers and publishes.
fn writer(
    db: Arc<Database>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    events: broadcast::Sender<(Revision, WatchEvent)>,
    history: u64,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match apply_batch(&db, &batch, history) {
            Ok(results) => {
                for (req, (result, event)) in batch.into_iter().zip(results) {
                    if let Some((rev, ev)) = event {
                        let _ = events.send((rev, ev));
                    }
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                for req in batch {
                    let _ = req.reply.send(Err(StoreError::Backend(e.to_string())));
                }
            }
        }
    }
}

type OpResult = (
    Result<Option<KeyValue>, StoreError>,
    Option<(Revision, WatchEvent)>,
);

fn apply_batch(
    db: &Database,
    batch: &[Request],
    history: u64,
) -> Result<Vec<OpResult>, StoreError> {
    let mut tx = db.begin_write().map_err(backend)?;
    tx.set_durability(Durability::Immediate).map_err(backend)?;
    let mut results = Vec::with_capacity(batch.len());
    {
        let mut kv = tx.open_table(KV).map_err(backend)?;
        let mut ev = tx.open_table(EVENTS).map_err(backend)?;
        let mut meta = tx.open_table(META).map_err(backend)?;
        let mut revision = meta
            .get(REVISION)
            .map_err(backend)?
            .map(|g| g.value())
            .unwrap_or(0);
        let mut compacted = meta
            .get(COMPACTED)
            .map_err(backend)?
            .map(|g| g.value())
            .unwrap_or(0);
        for req in batch {
            let current = |key: &str,
                           kv: &redb::Table<'_, &str, &[u8]>|
             -> Result<Option<KeyValue>, StoreError> {
                match kv.get(key).map_err(backend)? {
                    Some(g) => decode_kv(key, g.value()).map(Some),
                    None => Ok(None),
                }
            };
            let outcome: Result<WatchEvent, StoreError> = match &req.op {
                Op::Create(key, value) => match current(key, &kv)? {
                    Some(_) => Err(StoreError::AlreadyExists(key.clone())),
                    None => Ok(WatchEvent::Added(KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: revision + 1,
                        mod_revision: revision + 1,
                    })),
                },
                Op::Update(key, value, expected) => match current(key, &kv)? {
                    None => Err(StoreError::NotFound(key.clone())),
                    Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                        Err(StoreError::Conflict {
                            key: key.clone(),
                            expected: expected.unwrap_or_default(),
                            actual: cur.mod_revision,
                        })
                    }
                    Some(cur) => Ok(WatchEvent::Modified(KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: cur.create_revision,
                        mod_revision: revision + 1,
                    })),
                },
                Op::Delete(key, expected) => match current(key, &kv)? {
                    None => Err(StoreError::NotFound(key.clone())),
                    Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                        Err(StoreError::Conflict {
                            key: key.clone(),
                            expected: expected.unwrap_or_default(),
                            actual: cur.mod_revision,
                        })
                    }
                    Some(cur) => Ok(WatchEvent::Deleted(KeyValue {
                        mod_revision: revision + 1,
                        ..cur
                    })),
                },
                Op::Compact(rev) => {
                    let upto = (*rev).min(revision);
                    // Only the range to drop is visited (`retain` would walk the whole history).
                    ev.retain_in(..=upto, |_, _| false).map_err(backend)?;
                    compacted = compacted.max(upto);
                    results.push((Ok(None), None));
                    continue;
                }
            };
            match outcome {
                Err(e) => results.push((Err(e), None)),
                Ok(event) => {
                    revision += 1;
                    match &event {
                        WatchEvent::Added(v) | WatchEvent::Modified(v) => {
                            kv.insert(v.key.as_str(), encode_kv(v).as_slice())
                                .map_err(backend)?;
                        }
                        WatchEvent::Deleted(v) => {
                            kv.remove(v.key.as_str()).map_err(backend)?;
                        }
                    }
                    ev.insert(revision, encode_event(&event).as_slice())
                        .map_err(backend)?;
                    results.push((Ok(Some(event.kv().clone())), Some((revision, event))));
                }
            }
        }
        // Keep the last `history` events.
        if revision > history && revision - history > compacted {
            let upto = revision - history;
            // Only the events falling out are visited: a commit costs the events it drops, not
            // a walk over the whole history (which made every commit O(history)).
            ev.retain_in(..=upto, |_, _| false).map_err(backend)?;
            compacted = upto;
        }
        meta.insert(REVISION, revision).map_err(backend)?;
        meta.insert(COMPACTED, compacted).map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(results)
}

fn read_meta(db: &Database) -> Result<(Revision, Revision), StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let meta = tx.open_table(META).map_err(backend)?;
    let rev = meta
        .get(REVISION)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(0);
    let compacted = meta
        .get(COMPACTED)
        .map_err(backend)?
        .map(|g| g.value())
        .unwrap_or(0);
    Ok((rev, compacted))
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.submit(Op::Create(key.to_owned(), value))
            .await?
            .ok_or_else(|| backend("create returned nothing"))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.submit(Op::Update(key.to_owned(), value, expected))
            .await?
            .ok_or_else(|| backend("update returned nothing"))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.submit(Op::Delete(key.to_owned(), expected))
            .await?
            .ok_or_else(|| backend("delete returned nothing"))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.read(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let kv = tx.open_table(KV).map_err(backend)?;
            match kv.get(key.as_str()).map_err(backend)? {
                Some(g) => decode_kv(&key, g.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Each page is one read transaction; later pages are read from the state current then,
    /// after the previous page's last key. The list's revision is the first page's.
    async fn list(&self, prefix: &str, options: ListOptions<'_>) -> Result<ListPage, StoreError> {
        let prefix_owned = prefix.to_owned();
        let token = options.continue_token.clone();
        // The filter is not 'static: gather candidates in the blocking task, filter here.
        let (current, candidates) = self
            .read(move |db| {
                let tx = db.begin_read().map_err(backend)?;
                let (rev, _) = {
                    let meta = tx.open_table(META).map_err(backend)?;
                    (
                        meta.get(REVISION)
                            .map_err(backend)?
                            .map(|g| g.value())
                            .unwrap_or(0),
                        (),
                    )
                };
                let cursor = paging::Cursor::start(&prefix_owned, token.as_deref(), rev)?;
                let kv = tx.open_table(KV).map_err(backend)?;
                let mut out = Vec::new();
                for item in kv
                    .range::<&str>((
                        cursor.lower_bound(prefix_owned.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .map_err(backend)?
                {
                    let (k, v) = item.map_err(backend)?;
                    let key = k.value();
                    if !key.starts_with(prefix_owned.as_str()) {
                        break;
                    }
                    out.push(decode_kv(key, v.value())?);
                }
                Ok((rev, out))
            })
            .await?;
        let cursor = paging::Cursor::start(prefix, options.continue_token.as_deref(), current)?;
        Ok(paging::page(prefix, &cursor, candidates.iter(), &options))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe first: what commits after the backlog read arrives live, what committed
        // before is in the backlog; duplicates are dropped by revision.
        let receiver = self.events.subscribe();
        let prefix_owned = prefix.to_owned();
        let backlog = self
            .read(move |db| {
                let (_, compacted) = read_meta(db)?;
                if after < compacted {
                    return Err(StoreError::Compacted {
                        requested: after,
                        oldest: compacted + 1,
                    });
                }
                let tx = db.begin_read().map_err(backend)?;
                let ev = tx.open_table(EVENTS).map_err(backend)?;
                let mut out = Vec::new();
                for item in ev.range((after + 1)..).map_err(backend)? {
                    let (r, v) = item.map_err(backend)?;
                    let event = decode_event(v.value())?;
                    if event.kv().key.starts_with(prefix_owned.as_str()) {
                        out.push((r.value(), event));
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(crate::watch::replay_then_live(
            backlog, receiver, after, prefix,
        ))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.read(|db| read_meta(db).map(|(r, _)| r)).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.submit(Op::Compact(revision)).await.map(|_| ())
    }
}
