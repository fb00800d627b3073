//! The HTTP/1.x data path on the wire: raw bytes written to the load balancer over TCP, and
//! targets scripted byte by byte, to check framing (chunked, lengths, close-delimited, HEAD,
//! large bodies), pipelining, keep-alive reuse of target connections, `Expect: 100-continue`,
//! hop-by-hop headers, absolute-form request targets and ALB's 400 for malformed requests.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::elb::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// How long any single read waits before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A parsed message head: the start line and the headers (names lowercased), in order.
#[derive(Debug, Clone)]
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Head {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
        let start = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header line: {line:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        Head { start, headers }
    }

    /// The status code of a response head.
    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", self.start))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn chunked(&self) -> bool {
        self.all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Option<usize> {
        self.get("content-length")
            .map(|v| v.parse().expect("a numeric Content-Length"))
    }
}

/// A message: its head, its body (de-chunked) and the body as framed on the wire.
#[derive(Debug, Clone)]
struct Message {
    head: Head,
    body: Vec<u8>,
    raw_body: Vec<u8>,
}

/// One end of a TCP connection with the bytes read and not yet used. Every read fails the
/// test after [`WAIT`].
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more; 0 at end of stream (a reset counts as the end too).
    async fn fill(&mut self) -> usize {
        let mut chunk = vec![0u8; 64 * 1024];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing more arrived within {WAIT:?}; unused so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            });
        match read {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(error) => panic!("read failed: {error}"),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("the write finishes in time")
            .expect("the write succeeds");
    }

    /// The next head, `None` when the connection ends cleanly before one starts.
    async fn read_head(&mut self) -> Option<Head> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Some(Head::parse(&raw));
            }
            if self.fill().await == 0 {
                assert!(
                    self.buf.is_empty(),
                    "the connection ended inside a head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await > 0,
                "the connection ended after {} of {n} body bytes",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    async fn read_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                return self.buf.drain(..end + 2).collect();
            }
            assert!(self.fill().await > 0, "the connection ended inside a line");
        }
    }

    /// A chunked body: (as framed, de-chunked).
    async fn read_chunked(&mut self) -> (Vec<u8>, Vec<u8>) {
        let (mut raw, mut data) = (Vec::new(), Vec::new());
        loop {
            let line = self.read_line().await;
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let size = text.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("not a chunk size line: {text:?}"));
            if size == 0 {
                loop {
                    let trailer = self.read_line().await;
                    raw.extend_from_slice(&trailer);
                    if trailer == b"\r\n" {
                        return (raw, data);
                    }
                }
            }
            let chunk = self.take(size + 2).await;
            assert_eq!(&chunk[size..], b"\r\n", "chunk data ends with CRLF");
            data.extend_from_slice(&chunk[..size]);
            raw.extend_from_slice(&chunk);
        }
    }

    /// Everything until the peer closes.
    async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// The next request, `None` when the connection ends cleanly first.
    async fn read_request(&mut self) -> Option<Message> {
        let head = self.read_head().await?;
        let (raw_body, body) = if head.chunked() {
            self.read_chunked().await
        } else {
            let body = self.take(head.content_length().unwrap_or(0)).await;
            (body.clone(), body)
        };
        Some(Message {
            head,
            body,
            raw_body,
        })
    }

    /// The next response (to a HEAD request: no body).
    async fn read_response(&mut self, head_request: bool) -> Message {
        let head = self.read_head().await.expect("a response");
        let status = head.status();
        let (raw_body, body) = if head_request || status < 200 || status == 204 || status == 304 {
            (Vec::new(), Vec::new())
        } else if head.chunked() {
            self.read_chunked().await
        } else if let Some(length) = head.content_length() {
            let body = self.take(length).await;
            (body.clone(), body)
        } else {
            let body = self.read_to_end().await;
            (body.clone(), body)
        };
        Message {
            head,
            body,
            raw_body,
        }
    }

    /// Asserts the peer closes the connection with nothing more sent.
    async fn expect_closed(&mut self) {
        let more = self.fill().await;
        assert_eq!(
            (more, String::from_utf8_lossy(&self.buf).into_owned()),
            (0, String::new()),
            "the load balancer closes the connection"
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A target scripted byte by byte: each accepted connection is handed to the handler.
struct RawBackend {
    address: SocketAddr,
    accepts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

async fn raw_backend<F, Fut>(handler: F) -> RawBackend
where
    F: Fn(Wire) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    let task = tokio::spawn(async move {
        // Dropped (aborting every connection's task) when the backend is.
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            connections.spawn(handler(Wire::new(stream)));
            while connections.try_join_next().is_some() {}
        }
    });
    RawBackend {
        address,
        accepts,
        task,
    }
}

/// A keep-alive target answering every request with 200 and its request target as the body,
/// and reporting each request it received.
async fn echo_backend() -> (RawBackend, mpsc::UnboundedReceiver<Message>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let backend = raw_backend(move |mut wire| {
        let sender = sender.clone();
        async move {
            while let Some(request) = wire.read_request().await {
                let target = request
                    .head
                    .start
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let head_request = request.head.start.starts_with("HEAD ");
                let _ = sender.send(request);
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    target.len()
                );
                if !head_request {
                    answer.push_str(&target);
                }
                wire.write(answer.as_bytes()).await;
            }
        }
    })
    .await;
    (backend, receiver)
}

