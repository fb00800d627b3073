//! The NLB data path: TCP flows proxied both ways, flow metrics, idle timeouts, Proxy
//! Protocol v2, `source_ip` stickiness and connection termination at deregistration, resets
//! passed on and counted; UDP flows on TCP_UDP listeners.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::elb::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// The TCP group "echo" of `echo`, health-checked by TCP connects or not checked at all.
fn tcp_group(echo: SocketAddr, checked: bool) -> TargetGroupRoutes {
    let mut echo_group = TargetGroupRoutes {
        protocol: "TCP".into(),
        ..group("echo", &[])
    };
    echo_group.health_check.protocol = "TCP".into();
    echo_group.health_check.path = None;
    echo_group.health_check.enabled = checked;
    echo_group.targets.push(target(echo));
    echo_group
}

#[tokio::test]
async fn tcp_listeners_proxy_bytes_both_ways() {
    let echo = echo_server().await;
    let node = Node::start().await;
    let address = listener_address();
    let echo_group = tcp_group(echo, true);
    node.publish(snapshot(
        vec![load_balancer(
            "tcp",
            LoadBalancerKind::Network,
            address,
            vec![rule(None, vec![], forward(&[("echo", 1)]))],
        )],
        vec![echo_group],
    ))
    .await;
    node.wait_for_target("echo", echo, "healthy").await;
    let mut streams = Vec::new();
    for round in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let message = format!("hello through the nlb {round}");
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0; message.len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message.as_bytes());
        streams.push(stream);
    }
    // The flows are still open: their bytes count already (each message went both ways).
    let carried = 2.0
        * (0..3)
            .map(|r| format!("hello through the nlb {r}").len() as f64)
            .sum::<f64>();
    let bytes = node
        .wait_for_metric_sum("ProcessedBytes", nlb_datum, carried)
        .await;
    assert_eq!(bytes, carried);
    drop(streams);
    let flows = node
        .wait_for_metric_sum("NewFlowCount", nlb_datum, 3.0)
        .await;
    assert_eq!(flows, 3.0);
}

#[tokio::test]
async fn tcp_flows_close_when_idle_for_the_idle_timeout() {
    let echo = echo_server().await;
    let node = Node::start().await;
    let address = listener_address();
    let echo_group = tcp_group(echo, false);
    let mut nlb = load_balancer(
        "tcp",
        LoadBalancerKind::Network,
        address,
        vec![rule(None, vec![], forward(&[("echo", 1)]))],
    );
    // The listener's own timeout (`tcp.idle_timeout.seconds`) wins over its load balancer's.
    nlb.listeners[0].idle_timeout_seconds = Some(1);
    node.publish(snapshot(vec![nlb], vec![echo_group])).await;
    let mut stream = connect(address).await;
    // A byte each way every 400 ms keeps the flow open well past the 1 s timeout...
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        stream.write_all(b"a").await.unwrap();
        let mut echoed = [0u8; 1];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"a");
    }
    // ...and a second of silence closes it.
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the flow closes");
    assert!(matches!(read, Ok(0)), "{read:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
}

/// A connection to the NLB's listener, once it is bound.
async fn connect(address: SocketAddr) -> tokio::net::TcpStream {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => return stream,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{address} not listening: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A target that takes a Proxy Protocol v2 header off each connection and records it, then
/// echoes what follows.
async fn proxy_protocol_target() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let headers = Arc::new(Mutex::new(Vec::new()));
    let seen = headers.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut header = vec![0u8; 16];
                if stream.read_exact(&mut header).await.is_err() {
                    return;
                }
                let length = u16::from_be_bytes([header[14], header[15]]) as usize;
                let mut addresses = vec![0u8; length];
                if stream.read_exact(&mut addresses).await.is_err() {
                    return;
                }
                header.extend_from_slice(&addresses);
                seen.lock().unwrap().push(header);
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    (address, headers)
}

fn nlb(address: SocketAddr) -> LoadBalancerRoutes {
    forwarding_to("tcp", LoadBalancerKind::Network, address, "echo")
}

