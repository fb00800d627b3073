//! Request metrics, counted per load balancer and per (load balancer, target group) pair with
//! sharded atomics (a worker thread bumps its own cache line; no lock per request) and flushed
//! as CloudWatch statistic sets every metrics interval (10 s by default: a finer grain than
//! CloudWatch's 60 s period, which the store can still roll up; datums are stamped with the
//! start of the interval they cover).
//!
//! ALB (`AWS/ApplicationELB`): `RequestCount`, `GrpcRequestCount` (load balancer level),
//! `TargetResponseTime` (seconds until the target's response headers),
//! `HTTPCode_Target_{2,3,4,5}XX_Count`, `HTTPCode_ELB_{3,4,5}XX_Count` (and
//! `_502`/`_503`/`_504`), `HTTP_Redirect_Count`, `HTTP_Fixed_Response_Count`,
//! `TargetConnectionErrorCount`, `TargetTLSNegotiationErrorCount`, `NewConnectionCount` and
//! `ActiveConnectionCount` (client connections); per pair also `RequestCountPerTarget`,
//! `HealthyHostCount` and `UnHealthyHostCount`. Both kinds: `ClientTLSNegotiationErrorCount`.
//! NLB (`AWS/NetworkELB`): `ActiveFlowCount`, `NewFlowCount`, `ProcessedBytes`, each also per
//! protocol (`_TCP`, `_TLS`, `_UDP`), `TCP_Client_Reset_Count`, `TCP_Target_Reset_Count`,
//! `TCP_ELB_Reset_Count`, `PortAllocationErrorCount`, and the host counts. Zero counts are left
//! out, as CloudWatch reports ELB counts only when nonzero; host counts are always sent.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use model::elb::{LoadBalancerKind, MetricDatum};

const SHARDS: usize = 8;

/// Padded to its own cache lines so shards on different cores do not false-share.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Shard(HttpCounters);

#[derive(Debug)]
struct HttpCounters {
    requests: AtomicU64,
    /// Of the requests, gRPC calls.
    grpc_requests: AtomicU64,
    /// Target answers by class: 2XX, 3XX, 4XX, 5XX.
    target_codes: [AtomicU64; 4],
    elb_4xx: AtomicU64,
    elb_502: AtomicU64,
    elb_503: AtomicU64,
    elb_504: AtomicU64,
    elb_5xx_other: AtomicU64,
    redirects: AtomicU64,
    fixed_responses: AtomicU64,
    /// Connections to targets that could not be opened, and TLS handshakes with targets that
    /// failed.
    target_connection_errors: AtomicU64,
    target_tls_errors: AtomicU64,
    response_count: AtomicU64,
    response_sum_us: AtomicU64,
    response_min_us: AtomicU64,
    response_max_us: AtomicU64,
}

impl Default for HttpCounters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            grpc_requests: AtomicU64::new(0),
            target_codes: Default::default(),
            elb_4xx: AtomicU64::new(0),
            elb_502: AtomicU64::new(0),
            elb_503: AtomicU64::new(0),
            elb_504: AtomicU64::new(0),
            elb_5xx_other: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            fixed_responses: AtomicU64::new(0),
            target_connection_errors: AtomicU64::new(0),
            target_tls_errors: AtomicU64::new(0),
            response_count: AtomicU64::new(0),
            response_sum_us: AtomicU64::new(0),
            response_min_us: AtomicU64::new(u64::MAX),
            response_max_us: AtomicU64::new(0),
        }
    }
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            index.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        index.get()
    })
}

/// HTTP counters of one load balancer or one (load balancer, target group) pair.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    shards: [Shard; SHARDS],
}

/// A sum of the shards, taken (and zeroed) at a flush.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HttpTotals {
    pub requests: u64,
    pub grpc_requests: u64,
    pub target_codes: [u64; 4],
    pub elb_4xx: u64,
    pub elb_502: u64,
    pub elb_503: u64,
    pub elb_504: u64,
    pub elb_5xx_other: u64,
    pub redirects: u64,
    pub fixed_responses: u64,
    pub target_connection_errors: u64,
    pub target_tls_errors: u64,
    pub response_count: u64,
    pub response_sum_us: u64,
    pub response_min_us: u64,
    pub response_max_us: u64,
}

impl HttpMetrics {
    fn shard(&self) -> &HttpCounters {
        &self.shards[shard_index()].0
    }

