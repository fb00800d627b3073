//! HTTP/1.1 message bodies on the raw data path (RFC 9112 §6–7): how a body is delimited
//! ([`Framing`]), where a chunked body ends ([`ChunkedDecoder`]), and [`relay`], which copies
//! one body from one connection to another; [`IdleTimer`] bounds a connection's waits, and
//! [`tunnel`] carries an upgraded connection's bytes both ways.
//!
//! Bodies are relayed as they arrive, verbatim (chunked stays chunked, so the proxy never
//! re-frames what it forwards), or de-chunked for an HTTP/1.0 client, which cannot read
//! chunked encoding. A body's first bytes usually arrived with its head: they go out in the
//! same write as the rewritten head (one syscall, one packet).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::table::TargetRuntime;

/// How much a read asks for at least.
pub const READ_CHUNK: usize = 16 * 1024;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// A connection with the bytes read from it and not yet used: a target connection
/// ([`crate::tls::TargetStream`]), or a client's ([`crate::tls::ClientStream`]), TLS or not.
#[derive(Debug)]
pub struct Buffered<S = crate::tls::TargetStream> {
    pub stream: S,
    pub buf: BytesMut,
}

impl<S: AsyncRead + Unpin> Buffered<S> {
    pub fn new(stream: S) -> Buffered<S> {
        Buffered {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads more (at most `timeout` waiting): the number of bytes read, 0 at end of stream.
    pub async fn read_more(&mut self, timeout: Duration) -> Result<usize, RelayError> {
        self.buf.reserve(READ_CHUNK);
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(error)) => Err(RelayError::Read(error)),
            Err(_) => Err(RelayError::Timeout),
        }
    }

    /// [`Buffered::read_more`] with `timer` bounding the wait: for a task that waits on
    /// its connections one at a time (an HTTP/1 client connection's), many times a second.
    pub async fn read_within(
        &mut self,
        timer: &mut IdleTimer,
        timeout: Duration,
    ) -> Result<usize, RelayError> {
        self.buf.reserve(READ_CHUNK);
        let mut waiting = false;
        std::future::poll_fn(|cx| {
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf) {
                Poll::Ready(Ok(n)) => return Poll::Ready(Ok(n)),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(RelayError::Read(error))),
                Poll::Pending => {}
            }
            // Data already there needs no deadline (nor a clock read).
            if !waiting {
                timer.start(timeout);
                waiting = true;
            }
            timer.poll_expired(cx).map(|()| Err(RelayError::Timeout))
        })
        .await
    }
}

/// One task's deadline for its waits, moved lazily. A new `tokio::time::timeout` per wait
/// puts an entry in the runtime's timer wheel and takes it out again, twice per proxied
/// request; this timer stays armed, and when it fires early (an earlier wait's deadline) it
/// is moved on to the current one: about one wheel operation per idle timeout instead.
#[derive(Debug, Default)]
pub struct IdleTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    due: Option<Instant>,
}

impl IdleTimer {
    /// A wait of at most `timeout` starts now.
    fn start(&mut self, timeout: Duration) {
        let due = Instant::now() + timeout;
        self.due = Some(due);
        match &mut self.sleep {
            Some(sleep) if sleep.deadline() <= due => {}
            Some(sleep) => sleep.as_mut().reset(due),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(due))),
        }
    }

    /// For a reader polled by someone else (a response body hyper polls): ready once the wait
    /// under way, started by the first call since [`IdleTimer::end_wait`], has lasted
    /// `timeout`.
    pub(crate) fn poll_wait(&mut self, timeout: Duration, cx: &mut Context<'_>) -> Poll<()> {
        if self.due.is_none() {
            self.start(timeout);
        }
        self.poll_expired(cx)
    }

    /// The wait under way ended (something arrived): the next one starts afresh. The timer
    /// stays armed for it.
    pub(crate) fn end_wait(&mut self) {
        self.due = None;
    }

    /// Ready once the current wait's deadline has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some(sleep), Some(due)) = (self.sleep.as_mut(), self.due) else {
            return Poll::Pending;
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(due);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("the connection closed before the body ended")]
    Truncated,
    #[error("no data within the idle timeout")]
    Timeout,
    #[error("malformed chunked encoding")]
    Malformed,
    #[error("the target's draining deadline passed")]
    Drained,
}

/// How a message body is delimited.
#[derive(Debug)]
pub enum Framing {
    Empty,
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the sender closes (responses without a length).
    UntilClose,
}

impl Framing {
    pub fn is_done(&self) -> bool {
        match self {
            Framing::Empty | Framing::Length(0) => true,
            Framing::Chunked(decoder) => decoder.is_done(),
            Framing::Length(_) | Framing::UntilClose => false,
        }
    }

