//! End-to-end load balancing: `wharf up` (server, local agents and its `wharf lb` data plane)
//! on real Docker, driven by the aws CLI. An ALB with a path rule in front of two services
//! routes `/api/*` to one and the rest to the other; scaling a service out puts its new tasks
//! into rotation once healthy; a target that starts failing its health check is taken out and
//! its task replaced; a rolling deployment under continuous load (wrk) fails no request; a
//! weighted forward splits 90/10; an NLB forwards TCP, and with Proxy Protocol v2 its targets
//! read the client's address first, and a UDP listener carries UDP flows to a task's dynamic
//! UDP port; application-cookie stickiness keeps a client on the task
//! that set its session cookie; an HTTPS listener serves a certificate imported into ACM
//! (picked by server name among two) while its HTTP listener redirects to it; an HTTPS target
//! group reaches tasks that serve only TLS; a GRPC target group carries a real gRPC client's
//! calls (grpcio, unary and streaming) to a real gRPC server and checks it with gRPC calls.
//!
//! Backends are busybox `httpd` containers on dynamic host ports (bridge mode, instance
//! targets) answering with their service name and container hostname, with a `/health` file
//! the tests remove to fail health checks. Health checks run every 5 s (AWS's minimum) with a
//! healthy threshold of 2, and deregistration delays are a few seconds, so each test takes
//! about a minute.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use support::{wait_for, Up};

const IMAGE: &str = "wharf-test/busybox:latest";
/// The busybox image with `openssl` (see `scripts/test-images`), for tasks serving TLS.
const OPENSSL_IMAGE: &str = "wharf-test/openssl:latest";
/// The busybox image with `socat` (see `scripts/test-images`), for tasks serving UDP.
const SOCAT_IMAGE: &str = "wharf-test/socat:latest";

/// A busybox httpd answering `<service> <hostname>` on `/`, `/api/hello` and `/health`.
fn backend(service: &str) -> Value {
    json!([{
        "name": "app", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        "environment": [{"name": "SVC", "value": service}],
        "command": ["sh", "-c",
            "mkdir -p /www/api && echo \"$SVC $(hostname)\" > /www/index.html && cp /www/index.html /www/api/hello && echo ok > /www/health && exec httpd -f -p 8080 -h /www"],
    }])
}

/// A backend that also runs a CGI `/cgi-bin/login` setting the session cookie
/// `SESSION=<hostname>`, as an application with its own sessions does.
fn backend_with_sessions(service: &str) -> Value {
    json!([{
        "name": "app", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        "environment": [{"name": "SVC", "value": service}],
        "command": ["sh", "-c",
            "mkdir -p /www/cgi-bin && echo \"$SVC $(hostname)\" > /www/index.html && echo ok > /www/health && printf '#!/bin/sh\\necho \"Set-Cookie: SESSION=$(hostname); Path=/\"\\necho \"Content-Type: text/plain\"\\necho\\necho \"$SVC $(hostname)\"\\n' > /www/cgi-bin/login && chmod +x /www/cgi-bin/login && exec httpd -f -p 8080 -h /www"],
    }])
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn get(address: &str, path: &str) -> Result<(u16, String)> {
    let (status, _, body) = request(address, path, None)?;
    Ok((status, body))
}

/// One HTTP/1.1 request over a fresh connection, with a `Cookie` header if given:
/// (status, head, body).
fn request(address: &str, path: &str, cookie: Option<&str>) -> Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connect {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {response:?}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((status, head.to_string(), body.trim().to_string()))
}

/// The `name=value` of the `Set-Cookie` header setting `name`, from a response head.
fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|line| line.strip_prefix("Set-Cookie: "))
        .filter_map(|cookie| cookie.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

struct Elb<'a> {
    up: &'a Up,
}

