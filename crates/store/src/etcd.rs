//! etcd backend (for HA): the Kubernetes registry's own storage model. Keys live under a
//! prefix so several installs can share one etcd; revisions are etcd's; preconditions are
//! transactions on `mod_revision`; list pages after the first read at the first page's revision
//! (a consistent snapshot, as the apiserver's paging), and etcd's compaction becomes
//! [`StoreError::Compacted`].

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{
    KeyValue, ListOptions, ListPage, Revision, Store, StoreError, WatchEvent, WatchStream, paging,
};

/// Keys read from etcd per request while paging through a list.
const BATCH: i64 = 500;

/// The etcd store.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend(e: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

fn compacted_or_backend(e: etcd_client::Error, requested: Revision) -> StoreError {
    if e.to_string().contains("compacted") {
        StoreError::Compacted {
            requested,
            oldest: 0,
        }
    } else {
        backend(e)
    }
}

fn rev(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

fn irev(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`), keeping every key under `key_prefix`.
    pub async fn connect(endpoints: &[String], key_prefix: &str) -> Result<EtcdStore, StoreError> {
        let client = Client::connect(endpoints, None).await.map_err(backend)?;
        Ok(EtcdStore {
            client,
            prefix: key_prefix.trim_end_matches('/').to_owned(),
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let key = kv.key_str().map_err(backend)?;
        Ok(KeyValue {
            key: key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
            value: kv.value().to_vec(),
            create_revision: rev(kv.create_revision()),
            mod_revision: rev(kv.mod_revision()),
        })
    }

    /// Writes `put` (or deletes) when the key's current state passes `compare`; otherwise
    /// reads the key to say why not.
    async fn guarded(
        &self,
        key: &str,
        compare: Compare,
        op: TxnOp,
    ) -> Result<(bool, Option<KeyValue>, Revision), StoreError> {
        let full = self.full(key);
        let txn = Txn::new()
            .when(vec![compare])
            .and_then(vec![op, TxnOp::get(full.clone(), None)])
            .or_else(vec![TxnOp::get(full, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(backend)?;
        let header_rev = resp.header().map(|h| rev(h.revision())).unwrap_or(0);
        let mut found = None;
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r
                && let Some(kv) = g.kvs().first()
            {
                found = Some(self.kv(kv)?);
            }
        }
        Ok((resp.succeeded(), found, header_rev))
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let (ok, found, _) = self
            .guarded(
                key,
                Compare::create_revision(full.clone(), CompareOp::Equal, 0),
                TxnOp::put(full, value, None),
            )
            .await?;
        match (ok, found) {
            (true, Some(kv)) => Ok(kv),
            (true, None) => Err(StoreError::Backend("etcd: created key not readable".into())),
            (false, _) => Err(StoreError::AlreadyExists(key.to_owned())),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let compare = match expected {
            Some(e) => Compare::mod_revision(full.clone(), CompareOp::Equal, irev(e)),
            None => Compare::create_revision(full.clone(), CompareOp::Greater, 0),
        };
        let (ok, found, _) = self
            .guarded(key, compare, TxnOp::put(full, value, None))
            .await?;
        match (ok, found) {
            (true, Some(kv)) => Ok(kv),
            (_, None) => Err(StoreError::NotFound(key.to_owned())),
            (false, Some(cur)) => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected.unwrap_or_default(),
                actual: cur.mod_revision,
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let current = self
            .get(key)
            .await?
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
        if let Some(e) = expected
            && e != current.mod_revision
        {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: e,
                actual: current.mod_revision,
            });
        }
        // Delete only the version read (anything newer is a conflict).
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                irev(current.mod_revision),
            )])
            .and_then(vec![TxnOp::delete(full, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            let actual = self.get(key).await?.map(|kv| kv.mod_revision).unwrap_or(0);
            if actual == 0 {
                return Err(StoreError::NotFound(key.to_owned()));
            }
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: current.mod_revision,
                actual,
            });
        }
        let deleted_at = resp
            .header()
            .map(|h| rev(h.revision()))
            .unwrap_or(current.mod_revision);
        Ok(KeyValue {
            mod_revision: deleted_at,
            ..current
        })
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get(self.full(key), None)
            .await
            .map_err(backend)?;
        resp.kvs().first().map(|kv| self.kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions<'_>) -> Result<ListPage, StoreError> {
        let current = self.current_revision().await?;
        let cursor = paging::Cursor::start(prefix, options.continue_token.as_deref(), current)?;
        let full_prefix = self.full(prefix);
        let mut range_end = full_prefix.clone().into_bytes();
        // The first key after every key with this prefix.
        if let Some(last) = range_end.last_mut() {
            *last += 1;
        }
        let mut from = match cursor.lower_bound(prefix) {
            std::ops::Bound::Excluded(k) => {
                let mut k = self.full(k).into_bytes();
                k.push(0);
                k
            }
            std::ops::Bound::Included(k) => self.full(k).into_bytes(),
            std::ops::Bound::Unbounded => full_prefix.into_bytes(),
        };
        let want = options.limit.filter(|l| *l > 0);
        let mut candidates = Vec::new();
        loop {
            let opts = GetOptions::new()
                .with_range(range_end.clone())
                .with_limit(BATCH)
                .with_revision(irev(cursor.revision));
            let resp = self
                .client
                .kv_client()
                .get(from.clone(), Some(opts))
                .await
                .map_err(|e| compacted_or_backend(e, cursor.revision))?;
            for kv in resp.kvs() {
                candidates.push(self.kv(kv)?);
            }
            let matched = candidates
                .iter()
                .filter(|kv| options.filter.is_none_or(|f| f(kv)))
                .count();
            let enough = want.is_some_and(|l| matched > l);
            match resp.kvs().last() {
                Some(last) if resp.more() && !enough => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(paging::page(prefix, &cursor, candidates.iter(), &options))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(irev(after + 1))
            .with_prev_key();
        let stream = self
            .client
            .watch_client()
            .watch(self.full(prefix), Some(opts))
            .await
            .map_err(backend)?;
        let this = self.clone();
        let events = stream.flat_map(move |resp| {
            let out: Vec<Result<WatchEvent, StoreError>> = match resp {
                Err(e) => vec![Err(backend(e))],
                Ok(r) if r.compact_revision() > 0 => vec![Err(StoreError::Compacted {
                    requested: after,
                    oldest: rev(r.compact_revision()),
                })],
                Ok(r) if r.canceled() => vec![Err(StoreError::Backend(format!(
                    "etcd cancelled the watch: {}",
                    r.cancel_reason()
                )))],
                Ok(r) => r
                    .events()
                    .iter()
                    .filter_map(|ev| {
                        let kv = ev.kv()?;
                        Some(match ev.event_type() {
                            EventType::Put if kv.create_revision() == kv.mod_revision() => {
                                this.kv(kv).map(WatchEvent::Added)
                            }
                            EventType::Put => this.kv(kv).map(WatchEvent::Modified),
                            EventType::Delete => {
                                // The deleted value is the previous one, at the deletion's revision.
                                let prev = ev.prev_kv().unwrap_or(kv);
                                this.kv(prev).map(|p| {
                                    WatchEvent::Deleted(KeyValue {
                                        mod_revision: rev(kv.mod_revision()),
                                        ..p
                                    })
                                })
                            }
                        })
                    })
                    .collect(),
            };
            futures::stream::iter(out)
        });
        Ok(crate::watch::end_after_error(events))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get(self.full("/"), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend)?;
        Ok(resp.header().map(|h| rev(h.revision())).unwrap_or(0))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        match self.client.kv_client().compact(irev(revision), None).await {
            Ok(_) => Ok(()),
            // Compacting at or below etcd's current compaction point is already done.
            Err(e) if e.to_string().contains("compacted") => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}