#[tokio::test]
async fn proxy_protocol_v2_tells_targets_the_client_and_checks_are_local() {
    let (target, headers) = proxy_protocol_target().await;
    let node = Node::start().await;
    let address = listener_address();
    let mut group = tcp_group(target, true);
    group.proxy_protocol_v2 = true;
    group.health_check.interval_seconds = 1;
    node.publish(snapshot(vec![nlb(address)], vec![group]))
        .await;
    let mut stream = connect(address).await;
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(
        &echoed, b"ping",
        "the header is not echoed: the target consumed it"
    );
    let client = stream.local_addr().unwrap();
    let headers = headers.lock().unwrap().clone();
    let signature = b"\r\n\r\n\0\r\nQUIT\n";
    assert!(
        headers.iter().all(|h| h.starts_with(signature)),
        "{headers:?}"
    );
    // Health checks: LOCAL, no addresses (and they pass: the flow above had a target).
    assert!(
        headers.iter().any(|h| h[12..] == [0x20, 0, 0, 0]),
        "{headers:?}"
    );
    // The flow: PROXY over TCP/IPv4, the client's address and port, then the listener's.
    let flow = headers
        .iter()
        .find(|h| h[12] == 0x21)
        .expect("the flow's header");
    let (IpAddr::V4(source), IpAddr::V4(destination)) = (client.ip(), address.ip()) else {
        panic!("loopback IPv4 expected");
    };
    let mut expected = vec![0x21, 0x11, 0, 12];
    expected.extend_from_slice(&source.octets());
    expected.extend_from_slice(&destination.octets());
    expected.extend_from_slice(&client.port().to_be_bytes());
    expected.extend_from_slice(&address.port().to_be_bytes());
    assert_eq!(flow[12..], expected[..]);
}

/// A target that writes its name to every connection and closes it.
async fn named_target(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(name.as_bytes()).await;
        }
    });
    address
}

/// The name the NLB's target answers a flow from `source` with.
async fn name_seen_from(source: Ipv4Addr, address: SocketAddr) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let mut name = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut name))
        .await
        .expect("the target answers")
        .unwrap();
    name
}

#[tokio::test]
async fn source_ip_stickiness_keeps_a_client_address_on_one_target() {
    let names = ["n1", "n2", "n3"];
    let mut group = tcp_group(named_target(names[0]).await, false);
    for name in &names[1..] {
        group.targets.push(target(named_target(name).await));
    }
    group.stickiness = Some(Stickiness {
        kind: "source_ip".into(),
        duration_seconds: 0,
        cookie_name: None,
    });
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(vec![nlb(address)], vec![group]))
        .await;
    connect(address).await;
    let mut chosen = std::collections::BTreeSet::new();
    for last in 1..=24u8 {
        let source = Ipv4Addr::new(127, 0, 3, last);
        let first = name_seen_from(source, address).await;
        for _ in 0..3 {
            assert_eq!(name_seen_from(source, address).await, first, "{source}");
        }
        chosen.insert(first);
    }
    // Different addresses spread over the targets.
    assert!(chosen.len() >= 2, "{chosen:?}");
}

#[tokio::test]
async fn flows_outlive_the_deregistration_delay_unless_connection_termination_is_on() {
    for terminate in [false, true] {
        let echo = echo_server().await;
        let node = Node::start().await;
        let address = listener_address();
        let mut group = tcp_group(echo, false);
        group.connection_termination = terminate;
        node.publish(snapshot(vec![nlb(address)], vec![group.clone()]))
            .await;
        let mut stream = connect(address).await;
        stream.write_all(b"a").await.unwrap();
        let mut echoed = [0u8; 1];
        stream.read_exact(&mut echoed).await.unwrap();
        // Deregistered, with 300 ms of delay left.
        group.targets[0].draining_until_ms = Some(300);
        node.publish(snapshot(vec![nlb(address)], vec![group]))
            .await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let _ = stream.write_all(b"b").await;
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut echoed)).await;
        if terminate {
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "the flow is closed: {read:?}"
            );
        } else {
            assert!(matches!(read, Ok(Ok(1))), "the flow goes on: {read:?}");
            assert_eq!(&echoed, b"b");
        }
    }
}

