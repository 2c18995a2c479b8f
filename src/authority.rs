//! Lets h2 accept whatever `:authority` a gRPC client sends on the unix socket.
//!
//! h2 (under tonic) refuses, as a malformed request, any `:authority` that `http::uri::Authority`
//! does not parse, and it cannot be told otherwise. grpc-core (Python, C++, Ruby …) sends the
//! percent-encoded socket path for a `unix:` target (`tmp%2Fcsi.sock`) and grpc-java the raw path,
//! so their calls were reset with PROTOCOL_ERROR. Each accepted connection is therefore relayed
//! through an in-memory pipe to tonic: the server's bytes go back unchanged; the client's frames go
//! through unchanged too, except header blocks, which are decoded (with the client's HPACK state),
//! given `localhost` for an authority h2 would refuse, and encoded again as literals that never
//! touch the server's dynamic table. Every header block is re-encoded, so the client's table
//! stays ours and the server's stays empty.

use std::io;

use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http::uri::Authority;
use tracing::{debug, warn};

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The largest header block (encoded, all its frames together) a client may send.
const MAX_BLOCK: usize = 1 << 20;
/// The largest decoded header list (RFC 7541 sizes: name + value + 32 per field). h2 refuses
/// lists over 16 KiB itself; this only bounds what a tiny block can make us allocate.
const MAX_LIST: usize = 1 << 20;
/// The frame payload size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE cannot be smaller).
const OUT_FRAME: usize = 16_384;
/// The dynamic table size h2 advertises (SETTINGS_HEADER_TABLE_SIZE: its default, which tonic
/// does not change): the most a client's encoder may use, so the most our decoder allows.
const TABLE_SIZE: usize = 4096;
/// What an authority h2 would refuse becomes.
const REPLACEMENT: &[u8] = b"localhost";
/// Bytes in flight in each direction of the pipe to tonic.
const PIPE: usize = 64 * 1024;

/// Why a client's connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an HTTP/2 connection (no client preface)")]
    Preface,
    #[error("header block on stream {0} is over {MAX_BLOCK} bytes")]
    BlockTooLarge(u32),
    #[error("header list on stream {0} is over {MAX_LIST} bytes decoded")]
    ListTooLarge(u32),
    #[error("HEADERS on stream 0")]
    StreamZero,
    #[error("frame of type {kind:#x} on stream {stream} inside the header block of stream {open}")]
    Interleaved { kind: u8, stream: u32, open: u32 },
    #[error("CONTINUATION on stream {0} without a header block to continue")]
    StrayContinuation(u32),
    #[error("PUSH_PROMISE from a client")]
    PushPromise,
    #[error("HEADERS on stream {0}: padding or priority longer than the frame")]
    BadPadding(u32),
    #[error("header block on stream {0}: {1}")]
    Hpack(u32, DecoderError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

#[derive(Clone, Copy)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(b: &[u8]) -> FrameHead {
        FrameHead {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

enum State {
    /// Reading the client preface.
    Preface,
    /// Reading a frame header.
    FrameHeader,
    /// Reading the whole payload of a HEADERS or CONTINUATION frame.
    HeaderPayload(FrameHead),
    /// Copying this many more payload bytes of any other frame.
    Passing(usize),
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
}

/// The client-to-server half of a connection, as a byte transformer: feed it what the client
/// sent, in pieces of any size, and it appends what the server should get.
pub struct Rewriter {
    decoder: Decoder<'static>,
    state: State,
    /// The part of a preface, frame header or header-frame payload read so far.
    buf: Vec<u8>,
    block: Option<Block>,
    /// How many authorities were replaced so far.
    pub replaced: usize,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter::new()
    }
}

/// Moves bytes from `input` into `buf` until it holds `want`; true once it does.
fn fill(buf: &mut Vec<u8>, input: &mut &[u8], want: usize) -> bool {
    let n = want.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..n]);
    *input = &input[n..];
    buf.len() == want
}

