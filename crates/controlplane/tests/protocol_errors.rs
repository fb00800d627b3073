//! The wire itself: authentication failures, unknown operations, unparsable bodies, oversized
//! bodies and request ids, as real clients see them.

mod support;

use serde_json::json;

const ECS_JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.1");

#[tokio::test]
async fn every_response_carries_a_request_id_and_json_errors_have_type_and_message() {
    let server = support::start().await;
    let response = support::signed_request(
        &server,
        "ecs",
        &[
            ECS_JSON,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            ),
        ],
        b"{}",
        None,
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response
        .header("x-amzn-requestid")
        .is_some_and(|id| id.len() == 36));
    assert_eq!(response.json(), json!({"clusterArns": []}));

    let unknown = support::signed_request(
        &server,
        "ecs",
        &[
            ECS_JSON,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.FlyToTheMoon",
            ),
        ],
        b"{}",
        None,
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["__type"], "UnknownOperationException");
    assert!(unknown.header("x-amzn-requestid").is_some());

    let wrong_prefix = support::signed_request(
        &server,
        "ecs",
        &[ECS_JSON, ("x-amz-target", "Logs_20140328.ListClusters")],
        b"{}",
        None,
    )
    .await;
    assert_eq!(wrong_prefix.json()["__type"], "UnknownOperationException");

    let garbage = support::signed_request(
        &server,
        "ecs",
        &[
            ECS_JSON,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.CreateCluster",
            ),
        ],
        b"{not json",
        None,
    )
    .await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json()["__type"], "SerializationException");
    assert!(garbage.json()["message"].is_string());

    let wrong_type = support::signed_request(
        &server,
        "ecs",
        &[
            ECS_JSON,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.CreateCluster",
            ),
        ],
        br#"{"clusterName": 42}"#,
        None,
    )
    .await;
    assert_eq!(wrong_type.json()["__type"], "SerializationException");

    let missing = support::signed_request(
        &server,
        "ecs",
        &[
            ECS_JSON,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.DeleteCluster",
            ),
        ],
        b"{}",
        None,
    )
    .await;
    assert_eq!(
        missing.json()["__type"],
        "InvalidParameterException",
        "{missing:?}"
    );
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_unknown_keys_are_refused() {
    let server = support::start().await;
    let target = (
        "x-amz-target",
        "AmazonEC2ContainerServiceV20141113.ListClusters",
    );

    let unsigned = support::raw_post(
        &server,
        &[
            ("host".to_string(), server.server.local_addr().to_string()),
            (ECS_JSON.0.to_string(), ECS_JSON.1.to_string()),
            (target.0.to_string(), target.1.to_string()),
        ],
        b"{}",
    )
    .await;
    assert_eq!(unsigned.status, 400, "{unsigned:?}");
    assert_eq!(
        unsigned.json()["__type"],
        "MissingAuthenticationTokenException"
    );

    let wrong_secret = support::signed_request(
        &server,
        "ecs",
        &[ECS_JSON, target],
        b"{}",
        Some("not-the-secret-not-the-secret-not-the-se"),
    )
    .await;
    assert_eq!(wrong_secret.status, 400);
    assert_eq!(wrong_secret.json()["__type"], "InvalidSignatureException");
    assert!(wrong_secret.header("x-amzn-requestid").is_some());

    // The SDK, with a key the server never issued.
    let stranger = server
        .ecs_client_with(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .await;
    let error = stranger
        .list_clusters()
        .send()
        .await
        .expect_err("unknown key refused");
    assert_eq!(support::error_code(&error), "UnrecognizedClientException");
    assert_eq!(
        support::error_message(&error),
        "The security token included in the request is invalid."
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_and_change_nothing() {
    let server = support::start().await;
    let name = "x".repeat(9 * 1024 * 1024);
    let body = format!(r#"{{"clusterName":"{name}"}}"#);
    let response = support::signed_request(
        &server,
        "ecs",
        &[
            ECS_JSON,
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.CreateCluster",
            ),
        ],
        body.as_bytes(),
        None,
    )
    .await;
    assert_eq!(response.status, 413, "{:?}", response.headers);
    assert_eq!(response.json()["__type"], "RequestEntityTooLargeException");
    let clusters = server.ecs.list_clusters().send().await.unwrap();
    assert!(clusters.cluster_arns().is_empty());
}

#[tokio::test]
async fn requests_for_services_wharf_does_not_serve_say_so() {
    let server = support::start().await;
    let response = support::signed_request(
        &server,
        "kinesis",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.ListStreams"),
        ],
        b"{}",
        None,
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "UnrecognizedServiceException");
    assert!(response.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("kinesis"));
}
