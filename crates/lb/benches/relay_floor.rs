//! The benchmark's floor for any user-space proxy on this machine: a relay that only moves
//! bytes. Each client connection gets its own backend connection, opened when the client
//! connects, and whatever one side sends is written to the other. No parsing, no routing, no
//! pool, no timers, no async runtime: one `mio` poll loop per thread, with the connections
//! handed out round robin as the lb hands out its own.
//!
//! What is left is the kernel's work for a proxy (two reads and two writes per request over
//! loopback TCP, and the poll), so how close `wharf lb` comes to this relay says how much its
//! own code costs, and what the relay reaches against nginx bounds what any epoll-based proxy
//! could reach here. It is only correct for the benchmark's traffic: a write that would block
//! is retried until it goes through, which small requests and answers on loopback never need.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

const WAKER: Token = Token(usize::MAX);

/// Starts the relay on a free loopback port, forwarding to `backend`, with `threads` poll
/// threads (named `relay-floor-N`, for the benchmark's CPU accounting), and returns its
/// address. It runs until the process exits.
pub fn start(backend: SocketAddr, threads: usize) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let mut workers = Vec::new();
    for n in 0..threads.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, receiver) = mpsc::channel::<std::net::TcpStream>();
        std::thread::Builder::new()
            .name(format!("relay-floor-{n}"))
            .spawn(move || run(poll, receiver, backend))?;
        workers.push((sender, waker));
    }
    std::thread::Builder::new()
        .name("relay-floor-accept".into())
        .spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { continue };
                let (sender, waker) = &workers[n % workers.len()];
                if sender.send(client).is_err() || waker.wake().is_err() {
                    return;
                }
            }
        })?;
    Ok(address)
}

/// One poll thread: connection pair `i` has tokens `2i` (client) and `2i + 1` (backend).
fn run(mut poll: Poll, new: mpsc::Receiver<std::net::TcpStream>, backend: SocketAddr) {
    let mut pairs: Vec<Option<[TcpStream; 2]>> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if poll.poll(&mut events, None).is_err() {
            return;
        }
        for event in &events {
            if event.token() == WAKER {
                while let Ok(client) = new.try_recv() {
                    let _ = open(&mut poll, &mut pairs, client, backend);
                }
                continue;
            }
            let (pair, side) = (event.token().0 / 2, event.token().0 % 2);
            let Some(Some(streams)) = pairs.get_mut(pair) else {
                continue;
            };
            if !pump(streams, side, &mut buf) {
                for stream in streams.iter_mut() {
                    let _ = poll.registry().deregister(stream);
                }
                pairs[pair] = None;
            }
        }
    }
}

fn open(
    poll: &mut Poll,
    pairs: &mut Vec<Option<[TcpStream; 2]>>,
    client: std::net::TcpStream,
    backend: SocketAddr,
) -> std::io::Result<()> {
    let upstream = std::net::TcpStream::connect(backend)?;
    let mut streams = [client, upstream].map(|stream| {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_nonblocking(true);
        TcpStream::from_std(stream)
    });
    let pair = pairs.iter().position(Option::is_none).unwrap_or_else(|| {
        pairs.push(None);
        pairs.len() - 1
    });
    for (side, stream) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(stream, Token(pair * 2 + side), Interest::READABLE)?;
    }
    pairs[pair] = Some(streams);
    Ok(())
}

/// Moves what side `from` has to the other side. False when the pair is done.
fn pump(streams: &mut [TcpStream; 2], from: usize, buf: &mut [u8]) -> bool {
    let (first, second) = streams.split_at_mut(1);
    let (reader, writer) = if from == 0 {
        (&mut first[0], &mut second[0])
    } else {
        (&mut second[0], &mut first[0])
    };
    loop {
        match reader.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                if !write_all(writer, &buf[..n]) {
                    return false;
                }
                // A short read emptied the socket: the next data brings a new edge, so no
                // read that would only say `WouldBlock` (tokio, and the lb, do the same).
                if n < buf.len() {
                    return true;
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn write_all(writer: &mut TcpStream, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match writer.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(error)
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) =>
            {
                std::thread::yield_now();
            }
            Err(_) => return false,
        }
    }
    true
}