#[tokio::test]
async fn http_health_checks_with_proxy_protocol_send_the_header_then_an_origin_form_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_address = listener.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut header = [0u8; 16];
                stream.read_exact(&mut header).await.unwrap();
                let mut request = vec![0u8; 512];
                let n = stream.read(&mut request).await.unwrap();
                let line = String::from_utf8_lossy(&request[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = seen_tx.send((header, line));
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let node = Node::start().await;
    let mut group = tcp_group(target_address, true);
    group.proxy_protocol_v2 = true;
    group.health_check.protocol = "HTTP".into();
    group.health_check.path = Some("/health".into());
    node.publish(snapshot(vec![nlb(listener_address())], vec![group]))
        .await;
    let (header, line) = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
        .await
        .expect("a health check arrives")
        .unwrap();
    assert_eq!(&header[12..], &[0x20, 0, 0, 0]);
    assert_eq!(line, "GET /health HTTP/1.1");
    node.wait_for_target("echo", target_address, "healthy")
        .await;
}

/// A target on one port for both protocols: UDP datagrams are answered `<name>:<datagram>`
/// to their sender, TCP connections echo what they get (and take health checks).
async fn dual_target(name: &'static str) -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let address = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((length, peer)) = udp.recv_from(&mut buf).await {
            let mut answer = format!("{name}:").into_bytes();
            answer.extend_from_slice(&buf[..length]);
            let _ = udp.send_to(&answer, peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// Sends `datagram` from `client` and waits for the answer.
async fn exchange(client: &tokio::net::UdpSocket, datagram: &str) -> String {
    client.send(datagram.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let length = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
        .await
        .expect("the target answers through the load balancer")
        .unwrap();
    String::from_utf8_lossy(&buf[..length]).into_owned()
}

/// Dual targets named `first` and `second` in the group "echo" of `protocol`, checked by TCP
/// connects or not checked.
async fn two_dual_targets(
    protocol: &str,
    checked: bool,
) -> (SocketAddr, SocketAddr, TargetGroupRoutes) {
    let first = dual_target("first").await;
    let second = dual_target("second").await;
    let mut group = tcp_group(first, checked);
    group.protocol = protocol.into();
    group.targets.push(target(second));
    (first, second, group)
}

#[tokio::test]
async fn tcp_udp_listeners_relay_datagrams_per_flow_and_tcp_on_the_same_port() {
    let (first, second, group) = two_dual_targets("TCP_UDP", true).await;
    let node = Node::start().await;
    let address = listener_address();
    let mut lb = nlb(address);
    lb.listeners[0].protocol = "TCP_UDP".into();
    node.publish(snapshot(vec![lb], vec![group])).await;
    for target in [first, second] {
        node.wait_for_target("echo", target, "healthy").await;
    }

    // The same port takes TCP (and once it does, the UDP socket, bound with it, is there).
    let mut stream = connect(address).await;
    stream.write_all(b"over tcp").await.unwrap();
    let mut echoed = [0u8; 8];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"over tcp");

    // Each client address and port is a flow: all its datagrams reach one target, and the
    // answers come back from the listener's address (the clients' sockets are connected to
    // it, so they take nothing else). Flows go by their hash, so 16 of them all landing on
    // one of the two targets would happen once in 32,768 runs.
    let mut names = std::collections::BTreeSet::new();
    for flow in 0..16 {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(address).await.unwrap();
        let answer = exchange(&client, &format!("hello {flow}")).await;
        let (name, echoed) = answer.split_once(':').unwrap();
        assert_eq!(echoed, format!("hello {flow}"));
        for again in 0..3 {
            let answer = exchange(&client, &format!("again {again}")).await;
            assert_eq!(answer, format!("{name}:again {again}"), "flow {flow} moved");
        }
        names.insert(name.to_string());
    }
    assert_eq!(names.len(), 2, "new flows are spread: {names:?}");

    // Flows count per protocol and in total.
    for (metric, wanted) in [
        ("NewFlowCount_UDP", 16.0),
        ("NewFlowCount_TCP", 1.0),
        ("NewFlowCount", 17.0),
    ] {
        assert_eq!(
            node.wait_for_metric_sum(metric, nlb_datum, wanted).await,
            wanted,
            "{metric}"
        );
    }
    assert_eq!(node.metric_sum("NewFlowCount_TLS", nlb_datum), 0.0);
}

#[tokio::test]
async fn udp_flows_end_after_the_idle_timeout_and_hash_to_the_same_target_again() {
    let (_, _, group) = two_dual_targets("UDP", false).await;
    let node =
        Node::start_with(|config| config.udp_idle_timeout = Duration::from_millis(400)).await;
    let address = listener_address();
    let mut lb = nlb(address);
    lb.listeners[0].protocol = "UDP".into();
    node.publish(snapshot(vec![lb], vec![group])).await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(address).await.unwrap();
    // The listener is bound once a datagram gets an answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let name = loop {
        client.send(b"first").await.unwrap();
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), client.recv(&mut buf)).await {
            Ok(Ok(length)) => {
                let answer = String::from_utf8(buf[..length].to_vec()).unwrap();
                let (name, echoed) = answer.split_once(':').unwrap();
                assert_eq!(echoed, "first");
                break name.to_string();
            }
            _ => assert!(tokio::time::Instant::now() < deadline, "no answer"),
        }
    };
    // Datagrams within the idle timeout stay on the flow; one after it starts a new flow,
    // which hashes to the same target (in turn, it would have gone to the other one).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(exchange(&client, "again").await, format!("{name}:again"));
    }
    let flows_before = node
        .wait_for_metric_sum("NewFlowCount_UDP", nlb_datum, 1.0)
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(exchange(&client, "later").await, format!("{name}:later"));
    let flows_after = node
        .wait_for_metric_sum("NewFlowCount_UDP", nlb_datum, flows_before + 1.0)
        .await;
    assert_eq!(flows_after, flows_before + 1.0);
}

