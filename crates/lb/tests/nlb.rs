//! The NLB data path: TCP flows proxied both ways, flow metrics.

mod support;

use std::net::SocketAddr;
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
    let arn = group_arn("echo");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node
        .handle
        .target_health(&arn, "127.0.0.1", echo.port())
        .map(|h| h.state)
        != Some("healthy".into())
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bytes: f64 = node
            .control_plane
            .metric_reports()
            .iter()
            .flat_map(|r| r.datums.clone())
            .filter(|d| d.namespace == "AWS/NetworkELB" && d.metric_name == "ProcessedBytes")
            .map(|d| d.sum)
            .sum();
        if bytes >= carried {
            assert_eq!(bytes, carried);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open flows' bytes not reported ({bytes} of {carried})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let flows: f64 = node
            .control_plane
            .metric_reports()
            .iter()
            .flat_map(|r| r.datums.clone())
            .filter(|d| d.namespace == "AWS/NetworkELB" && d.metric_name == "NewFlowCount")
            .map(|d| d.sum)
            .sum();
        if flows >= 3.0 {
            assert_eq!(flows, 3.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow metrics not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
