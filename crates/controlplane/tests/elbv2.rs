//! ELBv2 against a real in-process server: signed Query requests answered in XML (happy paths
//! and AWS's error codes for every operation family), the load-balancer protocol a `wharf lb`
//! speaks (route snapshots with rule order, weighted forwards, instance targets resolved
//! through container instances, draining; health reports becoming DescribeTargetHealth states;
//! provisioning → active; request metrics read back through CloudWatch), and boto3 running the
//! botocore waiters against it.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use store::Store as _;
use support::{signed_request, RawResponse, TestServer};

const NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// Form-encode one value (everything but unreserved characters is escaped).
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every text of `<tag>…</tag>` in document order.
fn texts(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(
            after[..end]
                .replace("&apos;", "'")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        );
        rest = &after[end + close.len()..];
    }
    out
}

fn text(body: &str, tag: &str) -> String {
    texts(body, tag).into_iter().next().unwrap_or_default()
}

async fn call(server: &TestServer, action: &str, params: &[(&str, &str)]) -> RawResponse {
    let mut form = format!("Action={action}&Version=2015-12-01");
    for (k, v) in params {
        form.push_str(&format!("&{}={}", encode(k), encode(v)));
    }
    signed_request(
        server,
        "elasticloadbalancing",
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        form.as_bytes(),
        None,
    )
    .await
}

/// Call and require success; the body.
async fn ok(server: &TestServer, action: &str, params: &[(&str, &str)]) -> String {
    let response = call(server, action, params).await;
    assert_eq!(
        response.status, 200,
        "{action} {params:?}: {}",
        response.body
    );
    assert!(
        response
            .body
            .contains(&format!("<{action}Response xmlns=\"{NS}\">")),
        "{}",
        response.body
    );
    assert_eq!(
        response.header("x-amzn-requestid").map(str::to_string),
        Some(text(&response.body, "RequestId"))
    );
    response.body
}

/// Call and require an error with `code`; the message.
async fn fails(server: &TestServer, action: &str, params: &[(&str, &str)], code: &str) -> String {
    let response = call(server, action, params).await;
    assert_eq!(
        response.status, 400,
        "{action} {params:?}: {}",
        response.body
    );
    assert!(
        response.body.contains("<ErrorResponse"),
        "{}",
        response.body
    );
    assert_eq!(text(&response.body, "Type"), "Sender", "{}", response.body);
    assert_eq!(text(&response.body, "Code"), code, "{}", response.body);
    text(&response.body, "Message")
}

/// A load-balancer protocol call (signing name `wharf`), its JSON answer.
async fn lb_call(server: &TestServer, operation: &str, input: Value) -> Value {
    let target = format!("{}.{operation}", model::elb::TARGET_PREFIX);
    let response = signed_request(
        server,
        model::agent::SIGNING_NAME,
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &target),
        ],
        &serde_json::to_vec(&input).unwrap(),
        None,
    )
    .await;
    assert_eq!(response.status, 200, "{operation}: {}", response.body);
    response.json()
}

async fn routes(server: &TestServer) -> model::elb::RouteSnapshot {
    let answer = lb_call(
        server,
        "GetRoutes",
        json!({"sinceRevision": 0, "waitSeconds": 0}),
    )
    .await;
    serde_json::from_value(answer).expect("a route snapshot")
}

/// The default VPC and its three subnets (one per zone).
async fn default_network(server: &TestServer) -> (String, Vec<String>) {
    let body = support::ec2_query(
        server,
        "Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=default-for-az&Filter.1.Value.1=true",
    )
    .await
    .body;
    let mut subnets = texts(&body, "subnetId");
    subnets.sort();
    (text(&body, "vpcId"), subnets)
}

async fn create_lb(server: &TestServer, name: &str, subnets: &[String]) -> String {
    let mut params = vec![("Name", name)];
    let keys: Vec<String> = (1..=subnets.len())
        .map(|i| format!("Subnets.member.{i}"))
        .collect();
    for (k, s) in keys.iter().zip(subnets) {
        params.push((k, s));
    }
    let body = ok(server, "CreateLoadBalancer", &params).await;
    text(&body, "LoadBalancerArn")
}

async fn create_tg(
    server: &TestServer,
    name: &str,
    protocol: &str,
    vpc: &str,
    kind: &str,
) -> String {
    let body = ok(
        server,
        "CreateTargetGroup",
        &[
            ("Name", name),
            ("Protocol", protocol),
            ("Port", "80"),
            ("VpcId", vpc),
            ("TargetType", kind),
        ],
    )
    .await;
    text(&body, "TargetGroupArn")
}

async fn create_listener(server: &TestServer, lb: &str, port: &str, tg: &str) -> String {
    let body = ok(
        server,
        "CreateListener",
        &[
            ("LoadBalancerArn", lb),
            ("Protocol", "HTTP"),
            ("Port", port),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", tg),
        ],
    )
    .await;
    text(&body, "ListenerArn")
}