async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, receiver.recv())
        .await
        .expect("the target receives a request in time")
        .expect("the target is running")
}

/// A node serving one ALB whose default rule forwards to the group "raw" of `targets`
/// (health checks off: the targets are healthy at once).
async fn serve(targets: &[SocketAddr]) -> (Node, SocketAddr) {
    serve_with_idle_timeout(targets, 60).await
}

/// [`serve`] with the load balancer's idle timeout set.
async fn serve_with_idle_timeout(targets: &[SocketAddr], seconds: u64) -> (Node, SocketAddr) {
    let node = Node::start().await;
    let address = listener_address();
    let mut lb = load_balancer(
        "wire",
        LoadBalancerKind::Application,
        address,
        vec![rule(None, vec![], forward(&[("raw", 1)]))],
    );
    lb.idle_timeout_seconds = seconds;
    // These tests check the `Host` a request arrives with, as sent; the listener port ALB
    // adds to a portless one by default is `alb.rs`'s to check.
    lb.http.preserve_host_header = true;
    node.publish(snapshot(vec![lb], vec![raw_group(targets)]))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for t in targets {
        loop {
            let state = node
                .handle
                .target_health(&group_arn("raw"), &t.ip().to_string(), t.port())
                .map(|h| h.state);
            if state.as_deref() == Some("healthy") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{t} stays {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    (node, address)
}

/// The group "raw" of `targets`, health checks off.
fn raw_group(targets: &[SocketAddr]) -> TargetGroupRoutes {
    let mut raw = group("raw", &[]);
    raw.health_check.enabled = false;
    raw.targets = targets.iter().map(|a| target(*a)).collect();
    raw
}

/// A new client connection to the load balancer.
async fn dial(address: SocketAddr) -> Wire {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true).unwrap();
                return Wire::new(stream);
            }
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot connect to {address}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn chunked_request_bodies_arrive_whole() {
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    let pieces: [&[u8]; 5] = [
        b"POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi",
        b"ki\r\n5\r\npe",
        b"dia\r\nE;ext=1\r\n in\r\n\r\nchunks.\r\n",
        b"0\r\n",
        b"\r\n",
    ];
    for piece in pieces {
        client.write(piece).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let response = client.read_response(false).await;
    assert_eq!(response.head.status(), 200, "{:?}", response.head);
    assert_eq!(text(&response.body), "/upload");

    let seen = next(&mut requests).await;
    assert_eq!(seen.head.start, "POST /upload HTTP/1.1");
    assert!(seen.head.chunked(), "{:?}", seen.head);
    assert!(!seen.head.has("content-length"), "{:?}", seen.head);
    assert_eq!(text(&seen.body), "Wikipedia in\r\n\r\nchunks.");
    assert_eq!(
        text(&seen.raw_body),
        "4\r\nWiki\r\n5\r\npedia\r\nE;ext=1\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"
    );

    // The body ended where its last chunk did: the connection serves the next request.
    client
        .write(b"GET /after HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    assert_eq!(
        (response.head.status(), text(&response.body)),
        (200, "/after".into())
    );
}

#[tokio::test]
async fn chunked_responses_stay_chunked_for_http11_and_are_dechunked_for_http10() {
    let backend = raw_backend(|mut wire| async move {
        while wire.read_request().await.is_some() {
            wire.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            wire.write(b"7\r\n, world\r\n").await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            wire.write(b"0\r\n\r\n").await;
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;

    let mut client = dial(address).await;
    client
        .write(b"GET /chunked HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.head.all("transfer-encoding"), vec!["chunked"]);
    assert!(!response.head.has("content-length"), "{:?}", response.head);
    assert_eq!(
        text(&response.raw_body),
        "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    );
    assert_eq!(text(&response.body), "hello, world");
    // Still open and in sync.
    client
        .write(b"GET /again HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    let again = client.read_response(false).await;
    assert_eq!(
        (again.head.status(), text(&again.body)),
        (200, "hello, world".into())
    );

    let mut old = dial(address).await;
    old.write(b"GET /chunked HTTP/1.0\r\nHost: app.example\r\n\r\n")
        .await;
    let head = old.read_head().await.expect("a response");
    assert_eq!(head.status(), 200);
    assert!(!head.has("transfer-encoding"), "{head:?}");
    assert_eq!(head.all("connection"), vec!["close"], "{head:?}");
    assert_eq!(head.get("content-type"), Some("text/plain"));
    // The body runs until the load balancer closes, de-chunked.
    assert_eq!(text(&old.read_to_end().await), "hello, world");
}

#[tokio::test]
async fn close_delimited_responses_arrive_whole_then_the_connection_closes() {
    let backend = raw_backend(|mut wire| async move {
        if wire.read_request().await.is_some() {
            wire.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            wire.write(b"second part.").await;
            // Dropping the connection ends the body.
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"GET /stream HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    let head = client.read_head().await.expect("a response");
    assert_eq!(head.status(), 200);
    assert!(!head.has("content-length"), "{head:?}");
    assert!(!head.has("transfer-encoding"), "{head:?}");
    assert_eq!(head.all("connection"), vec!["close"], "{head:?}");
    assert_eq!(
        text(&client.read_to_end().await),
        "first part, second part."
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(
            b"GET /first HTTP/1.1\r\nHost: app.example\r\n\r\nGET /second HTTP/1.1\r\nHost: app.example\r\n\r\n",
        )
        .await;
    let first = client.read_response(false).await;
    let second = client.read_response(false).await;
    assert_eq!(
        (first.head.status(), text(&first.body)),
        (200, "/first".into())
    );
    assert_eq!(
        (second.head.status(), text(&second.body)),
        (200, "/second".into())
    );
    assert_eq!(next(&mut requests).await.head.start, "GET /first HTTP/1.1");
    assert_eq!(next(&mut requests).await.head.start, "GET /second HTTP/1.1");
}

#[tokio::test]
async fn keep_alive_requests_share_one_target_connection() {
    let (backend, _requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    for i in 0..5 {
        let path = format!("/req/{i}");
        client
            .write(format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n").as_bytes())
            .await;
        let response = client.read_response(false).await;
        assert_eq!((response.head.status(), text(&response.body)), (200, path));
        assert!(!response.head.has("connection"), "{:?}", response.head);
    }
    assert_eq!(
        backend.accepts(),
        1,
        "one target connection for five requests"
    );
}

#[tokio::test]
async fn pooled_connections_the_target_closed_are_not_reused() {
    // Answers one request with keep-alive, then closes while idle.
    let backend = raw_backend(|mut wire| async move {
        if wire.read_request().await.is_some() {
            wire.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    let requests: [&[u8]; 3] = [
        b"GET /one HTTP/1.1\r\nHost: app.example\r\n\r\n",
        b"GET /two HTTP/1.1\r\nHost: app.example\r\n\r\n",
        // Not idempotent: the load balancer may not simply send it again.
        b"POST /three HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for (i, request) in requests.iter().enumerate() {
        client.write(request).await;
        let response = client.read_response(false).await;
        assert_eq!(
            (response.head.status(), text(&response.body)),
            (200, "ok".into()),
            "request {i}: {:?}",
            response.head
        );
        // The target closes its side meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(backend.accepts(), 3);
}

#[tokio::test]
async fn targets_closing_right_after_answering_are_not_reused() {
    // Says keep-alive, then closes at once (as a server reaching its requests-per-connection
    // limit may): the next request, sent right away and not idempotent, needs a new connection.
    let backend = raw_backend(|mut wire| async move {
        if wire.read_request().await.is_some() {
            wire.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    for i in 0..20 {
        client
            .write(b"POST /form HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\n\r\nabc")
            .await;
        let response = client.read_response(false).await;
        assert_eq!(
            (response.head.status(), text(&response.body)),
            (200, "ok".into()),
            "request {i}: {:?}",
            response.head
        );
    }
    assert_eq!(backend.accepts(), 20);
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_load_balancer() {
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let interim = client.read_response(false).await;
    assert_eq!(interim.head.start, "HTTP/1.1 100 Continue");
    assert!(interim.head.headers.is_empty(), "{:?}", interim.head);
    assert!(client.buf.is_empty(), "{:?}", text(&client.buf));
    client.write(b"hello world").await;
    let response = client.read_response(false).await;
    assert_eq!(
        (response.head.status(), text(&response.body)),
        (200, "/upload".into())
    );
    let seen = next(&mut requests).await;
    assert!(!seen.head.has("expect"), "{:?}", seen.head);
    assert_eq!(seen.head.get("content-length"), Some("11"));
    assert_eq!(text(&seen.body), "hello world");
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_connection_closes() {
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let malformed: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"\x01\x02 nonsense\r\n\r\n",
    ];
    for request in malformed {
        let mut client = dial(address).await;
        client.write(request).await;
        let response = client.read_response(false).await;
        assert_eq!(response.head.status(), 400, "{:?}", text(request));
        assert_eq!(response.head.get("server"), Some("awselb/2.0"));
        assert_eq!(response.head.all("connection"), vec!["close"]);
        assert_eq!(
            response.head.content_length(),
            Some(response.body.len()),
            "{:?}",
            response.head
        );
        client.expect_closed().await;
    }
    assert_eq!(backend.accepts(), 0);
    assert!(requests.try_recv().is_err());
}

#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop() {
    let (sender, mut requests) = mpsc::unbounded_channel();
    let backend = raw_backend(move |mut wire| {
        let sender = sender.clone();
        async move {
            while let Some(request) = wire.read_request().await {
                let _ = sender.send(request);
                wire.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Secret\r\nX-Secret: 1\r\nX-Visible: 1\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"GET /hop HTTP/1.1\r\nHost: app.example\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Public: yes\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    assert_eq!(
        (response.head.status(), text(&response.body)),
        (200, "ok".into())
    );
    assert!(!response.head.has("x-secret"), "{:?}", response.head);
    assert_eq!(response.head.get("x-visible"), Some("1"));
    assert_eq!(
        response.head.all("connection"),
        vec!["close"],
        "{:?}",
        response.head
    );
    client.expect_closed().await;

    let seen = next(&mut requests).await;
    for hop in ["x-private", "keep-alive", "connection"] {
        assert!(
            !seen.head.has(hop),
            "{hop} reached the target: {:?}",
            seen.head
        );
    }
    assert_eq!(seen.head.get("x-public"), Some("yes"));
    assert_eq!(seen.head.get("host"), Some("app.example"));
}

#[tokio::test]
async fn head_responses_have_no_body_and_the_connection_goes_on() {
    let backend = raw_backend(|mut wire| async move {
        while let Some(request) = wire.read_request().await {
            if request.head.start.starts_with("HEAD ") {
                wire.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                    .await;
            } else {
                wire.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    .await;
            }
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"HEAD / HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    let response = client.read_response(true).await;
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.head.get("content-length"), Some("5"));
    // Pipelined behind a HEAD: still framed right.
    client
        .write(b"HEAD / HTTP/1.1\r\nHost: app.example\r\n\r\nGET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    let head = client.read_response(true).await;
    let get = client.read_response(false).await;
    assert_eq!(head.head.status(), 200);
    assert_eq!((get.head.status(), text(&get.body)), (200, "hello".into()));
    assert!(client.buf.is_empty(), "{:?}", text(&client.buf));
    assert_eq!(backend.accepts(), 1);
}

#[tokio::test]
async fn large_bodies_go_through_intact() {
    const SIZE: usize = 2 * 1024 * 1024;
    let upload: Vec<u8> = (0..SIZE).map(|i| (i * 31 + i / 4099) as u8).collect();
    let download: Vec<u8> = (0..SIZE).map(|i| (i * 17 + i / 65_521) as u8).collect();
    let (sender, mut received) = mpsc::unbounded_channel();
    let answer = Arc::new(download.clone());
    let backend = raw_backend(move |mut wire| {
        let (sender, answer) = (sender.clone(), answer.clone());
        async move {
            while let Some(request) = wire.read_request().await {
                let _ = sender.send(request);
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    answer.len()
                )
                .into_bytes();
                out.extend_from_slice(&answer);
                wire.write(&out).await;
            }
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    let mut request =
        format!("POST /big HTTP/1.1\r\nHost: app.example\r\nContent-Length: {SIZE}\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&upload);
    client.write(&request).await;
    let response = client.read_response(false).await;
    assert_eq!(response.head.status(), 200);
    assert_eq!(response.body.len(), SIZE);
    assert!(response.body == download, "the response body differs");
    let seen = next(&mut received).await;
    assert_eq!(seen.body.len(), SIZE);
    assert!(seen.body == upload, "the request body differs");

    // Twice on the same connections: nothing left over.
    client.write(&request).await;
    let response = client.read_response(false).await;
    assert!(
        response.body == download,
        "the second response body differs"
    );
    assert!(next(&mut received).await.body == upload);
    assert_eq!(backend.accepts(), 1);
}

#[tokio::test]
async fn absolute_form_targets_become_origin_form_with_their_host() {
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"GET http://example.com/x HTTP/1.1\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    assert_eq!(
        (response.head.status(), text(&response.body)),
        (200, "/x".into())
    );
    let seen = next(&mut requests).await;
    assert_eq!(seen.head.start, "GET /x HTTP/1.1");
    assert_eq!(seen.head.all("host"), vec!["example.com"]);

    client
        .write(b"GET http://example.com:8080/y?z=1 HTTP/1.1\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    assert_eq!(response.head.status(), 200);
    let seen = next(&mut requests).await;
    assert_eq!(seen.head.start, "GET /y?z=1 HTTP/1.1");
    assert_eq!(seen.head.all("host"), vec!["example.com:8080"]);
}

#[tokio::test]
async fn malformed_chunked_request_bodies_get_400_and_the_connection_closes() {
    // The target sees at most the head and the well-formed part of the body.
    let backend = raw_backend(|mut wire| async move {
        let _ = wire.read_to_end().await;
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let head: &[u8] =
        b"POST /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n";
    let bad_chunks: [&[u8]; 2] = [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcX\r\n0\r\n\r\n"];
    for bad in bad_chunks {
        // The bad chunk after the head has gone out, and in the same write as the head.
        for together in [false, true] {
            let mut client = dial(address).await;
            if together {
                client.write(&[head, bad].concat()).await;
            } else {
                client.write(head).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                client.write(bad).await;
            }
            let answer = client.read_to_end().await;
            assert!(
                answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
                "{:?} (with the head: {together}) answered {:?}",
                text(bad),
                text(&answer)
            );
            assert!(
                find(&answer, b"\r\nServer: awselb/2.0\r\n").is_some(),
                "{:?}",
                text(&answer)
            );
        }
    }
}

#[tokio::test]
async fn requests_with_two_host_headers_get_400() {
    // RFC 9112 §3.2: a server MUST answer 400. Forwarded, rules would see one host (the
    // load balancer's choice) and the target possibly the other.
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"GET /dup HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    let seen = requests.try_recv().ok().map(|r| r.head);
    assert_eq!(
        response.head.status(),
        400,
        "{:?}; the target saw {seen:?}",
        response.head
    );
    assert_eq!(response.head.get("server"), Some("awselb/2.0"));
    client.expect_closed().await;
    assert_eq!(backend.accepts(), 0);
}

#[tokio::test]
async fn the_host_comes_from_an_absolute_target_and_http11_requires_one() {
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    // RFC 9112 §3.2.2: an absolute-form target's authority wins over `Host`.
    let mut client = dial(address).await;
    client
        .write(b"GET http://example.com/abs HTTP/1.1\r\nHost: other.example\r\n\r\n")
        .await;
    assert_eq!(client.read_response(false).await.head.status(), 200);
    let seen = next(&mut requests).await;
    assert_eq!(seen.head.all("host"), vec!["example.com"]);

    // HTTP/1.0 without `Host`: the target (spoken to in HTTP/1.1) gets the listener's
    // address, and the client no `100 Continue` it would not wait for.
    let mut client = dial(address).await;
    client
        .write(b"POST /old HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let answer = client.read_to_end().await;
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{:?}", text(&answer));
    let seen = next(&mut requests).await;
    assert_eq!(seen.head.all("host"), vec![address.to_string()]);

    // HTTP/1.1 without `Host`: 400, nothing forwarded.
    let mut client = dial(address).await;
    client.write(b"GET /nohost HTTP/1.1\r\n\r\n").await;
    let response = client.read_response(false).await;
    assert_eq!(response.head.status(), 400);
    client.expect_closed().await;
    assert!(requests.try_recv().is_err());
}

#[tokio::test]
async fn http2_clients_reach_targets_over_the_same_pooled_http11_connections() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::TokioExecutor;

    // The target answers each request with a chunked body and reports what it received.
    let (sender, mut received) = mpsc::unbounded_channel();
    let backend = raw_backend(move |mut wire| {
        let sender = sender.clone();
        async move {
            while let Some(request) = wire.read_request().await {
                let _ = sender.send(request);
                wire.write(
                    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\nConnection: X-Gone\r\nX-Gone: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                )
                .await;
            }
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    type Frames =
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>;
    let client: Client<HttpConnector, StreamBody<Frames>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    for round in 0..3 {
        // A body of unknown length (no size hint): the target gets it chunked.
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let request = hyper::Request::post(format!("http://{address}/upload/{round}"))
            .body(body)
            .unwrap();
        let pending = client.request(request);
        let response = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["x-kept"], "1");
        assert!(response.headers().get("x-gone").is_none());
        assert!(response.headers().get("transfer-encoding").is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abcde");

        let seen = next(&mut received).await;
        assert_eq!(seen.head.start, format!("POST /upload/{round} HTTP/1.1"));
        assert_eq!(seen.head.all("transfer-encoding"), vec!["chunked"]);
        assert_eq!(seen.body, b"hello world");
        assert_eq!(seen.head.all("x-forwarded-for"), vec!["127.0.0.1"]);
    }
    assert_eq!(backend.accepts(), 1, "one pooled target connection");
}

#[tokio::test]
async fn an_early_answer_from_a_target_that_stops_reading_reaches_the_client() {
    // The target refuses the upload after its head: it answers 413 and closes without
    // reading the body, while the client is still sending it.
    let backend = raw_backend(|mut wire| async move {
        if wire.read_head().await.is_some() {
            wire.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
                .await;
            let _ = wire.stream.shutdown().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    let size = 32 * 1024 * 1024;
    client
        .write(
            format!("POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: {size}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    // The body goes out from another task: the client reads the answer meanwhile.
    let (reader, mut writer) = client.stream.into_split();
    let sending = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut reader = reader;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, reader.read_to_end(&mut answer)).await;
    let answer = text(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
    assert!(answer.ends_with("too big!"), "{answer:?}");
    sending.abort();
}

#[tokio::test]
async fn a_client_still_sending_the_body_of_an_answered_request_gets_the_answer() {
    // No target: the load balancer answers 503 without reading the body, and closes. A
    // client that sends its whole body before reading must still get that answer: closing
    // with its bytes unread would reset the connection under it.
    let (_node, address) = serve(&[]).await;
    let mut client = dial(address).await;
    let size = 8 * 1024 * 1024;
    client
        .write(
            format!("POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: {size}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let chunk = vec![b'x'; 64 * 1024];
    for sent in 0..size / chunk.len() {
        tokio::time::timeout(WAIT, client.stream.write_all(&chunk))
            .await
            .expect("the body goes out in time")
            .unwrap_or_else(|error| panic!("chunk {sent} of the body: {error}"));
    }
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, client.stream.read_to_end(&mut answer))
        .await
        .expect("the answer comes in time")
        .expect("the answer is read");
    let answer = text(&answer);
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let (backend, _requests) = echo_backend().await;
    let (_node, address) = serve_with_idle_timeout(&[backend.address], 1).await;
    let mut client = dial(address).await;
    client
        .write(b"POST /stall HTTP/1.1\r\nHost: app.example\r\nContent-Length: 10\r\n\r\nhalf")
        .await;
    let started = std::time::Instant::now();
    let answer = client.read_to_end().await;
    assert!(answer.starts_with(b"HTTP/1.1 408 "), "{:?}", text(&answer));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// A target that switches protocols on any request (sending `hello` with its 101) and then
/// echoes every byte back upper-cased; the request heads it got come out of the receiver.
async fn websocket_echo_backend() -> (RawBackend, mpsc::UnboundedReceiver<Head>) {
    let (sender, received) = mpsc::unbounded_channel();
    let backend = raw_backend(move |mut wire| {
        let sender = sender.clone();
        async move {
            let Some(head) = wire.read_head().await else {
                return;
            };
            let _ = sender.send(head);
            wire.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhello")
                .await;
            loop {
                let mut byte = [0u8; 1];
                match wire.stream.read(&mut byte).await {
                    Ok(1) => wire.write(&byte.to_ascii_uppercase()).await,
                    _ => return,
                }
            }
        }
    })
    .await;
    (backend, received)
}

const WEBSOCKET_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn websocket_upgrades_become_byte_streams_to_the_target() {
    let (backend, mut received) = websocket_echo_backend().await;
    let (node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client.write(WEBSOCKET_REQUEST).await;
    let head = client.read_head().await.expect("an answer");
    assert_eq!(head.status(), 101);
    assert_eq!(head.all("upgrade"), vec!["websocket"]);
    assert_eq!(head.all("connection"), vec!["upgrade"]);
    assert_eq!(
        head.all("sec-websocket-accept"),
        vec!["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    let seen = next(&mut received).await;
    assert_eq!(seen.start, "GET /chat HTTP/1.1");
    assert_eq!(seen.all("upgrade"), vec!["websocket"]);
    assert_eq!(seen.all("connection"), vec!["upgrade"]);
    assert_eq!(
        seen.all("sec-websocket-key"),
        vec!["dGhlIHNhbXBsZSBub25jZQ=="]
    );
    // What the target sent with its 101, then a conversation both ways.
    assert_eq!(client.take(5).await, b"hello");
    client.write(b"ping").await;
    assert_eq!(client.take(4).await, b"PING");
    client.write(b"again").await;
    assert_eq!(client.take(5).await, b"AGAIN");
    // The listener goes away (its load balancer was deleted, the target stays registered):
    // the tunnel closes too.
    node.publish(snapshot(vec![], vec![raw_group(&[backend.address])]))
        .await;
    assert!(client.read_to_end().await.is_empty());
    // A 101 nobody asked for is a broken target: 502.
    let rogue = raw_backend(|mut wire| async move {
        if wire.read_head().await.is_some() {
            wire.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    let (_node, address) = serve(&[rogue.address]).await;
    let mut client = dial(address).await;
    client
        .write(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
        .await;
    assert_eq!(client.read_response(false).await.head.status(), 502);
}

#[tokio::test]
async fn websocket_tunnels_close_when_idle_for_the_idle_timeout() {
    let (backend, _received) = websocket_echo_backend().await;
    let (_node, address) = serve_with_idle_timeout(&[backend.address], 1).await;
    let mut client = dial(address).await;
    client.write(WEBSOCKET_REQUEST).await;
    assert_eq!(client.read_head().await.expect("an answer").status(), 101);
    assert_eq!(client.take(5).await, b"hello");
    // A byte each way every 400 ms keeps the tunnel open well past the 1 s timeout...
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.write(b"a").await;
        assert_eq!(client.take(1).await, b"A");
    }
    // ...and a second of silence closes it.
    let started = std::time::Instant::now();
    assert!(client.read_to_end().await.is_empty());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
}

#[tokio::test]
async fn framing_headers_cannot_be_made_hop_by_hop() {
    // `Connection: content-length` must not drop the length the body is relayed by: the
    // target would read the body as a second request that skipped the rules.
    let (backend, mut requests) = echo_backend().await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n";
    client
        .write(
            format!(
                "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: content-length, host\r\n\r\n{smuggled}",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(text(&client.read_response(false).await.body), "/form");
    let seen = next(&mut requests).await;
    assert_eq!(seen.head.start, "POST /form HTTP/1.1");
    assert_eq!(
        seen.head.all("content-length"),
        vec![smuggled.len().to_string()]
    );
    assert_eq!(seen.head.all("host"), vec!["a"]);
    assert_eq!(seen.body, smuggled.as_bytes());
    assert!(requests.try_recv().is_err(), "no second request");

    // Lengths are digits only.
    let mut client = dial(address).await;
    client
        .write(b"POST /plus HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello")
        .await;
    assert_eq!(client.read_response(false).await.head.status(), 400);
    // `http://host?q` goes on as `/?q`.
    let mut client = dial(address).await;
    client
        .write(b"GET http://example.com?q=1 HTTP/1.1\r\n\r\n")
        .await;
    assert_eq!(client.read_response(false).await.head.status(), 200);
    assert_eq!(next(&mut requests).await.head.start, "GET /?q=1 HTTP/1.1");
    // Only WebSocket upgrades are passed on (`h2c` could smuggle requests past the rules).
    client
        .write(b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        .await;
    assert_eq!(client.read_response(false).await.head.status(), 200);
    let seen = next(&mut requests).await;
    assert!(seen.head.all("upgrade").is_empty(), "{:?}", seen.head);
    assert!(seen.head.all("connection").is_empty(), "{:?}", seen.head);
    assert!(
        seen.head.all("http2-settings").is_empty(),
        "{:?}",
        seen.head
    );
}

#[tokio::test]
async fn load_balancer_answers_keep_keep_alive_connections_in_step() {
    // No target: 503s. A HEAD gets the page's length and no page, so the next answer on the
    // connection is read from the right place; an HTTP/1.0 keep-alive client is told it stays
    // open.
    let (_node, address) = serve(&[]).await;
    let mut client = dial(address).await;
    client
        .write(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let head = client.read_response(true).await;
    assert_eq!(head.head.status(), 503);
    assert!(head.body.is_empty());
    let get = client.read_response(false).await;
    assert_eq!(get.head.status(), 503);
    assert!(text(&get.body).contains("<h1>503 Service Unavailable</h1>"));
    let mut client = dial(address).await;
    client
        .write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let answer = client.read_response(false).await;
    assert_eq!(answer.head.status(), 503);
    assert_eq!(answer.head.all("connection"), vec!["keep-alive"]);
    client
        .write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(client.read_response(false).await.head.status(), 503);
}

#[tokio::test]
async fn a_targets_own_forwarding_headers_reach_the_client() {
    let backend = raw_backend(|mut wire| async move {
        while wire.read_request().await.is_some() {
            wire.write(b"HTTP/1.1 200 OK\r\nX-Amzn-Trace-Id: Root=1-abc\r\nX-Forwarded-For: 10.0.0.9\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let (_node, address) = serve(&[backend.address]).await;
    let mut client = dial(address).await;
    client.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let answer = client.read_response(false).await;
    assert_eq!(answer.head.all("x-amzn-trace-id"), vec!["Root=1-abc"]);
    assert_eq!(answer.head.all("x-forwarded-for"), vec!["10.0.0.9"]);
}

#[tokio::test]
async fn http2_responses_from_a_stalled_target_end_at_the_idle_timeout() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    // Half the promised body, then nothing.
    let backend = raw_backend(|mut wire| async move {
        if wire.read_request().await.is_some() {
            wire.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let (_node, address) = serve_with_idle_timeout(&[backend.address], 1).await;
    let client = http2_client();
    let response = client
        .request(
            hyper::Request::get(format!("http://{address}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("the body ends within the idle timeout");
    assert!(body.is_err(), "a cut body is an error, not a short success");
}

#[tokio::test]
async fn no_100_continue_comes_before_a_target_is_reached() {
    // A target that refuses connections: the client, waiting to send its body, gets the 502
    // straight away and never a `100 Continue` it would answer with its body.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (_node, address) = serve(&[gone]).await;
    let mut client = dial(address).await;
    client
        .write(b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await;
    let answer = client.read_response(false).await;
    assert_eq!(answer.head.status(), 502);
}

#[tokio::test]
async fn idle_http2_connections_close_at_the_idle_timeout() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (backend, _requests) = echo_backend().await;
    let (_node, address) = serve_with_idle_timeout(&[backend.address], 1).await;
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(
            hyper::Request::get(format!("http://{address}/busy"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"/busy");
    // Then nothing: the load balancer closes the connection about a second later.
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(WAIT, connection).await;
    assert!(ended.is_ok(), "the idle connection stays open");
    assert!(started.elapsed() >= Duration::from_millis(500));
}
