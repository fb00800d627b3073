//! CloudWatch against a real in-process server, in all three wire protocols: the AWS SDK for
//! Rust (RPC v2 CBOR), raw signed JSON 1.0 and Query requests, and boto3 (JSON 1.0 with
//! `x-amzn-query-mode`); alarm evaluation on a manual clock.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, DimensionFilter, HistoryItemType, Metric, MetricDataQuery,
    MetricDatum, MetricStat, StandardUnit, StateValue, Statistic, StatisticSet, Tag,
};
use serde_json::{json, Value};
use store::clock::{Clock, ManualClock, SystemClock};
use support::{cloudwatch_client, signed_request, TestServer};

const NAMESPACE: &str = "Wharf/Test";
const TARGET: &str = "GraniteServiceVersion20100801";

/// A manual clock at the start of the current minute plus five seconds (SigV4 needs the server's
/// clock near real time; tests advance it by at most a few minutes).
fn manual_clock() -> (Arc<ManualClock>, i64) {
    let now = SystemClock.now_millis();
    let minute = now - now.rem_euclid(60_000);
    (Arc::new(ManualClock::new(minute + 5_000)), minute)
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn ts(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

async fn json_call(server: &TestServer, operation: &str, input: Value) -> support::RawResponse {
    let target = format!("{TARGET}.{operation}");
    signed_request(
        server,
        "monitoring",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", &target),
            ("x-amzn-query-mode", "true"),
        ],
        &serde_json::to_vec(&input).expect("json"),
        None,
    )
    .await
}

async fn query_call(server: &TestServer, form: &str) -> support::RawResponse {
    signed_request(
        server,
        "monitoring",
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        form.as_bytes(),
        None,
    )
    .await
}

/// A signed POST to `path` with a binary body; (status, headers, body).
async fn raw_binary(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let identity = aws_credential_types::Credentials::new(
        &server.credentials.access_key_id,
        &server.credentials.secret_access_key,
        None,
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(support::REGION)
        .name("monitoring")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let url = format!("{}{path}", server.endpoint());
    let mut all: Vec<(String, String)> =
        vec![("host".into(), server.server.local_addr().to_string())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let signable = SignableRequest::new(
        "POST",
        &url,
        all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
    let mut request = http::Request::builder().method("POST").uri(&url);
    for (k, v) in &all {
        request = request.header(k, v);
    }
    let mut request = request.body(()).expect("request");
    instructions.apply_to_request_http1x(&mut request);
    let mut head = format!("POST {path} HTTP/1.1\r\n");
    for (k, v) in request.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(server.server.local_addr())
        .await
        .expect("connects");
    stream.write_all(head.as_bytes()).await.expect("writes");
    stream.write_all(body).await.expect("writes body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("reads");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Publish the shared test data at `at_ms`: Latency{Service=web} 10, 20, 30 and 40×2;
/// Requests{Service=web} as a statistic set; Latency{Service=api} 1.
async fn put_test_data(cw: &aws_sdk_cloudwatch::Client, at_ms: i64) {
    let web = dimension("Service", "web");
    let latency = |v: f64| {
        MetricDatum::builder()
            .metric_name("Latency")
            .dimensions(web.clone())
            .timestamp(ts(at_ms))
            .unit(StandardUnit::Milliseconds)
            .value(v)
            .build()
    };
    cw.put_metric_data()
        .namespace(NAMESPACE)
        .metric_data(latency(10.0))
        .metric_data(latency(20.0))
        .metric_data(latency(30.0))
        .metric_data(
            MetricDatum::builder()
                .metric_name("Latency")
                .dimensions(web.clone())
                .timestamp(ts(at_ms))
                .unit(StandardUnit::Milliseconds)
                .values(40.0)
                .counts(2.0)
                .build(),
        )
        .metric_data(
            MetricDatum::builder()
                .metric_name("Requests")
                .dimensions(web.clone())
                .timestamp(ts(at_ms))
                .unit(StandardUnit::Count)
                .statistic_values(
                    StatisticSet::builder()
                        .sample_count(4.0)
                        .sum(100.0)
                        .minimum(10.0)
                        .maximum(40.0)
                        .build(),
                )
                .build(),
        )
        .metric_data(
            MetricDatum::builder()
                .metric_name("Latency")
                .dimensions(dimension("Service", "api"))
                .timestamp(ts(at_ms))
                .value(1.0)
                .storage_resolution(1)
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData");
}

#[tokio::test]
async fn sdk_cbor_publishes_and_reads_metrics() {
    let (clock, minute) = manual_clock();
    let server = support::start_with(clock.clone(), Default::default()).await;
    let cw = cloudwatch_client(&server).await;
    put_test_data(&cw, minute + 5_000).await;

    let stats = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("Latency")
        .dimensions(dimension("Service", "web"))
        .start_time(ts(minute - 60_000))
        .end_time(ts(minute + 120_000))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .statistics(Statistic::Average)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .extended_statistics("p50")
        .send()
        .await
        .expect("GetMetricStatistics");
    assert_eq!(stats.label(), Some("Latency"));
    let points = stats.datapoints();
    assert_eq!(points.len(), 1, "{points:?}");
    let p = &points[0];
    assert_eq!(p.timestamp(), Some(&ts(minute)));
    assert_eq!(p.sample_count(), Some(5.0));
    assert_eq!(p.sum(), Some(140.0));
    assert_eq!(p.average(), Some(28.0));
    assert_eq!(p.minimum(), Some(10.0));
    assert_eq!(p.maximum(), Some(40.0));
    assert_eq!(p.unit(), Some(&StandardUnit::Milliseconds));
    assert_eq!(
        p.extended_statistics().and_then(|m| m.get("p50")),
        Some(&30.0)
    );

    let stat = |id: &str, name: &str, s: &str, return_data: bool| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(NAMESPACE)
                            .metric_name(name)
                            .dimensions(dimension("Service", "web"))
                            .build(),
                    )
                    .period(60)
                    .stat(s)
                    .build(),
            )
            .return_data(return_data)
            .build()
    };
    let data = cw
        .get_metric_data()
        .metric_data_queries(stat("m1", "Latency", "Sum", true))
        .metric_data_queries(stat("m2", "Requests", "Sum", false))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("e1")
                .expression("m1 + m2")
                .build(),
        )
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("e2")
                .expression("m1 / 2")
                .label("half")
                .build(),
        )
        .start_time(ts(minute - 60_000))
        .end_time(ts(minute + 120_000))
        .send()
        .await
        .expect("GetMetricData");
    let results = data.metric_data_results();
    let ids: Vec<&str> = results.iter().filter_map(|r| r.id()).collect();
    assert_eq!(ids, vec!["m1", "e1", "e2"]);
    assert_eq!(results[0].label(), Some("Latency"));
    assert_eq!(results[0].values(), &[140.0]);
    assert_eq!(results[0].timestamps(), &[ts(minute)]);
    assert_eq!(results[1].values(), &[240.0]);
    assert_eq!(results[2].values(), &[70.0]);
    assert_eq!(results[2].label(), Some("half"));
    assert_eq!(
        results[0].status_code(),
        Some(&aws_sdk_cloudwatch::types::StatusCode::Complete)
    );

    let all = cw
        .list_metrics()
        .namespace(NAMESPACE)
        .send()
        .await
        .expect("ListMetrics");
    assert_eq!(all.metrics().len(), 3, "{:?}", all.metrics());
    let web = cw
        .list_metrics()
        .namespace(NAMESPACE)
        .metric_name("Latency")
        .dimensions(
            DimensionFilter::builder()
                .name("Service")
                .value("web")
                .build(),
        )
        .send()
        .await
        .expect("ListMetrics filtered");
    assert_eq!(web.metrics().len(), 1);
    assert_eq!(web.metrics()[0].dimensions()[0].value(), Some("web"));
    let recent = cw
        .list_metrics()
        .recently_active(aws_sdk_cloudwatch::types::RecentlyActive::Pt3H)
        .send()
        .await
        .expect("ListMetrics recent");
    assert_eq!(recent.metrics().len(), 3);

    // The same data over JSON 1.0 …
    let response = json_call(
        &server,
        "GetMetricStatistics",
        json!({
            "Namespace": NAMESPACE, "MetricName": "Latency",
            "Dimensions": [{"Name": "Service", "Value": "web"}],
            "StartTime": (minute - 60_000) / 1000, "EndTime": (minute + 120_000) / 1000,
            "Period": 60, "Statistics": ["Sum", "Average"]
        }),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    let body = response.json();
    assert_eq!(body["Label"], "Latency");
    assert_eq!(body["Datapoints"][0]["Sum"], 140.0);
    assert_eq!(body["Datapoints"][0]["Average"], 28.0);
    assert_eq!(
        body["Datapoints"][0]["Timestamp"],
        json!(minute as f64 / 1000.0)
    );
    let response = json_call(
        &server,
        "ListMetrics",
        json!({"Namespace": NAMESPACE, "MetricName": "Requests"}),
    )
    .await;
    assert_eq!(
        response.json()["Metrics"][0]["Dimensions"],
        json!([{"Name": "Service", "Value": "web"}])
    );

    // … and over Query, with XML answers.
    let start = protocol::shape::format_iso8601((minute - 60_000) as f64 / 1000.0);
    let end = protocol::shape::format_iso8601((minute + 120_000) as f64 / 1000.0);
    let response = query_call(
        &server,
        &format!(
            "Action=GetMetricStatistics&Version=2010-08-01&Namespace=Wharf%2FTest&MetricName=Latency\
             &Dimensions.member.1.Name=Service&Dimensions.member.1.Value=web&StartTime={start}&EndTime={end}\
             &Period=60&Statistics.member.1=Sum&Statistics.member.2=Maximum&ExtendedStatistics.member.1=p50"
        ),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("text/xml"));
    let body = &response.body;
    assert!(
        body.contains("<GetMetricStatisticsResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><GetMetricStatisticsResult><Label>Latency</Label><Datapoints><member>"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "<Timestamp>{}</Timestamp>",
            protocol::shape::format_iso8601(minute as f64 / 1000.0)
        )),
        "{body}"
    );
    assert!(body.contains("<Sum>140.0</Sum><Maximum>40.0</Maximum><Unit>Milliseconds</Unit><ExtendedStatistics><entry><key>p50</key><value>30.0</value></entry></ExtendedStatistics>"), "{body}");
    assert!(body.contains("<ResponseMetadata><RequestId>"), "{body}");
    let response = query_call(
        &server,
        "Action=ListMetrics&Version=2010-08-01&Namespace=Wharf%2FTest&Dimensions.member.1.Name=Service&Dimensions.member.1.Value=api",
    )
    .await;
    assert!(
        response.body.contains("<Metrics><member><Namespace>Wharf/Test</Namespace><MetricName>Latency</MetricName><Dimensions><member><Name>Service</Name><Value>api</Value></member></Dimensions></member></Metrics>"),
        "{}",
        response.body
    );
    let response = query_call(
        &server,
        &format!(
            "Action=GetMetricData&Version=2010-08-01&StartTime={start}&EndTime={end}&ScanBy=TimestampAscending\
             &MetricDataQueries.member.1.Id=m1&MetricDataQueries.member.1.MetricStat.Metric.Namespace=Wharf%2FTest\
             &MetricDataQueries.member.1.MetricStat.Metric.MetricName=Requests\
             &MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name=Service\
             &MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value=web\
             &MetricDataQueries.member.1.MetricStat.Period=60&MetricDataQueries.member.1.MetricStat.Stat=Average"
        ),
    )
    .await;
    assert!(
        response
            .body
            .contains("<Values><member>25.0</member></Values><StatusCode>Complete</StatusCode>"),
        "{}",
        response.body
    );

    // A Query PutMetricData is visible to the SDK.
    let response = query_call(
        &server,
        "Action=PutMetricData&Version=2010-08-01&Namespace=Wharf%2FQuery&MetricData.member.1.MetricName=Q&MetricData.member.1.Value=2.5",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.body.contains("<PutMetricDataResponse xmlns="),
        "{}",
        response.body
    );
    let listed = cw
        .list_metrics()
        .namespace("Wharf/Query")
        .send()
        .await
        .expect("ListMetrics");
    assert_eq!(listed.metrics()[0].metric_name(), Some("Q"));
    server.server.shutdown().await;
}

#[tokio::test]
async fn large_put_metric_data_is_gzipped_by_the_sdk_and_accepted() {
    let server = support::start().await;
    let cw = cloudwatch_client(&server).await;
    // Enough data to pass the SDK's 10 KiB compression threshold.
    let mut request = cw.put_metric_data().namespace("Wharf/Big");
    for i in 0..300 {
        request = request.metric_data(
            MetricDatum::builder()
                .metric_name(format!("metric-with-a-long-name-{i:04}"))
                .dimensions(dimension("Host", &format!("host-{i:04}-with-padding")))
                .value(i as f64)
                .build(),
        );
    }
    request.send().await.expect("compressed PutMetricData");
    let mut count = 0;
    let mut pages = cw
        .list_metrics()
        .namespace("Wharf/Big")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        count += page.expect("page").metrics().len();
    }
    assert_eq!(count, 300);
    server.server.shutdown().await;
}

#[tokio::test]
async fn errors_in_every_protocol() {
    let (clock, minute) = manual_clock();
    let server = support::start_with(clock, Default::default()).await;
    let cw = cloudwatch_client(&server).await;

    // CBOR, through the SDK: typed errors with the legacy codes.
    let err = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("Latency")
        .start_time(ts(minute - 3_600_000))
        .end_time(ts(minute))
        .period(45)
        .statistics(Statistic::Sum)
        .send()
        .await
        .expect_err("period 45 is refused");
    let service = err.as_service_error().expect("service error");
    assert!(
        service.is_invalid_parameter_value_exception(),
        "{service:?}"
    );
    assert_eq!(
        aws_sdk_cloudwatch::error::ProvideErrorMetadata::code(service),
        Some("InvalidParameterValue")
    );
    let err = cw
        .get_metric_statistics()
        .namespace(NAMESPACE)
        .metric_name("Latency")
        .start_time(ts(minute - 1441 * 60_000))
        .end_time(ts(minute))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .expect_err("too many datapoints");
    let service = err.as_service_error().expect("service error");
    assert!(
        service.is_invalid_parameter_combination_exception(),
        "{service:?}"
    );
    assert_eq!(
        aws_sdk_cloudwatch::error::ProvideErrorMetadata::message(service),
        Some("You have requested up to 1,441 datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range.")
    );
    let err = cw
        .put_metric_data()
        .namespace(NAMESPACE)
        .metric_data(
            MetricDatum::builder()
                .metric_name("M")
                .value(1.0)
                .statistic_values(
                    StatisticSet::builder()
                        .sample_count(1.0)
                        .sum(1.0)
                        .minimum(1.0)
                        .maximum(1.0)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect_err("Value and StatisticValues together");
    let service = err.as_service_error().expect("service error");
    assert!(
        service.is_invalid_parameter_combination_exception(),
        "{service:?}"
    );
    let err = cw
        .set_alarm_state()
        .alarm_name("nope")
        .state_value(StateValue::Ok)
        .state_reason("r")
        .send()
        .await
        .expect_err("no alarm");
    assert!(
        err.as_service_error()
            .expect("service error")
            .is_resource_not_found(),
        "{err:?}"
    );

    // Raw CBOR: the error document and headers.
    let path = format!("/service/{TARGET}/operation/ListMetrics");
    let bad = protocol::cbor::encode(&protocol::cbor::Value::Map(vec![(
        protocol::cbor::Value::Text("RecentlyActive".into()),
        protocol::cbor::Value::Text("PT1H".into()),
    )]));
    let (status, headers, body) = raw_binary(
        &server,
        &path,
        &[
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        &bad,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "smithy-protocol"), Some("rpc-v2-cbor"));
    assert_eq!(header(&headers, "content-type"), Some("application/cbor"));
    assert_eq!(
        header(&headers, "x-amzn-query-error"),
        Some("InvalidParameterValue;Sender")
    );
    let decoded = protocol::cbor::decode(&body).expect("cbor error body");
    let protocol::cbor::Value::Map(entries) = decoded else {
        panic!("not a map")
    };
    assert!(entries.contains(&(
        protocol::cbor::Value::Text("__type".into()),
        protocol::cbor::Value::Text("InvalidParameterValueException".into())
    )));
    let (status, headers, _) = raw_binary(
        &server,
        &format!("/service/{TARGET}/operation/Frobnicate"),
        &[
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        &[0xa0],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "x-amzn-query-error"),
        Some("InvalidAction;Sender")
    );
    let (status, _, body) = raw_binary(
        &server,
        &path,
        &[
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        &[0x9f, 0x01],
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("SerializationException"));

    // JSON 1.0.
    let response = json_call(
        &server,
        "GetMetricStatistics",
        json!({"Namespace": NAMESPACE, "MetricName": "M", "StartTime": 0, "EndTime": 60, "Period": 60}),
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json()["__type"],
        "InvalidParameterCombinationException"
    );
    assert_eq!(
        response.header("x-amzn-query-error"),
        Some("InvalidParameterCombination;Sender")
    );
    let response = json_call(
        &server,
        "PutMetricData",
        json!({"MetricData": [{"MetricName": "M", "Value": 1}]}),
    )
    .await;
    assert_eq!(
        response.json()["__type"],
        "MissingRequiredParameterException"
    );
    assert_eq!(
        response.json()["message"],
        "The parameter Namespace is required."
    );
    assert_eq!(
        response.header("x-amzn-query-error"),
        Some("MissingParameter;Sender")
    );
    let response = json_call(
        &server,
        "PutMetricData",
        json!({"Namespace": "AWS/EC2", "MetricData": [{"MetricName": "M", "Value": 1}]}),
    )
    .await;
    assert_eq!(
        response.json()["message"],
        "The value AWS/EC2 for parameter Namespace is invalid."
    );
    let response = json_call(&server, "ListMetrics", json!({"Namespace": {"a": 1}})).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "SerializationException");
    let response = json_call(&server, "Frobnicate", json!({})).await;
    assert_eq!(response.json()["__type"], "UnknownOperationException");
    let response = json_call(&server, "DescribeAlarms", json!({"NextToken": "forged"})).await;
    assert_eq!(response.json()["__type"], "InvalidNextToken");

    // Query.
    let response = query_call(
        &server,
        "Action=GetMetricStatistics&Version=2010-08-01&MetricName=M",
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.header("content-type"), Some("text/xml"));
    assert!(
        response.body.contains("<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type><Code>MissingParameter</Code><Message>The parameter Namespace is required.</Message></Error><RequestId>"),
        "{}",
        response.body
    );
    let response = query_call(
        &server,
        "Action=ListMetrics&Version=2010-08-01&RecentlyActive=PT1H",
    )
    .await;
    assert!(
        response.body.contains("<Code>InvalidParameterValue</Code>"),
        "{}",
        response.body
    );
    let response = query_call(
        &server,
        "Action=GetMetricStatistics&Version=2010-08-01&Period=sixty",
    )
    .await;
    assert!(
        response.body.contains("<Code>InvalidParameterValue</Code>"),
        "{}",
        response.body
    );
    let response = query_call(&server, "Action=Frobnicate&Version=2010-08-01").await;
    assert!(
        response.body.contains("<Code>InvalidAction</Code>"),
        "{}",
        response.body
    );
    let response = query_call(&server, "Action=DeleteAlarms&Version=2010-08-01").await;
    assert!(
        response.body.contains("<Code>MissingParameter</Code>"),
        "{}",
        response.body
    );
    server.server.shutdown().await;
}

async fn alarm_state(
    cw: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> aws_sdk_cloudwatch::types::MetricAlarm {
    let out = cw
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .expect("DescribeAlarms");
    out.metric_alarms().first().cloned().expect("alarm exists")
}

/// Wait (real time) until the evaluator has moved `name` to `state`.
async fn wait_for_state(
    cw: &aws_sdk_cloudwatch::Client,
    name: &str,
    state: StateValue,
) -> aws_sdk_cloudwatch::types::MetricAlarm {
    for _ in 0..100 {
        let alarm = alarm_state(cw, name).await;
        if alarm.state_value() == Some(&state) {
            return alarm;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "alarm {name} never reached {state:?}: {:?}",
        alarm_state(cw, name).await
    );
}

/// Let the evaluator run a few passes at the current clock.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1_300)).await;
}

async fn put_value(cw: &aws_sdk_cloudwatch::Client, metric: &str, at_ms: i64, value: f64) {
    cw.put_metric_data()
        .namespace("Wharf/Alarms")
        .metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .timestamp(ts(at_ms))
                .value(value)
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData");
}

#[tokio::test]
async fn alarm_goes_from_insufficient_data_to_alarm_to_ok_with_history() {
    let (clock, minute) = manual_clock();
    let server = support::start_with(clock.clone(), Default::default()).await;
    let cw = cloudwatch_client(&server).await;
    cw.put_metric_alarm()
        .alarm_name("cpu-high")
        .alarm_description("CPU above 80")
        .namespace("Wharf/Alarms")
        .metric_name("CPU")
        .statistic(Statistic::Average)
        .period(60)
        .evaluation_periods(1)
        .threshold(80.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .alarm_actions("arn:aws:sns:us-east-1:123456789012:ops")
        .tags(Tag::builder().key("team").value("infra").build())
        .send()
        .await
        .expect("PutMetricAlarm");
    let alarm = alarm_state(&cw, "cpu-high").await;
    assert_eq!(alarm.state_value(), Some(&StateValue::InsufficientData));
    assert_eq!(
        alarm.state_reason(),
        Some("Unchecked: Initial alarm creation")
    );
    assert_eq!(
        alarm.alarm_arn(),
        Some("arn:aws:cloudwatch:us-east-1:123456789012:alarm:cpu-high")
    );
    assert_eq!(alarm.threshold(), Some(80.0));
    assert_eq!(alarm.period(), Some(60));
    assert_eq!(alarm.actions_enabled(), Some(true));
    assert!(alarm.state_transitioned_timestamp().is_some());
    assert!(alarm.alarm_configuration_updated_timestamp().is_some());

    put_value(&cw, "CPU", minute + 10_000, 92.5).await;
    // The minute [0, 1) ended a second ago: too recent to judge (datapoints arrive late).
    clock.set_millis(minute + 61_000);
    settle().await;
    assert_eq!(
        alarm_state(&cw, "cpu-high").await.state_reason(),
        Some("Unchecked: Initial alarm creation")
    );
    // Fifteen seconds after it ended, it is judged.
    clock.set_millis(minute + 76_000);
    let alarm = wait_for_state(&cw, "cpu-high", StateValue::Alarm).await;
    let date = {
        let c = protocol::shape::Civil::from_millis(minute);
        format!(
            "{:02}/{:02}/{:02} {:02}:{:02}:00",
            c.day,
            c.month,
            c.year % 100,
            c.hour,
            c.minute
        )
    };
    assert_eq!(
        alarm.state_reason(),
        Some(format!("Threshold Crossed: 1 out of the last 1 datapoints [92.5 ({date})] was greater than the threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition).").as_str())
    );
    let data: Value =
        serde_json::from_str(alarm.state_reason_data().expect("reason data")).expect("json");
    assert_eq!(data["recentDatapoints"], json!([92.5]));
    assert_eq!(
        alarm.state_transitioned_timestamp(),
        Some(&ts(minute + 76_000))
    );

    put_value(&cw, "CPU", minute + 70_000, 12.0).await;
    clock.set_millis(minute + 136_000);
    let alarm = wait_for_state(&cw, "cpu-high", StateValue::Ok).await;
    assert!(
        alarm
            .state_reason()
            .unwrap_or("")
            .contains("was not greater than the threshold (80.0)"),
        "{alarm:?}"
    );

    let history = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .history_item_type(HistoryItemType::StateUpdate)
        .send()
        .await
        .expect("DescribeAlarmHistory");
    let summaries: Vec<&str> = history
        .alarm_history_items()
        .iter()
        .filter_map(|i| i.history_summary())
        .collect();
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from ALARM to OK",
            "Alarm updated from INSUFFICIENT_DATA to ALARM"
        ]
    );
    let all = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .scan_by(aws_sdk_cloudwatch::types::ScanBy::TimestampAscending)
        .send()
        .await
        .expect("history");
    let kinds: Vec<&str> = all
        .alarm_history_items()
        .iter()
        .filter_map(|i| i.history_item_type())
        .map(|t| t.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "ConfigurationUpdate",
            "StateUpdate",
            "Action",
            "StateUpdate"
        ]
    );
    let action = &all.alarm_history_items()[2];
    assert!(action
        .history_summary()
        .unwrap_or("")
        .contains("arn:aws:sns:us-east-1:123456789012:ops"));
    assert!(action
        .history_data()
        .unwrap_or("")
        .contains("\"actionState\":\"Failed\""));

    // Other subsystems read alarm states straight from the store.
    let states = controlplane::cloudwatch::alarm_states(
        server.store.as_ref(),
        &["cpu-high".to_string(), "nope".to_string()],
    )
    .await
    .expect("alarm_states");
    assert_eq!(states.get("cpu-high").map(String::as_str), Some("OK"));
    assert!(!states.contains_key("nope"));

    // SetAlarmState is re-evaluated within seconds, at the same clock: the alarm returns to
    // the state its data says, with both changes in its history.
    cw.set_alarm_state()
        .alarm_name("cpu-high")
        .state_value(StateValue::Alarm)
        .state_reason("testing")
        .state_reason_data("{\"by\":\"test\"}")
        .send()
        .await
        .expect("SetAlarmState");
    let alarm = wait_for_state(&cw, "cpu-high", StateValue::Ok).await;
    assert!(
        alarm.state_reason().unwrap_or("").contains("[12.0 ("),
        "{alarm:?}"
    );
    let history = cw
        .describe_alarm_history()
        .alarm_name("cpu-high")
        .history_item_type(HistoryItemType::StateUpdate)
        .send()
        .await
        .expect("DescribeAlarmHistory");
    let summaries: Vec<&str> = history
        .alarm_history_items()
        .iter()
        .filter_map(|i| i.history_summary())
        .take(2)
        .collect();
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from ALARM to OK",
            "Alarm updated from OK to ALARM"
        ]
    );

    // Minutes without data: while the newest real datapoint is in the evaluation range (three
    // periods for one evaluation period) it is judged, and the alarm stays OK…
    clock.set_millis(minute + 256_000);
    settle().await;
    assert_eq!(
        alarm_state(&cw, "cpu-high").await.state_value(),
        Some(&StateValue::Ok)
    );
    // …then `missing`, the default, makes it INSUFFICIENT_DATA.
    clock.set_millis(minute + 316_000);
    let alarm = wait_for_state(&cw, "cpu-high", StateValue::InsufficientData).await;
    assert_eq!(
        alarm.state_reason(),
        Some("Insufficient Data: 1 datapoint was unknown.")
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn m_of_n_and_every_treat_missing_data_mode() {
    let (clock, minute) = manual_clock();
    let server = support::start_with(clock.clone(), Default::default()).await;
    let cw = cloudwatch_client(&server).await;
    let alarm = |name: &str, metric: &str, n: i32, m: i32, missing: Option<&str>| {
        let mut request = cw
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("Wharf/Alarms")
            .metric_name(metric)
            .statistic(Statistic::Maximum)
            .period(60)
            .evaluation_periods(n)
            .datapoints_to_alarm(m)
            .threshold(50.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold);
        if let Some(mode) = missing {
            request = request.treat_missing_data(mode);
        }
        request.send()
    };
    alarm("two-of-three", "Busy", 3, 2, None)
        .await
        .expect("alarm");
    alarm("three-of-three", "Busy", 3, 3, None)
        .await
        .expect("alarm");
    alarm("silent-missing", "Silent", 1, 1, Some("missing"))
        .await
        .expect("alarm");
    alarm("silent-ignore", "Silent", 1, 1, Some("ignore"))
        .await
        .expect("alarm");
    alarm("silent-breaching", "Silent", 1, 1, Some("breaching"))
        .await
        .expect("alarm");
    alarm("silent-not-breaching", "Silent", 1, 1, Some("notBreaching"))
        .await
        .expect("alarm");

    // Busy: 60, 10, 70 in three consecutive minutes, all judged at once (PutMetricData takes
    // timestamps up to two hours ahead).
    put_value(&cw, "Busy", minute + 5_000, 60.0).await;
    put_value(&cw, "Busy", minute + 65_000, 10.0).await;
    put_value(&cw, "Busy", minute + 125_000, 70.0).await;
    clock.set_millis(minute + 196_000);

    let two = wait_for_state(&cw, "two-of-three", StateValue::Alarm).await;
    assert!(
        two.state_reason()
            .unwrap_or("")
            .starts_with("Threshold Crossed: 2 out of the last 3 datapoints"),
        "{two:?}"
    );
    assert!(
        two.state_reason()
            .unwrap_or("")
            .ends_with("(minimum 2 datapoints for OK -> ALARM transition)."),
        "{two:?}"
    );
    wait_for_state(&cw, "three-of-three", StateValue::Ok).await;
    let breaching = wait_for_state(&cw, "silent-breaching", StateValue::Alarm).await;
    assert_eq!(
        breaching.state_reason(),
        Some("Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as [Breaching].")
    );
    let not_breaching = wait_for_state(&cw, "silent-not-breaching", StateValue::Ok).await;
    assert!(not_breaching
        .state_reason()
        .unwrap_or("")
        .contains("[NonBreaching]"));
    settle().await;
    let missing = alarm_state(&cw, "silent-missing").await;
    assert_eq!(missing.state_value(), Some(&StateValue::InsufficientData));
    let ignore = alarm_state(&cw, "silent-ignore").await;
    assert_eq!(ignore.state_value(), Some(&StateValue::InsufficientData));
    assert_eq!(
        ignore.state_reason(),
        Some("Unchecked: Initial alarm creation")
    );

    // `ignore` keeps an ALARM state when data stops.
    cw.set_alarm_state()
        .alarm_name("silent-ignore")
        .state_value(StateValue::Alarm)
        .state_reason("manual")
        .send()
        .await
        .expect("SetAlarmState");
    clock.set_millis(minute + 256_000);
    settle().await;
    settle().await;
    assert_eq!(
        alarm_state(&cw, "silent-ignore").await.state_value(),
        Some(&StateValue::Alarm)
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn metric_math_alarm_and_alarm_management() {
    let (clock, minute) = manual_clock();
    let server = support::start_with(clock.clone(), Default::default()).await;
    let cw = cloudwatch_client(&server).await;
    let query = |id: &str, metric: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("Wharf/Alarms")
                            .metric_name(metric)
                            .build(),
                    )
                    .period(60)
                    .stat("Sum")
                    .build(),
            )
            .return_data(false)
            .build()
    };
    cw.put_metric_alarm()
        .alarm_name("error-rate")
        .metrics(query("errors", "Errors"))
        .metrics(query("requests", "Requests"))
        .metrics(
            MetricDataQuery::builder()
                .id("rate")
                .expression("100 * errors / requests")
                .label("Error rate")
                .return_data(true)
                .build(),
        )
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("math alarm");
    put_value(&cw, "Errors", minute + 5_000, 3.0).await;
    put_value(&cw, "Requests", minute + 5_000, 20.0).await;
    clock.set_millis(minute + 76_000);
    let alarm = wait_for_state(&cw, "error-rate", StateValue::Alarm).await;
    assert!(
        alarm.state_reason().unwrap_or("").contains("[15.0 ("),
        "{alarm:?}"
    );
    assert_eq!(alarm.metrics().len(), 3);
    assert!(alarm.metric_name().is_none());

    // A single-metric alarm for the management operations.
    cw.put_metric_alarm()
        .alarm_name("errors-any")
        .namespace("Wharf/Alarms")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(0.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .ok_actions("arn:aws:sns:us-east-1:123456789012:ok")
        .send()
        .await
        .expect("alarm");
    let for_metric = cw
        .describe_alarms_for_metric()
        .namespace("Wharf/Alarms")
        .metric_name("Errors")
        .send()
        .await
        .expect("ForMetric");
    let names: Vec<&str> = for_metric
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name())
        .collect();
    assert_eq!(names, vec!["errors-any"]);
    let by_prefix = cw
        .describe_alarms()
        .alarm_name_prefix("error")
        .send()
        .await
        .expect("prefix");
    assert_eq!(by_prefix.metric_alarms().len(), 2);
    let by_action = cw
        .describe_alarms()
        .action_prefix("arn:aws:sns:us-east-1:123456789012:ok")
        .send()
        .await
        .expect("action prefix");
    assert_eq!(by_action.metric_alarms().len(), 1);
    let alarming = cw
        .describe_alarms()
        .state_value(StateValue::Alarm)
        .send()
        .await
        .expect("state");
    assert_eq!(alarming.metric_alarms().len(), 1);
    let paged = cw
        .describe_alarms()
        .max_records(1)
        .send()
        .await
        .expect("page");
    assert_eq!(paged.metric_alarms().len(), 1);
    let next = cw
        .describe_alarms()
        .max_records(1)
        .next_token(paged.next_token().expect("token"))
        .send()
        .await
        .expect("page 2");
    assert_eq!(next.metric_alarms()[0].alarm_name(), Some("errors-any"));
    assert!(next.next_token().is_none());

    cw.disable_alarm_actions()
        .alarm_names("errors-any")
        .send()
        .await
        .expect("disable");
    assert_eq!(
        alarm_state(&cw, "errors-any").await.actions_enabled(),
        Some(false)
    );
    cw.enable_alarm_actions()
        .alarm_names("errors-any")
        .send()
        .await
        .expect("enable");
    assert_eq!(
        alarm_state(&cw, "errors-any").await.actions_enabled(),
        Some(true)
    );

    let arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:errors-any";
    cw.tag_resource()
        .resource_arn(arn)
        .tags(Tag::builder().key("team").value("web").build())
        .tags(Tag::builder().key("tier").value("1").build())
        .send()
        .await
        .expect("TagResource");
    cw.untag_resource()
        .resource_arn(arn)
        .tag_keys("tier")
        .send()
        .await
        .expect("UntagResource");
    let tags = cw
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("ListTagsForResource");
    let tags: Vec<(&str, &str)> = tags
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
        .collect();
    assert_eq!(tags, vec![("team", "web")]);
    let err = cw
        .list_tags_for_resource()
        .resource_arn("arn:aws:cloudwatch:us-east-1:123456789012:alarm:nope")
        .send()
        .await
        .expect_err("missing");
    assert!(
        err.as_service_error()
            .expect("service")
            .is_resource_not_found_exception(),
        "{err:?}"
    );

    // Updating keeps the state; deleting removes the alarm.
    cw.put_metric_alarm()
        .alarm_name("error-rate")
        .metrics(query("errors", "Errors"))
        .metrics(query("requests", "Requests"))
        .metrics(
            MetricDataQuery::builder()
                .id("rate")
                .expression("100 * errors / requests")
                .return_data(true)
                .build(),
        )
        .evaluation_periods(1)
        .threshold(50.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("update");
    let updated = alarm_state(&cw, "error-rate").await;
    assert_eq!(updated.threshold(), Some(50.0));
    cw.delete_alarms()
        .alarm_names("error-rate")
        .alarm_names("errors-any")
        .send()
        .await
        .expect("DeleteAlarms");
    assert!(cw
        .describe_alarms()
        .send()
        .await
        .expect("describe")
        .metric_alarms()
        .is_empty());
    let history = cw
        .describe_alarm_history()
        .alarm_name("errors-any")
        .history_item_type(HistoryItemType::ConfigurationUpdate)
        .send()
        .await
        .expect("history");
    let summaries: Vec<&str> = history
        .alarm_history_items()
        .iter()
        .filter_map(|i| i.history_summary())
        .collect();
    assert_eq!(
        summaries,
        vec![
            "Alarm \"errors-any\" deleted",
            "Alarm \"errors-any\" created"
        ]
    );

    // Query and JSON see alarms too.
    cw.put_metric_alarm()
        .alarm_name("q")
        .namespace("Wharf/Alarms")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("alarm");
    let response = query_call(
        &server,
        "Action=DescribeAlarms&Version=2010-08-01&AlarmNames.member.1=q",
    )
    .await;
    assert!(response.body.contains("<MetricAlarms><member><AlarmName>q</AlarmName><AlarmArn>arn:aws:cloudwatch:us-east-1:123456789012:alarm:q</AlarmArn>"), "{}", response.body);
    assert!(
        response.body.contains("<Threshold>1.0</Threshold>"),
        "{}",
        response.body
    );
    let response = json_call(&server, "DescribeAlarms", json!({"AlarmNames": ["q"]})).await;
    assert_eq!(response.json()["MetricAlarms"][0]["Threshold"], 1.0);
    assert_eq!(response.json()["MetricAlarms"][0]["Dimensions"], json!([]));
    server.server.shutdown().await;
}

/// Put one high-resolution `value` per second of `[from_s, to_s)` after `minute`.
async fn put_seconds(
    cw: &aws_sdk_cloudwatch::Client,
    metric: &str,
    minute: i64,
    (from_s, to_s): (i64, i64),
    value: f64,
) {
    let mut request = cw.put_metric_data().namespace("Wharf/Alarms");
    for second in from_s..to_s {
        request = request.metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .timestamp(ts(minute + second * 1000))
                .storage_resolution(1)
                .value(value)
                .build(),
        );
    }
    request.send().await.expect("PutMetricData");
}

/// Datapoints that arrive late, as Wharf's own AWS/ECS metrics do (each second is published
/// about 11 s after it ended): a 10 s alarm judges the newest period that ended at least 15 s
/// ago, not the empty one that just ended, so it neither sits in INSUFFICIENT_DATA nor (with
/// `breaching`) alarms on data that is merely on its way. Period 20 is valid too.
#[tokio::test]
async fn high_resolution_alarms_wait_for_late_datapoints() {
    let (clock, minute) = manual_clock();
    let server = support::start_with(clock.clone(), Default::default()).await;
    let cw = cloudwatch_client(&server).await;
    let alarm = |name: &str, metric: &str, period: i32, missing: Option<&str>| {
        let mut request = cw
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("Wharf/Alarms")
            .metric_name(metric)
            .statistic(Statistic::Average)
            .period(period)
            .evaluation_periods(1)
            .threshold(50.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold);
        if let Some(mode) = missing {
            request = request.treat_missing_data(mode);
        }
        request.send()
    };
    alarm("hot-10", "Hot", 10, None).await.expect("alarm");
    alarm("hot-20", "Hot", 20, None).await.expect("period 20");
    alarm("cool-breaching", "Cool", 10, Some("breaching"))
        .await
        .expect("alarm");

    // At 0:41 the seconds up to 0:30 have arrived; [0:30, 0:40) is still on its way.
    put_seconds(&cw, "Hot", minute, (0, 30), 90.0).await;
    put_seconds(&cw, "Cool", minute, (0, 30), 10.0).await;
    clock.set_millis(minute + 41_000);
    let hot = wait_for_state(&cw, "hot-10", StateValue::Alarm).await;
    let data: Value =
        serde_json::from_str(hot.state_reason_data().expect("reason data")).expect("json");
    // [0:10, 0:20): the newest period that ended 15 s ago.
    assert_eq!(
        data["evaluatedDatapoints"][0]["timestamp"],
        json!(controlplane::cloudwatch::alarms::json_date(minute + 10_000))
    );
    wait_for_state(&cw, "hot-20", StateValue::Alarm).await;
    wait_for_state(&cw, "cool-breaching", StateValue::Ok).await;

    // Publishing goes on with the same lag: nothing flaps.
    for step in 1..=3 {
        put_seconds(&cw, "Hot", minute, (20 + step * 10, 30 + step * 10), 90.0).await;
        put_seconds(&cw, "Cool", minute, (20 + step * 10, 30 + step * 10), 10.0).await;
        clock.set_millis(minute + 41_000 + step * 10_000);
        settle().await;
    }
    for (name, state) in [
        ("hot-10", StateValue::Alarm),
        ("hot-20", StateValue::Alarm),
        ("cool-breaching", StateValue::Ok),
    ] {
        assert_eq!(
            alarm_state(&cw, name).await.state_value(),
            Some(&state),
            "{name}"
        );
        let history = cw
            .describe_alarm_history()
            .alarm_name(name)
            .history_item_type(HistoryItemType::StateUpdate)
            .send()
            .await
            .expect("history");
        assert_eq!(
            history.alarm_history_items().len(),
            1,
            "{name}: {history:?}"
        );
    }

    // GetMetricStatistics takes period 20 as well.
    let stats = cw
        .get_metric_statistics()
        .namespace("Wharf/Alarms")
        .metric_name("Hot")
        .start_time(ts(minute))
        .end_time(ts(minute + 40_000))
        .period(20)
        .statistics(Statistic::SampleCount)
        .send()
        .await
        .expect("Period 20");
    let mut counts: Vec<(i64, f64)> = stats
        .datapoints()
        .iter()
        .map(|d| {
            (
                d.timestamp().expect("timestamp").to_millis().expect("ms") - minute,
                d.sample_count().unwrap_or_default(),
            )
        })
        .collect();
    counts.sort_by_key(|(t, _)| *t);
    assert_eq!(counts, vec![(0, 20.0), (20_000, 20.0)]);
    server.server.shutdown().await;
}

/// Hostile numbers are refused by the codecs, not overflowed by the handlers.
#[tokio::test]
async fn out_of_range_numbers_are_refused() {
    let server = support::start().await;
    for (operation, input) in [
        (
            "GetMetricStatistics",
            json!({"Namespace": "N", "MetricName": "M", "StartTime": 0, "EndTime": 1e300,
                   "Period": 60, "Statistics": ["Sum"]}),
        ),
        (
            "GetMetricStatistics",
            json!({"Namespace": "N", "MetricName": "M", "StartTime": 0, "EndTime": 60,
                   "Period": 9_223_372_036_854_775_807i64, "Statistics": ["Sum"]}),
        ),
        (
            "GetMetricData",
            json!({"StartTime": -1e300, "EndTime": 60, "MetricDataQueries": [
                {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "M"},
                 "Period": 4_294_967_296i64, "Stat": "Sum"}}]}),
        ),
    ] {
        let response = json_call(&server, operation, input).await;
        assert_eq!(response.status, 400, "{operation}: {}", response.body);
    }
    // In range but absurd: a clean answer, never a panic.
    let response = json_call(
        &server,
        "GetMetricData",
        json!({"StartTime": -62_000_000_000.0, "EndTime": 253_000_000_000.0, "MetricDataQueries": [
            {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "M"},
             "Period": 2_147_483_640, "Stat": "Sum"}},
            {"Id": "e1", "Expression": "FILL(m1, 0) * 2"}]}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let response = query_call(
        &server,
        "Action=GetMetricStatistics&Version=2010-08-01&Namespace=N&MetricName=M&StartTime=0&EndTime=1e300&Period=60&Statistics.member.1=Sum",
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.body);
    server.server.shutdown().await;
}