    pub fn request(&self) {
        self.shard().requests.fetch_add(1, Relaxed);
    }

    /// A request that is a gRPC call (counted as a request too, by [`HttpMetrics::request`]).
    pub fn grpc_request(&self) {
        self.shard().grpc_requests.fetch_add(1, Relaxed);
    }

    /// A response from a target, `elapsed` after the request left for it.
    pub fn target_response(&self, status: u16, elapsed: Duration) {
        let shard = self.shard();
        if (200..600).contains(&status) {
            shard.target_codes[usize::from(status / 100 - 2)].fetch_add(1, Relaxed);
        }
        let us = elapsed.as_micros() as u64;
        shard.response_count.fetch_add(1, Relaxed);
        shard.response_sum_us.fetch_add(us, Relaxed);
        // `fetch_min`/`fetch_max` are compare-and-swap loops: looked at first, most responses
        // move neither bound and need no locked instruction.
        if us < shard.response_min_us.load(Relaxed) {
            shard.response_min_us.fetch_min(us, Relaxed);
        }
        if us > shard.response_max_us.load(Relaxed) {
            shard.response_max_us.fetch_max(us, Relaxed);
        }
    }

    /// An error the load balancer answered itself.
    pub fn elb_error(&self, status: u16) {
        let shard = self.shard();
        let counter = match status {
            502 => &shard.elb_502,
            503 => &shard.elb_503,
            504 => &shard.elb_504,
            400..=499 => &shard.elb_4xx,
            _ => &shard.elb_5xx_other,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn redirect(&self) {
        self.shard().redirects.fetch_add(1, Relaxed);
    }

    /// A connection to a target that could not be opened, or (`tls`) whose TLS handshake
    /// failed.
    pub fn target_connection_error(&self, tls: bool) {
        let shard = self.shard();
        let counter = if tls {
            &shard.target_tls_errors
        } else {
            &shard.target_connection_errors
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn fixed_response(&self) {
        self.shard().fixed_responses.fetch_add(1, Relaxed);
    }

    /// Sums and zeroes the shards.
    pub fn take(&self) -> HttpTotals {
        let mut totals = HttpTotals {
            response_min_us: u64::MAX,
            ..HttpTotals::default()
        };
        for Shard(c) in &self.shards {
            totals.requests += c.requests.swap(0, Relaxed);
            totals.grpc_requests += c.grpc_requests.swap(0, Relaxed);
            for (total, counter) in totals.target_codes.iter_mut().zip(&c.target_codes) {
                *total += counter.swap(0, Relaxed);
            }
            totals.elb_4xx += c.elb_4xx.swap(0, Relaxed);
            totals.elb_502 += c.elb_502.swap(0, Relaxed);
            totals.elb_503 += c.elb_503.swap(0, Relaxed);
            totals.elb_504 += c.elb_504.swap(0, Relaxed);
            totals.elb_5xx_other += c.elb_5xx_other.swap(0, Relaxed);
            totals.redirects += c.redirects.swap(0, Relaxed);
            totals.fixed_responses += c.fixed_responses.swap(0, Relaxed);
            totals.target_connection_errors += c.target_connection_errors.swap(0, Relaxed);
            totals.target_tls_errors += c.target_tls_errors.swap(0, Relaxed);
            totals.response_count += c.response_count.swap(0, Relaxed);
            totals.response_sum_us += c.response_sum_us.swap(0, Relaxed);
            totals.response_min_us = totals
                .response_min_us
                .min(c.response_min_us.swap(u64::MAX, Relaxed));
            totals.response_max_us = totals
                .response_max_us
                .max(c.response_max_us.swap(0, Relaxed));
        }
        // A response counted while this ran may have put its count and its bounds in
        // different windows: the bounds are kept around the mean, so a window never reports a
        // count without a minimum (u64::MAX) or a minimum above its maximum.
        if let Some(mean) = totals.response_sum_us.checked_div(totals.response_count) {
            totals.response_min_us = totals.response_min_us.min(mean);
            totals.response_max_us = totals.response_max_us.max(mean);
        }
        totals
    }
}

/// Flow counters of an NLB, per protocol (CloudWatch has each protocol's and their total).
#[derive(Debug, Default)]
pub struct FlowMetrics {
    pub tcp: FlowCounters,
    pub tls: FlowCounters,
    pub udp: FlowCounters,
    /// Resets of TCP and TLS flows: by their clients and by their targets (each passed on to
    /// the other side), and the load balancer's own (a flow it could not give a target).
    pub client_resets: AtomicU64,
    pub target_resets: AtomicU64,
    pub elb_resets: AtomicU64,
    /// Connections to targets that found no free local port.
    pub port_allocation_errors: AtomicU64,
}

impl FlowMetrics {
    /// The protocols with their metric name suffixes.
    pub fn by_protocol(&self) -> [(&'static str, &FlowCounters); 3] {
        [("TCP", &self.tcp), ("TLS", &self.tls), ("UDP", &self.udp)]
    }
}

/// The flows of one protocol.
#[derive(Debug, Default)]
pub struct FlowCounters {
    pub new_flows: AtomicU64,
    pub active_flows: AtomicI64,
    pub processed_bytes: AtomicU64,
}

/// The client connections of one load balancer (counted once per connection, not per
/// request).
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// ALBs' client connections accepted, and open now.
    pub new_connections: AtomicU64,
    pub active_connections: AtomicI64,
    /// TLS handshakes with clients that failed (ALB and NLB).
    pub tls_negotiation_errors: AtomicU64,
}

impl ConnectionCounters {
    /// A client connection accepted: counted new and open until the guard drops.
    pub fn open(&self) -> OpenConnection<'_> {
        self.new_connections.fetch_add(1, Relaxed);
        self.active_connections.fetch_add(1, Relaxed);
        OpenConnection(self)
    }

    pub fn tls_negotiation_error(&self) {
        self.tls_negotiation_errors.fetch_add(1, Relaxed);
    }
}

/// Counts a client connection as active while it lives.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a ConnectionCounters);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Relaxed);
    }
}

/// The counters of one load balancer.
#[derive(Debug, Default)]
pub struct LoadBalancerMetrics {
    pub http: HttpMetrics,
    pub flows: FlowMetrics,
    pub connections: ConnectionCounters,
}

/// Builds datums in one namespace with one set of dimensions.
pub struct DatumBuilder<'a> {
    pub namespace: &'static str,
    pub dimensions: Vec<(String, String)>,
    pub timestamp_ms: i64,
    pub out: &'a mut Vec<MetricDatum>,
}