    /// Moves the body bytes at the front of `buf` into `out` (de-chunked with `decode`).
    /// Returns whether the body is complete.
    pub fn take(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
        decode: bool,
    ) -> Result<bool, RelayError> {
        match self {
            Framing::Empty => {}
            Framing::Length(remaining) => {
                let n = (*remaining).min(buf.len() as u64) as usize;
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
                *remaining -= n as u64;
            }
            Framing::Chunked(decoder) => {
                let used = if decode {
                    decoder.feed(buf, |data| out.extend_from_slice(data))?
                } else {
                    let used = decoder.feed(buf, |_| {})?;
                    out.extend_from_slice(&buf[..used]);
                    used
                };
                buf.advance(used);
            }
            Framing::UntilClose => {
                out.extend_from_slice(buf);
                buf.clear();
            }
        }
        Ok(self.is_done())
    }
}

/// Finds the end of a chunked body (sizes, data, trailers), handing out the data.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
    Done,
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Walks as much of `input` as is complete, calling `data` with each run of payload.
    /// Returns how many bytes were used: the rest (an incomplete line, or what follows the
    /// body) is left for the next call or the next message.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, RelayError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                ChunkState::Done => return Ok(at),
                ChunkState::Size => {
                    let Some(line) = next_line(rest)? else {
                        return Ok(at);
                    };
                    let size = chunk_size(line)?;
                    at += line.len() + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(remaining) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = remaining.min(rest.len() as u64) as usize;
                    data(&rest[..n]);
                    at += n;
                    self.state = match remaining - n as u64 {
                        0 => ChunkState::DataEnd,
                        left => ChunkState::Data(left),
                    };
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(at),
                    _ => return Err(RelayError::Malformed),
                },
                ChunkState::Trailers => {
                    let Some(line) = next_line(rest)? else {
                        return Ok(at);
                    };
                    if line.iter().any(|&b| is_ctl(b)) {
                        return Err(RelayError::Malformed);
                    }
                    at += line.len() + 2;
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// The line at the front of `input` without its CRLF, `None` while incomplete. Bare LFs are
/// refused: the proxy relays chunked bodies verbatim, so it must not read them differently
/// from a strict target (RFC 9112 §7.1; lenient parsing is how requests get smuggled).
fn next_line(input: &[u8]) -> Result<Option<&[u8]>, RelayError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(end) => match input[..end].strip_suffix(b"\r") {
            Some(line) => Ok(Some(line)),
            None => Err(RelayError::Malformed),
        },
        None if input.len() < MAX_LINE => Ok(None),
        None => Err(RelayError::Malformed),
    }
}

fn is_ctl(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// `chunk-size [ chunk-ext ]`: at least one hex digit (at most 15, so it fits), then nothing
/// or extensions starting with `;`, with no control characters.
fn chunk_size(line: &[u8]) -> Result<u64, RelayError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(RelayError::Malformed);
    }
    let extensions = &line[digits..];
    let rest = extensions
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map_or(&[][..], |start| &extensions[start..]);
    if !(rest.is_empty() || rest[0] == b';') || extensions.iter().any(|&b| is_ctl(b)) {
        return Err(RelayError::Malformed);
    }
    let digits = std::str::from_utf8(&line[..digits]).map_err(|_| RelayError::Malformed)?;
    u64::from_str_radix(digits, 16).map_err(|_| RelayError::Malformed)
}

/// Where [`relay`] writes a body: a target connection, or a client's.
pub(crate) trait BodySink {
    /// Writes `bytes`; a reader that stops reading holds the writer no longer than `idle`.
    async fn write_within(&mut self, bytes: &[u8], idle: Duration) -> Result<(), RelayError>;
}

impl<T: AsyncWrite + Unpin> BodySink for crate::tls::MaybeTls<T> {
    async fn write_within(&mut self, bytes: &[u8], idle: Duration) -> Result<(), RelayError> {
        crate::tls::MaybeTls::write_within(self, bytes, idle).await
    }
}

/// Writes `bytes`; a reader that stops reading holds the writer no longer than `idle`. The
/// common case, a socket with room, is one system call and no timer.
pub async fn write_within(
    to: &mut TcpStream,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), RelayError> {
    let written = match to.try_write(bytes) {
        Ok(n) => n,
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(error) => return Err(RelayError::Write(error)),
    };
    if written == bytes.len() {
        return Ok(());
    }
    match tokio::time::timeout(idle, to.write_all(&bytes[written..])).await {
        Ok(result) => result.map_err(RelayError::Write),
        Err(_) => Err(RelayError::Write(std::io::ErrorKind::TimedOut.into())),
    }
}