/// A target that echoes, resets a connection that sends `reset`, and reports how each other
/// connection's reads ended (`closed`, or the error's kind).
async fn resetting_target() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (ends, ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let ends = ends.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => {
                            let _ = ends.send("closed".to_string());
                            return;
                        }
                        Ok(n) if &buf[..n] == b"reset" => {
                            stream.set_zero_linger().unwrap();
                            return;
                        }
                        Ok(n) => stream.write_all(&buf[..n]).await.unwrap(),
                        Err(error) => {
                            let _ = ends.send(format!("{:?}", error.kind()));
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, ended)
}

#[tokio::test]
async fn resets_are_passed_on_and_counted_by_who_sent_them() {
    let (target, mut ended) = resetting_target().await;
    // A second load balancer's group has a target nothing listens on.
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut refused_group = tcp_group(refused, false);
    refused_group.name = "refused".into();
    refused_group.arn = group_arn("refused");
    let node = Node::start().await;
    let (address, second) = (listener_address(), listener_address());
    node.publish(snapshot(
        vec![
            nlb(address),
            forwarding_to("refusing", LoadBalancerKind::Network, second, "refused"),
        ],
        vec![tcp_group(target, false), refused_group],
    ))
    .await;
    let read_error = |mut stream: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        match read.expect("the flow ends") {
            Ok(n) => panic!("read {n} bytes where a reset was due"),
            Err(error) => error.kind(),
        }
    };

    // The target resets: so does the load balancer, to the client.
    let mut stream = connect(address).await;
    stream.write_all(b"hello").await.unwrap();
    let mut echoed = [0u8; 5];
    stream.read_exact(&mut echoed).await.unwrap();
    stream.write_all(b"reset").await.unwrap();
    assert_eq!(
        read_error(stream).await,
        std::io::ErrorKind::ConnectionReset
    );

    // The client resets: so does the load balancer, to the target.
    let mut stream = connect(address).await;
    stream.write_all(b"hi").await.unwrap();
    let mut echoed = [0u8; 2];
    stream.read_exact(&mut echoed).await.unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream);
    let end = tokio::time::timeout(Duration::from_secs(10), ended.recv()).await;
    assert_eq!(end.unwrap().unwrap(), "ConnectionReset");

    // A flow whose target refuses is reset by the load balancer.
    let stream = connect(second).await;
    assert_eq!(
        read_error(stream).await,
        std::io::ErrorKind::ConnectionReset
    );

    for name in [
        "TCP_Target_Reset_Count",
        "TCP_Client_Reset_Count",
        "TCP_ELB_Reset_Count",
    ] {
        assert_eq!(
            node.wait_for_metric_sum(name, nlb_datum, 1.0).await,
            1.0,
            "{name}"
        );
    }
    assert_eq!(node.metric_sum("PortAllocationErrorCount", nlb_datum), 0.0);
    // ALB-only metrics stay out of an NLB's namespace.
    assert!(node.datums("RequestCountPerTarget", nlb_datum).is_empty());
}