impl Elb<'_> {
    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["elbv2"];
        all.extend_from_slice(args);
        self.up.wharf.aws_json(&all)
    }

    /// Two default subnets in different zones (an ALB needs two).
    fn subnets(&self) -> Result<Vec<String>> {
        let described = self.up.wharf.aws_json(&["ec2", "describe-subnets"])?;
        let mut by_zone = BTreeMap::new();
        for subnet in described["Subnets"].as_array().cloned().unwrap_or_default() {
            by_zone
                .entry(
                    subnet["AvailabilityZone"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
                .or_insert(subnet["SubnetId"].as_str().unwrap_or("").to_string());
        }
        Ok(by_zone.into_values().take(2).collect())
    }

    /// A load balancer, waited `available`: (arn, address).
    fn load_balancer(&self, name: &str, kind: &str) -> Result<(String, String)> {
        let subnets = self.subnets()?;
        let mut args = vec![
            "create-load-balancer",
            "--name",
            name,
            "--type",
            kind,
            "--subnets",
        ];
        args.extend(subnets.iter().map(String::as_str));
        let created = self.json(&args)?;
        let lb = &created["LoadBalancers"][0];
        let arn = lb["LoadBalancerArn"]
            .as_str()
            .context("no arn")?
            .to_string();
        let dns = lb["DNSName"].as_str().context("no DNSName")?.to_string();
        let waited = self.up.wharf.aws(&[
            "elbv2",
            "wait",
            "load-balancer-available",
            "--load-balancer-arns",
            &arn,
        ])?;
        ensure!(
            waited.status.success(),
            "load-balancer-available: {}",
            String::from_utf8_lossy(&waited.stderr)
        );
        Ok((arn, dns))
    }

    /// An instance target group on port 8080 checking `/health` every 5 s.
    fn target_group(
        &self,
        name: &str,
        protocol: &str,
        deregistration_delay: u32,
    ) -> Result<String> {
        let vpc = self.up.wharf.aws_json(&["ec2", "describe-vpcs"])?["Vpcs"][0]["VpcId"]
            .as_str()
            .context("no default VPC")?
            .to_string();
        let mut args = vec![
            "create-target-group",
            "--name",
            name,
            "--protocol",
            protocol,
            "--port",
            "8080",
            "--vpc-id",
            &vpc,
            "--target-type",
            "instance",
            "--health-check-interval-seconds",
            "5",
            "--healthy-threshold-count",
            "2",
            "--unhealthy-threshold-count",
            "2",
            "--health-check-timeout-seconds",
            "2",
        ];
        if protocol == "HTTP" {
            args.extend(["--health-check-path", "/health"]);
        }
        let created = self.json(&args)?;
        let arn = created["TargetGroups"][0]["TargetGroupArn"]
            .as_str()
            .context("no target group arn")?
            .to_string();
        let delay =
            format!("Key=deregistration_delay.timeout_seconds,Value={deregistration_delay}");
        self.set_target_group_attributes(&arn, &[&delay])?;
        Ok(arn)
    }

    /// `modify-target-group-attributes` with `Key=…,Value=…` pairs.
    fn set_target_group_attributes(&self, arn: &str, attributes: &[&str]) -> Result<Value> {
        let mut args = vec![
            "modify-target-group-attributes",
            "--target-group-arn",
            arn,
            "--attributes",
        ];
        args.extend_from_slice(attributes);
        self.json(&args)
    }

    fn listener(
        &self,
        lb: &str,
        protocol: &str,
        port: u16,
        default_action: Value,
    ) -> Result<String> {
        let port = port.to_string();
        let actions = json!([default_action]).to_string();
        let created = self.json(&[
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            protocol,
            "--port",
            &port,
            "--default-actions",
            &actions,
        ])?;
        Ok(created["Listeners"][0]["ListenerArn"]
            .as_str()
            .context("no listener arn")?
            .to_string())
    }

    /// An HTTPS listener on 443 with the certificate `certificate_arn` and `extra` arguments.
    fn https_listener(
        &self,
        lb: &str,
        certificate_arn: &str,
        default_action: Value,
        extra: &[&str],
    ) -> Result<String> {
        let certificate = format!("CertificateArn={certificate_arn}");
        let actions = json!([default_action]).to_string();
        let mut args = vec![
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            "HTTPS",
            "--port",
            "443",
            "--certificates",
            &certificate,
            "--default-actions",
            &actions,
        ];
        args.extend_from_slice(extra);
        let created = self.json(&args)?;
        Ok(created["Listeners"][0]["ListenerArn"]
            .as_str()
            .context("no listener arn")?
            .to_string())
    }

    /// States of a group's targets, by `id:port`.
    fn health(&self, target_group: &str) -> Result<BTreeMap<String, String>> {
        let described =
            self.json(&["describe-target-health", "--target-group-arn", target_group])?;
        Ok(described["TargetHealthDescriptions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                (
                    format!(
                        "{}:{}",
                        d["Target"]["Id"].as_str().unwrap_or(""),
                        d["Target"]["Port"]
                    ),
                    d["TargetHealth"]["State"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect())
    }

    /// Wait until the group has exactly `count` targets, all healthy.
    fn wait_healthy(&self, target_group: &str, count: usize, seconds: u64) -> Result<()> {
        wait_for(seconds, &format!("{count} healthy targets"), || {
            let health = self.health(target_group)?;
            Ok((health.len() == count && health.values().all(|s| s == "healthy")).then_some(()))
        })
    }
}

fn forward(target_group: &str) -> Value {
    json!({"Type": "forward", "TargetGroupArn": target_group})
}

fn create_service(
    up: &Up,
    name: &str,
    target_group: &str,
    count: u32,
    extra: &[&str],
) -> Result<Value> {
    let load_balancers = json!([{
        "targetGroupArn": target_group, "containerName": "app", "containerPort": 8080
    }])
    .to_string();
    let count = count.to_string();
    let mut args = vec![
        "ecs",
        "create-service",
        "--service-name",
        name,
        "--task-definition",
        name,
        "--desired-count",
        &count,
        "--load-balancers",
        &load_balancers,
    ];
    args.extend_from_slice(extra);
    up.wharf.aws_json(&args)
}

/// `n` requests: the bodies' first words (the service) and the distinct hostnames seen.
fn sample(
    address: &str,
    path: &str,
    n: usize,
) -> Result<(BTreeMap<String, usize>, BTreeSet<String>)> {
    let mut services = BTreeMap::new();
    let mut hosts = BTreeSet::new();
    for _ in 0..n {
        let (status, body) = get(address, path)?;
        ensure!(status == 200, "{path}: HTTP {status} {body}");
        let mut words = body.split_whitespace();
        *services
            .entry(words.next().unwrap_or("").to_string())
            .or_insert(0) += 1;
        hosts.insert(words.next().unwrap_or("").to_string());
    }
    Ok((services, hosts))
}

#[test]
fn an_alb_routes_by_path_scales_out_and_replaces_failing_targets() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    let api_tg = elb.target_group("api", "HTTP", 2)?;
    let web_tg = elb.target_group("web", "HTTP", 2)?;
    let (lb, address) = elb.load_balancer("front", "application")?;
    let listener = elb.listener(&lb, "HTTP", 80, forward(&web_tg))?;
    let conditions = json!([{"Field": "path-pattern", "Values": ["/api/*"]}]).to_string();
    let actions = json!([forward(&api_tg)]).to_string();
    elb.json(&[
        "create-rule",
        "--listener-arn",
        &listener,
        "--priority",
        "10",
        "--conditions",
        &conditions,
        "--actions",
        &actions,
    ])?;
    up.register("api", backend("api"))?;
    up.register("web", backend("web"))?;
    create_service(&up, "api", &api_tg, 2, &[])?;
    create_service(
        &up,
        "web",
        &web_tg,
        2,
        &["--health-check-grace-period-seconds", "0"],
    )?;
    elb.wait_healthy(&api_tg, 2, 90)?;
    elb.wait_healthy(&web_tg, 2, 90)?;
    let in_service = up.wharf.aws(&[
        "elbv2",
        "wait",
        "target-in-service",
        "--target-group-arn",
        &web_tg,
    ])?;
    ensure!(
        in_service.status.success(),
        "target-in-service: {}",
        String::from_utf8_lossy(&in_service.stderr)
    );
    let events = up.service_events("web")?;
    ensure!(
        events
            .iter()
            .any(|e| e.contains("registered") && e.contains(&format!("(target-group {web_tg})"))),
        "no registration event: {events:?}"
    );

    // The path rule: /api/* reaches the api service only, the rest the web service.
    let endpoint = format!("{address}:80");
    let (services, api_hosts) = sample(&endpoint, "/api/hello", 20)?;
    ensure!(
        services.keys().collect::<Vec<_>>() == ["api"],
        "{services:?}"
    );
    ensure!(api_hosts.len() == 2, "both api tasks serve: {api_hosts:?}");
    let (services, _) = sample(&endpoint, "/", 20)?;
    ensure!(
        services.keys().collect::<Vec<_>>() == ["web"],
        "{services:?}"
    );

    // The data plane's request metrics reach CloudWatch (AWS/ApplicationELB).
    let dimension = format!(
        "Name=LoadBalancer,Value={}",
        lb.split_once(":loadbalancer/").context("lb arn")?.1
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 600).to_string());
    wait_for(45, "RequestCount for the 40 requests", || {
        let stats = up.wharf.aws_json(&[
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "AWS/ApplicationELB",
            "--metric-name",
            "RequestCount",
            "--dimensions",
            &dimension,
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            "60",
            "--statistics",
            "Sum",
        ])?;
        let sum: f64 = stats["Datapoints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d["Sum"].as_f64())
            .sum();
        Ok((sum >= 40.0).then_some(()))
    })?;

    // Scale web out to 4: the new tasks enter rotation once their targets are healthy.
    up.wharf.aws_json(&[
        "ecs",
        "update-service",
        "--service",
        "web",
        "--desired-count",
        "4",
    ])?;
    elb.wait_healthy(&web_tg, 4, 90)?;
    wait_for(30, "requests to reach all 4 web tasks", || {
        let (_, hosts) = sample(&endpoint, "/", 40)?;
        Ok((hosts.len() == 4).then_some(()))
    })?;
    up.wait_stable("web", 4, 60)?;

    // One web task starts failing its health check: it leaves rotation and is replaced.
    let tasks = up.service_tasks("web", "RUNNING")?;
    let victim = tasks[0]["taskArn"].as_str().context("no task")?.to_string();
    let container = tasks[0]["containers"][0]["runtimeId"]
        .as_str()
        .context("no runtimeId")?
        .to_string();
    let removed = Command::new("docker")
        .args(["exec", &container, "rm", "/www/health"])
        .output()?;
    ensure!(removed.status.success(), "docker exec rm: {removed:?}");
    let stopped = wait_for(90, "the failing task to be replaced", || {
        let task = up.describe(&victim)?;
        Ok((task["lastStatus"] == "STOPPED").then_some(task))
    })?;
    let reason = stopped["stoppedReason"].as_str().unwrap_or("");
    ensure!(
        reason == format!("Task failed ELB health checks in (target-group {web_tg})"),
        "stoppedReason: {reason}"
    );
    elb.wait_healthy(&web_tg, 4, 90)?;
    let (services, hosts) = sample(&endpoint, "/", 40)?;
    ensure!(
        services.keys().collect::<Vec<_>>() == ["web"],
        "{services:?}"
    );
    ensure!(
        !hosts.contains(&container[..12]),
        "the failed task still serves"
    );
    Ok(())
}

/// wrk's summary: (requests, non-2xx/3xx responses, socket errors).
fn wrk_summary(output: &str) -> (u64, u64, u64) {
    let mut requests = 0;
    let mut non_2xx = 0;
    let mut errors = 0;
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.split_once(" requests in ") {
            requests = rest.0.trim().parse().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest.trim().parse().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    (requests, non_2xx, errors)
}

#[test]
fn a_rolling_deployment_under_load_fails_no_request_and_weights_split_90_10() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed: apt-get install wrk (scripts/test installs it)");
    }
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    let blue = elb.target_group("blue", "HTTP", 3)?;
    let green = elb.target_group("green", "HTTP", 3)?;
    let (lb, address) = elb.load_balancer("rolling", "application")?;
    let listener = elb.listener(&lb, "HTTP", 80, forward(&blue))?;
    // ECS only takes target groups that a load balancer uses.
    let conditions = json!([{"Field": "path-pattern", "Values": ["/green/*"]}]).to_string();
    let actions = json!([forward(&green)]).to_string();
    elb.json(&[
        "create-rule",
        "--listener-arn",
        &listener,
        "--priority",
        "5",
        "--conditions",
        &conditions,
        "--actions",
        &actions,
    ])?;
    up.register("blue", backend("blue"))?;
    up.register("green", backend("green"))?;
    create_service(&up, "blue", &blue, 2, &[])?;
    create_service(&up, "green", &green, 1, &[])?;
    elb.wait_healthy(&blue, 2, 90)?;
    up.wait_stable("blue", 2, 60)?;

    // Continuous load while the service replaces both tasks.
    let url = format!("http://{address}:80/");
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", "-d40s", "--timeout", "5s", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting wrk")?;
    std::thread::sleep(Duration::from_secs(2));
    let before: BTreeSet<String> = up
        .service_tasks("blue", "RUNNING")?
        .iter()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
        .collect();
    up.wharf.aws_json(&[
        "ecs",
        "update-service",
        "--service",
        "blue",
        "--force-new-deployment",
    ])?;
    wait_for(60, "the deployment to complete", || {
        let service = up.service("blue")?;
        let deployments = service["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok((deployments.len() == 1 && deployments[0]["rolloutState"] == "COMPLETED").then_some(()))
    })?;
    let after: BTreeSet<String> = up
        .service_tasks("blue", "RUNNING")?
        .iter()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
        .collect();
    ensure!(
        before.is_disjoint(&after),
        "every task was replaced: {before:?} {after:?}"
    );
    let output = wrk.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("wrk through wharf lb during the deployment:\n{text}");
    let (requests, non_2xx, errors) = wrk_summary(&text);
    ensure!(requests > 100, "wrk made too few requests:\n{text}");
    ensure!(
        non_2xx == 0 && errors == 0,
        "failed requests during the deployment:\n{text}"
    );
    let events = up.service_events("blue")?;
    ensure!(
        events
            .iter()
            .any(|e| e.contains("has begun draining connections")),
        "no draining event: {events:?}"
    );

    // A weighted forward: 90 % blue, 10 % green.
    elb.wait_healthy(&green, 1, 90)?;
    let weighted = json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": blue, "Weight": 90}, {"TargetGroupArn": green, "Weight": 10}]}}])
    .to_string();
    elb.json(&[
        "modify-listener",
        "--listener-arn",
        &listener,
        "--default-actions",
        &weighted,
    ])?;
    // The data plane swaps to the new routes within moments.
    wait_for(10, "green to receive requests", || {
        let (services, _) = sample(&format!("{address}:80"), "/", 20)?;
        Ok(services.contains_key("green").then_some(()))
    })?;
    let (services, _) = sample(&format!("{address}:80"), "/", 1000)?;
    let green_share = *services.get("green").unwrap_or(&0) as f64 / 1000.0;
    ensure!(
        (0.06..=0.14).contains(&green_share),
        "green got {:.1} % of requests: {services:?}",
        green_share * 100.0
    );
    Ok(())
}

#[test]
fn an_nlb_forwards_tcp() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    let tg = elb.target_group("tcp", "TCP", 1)?;
    let (lb, address) = elb.load_balancer("tcp-front", "network")?;
    elb.listener(&lb, "TCP", 9000, forward(&tg))?;
    up.register("tcp", backend("tcp"))?;
    create_service(&up, "tcp", &tg, 1, &[])?;
    elb.wait_healthy(&tg, 1, 90)?;
    let (status, body) = get(&format!("{address}:9000"), "/")?;
    ensure!(status == 200 && body.starts_with("tcp "), "{status} {body}");

    // A second group with Proxy Protocol v2, in front of tasks that echo what they read:
    // each flow comes back with the header naming this client first.
    let pp = elb.target_group("pp", "TCP", 1)?;
    elb.set_target_group_attributes(&pp, &["Key=proxy_protocol_v2.enabled,Value=true"])?;
    elb.listener(&lb, "TCP", 9001, forward(&pp))?;
    up.register(
        "pp",
        json!([{
            "name": "app", "image": IMAGE, "memory": 32, "stopTimeout": 2,
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            "command": ["nc", "-ll", "-p", "8080", "-e", "cat"],
        }]),
    )?;
    create_service(&up, "pp", &pp, 1, &[])?;
    // Health checks pass: their connections carry a LOCAL header the echo sends back.
    elb.wait_healthy(&pp, 1, 90)?;
    let mut stream = TcpStream::connect(format!("{address}:9001"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"hello\n")?;
    let mut echoed = vec![0u8; 28 + 6];
    stream.read_exact(&mut echoed)?;
    let client = stream.local_addr()?;
    let std::net::IpAddr::V4(client_ip) = client.ip() else {
        bail!("an IPv4 client expected, got {client}");
    };
    ensure!(&echoed[..12] == b"\r\n\r\n\0\r\nQUIT\n", "{echoed:?}");
    ensure!(echoed[12..16] == [0x21, 0x11, 0, 12], "{echoed:?}");
    ensure!(
        echoed[16..20] == client_ip.octets(),
        "source address: {echoed:?}"
    );
    ensure!(
        echoed[24..26] == client.port().to_be_bytes(),
        "source port: {echoed:?}"
    );
    ensure!(echoed[26..28] == 9001u16.to_be_bytes(), "{echoed:?}");
    ensure!(&echoed[28..] == b"hello\n", "{echoed:?}");
    Ok(())
}

/// One datagram to `address` from `socket` and the answer.
fn datagram(socket: &std::net::UdpSocket, address: &str, text: &str) -> Result<String> {
    socket.send_to(text.as_bytes(), address)?;
    let mut buf = [0u8; 512];
    let (length, from) = socket.recv_from(&mut buf)?;
    ensure!(
        from.to_string() == address,
        "answered from {from}, not {address}"
    );
    Ok(String::from_utf8_lossy(&buf[..length]).into_owned())
}

#[test]
fn an_nlb_forwards_udp_flows_to_a_task() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    // A UDP group is checked over TCP: here on a static host port the task also maps, while
    // its UDP port is a dynamic one, which is what the service registers.
    let tg = elb.target_group("dgram", "UDP", 1)?;
    elb.json(&[
        "modify-target-group",
        "--target-group-arn",
        &tg,
        "--health-check-port",
        "28053",
    ])?;
    let (lb, address) = elb.load_balancer("dgram-front", "network")?;
    elb.listener(&lb, "UDP", 9053, forward(&tg))?;
    up.register(
        "dgram",
        json!([{
            "name": "app", "image": SOCAT_IMAGE, "memory": 32, "stopTimeout": 2,
            "portMappings": [
                {"containerPort": 8080, "hostPort": 28053, "protocol": "tcp"},
                {"containerPort": 8080, "hostPort": 0, "protocol": "udp"},
            ],
            "command": ["sh", "-c",
                "socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo tcp' & exec socat UDP-RECVFROM:8080,fork SYSTEM:'read line; echo $(hostname) $line'"],
        }]),
    )?;
    create_service(&up, "dgram", &tg, 1, &[])?;
    elb.wait_healthy(&tg, 1, 90)?;
    let health = elb.health(&tg)?;
    let registered = health.keys().next().context("a target")?;
    ensure!(
        !registered.ends_with(":28053"),
        "the udp binding's port: {health:?}"
    );

    // Each client socket is a flow; its datagrams and the task's answers pass both ways.
    let front = format!("{address}:9053");
    let mut hosts = BTreeSet::new();
    for flow in 0..2 {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        for n in 0..3 {
            let answer = datagram(&socket, &front, &format!("ping {flow}.{n}\n"))?;
            let (host, echoed) = answer.trim().split_once(' ').context("host and line")?;
            ensure!(echoed == format!("ping {flow}.{n}"), "{answer}");
            hosts.insert(host.to_string());
        }
    }
    ensure!(hosts.len() == 1, "one task answers: {hosts:?}");
    Ok(())
}

