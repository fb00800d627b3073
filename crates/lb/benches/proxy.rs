//! `cargo bench -p lb --bench proxy`: requests/s and added latency through `wharf lb` against
//! nginx proxying to the same backend, and the time from a target turning healthy to its first
//! routed request.
//!
//! One in-process hyper backend (its own runtime thread, `bench-backend`), the lb in process
//! (`WHARF_LB_BENCH_WORKERS` worker threads, 2 by default, as nginx's `worker_processes auto`
//! here) with an in-memory route source, nginx from Debian with a keep-alive upstream (twice:
//! out of the box, and `nginx+alb` setting what ALB sets), and a relay that only moves bytes
//! (`relay_floor`: what any user-space proxy here is bounded by).
//! wrk (1 thread, 64 connections) loads each in interleaved rounds (`WHARF_LB_BENCH_RUNS`, 3
//! by default, of `WHARF_LB_BENCH_SECONDS`, 5) after a direct-to-backend floor. The table shows
//! medians, with the CPU time per request of the proxy (the lb's worker threads, nginx's
//! processes, the relay's threads) and of the backend, read from /proc around each run, how
//! much of the machine stood idle, and the TCP segments sent per request; the ratio lines also
//! show each round's own ratio. Without wrk or nginx the benchmark says why and exits
//! successfully.

mod relay_floor;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb::{LoadBalancerConfig, LoadBalancerHandle, LoadBalancerNode, MemoryControlPlane};
use model::elb::*;
use tokio_util::sync::CancellationToken;

const WRK: &str = "/usr/bin/wrk";
const NGINX: &str = "/usr/sbin/nginx";
/// The row of nginx configured to add what ALB adds.
const ALB_NGINX: &str = "nginx+alb";
/// Interleaved rounds (`WHARF_LB_BENCH_RUNS`) unless set.
const RUNS: usize = 3;

