//! The server side of SPDY/3.1 as kubelet speaks it behind `pods/exec`, `pods/attach` and
//! `pods/portforward` (what client-go's spdystream expects): SYN_STREAM answered by SYN_REPLY,
//! DATA, RST_STREAM, PING echoed, GOAWAY, and header blocks in one zlib stream per direction
//! with the SPDY/3 dictionary. No flow control (spdystream does not enforce it), no server push.
//!
//! Behind it, the echo "container": exec/attach (`v4.channel.k8s.io`) writes stdin back on
//! stdout (or, without stdin, the command's words as one line), then the v4 success status on
//! the error stream; port-forward (`portforward.k8s.io`) writes each data stream back to itself.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1).
const DICTIONARY: &[u8] = include_bytes!("spdy3-dictionary.bin");

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;
/// The largest frame the echo accepts (the protocol allows 16 MiB).
const MAX_FRAME: usize = 1 << 24;

/// What runs behind the streams.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// exec or attach: which streams the request asked for, and the command.
    Exec {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
        command: Vec<String>,
    },
    /// port-forward: every data stream is echoed.
    PortForward,
}

fn be32(b: &[u8]) -> Option<u32> {
    let b: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// One direction's header compression state.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Headers {
    fn new() -> Result<Headers, String> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(|e| format!("SPDY dictionary: {e}"))?;
        Ok(Headers {
            inflate: Decompress::new(true),
            deflate,
        })
    }

    /// Inflates one header block (a sync-flushed piece of the connection's zlib stream).
    fn decode(&mut self, mut block: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        while !block.is_empty() {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(block, &mut out, FlushDecompress::Sync);
            let used = usize::try_from(self.inflate.total_in() - before).unwrap_or(block.len());
            block = block.get(used..).unwrap_or_default();
            match result {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| format!("SPDY dictionary: {e}"))?;
                }
                Err(e) => return Err(format!("SPDY header block: {e}")),
            }
        }
        let mut headers = BTreeMap::new();
        let count = be32(&out).ok_or("SPDY header block too short")?;
        let mut rest = out.get(4..).unwrap_or_default();
        let take = |rest: &mut &[u8]| -> Result<String, String> {
            let len = be32(rest).ok_or("SPDY header block truncated")? as usize;
            let s = rest.get(4..4 + len).ok_or("SPDY header block truncated")?;
            let s = String::from_utf8_lossy(s).into_owned();
            *rest = rest.get(4 + len..).unwrap_or_default();
            Ok(s)
        };
        for _ in 0..count {
            let name = take(&mut rest)?;
            let value = take(&mut rest)?;
            headers.insert(name, value);
        }
        Ok(headers)
    }

    /// Deflates an empty header block (what a SYN_REPLY carries).
    fn encode_empty(&mut self) -> Result<Vec<u8>, String> {
        let input = [0u8; 4];
        let mut out = Vec::with_capacity(128);
        let mut consumed = 0;
        loop {
            out.reserve(128);
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(
                    input.get(consumed..).unwrap_or_default(),
                    &mut out,
                    FlushCompress::Sync,
                )
                .map_err(|e| format!("SPDY header compression: {e}"))?;
            consumed += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            // Done when all input is in and the sync flush fit in the buffer.
            if consumed >= input.len() && out.len() < out.capacity() && status != Status::BufError {
                return Ok(out);
            }
        }
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut f = vec![0x80, 0x03];
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(len.get(1..).unwrap_or_default());
    f.extend_from_slice(payload);
    f
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut f = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    f.push(flags);
    f.extend_from_slice(len.get(1..).unwrap_or_default());
    f.extend_from_slice(payload);
    f
}

/// The streams of one exec or port-forward session.
#[derive(Default)]
struct Streams {
    by_type: BTreeMap<String, u32>,
    /// port-forward: request id → (data stream, error stream).
    forwards: BTreeMap<String, (Option<u32>, Option<u32>)>,
    finished: bool,
}

/// Serves one upgraded connection until the client goes away.
pub(crate) async fn serve<S>(io: S, mode: Mode) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut headers = Headers::new()?;
    let mut streams = Streams::default();
    loop {
        let mut head = [0u8; 8];
        if rd.read_exact(&mut head).await.is_err() {
            return Ok(());
        }
        let [c0, c1, c2, c3, flags, l0, l1, l2] = head;
        let len = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        if len > MAX_FRAME {
            return Err(format!("SPDY frame of {len} bytes"));
        }
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload)
            .await
            .map_err(|e| e.to_string())?;
        let mut out: Vec<Vec<u8>> = Vec::new();
        if c0 & 0x80 != 0 {
            let kind = u16::from_be_bytes([c2, c3]);
            let _version = u16::from_be_bytes([c0 & 0x7f, c1]);
            match kind {
                SYN_STREAM => {
                    let id = be32(&payload).ok_or("short SYN_STREAM")? & 0x7fff_ffff;
                    let h = headers.decode(payload.get(10..).unwrap_or_default())?;
                    let mut reply = id.to_be_bytes().to_vec();
                    reply.extend(headers.encode_empty()?);
                    out.push(control(SYN_REPLY, 0, &reply));
                    let kind = h.get("streamtype").cloned().unwrap_or_default();
                    match &mode {
                        Mode::Exec { .. } => {
                            streams.by_type.insert(kind, id);
                        }
                        Mode::PortForward => {
                            let request = h.get("requestid").cloned().unwrap_or_default();
                            let entry = streams.forwards.entry(request).or_default();
                            if kind == "data" {
                                entry.0 = Some(id);
                            } else {
                                entry.1 = Some(id);
                            }
                        }
                    }
                    out.extend(exec_without_stdin(&mode, &mut streams));
                }
                HEADERS => {
                    // Keep the zlib stream in step even though the echo needs nothing from it.
                    headers.decode(payload.get(4..).unwrap_or_default())?;
                }
                PING => out.push(control(PING, 0, &payload)),
                GOAWAY => return Ok(()),
                RST_STREAM => {
                    let id = be32(&payload).unwrap_or(0) & 0x7fff_ffff;
                    out.extend(end_of_input(&mode, &mut streams, id));
                }
                _ => {}
            }
        } else {
            let id = u32::from_be_bytes([c0, c1, c2, c3]) & 0x7fff_ffff;
            match &mode {
                Mode::Exec { .. } => {
                    if streams.by_type.get("stdin") == Some(&id)
                        && let (false, Some(stdout)) =
                            (payload.is_empty(), streams.by_type.get("stdout"))
                    {
                        out.push(data(*stdout, 0, &payload));
                    }
                }
                Mode::PortForward => {
                    if !payload.is_empty() && streams.forwards.values().any(|(d, _)| *d == Some(id))
                    {
                        out.push(data(id, 0, &payload));
                    }
                }
            }
            if flags & FLAG_FIN != 0 {
                out.extend(end_of_input(&mode, &mut streams, id));
            }
        }
        for frame in out {
            wr.write_all(&frame).await.map_err(|e| e.to_string())?;
        }
        wr.flush().await.map_err(|e| e.to_string())?;
    }
}