#[test]
fn app_cookie_stickiness_keeps_a_session_on_its_task() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    let tg = elb.target_group("sessions", "HTTP", 1)?;
    elb.set_target_group_attributes(
        &tg,
        &[
            "Key=stickiness.enabled,Value=true",
            "Key=stickiness.type,Value=app_cookie",
            "Key=stickiness.app_cookie.cookie_name,Value=SESSION",
            "Key=stickiness.app_cookie.duration_seconds,Value=3600",
        ],
    )?;
    let (lb, address) = elb.load_balancer("sticky", "application")?;
    let listener = elb.listener(&lb, "HTTP", 80, forward(&tg))?;
    up.register("sessions", backend_with_sessions("sessions"))?;
    create_service(&up, "sessions", &tg, 3, &[])?;
    elb.wait_healthy(&tg, 3, 120)?;
    let address = format!("{address}:80");
    // Without a session, requests spread over the three tasks and get no stickiness cookie.
    let (_, hosts) = sample(&address, "/", 9)?;
    ensure!(hosts.len() == 3, "round robin over 3 tasks: {hosts:?}");
    let (_, head, _) = request(&address, "/", None)?;
    ensure!(set_cookie(&head, "AWSALBAPP-0").is_none(), "{head}");
    // Logging in: the task sets SESSION, the load balancer adds AWSALBAPP-0.
    let (status, head, body) = request(&address, "/cgi-bin/login", None)?;
    ensure!(status == 200, "{status} {head}");
    let session = set_cookie(&head, "SESSION").context("no SESSION cookie")?;
    let sticky = set_cookie(&head, "AWSALBAPP-0").context("no AWSALBAPP-0 cookie")?;
    let cookies = format!("{session}; {sticky}");
    for _ in 0..10 {
        let (status, _, again) = request(&address, "/", Some(&cookies))?;
        ensure!(status == 200 && again == body, "{again} is not {body}");
    }

    // The listener's response headers reach what the tasks answer.
    elb.json(&[
        "modify-listener-attributes",
        "--listener-arn",
        &listener,
        "--attributes",
        "Key=routing.http.response.x_frame_options.header_value,Value=DENY",
        "Key=routing.http.response.strict_transport_security.header_value,Value=max-age=300",
    ])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, head, _) = request(&address, "/", None)?;
        if head.contains("\r\nX-Frame-Options: DENY") {
            ensure!(
                head.contains("\r\nStrict-Transport-Security: max-age=300"),
                "{head}"
            );
            break;
        }
        ensure!(Instant::now() < deadline, "no X-Frame-Options in {head}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// A self-signed certificate and key for `name`, PEM, as a user would make with openssl.
fn self_signed(name: &str) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A self-signed certificate for `name` imported the way users do, with `aws acm
/// import-certificate` and PEM files written in `dir`: its ARN, its PEM and that file.
fn import_certificate(
    up: &Up,
    dir: &std::path::Path,
    name: &str,
) -> Result<(String, String, std::path::PathBuf)> {
    let (cert, key) = self_signed(name)?;
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, &cert)?;
    std::fs::write(&key_path, &key)?;
    let answer = up.wharf.aws_json(&[
        "acm",
        "import-certificate",
        "--certificate",
        &format!("fileb://{}", cert_path.display()),
        "--private-key",
        &format!("fileb://{}", key_path.display()),
    ])?;
    let arn = answer["CertificateArn"]
        .as_str()
        .context("no certificate arn")?
        .to_string();
    Ok((arn, cert, cert_path))
}