/// An HPACK integer (RFC 7541 §5.1) in a `prefix`-bit prefix, below the bits set in `first`.
fn put_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field as a literal without indexing, with a literal name, neither string Huffman-coded
/// (RFC 7541 §6.2.2).
fn put_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    put_int(out, 0x00, 7, name.len());
    out.extend_from_slice(name);
    put_int(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

fn put_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Whether h2 takes this `:authority`: it parses it as an `http::uri::Authority`.
fn acceptable(authority: &[u8]) -> bool {
    Authority::try_from(authority).is_ok()
}

impl Rewriter {
    pub fn new() -> Rewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Rewriter {
            decoder,
            state: State::Preface,
            buf: Vec::new(),
            block: None,
            replaced: 0,
        }
    }

    /// Takes the next bytes from the client and appends to `out` what goes to the server. An
    /// error means the connection has to be closed; nothing fed after one is meaningful.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        loop {
            match self.state {
                State::Preface => {
                    if !fill(&mut self.buf, &mut input, PREFACE.len()) {
                        return Ok(());
                    }
                    if self.buf != PREFACE {
                        return Err(Error::Preface);
                    }
                    out.extend_from_slice(PREFACE);
                    self.buf.clear();
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    if !fill(&mut self.buf, &mut input, FRAME_HEADER_LEN) {
                        return Ok(());
                    }
                    let head = FrameHead::parse(&self.buf);
                    self.state = self.next_state(head)?;
                    if let State::Passing(_) = self.state {
                        out.extend_from_slice(&self.buf);
                    }
                    self.buf.clear();
                }
                State::HeaderPayload(head) => {
                    if !fill(&mut self.buf, &mut input, head.len) {
                        return Ok(());
                    }
                    let payload = std::mem::take(&mut self.buf);
                    self.header_frame(head, &payload, out)?;
                    self.buf = payload;
                    self.buf.clear();
                    self.state = State::FrameHeader;
                }
                State::Passing(0) => self.state = State::FrameHeader,
                State::Passing(remaining) => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let n = remaining.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.state = State::Passing(remaining - n);
                }
            }
        }
    }

    /// What to do with the frame that starts with `head`.
    fn next_state(&self, head: FrameHead) -> Result<State, Error> {
        if let Some(open) = &self.block
            && (head.kind != CONTINUATION || head.stream != open.stream)
        {
            return Err(Error::Interleaved {
                kind: head.kind,
                stream: head.stream,
                open: open.stream,
            });
        }
        match head.kind {
            HEADERS | CONTINUATION => {
                if head.kind == HEADERS && head.stream == 0 {
                    return Err(Error::StreamZero);
                }
                if head.kind == CONTINUATION && self.block.is_none() {
                    return Err(Error::StrayContinuation(head.stream));
                }
                let so_far = self.block.as_ref().map_or(0, |b| b.fragment.len());
                if so_far + head.len > MAX_BLOCK {
                    return Err(Error::BlockTooLarge(head.stream));
                }
                Ok(State::HeaderPayload(head))
            }
            // Only a server may push; h2 would close the connection anyway.
            PUSH_PROMISE => Err(Error::PushPromise),
            _ => Ok(State::Passing(head.len)),
        }
    }

    /// A whole HEADERS or CONTINUATION frame: adds its fragment to the block, and emits the
    /// block once it is complete.
    fn header_frame(&mut self, head: FrameHead, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if head.kind == HEADERS {
            let mut rest = payload;
            let mut pad = 0;
            if head.flags & PADDED != 0 {
                let (&n, after) = rest.split_first().ok_or(Error::BadPadding(head.stream))?;
                pad = usize::from(n);
                rest = after;
            }
            if head.flags & PRIORITY != 0 {
                rest = rest.get(5..).ok_or(Error::BadPadding(head.stream))?;
            }
            let end = rest.len().checked_sub(pad).ok_or(Error::BadPadding(head.stream))?;
            self.block = Some(Block {
                stream: head.stream,
                end_stream: head.flags & END_STREAM != 0,
                fragment: rest[..end].to_vec(),
            });
        } else if let Some(block) = &mut self.block {
            block.fragment.extend_from_slice(payload);
        }
        if head.flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.emit(&block, out)?;
        }
        Ok(())
    }

    /// Decodes a complete header block and appends it, re-encoded, as one HEADERS frame and as
    /// many CONTINUATION frames as its length needs.
    fn emit(&mut self, block: &Block, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut fields = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_LIST {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| Error::Hpack(block.stream, e))?;
        if size > MAX_LIST {
            return Err(Error::ListTooLarge(block.stream));
        }

        let mut encoded = Vec::with_capacity(size);
        for (name, value) in &fields {
            if name == b":authority" && !acceptable(value) {
                if self.replaced == 0 {
                    debug!(
                        authority = %String::from_utf8_lossy(value),
                        "client's :authority is not an authority h2 accepts; using localhost"
                    );
                }
                self.replaced += 1;
                put_literal(&mut encoded, name, REPLACEMENT);
            } else {
                put_literal(&mut encoded, name, value);
            }
        }

        let mut rest = &encoded[..];
        let mut kind = HEADERS;
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        loop {
            let (chunk, tail) = rest.split_at(rest.len().min(OUT_FRAME));
            if tail.is_empty() {
                flags |= END_HEADERS;
            }
            put_frame_head(out, chunk.len(), kind, flags, block.stream);
            out.extend_from_slice(chunk);
            if tail.is_empty() {
                return Ok(());
            }
            rest = tail;
            kind = CONTINUATION;
            flags = 0;
        }
    }
}