fn main() -> anyhow::Result<()> {
    for tool in [WRK, NGINX] {
        if !Path::new(tool).exists() {
            println!("skipping the proxy benchmark: {tool} is not installed");
            return Ok(());
        }
    }
    let duration = std::env::var("WHARF_LB_BENCH_SECONDS").unwrap_or_else(|_| "5".into());
    let workers: usize = std::env::var("WHARF_LB_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let runs: usize = std::env::var("WHARF_LB_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(RUNS);

    let backends = BackendPool::start();
    let backend = backends.add(200);

    // The node's own tasks (routes, health checks); connections run on its worker threads.
    let lb_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let control_plane = Arc::new(MemoryControlPlane::new());
    let cancel = CancellationToken::new();
    let lb_address = free_address();
    let handle = lb_runtime.block_on(async {
        let mut config = LoadBalancerConfig::new("bench");
        config.workers = workers;
        LoadBalancerNode::start(
            config,
            control_plane.clone(),
            control_plane.clone(),
            cancel.clone(),
        )
    });
    let mut bench_group = group("bench", &[backend.0]);
    bench_group.health_check.interval_seconds = 5;
    let revision = control_plane.publish(RouteSnapshot {
        revision: 0,
        now_ms: 0,
        load_balancers: vec![alb(lb_address, "bench")],
        target_groups: vec![bench_group],
    });
    lb_runtime.block_on(handle.wait_for_revision(revision));
    wait_for_http(lb_address)?;
    // Bound before nginx's ports are picked, so it cannot take one of them.
    let floor_address = relay_floor::start(backend.0, workers)?;

    // nginx twice: as configured out of the box (it forwards what it got, with its own
    // `Host`), and doing the lb's job, adding the client's `Host`, `X-Forwarded-*` and a
    // trace id as ALB does (the like-for-like comparison).
    let nginx_dir = tempfile::tempdir()?;
    let nginx_address = free_address();
    let mut nginx = start_nginx(nginx_dir.path(), nginx_address, backend.0, false)?;
    let alb_nginx_dir = tempfile::tempdir()?;
    let alb_nginx_address = free_address();
    let mut alb_nginx = start_nginx(alb_nginx_dir.path(), alb_nginx_address, backend.0, true)?;
    wait_for_http(nginx_address)?;
    wait_for_http(alb_nginx_address)?;
    wait_for_http(floor_address)?;

    println!("warming up");
    wrk(lb_address, "2")?;
    wrk(nginx_address, "2")?;
    wrk(alb_nginx_address, "2")?;
    wrk(floor_address, "2")?;
    // An nginx that could not bind its port retries for a few seconds and exits; whatever
    // else answers there would be measured in its place.
    for (child, address) in [
        (&mut nginx, nginx_address),
        (&mut alb_nginx, alb_nginx_address),
    ] {
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "nginx for {address} exited (see its errors above)"
        );
    }
    let mut results: BTreeMap<&str, Vec<WrkResult>> = BTreeMap::new();
    println!("direct floor");
    results
        .entry("direct")
        .or_default()
        .push(wrk(backend.0, &duration)?);
    for run in 1..=runs {
        println!("run {run}/{runs}");
        results
            .entry("wharf lb")
            .or_default()
            .push(wrk_measured(lb_address, &duration, || {
                threads_named("wharf-lb-")
            })?);
        results
            .entry("nginx")
            .or_default()
            .push(wrk_measured(nginx_address, &duration, || {
                nginx_tasks(nginx.id())
            })?);
        results.entry(ALB_NGINX).or_default().push(wrk_measured(
            alb_nginx_address,
            &duration,
            || nginx_tasks(alb_nginx.id()),
        )?);
        results.entry("relay floor").or_default().push(wrk_measured(
            floor_address,
            &duration,
            || threads_named("relay-floor-"),
        )?);
    }
    results
        .entry("direct")
        .or_default()
        .push(wrk(backend.0, &duration)?);
    stop_nginx(&mut nginx);
    stop_nginx(&mut alb_nginx);

    let summary = |name: &str| {
        let runs = &results[name];
        (
            median(runs.iter().map(|r| r.requests_per_second)),
            median(runs.iter().map(|r| r.p50_us)),
            median(runs.iter().map(|r| r.p99_us)),
        )
    };
    let cpu = |name: &str| median(results[name].iter().map(|r| r.cpu_us_per_request));
    let direct_rps = summary("direct").0;
    // The floor is the best of the direct runs: one noisy run must not make added latency
    // negative.
    let best = |value: fn(&WrkResult) -> f64| {
        results["direct"]
            .iter()
            .map(value)
            .fold(f64::INFINITY, f64::min)
    };
    let (direct_p50, direct_p99) = (best(|r| r.p50_us), best(|r| r.p99_us));
    println!();
    println!(
        "wrk -t1 -c64 -d{duration}s, lb workers: {workers}, medians of {runs} interleaved runs"
    );
    println!(
        "{:<12} {:>10} {:>8} {:>8} {:>10} {:>10} {:>14} {:>8} {:>5} {:>5}",
        "target",
        "requests/s",
        "p50",
        "p99",
        "added p50",
        "added p99",
        "cpu/req (user)",
        "backend",
        "idle",
        "segs"
    );
    for name in ["direct", "wharf lb", "nginx", ALB_NGINX, "relay floor"] {
        let runs = &results[name];
        let (rps, p50, p99) = summary(name);
        let of = |value: fn(&WrkResult) -> f64| median(runs.iter().map(value));
        let (cpu, backend, idle, segments) = if name == "direct" {
            (
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            )
        } else {
            (
                format!(
                    "{:.1}us ({:.1})",
                    of(|r| r.cpu_us_per_request),
                    of(|r| r.user_us_per_request)
                ),
                format!("{:.1}us", of(|r| r.backend_us_per_request)),
                format!("{:.0}%", of(|r| r.idle_share) * 100.0),
                format!("{:.2}", of(|r| r.segments_per_request)),
            )
        };
        let list: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}", r.requests_per_second))
            .collect();
        println!(
            "{name:<12} {rps:>10.0} {:>6.0}us {:>6.0}us {:>8.0}us {:>8.0}us {cpu:>14} {backend:>8} {idle:>5} {segments:>5}   runs: {}",
            p50,
            p99,
            p50 - direct_p50,
            p99 - direct_p99,
            list.join(", ")
        );
    }
    let (lb_rps, lb_p50, lb_p99) = summary("wharf lb");
    for peer in ["nginx", ALB_NGINX] {
        let (rps, p50, p99) = summary(peer);
        // Each round runs the lb and its peers back to back, so a round's own ratio is spared
        // the machine's slower drifts; their spread says how far to trust the medians.
        let rounds: Vec<String> = results["wharf lb"]
            .iter()
            .zip(&results[peer])
            .map(|(lb, peer)| format!("{:.2}", lb.requests_per_second / peer.requests_per_second))
            .collect();
        println!(
            "ratios lb/{peer}: requests/s {:.2}x (per round: {}), p50 {:.2}x, p99 {:.2}x, proxy CPU per request {:.2}x",
            lb_rps / rps,
            rounds.join(", "),
            lb_p50 / p50,
            lb_p99 / p99,
            cpu("wharf lb") / cpu(peer),
        );
    }
    let (floor_rps, _, floor_p99) = summary("relay floor");
    println!(
        "relay floor (moves bytes, no HTTP): requests/s floor/nginx {:.2}x, lb/floor {:.2}x, p99 lb/floor {:.2}x, proxy CPU per request lb/floor {:.2}x",
        floor_rps / summary("nginx").0,
        lb_rps / floor_rps,
        lb_p99 / floor_p99,
        cpu("wharf lb") / cpu("relay floor"),
    );
    println!(
        "(direct floor {direct_rps:.0} req/s, p50 {direct_p50:.0}us, p99 {direct_p99:.0}us; nearly all of the relay's CPU is the kernel's TCP work, which no proxy avoids)"
    );

    let delays =
        lb_runtime.block_on(healthy_to_first_request(&handle, &control_plane, &backends))?;
    let mut sorted = delays.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    println!(
        "time from healthy to first routed request over {} targets: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (state polled every 1 ms)",
        sorted.len(),
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0)
    );
    cancel.cancel();
    lb_runtime.block_on(handle.wait());
    Ok(())
}