/// boto3 over JSON 1.0 (with `x-amzn-query-mode`), including the `alarm_exists` waiter.
#[tokio::test]
async fn boto3_speaks_json_to_cloudwatch() {
    let Ok(venv) = std::env::var("WHARF_E2E_VENV") else {
        eprintln!("skipping boto3_speaks_json_to_cloudwatch: WHARF_E2E_VENV is not set (scripts/test sets it)");
        return;
    };
    let server = support::start().await;
    let script = r#"
import datetime, json, sys
import boto3
from botocore.exceptions import ClientError

cw = boto3.client("cloudwatch")
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
dims = [{"Name": "Env", "Value": "dev"}]
cw.put_metric_data(Namespace="Boto/Test", MetricData=[
    {"MetricName": "Hits", "Value": 5.0, "Unit": "Count", "Timestamp": now, "Dimensions": dims},
    {"MetricName": "Hits", "Values": [1.0, 2.0], "Counts": [1.0, 3.0], "Unit": "Count", "Timestamp": now, "Dimensions": dims},
])
stats = cw.get_metric_statistics(Namespace="Boto/Test", MetricName="Hits", Dimensions=dims,
    StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5),
    Period=60, Statistics=["Sum", "SampleCount", "Maximum"])
point = stats["Datapoints"][0]
assert point["Sum"] == 12.0, point
assert point["SampleCount"] == 5.0, point
assert isinstance(point["Timestamp"], datetime.datetime), point
data = cw.get_metric_data(MetricDataQueries=[
    {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "Boto/Test", "MetricName": "Hits", "Dimensions": dims}, "Period": 60, "Stat": "Sum"}},
    {"Id": "e1", "Expression": "m1 * 2", "Label": "double"},
], StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5))
results = {r["Id"]: r for r in data["MetricDataResults"]}
assert results["m1"]["Values"] == [12.0], results
assert results["e1"]["Values"] == [24.0] and results["e1"]["Label"] == "double", results
assert results["m1"]["StatusCode"] == "Complete"
listed = cw.list_metrics(Namespace="Boto/Test")["Metrics"]
assert listed == [{"Namespace": "Boto/Test", "MetricName": "Hits", "Dimensions": dims}], listed