/// The connections accepted on `listener`, each relayed through a [`Rewriter`]: tonic serves
/// the pipe ends this yields.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<DuplexStream>> {
    UnixListenerStream::new(listener).map(|accepted| accepted.map(relayed))
}

fn relayed(client: UnixStream) -> DuplexStream {
    let (ours, tonics) = tokio::io::duplex(PIPE);
    tokio::spawn(relay(client, ours));
    tonics
}

/// Copies the server's bytes to the client as they are and the client's through a
/// [`Rewriter`], until either side is done; closes the connection on a protocol error.
async fn relay(mut client: UnixStream, server: DuplexStream) {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = tokio::io::split(server);
    let up = async {
        let mut rewriter = Rewriter::new();
        let mut buf = vec![0u8; OUT_FRAME];
        let mut out = Vec::with_capacity(OUT_FRAME + FRAME_HEADER_LEN);
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                to_server.shutdown().await?;
                return Ok::<(), Error>(());
            }
            out.clear();
            rewriter.feed(&buf[..n], &mut out)?;
            to_server.write_all(&out).await?;
        }
    };
    let down = async {
        let copied = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
        copied
    };
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut up => match r {
            // The client is done sending; let the server finish its answers.
            Ok(()) => {
                let _ = down.await;
            }
            Err(Error::Io(e)) => debug!("unix socket connection: {e}"),
            Err(e) => warn!("closing a unix socket connection: {e}"),
        },
        // The server closed the connection: nothing more to pass either way.
        _ = &mut down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_frame_head(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/csi.v1.Identity/Probe"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
    }

    fn with_authority(fields: &[(Vec<u8>, Vec<u8>)], authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(n, v)| {
                let v = if n == b":authority" {
                    authority.to_vec()
                } else {
                    v.clone()
                };
                (n.clone(), v)
            })
            .collect()
    }

    fn encode(encoder: &mut Encoder<'static>, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    /// The frames in `bytes` (after the preface), as (head, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
        assert_eq!(&bytes[..PREFACE.len()], PREFACE);
        bytes = &bytes[PREFACE.len()..];
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let head = FrameHead::parse(&bytes[..FRAME_HEADER_LEN]);
            let payload = bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + head.len].to_vec();
            bytes = &bytes[FRAME_HEADER_LEN + head.len..];
            found.push((head, payload));
        }
        found
    }

    /// What a server's decoder makes of a rewritten header block: each decoded with a fresh
    /// decoder, which works only because nothing refers to or changes the dynamic table.
    fn decode_fresh(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Decoder::new().decode(block).expect("rewritten block decodes")
    }

    fn rewrite(input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        Rewriter::new().feed(input, &mut out)?;
        Ok(out)
    }

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        for f in frames {
            bytes.extend_from_slice(f);
        }
        bytes
    }

    const SOCKET_AUTHORITY: &[u8] = b"tmp%2Fcapsock%2Fcsi.sock";

    #[test]
    fn replaces_an_authority_h2_refuses_and_passes_other_frames_unchanged() {
        let fields = request(SOCKET_AUTHORITY);
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        let mut enc = Encoder::new();
        let headers = frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &fields));
        let out = rewrite(&connection(&[settings.clone(), headers, data.clone()])).unwrap();

        let got = frames(&out);
        assert_eq!(got.len(), 3);
        assert_eq!(
            frame(got[0].0.kind, got[0].0.flags, got[0].0.stream, &got[0].1),
            settings
        );
        assert_eq!(
            (got[1].0.kind, got[1].0.flags, got[1].0.stream),
            (HEADERS, END_HEADERS, 1)
        );
        assert_eq!(decode_fresh(&got[1].1), with_authority(&fields, b"localhost"));
        assert_eq!(frame(got[2].0.kind, got[2].0.flags, got[2].0.stream, &got[2].1), data);
    }

    #[test]
    fn keeps_an_authority_h2_accepts() {
        for ok in [&b"localhost"[..], b"example.com:50051", b"[::1]:8080", b"csi.sock"] {
            let fields = request(ok);
            let mut enc = Encoder::new();
            let mut rewriter = Rewriter::new();
            let mut out = Vec::new();
            let bytes = connection(&[frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &fields))]);
            rewriter.feed(&bytes, &mut out).unwrap();
            assert_eq!(decode_fresh(&frames(&out)[0].1), fields);
            assert_eq!(rewriter.replaced, 0);
        }
        // What grpc-core and grpc-java send, and an empty one, are all replaced.
        for bad in [SOCKET_AUTHORITY, b"/tmp/capsock/csi.sock", b"", b"a b", b"\xff"] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_output() {
        let mut enc = Encoder::new();
        let first = frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &request(SOCKET_AUTHORITY)));
        let second = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &encode(&mut enc, &request(b"x%y")),
        );
        let bytes = connection(&[
            frame(0x4, 0, 0, &[]),
            first,
            frame(0x0, 0, 1, &[7; 40]),
            frame(0x8, 0, 0, &[0, 0, 1, 0]),
            second,
        ]);
        let whole = rewrite(&bytes).unwrap();
        for size in [1, 2, 3, 7, 9, 10, 25, 64] {
            let mut rewriter = Rewriter::new();
            let mut out = Vec::new();
            for piece in bytes.chunks(size) {
                rewriter.feed(piece, &mut out).unwrap();
            }
            assert_eq!(out, whole, "pieces of {size}");
            assert_eq!(rewriter.replaced, 2);
        }
    }

    #[test]
    fn continuation_frames_become_one_headers_frame() {
        let fields = request(SOCKET_AUTHORITY);
        let block = encode(&mut Encoder::new(), &fields);
        let (a, rest) = block.split_at(5);
        let (b, c) = rest.split_at(20);
        let bytes = connection(&[
            frame(HEADERS, END_STREAM, 5, a),
            frame(CONTINUATION, 0, 5, b),
            frame(CONTINUATION, END_HEADERS, 5, c),
            frame(0x3, 0, 5, &[0, 0, 0, 8]),
        ]);
        let got = frames(&rewrite(&bytes).unwrap());
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0.kind, got[0].0.flags, got[0].0.stream),
            (HEADERS, END_HEADERS | END_STREAM, 5)
        );
        assert_eq!(decode_fresh(&got[0].1), with_authority(&fields, b"localhost"));
        assert_eq!(got[1].0.kind, 0x3);
    }

    #[test]
    fn padding_and_priority_are_dropped() {
        let fields = request(SOCKET_AUTHORITY);
        let block = encode(&mut Encoder::new(), &fields);
        let mut payload = vec![3u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 3, 15]); // exclusive dependency on 3, weight 16
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0, 0]);
        let flags = END_HEADERS | PADDED | PRIORITY;
        let got = frames(&rewrite(&connection(&[frame(HEADERS, flags, 7, &payload)])).unwrap());
        assert_eq!((got[0].0.flags, got[0].0.stream), (END_HEADERS, 7));
        assert_eq!(decode_fresh(&got[0].1), with_authority(&fields, b"localhost"));

        // Padding alone, and padding that leaves an empty block.
        let mut payload = vec![2u8];
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0]);
        let got = frames(&rewrite(&connection(&[frame(HEADERS, END_HEADERS | PADDED, 9, &payload)])).unwrap());
        assert_eq!(decode_fresh(&got[0].1), with_authority(&fields, b"localhost"));
        let got = frames(&rewrite(&connection(&[frame(HEADERS, END_HEADERS | PADDED, 9, &[2, 0, 0])])).unwrap());
        assert!(got[0].1.is_empty());
    }

    #[test]
    fn dynamic_table_references_across_requests_are_resolved() {
        // A literal with incremental indexing (RFC 7541 §6.2.1), its name from the static table.
        fn indexed_literal(out: &mut Vec<u8>, name: usize, value: &[u8]) {
            put_int(out, 0x40, 6, name);
            put_int(out, 0x00, 7, value.len());
            out.extend_from_slice(value);
        }
        let fields = request(SOCKET_AUTHORITY);
        // :method POST and :scheme http from the static table; :path, :authority and
        // content-type (static names 4, 1, 31) and te (a literal name) into the dynamic table.
        let mut first = vec![0x83, 0x86];
        indexed_literal(&mut first, 4, &fields[2].1);
        indexed_literal(&mut first, 1, SOCKET_AUTHORITY);
        indexed_literal(&mut first, 31, b"application/grpc");
        first.push(0x40);
        put_int(&mut first, 0x00, 7, 2);
        first.extend_from_slice(b"te");
        put_int(&mut first, 0x00, 7, 8);
        first.extend_from_slice(b"trailers");
        // The same request again, all indexes: newest entry first, from 62 on.
        let second = [0x83, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];
        assert_eq!(Decoder::new().decode(&first).unwrap(), fields);
        let bytes = connection(&[
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(HEADERS, END_HEADERS, 3, &second),
        ]);
        let out = rewrite(&bytes).unwrap();
        let got = frames(&out);
        assert_eq!(got.len(), 2);
        // One decoder across both, as the server has, and a fresh one for each: the same.
        let mut server = Decoder::new();
        for (_, payload) in got {
            assert_eq!(server.decode(&payload).unwrap(), with_authority(&fields, b"localhost"));
            assert_eq!(decode_fresh(&payload), with_authority(&fields, b"localhost"));
        }
    }

    #[test]
    fn table_size_updates_are_applied_and_not_passed_on() {
        let fields = request(SOCKET_AUTHORITY);
        let mut enc = Encoder::new();
        let first = encode(&mut enc, &fields);
        // Empty the table (size 0), then allow it again: a literal must follow, not an index.
        let mut second = vec![0x20, 0x3f, 0xe1, 0x1f];
        second.extend_from_slice(&encode(&mut Encoder::new(), &fields));
        let bytes = connection(&[
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(HEADERS, END_HEADERS, 3, &second),
        ]);
        for (_, payload) in frames(&rewrite(&bytes).unwrap()) {
            assert_ne!(payload[0] & 0xe0, 0x20, "no size update");
            assert_eq!(decode_fresh(&payload), with_authority(&fields, b"localhost"));
        }
        // The client may not grow the table past what h2 advertised.
        let mut too_big = Vec::new();
        put_int(&mut too_big, 0x20, 5, TABLE_SIZE + 1);
        too_big.extend_from_slice(&first);
        let err = rewrite(&connection(&[frame(HEADERS, END_HEADERS, 1, &too_big)])).unwrap_err();
        assert!(matches!(err, Error::Hpack(1, _)), "{err}");
    }

    #[test]
    fn huffman_coded_authorities() {
        // RFC 7541 C.4.1: GET http://www.example.com/, the authority Huffman-coded; it is kept.
        let rfc = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let got = frames(&rewrite(&connection(&[frame(HEADERS, END_HEADERS, 1, &rfc)])).unwrap());
        let fields = decode_fresh(&got[0].1);
        assert!(fields.contains(&(b":authority".to_vec(), b"www.example.com".to_vec())));

        // `tmp%2Fcsi.sock`, Huffman-coded, with an indexed name, as an HPACK encoder with Huffman
        // coding sends it (made with Python's hpack); it is replaced.
        let socket = [
            0x41, 0x8a, 0x4d, 0x35, 0xaa, 0x2c, 0x24, 0x41, 0x97, 0x41, 0xc9, 0xd7, 0x86, 0x44, 0x90, 0x60, 0x88, 0x32,
            0xfd, 0xc2, 0xbe, 0x49, 0x0b, 0x52, 0x4c, 0x9f, 0x4c, 0x6b, 0xb0, 0xf1, 0x97,
        ];
        let client = Decoder::new().decode(&socket).unwrap();
        assert_eq!(client[0], (b":authority".to_vec(), b"tmp%2Fcsi.sock".to_vec()));
        let got = frames(&rewrite(&connection(&[frame(HEADERS, END_HEADERS, 1, &socket)])).unwrap());
        assert_eq!(decode_fresh(&got[0].1), with_authority(&client, b"localhost"));
    }

    #[test]
    fn a_long_block_goes_out_in_continuation_frames() {
        let mut fields = request(SOCKET_AUTHORITY);
        fields.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        let block = encode(&mut Encoder::new(), &fields);
        let got = frames(&rewrite(&connection(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)])).unwrap());
        let kinds: Vec<(u8, u8, usize)> = got.iter().map(|(h, _)| (h.kind, h.flags, h.len)).collect();
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds[0], (HEADERS, END_STREAM, OUT_FRAME));
        assert_eq!(kinds[1], (CONTINUATION, 0, OUT_FRAME));
        assert_eq!((kinds[2].0, kinds[2].1), (CONTINUATION, END_HEADERS));
        assert!(got.iter().all(|(h, _)| h.stream == 1));
        let joined: Vec<u8> = got.iter().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(decode_fresh(&joined), with_authority(&fields, b"localhost"));
    }

    #[test]
    fn protocol_violations_close_the_connection() {
        let block = encode(&mut Encoder::new(), &request(SOCKET_AUTHORITY));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("preface", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            ("stray", connection(&[frame(CONTINUATION, END_HEADERS, 1, &block)])),
            (
                "interleaved",
                connection(&[frame(HEADERS, 0, 1, &block), frame(0x0, 0, 1, b"data")]),
            ),
            (
                "other stream",
                connection(&[frame(HEADERS, 0, 1, &block), frame(CONTINUATION, END_HEADERS, 3, &[])]),
            ),
            ("stream zero", connection(&[frame(HEADERS, END_HEADERS, 0, &block)])),
            (
                "push",
                connection(&[frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2])]),
            ),
            (
                "padding",
                connection(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82])]),
            ),
            (
                "no pad length",
                connection(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[])]),
            ),
            (
                "priority",
                connection(&[frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0])]),
            ),
            ("index", connection(&[frame(HEADERS, END_HEADERS, 1, &[0xbe])])),
            (
                "truncated",
                connection(&[frame(HEADERS, END_HEADERS, 1, &block[..block.len() - 1])]),
            ),
            (
                "huffman",
                connection(&[frame(HEADERS, END_HEADERS, 1, &[0x00, 0x81, 0x00, 0x00])]),
            ),
            (
                "size update at end",
                connection(&[frame(HEADERS, END_HEADERS, 1, &[0x82, 0x20])]),
            ),
        ];
        for (what, bytes) in cases {
            assert!(rewrite(&bytes).is_err(), "{what}");
        }
    }

    #[test]
    fn oversized_header_blocks_are_refused_before_they_are_read() {
        let mut big = Vec::new();
        put_frame_head(&mut big, MAX_BLOCK + 1, HEADERS, END_HEADERS, 1);
        let err = rewrite(&connection(&[big])).unwrap_err();
        assert!(matches!(err, Error::BlockTooLarge(1)), "{err}");

        // Many CONTINUATIONs adding up past the cap.
        let mut rewriter = Rewriter::new();
        let mut out = Vec::new();
        rewriter
            .feed(&connection(&[frame(HEADERS, 0, 1, &[])]), &mut out)
            .unwrap();
        let chunk = frame(CONTINUATION, 0, 1, &[0x82; OUT_FRAME]);
        let mut result = Ok(());
        for _ in 0..=MAX_BLOCK / OUT_FRAME {
            result = rewriter.feed(&chunk, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(Error::BlockTooLarge(1))));
    }

    #[test]
    fn a_small_block_cannot_decode_into_a_huge_list() {
        // One 4 KiB field in the table, then indexes to it: each byte is 4 KiB decoded.
        let value = vec![b'v'; TABLE_SIZE - 64];
        let mut enc = Encoder::new();
        let first = encode(&mut enc, &[(b"x-fill".to_vec(), value.clone())]);
        let bomb = vec![0x80 | 62; 1000];
        let bytes = connection(&[
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(HEADERS, END_HEADERS, 3, &bomb),
        ]);
        let err = rewrite(&bytes).unwrap_err();
        assert!(matches!(err, Error::ListTooLarge(3)), "{err}");
    }

    #[test]
    fn garbage_is_an_error_or_passes_never_a_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5000 {
            let len = rng.random_range(0..200);
            // Random header blocks inside well-formed frames reach the decoder ...
            let block: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let flags = rng.random::<u8>() | END_HEADERS;
            let _ = rewrite(&connection(&[frame(HEADERS, flags, 1, &block)]));
            // ... and random frames reach the frame parser, in random pieces.
            let tail: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let mut rewriter = Rewriter::new();
            let mut out = Vec::new();
            for piece in connection(&[tail]).chunks(rng.random_range(1..40)) {
                if rewriter.feed(piece, &mut out).is_err() {
                    break;
                }
            }
        }
    }
}