/// One HTTPS request naming `server_name`, trusting only `trusted` (PEM): the status line,
/// the body, and the certificate the server presented (DER).
fn https_get(
    address: &str,
    server_name: &str,
    trusted: &[&str],
    path: &str,
) -> Result<(String, String, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for pem in trusted {
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(
            pem.as_bytes(),
        )?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())?;
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    // The server may close without close_notify after `Connection: close`.
    if let Err(error) = tls.read_to_end(&mut raw) {
        ensure!(!raw.is_empty(), "reading the answer: {error}");
    }
    let presented = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string(), presented))
}

#[test]
fn an_https_listener_serves_an_imported_certificate() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    // Two certificates imported the way users do: `aws acm import-certificate` with PEM files.
    let files = tempfile::tempdir()?;
    let mut imported = Vec::new();
    for name in ["shop.example.test", "api.example.test"] {
        let (arn, cert, _) = import_certificate(&up, files.path(), name)?;
        imported.push((arn, cert));
    }
    let (shop_arn, shop_pem) = &imported[0];
    let (api_arn, api_pem) = &imported[1];

    let tg = elb.target_group("secure", "HTTP", 1)?;
    let (lb, address) = elb.load_balancer("secure-front", "application")?;
    let listener = elb.https_listener(
        &lb,
        shop_arn,
        forward(&tg),
        &["--ssl-policy", "ELBSecurityPolicy-TLS13-1-2-2021-06"],
    )?;
    elb.json(&[
        "add-listener-certificates",
        "--listener-arn",
        &listener,
        "--certificates",
        &format!("CertificateArn={api_arn}"),
    ])?;
    let listed = elb.json(&[
        "describe-listener-certificates",
        "--listener-arn",
        &listener,
    ])?;
    ensure!(
        listed["Certificates"]
            == json!([
                {"CertificateArn": shop_arn, "IsDefault": true},
                {"CertificateArn": api_arn, "IsDefault": false},
            ]),
        "{listed}"
    );
    // Plain HTTP on 80 sends clients to HTTPS, as most ALBs do.
    elb.listener(
        &lb,
        "HTTP",
        80,
        json!({"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}),
    )?;
    up.register(
        "secure",
        json!([{
            "name": "app", "image": IMAGE, "memory": 32, "stopTimeout": 2,
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            "command": ["sh", "-c",
                "mkdir -p /www/cgi-bin && echo ok > /www/health && printf '#!/bin/sh\\necho \"Content-Type: text/plain\"\\necho\\necho \"proto=$HTTP_X_FORWARDED_PROTO port=$HTTP_X_FORWARDED_PORT\"\\n' > /www/cgi-bin/seen && chmod +x /www/cgi-bin/seen && exec httpd -f -p 8080 -h /www"],
        }]),
    )?;
    create_service(&up, "secure", &tg, 1, &[])?;
    elb.wait_healthy(&tg, 1, 90)?;

    let https = format!("{address}:443");
    let (status, body, presented) =
        https_get(&https, "shop.example.test", &[shop_pem], "/cgi-bin/seen")?;
    ensure!(status.starts_with("HTTP/1.1 200"), "{status} {body}");
    ensure!(body.trim() == "proto=https port=443", "{body}");
    // The server name picks the added certificate; the default is for the rest.
    let (status, _, presented_api) = https_get(&https, "api.example.test", &[api_pem], "/health")?;
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    ensure!(presented != presented_api, "both names got one certificate");
    ensure!(
        https_get(&https, "api.example.test", &[shop_pem], "/health").is_err(),
        "api.example.test was given the default certificate"
    );
    let (status, head, _) = request(&format!("{address}:80"), "/cgi-bin/seen?x=1", None)?;
    ensure!(status == 301, "{status} {head}");
    ensure!(
        head.contains(&format!(
            "\r\nLocation: https://{address}/cgi-bin/seen?x=1\r\n"
        )),
        "{head}"
    );

    // ACM knows who uses its certificates, and keeps them while they are used.
    let described =
        up.wharf
            .aws_json(&["acm", "describe-certificate", "--certificate-arn", shop_arn])?;
    ensure!(
        described["Certificate"]["InUseBy"] == json!([lb]),
        "{described}"
    );
    ensure!(
        described["Certificate"]["DomainName"] == "shop.example.test",
        "{described}"
    );
    let refused = up
        .wharf
        .aws(&["acm", "delete-certificate", "--certificate-arn", api_arn])?;
    ensure!(
        String::from_utf8_lossy(&refused.stderr).contains("ResourceInUseException"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    Ok(())
}

#[test]
fn an_https_target_group_reaches_its_tasks_over_tls() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };
    let tg = elb.target_group("reencrypt", "HTTPS", 1)?;
    let described = elb.json(&["describe-target-groups", "--target-group-arns", &tg])?;
    let group = &described["TargetGroups"][0];
    ensure!(
        group["Protocol"] == "HTTPS" && group["HealthCheckProtocol"] == "HTTPS",
        "{described}"
    );
    let (lb, address) = elb.load_balancer("reencrypt-front", "application")?;
    elb.listener(&lb, "HTTP", 80, forward(&tg))?;
    // The task serves only TLS, with a certificate it makes itself at start (one nobody
    // trusts: load balancers do not verify their targets'). `s_server -www` answers every GET
    // with a page describing the TLS session it is on.
    up.register(
        "reencrypt",
        json!([{
            "name": "app", "image": OPENSSL_IMAGE, "memory": 64, "stopTimeout": 2,
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            "command": ["sh", "-c",
                "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout /tmp/key.pem -out /tmp/cert.pem -subj /CN=task -days 2 2>/dev/null && exec openssl s_server -accept 8080 -cert /tmp/cert.pem -key /tmp/key.pem -www -quiet"],
        }]),
    )?;
    create_service(&up, "reencrypt", &tg, 1, &[])?;
    // Healthy means the HTTPS health check's GET went over TLS and got its 200.
    elb.wait_healthy(&tg, 1, 90)?;
    let (status, body) = get(&format!("{address}:80"), "/")?;
    ensure!(status == 200, "{status} {body}");
    ensure!(
        body.contains("s_server -accept 8080") && body.contains("Protocol  : TLSv1.3"),
        "the answer did not come over TLS from the task: {body}"
    );
    Ok(())
}

/// `grpc_echo.py serve`: a gRPC server (grpcio) on loopback, stopped when dropped (its
/// standard input closes).
struct GrpcServer {
    child: std::process::Child,
    port: u16,
}

impl GrpcServer {
    fn start(python: &std::path::Path) -> Result<GrpcServer> {
        use std::io::BufRead;
        let mut child = Command::new(python)
            .arg(support::fixture("grpc_echo.py"))
            .arg("serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the gRPC server")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("its stdout")?;
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let port = line.trim().parse().context("the gRPC server's port")?;
        Ok(GrpcServer { child, port })
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_grpc_target_group_serves_a_real_grpc_client_over_an_https_listener() -> Result<()> {
    let python = support::aws_cli()?.with_file_name("python");
    let server = GrpcServer::start(&python)?;
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let elb = Elb { up: &up };

    // A GRPC group of one ip target, the grpcio server, checked with AWS's default gRPC check:
    // a call of /AWS.ALB/healthcheck, which the server does not implement (12 is the default
    // matcher's code).
    let vpc = up.wharf.aws_json(&["ec2", "describe-vpcs"])?["Vpcs"][0]["VpcId"]
        .as_str()
        .context("no default VPC")?
        .to_string();
    let port = server.port.to_string();
    let created = elb.json(&[
        "create-target-group",
        "--name",
        "grpc",
        "--protocol",
        "HTTP",
        "--protocol-version",
        "GRPC",
        "--port",
        &port,
        "--vpc-id",
        &vpc,
        "--target-type",
        "ip",
        "--health-check-interval-seconds",
        "5",
        "--health-check-timeout-seconds",
        "2",
        "--healthy-threshold-count",
        "2",
    ])?;
    let group = &created["TargetGroups"][0];
    ensure!(
        group["HealthCheckPath"] == "/AWS.ALB/healthcheck"
            && group["Matcher"] == json!({"GrpcCode": "12"}),
        "{created}"
    );
    let tg = group["TargetGroupArn"]
        .as_str()
        .context("no target group arn")?
        .to_string();
    let target = format!("Id=127.0.0.1,Port={port}");
    elb.json(&[
        "register-targets",
        "--target-group-arn",
        &tg,
        "--targets",
        &target,
    ])?;

    // gRPC takes an HTTPS listener (HTTP/2 by ALPN), as with ALB.
    let files = tempfile::tempdir()?;
    let name = "grpc.example.test";
    let (arn, cert, cert_path) = import_certificate(&up, files.path(), name)?;
    let (lb, address) = elb.load_balancer("grpc-front", "application")?;
    elb.https_listener(&lb, &arn, forward(&tg), &[])?;
    let waited = up.wharf.aws(&[
        "elbv2",
        "wait",
        "target-in-service",
        "--target-group-arn",
        &tg,
        "--targets",
        &target,
    ])?;
    ensure!(
        waited.status.success(),
        "target-in-service: {}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // The grpcio client's unary, server-streaming and client-streaming calls go through, and a
    // method the server lacks comes back UNIMPLEMENTED.
    let https = format!("{address}:443");
    let called = Command::new(&python)
        .arg(support::fixture("grpc_echo.py"))
        .args(["call", &https])
        .arg(&cert_path)
        .arg(name)
        .output()?;
    ensure!(
        called.status.success(),
        "the gRPC client failed: {}",
        String::from_utf8_lossy(&called.stderr)
    );
    let answers: Value = serde_json::from_slice(&called.stdout)?;
    ensure!(
        answers
            == json!({
                "say": "hello wharf from 127.0.0.1 over https",
                "count": ["0", "1", "2"],
                "join": "a,b,c",
                "missing": "UNIMPLEMENTED",
            }),
        "{answers}"
    );
    // An HTTP/1.1 request cannot go to a GRPC group: ALB's 464.
    let (status, body, _) = https_get(&https, name, &[&cert], "/echo.Echo/Say")?;
    ensure!(status.starts_with("HTTP/1.1 464"), "{status} {body}");

    // The matcher is gRPC codes: wanting 0 from the unimplemented default method fails the
    // target; checking a method the server has brings it back.
    elb.json(&[
        "modify-target-group",
        "--target-group-arn",
        &tg,
        "--matcher",
        "GrpcCode=0",
    ])?;
    let reason = wait_for(30, "the target to fail its checks", || {
        let described = elb.json(&["describe-target-health", "--target-group-arn", &tg])?;
        let health = &described["TargetHealthDescriptions"][0]["TargetHealth"];
        Ok((health["State"] == "unhealthy").then(|| health.clone()))
    })?;
    ensure!(
        reason["Reason"] == "Target.ResponseCodeMismatch"
            && reason["Description"] == "Health checks failed with these codes: [12]",
        "{reason}"
    );
    elb.json(&[
        "modify-target-group",
        "--target-group-arn",
        &tg,
        "--health-check-path",
        "/echo.Echo/Say",
    ])?;
    elb.wait_healthy(&tg, 1, 30)?;
    Ok(())
}