cw.put_metric_alarm(AlarmName="boto-alarm", Namespace="Boto/Test", MetricName="Hits", Dimensions=dims,
    Statistic="Sum", Period=60, EvaluationPeriods=2, DatapointsToAlarm=1, Threshold=100.0,
    ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
    Tags=[{"Key": "owner", "Value": "boto"}])
cw.get_waiter("alarm_exists").wait(AlarmNames=["boto-alarm"], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
alarm = cw.describe_alarms(AlarmNames=["boto-alarm"])["MetricAlarms"][0]
assert alarm["AlarmArn"].endswith(":alarm:boto-alarm"), alarm
assert alarm["Threshold"] == 100.0 and alarm["TreatMissingData"] == "notBreaching", alarm
assert isinstance(alarm["StateUpdatedTimestamp"], datetime.datetime), alarm
tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
assert tags == [{"Key": "owner", "Value": "boto"}], tags
cw.set_alarm_state(AlarmName="boto-alarm", StateValue="ALARM", StateReason="boto says so")
pages = cw.get_paginator("describe_alarm_history").paginate(AlarmName="boto-alarm", HistoryItemType="StateUpdate")
items = [i for p in pages for i in p["AlarmHistoryItems"]]
assert any(i["HistorySummary"].endswith("to ALARM") for i in items), items

try:
    cw.get_metric_statistics(Namespace="Boto/Test", MetricName="Hits", StartTime=now, EndTime=now + datetime.timedelta(hours=1), Period=45, Statistics=["Sum"])
    raise SystemExit("Period 45 was accepted")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidParameterValue", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
try:
    cw.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="x")
    raise SystemExit("unknown alarm accepted")
except cw.exceptions.ResourceNotFound:
    pass
cw.delete_alarms(AlarmNames=["boto-alarm"])
assert cw.describe_alarms(AlarmNames=["boto-alarm"])["MetricAlarms"] == []
print("boto3 ok")
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cloudwatch_boto3.py");
    std::fs::write(&path, script).expect("script");
    let env = [
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_DEFAULT_REGION", support::REGION.to_string()),
        (
            "AWS_ACCESS_KEY_ID",
            server.credentials.access_key_id.clone(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            server.credentials.secret_access_key.clone(),
        ),
    ];
    let output = tokio::process::Command::new(format!("{venv}/bin/python"))
        .arg(&path)
        .envs(env.clone())
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "boto3 script failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The aws CLI too.
    let output = tokio::process::Command::new(format!("{venv}/bin/aws"))
        .args([
            "cloudwatch",
            "list-metrics",
            "--namespace",
            "Boto/Test",
            "--output",
            "json",
        ])
        .envs(env)
        .output()
        .await
        .expect("aws runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(listed["Metrics"][0]["MetricName"], "Hits");
    server.server.shutdown().await;
}
