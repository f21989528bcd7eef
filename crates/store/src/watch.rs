//! Watch streams shared by the backends: replayed history followed by live events, and the
//! rule that a stream ends right after its first error (the watcher then lists again).

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// Ends `stream` after the first error it yields (the error itself is delivered).
pub(crate) fn end_after_error(
    stream: impl Stream<Item = Result<WatchEvent, StoreError>> + Send + 'static,
) -> WatchStream {
    let mut failed = false;
    Box::pin(stream.take_while(move |item| {
        let keep = !failed;
        failed = failed || item.is_err();
        futures::future::ready(keep)
    }))
}

/// `backlog` (events after `after`, in order, already filtered by prefix), then the live events
/// of `receiver` under `prefix` that come after the backlog. A receiver that lagged behind the
/// broadcast buffer yields an error instead of silently missing events.
pub(crate) fn replay_then_live(
    backlog: Vec<(Revision, WatchEvent)>,
    receiver: broadcast::Receiver<(Revision, WatchEvent)>,
    after: Revision,
    prefix: &str,
) -> WatchStream {
    let last = backlog.last().map_or(after, |(r, _)| *r);
    let prefix = prefix.to_owned();
    let live = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(move |item| {
        let out = match item {
            Ok((rev, ev)) if rev > last && ev.kv().key.starts_with(&prefix) => Some(Ok(ev)),
            Ok(_) => None,
            Err(_) => Some(Err(StoreError::Backend(
                "watch fell behind and missed events; list again and watch from the list's revision".into(),
            ))),
        };
        futures::future::ready(out)
    });
    let backlog = futures::stream::iter(backlog.into_iter().map(|(_, ev)| Ok(ev)));
    end_after_error(backlog.chain(live))
}