const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;

/// The end of a session: stdout and stderr closed, the v4 success status on the error stream.
fn finish_exec(streams: &mut Streams) -> Vec<Vec<u8>> {
    if streams.finished {
        return Vec::new();
    }
    streams.finished = true;
    let mut out = Vec::new();
    for t in ["stdout", "stderr"] {
        if let Some(id) = streams.by_type.get(t) {
            out.push(data(*id, FLAG_FIN, &[]));
        }
    }
    if let Some(id) = streams.by_type.get("error") {
        out.push(data(*id, 0, SUCCESS));
        out.push(data(*id, FLAG_FIN, &[]));
    }
    out
}

/// Exec without stdin: once every stream the request asked for exists, the command's words.
fn exec_without_stdin(mode: &Mode, streams: &mut Streams) -> Vec<Vec<u8>> {
    let Mode::Exec {
        stdin: false,
        stdout,
        stderr,
        tty,
        command,
    } = mode
    else {
        return Vec::new();
    };
    let has = |t: &str| streams.by_type.contains_key(t);
    let ready = has("error")
        && (!*stdout || has("stdout"))
        && (!*stderr || *tty || has("stderr"))
        && (!*tty || has("resize"));
    if !ready || streams.finished {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(id) = streams.by_type.get("stdout") {
        let mut line = command.join(" ").into_bytes();
        line.push(b'\n');
        out.push(data(*id, 0, &line));
    }
    out.extend(finish_exec(streams));
    out
}

/// The client closed (or reset) stream `id`.
fn end_of_input(mode: &Mode, streams: &mut Streams, id: u32) -> Vec<Vec<u8>> {
    match mode {
        Mode::Exec { .. } => {
            if streams.by_type.get("stdin") == Some(&id) {
                finish_exec(streams)
            } else {
                Vec::new()
            }
        }
        Mode::PortForward => {
            let mut out = Vec::new();
            for (data_id, error_id) in streams.forwards.values() {
                if *data_id == Some(id) {
                    out.push(data(id, FLAG_FIN, &[]));
                    if let Some(e) = error_id {
                        out.push(data(*e, FLAG_FIN, &[]));
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_round_trip_through_the_dictionary() {
        // A client's compressor (with the dictionary) and the server's decoder agree.
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(DICTIONARY).unwrap();
        let mut block = 2u32.to_be_bytes().to_vec();
        for (n, v) in [("streamtype", "stdin"), ("port", "80")] {
            block.extend((n.len() as u32).to_be_bytes());
            block.extend(n.as_bytes());
            block.extend((v.len() as u32).to_be_bytes());
            block.extend(v.as_bytes());
        }
        let mut wire = Vec::with_capacity(1024);
        client
            .compress_vec(&block, &mut wire, FlushCompress::Sync)
            .unwrap();
        let mut server = Headers::new().unwrap();
        let h = server.decode(&wire).unwrap();
        assert_eq!(h.get("streamtype").map(String::as_str), Some("stdin"));
        assert_eq!(h.get("port").map(String::as_str), Some("80"));
        // And the server's replies inflate with the dictionary, block after block.
        let mut inflate = Decompress::new(true);
        for _ in 0..3 {
            let reply = server.encode_empty().unwrap();
            let mut plain = Vec::with_capacity(64);
            let mut input = &reply[..];
            while !input.is_empty() {
                let before = inflate.total_in();
                match inflate.decompress_vec(input, &mut plain, FlushDecompress::Sync) {
                    Ok(_) => {}
                    Err(e) if e.needs_dictionary().is_some() => {
                        inflate.set_dictionary(DICTIONARY).map(|_| ()).unwrap()
                    }
                    Err(e) => panic!("{e}"),
                }
                input = &input[(inflate.total_in() - before) as usize..];
            }
            assert_eq!(plain, vec![0, 0, 0, 0]);
        }
    }

    #[test]
    fn frames_are_laid_out_as_spdy3() {
        assert_eq!(
            control(PING, 0, &[0, 0, 0, 1]),
            vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
        );
        assert_eq!(
            data(5, FLAG_FIN, b"ab"),
            vec![0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']
        );
    }
}