/// Copies one body from `from` to `to`: first `out` (a head, possibly empty) together with
/// the body bytes already buffered, then the rest as it arrives, each read waiting at most
/// `idle` (measured by `timer`). `target`: the body comes from or goes to this target, and is
/// cut when its draining deadline passes. Bytes after the body stay in `from.buf`.
pub(crate) async fn relay<R: AsyncRead + Unpin>(
    from: &mut Buffered<R>,
    to: &mut impl BodySink,
    out: &mut Vec<u8>,
    framing: &mut Framing,
    decode: bool,
    (timer, idle): (&mut IdleTimer, Duration),
    target: &TargetRuntime,
) -> Result<(), RelayError> {
    loop {
        let done = framing.take(&mut from.buf, out, decode)?;
        if !out.is_empty() {
            to.write_within(out, idle).await?;
            out.clear();
        }
        if done {
            return Ok(());
        }
        if target.is_closed() {
            return Err(RelayError::Drained);
        }
        if from.read_within(timer, idle).await? == 0 {
            return match framing {
                Framing::UntilClose => {
                    *framing = Framing::Empty;
                    Ok(())
                }
                _ => Err(RelayError::Truncated),
            };
        }
    }
}

/// How a [`tunnel`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides closed, or nothing moved for the idle timeout.
    Closed,
    /// `a` reset its connection (a read or write on it failed with a reset or broken pipe).
    ResetByA,
    /// `b` reset its connection.
    ResetByB,
    /// Another error on either side.
    Failed,
}

/// Bytes both ways between `a` and `b` (half-closes passed on, as `copy_bidirectional`)
/// until both have closed, or until nothing has moved either way for `idle` (ALB closes an
/// upgraded connection then, NLB a TCP flow), or one side resets or fails. `on_read` hears of
/// every read, as [`Watched`].
pub async fn tunnel<A, B>(
    a: &mut A,
    b: &mut B,
    idle: Duration,
    on_read: &(dyn Fn(usize) + Sync),
) -> TunnelEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (a_reset, b_reset) = (AtomicBool::new(false), AtomicBool::new(false));
    let started = Instant::now();
    // Milliseconds from `started` to the last read that brought bytes.
    let last = AtomicU64::new(0);
    let note = |read: usize| {
        on_read(read);
        if read > 0 {
            let at = started.elapsed().as_millis() as u64;
            last.store(at, Ordering::Relaxed);
        }
    };
    let mut a = Watched {
        stream: a,
        on_read: &note,
        reset: &a_reset,
    };
    let mut b = Watched {
        stream: b,
        on_read: &note,
        reset: &b_reset,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let mut deadline = started + idle;
    loop {
        tokio::select! {
            copied = &mut copy => {
                return match copied {
                    Ok(_) => TunnelEnd::Closed,
                    Err(_) if a_reset.load(Ordering::Relaxed) => TunnelEnd::ResetByA,
                    Err(_) if b_reset.load(Ordering::Relaxed) => TunnelEnd::ResetByB,
                    Err(_) => TunnelEnd::Failed,
                };
            }
            _ = tokio::time::sleep_until(deadline) => {
                deadline = started + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
                if deadline <= Instant::now() {
                    return TunnelEnd::Closed;
                }
            }
        }
    }
}

/// A stream that tells `on_read` how many bytes each read brought ([`tunnel`]'s idle clock
/// and its caller's byte count), and sets `reset` when its peer reset the connection.
struct Watched<'a, S> {
    stream: &'a mut S,
    on_read: &'a (dyn Fn(usize) + Sync),
    reset: &'a AtomicBool,
}

