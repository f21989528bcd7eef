//! Streaming answers: watches, `pods/log`, and the exec/attach upgrades over WebSocket.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::handler::{Body, Req, Resp, Target, json_response, not_found, status};
use super::objects::{self, Event, Kind, meta_str};
use super::spdy;
use super::{Shared, lock};

/// Spawns a task that the double aborts when it is dropped (watches, log followers, upgraded
/// sessions), reaping the finished ones.
fn spawn_tracked(
    shared: &Arc<Shared>,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut tasks = lock(&shared.tasks);
    while tasks.try_join_next().is_some() {}
    tasks.spawn(task);
}

fn streaming(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    StreamBody::new(stream).boxed_unsync()
}

fn streaming_response(rx: mpsc::Receiver<Bytes>, content_type: &'static str) -> Resp {
    let mut r = Response::new(streaming(rx));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

// === watch ===

struct WatchFilter {
    kind: Kind,
    namespace: String,
    labels: Vec<objects::Requirement>,
    fields: String,
    table: bool,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        objects::matches_labels(object, &self.labels)
            && objects::matches_fields(object, &self.fields).unwrap_or(false)
    }

    /// What a watcher with this filter sees of `e`, as the watch cache decides: an object that
    /// starts to match is ADDED, one that stops matching is DELETED (its last matching state, at
    /// the event's resourceVersion).
    fn translate(&self, e: &Event) -> Option<Bytes> {
        if e.kind.resource != self.kind.resource
            || !(self.namespace.is_empty() || e.namespace == self.namespace)
        {
            return None;
        }
        let now = self.matches(&e.object);
        if e.kind_of_event != "MODIFIED" {
            return now.then(|| self.line(e.kind_of_event, &e.object));
        }
        let before = e.previous.as_ref().is_some_and(|p| self.matches(p));
        match (before, now) {
            (true, true) => Some(self.line("MODIFIED", &e.object)),
            (false, true) => Some(self.line("ADDED", &e.object)),
            (true, false) => {
                let mut last = e.previous.clone().unwrap_or(Value::Null);
                objects::metadata_mut(&mut last).insert(
                    "resourceVersion".into(),
                    Value::String(e.revision.to_string()),
                );
                Some(self.line("DELETED", &last))
            }
            (false, false) => None,
        }
    }

    fn line(&self, kind_of_event: &str, object: &Value) -> Bytes {
        let object = if self.table {
            json!({
                "kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": meta_str(object, "resourceVersion")},
                "columnDefinitions": objects::table_columns(&self.kind),
                "rows": [objects::table_row(&self.kind, object)],
            })
        } else {
            objects::with_type(&self.kind, object)
        };
        let mut line = json!({"type": kind_of_event, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: u64) -> Bytes {
        let mut object = json!({
            "kind": self.kind.kind, "apiVersion": self.kind.api_version(),
            "metadata": {"resourceVersion": revision.to_string(), "creationTimestamp": null},
        });
        if let (true, Some(map)) = (self.kind.fields.contains(&"rules"), object.as_object_mut()) {
            map.insert("rules".into(), Value::Null);
        }
        let mut line = json!({"type": "BOOKMARK", "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

/// A watch: synthetic ADDED events for a watch without (or with `0` as) resourceVersion, the
/// history after a given resourceVersion (or one 410 ERROR event when it is older than the
/// history, A171), then live events until `timeoutSeconds` (A123-A127).
pub(crate) fn watch(shared: &Arc<Shared>, r: &Req, kind: &Kind, namespace: &str) -> Resp {
    let labels = match objects::parse_label_selector(r.query.get("labelSelector").unwrap_or("")) {
        Ok(l) => l,
        Err(e) => return status(400, "BadRequest", &e, None),
    };
    let filter = WatchFilter {
        kind: *kind,
        namespace: namespace.to_owned(),
        labels,
        fields: r.query.get("fieldSelector").unwrap_or("").to_owned(),
        table: r.header_first_accept_table(),
    };
    let timeout = r
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let bookmarks = r.query.flag("allowWatchBookmarks");
    let every = shared.config.bookmark_interval;
    let rv = r.query.get("resourceVersion").unwrap_or("").to_owned();
    // Subscribe before reading the store, so no event falls between the two.
    let mut live = shared.events.subscribe();
    let (initial, mut seen, too_old) = {
        let store = lock(&shared.store);
        let revision = store.revision();
        match rv.parse::<u64>() {
            Ok(from) if from > 0 => match store.events_since(kind, from) {
                Some(events) => (
                    events
                        .into_iter()
                        .filter_map(|e| filter.translate(&e))
                        .collect::<Vec<_>>(),
                    revision,
                    None,
                ),
                None => (Vec::new(), revision, Some((from, store.oldest_history()))),
            },
            _ => (
                store
                    .list(kind, namespace)
                    .into_iter()
                    .filter(|o| {
                        objects::matches_labels(o, &filter.labels)
                            && objects::matches_fields(o, &filter.fields).unwrap_or(false)
                    })
                    .map(|o| filter.line("ADDED", &o))
                    .collect(),
                revision,
                None,
            ),
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    spawn_tracked(shared, async move {
        if let Some((from, oldest)) = too_old {
            let mut line = json!({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({oldest})"),
                "reason": "Expired", "code": 410}})
            .to_string();
            line.push('\n');
            let _ = tx.send(Bytes::from(line)).await;
            return;
        }
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(filter.bookmark(seen)).await.is_err() {
                        return;
                    }
                }
                event = live.recv() => match event {
                    Ok(e) => {
                        if e.revision <= seen {
                            continue;
                        }
                        seen = e.revision;
                        if let Some(line) = filter.translate(&e) && tx.send(line).await.is_err() {
                            return;
                        }
                    }
                    // A reader too slow for the channel: end the watch, as the server's watch
                    // cache does, and the client re-lists.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    streaming_response(rx, "application/json")
}

impl Req {
    fn header_first_accept_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split(',').next())
            .is_some_and(|first| first.contains("as=Table"))
    }
}

// === subresources ===

pub(crate) async fn subresource(
    shared: &Arc<Shared>,
    r: &Req,
    kind: &Kind,
    t: &Target,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Resp {
    let object = lock(&shared.store).get(kind, &t.namespace, &t.name);
    match (kind.kind, t.subresource.as_str()) {
        (_, "status") if r.method == Method::GET => match object {
            Some(o) => json_response(StatusCode::OK, &objects::with_type(kind, &o)),
            None => not_found(kind, &t.name),
        },
        ("Pod", "log") => {
            let Some(pod) = object else {
                return not_found(kind, &t.name);
            };
            logs(shared, r, &pod)
        }
        ("Pod", "exec" | "attach" | "portforward") => {
            let Some(pod) = object else {
                return not_found(kind, &t.name);
            };
            if pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                return status(
                    400,
                    "BadRequest",
                    &format!("pod {} does not have a host assigned", t.name),
                    None,
                );
            }
            upgrade(shared, r, t, on_upgrade)
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ),
    }
}

/// `pods/log`: 204 for a pod without a node (A: logs-pending-pod), else the lines given with
/// `Double::append_log`, and with `follow=true` the ones appended later, until the client
/// goes.
fn logs(shared: &Arc<Shared>, r: &Req, pod: &Value) -> Resp {
    if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let mut resp = Response::new(super::handler::full(Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return resp;
    }
    let ns = meta_str(pod, "namespace").to_owned();
    let name = meta_str(pod, "name").to_owned();
    let mut live = shared.log_events.subscribe();
    let lines = lock(&shared.logs)
        .get(&(ns.clone(), name.clone()))
        .cloned()
        .unwrap_or_default();
    let tail = r
        .query
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok());
    let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
    let follow = r.query.flag("follow");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    spawn_tracked(shared, async move {
        for line in lines.into_iter().skip(skip) {
            if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                next = live.recv() => match next {
                    Ok((n, p, line)) if n == ns && p == name => {
                        if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    streaming_response(rx, "text/plain")
}

const WS_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Answers an exec/attach upgrade: WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) with an
/// echo. SPDY/3.1 is not spoken: 400 with a message that says so (kubectl then reports it).
fn upgrade(
    shared: &Arc<Shared>,
    r: &Req,
    t: &Target,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Resp {
    let upgrade = r.header_str(header::UPGRADE.as_str()).to_ascii_lowercase();
    let Some(on_upgrade) = on_upgrade else {
        return status(400, "BadRequest", "Upgrade request required", None);
    };
    if upgrade == "spdy/3.1" {
        return spdy_upgrade(shared, r, t, on_upgrade);
    }
    if upgrade != "websocket" {
        return status(
            400,
            "BadRequest",
            &format!(
                "the kube-apiserver double does not speak {upgrade}; use WebSocket or SPDY/3.1"
            ),
            None,
        );
    }
    if t.subresource == "portforward" {
        return tunnelled_port_forward(shared, r, on_upgrade);
    }
    let offered: Vec<String> = r
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let Some(protocol) = offered
        .iter()
        .find(|p| WS_PROTOCOLS.contains(&p.as_str()))
        .cloned()
    else {
        return status(
            400,
            "BadRequest",
            &format!(
                "none of the offered WebSocket protocols {offered:?} is served; the double serves {WS_PROTOCOLS:?}"
            ),
            None,
        );
    };
    let key = r.header_str(header::SEC_WEBSOCKET_KEY.as_str()).to_owned();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let stdin = r.query.flag("stdin");
    let command = r.query.all("command");
    let v5 = protocol == "v5.channel.k8s.io";
    spawn_tracked(shared, async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        echo(ws, stdin, command, v5).await;
    });
    let mut resp = Response::new(super::handler::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    resp
}

/// Answers a SPDY/3.1 upgrade: `X-Stream-Protocol-Version` negotiated as kubelet does (the
/// first the client offers that is served), then the SPDY session in [`spdy`].
fn spdy_upgrade(
    shared: &Arc<Shared>,
    r: &Req,
    t: &Target,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Resp {
    let served: &[&str] = if t.subresource == "portforward" {
        &["portforward.k8s.io"]
    } else {
        &["v4.channel.k8s.io"]
    };
    let offered: Vec<String> = r
        .headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let Some(protocol) = offered
        .iter()
        .find(|p| served.contains(&p.as_str()))
        .cloned()
    else {
        return status(
            403,
            "Forbidden",
            &format!(
                "unable to upgrade: no common protocol: the client offers {offered:?}, the double serves {served:?}"
            ),
            None,
        );
    };
    let mode = if t.subresource == "portforward" {
        spdy::Mode::PortForward
    } else {
        spdy::Mode::Exec {
            stdin: r.query.flag("stdin"),
            stdout: r.query.flag("stdout"),
            stderr: r.query.flag("stderr"),
            tty: r.query.flag("tty"),
            command: r.query.all("command"),
        }
    };
    spawn_tracked(shared, async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let _ = spdy::serve(TokioIo::new(upgraded), mode).await;
    });
    let mut resp = Response::new(super::handler::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert("x-stream-protocol-version", v);
    }
    resp
}

/// The WebSocket subprotocol of port-forward tunnelled over WebSocket (KEP-4006): each binary
/// message carries SPDY/3.1 bytes.
const TUNNELLED_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// Port-forward over WebSocket as kube-apiserver 1.30+ serves it for kubectl 1.30+: the SPDY
/// session of [`spdy`] inside the WebSocket's binary messages.
fn tunnelled_port_forward(
    shared: &Arc<Shared>,
    r: &Req,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Resp {
    let offered = r
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == TUNNELLED_PORT_FORWARD));
    if !offered {
        return status(
            400,
            "BadRequest",
            &format!("port-forward over WebSocket needs the {TUNNELLED_PORT_FORWARD} subprotocol"),
            None,
        );
    }
    let key = r.header_str(header::SEC_WEBSOCKET_KEY.as_str()).to_owned();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    spawn_tracked(shared, async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let (session, tunnel) = tokio::io::duplex(64 * 1024);
        let (mut tunnel_rd, mut tunnel_wr) = tokio::io::split(tunnel);
        let spdy = tokio::spawn(spdy::serve(session, spdy::Mode::PortForward));
        let inbound = async {
            while let Some(Ok(msg)) = ws_rx.next().await {
                match msg {
                    Message::Binary(b)
                        if tokio::io::AsyncWriteExt::write_all(&mut tunnel_wr, &b)
                            .await
                            .is_err() =>
                    {
                        break;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tunnel_wr).await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match tokio::io::AsyncReadExt::read(&mut tunnel_rd, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let chunk = buf.get(..n).unwrap_or_default().to_vec();
                        if ws_tx.send(Message::Binary(chunk.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = ws_tx.close().await;
        };
        tokio::join!(inbound, outbound);
        spdy.abort();
    });
    let mut resp = Response::new(super::handler::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(TUNNELLED_PORT_FORWARD),
    );
    resp
}

impl Req {
    fn header_str(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// The echo "container": stdin comes back on stdout; without stdin, the command's words come
/// back as one line. Then the v4/v5 success status on the error channel, and a close.
async fn echo<S>(mut ws: WebSocketStream<S>, stdin: bool, command: Vec<String>, v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if stdin {
        while let Some(Ok(msg)) = ws.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match data.split_first() {
                Some((&STDIN, rest)) => {
                    let mut out = Vec::with_capacity(rest.len() + 1);
                    out.push(STDOUT);
                    out.extend_from_slice(rest);
                    if ws.send(Message::Binary(out.into())).await.is_err() {
                        return;
                    }
                }
                // v5: the client closed its stdin.
                Some((&CLOSE, [STDIN])) if v5 => break,
                _ => {}
            }
        }
    } else {
        let mut out = vec![STDOUT];
        out.extend_from_slice(command.join(" ").as_bytes());
        out.push(b'\n');
        if ws.send(Message::Binary(out.into())).await.is_err() {
            return;
        }
    }
    let mut status = vec![ERROR];
    status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
    let _ = ws.send(Message::Binary(status.into())).await;
    // client-go treats anything but a normal closure (1000) as an error.
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    // Drain until the client acknowledges the close.
    while let Some(Ok(_)) = ws.next().await {}
}