impl DatumBuilder<'_> {
    pub fn for_kind(kind: LoadBalancerKind) -> &'static str {
        match kind {
            LoadBalancerKind::Application => "AWS/ApplicationELB",
            LoadBalancerKind::Network => "AWS/NetworkELB",
        }
    }

    /// A count, left out when zero unless `always`.
    pub fn count(&mut self, name: &str, value: u64, always: bool) {
        if value > 0 || always {
            self.push(name, "Count", 1.0, value as f64);
        }
    }

    pub fn bytes(&mut self, name: &str, value: u64) {
        if value > 0 {
            self.push(name, "Bytes", 1.0, value as f64);
        }
    }

    pub fn http(&mut self, totals: &HttpTotals, load_balancer_level: bool) {
        self.count("RequestCount", totals.requests, false);
        self.count("GrpcRequestCount", totals.grpc_requests, false);
        for (class, &value) in totals.target_codes.iter().enumerate() {
            self.count(
                &format!("HTTPCode_Target_{}XX_Count", class + 2),
                value,
                false,
            );
        }
        if totals.response_count > 0 {
            let seconds = |us: u64| us as f64 / 1_000_000.0;
            self.push_set(
                "TargetResponseTime",
                "Seconds",
                totals.response_count as f64,
                seconds(totals.response_sum_us),
                seconds(totals.response_min_us),
                seconds(totals.response_max_us),
            );
        }
        self.count(
            "TargetConnectionErrorCount",
            totals.target_connection_errors,
            false,
        );
        self.count(
            "TargetTLSNegotiationErrorCount",
            totals.target_tls_errors,
            false,
        );
        if load_balancer_level {
            let elb_5xx = totals.elb_502 + totals.elb_503 + totals.elb_504 + totals.elb_5xx_other;
            // Redirect actions are the load balancer's only 3XX answers.
            self.count("HTTPCode_ELB_3XX_Count", totals.redirects, false);
            self.count("HTTPCode_ELB_4XX_Count", totals.elb_4xx, false);
            self.count("HTTPCode_ELB_5XX_Count", elb_5xx, false);
            self.count("HTTPCode_ELB_502_Count", totals.elb_502, false);
            self.count("HTTPCode_ELB_503_Count", totals.elb_503, false);
            self.count("HTTPCode_ELB_504_Count", totals.elb_504, false);
            self.count("HTTP_Redirect_Count", totals.redirects, false);
            self.count("HTTP_Fixed_Response_Count", totals.fixed_responses, false);
        }
    }

    /// One datum of a single value.
    pub fn push(&mut self, name: &str, unit: &str, samples: f64, value: f64) {
        self.push_set(name, unit, samples, value, value, value);
    }

    fn push_set(&mut self, name: &str, unit: &str, samples: f64, sum: f64, min: f64, max: f64) {
        self.out.push(MetricDatum {
            namespace: self.namespace.to_string(),
            metric_name: name.to_string(),
            dimensions: self.dimensions.clone(),
            timestamp_ms: self.timestamp_ms,
            unit: unit.to_string(),
            sample_count: samples,
            sum,
            minimum: min,
            maximum: max,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_and_reset() {
        let metrics = HttpMetrics::default();
        metrics.request();
        metrics.request();
        metrics.target_response(200, Duration::from_millis(3));
        metrics.target_response(503, Duration::from_millis(1));
        metrics.elb_error(502);
        let totals = metrics.take();
        assert_eq!(totals.requests, 2);
        assert_eq!(totals.target_codes, [1, 0, 0, 1]);
        assert_eq!(totals.elb_502, 1);
        assert_eq!(totals.response_count, 2);
        assert_eq!(totals.response_min_us, 1000);
        assert_eq!(totals.response_max_us, 3000);
        assert_eq!(metrics.take().requests, 0);
    }

    #[test]
    fn a_count_without_bounds_in_its_window_reports_the_mean_as_bounds() {
        // What a response counted across a flush can leave: its count here, its bounds in
        // the window before.
        let metrics = HttpMetrics::default();
        let shard = metrics.shard();
        shard.response_count.fetch_add(2, Relaxed);
        shard.response_sum_us.fetch_add(3000, Relaxed);
        let totals = metrics.take();
        assert_eq!(
            (totals.response_min_us, totals.response_max_us),
            (1500, 1500)
        );
        // Bounds that are there stay.
        metrics.target_response(200, Duration::from_millis(1));
        metrics.target_response(200, Duration::from_millis(5));
        let totals = metrics.take();
        assert_eq!(
            (totals.response_min_us, totals.response_max_us),
            (1000, 5000)
        );
    }

    /// The ALB datums of `totals`, for a load balancer or (not `load_balancer_level`) a pair.
    fn http_datums(totals: &HttpTotals, load_balancer_level: bool) -> Vec<MetricDatum> {
        let mut out = Vec::new();
        DatumBuilder {
            namespace: "AWS/ApplicationELB",
            dimensions: vec![("LoadBalancer".into(), "app/web/1".into())],
            timestamp_ms: 1,
            out: &mut out,
        }
        .http(totals, load_balancer_level);
        out
    }

    #[test]
    fn datums_leave_out_zero_counts() {
        let out = http_datums(
            &HttpTotals {
                requests: 3,
                target_codes: [3, 0, 0, 0],
                response_count: 3,
                response_sum_us: 3_000,
                response_min_us: 500,
                response_max_us: 1_500,
                ..HttpTotals::default()
            },
            true,
        );
        let names: Vec<&str> = out.iter().map(|d| d.metric_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "RequestCount",
                "HTTPCode_Target_2XX_Count",
                "TargetResponseTime"
            ]
        );
        assert_eq!(out[2].sample_count, 3.0);
        assert!((out[2].sum - 0.003).abs() < 1e-9);
    }

    #[test]
    fn redirects_count_as_the_load_balancers_3xx_answers() {
        let totals = HttpTotals {
            requests: 2,
            redirects: 2,
            ..HttpTotals::default()
        };
        let out = http_datums(&totals, true);
        let counted = |name: &str| out.iter().find(|d| d.metric_name == name).map(|d| d.sum);
        assert_eq!(counted("HTTPCode_ELB_3XX_Count"), Some(2.0));
        assert_eq!(counted("HTTP_Redirect_Count"), Some(2.0));
        // A target group's datums carry no load balancer answers.
        let pair = http_datums(&totals, false);
        assert!(pair
            .iter()
            .all(|d| d.metric_name != "HTTPCode_ELB_3XX_Count"));
    }
}