impl<S> Watched<'_, S> {
    /// Notes a reset in `polled`'s error, and passes it on.
    fn noting<T>(&self, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(error)) = &polled {
            use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
            if matches!(error.kind(), ConnectionReset | BrokenPipe) {
                self.reset.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.stream).poll_read(cx, buf);
        ready!(self.noting(polled))?;
        (self.on_read)(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut *self.stream).poll_write(cx, bytes);
        self.noting(polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut *self.stream).poll_flush(cx);
        self.noting(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut *self.stream).poll_shutdown(cx);
        self.noting(polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), RelayError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let (mut verbatim, mut data) = (Vec::new(), Vec::new());
        for piece in pieces {
            buf.extend_from_slice(piece);
            let used = decoder.feed(&buf, |d| data.extend_from_slice(d))?;
            verbatim.extend_from_slice(&buf[..used]);
            buf.advance(used);
        }
        let _ = buf;
        Ok((verbatim, data, decoder.is_done()))
    }

    #[test]
    fn chunked_bodies_end_after_their_trailers() {
        let body: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";
        let (verbatim, data, done) = decode_all(&[body, b"GET / HTTP/1.1\r\n"]).unwrap();
        assert!(done);
        assert_eq!(data, b"hello world");
        assert_eq!(verbatim, body);
    }

    #[test]
    fn chunked_bodies_split_anywhere_decode_the_same() {
        let body: &[u8] = b"a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let (verbatim, data, done) = decode_all(&[&body[..split], &body[split..]]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(data, b"0123456789abc");
            assert_eq!(verbatim, body);
        }
        let (_, _, done) = decode_all(&[&body[..body.len() - 1]]).unwrap();
        assert!(!done);
    }

    #[test]
    fn malformed_chunks_are_refused() {
        assert!(decode_all(&[b"zz\r\n"]).is_err());
        assert!(decode_all(&[b"3\r\nabcX\r\n"]).is_err());
        // Leniencies a strict target would read differently.
        assert!(decode_all(&[b"\r\n"]).is_err(), "an empty size line");
        assert!(decode_all(&[b"3\nabc\r\n0\r\n\r\n"]).is_err(), "a bare LF");
        assert!(
            decode_all(&[b"3\r\nabc\n0\r\n\r\n"]).is_err(),
            "a bare LF after data"
        );
        assert!(
            decode_all(&[b"3;a\x01b\r\nabc\r\n"]).is_err(),
            "a control in an extension"
        );
        assert!(decode_all(&[b"+3\r\nabc\r\n"]).is_err(), "a sign");
        assert!(
            decode_all(&[b"3 x\r\nabc\r\n"]).is_err(),
            "junk after the size"
        );
        assert!(
            decode_all(&[b"1000000000000000\r\n"]).is_err(),
            "too many digits"
        );
        assert!(
            decode_all(&[b"0\r\nX: 1\n\r\n"]).is_err(),
            "a bare LF in trailers"
        );
        let (_, data, done) = decode_all(&[b"3 ; name=\"v\"\r\nabc\r\n0\r\n\r\n"]).unwrap();
        assert!(done);
        assert_eq!(data, b"abc");
    }

    #[test]
    fn lengths_take_only_their_bytes() {
        let mut framing = Framing::Length(3);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        let mut out = Vec::new();
        assert!(framing.take(&mut buf, &mut out, false).unwrap());
        assert_eq!(out, b"abc");
        assert_eq!(&buf[..], b"def");
    }

    /// A connected pair: the reading side buffered, the writing side raw.
    async fn pair() -> (Buffered<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        (Buffered::new(reader), writer)
    }

    #[tokio::test]
    async fn idle_timer_measures_each_wait_from_its_own_start() {
        let (mut reader, mut writer) = pair().await;
        let mut timer = IdleTimer::default();
        let timeout = Duration::from_millis(300);
        // A first wait arms the timer for its deadline (300 ms) and ends with data at 50 ms.
        let send = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.write_all(b"x").await.unwrap();
            writer
        });
        assert_eq!(reader.read_within(&mut timer, timeout).await.unwrap(), 1);
        let _writer = send.await.unwrap();
        // A second wait from 200 ms: the first deadline passes during it, and must not end it.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = std::time::Instant::now();
        let waited = reader.read_within(&mut timer, timeout).await;
        assert!(matches!(waited, Err(RelayError::Timeout)), "{waited:?}");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(290),
            "ended after {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(2), "ended after {elapsed:?}");
    }

    #[tokio::test]
    async fn idle_timer_takes_a_shorter_timeout_at_once() {
        let (mut reader, mut writer) = pair().await;
        let mut timer = IdleTimer::default();
        writer.write_all(b"x").await.unwrap();
        assert_eq!(
            reader
                .read_within(&mut timer, Duration::from_secs(60))
                .await
                .unwrap(),
            1
        );
        // Armed (or not) for a minute: a 100 ms wait still ends after 100 ms.
        let started = std::time::Instant::now();
        let waited = reader
            .read_within(&mut timer, Duration::from_millis(100))
            .await;
        assert!(matches!(waited, Err(RelayError::Timeout)), "{waited:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A wait that had to arm the timer for a minute, cut short by data...
        let send = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            writer.write_all(b"y").await.unwrap();
            writer
        });
        assert_eq!(
            reader
                .read_within(&mut timer, Duration::from_secs(60))
                .await
                .unwrap(),
            1
        );
        let _writer = send.await.unwrap();
        // ...then a short one: the timer moves back to the nearer deadline.
        let started = std::time::Instant::now();
        let waited = reader
            .read_within(&mut timer, Duration::from_millis(100))
            .await;
        assert!(matches!(waited, Err(RelayError::Timeout)), "{waited:?}");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(95),
            "ended after {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "ended after {elapsed:?}");
    }
}