#[tokio::test]
async fn load_balancers_are_created_described_and_deleted() {
    let server = support::start().await;
    let (vpc, subnets) = default_network(&server).await;
    let body = ok(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "web"),
            ("Subnets.member.1", &subnets[0]),
            ("Subnets.member.2", &subnets[1]),
            ("Tags.member.1.Key", "env"),
            ("Tags.member.1.Value", "test"),
        ],
    )
    .await;
    let arn = text(&body, "LoadBalancerArn");
    assert!(
        arn.starts_with(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/"
        ),
        "{arn}"
    );
    assert_eq!(arn.rsplit('/').next().unwrap().len(), 16);
    assert_eq!(text(&body, "Code"), "provisioning");
    assert_eq!(text(&body, "Type"), "application");
    assert_eq!(text(&body, "Scheme"), "internet-facing");
    assert_eq!(text(&body, "VpcId"), vpc);
    assert_eq!(text(&body, "CanonicalHostedZoneId"), "Z35SXDOTRQ7X7K");
    let address: std::net::Ipv4Addr = text(&body, "DNSName").parse().expect("an address");
    assert_eq!(address.octets()[0], 127);
    assert!(address.octets()[1] >= 128, "{address}");
    assert_eq!(texts(&body, "ZoneName").len(), 2);
    assert!(
        text(&body, "SecurityGroups").starts_with("<member>sg-"),
        "{body}"
    );
    assert!(text(&body, "CreatedTime").ends_with('Z'));

    // Idempotent for the same settings; refused for others.
    let again = create_lb(&server, "web", &subnets[..2]).await;
    assert_eq!(again, arn);
    let message = fails(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "web"),
            ("Subnets.member.1", &subnets[0]),
            ("Subnets.member.2", &subnets[2]),
        ],
        "DuplicateLoadBalancerName",
    )
    .await;
    assert!(message.contains("'web'"), "{message}");
    let message = fails(
        &server,
        "CreateLoadBalancer",
        &[("Name", "one"), ("Subnets.member.1", &subnets[0])],
        "InvalidConfigurationRequest",
    )
    .await;
    assert_eq!(
        message,
        "At least two subnets in two different Availability Zones must be specified"
    );
    fails(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "x"),
            ("Subnets.member.1", "subnet-0000000000000000f"),
            ("Subnets.member.2", &subnets[0]),
        ],
        "SubnetNotFound",
    )
    .await;
    fails(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "x"),
            ("Subnets.member.1", &subnets[0]),
            ("Subnets.member.2", &subnets[1]),
            ("SecurityGroups.member.1", "sg-00000000000000000"),
        ],
        "InvalidSecurityGroup",
    )
    .await;
    fails(
        &server,
        "CreateLoadBalancer",
        &[("Name", "-bad"), ("Subnets.member.1", &subnets[0])],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "CreateLoadBalancer",
        &[("Name", "internal-x"), ("Subnets.member.1", &subnets[0])],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "x"),
            ("Scheme", "public"),
            ("Subnets.member.1", &subnets[0]),
        ],
        "ValidationError",
    )
    .await;
    // Refused requests changed nothing.
    let all = ok(&server, "DescribeLoadBalancers", &[]).await;
    assert_eq!(texts(&all, "LoadBalancerName"), vec!["web"]);

    // A network load balancer needs one subnet, has no security groups by default.
    let body = ok(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "tcp"),
            ("Type", "network"),
            ("Scheme", "internal"),
            ("Subnets.member.1", &subnets[2]),
        ],
    )
    .await;
    let nlb = text(&body, "LoadBalancerArn");
    assert!(nlb.contains(":loadbalancer/net/tcp/"), "{nlb}");
    assert_eq!(text(&body, "CanonicalHostedZoneId"), "Z26RNL4JYFTOTI");
    assert_ne!(text(&body, "DNSName"), address.to_string());
    create_lb(&server, "zeta", &subnets).await;

    // Describe by name, by ARN, with paging.
    let body = ok(
        &server,
        "DescribeLoadBalancers",
        &[("Names.member.1", "tcp")],
    )
    .await;
    assert_eq!(text(&body, "LoadBalancerArn"), nlb);
    let body = ok(
        &server,
        "DescribeLoadBalancers",
        &[("LoadBalancerArns.member.1", &arn)],
    )
    .await;
    assert_eq!(texts(&body, "LoadBalancerName"), vec!["web"]);
    let message = fails(
        &server,
        "DescribeLoadBalancers",
        &[("Names.member.1", "nope")],
        "LoadBalancerNotFound",
    )
    .await;
    assert!(message.contains("nope"), "{message}");
    let first = ok(&server, "DescribeLoadBalancers", &[("PageSize", "2")]).await;
    assert_eq!(texts(&first, "LoadBalancerName"), vec!["tcp", "web"]);
    let marker = text(&first, "NextMarker");
    assert!(!marker.is_empty());
    let second = ok(
        &server,
        "DescribeLoadBalancers",
        &[("PageSize", "2"), ("Marker", &marker)],
    )
    .await;
    assert_eq!(texts(&second, "LoadBalancerName"), vec!["zeta"]);
    assert!(text(&second, "NextMarker").is_empty());
    fails(
        &server,
        "DescribeLoadBalancers",
        &[("PageSize", "401")],
        "ValidationError",
    )
    .await;

    // Attributes.
    let body = ok(
        &server,
        "DescribeLoadBalancerAttributes",
        &[("LoadBalancerArn", &arn)],
    )
    .await;
    let keys = texts(&body, "Key");
    let values = texts(&body, "Value");
    let idle = keys
        .iter()
        .position(|k| k == "idle_timeout.timeout_seconds")
        .unwrap();
    assert_eq!(values[idle], "60");
    let body = ok(
        &server,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &arn),
            ("Attributes.member.1.Key", "idle_timeout.timeout_seconds"),
            ("Attributes.member.1.Value", "120"),
            ("Attributes.member.2.Key", "deletion_protection.enabled"),
            ("Attributes.member.2.Value", "true"),
        ],
    )
    .await;
    assert!(
        body.contains("<Key>idle_timeout.timeout_seconds</Key><Value>120</Value>"),
        "{body}"
    );
    fails(
        &server,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &arn),
            ("Attributes.member.1.Key", "idle_timeout.timeout_seconds"),
            ("Attributes.member.1.Value", "0"),
        ],
        "InvalidConfigurationRequest",
    )
    .await;
    fails(
        &server,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &arn),
            ("Attributes.member.1.Key", "bogus"),
            ("Attributes.member.1.Value", "1"),
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &nlb),
            ("Attributes.member.1.Key", "idle_timeout.timeout_seconds"),
            ("Attributes.member.1.Value", "30"),
        ],
        "ValidationError",
    )
    .await;

    // Deletion protection, then deletion (idempotent).
    fails(
        &server,
        "DeleteLoadBalancer",
        &[("LoadBalancerArn", &arn)],
        "OperationNotPermitted",
    )
    .await;
    ok(
        &server,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &arn),
            ("Attributes.member.1.Key", "deletion_protection.enabled"),
            ("Attributes.member.1.Value", "false"),
        ],
    )
    .await;
    ok(&server, "DeleteLoadBalancer", &[("LoadBalancerArn", &arn)]).await;
    ok(&server, "DeleteLoadBalancer", &[("LoadBalancerArn", &arn)]).await;
    fails(
        &server,
        "DescribeLoadBalancers",
        &[("LoadBalancerArns.member.1", &arn)],
        "LoadBalancerNotFound",
    )
    .await;
    fails(
        &server,
        "DeleteLoadBalancer",
        &[("LoadBalancerArn", "not-an-arn")],
        "ValidationError",
    )
    .await;
    fails(&server, "UnknownThing", &[], "InvalidAction").await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn target_groups_listeners_rules_and_tags() {
    let server = support::start().await;
    let (vpc, subnets) = default_network(&server).await;
    let lb = create_lb(&server, "app", &subnets).await;

    // Target groups with AWS's protocol-dependent defaults.
    let body = ok(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "web"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", &vpc),
            ("TargetType", "ip"),
        ],
    )
    .await;
    let web = text(&body, "TargetGroupArn");
    assert!(web.contains(":targetgroup/web/"), "{web}");
    assert_eq!(text(&body, "HealthCheckProtocol"), "HTTP");
    assert_eq!(text(&body, "HealthCheckPort"), "traffic-port");
    assert_eq!(text(&body, "HealthCheckPath"), "/");
    assert_eq!(text(&body, "HealthCheckIntervalSeconds"), "30");
    assert_eq!(text(&body, "HealthCheckTimeoutSeconds"), "5");
    assert_eq!(text(&body, "HealthyThresholdCount"), "5");
    assert_eq!(text(&body, "UnhealthyThresholdCount"), "2");
    assert_eq!(text(&body, "HttpCode"), "200");
    assert_eq!(text(&body, "ProtocolVersion"), "HTTP1");
    assert_eq!(text(&body, "TargetType"), "ip");
    let body = ok(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "tcp"),
            ("Protocol", "TCP"),
            ("Port", "5432"),
            ("VpcId", &vpc),
        ],
    )
    .await;
    let tcp = text(&body, "TargetGroupArn");
    assert_eq!(text(&body, "HealthCheckProtocol"), "TCP");
    assert_eq!(text(&body, "HealthCheckTimeoutSeconds"), "10");
    assert!(text(&body, "HealthCheckPath").is_empty());
    assert_eq!(text(&body, "TargetType"), "instance");
    let api = create_tg(&server, "api", "HTTP", &vpc, "ip").await;
    // Groups that speak TLS to their targets: an HTTPS group checks over HTTPS by default, a
    // TLS group with a TCP connect; neither may be named by a listener of the other kind.
    let secure = create_tg(&server, "secure", "HTTPS", &vpc, "ip").await;
    let body = ok(
        &server,
        "DescribeTargetGroups",
        &[("TargetGroupArns.member.1", &secure)],
    )
    .await;
    assert_eq!(text(&body, "Protocol"), "HTTPS");
    assert_eq!(text(&body, "HealthCheckProtocol"), "HTTPS");
    assert_eq!(text(&body, "HealthCheckPath"), "/");
    assert_eq!(text(&body, "ProtocolVersion"), "HTTP1");
    let body = ok(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "tls"),
            ("Protocol", "TLS"),
            ("Port", "443"),
            ("VpcId", &vpc),
        ],
    )
    .await;
    let tls = text(&body, "TargetGroupArn");
    assert_eq!(text(&body, "HealthCheckProtocol"), "TCP");
    for group in [&tls, &tcp] {
        fails(
            &server,
            "CreateListener",
            &[
                ("LoadBalancerArn", &lb),
                ("Protocol", "HTTP"),
                ("Port", "8443"),
                ("DefaultActions.member.1.Type", "forward"),
                ("DefaultActions.member.1.TargetGroupArn", group),
            ],
            "IncompatibleProtocols",
        )
        .await;
    }
    for group in [&secure, &tls] {
        ok(&server, "DeleteTargetGroup", &[("TargetGroupArn", group)]).await;
    }
    fails(
        &server,
        "CreateTargetGroup",
        &[("Name", "x"), ("Protocol", "HTTP"), ("Port", "80")],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "x"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", "vpc-00000000000000000"),
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "x"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", &vpc),
            ("TargetType", "lambda"),
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "x"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("VpcId", &vpc),
            ("HealthCheckTimeoutSeconds", "30"),
        ],
        "InvalidConfigurationRequest",
    )
    .await;
    fails(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "web"),
            ("Protocol", "HTTP"),
            ("Port", "8080"),
            ("VpcId", &vpc),
            ("TargetType", "ip"),
        ],
        "DuplicateTargetGroupName",
    )
    .await;
    let body = ok(
        &server,
        "ModifyTargetGroup",
        &[
            ("TargetGroupArn", &web),
            ("HealthCheckPath", "/health"),
            ("Matcher.HttpCode", "200-299"),
            ("HealthCheckIntervalSeconds", "10"),
        ],
    )
    .await;
    assert_eq!(text(&body, "HealthCheckPath"), "/health");
    assert_eq!(text(&body, "HttpCode"), "200-299");
    assert_eq!(text(&body, "HealthCheckIntervalSeconds"), "10");
    fails(
        &server,
        "ModifyTargetGroup",
        &[("TargetGroupArn", &web), ("HealthyThresholdCount", "11")],
        "ValidationError",
    )
    .await;

    // Target group attributes.
    let body = ok(
        &server,
        "DescribeTargetGroupAttributes",
        &[("TargetGroupArn", &web)],
    )
    .await;
    assert!(
        body.contains("<Key>deregistration_delay.timeout_seconds</Key><Value>300</Value>"),
        "{body}"
    );
    assert!(
        body.contains("<Key>stickiness.type</Key><Value>lb_cookie</Value>"),
        "{body}"
    );
    assert!(
        body.contains("<Key>load_balancing.algorithm.type</Key><Value>round_robin</Value>"),
        "{body}"
    );
    let body = ok(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &web),
            ("Attributes.member.1.Key", "slow_start.duration_seconds"),
            ("Attributes.member.1.Value", "30"),
        ],
    )
    .await;
    assert!(
        body.contains("<Key>slow_start.duration_seconds</Key><Value>30</Value>"),
        "{body}"
    );
    let body = ok(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &web),
            ("Attributes.member.1.Key", "load_balancing.algorithm.type"),
            ("Attributes.member.1.Value", "least_outstanding_requests"),
            ("Attributes.member.2.Key", "slow_start.duration_seconds"),
            ("Attributes.member.2.Value", "0"),
        ],
    )
    .await;
    assert!(
        body.contains("<Value>least_outstanding_requests</Value>"),
        "{body}"
    );
    for (key, value) in [
        ("deregistration_delay.timeout_seconds", "3601"),
        ("slow_start.duration_seconds", "10"),
        ("stickiness.type", "source_ip"),
    ] {
        fails(
            &server,
            "ModifyTargetGroupAttributes",
            &[
                ("TargetGroupArn", &web),
                ("Attributes.member.1.Key", key),
                ("Attributes.member.1.Value", value),
            ],
            "InvalidConfigurationRequest",
        )
        .await;
    }
    // Application-based stickiness needs a cookie name, and not one of the load balancer's.
    let app_cookie = |name: &'static str| {
        [
            ("TargetGroupArn", web.clone()),
            ("Attributes.member.1.Key", "stickiness.enabled".into()),
            ("Attributes.member.1.Value", "true".into()),
            ("Attributes.member.2.Key", "stickiness.type".into()),
            ("Attributes.member.2.Value", "app_cookie".into()),
            (
                "Attributes.member.3.Key",
                "stickiness.app_cookie.cookie_name".into(),
            ),
            ("Attributes.member.3.Value", name.into()),
        ]
    };
    for name in ["", "AWSALBAPP-1", "two words"] {
        let pairs = app_cookie(name);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = fails(
            &server,
            "ModifyTargetGroupAttributes",
            &pairs,
            "InvalidConfigurationRequest",
        )
        .await;
        assert!(refused.contains("cookie_name"), "{refused}");
    }
    let pairs = app_cookie("SESSION");
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = ok(&server, "ModifyTargetGroupAttributes", &pairs).await;
    assert!(
        body.contains("<Key>stickiness.type</Key><Value>app_cookie</Value>"),
        "{body}"
    );
    ok(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &web),
            ("Attributes.member.1.Key", "stickiness.enabled"),
            ("Attributes.member.1.Value", "false"),
        ],
    )
    .await;
    // As AWS: slow start does not combine with least outstanding requests (set above).
    fails(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &web),
            ("Attributes.member.1.Key", "slow_start.duration_seconds"),
            ("Attributes.member.1.Value", "30"),
        ],
        "InvalidConfigurationRequest",
    )
    .await;

    // Listeners.
    let body = ok(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &web),
        ],
    )
    .await;
    let listener = text(&body, "ListenerArn");
    assert!(listener.contains(":listener/app/app/"), "{listener}");
    assert_eq!(text(&body, "Port"), "80");
    // Both forms of a single-group forward, as AWS describes them.
    assert!(body.contains(&format!("<TargetGroupArn>{web}</TargetGroupArn><ForwardConfig><TargetGroups><member><TargetGroupArn>{web}</TargetGroupArn><Weight>1</Weight></member></TargetGroups><TargetGroupStickinessConfig><Enabled>false</Enabled></TargetGroupStickinessConfig></ForwardConfig>")), "{body}");
    fails(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &api),
        ],
        "DuplicateListener",
    )
    .await;
    fails(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "TCP"),
            ("Port", "81"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &web),
        ],
        "ValidationError",
    )
    .await;
    let message = fails(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", "81"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tcp),
        ],
        "IncompatibleProtocols",
    )
    .await;
    assert!(message.contains("'TCP'"), "{message}");
    fails(
        &server,
        "CreateListener",
        &[("LoadBalancerArn", &lb), ("Protocol", "HTTP"), ("Port", "81"), ("DefaultActions.member.1.Type", "forward"), ("DefaultActions.member.1.TargetGroupArn", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/none/0000000000000000")],
        "TargetGroupNotFound",
    )
    .await;
    let body = ok(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", "8080"),
            ("DefaultActions.member.1.Type", "fixed-response"),
            (
                "DefaultActions.member.1.FixedResponseConfig.StatusCode",
                "404",
            ),
            (
                "DefaultActions.member.1.FixedResponseConfig.ContentType",
                "text/plain",
            ),
            (
                "DefaultActions.member.1.FixedResponseConfig.MessageBody",
                "nothing here",
            ),
        ],
    )
    .await;
    let fixed = text(&body, "ListenerArn");
    let body = ok(&server, "DescribeListeners", &[("LoadBalancerArn", &lb)]).await;
    assert_eq!(
        texts(&body, "ListenerArn"),
        vec![listener.clone(), fixed.clone()]
    );
    let body = ok(
        &server,
        "ModifyListener",
        &[("ListenerArn", &fixed), ("Port", "8081")],
    )
    .await;
    assert_eq!(text(&body, "Port"), "8081");
    fails(
        &server,
        "ModifyListener",
        &[("ListenerArn", &fixed), ("Port", "80")],
        "DuplicateListener",
    )
    .await;
    fails(&server, "DescribeListeners", &[], "ValidationError").await;

    // Rules: evaluation order, AWS's normalised conditions, priorities.
    let body = ok(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "10"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/api/*"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &api),
        ],
    )
    .await;
    let api_rule = text(&body, "RuleArn");
    assert!(api_rule.contains(":listener-rule/app/app/"), "{api_rule}");
    assert!(body.contains("<Conditions><member><Field>path-pattern</Field><Values><member>/api/*</member></Values><PathPatternConfig><Values><member>/api/*</member></Values></PathPatternConfig></member></Conditions>"), "{body}");
    let body = ok(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "5"),
            ("Conditions.member.1.Field", "host-header"),
            (
                "Conditions.member.1.HostHeaderConfig.Values.member.1",
                "old.example.com",
            ),
            ("Conditions.member.2.Field", "http-request-method"),
            (
                "Conditions.member.2.HttpRequestMethodConfig.Values.member.1",
                "GET",
            ),
            ("Actions.member.1.Type", "redirect"),
            ("Actions.member.1.RedirectConfig.Host", "new.example.com"),
            ("Actions.member.1.RedirectConfig.StatusCode", "HTTP_301"),
        ],
    )
    .await;
    let redirect_rule = text(&body, "RuleArn");
    assert!(body.contains("<RedirectConfig><Protocol>#{protocol}</Protocol><Port>#{port}</Port><Host>new.example.com</Host><Path>/#{path}</Path><Query>#{query}</Query><StatusCode>HTTP_301</StatusCode></RedirectConfig>"), "{body}");
    let message = fails(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "10"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/x"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &api),
        ],
        "PriorityInUse",
    )
    .await;
    assert_eq!(message, "Priority '10' is currently in use");
    fails(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "11"),
            ("Conditions.member.1.Field", "cookie"),
            ("Conditions.member.1.Values.member.1", "x"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &api),
        ],
        "ValidationError",
    )
    .await;
    fails(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "50001"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/x"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &api),
        ],
        "ValidationError",
    )
    .await;
    let body = ok(&server, "DescribeRules", &[("ListenerArn", &listener)]).await;
    assert_eq!(texts(&body, "Priority"), vec!["5", "10", "default"]);
    assert_eq!(texts(&body, "IsDefault"), vec!["false", "false", "true"]);
    let default_rule = texts(&body, "RuleArn")[2].clone();
    fails(
        &server,
        "DeleteRule",
        &[("RuleArn", &default_rule)],
        "OperationNotPermitted",
    )
    .await;
    let body = ok(
        &server,
        "SetRulePriorities",
        &[
            ("RulePriorities.member.1.RuleArn", &api_rule),
            ("RulePriorities.member.1.Priority", "1"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "Priority"), vec!["1"]);
    fails(
        &server,
        "SetRulePriorities",
        &[
            ("RulePriorities.member.1.RuleArn", &api_rule),
            ("RulePriorities.member.1.Priority", "5"),
        ],
        "PriorityInUse",
    )
    .await;
    let body = ok(&server, "DescribeRules", &[("ListenerArn", &listener)]).await;
    assert_eq!(texts(&body, "Priority"), vec!["1", "5", "default"]);
    let body = ok(
        &server,
        "ModifyRule",
        &[
            ("RuleArn", &redirect_rule),
            ("Conditions.member.1.Field", "path-pattern"),
            (
                "Conditions.member.1.PathPatternConfig.Values.member.1",
                "/old/*",
            ),
        ],
    )
    .await;
    assert!(body.contains("/old/*"), "{body}");
    let body = ok(
        &server,
        "DescribeRules",
        &[("RuleArns.member.1", &default_rule)],
    )
    .await;
    assert_eq!(text(&body, "IsDefault"), "true");

    // The groups know their load balancer; a group in use cannot be deleted or attached to
    // another load balancer.
    let body = ok(&server, "DescribeTargetGroups", &[("LoadBalancerArn", &lb)]).await;
    let mut names = texts(&body, "TargetGroupName");
    names.sort();
    assert_eq!(names, vec!["api", "web"]);
    assert_eq!(
        text(&body, "LoadBalancerArns"),
        format!("<member>{lb}</member>")
    );
    let body = ok(
        &server,
        "DescribeTargetGroups",
        &[("Names.member.1", "tcp")],
    )
    .await;
    assert_eq!(text(&body, "LoadBalancerArns"), "");
    fails(
        &server,
        "DescribeTargetGroups",
        &[("Names.member.1", "none")],
        "TargetGroupNotFound",
    )
    .await;
    fails(
        &server,
        "DeleteTargetGroup",
        &[("TargetGroupArn", &web)],
        "ResourceInUse",
    )
    .await;
    let other = create_lb(&server, "other", &subnets).await;
    fails(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &other),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &web),
        ],
        "TargetGroupAssociationLimit",
    )
    .await;

    // Tags on every kind of resource.
    ok(
        &server,
        "AddTags",
        &[
            ("ResourceArns.member.1", &lb),
            ("ResourceArns.member.2", &web),
            ("ResourceArns.member.3", &listener),
            ("ResourceArns.member.4", &api_rule),
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "blue"),
        ],
    )
    .await;
    let body = ok(
        &server,
        "DescribeTags",
        &[
            ("ResourceArns.member.1", &web),
            ("ResourceArns.member.2", &api_rule),
        ],
    )
    .await;
    assert_eq!(
        texts(&body, "ResourceArn"),
        vec![web.clone(), api_rule.clone()]
    );
    assert_eq!(texts(&body, "Key"), vec!["team", "team"]);
    ok(
        &server,
        "RemoveTags",
        &[
            ("ResourceArns.member.1", &web),
            ("TagKeys.member.1", "team"),
        ],
    )
    .await;
    let body = ok(
        &server,
        "DescribeTags",
        &[
            ("ResourceArns.member.1", &web),
            ("ResourceArns.member.2", &lb),
        ],
    )
    .await;
    assert_eq!(texts(&body, "Key"), vec!["team"]);
    fails(
        &server,
        "AddTags",
        &[
            ("ResourceArns.member.1", &web),
            ("Tags.member.1.Key", "a"),
            ("Tags.member.2.Key", "a"),
        ],
        "DuplicateTagKeys",
    )
    .await;
    fails(
        &server,
        "DescribeTags",
        &[("ResourceArns.member.1", "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/none/0000000000000000")],
        "LoadBalancerNotFound",
    )
    .await;

    // Deleting a rule, a listener, the load balancer (with what is left), then the groups.
    ok(&server, "DeleteRule", &[("RuleArn", &redirect_rule)]).await;
    fails(
        &server,
        "DeleteRule",
        &[("RuleArn", &redirect_rule)],
        "RuleNotFound",
    )
    .await;
    ok(&server, "DeleteListener", &[("ListenerArn", &fixed)]).await;
    fails(
        &server,
        "DescribeListeners",
        &[("ListenerArns.member.1", &fixed)],
        "ListenerNotFound",
    )
    .await;
    ok(&server, "DeleteLoadBalancer", &[("LoadBalancerArn", &lb)]).await;
    fails(
        &server,
        "DescribeRules",
        &[("RuleArns.member.1", &api_rule)],
        "RuleNotFound",
    )
    .await;
    ok(&server, "DeleteTargetGroup", &[("TargetGroupArn", &web)]).await;
    ok(&server, "DeleteTargetGroup", &[("TargetGroupArn", &web)]).await;
    let body = ok(&server, "DescribeTargetGroups", &[]).await;
    let mut names = texts(&body, "TargetGroupName");
    names.sort();
    assert_eq!(names, vec!["api", "tcp"]);
    server.server.shutdown().await;
}

#[tokio::test]
async fn targets_health_and_the_load_balancer_protocol() {
    let server = support::start().await;
    let (vpc, subnets) = default_network(&server).await;
    let lb = create_lb(&server, "front", &subnets).await;
    let web = create_tg(&server, "web", "HTTP", &vpc, "ip").await;
    let canary = create_tg(&server, "canary", "HTTP", &vpc, "ip").await;

    // Registered but not used by any load balancer: unused.
    ok(
        &server,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &web),
            ("Targets.member.1.Id", "10.0.0.1"),
            ("Targets.member.2.Id", "10.0.0.2"),
            ("Targets.member.2.Port", "8080"),
        ],
    )
    .await;
    let body = ok(&server, "DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    assert_eq!(texts(&body, "State"), vec!["unused", "unused"]);
    assert_eq!(
        texts(&body, "Reason"),
        vec!["Target.NotInUse", "Target.NotInUse"]
    );
    assert_eq!(texts(&body, "HealthCheckPort"), vec!["80", "8080"]);
    fails(
        &server,
        "RegisterTargets",
        &[("TargetGroupArn", &web), ("Targets.member.1.Id", "i-0123")],
        "InvalidTarget",
    )
    .await;
    fails(
        &server,
        "DeregisterTargets",
        &[
            ("TargetGroupArn", &web),
            ("Targets.member.1.Id", "10.9.9.9"),
        ],
        "InvalidTarget",
    )
    .await;

    let listener = create_listener(&server, &lb, "80", &web).await;
    let body = ok(&server, "DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    assert_eq!(texts(&body, "State"), vec!["initial", "initial"]);
    assert_eq!(
        texts(&body, "Reason"),
        vec!["Elb.RegistrationInProgress", "Elb.RegistrationInProgress"]
    );

    // A weighted forward rule and an instance target group.
    ok(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "20"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/b/*"),
            ("Actions.member.1.Type", "forward"),
            (
                "Actions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn",
                &web,
            ),
            (
                "Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight",
                "90",
            ),
            (
                "Actions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn",
                &canary,
            ),
            (
                "Actions.member.1.ForwardConfig.TargetGroups.member.2.Weight",
                "10",
            ),
            (
                "Actions.member.1.ForwardConfig.TargetGroupStickinessConfig.Enabled",
                "true",
            ),
            (
                "Actions.member.1.ForwardConfig.TargetGroupStickinessConfig.DurationSeconds",
                "60",
            ),
        ],
    )
    .await;
    ok(
        &server,
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "3"),
            ("Conditions.member.1.Field", "http-header"),
            (
                "Conditions.member.1.HttpHeaderConfig.HttpHeaderName",
                "X-Canary",
            ),
            (
                "Conditions.member.1.HttpHeaderConfig.Values.member.1",
                "yes",
            ),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &canary),
        ],
    )
    .await;
    server
        .ecs
        .create_cluster()
        .cluster_name("default")
        .send()
        .await
        .unwrap();
    support::register_instance(&server, "default").await;
    let instances = create_tg(&server, "hosts", "HTTP", &vpc, "instance").await;
    ok(
        &server,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &instances),
            ("Targets.member.1.Id", "i-0123456789abcdef0"),
            ("Targets.member.1.Port", "32768"),
        ],
    )
    .await;
    // An instance whose agent reported its host address is reached there.
    let identity = json!({"instanceId": "i-0aaaaaaaaaaaaaaaa", "availabilityZone": "us-east-1b",
                          "instanceType": "wharf.local", "privateIp": "10.0.5.5"});
    server
        .ecs
        .register_container_instance()
        .cluster("default")
        .instance_identity_document(identity.to_string())
        .total_resources(support::resource_integer("CPU", 1024))
        .total_resources(support::resource_integer("MEMORY", 1024))
        .send()
        .await
        .unwrap();
    ok(
        &server,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &instances),
            ("Targets.member.1.Id", "i-0aaaaaaaaaaaaaaaa"),
        ],
    )
    .await;
    let message = fails(
        &server,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &instances),
            ("Targets.member.1.Id", "i-00000000000000001"),
        ],
        "InvalidTarget",
    )
    .await;
    assert!(message.contains("i-00000000000000001"), "{message}");

    // The snapshot: rules by priority with the default last, weights, resolved addresses.
    let snapshot = routes(&server).await;
    assert!(snapshot.revision > 0 && snapshot.now_ms > 0);
    assert_eq!(snapshot.load_balancers.len(), 1);
    let front = &snapshot.load_balancers[0];
    assert_eq!(front.kind, model::elb::LoadBalancerKind::Application);
    assert!(front.address.starts_with("127."), "{front:?}");
    assert_eq!(
        front.dimension,
        format!("app/front/{}", lb.rsplit('/').next().unwrap())
    );
    assert_eq!(front.idle_timeout_seconds, 60);
    let rules = &front.listeners[0].rules;
    assert_eq!(
        rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
        vec![Some(3), Some(20), None]
    );
    assert!(rules[2].conditions.is_empty());
    assert_eq!(
        rules[0].conditions,
        vec![model::elb::RouteCondition::HttpHeader {
            name: "X-Canary".into(),
            values: vec!["yes".into()]
        }]
    );
    match &rules[1].action {
        model::elb::RouteAction::Forward {
            target_groups,
            stickiness_seconds,
        } => {
            assert_eq!(
                target_groups
                    .iter()
                    .map(|t| (t.arn.as_str(), t.weight))
                    .collect::<Vec<_>>(),
                vec![(web.as_str(), 90), (canary.as_str(), 10)]
            );
            assert_eq!(*stickiness_seconds, Some(60));
        }
        other => panic!("{other:?}"),
    }
    let group = |snapshot: &model::elb::RouteSnapshot, arn: &str| {
        snapshot
            .target_groups
            .iter()
            .find(|g| g.arn == arn)
            .cloned()
            .expect("group in snapshot")
    };
    let hosts = group(&snapshot, &instances);
    assert_eq!(
        hosts
            .targets
            .iter()
            .map(|t| t.address.as_str())
            .collect::<Vec<_>>(),
        vec!["127.0.0.1:32768", "10.0.5.5:80"]
    );
    let web_routes = group(&snapshot, &web);
    assert_eq!(
        web_routes
            .targets
            .iter()
            .map(|t| t.address.as_str())
            .collect::<Vec<_>>(),
        vec!["10.0.0.1:80", "10.0.0.2:8080"]
    );
    assert_eq!(web_routes.health_check.path.as_deref(), Some("/"));
    assert_eq!(web_routes.deregistration_delay_seconds, 300);
    assert_eq!(web_routes.algorithm, "round_robin");

    // Health reports: states, reasons, and the load balancer turning active.
    let report = |states: Value| {
        json!({
            "node": "lb-1",
            "targetGroups": [{"arn": web, "targets": states}],
            "activeLoadBalancers": [lb],
        })
    };
    let before = server.store.revision().await.unwrap();
    lb_call(
        &server,
        "ReportTargetHealth",
        report(json!([
            {"id": "10.0.0.1", "port": 80, "state": "healthy"},
            {"id": "10.0.0.2", "port": 8080, "state": "unhealthy", "reason": "Target.ResponseCodeMismatch", "description": "Health checks failed with these codes: [502]"},
            {"id": "10.0.0.3", "port": 80, "state": "healthy"},
        ])),
    )
    .await;
    let body = ok(&server, "DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    assert_eq!(texts(&body, "State"), vec!["healthy", "unhealthy"]);
    assert_eq!(texts(&body, "Reason"), vec!["Target.ResponseCodeMismatch"]);
    assert_eq!(
        texts(&body, "Description"),
        vec!["Health checks failed with these codes: [502]"]
    );
    let body = ok(
        &server,
        "DescribeLoadBalancers",
        &[("LoadBalancerArns.member.1", &lb)],
    )
    .await;
    assert_eq!(text(&body, "Code"), "active");
    // The same report again writes nothing.
    let after = server.store.revision().await.unwrap();
    assert!(after > before);
    lb_call(
        &server,
        "ReportTargetHealth",
        report(json!([
            {"id": "10.0.0.1", "port": 80, "state": "healthy"},
            {"id": "10.0.0.2", "port": 8080, "state": "unhealthy", "reason": "Target.ResponseCodeMismatch", "description": "Health checks failed with these codes: [502]"},
        ])),
    )
    .await;
    assert_eq!(server.store.revision().await.unwrap(), after);
    // Snapshots name each registration; a report about an earlier one is ignored.
    let registered_at = routes(&server)
        .await
        .target_groups
        .iter()
        .flat_map(|g| &g.targets)
        .find(|t| t.id == "10.0.0.1" && t.port == 80)
        .and_then(|t| t.registered_at_ms)
        .expect("the snapshot names the registration");
    lb_call(
        &server,
        "ReportTargetHealth",
        report(json!([
            {"id": "10.0.0.1", "port": 80, "state": "unhealthy", "registeredAtMs": registered_at - 1, "reason": "Target.Timeout"},
        ])),
    )
    .await;
    assert_eq!(server.store.revision().await.unwrap(), after);
    let body = ok(&server, "DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    assert_eq!(texts(&body, "State"), vec!["healthy", "unhealthy"]);

    // A long poll wakes on a route change, not on health reports.
    let since = routes(&server).await.revision;
    let poll = {
        let endpoint_server = &server;
        lb_call(
            endpoint_server,
            "GetRoutes",
            json!({"sinceRevision": since, "waitSeconds": 20}),
        )
    };
    let change = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ok(
            &server,
            "DeregisterTargets",
            &[
                ("TargetGroupArn", &web),
                ("Targets.member.1.Id", "10.0.0.2"),
                ("Targets.member.1.Port", "8080"),
            ],
        )
        .await;
    };
    let started = std::time::Instant::now();
    let (answer, ()) = tokio::join!(poll, change);
    let snapshot: model::elb::RouteSnapshot = serde_json::from_value(answer).unwrap();
    assert!(snapshot.revision > since);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the poll waited for its deadline"
    );
    let draining = group(&snapshot, &web)
        .targets
        .into_iter()
        .find(|t| t.port == 8080)
        .expect("a draining target stays in the snapshot");
    let until = draining.draining_until_ms.expect("draining deadline");
    assert!(
        until > snapshot.now_ms && until <= snapshot.now_ms + 300_000,
        "{until}"
    );
    let body = ok(
        &server,
        "DescribeTargetHealth",
        &[
            ("TargetGroupArn", &web),
            ("Targets.member.1.Id", "10.0.0.2"),
            ("Targets.member.1.Port", "8080"),
            ("Targets.member.2.Id", "10.0.0.9"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "State"), vec!["draining", "unused"]);
    assert_eq!(
        texts(&body, "Reason"),
        vec!["Target.DeregistrationInProgress", "Target.NotRegistered"]
    );

    // With no delay a deregistered target is gone at once.
    ok(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &web),
            (
                "Attributes.member.1.Key",
                "deregistration_delay.timeout_seconds",
            ),
            ("Attributes.member.1.Value", "0"),
        ],
    )
    .await;
    ok(
        &server,
        "DeregisterTargets",
        &[
            ("TargetGroupArn", &web),
            ("Targets.member.1.Id", "10.0.0.1"),
        ],
    )
    .await;
    let body = ok(&server, "DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    assert_eq!(texts(&body, "State"), Vec::<String>::new());
    assert!(group(&routes(&server).await, &web).targets.is_empty());

    // Failures are reported for load balancers a node cannot serve.
    let net = {
        let body = ok(
            &server,
            "CreateLoadBalancer",
            &[
                ("Name", "net"),
                ("Type", "network"),
                ("Subnets.member.1", &subnets[0]),
            ],
        )
        .await;
        text(&body, "LoadBalancerArn")
    };
    // Its TCP flows get AWS's 350 s idle timeout.
    let snapshot = routes(&server).await;
    let net_routes = snapshot
        .load_balancers
        .iter()
        .find(|l| l.arn == net)
        .expect("the NLB is in the routes");
    assert_eq!(net_routes.idle_timeout_seconds, 350);
    lb_call(
        &server,
        "ReportTargetHealth",
        json!({"node": "lb-1", "targetGroups": [], "failedLoadBalancers": [{"arn": net, "reason": "address 127.200.0.1:80 in use"}]}),
    )
    .await;
    let body = ok(
        &server,
        "DescribeLoadBalancers",
        &[("Names.member.1", "net")],
    )
    .await;
    assert_eq!(text(&body, "Code"), "failed");
    assert_eq!(text(&body, "Reason"), "address 127.200.0.1:80 in use");

    // Request metrics become CloudWatch metrics.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let minute = now_ms / 60_000 * 60_000;
    let dimension_value = front.dimension.clone();
    lb_call(
        &server,
        "ReportRequestMetrics",
        json!({"node": "lb-1", "datums": [{
            "namespace": "AWS/ApplicationELB", "metricName": "RequestCount",
            "dimensions": [["LoadBalancer", dimension_value]], "timestampMs": minute,
            "unit": "Count", "sampleCount": 3.0, "sum": 42.0, "minimum": 10.0, "maximum": 16.0
        }]}),
    )
    .await;
    let cloudwatch = support::cloudwatch_client(&server).await;
    let stats = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/ApplicationELB")
        .metric_name("RequestCount")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("LoadBalancer")
                .value(&front.dimension)
                .build(),
        )
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
            minute - 60_000,
        ))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
            minute + 60_000,
        ))
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .unwrap();
    let sums: Vec<f64> = stats.datapoints().iter().filter_map(|d| d.sum()).collect();
    assert_eq!(sums, vec![42.0]);
    server.server.shutdown().await;
}

/// `n` tags as Query parameters (`Tags.member.N.Key`/`Value`).
fn tag_params(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .flat_map(|i| {
            [
                (format!("Tags.member.{i}.Key"), format!("k{i}")),
                (format!("Tags.member.{i}.Value"), "v".to_string()),
            ]
        })
        .collect()
}

fn borrowed(params: &[(String, String)]) -> Vec<(&str, &str)> {
    params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn health_checks_tag_quotas_group_claims_and_rule_paging() {
    let server = support::start().await;
    let (vpc, subnets) = default_network(&server).await;
    let one = create_lb(&server, "one", &subnets).await;
    let two = create_lb(&server, "two", &subnets).await;
    let shared = create_tg(&server, "shared", "HTTP", &vpc, "ip").await;

    // Health checks of instance and ip groups cannot be turned off (the model's
    // HealthCheckEnabled), neither on create nor on modify.
    for kind in ["instance", "ip"] {
        fails(
            &server,
            "CreateTargetGroup",
            &[
                ("Name", &format!("off-{kind}")),
                ("Protocol", "HTTP"),
                ("Port", "80"),
                ("VpcId", &vpc),
                ("TargetType", kind),
                ("HealthCheckEnabled", "false"),
            ],
            "InvalidConfigurationRequest",
        )
        .await;
    }
    fails(
        &server,
        "ModifyTargetGroup",
        &[("TargetGroupArn", &shared), ("HealthCheckEnabled", "false")],
        "InvalidConfigurationRequest",
    )
    .await;
    let body = ok(
        &server,
        "DescribeTargetGroups",
        &[("TargetGroupArns.member.1", &shared)],
    )
    .await;
    assert_eq!(text(&body, "HealthCheckEnabled"), "true");
    // A network group's HTTPS check waits 10 s by default, and its matcher may go up to 599.
    let body = ok(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "tls"),
            ("Protocol", "TCP"),
            ("Port", "443"),
            ("VpcId", &vpc),
            ("TargetType", "ip"),
            ("HealthCheckProtocol", "HTTPS"),
            ("Matcher.HttpCode", "200-599"),
        ],
    )
    .await;
    assert_eq!(text(&body, "HealthCheckTimeoutSeconds"), "10");
    assert_eq!(text(&body, "HttpCode"), "200-599");

    // The 50-tag quota holds on CreateListener and CreateRule too.
    let too_many = tag_params(51);
    let mut params = vec![
        ("LoadBalancerArn", one.as_str()),
        ("Protocol", "HTTP"),
        ("Port", "80"),
        ("DefaultActions.member.1.Type", "forward"),
        ("DefaultActions.member.1.TargetGroupArn", shared.as_str()),
    ];
    params.extend(borrowed(&too_many));
    fails(&server, "CreateListener", &params, "TooManyTags").await;

    // A listener claims the groups it forwards to: their record is re-put byte for byte
    // (so the ECS scheduler's compare-and-swap sees the same content) at a new revision.
    let key = model::elb::keys::target_group("shared");
    let before = server.store.get(&key).await.unwrap().unwrap();
    let first = create_listener(&server, &one, "80", &shared).await;
    let after = server.store.get(&key).await.unwrap().unwrap();
    assert_eq!(after.value, before.value);
    assert!(after.mod_revision > before.mod_revision);
    fails(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &two),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &shared),
        ],
        "TargetGroupAssociationLimit",
    )
    .await;
    fails(
        &server,
        "DeleteTargetGroup",
        &[("TargetGroupArn", &shared)],
        "ResourceInUse",
    )
    .await;

    let rule = |listener: String, priority: &'static str| {
        let server = &server;
        let shared = shared.clone();
        async move {
            let body = ok(
                server,
                "CreateRule",
                &[
                    ("ListenerArn", &listener),
                    ("Priority", priority),
                    ("Conditions.member.1.Field", "path-pattern"),
                    ("Conditions.member.1.Values.member.1", "/x/*"),
                    ("Actions.member.1.Type", "forward"),
                    ("Actions.member.1.TargetGroupArn", &shared),
                ],
            )
            .await;
            text(&body, "RuleArn")
        }
    };
    let mut params = vec![
        ("ListenerArn", first.as_str()),
        ("Priority", "9"),
        ("Conditions.member.1.Field", "path-pattern"),
        ("Conditions.member.1.Values.member.1", "/x/*"),
        ("Actions.member.1.Type", "forward"),
        ("Actions.member.1.TargetGroupArn", shared.as_str()),
    ];
    params.extend(borrowed(&too_many));
    fails(&server, "CreateRule", &params, "TooManyTags").await;

    // DescribeRules by ARN across listeners pages without losing rules whose priorities
    // repeat on the other listener.
    let second = create_listener(&server, &one, "81", &shared).await;
    let mut arns = Vec::new();
    for listener in [&second, &first] {
        arns.push(rule(listener.clone(), "2").await);
        arns.push(rule(listener.clone(), "1").await);
    }
    let body = ok(&server, "DescribeRules", &[("ListenerArn", &first)]).await;
    arns.push(texts(&body, "RuleArn")[2].clone());
    let body = ok(&server, "DescribeRules", &[("ListenerArn", &second)]).await;
    arns.push(texts(&body, "RuleArn")[2].clone());
    let keys: Vec<String> = (1..=arns.len())
        .map(|i| format!("RuleArns.member.{i}"))
        .collect();
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..10 {
        let mut params: Vec<(&str, &str)> = keys
            .iter()
            .zip(&arns)
            .map(|(k, a)| (k.as_str(), a.as_str()))
            .collect();
        params.push(("PageSize", "1"));
        if let Some(m) = &marker {
            params.push(("Marker", m));
        }
        let body = ok(&server, "DescribeRules", &params).await;
        seen.extend(texts(&body, "RuleArn"));
        marker = Some(text(&body, "NextMarker")).filter(|m| !m.is_empty());
        if marker.is_none() {
            break;
        }
    }
    let mut expected = arns.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "pages: {seen:?}");
    server.server.shutdown().await;
}

/// The value of attribute `key` in a Describe/ModifyListenerAttributes answer.
fn attribute(body: &str, key: &str) -> Option<String> {
    let keys = texts(body, "Key");
    let values = texts(body, "Value");
    keys.iter()
        .position(|k| k == key)
        .map(|i| values[i].clone())
}

#[tokio::test]
async fn listener_attributes_have_aws_defaults_and_the_tcp_idle_timeout_reaches_the_routes() {
    let server = support::start().await;
    let (vpc, subnets) = default_network(&server).await;
    // An ALB's HTTP listener: the response-header attributes with their defaults.
    let lb = create_lb(&server, "front", &subnets).await;
    let web = create_tg(&server, "web", "HTTP", &vpc, "ip").await;
    let http = create_listener(&server, &lb, "80", &web).await;
    let body = ok(
        &server,
        "DescribeListenerAttributes",
        &[("ListenerArn", &http)],
    )
    .await;
    assert_eq!(texts(&body, "Key").len(), 11, "{body}");
    assert_eq!(
        attribute(&body, "routing.http.response.server.enabled").as_deref(),
        Some("true")
    );
    assert_eq!(
        attribute(&body, "routing.http.response.x_frame_options.header_value").as_deref(),
        Some("")
    );
    assert_eq!(attribute(&body, "tcp.idle_timeout.seconds"), None);
    // Response headers are set and reach the routes; values outside a header's grammar are
    // refused and change nothing.
    let body = ok(
        &server,
        "ModifyListenerAttributes",
        &[
            ("ListenerArn", &http),
            (
                "Attributes.member.1.Key",
                "routing.http.response.server.enabled",
            ),
            ("Attributes.member.1.Value", "false"),
            (
                "Attributes.member.2.Key",
                "routing.http.response.x_frame_options.header_value",
            ),
            ("Attributes.member.2.Value", "DENY"),
            (
                "Attributes.member.3.Key",
                "routing.http.response.strict_transport_security.header_value",
            ),
            (
                "Attributes.member.3.Value",
                "max-age=31536000; includeSubDomains",
            ),
            (
                "Attributes.member.4.Key",
                "routing.http.response.access_control_allow_methods.header_value",
            ),
            ("Attributes.member.4.Value", "GET,POST, OPTIONS"),
        ],
    )
    .await;
    assert_eq!(
        attribute(&body, "routing.http.response.x_frame_options.header_value").as_deref(),
        Some("DENY")
    );
    let listener = routes(&server)
        .await
        .load_balancers
        .into_iter()
        .flat_map(|l| l.listeners)
        .find(|l| l.arn == http)
        .expect("the HTTP listener is in the routes");
    assert_eq!(
        listener.response_headers,
        model::elb::ResponseHeaderSettings {
            set: vec![
                (
                    "Strict-Transport-Security".into(),
                    "max-age=31536000; includeSubDomains".into()
                ),
                (
                    "Access-Control-Allow-Methods".into(),
                    "GET,POST, OPTIONS".into()
                ),
                ("X-Frame-Options".into(), "DENY".into()),
            ],
            server: false,
        }
    );
    for (key, bad) in [
        ("x_frame_options", "ALLOWALL"),
        ("x_frame_options", "DENY\r\nX-Injected: 1"),
        ("access_control_allow_credentials", "false"),
        ("access_control_allow_methods", "GET,FETCH"),
        ("access_control_allow_origin", "https://a.example.com/path"),
        ("access_control_max_age", "soon"),
        ("x_content_type_options", "sniff"),
    ] {
        let key = format!("routing.http.response.{key}.header_value");
        let message = fails(
            &server,
            "ModifyListenerAttributes",
            &[
                ("ListenerArn", &http),
                ("Attributes.member.1.Key", &key),
                ("Attributes.member.1.Value", bad),
            ],
            "InvalidConfigurationRequest",
        )
        .await;
        assert!(message.contains(&key), "{message}");
    }
    let body = ok(
        &server,
        "DescribeListenerAttributes",
        &[("ListenerArn", &http)],
    )
    .await;
    assert_eq!(
        attribute(&body, "routing.http.response.x_frame_options.header_value").as_deref(),
        Some("DENY")
    );
    // An empty value turns a header off again.
    ok(
        &server,
        "ModifyListenerAttributes",
        &[
            ("ListenerArn", &http),
            (
                "Attributes.member.1.Key",
                "routing.http.response.x_frame_options.header_value",
            ),
            ("Attributes.member.1.Value", ""),
        ],
    )
    .await;
    fails(
        &server,
        "ModifyListenerAttributes",
        &[
            ("ListenerArn", &http),
            ("Attributes.member.1.Key", "tcp.idle_timeout.seconds"),
            ("Attributes.member.1.Value", "120"),
        ],
        "ValidationError",
    )
    .await;

    // An NLB's TCP listener: the idle timeout, 350 s by default, 60-6000 when set.
    let net = {
        let body = ok(
            &server,
            "CreateLoadBalancer",
            &[
                ("Name", "net"),
                ("Type", "network"),
                ("Subnets.member.1", &subnets[0]),
            ],
        )
        .await;
        text(&body, "LoadBalancerArn")
    };
    let flows = create_tg(&server, "flows", "TCP", &vpc, "ip").await;
    let body = ok(
        &server,
        "CreateListener",
        &[
            ("LoadBalancerArn", &net),
            ("Protocol", "TCP"),
            ("Port", "5432"),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &flows),
        ],
    )
    .await;
    let tcp = text(&body, "ListenerArn");
    let body = ok(
        &server,
        "DescribeListenerAttributes",
        &[("ListenerArn", &tcp)],
    )
    .await;
    assert_eq!(texts(&body, "Key"), vec!["tcp.idle_timeout.seconds"]);
    assert_eq!(texts(&body, "Value"), vec!["350"]);
    for bad in ["59", "6001", "soon"] {
        fails(
            &server,
            "ModifyListenerAttributes",
            &[
                ("ListenerArn", &tcp),
                ("Attributes.member.1.Key", "tcp.idle_timeout.seconds"),
                ("Attributes.member.1.Value", bad),
            ],
            "InvalidConfigurationRequest",
        )
        .await;
    }
    let body = ok(
        &server,
        "ModifyListenerAttributes",
        &[
            ("ListenerArn", &tcp),
            ("Attributes.member.1.Key", "tcp.idle_timeout.seconds"),
            ("Attributes.member.1.Value", "120"),
        ],
    )
    .await;
    assert_eq!(texts(&body, "Value"), vec!["120"]);
    let body = ok(
        &server,
        "DescribeListenerAttributes",
        &[("ListenerArn", &tcp)],
    )
    .await;
    assert_eq!(texts(&body, "Value"), vec!["120"]);
    let snapshot = routes(&server).await;
    let listener = snapshot
        .load_balancers
        .iter()
        .flat_map(|l| &l.listeners)
        .find(|l| l.arn == tcp)
        .expect("the TCP listener is in the routes");
    assert_eq!(listener.idle_timeout_seconds, Some(120));

    // The NLB group's attributes the data plane applies reach the routes; client IP
    // preservation, which it cannot do, is off and stays off.
    let body = ok(
        &server,
        "DescribeTargetGroupAttributes",
        &[("TargetGroupArn", &flows)],
    )
    .await;
    assert!(
        body.contains("<Key>preserve_client_ip.enabled</Key><Value>false</Value>"),
        "{body}"
    );
    let refused = fails(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &flows),
            ("Attributes.member.1.Key", "preserve_client_ip.enabled"),
            ("Attributes.member.1.Value", "true"),
        ],
        "InvalidConfigurationRequest",
    )
    .await;
    assert!(refused.contains("proxy_protocol_v2"), "{refused}");
    ok(
        &server,
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &flows),
            ("Attributes.member.1.Key", "proxy_protocol_v2.enabled"),
            ("Attributes.member.1.Value", "true"),
            (
                "Attributes.member.2.Key",
                "deregistration_delay.connection_termination.enabled",
            ),
            ("Attributes.member.2.Value", "true"),
            ("Attributes.member.3.Key", "stickiness.enabled"),
            ("Attributes.member.3.Value", "true"),
        ],
    )
    .await;
    let snapshot = routes(&server).await;
    let group = snapshot
        .target_groups
        .iter()
        .find(|g| g.arn == flows)
        .expect("the TCP group is in the routes");
    assert!(group.proxy_protocol_v2 && group.connection_termination);
    assert_eq!(
        group.stickiness.as_ref().map(|s| s.kind.as_str()),
        Some("source_ip")
    );
    fails(
        &server,
        "DescribeListenerAttributes",
        &[(
            "ListenerArn",
            &format!("{}0000000000000000", &tcp[..=tcp.rfind('/').unwrap()]),
        )],
        "ListenerNotFound",
    )
    .await;
}

#[tokio::test]
async fn health_reports_skip_unreadable_records_and_keep_the_first_failure() {
    let server = support::start().await;
    let (vpc, subnets) = default_network(&server).await;
    let lb = create_lb(&server, "front", &subnets).await;
    let web = create_tg(&server, "web", "HTTP", &vpc, "ip").await;
    ok(
        &server,
        "RegisterTargets",
        &[
            ("TargetGroupArn", &web),
            ("Targets.member.1.Id", "10.0.0.1"),
        ],
    )
    .await;
    create_listener(&server, &lb, "80", &web).await;
    // A group whose record does not decode comes first in the report.
    let broken = web.replace("/web/", "/broken/");
    server
        .store
        .put(&model::elb::keys::target_group("broken"), "not json".into())
        .await
        .unwrap();
    lb_call(
        &server,
        "ReportTargetHealth",
        json!({
            "node": "lb-1",
            "targetGroups": [
                {"arn": broken, "targets": [{"id": "10.0.0.9", "port": 80, "state": "healthy"}]},
                {"arn": web, "targets": [{"id": "10.0.0.1", "port": 80, "state": "healthy"}]},
            ],
        }),
    )
    .await;
    let body = ok(&server, "DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    assert_eq!(texts(&body, "State"), vec!["healthy"]);

    // A failed load balancer keeps the first reason reported, whichever node reports next.
    let other = create_lb(&server, "other", &subnets).await;
    for (node, reason) in [("lb-1", "address in use"), ("lb-2", "permission denied")] {
        lb_call(
            &server,
            "ReportTargetHealth",
            json!({"node": node, "targetGroups": [], "failedLoadBalancers": [{"arn": other, "reason": reason}]}),
        )
        .await;
    }
    let body = ok(
        &server,
        "DescribeLoadBalancers",
        &[("Names.member.1", "other")],
    )
    .await;
    assert_eq!(text(&body, "Code"), "failed");
    assert_eq!(text(&body, "Reason"), "address in use");
    server.server.shutdown().await;
}

/// boto3 (botocore's Query serializer and XML parser) and its waiters against the server; the
/// test plays the data plane, reporting targets healthy.
#[tokio::test]
async fn boto3_and_the_botocore_waiters() {
    let Ok(venv) = std::env::var("WHARF_E2E_VENV") else {
        eprintln!("skipping boto3_and_the_botocore_waiters: WHARF_E2E_VENV is not set (scripts/test sets it)");
        return;
    };
    let server = support::start().await;
    let (_, subnets) = default_network(&server).await;
    let script = r#"
import sys, time
import boto3
from botocore.exceptions import ClientError

elb = boto3.client("elbv2")
ec2 = boto3.client("ec2")
vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
lb = elb.create_load_balancer(Name="boto", Subnets=SUBNETS, Tags=[{"Key": "k", "Value": "v"}])["LoadBalancers"][0]
assert lb["State"]["Code"] == "provisioning" and lb["Type"] == "application", lb
assert lb["AvailabilityZones"][0]["ZoneName"].startswith("us-east-1"), lb
tg = elb.create_target_group(Name="boto", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip",
                             HealthCheckPath="/health")["TargetGroups"][0]
assert tg["HealthCheckIntervalSeconds"] == 30 and tg["Matcher"] == {"HttpCode": "200"}, tg
elb.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[
    {"Key": "deregistration_delay.timeout_seconds", "Value": "2"}])
listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
    DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])["Listeners"][0]
rule = elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=10,
    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200", "MessageBody": "ok"}}])["Rules"][0]
assert rule["Priority"] == "10" and rule["IsDefault"] is False, rule
rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
assert [r["Priority"] for r in rules] == ["10", "default"], rules
attributes = elb.describe_listener_attributes(ListenerArn=listener["ListenerArn"])["Attributes"]
assert {"Key": "routing.http.response.server.enabled", "Value": "true"} in attributes, attributes
elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "10.1.2.3", "Port": 8080}])
health = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
assert health[0]["TargetHealth"]["State"] == "initial", health
tags = elb.describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"]
assert tags[0]["Tags"] == [{"Key": "k", "Value": "v"}], tags
try:
    elb.describe_target_groups(Names=["missing"])
    raise SystemExit("missing group described")
except ClientError as e:
    assert e.response["Error"]["Code"] == "TargetGroupNotFound", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
pages = elb.get_paginator("describe_target_groups").paginate(PaginationConfig={"PageSize": 1})
assert [g["TargetGroupName"] for p in pages for g in p["TargetGroups"]] == ["boto"]
grpc = elb.create_target_group(Name="boto-grpc", Protocol="HTTP", ProtocolVersion="GRPC", Port=50051,
                               VpcId=vpc, TargetType="ip", Matcher={"GrpcCode": "0-2"})["TargetGroups"][0]
assert grpc["ProtocolVersion"] == "GRPC" and grpc["Matcher"] == {"GrpcCode": "0-2"}, grpc
assert grpc["HealthCheckPath"] == "/AWS.ALB/healthcheck", grpc
elb.delete_target_group(TargetGroupArn=grpc["TargetGroupArn"])
print("READY", lb["LoadBalancerArn"], tg["TargetGroupArn"], flush=True)
fast = {"Delay": 1, "MaxAttempts": 30}
elb.get_waiter("load_balancer_available").wait(LoadBalancerArns=[lb["LoadBalancerArn"]], WaiterConfig=fast)
elb.get_waiter("target_in_service").wait(TargetGroupArn=tg["TargetGroupArn"],
    Targets=[{"Id": "10.1.2.3", "Port": 8080}], WaiterConfig=fast)
elb.deregister_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "10.1.2.3", "Port": 8080}])
state = elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"],
    Targets=[{"Id": "10.1.2.3", "Port": 8080}])["TargetHealthDescriptions"][0]["TargetHealth"]
assert state["State"] == "draining" and state["Reason"] == "Target.DeregistrationInProgress", state
elb.get_waiter("target_deregistered").wait(TargetGroupArn=tg["TargetGroupArn"],
    Targets=[{"Id": "10.1.2.3", "Port": 8080}], WaiterConfig=fast)
elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
elb.get_waiter("load_balancers_deleted").wait(LoadBalancerArns=[lb["LoadBalancerArn"]], WaiterConfig=fast)
elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
print("boto3 ok", flush=True)
"#
    .replace("SUBNETS", &format!("{:?}", &subnets[..2]));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("elbv2_boto3.py");
    std::fs::write(&path, script).expect("script");
    let mut child = tokio::process::Command::new(format!("{venv}/bin/python"))
        .arg(&path)
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_DEFAULT_REGION", support::REGION)
        .env("AWS_ACCESS_KEY_ID", &server.credentials.access_key_id)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            &server.credentials.secret_access_key,
        )
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    // Play the data plane once the script has created everything: serve the load balancer
    // and report the target healthy until the script is done.
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = Vec::new();
    let mut ids: Option<(String, String)> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await;
        match next {
            Ok(Ok(Some(line))) => {
                if let Some(rest) = line.strip_prefix("READY ") {
                    let mut parts = rest.split(' ');
                    ids = Some((parts.next().unwrap().into(), parts.next().unwrap().into()));
                }
                output.push(line);
            }
            Ok(_) => break,
            Err(_) => {}
        }
        if let Some((lb, tg)) = &ids {
            lb_call(
                &server,
                "ReportTargetHealth",
                json!({"node": "test", "activeLoadBalancers": [lb],
                       "targetGroups": [{"arn": tg, "targets": [{"id": "10.1.2.3", "port": 8080, "state": "healthy"}]}]}),
            )
            .await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "boto3 script timed out: {output:?}"
        );
    }
    let status = child.wait().await.expect("python exits");
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt as _;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .ok();
    assert!(status.success(), "boto3 failed: {output:?}\n{stderr}");
    assert_eq!(
        output.last().map(String::as_str),
        Some("boto3 ok"),
        "{output:?}"
    );
    server.server.shutdown().await;
}

/// A self-signed certificate for `name` imported into ACM (re-imported into `into`): its ARN
/// and PEM.
async fn import_certificate(
    acm: &aws_sdk_acm::Client,
    name: &str,
    into: Option<&str>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    let imported = acm
        .import_certificate()
        .certificate(aws_sdk_acm::primitives::Blob::new(cert.pem()))
        .private_key(aws_sdk_acm::primitives::Blob::new(key.serialize_pem()))
        .set_certificate_arn(into.map(str::to_string))
        .send()
        .await
        .unwrap();
    (imported.certificate_arn.unwrap(), cert.pem())
}

/// The parameters naming a listener and one certificate (ModifyListener's default, or one
/// added or removed).
fn with_certificate<'a>(listener: &'a str, certificate: &'a str) -> [(&'static str, &'a str); 2] {
    [
        ("ListenerArn", listener),
        ("Certificates.member.1.CertificateArn", certificate),
    ]
}

/// Owned Query parameters.
fn pairs(params: &[(&str, String)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
async fn https_listeners_take_acm_certificates_and_carry_them_in_routes() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let (vpc, subnets) = default_network(&server).await;
    let lb = create_lb(&server, "secure", &subnets[..2]).await;
    let tg = create_tg(&server, "web", "HTTP", &vpc, "ip").await;
    let (shop, shop_pem) = import_certificate(&acm, "shop.example.com", None).await;
    let (api, _) = import_certificate(&acm, "*.api.example.com", None).await;
    // CreateListener for HTTPS on 443 with `certificate` as its default, and `extra`.
    let https = |certificate: &str, extra: &[(&str, &str)]| {
        let mut params = pairs(&[
            ("LoadBalancerArn", lb.clone()),
            ("Protocol", "HTTPS".into()),
            ("Port", "443".into()),
            ("DefaultActions.member.1.Type", "forward".into()),
            ("DefaultActions.member.1.TargetGroupArn", tg.clone()),
        ]);
        if !certificate.is_empty() {
            params.push((
                "Certificates.member.1.CertificateArn".into(),
                certificate.into(),
            ));
        }
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        params
    };
    // Refused, changing nothing: an unknown certificate, an unknown policy, ALPN on HTTPS,
    // two default certificates, none.
    let missing =
        "arn:aws:acm:us-east-1:000000000000:certificate/00000000-0000-4000-8000-000000000000";
    let cases = [
        (https(missing, &[]), "CertificateNotFound"),
        (
            https(&shop, &[("SslPolicy", "ELBSecurityPolicy-Nope")]),
            "SSLPolicyNotFound",
        ),
        (
            https(&shop, &[("AlpnPolicy.member.1", "HTTP2Preferred")]),
            "ValidationError",
        ),
        (
            https(&shop, &[("Certificates.member.2.CertificateArn", &api)]),
            "ValidationError",
        ),
        (https("", &[]), "ValidationError"),
    ];
    for (params, code) in &cases {
        fails(&server, "CreateListener", &borrowed(params), code).await;
    }
    assert!(routes(&server).await.load_balancers[0].listeners.is_empty());

    let params = https(
        &shop,
        &[("SslPolicy", "ELBSecurityPolicy-TLS13-1-2-2021-06")],
    );
    let body = ok(&server, "CreateListener", &borrowed(&params)).await;
    let listener = text(&body, "ListenerArn");
    assert_eq!(
        text(&body, "SslPolicy"),
        "ELBSecurityPolicy-TLS13-1-2-2021-06"
    );
    ok(
        &server,
        "AddListenerCertificates",
        &with_certificate(&listener, &api),
    )
    .await;
    let body = ok(
        &server,
        "DescribeListenerCertificates",
        &[("ListenerArn", &listener)],
    )
    .await;
    assert_eq!(texts(&body, "CertificateArn"), [shop.clone(), api.clone()]);
    assert_eq!(texts(&body, "IsDefault"), ["true", "false"]);
    // The default certificate is replaced, never removed; an unknown one is not added.
    fails(
        &server,
        "RemoveListenerCertificates",
        &with_certificate(&listener, &shop),
        "OperationNotPermitted",
    )
    .await;
    fails(
        &server,
        "AddListenerCertificates",
        &with_certificate(&listener, missing),
        "CertificateNotFound",
    )
    .await;

    // Made the default, an added certificate is no longer listed twice; and back.
    ok(
        &server,
        "ModifyListener",
        &with_certificate(&listener, &api),
    )
    .await;
    let body = ok(
        &server,
        "DescribeListenerCertificates",
        &[("ListenerArn", &listener)],
    )
    .await;
    assert_eq!(texts(&body, "CertificateArn"), std::slice::from_ref(&api));
    ok(
        &server,
        "ModifyListener",
        &with_certificate(&listener, &shop),
    )
    .await;
    ok(
        &server,
        "AddListenerCertificates",
        &with_certificate(&listener, &api),
    )
    .await;

    // The data plane gets both, the default first, with their names and keys.
    let tls = |snapshot: &model::elb::RouteSnapshot| {
        snapshot.load_balancers[0].listeners[0]
            .tls
            .clone()
            .expect("an HTTPS listener's routes carry its TLS")
    };
    let snapshot = routes(&server).await;
    let served = tls(&snapshot);
    assert_eq!(served.ssl_policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
    let arns: Vec<&str> = served.certificates.iter().map(|c| c.arn.as_str()).collect();
    assert_eq!(arns, [shop.as_str(), api.as_str()]);
    assert_eq!(served.certificates[1].names, ["*.api.example.com"]);
    assert_eq!(served.certificates[0].chain_pem.trim(), shop_pem.trim());
    assert!(served.certificates[0]
        .private_key_pem
        .contains("PRIVATE KEY"));

    // A re-import wakes a data plane's long poll with the new certificate.
    let waiting = lb_call(
        &server,
        "GetRoutes",
        json!({"sinceRevision": snapshot.revision, "waitSeconds": 10}),
    );
    let reimport = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        import_certificate(&acm, "shop.example.com", Some(&shop)).await
    };
    let (woken, (reimported, new_pem)) = tokio::join!(waiting, reimport);
    assert_eq!(reimported, shop);
    let woken: model::elb::RouteSnapshot = serde_json::from_value(woken).unwrap();
    assert_eq!(tls(&woken).certificates[0].chain_pem.trim(), new_pem.trim());

    // The TLS headers: turned on for the load balancer, one renamed on the listener (a name
    // that is not a header name is refused).
    fails(
        &server,
        "ModifyListenerAttributes",
        &[
            ("ListenerArn", &listener),
            (
                "Attributes.member.1.Key",
                "routing.http.request.x_amzn_tls_cipher_suite.header_name",
            ),
            ("Attributes.member.1.Value", "X Cipher"),
        ],
        "InvalidConfigurationRequest",
    )
    .await;
    ok(
        &server,
        "ModifyListenerAttributes",
        &[
            ("ListenerArn", &listener),
            (
                "Attributes.member.1.Key",
                "routing.http.request.x_amzn_tls_cipher_suite.header_name",
            ),
            ("Attributes.member.1.Value", "X-Tls-Cipher"),
        ],
    )
    .await;
    ok(
        &server,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &lb),
            (
                "Attributes.member.1.Key",
                "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
            ),
            ("Attributes.member.1.Value", "true"),
        ],
    )
    .await;
    let snapshot = routes(&server).await;
    assert!(snapshot.load_balancers[0].http.tls_version_and_cipher_suite);
    assert_eq!(
        snapshot.load_balancers[0].listeners[0].tls_header_names,
        Some(("X-Amzn-Tls-Version".into(), "X-Tls-Cipher".into()))
    );

    // In use, a certificate cannot be deleted; removed from the listener, it can.
    let refused = acm
        .delete_certificate()
        .certificate_arn(&api)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_acm::error::ProvideErrorMetadata::code(&refused),
        Some("ResourceInUseException")
    );
    ok(
        &server,
        "RemoveListenerCertificates",
        &with_certificate(&listener, &api),
    )
    .await;
    acm.delete_certificate()
        .certificate_arn(&api)
        .send()
        .await
        .unwrap();
    assert_eq!(tls(&routes(&server).await).certificates.len(), 1);

    // An HTTP listener changed to HTTPS needs a certificate; back to HTTP drops them.
    let plain = create_listener(&server, &lb, "80", &tg).await;
    fails(
        &server,
        "ModifyListener",
        &[("ListenerArn", &plain), ("Protocol", "HTTPS")],
        "ValidationError",
    )
    .await;
    let body = ok(
        &server,
        "ModifyListener",
        &[
            ("ListenerArn", &listener),
            ("Protocol", "HTTP"),
            ("Port", "8443"),
        ],
    )
    .await;
    assert!(texts(&body, "CertificateArn").is_empty(), "{body}");
    assert!(routes(&server).await.load_balancers[0]
        .listeners
        .iter()
        .all(|l| l.tls.is_none()));

    // A TLS listener on an NLB takes an ALPN policy (one of five).
    let body = ok(
        &server,
        "CreateLoadBalancer",
        &[
            ("Name", "flows"),
            ("Type", "network"),
            ("Subnets.member.1", &subnets[0]),
        ],
    )
    .await;
    let nlb = text(&body, "LoadBalancerArn");
    let tcp = create_tg(&server, "flows", "TCP", &vpc, "ip").await;
    let tls_listener = |alpn: &str| {
        pairs(&[
            ("LoadBalancerArn", nlb.clone()),
            ("Protocol", "TLS".into()),
            ("Port", "5432".into()),
            ("DefaultActions.member.1.Type", "forward".into()),
            ("DefaultActions.member.1.TargetGroupArn", tcp.clone()),
            ("Certificates.member.1.CertificateArn", shop.clone()),
            ("AlpnPolicy.member.1", alpn.into()),
        ])
    };
    fails(
        &server,
        "CreateListener",
        &borrowed(&tls_listener("HTTP3")),
        "ALPNPolicyNotFound",
    )
    .await;
    let body = ok(
        &server,
        "CreateListener",
        &borrowed(&tls_listener("HTTP2Preferred")),
    )
    .await;
    assert_eq!(text(&body, "SslPolicy"), "ELBSecurityPolicy-2016-08");
    let snapshot = routes(&server).await;
    let flows = snapshot
        .load_balancers
        .iter()
        .find(|l| l.arn == nlb)
        .unwrap();
    let served = flows.listeners[0].tls.clone().unwrap();
    assert_eq!(served.alpn_policy.as_deref(), Some("HTTP2Preferred"));
    assert_eq!(served.certificates[0].arn, shop);
}

#[tokio::test]
async fn ssl_policies_are_described_with_what_the_data_plane_offers() {
    let server = support::start().await;
    let policies = |body: &str| texts(body, "SupportedLoadBalancerTypes").len();
    let all = ok(&server, "DescribeSSLPolicies", &[]).await;
    assert_eq!(policies(&all), model::elb::SSL_POLICIES.len());
    assert!(text(&all, "NextMarker").is_empty());

    // TLS 1.3 only: its three ciphers, by priority, then the policy's name.
    let body = ok(
        &server,
        "DescribeSSLPolicies",
        &[("Names.member.1", "ELBSecurityPolicy-TLS13-1-3-2021-06")],
    )
    .await;
    assert_eq!(policies(&body), 1);
    assert_eq!(texts(&body, "SslProtocols"), ["<member>TLSv1.3</member>"]);
    assert_eq!(
        texts(&body, "Name"),
        [
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
            "ELBSecurityPolicy-TLS13-1-3-2021-06",
        ]
    );
    assert_eq!(texts(&body, "Priority"), ["1", "2", "3"]);
    assert_eq!(
        text(&body, "SupportedLoadBalancerTypes"),
        "<member>application</member><member>network</member>"
    );
    // The API's default policy: TLS 1.2 and its six ECDHE ciphers; a TLS13 one has both.
    let body = ok(
        &server,
        "DescribeSSLPolicies",
        &[
            ("Names.member.1", "ELBSecurityPolicy-2016-08"),
            ("Names.member.2", "ELBSecurityPolicy-TLS13-1-2-2021-06"),
            ("LoadBalancerType", "network"),
        ],
    )
    .await;
    assert_eq!(
        texts(&body, "SslProtocols"),
        [
            "<member>TLSv1.2</member><member>TLSv1.3</member>",
            "<member>TLSv1.2</member>",
        ]
    );
    assert_eq!(texts(&body, "Priority").len(), 9 + 6);

    // Paged.
    let first = ok(&server, "DescribeSSLPolicies", &[("PageSize", "10")]).await;
    assert_eq!(policies(&first), 10);
    let marker = text(&first, "NextMarker");
    let second = ok(
        &server,
        "DescribeSSLPolicies",
        &[("PageSize", "30"), ("Marker", &marker)],
    )
    .await;
    assert_eq!(policies(&second), model::elb::SSL_POLICIES.len() - 10);
    assert!(text(&second, "NextMarker").is_empty());
    // Gateway load balancers have none.
    let body = ok(
        &server,
        "DescribeSSLPolicies",
        &[("LoadBalancerType", "gateway")],
    )
    .await;
    assert_eq!(policies(&body), 0);

    fails(
        &server,
        "DescribeSSLPolicies",
        &[
            ("Names.member.1", "ELBSecurityPolicy-2016-08"),
            ("Names.member.2", "ELBSecurityPolicy-Bogus"),
        ],
        "SSLPolicyNotFound",
    )
    .await;
    fails(
        &server,
        "DescribeSSLPolicies",
        &[("LoadBalancerType", "classic")],
        "ValidationError",
    )
    .await;
}

#[tokio::test]
async fn grpc_and_http2_groups_carry_their_version_and_grpc_matchers_to_the_routes() {
    let server = support::start().await;
    let (vpc, _) = default_network(&server).await;
    let create =
        |name: &'static str, version: &'static str, extra: Vec<(&'static str, &'static str)>| {
            let vpc = vpc.clone();
            let server = &server;
            async move {
                let mut params = vec![
                    ("Name", name),
                    ("Protocol", "HTTP"),
                    ("Port", "50051"),
                    ("VpcId", vpc.as_str()),
                    ("TargetType", "ip"),
                    ("ProtocolVersion", version),
                ];
                params.extend(extra);
                call(server, "CreateTargetGroup", &params).await
            }
        };
    // A GRPC group calls /AWS.ALB/healthcheck and expects 12 (UNIMPLEMENTED) by default.
    let body = create("grpc", "GRPC", vec![]).await.body;
    let grpc = text(&body, "TargetGroupArn");
    assert_eq!(text(&body, "ProtocolVersion"), "GRPC");
    assert_eq!(text(&body, "HealthCheckPath"), "/AWS.ALB/healthcheck");
    assert_eq!(text(&body, "GrpcCode"), "12");
    assert!(text(&body, "HttpCode").is_empty(), "{body}");
    // Its matcher takes gRPC codes 0-99, and only those.
    let body = ok(
        &server,
        "ModifyTargetGroup",
        &[
            ("TargetGroupArn", &grpc),
            ("HealthCheckPath", "/grpc.health.v1.Health/Check"),
            ("Matcher.GrpcCode", "0-2"),
        ],
    )
    .await;
    assert_eq!(text(&body, "GrpcCode"), "0-2");
    assert_eq!(
        text(&body, "HealthCheckPath"),
        "/grpc.health.v1.Health/Check"
    );
    for (member, codes) in [("Matcher.GrpcCode", "100"), ("Matcher.HttpCode", "200")] {
        let params = [("TargetGroupArn", grpc.as_str()), (member, codes)];
        let response = call(&server, "ModifyTargetGroup", &params).await;
        assert_eq!(response.status, 400, "{member}={codes}: {}", response.body);
    }
    let body = create("h2", "HTTP2", vec![]).await.body;
    let h2 = text(&body, "TargetGroupArn");
    assert_eq!(text(&body, "ProtocolVersion"), "HTTP2");
    assert_eq!(text(&body, "HttpCode"), "200");
    // A gRPC matcher on an HTTP2 group, and a protocol version on a network group, are
    // refused, and create nothing.
    let refused = create("h2-grpc", "HTTP2", vec![("Matcher.GrpcCode", "0")]).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let refused = call(
        &server,
        "CreateTargetGroup",
        &[
            ("Name", "tcp-grpc"),
            ("Protocol", "TCP"),
            ("Port", "50051"),
            ("VpcId", &vpc),
            ("ProtocolVersion", "GRPC"),
        ],
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let names = texts(
        &ok(&server, "DescribeTargetGroups", &[]).await,
        "TargetGroupName",
    );
    assert_eq!(names, ["grpc", "h2"]);

    // The data plane learns both from the routes.
    let lb = create_lb(&server, "app", &default_network(&server).await.1).await;
    create_listener(&server, &lb, "80", &grpc).await;
    create_listener(&server, &lb, "81", &h2).await;
    let snapshot = routes(&server).await;
    let group = |arn: &str| {
        snapshot
            .target_groups
            .iter()
            .find(|g| g.arn == arn)
            .cloned()
            .expect("the group is routed")
    };
    let routed = group(&grpc);
    assert_eq!(routed.protocol_version.as_deref(), Some("GRPC"));
    assert_eq!(
        routed.health_check.matcher_grpc_code.as_deref(),
        Some("0-2")
    );
    assert_eq!(routed.health_check.matcher_http_code, None);
    assert_eq!(group(&h2).protocol_version.as_deref(), Some("HTTP2"));
}