/// Backends on one current-thread runtime of their own: each answers `ok`, and `/health`
/// with its switchable status; each records when it first served a non-health request.
struct BackendPool {
    runtime: tokio::runtime::Handle,
}

struct Backend(SocketAddr, Arc<AtomicU16>, Arc<Mutex<Option<Instant>>>);

impl BackendPool {
    fn start() -> BackendPool {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bench-backend".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                sender.send(runtime.handle().clone()).unwrap();
                runtime.block_on(std::future::pending::<()>());
            })
            .expect("backend thread");
        BackendPool {
            runtime: receiver.recv().unwrap(),
        }
    }

    fn add(&self, health: u16) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(health));
        let first = Arc::new(Mutex::new(None));
        let (status, first_request) = (health.clone(), first.clone());
        self.runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (status, first_request) = (status.clone(), first_request.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let code = if request.uri().path() == "/health" {
                                status.load(Ordering::Relaxed)
                            } else {
                                let mut first = first_request.lock().unwrap();
                                if first.is_none() {
                                    *first = Some(Instant::now());
                                }
                                200
                            };
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                            async move { Ok::<_, Infallible>(response) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend(address, health, first)
    }
}

/// Registers 20 targets failing their checks next to a healthy one, keeps requests flowing,
/// flips the targets' checks to passing at staggered times, and measures from each target's
/// turn to healthy (as the node reports it) to the first request it serves.
async fn healthy_to_first_request(
    handle: &LoadBalancerHandle,
    control_plane: &MemoryControlPlane,
    backends: &BackendPool,
) -> anyhow::Result<Vec<f64>> {
    let base = backends.add(200);
    let targets: Vec<Backend> = (0..20).map(|_| backends.add(500)).collect();
    let address = free_address();
    let mut addresses = vec![base.0];
    addresses.extend(targets.iter().map(|t| t.0));
    let mut flip_group = group("flip", &addresses);
    flip_group.health_check.interval_seconds = 1;
    flip_group.health_check.healthy_threshold_count = 2;
    flip_group.health_check.unhealthy_threshold_count = 2;
    let revision = control_plane.publish(RouteSnapshot {
        revision: 0,
        now_ms: 0,
        load_balancers: vec![alb(address, "flip")],
        target_groups: vec![flip_group],
    });
    handle.wait_for_revision(revision).await;

    let stop = CancellationToken::new();
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, stop) = (client.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let request = hyper::Request::get(format!("http://{address}/"))
                    .body(Empty::new())
                    .unwrap();
                let _ = client.request(request).await;
            }
        }));
    }
    let arn = group_arn("flip");
    let health = |target: &Backend| {
        handle
            .target_health(&arn, &target.0.ip().to_string(), target.0.port())
            .map(|h| h.state)
    };
    // Wait until every target is seen failing, then let them pass at staggered times.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !targets
        .iter()
        .all(|t| health(t).as_deref() == Some("unhealthy"))
    {
        anyhow::ensure!(Instant::now() < deadline, "targets did not turn unhealthy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, target) in targets.iter().enumerate() {
        *target.2.lock().unwrap() = None;
        if i % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(230)).await;
        }
        target.1.store(200, Ordering::Relaxed);
    }
    let mut turned = vec![None; targets.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while turned.iter().any(Option::is_none) {
        anyhow::ensure!(Instant::now() < deadline, "targets did not turn healthy");
        for (i, target) in targets.iter().enumerate() {
            if turned[i].is_none() && health(target).as_deref() == Some("healthy") {
                turned[i] = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    for task in load {
        let _ = task.await;
    }
    let mut delays = Vec::new();
    for (target, turned) in targets.iter().zip(turned) {
        let turned = turned.expect("all turned");
        let first = target
            .2
            .lock()
            .unwrap()
            .ok_or_else(|| anyhow::anyhow!("a healthy target got no request"))?;
        // The poll sees the turn up to 1 ms late: a first request before it counts as 0.
        delays.push(first.saturating_duration_since(turned).as_secs_f64() * 1000.0);
    }
    Ok(delays)
}

fn group_arn(name: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{name}/0123456789abcdef"
    )
}

fn group(name: &str, targets: &[SocketAddr]) -> TargetGroupRoutes {
    TargetGroupRoutes {
        arn: group_arn(name),
        name: name.into(),
        dimension: format!("targetgroup/{name}/0123456789abcdef"),
        protocol: "HTTP".into(),
        protocol_version: None,
        health_check: HealthCheckConfig {
            path: Some("/health".into()),
            interval_seconds: 5,
            timeout_seconds: 2,
            healthy_threshold_count: 2,
            ..HealthCheckConfig::aws_default("HTTP")
        },
        deregistration_delay_seconds: 300,
        slow_start_seconds: 0,
        stickiness: None,
        algorithm: "round_robin".into(),
        targets: targets
            .iter()
            .map(|a| RouteTarget {
                id: a.ip().to_string(),
                port: a.port(),
                address: a.to_string(),
                availability_zone: None,
                draining_until_ms: None,
                registered_at_ms: None,
            })
            .collect(),
        proxy_protocol_v2: false,
        connection_termination: false,
    }
}

fn alb(address: SocketAddr, group_name: &str) -> LoadBalancerRoutes {
    LoadBalancerRoutes {
        arn: format!(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/{group_name}/1"
        ),
        name: group_name.into(),
        kind: LoadBalancerKind::Application,
        address: address.ip().to_string(),
        dimension: format!("app/{group_name}/1"),
        idle_timeout_seconds: 60,
        listeners: vec![ListenerRoutes {
            arn: format!(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/{group_name}/1/1"
            ),
            port: address.port(),
            protocol: "HTTP".into(),
            rules: vec![RouteRule {
                arn: "default".into(),
                priority: None,
                conditions: vec![],
                action: RouteAction::Forward {
                    target_groups: vec![WeightedTargetGroup {
                        arn: group_arn(group_name),
                        weight: 1,
                    }],
                    stickiness_seconds: None,
                },
            }],
            idle_timeout_seconds: None,
            response_headers: ResponseHeaderSettings::default(),
            tls: None,
            tls_header_names: None,
        }],
        http: HttpAttributes::default(),
    }
}

fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// nginx from Debian proxying `listen` to `backend` over keep-alive connections; with
/// `alb_headers`, it also sets what ALB sets on the way to the target.
fn start_nginx(
    dir: &Path,
    listen: SocketAddr,
    backend: SocketAddr,
    alb_headers: bool,
) -> anyhow::Result<Child> {
    let d = dir.display();
    let headers = if alb_headers {
        "proxy_set_header Host $host;\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
         proxy_set_header X-Forwarded-Proto $scheme;\n      \
         proxy_set_header X-Forwarded-Port $server_port;\n      \
         proxy_set_header X-Amzn-Trace-Id Root=$request_id;\n"
    } else {
        ""
    };
    let config = format!(
        "daemon off;\nworker_processes auto;\nerror_log stderr;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream backend {{ server {backend}; keepalive 64; }}\n\
           server {{\n    listen {listen};\n    location / {{\n      proxy_pass http://backend;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      {headers}\
           }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config)?;
    Ok(Command::new(NGINX)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg("stderr")
        .stdout(Stdio::null())
        .spawn()?)
}

/// SIGQUIT: nginx's graceful stop, which takes its workers along (SIGKILL would orphan them).
fn stop_nginx(nginx: &mut Child) {
    let _ = Command::new("kill")
        .args(["-QUIT", &nginx.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = nginx.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
}

fn wait_for_http(address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{address} does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct WrkResult {
    requests_per_second: f64,
    requests: f64,
    p50_us: f64,
    p99_us: f64,
    /// The proxy's CPU time per request (0 when not measured), and its user-space part.
    cpu_us_per_request: f64,
    user_us_per_request: f64,
    /// The backend's CPU time per request (what the proxy's requests cost the target).
    backend_us_per_request: f64,
    /// Shares of the machine's CPU time that were idle and in softirq during the run.
    idle_share: f64,
    softirq_share: f64,
    /// TCP segments sent on the machine per request (wrk, proxy and backend together): a
    /// proxy that makes the kernel send more packets (ACKs, split writes) shows here.
    segments_per_request: f64,
}

/// A wrk run with the CPU time used by the tasks `tasks` lists (`/proc/.../stat` files).
fn wrk_measured(
    address: SocketAddr,
    seconds: &str,
    tasks: impl Fn() -> Vec<std::path::PathBuf>,
) -> anyhow::Result<WrkResult> {
    let backend = || threads_named("bench-backend");
    let (user_before, system_before) = cpu_ticks(&tasks());
    let (backend_user_before, backend_system_before) = cpu_ticks(&backend());
    let machine_before = machine_ticks();
    let segments_before = tcp_segments_sent();
    let mut result = wrk(address, seconds)?;
    let segments = tcp_segments_sent() - segments_before;
    let machine_after = machine_ticks();
    let (user, system) = cpu_ticks(&tasks());
    let (backend_user, backend_system) = cpu_ticks(&backend());
    let total: u64 = machine_after.iter().sum::<u64>() - machine_before.iter().sum::<u64>();
    let share =
        |field: usize| (machine_after[field] - machine_before[field]) as f64 / total.max(1) as f64;
    // /proc/stat's cpu line: user nice system idle iowait irq softirq ...
    result.idle_share = share(3);
    result.softirq_share = share(6);
    let (user, system) = (user - user_before, system - system_before);
    // `/proc` counts in clock ticks of 10 ms (USER_HZ is 100 on Linux).
    let per_request = |ticks: u64| ticks as f64 * 10_000.0 / result.requests.max(1.0);
    result.cpu_us_per_request = per_request(user + system);
    result.user_us_per_request = per_request(user);
    result.backend_us_per_request =
        per_request(backend_user + backend_system - backend_user_before - backend_system_before);
    result.segments_per_request = segments as f64 / result.requests.max(1.0);
    Ok(result)
}

/// The machine's TCP segments sent so far (`Tcp: OutSegs` in /proc/net/snmp).
fn tcp_segments_sent() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "OutSegs")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// The first eight fields of /proc/stat's `cpu` line (all CPUs), in clock ticks.
fn machine_ticks() -> [u64; 8] {
    let mut ticks = [0; 8];
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    for (tick, field) in ticks.iter_mut().zip(line.split_whitespace().skip(1)) {
        *tick = field.parse().unwrap_or(0);
    }
    ticks
}

/// (utime, stime) summed over the tasks, in clock ticks.
fn cpu_ticks(stats: &[std::path::PathBuf]) -> (u64, u64) {
    stats
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|stat| {
            // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
            let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            (field(14).unwrap_or(0), field(15).unwrap_or(0))
        })
        .fold((0, 0), |(u, s), (user, system)| (u + user, s + system))
}

/// This process's threads whose names start with `prefix` (the lb's workers, the relay's).
fn threads_named(prefix: &str) -> Vec<std::path::PathBuf> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .map(|task| task.path().join("stat"))
        .collect()
}

/// nginx's master and its worker processes.
fn nginx_tasks(master: u32) -> Vec<std::path::PathBuf> {
    let mut stats = vec![std::path::PathBuf::from(format!("/proc/{master}/stat"))];
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return stats;
    };
    for process in processes.filter_map(Result::ok) {
        let path = process.path().join("stat");
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(master) {
            stats.push(path);
        }
    }
    stats
}

fn wrk(address: SocketAddr, seconds: &str) -> anyhow::Result<WrkResult> {
    let output = Command::new(WRK)
        .args([
            "-t1",
            "-c64",
            &format!("-d{seconds}s"),
            "--latency",
            &format!("http://{address}/"),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.split_whitespace().nth(1))
    };
    let parsed = (|| {
        let errors = text
            .lines()
            .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
        if let Some(errors) = errors {
            eprintln!("wrk against {address}: {}", errors.trim());
        }
        let requests = text
            .lines()
            .find(|line| line.contains(" requests in "))
            .and_then(|line| line.split_whitespace().next())
            .and_then(|n| n.parse().ok())?;
        Some(WrkResult {
            requests,
            cpu_us_per_request: 0.0,
            user_us_per_request: 0.0,
            backend_us_per_request: 0.0,
            idle_share: 0.0,
            segments_per_request: 0.0,
            softirq_share: 0.0,
            requests_per_second: field("Requests/sec:")?.parse().ok()?,
            p50_us: duration_us(field("50%")?)?,
            p99_us: duration_us(field("99%")?)?,
        })
    })();
    parsed.ok_or_else(|| anyhow::anyhow!("cannot parse wrk's output:\n{text}"))
}

/// wrk's `363.00us`, `1.23ms`, `2.00s`.
fn duration_us(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(|a, b| a.total_cmp(b));
    percentile(&values, 0.5)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}
