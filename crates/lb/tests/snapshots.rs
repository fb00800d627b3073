//! Snapshot handling: swaps keep serving, a control plane that is down leaves the last
//! snapshot in place, removed listeners close, and bind failures are reported.

mod support;

use std::time::Duration;

use model::elb::*;
use support::*;

#[tokio::test]
async fn swaps_keep_serving_and_an_unreachable_control_plane_keeps_the_last_snapshot() {
    let (one, two) = (backend("one").await, backend("two").await);
    let node = Node::start().await;
    let address = listener_address();
    let lb = |group_name: &str| {
        load_balancer(
            "swap",
            LoadBalancerKind::Application,
            address,
            vec![rule(None, vec![], forward(&[(group_name, 1)]))],
        )
    };
    node.publish(snapshot(
        vec![lb("one")],
        vec![group("one", &[&one]), group("two", &[&two])],
    ))
    .await;
    let client = http_client();
    assert_eq!(get(&client, address, "/").await.body, "one");
    node.publish(snapshot(
        vec![lb("two")],
        vec![group("one", &[&one]), group("two", &[&two])],
    ))
    .await;
    assert_eq!(get(&client, address, "/").await.body, "two");

    node.control_plane.set_down(true);
    // Long enough for several failed polls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        assert_eq!(get(&client, address, "/").await.body, "two");
    }
    node.control_plane.set_down(false);
    node.publish(snapshot(vec![lb("one")], vec![group("one", &[&one])]))
        .await;
    assert_eq!(get(&client, address, "/").await.body, "one");
}

#[tokio::test]
async fn removed_listeners_close_and_bind_failures_are_reported() {
    let web = backend("web").await;
    let node = Node::start().await;
    let address = listener_address();
    let taken = std::net::TcpListener::bind(listener_address()).unwrap();
    let taken_address = taken.local_addr().unwrap();
    let good = load_balancer(
        "good",
        LoadBalancerKind::Application,
        address,
        vec![rule(None, vec![], forward(&[("web", 1)]))],
    );
    let blocked = load_balancer(
        "blocked",
        LoadBalancerKind::Application,
        taken_address,
        vec![rule(None, vec![], forward(&[("web", 1)]))],
    );
    node.publish(snapshot(
        vec![good.clone(), blocked.clone()],
        vec![group("web", &[&web])],
    ))
    .await;
    let states = node.handle.load_balancer_states();
    assert_eq!(states.active, vec![good.arn.clone()]);
    assert_eq!(states.failed.len(), 1);
    assert_eq!(states.failed[0].arn, blocked.arn);
    assert!(
        states.failed[0].reason.contains("cannot listen"),
        "{}",
        states.failed[0].reason
    );
    let client = http_client();
    assert_eq!(get(&client, address, "/").await.body, "web");

    // Once the address is free, the retry binds it.
    drop(taken);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.handle.load_balancer_states().active.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener not bound after the address was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The report says so too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !node
        .control_plane
        .health_reports()
        .iter()
        .any(|r| r.active_load_balancers.len() == 2 && r.node == "test-node")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "active load balancers not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    node.publish(snapshot(vec![blocked], vec![group("web", &[&web])]))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(address).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "removed listener still accepts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_stops_every_task() {
    let node = Node::start().await;
    let address = listener_address();
    node.publish(snapshot(
        vec![load_balancer(
            "bye",
            LoadBalancerKind::Application,
            address,
            vec![rule(
                None,
                vec![],
                RouteAction::FixedResponse {
                    status_code: 200,
                    content_type: None,
                    message_body: None,
                },
            )],
        )],
        vec![],
    ))
    .await;
    assert!(tokio::net::TcpStream::connect(address).await.is_ok());
    node.handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), node.handle.wait())
        .await
        .expect("the node stops");
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}
