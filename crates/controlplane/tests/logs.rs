//! CloudWatch Logs through `aws-sdk-cloudwatchlogs` against an in-process server: every
//! operation, AWS's validation and error codes, paging tokens, filter patterns, rejected events,
//! the retention sweep on a manual clock, and durability across a server restart.

mod support;

use std::sync::Arc;

use aws_sdk_cloudwatchlogs::types::{InputLogEvent, LogGroupClass, OrderBy};
use aws_sdk_cloudwatchlogs::Client;
use controlplane::logs::{self, LogsContext};
use controlplane::Credentials;
use serde_json::{json, Value};
use store::clock::{Clock, ManualClock, SystemClock};
use support::{error_code as code, error_message as message, TestServer, ACCOUNT, REGION};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

async fn client(server: &TestServer) -> Client {
    support::logs_client(
        &server.endpoint(),
        &server.credentials.access_key_id,
        &server.credentials.secret_access_key,
    )
    .await
}

fn now() -> i64 {
    SystemClock.now_millis()
}

fn event(timestamp: i64, message: &str) -> InputLogEvent {
    InputLogEvent::builder()
        .timestamp(timestamp)
        .message(message)
        .build()
        .expect("event")
}

async fn group_with_stream(logs: &Client, group: &str, stream: &str) {
    logs.create_log_group()
        .log_group_name(group)
        .send()
        .await
        .expect("group");
    logs.create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await
        .expect("stream");
}

async fn put(logs: &Client, group: &str, stream: &str, events: Vec<InputLogEvent>) {
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .expect("put");
}

#[tokio::test]
async fn log_groups_are_created_described_paged_and_deleted() {
    let server = support::start().await;
    let logs = client(&server).await;
    logs.create_log_group()
        .log_group_name("/ecs/web")
        .tags("team", "core")
        .log_group_class(LogGroupClass::InfrequentAccess)
        .send()
        .await
        .expect("create");
    let dup = logs
        .create_log_group()
        .log_group_name("/ecs/web")
        .send()
        .await
        .expect_err("duplicate");
    assert_eq!(code(&dup), "ResourceAlreadyExistsException");
    assert_eq!(message(&dup), "The specified log group already exists");

    let described = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/")
        .send()
        .await
        .expect("describe");
    let group = &described.log_groups()[0];
    assert_eq!(group.log_group_name(), Some("/ecs/web"));
    assert_eq!(
        group.arn(),
        Some(format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/web:*").as_str())
    );
    assert_eq!(
        group.log_group_arn(),
        Some(format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/web").as_str())
    );
    assert!(group.creation_time().unwrap_or(0) > 0);
    assert_eq!(group.stored_bytes(), Some(0));
    assert_eq!(group.retention_in_days(), None);
    assert_eq!(
        group.log_group_class(),
        Some(&LogGroupClass::InfrequentAccess)
    );

    // Paging in ASCII order with the SDK's paginator.
    for name in ["b", "a", "C", "a.b", "a-c"] {
        logs.create_log_group()
            .log_group_name(name)
            .send()
            .await
            .expect("create");
    }
    let pages: Vec<_> = logs
        .describe_log_groups()
        .limit(2)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("pages");
    assert_eq!(pages.len(), 3);
    let names: Vec<_> = pages
        .iter()
        .flat_map(|p| p.log_groups())
        .filter_map(|g| g.log_group_name())
        .collect();
    assert_eq!(names, ["/ecs/web", "C", "a", "a-c", "a.b", "b"]);

    let contains = logs
        .describe_log_groups()
        .log_group_name_pattern("ecs")
        .send()
        .await
        .expect("pattern");
    assert_eq!(contains.log_groups().len(), 1);
    let both = logs
        .describe_log_groups()
        .log_group_name_pattern("a")
        .log_group_name_prefix("a")
        .send()
        .await
        .expect_err("prefix and pattern");
    assert_eq!(code(&both), "InvalidParameterException");
    let too_many = logs
        .describe_log_groups()
        .limit(51)
        .send()
        .await
        .expect_err("limit");
    assert_eq!(
        message(&too_many),
        "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50"
    );
    let bad_token = logs
        .describe_log_groups()
        .next_token("garbage")
        .send()
        .await
        .expect_err("token");
    assert_eq!(code(&bad_token), "InvalidParameterException");

    let bad = logs
        .create_log_group()
        .log_group_name("no spaces")
        .send()
        .await
        .expect_err("bad name");
    assert_eq!(code(&bad), "InvalidParameterException");
    assert!(message(&bad).contains("at 'logGroupName' failed to satisfy constraint"));
    let long = logs
        .create_log_group()
        .log_group_name("x".repeat(513))
        .send()
        .await
        .expect_err("long name");
    assert!(message(&long).contains("Member must have length less than or equal to 512"));
    let reserved = logs
        .create_log_group()
        .log_group_name("aws/mine")
        .send()
        .await
        .expect_err("reserved");
    assert_eq!(code(&reserved), "InvalidParameterException");

    logs.delete_log_group()
        .log_group_name("b")
        .send()
        .await
        .expect("delete");
    let gone = logs
        .delete_log_group()
        .log_group_name("b")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&gone), "ResourceNotFoundException");
    assert_eq!(message(&gone), "The specified log group does not exist.");
    server.server.shutdown().await;
}

#[tokio::test]
async fn deletion_protection_blocks_delete_until_lifted() {
    let server = support::start().await;
    let logs = client(&server).await;
    logs.create_log_group()
        .log_group_name("kept")
        .deletion_protection_enabled(true)
        .send()
        .await
        .expect("create");
    let refused = logs
        .delete_log_group()
        .log_group_name("kept")
        .send()
        .await
        .expect_err("protected");
    assert_eq!(code(&refused), "ValidationException");
    logs.put_log_group_deletion_protection()
        .log_group_identifier("kept")
        .deletion_protection_enabled(false)
        .send()
        .await
        .expect("lift");
    logs.delete_log_group()
        .log_group_name("kept")
        .send()
        .await
        .expect("delete");
    server.server.shutdown().await;
}

#[tokio::test]
async fn retention_policies_take_only_aws_values() {
    let server = support::start().await;
    let logs = client(&server).await;
    logs.create_log_group()
        .log_group_name("g")
        .send()
        .await
        .expect("create");
    logs.put_retention_policy()
        .log_group_name("g")
        .retention_in_days(14)
        .send()
        .await
        .expect("retention");
    let groups = logs.describe_log_groups().send().await.expect("describe");
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(14));
    let bad = logs
        .put_retention_policy()
        .log_group_name("g")
        .retention_in_days(2)
        .send()
        .await
        .expect_err("2 days");
    assert_eq!(code(&bad), "InvalidParameterException");
    assert_eq!(
        message(&bad),
        "1 validation error detected: Value '2' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]"
    );
    logs.delete_retention_policy()
        .log_group_name("g")
        .send()
        .await
        .expect("delete retention");
    let groups = logs.describe_log_groups().send().await.expect("describe");
    assert_eq!(groups.log_groups()[0].retention_in_days(), None);
    let missing = logs
        .put_retention_policy()
        .log_group_name("nope")
        .retention_in_days(1)
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&missing), "ResourceNotFoundException");
    server.server.shutdown().await;
}

// TagLogGroup, UntagLogGroup and ListTagsLogGroup are deprecated, but clients still call them.
#[allow(deprecated)]
#[tokio::test]
async fn tags_through_both_apis() {
    let server = support::start().await;
    let logs = client(&server).await;
    logs.create_log_group()
        .log_group_name("g")
        .tags("a", "1")
        .send()
        .await
        .expect("create");
    logs.tag_log_group()
        .log_group_name("g")
        .tags("b", "2")
        .send()
        .await
        .expect("tag");
    let tags = logs
        .list_tags_log_group()
        .log_group_name("g")
        .send()
        .await
        .expect("list");
    assert_eq!(tags.tags().map(|t| t.len()), Some(2));
    logs.untag_log_group()
        .log_group_name("g")
        .tags("a")
        .send()
        .await
        .expect("untag");

    let arn = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:g");
    logs.tag_resource()
        .resource_arn(&arn)
        .tags("c", "3")
        .send()
        .await
        .expect("tag resource");
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("list");
    let tags = tags.tags().expect("tags");
    assert_eq!(tags.get("b").map(String::as_str), Some("2"));
    assert_eq!(tags.get("c").map(String::as_str), Some("3"));
    assert!(!tags.contains_key("a"));
    logs.untag_resource()
        .resource_arn(&arn)
        .tag_keys("b")
        .send()
        .await
        .expect("untag resource");

    let mut builder = logs.tag_resource().resource_arn(&arn);
    for i in 0..50 {
        builder = builder.tags(format!("k{i}"), "v");
    }
    let too_many = builder.send().await.expect_err("51 tags");
    assert_eq!(code(&too_many), "TooManyTagsException");

    let elsewhere = logs
        .list_tags_for_resource()
        .resource_arn("arn:aws:logs:eu-west-1:111111111111:log-group:g")
        .send()
        .await
        .expect_err("other account");
    assert_eq!(code(&elsewhere), "ResourceNotFoundException");
    let missing = logs
        .list_tags_log_group()
        .log_group_name("nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&missing), "ResourceNotFoundException");
    let bad_key = logs
        .tag_log_group()
        .log_group_name("g")
        .tags("bad!key", "v")
        .send()
        .await
        .expect_err("bad key");
    assert_eq!(code(&bad_key), "InvalidParameterException");
    server.server.shutdown().await;
}

#[tokio::test]
async fn log_streams_are_listed_by_name_and_by_last_event() {
    let server = support::start().await;
    let logs = client(&server).await;
    logs.create_log_group()
        .log_group_name("g")
        .send()
        .await
        .expect("group");
    for name in ["web/1", "web/2", "worker/1", "idle"] {
        logs.create_log_stream()
            .log_group_name("g")
            .log_stream_name(name)
            .send()
            .await
            .expect("stream");
    }
    let dup = logs
        .create_log_stream()
        .log_group_name("g")
        .log_stream_name("idle")
        .send()
        .await
        .expect_err("duplicate");
    assert_eq!(code(&dup), "ResourceAlreadyExistsException");
    assert_eq!(message(&dup), "The specified log stream already exists");
    let orphan = logs
        .create_log_stream()
        .log_group_name("nope")
        .log_stream_name("s")
        .send()
        .await
        .expect_err("no group");
    assert_eq!(code(&orphan), "ResourceNotFoundException");
    let colon = logs
        .create_log_stream()
        .log_group_name("g")
        .log_stream_name("a:b")
        .send()
        .await
        .expect_err("colon");
    assert_eq!(code(&colon), "InvalidParameterException");

    let t = now();
    put(&logs, "g", "web/2", vec![event(t - 3000, "x")]).await;
    put(&logs, "g", "worker/1", vec![event(t - 2000, "y")]).await;
    put(
        &logs,
        "g",
        "web/1",
        vec![event(t - 1000, "z"), event(t, "zz")],
    )
    .await;

    let by_name = logs
        .describe_log_streams()
        .log_group_name("g")
        .send()
        .await
        .expect("describe");
    let names: Vec<_> = by_name
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names, ["idle", "web/1", "web/2", "worker/1"]);
    let web1 = &by_name.log_streams()[1];
    assert_eq!(web1.first_event_timestamp(), Some(t - 1000));
    assert_eq!(web1.last_event_timestamp(), Some(t));
    assert!(web1.last_ingestion_time().is_some());
    assert_eq!(
        web1.arn(),
        Some(format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:g:log-stream:web/1").as_str())
    );
    assert_eq!(by_name.log_streams()[0].first_event_timestamp(), None);

    let prefixed = logs
        .describe_log_streams()
        .log_group_identifier(format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:g"))
        .log_stream_name_prefix("web/")
        .descending(true)
        .send()
        .await
        .expect("prefix");
    let names: Vec<_> = prefixed
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names, ["web/2", "web/1"]);

    // Newest first, one per page through the paginator.
    let pages: Vec<_> = logs
        .describe_log_streams()
        .log_group_name("g")
        .order_by(OrderBy::LastEventTime)
        .descending(true)
        .limit(1)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("pages");
    let names: Vec<_> = pages
        .iter()
        .flat_map(|p| p.log_streams())
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names, ["web/1", "worker/1", "web/2", "idle"]);

    let conflict = logs
        .describe_log_streams()
        .log_group_name("g")
        .order_by(OrderBy::LastEventTime)
        .log_stream_name_prefix("web")
        .send()
        .await
        .expect_err("order with prefix");
    assert_eq!(
        message(&conflict),
        "Cannot order by LastEventTime with a logStreamNamePrefix."
    );
    let both = logs
        .describe_log_streams()
        .log_group_name("g")
        .log_group_identifier("g")
        .send()
        .await
        .expect_err("name and identifier");
    assert_eq!(code(&both), "InvalidParameterException");

    logs.delete_log_stream()
        .log_group_name("g")
        .log_stream_name("web/1")
        .send()
        .await
        .expect("delete");
    let gone = logs
        .delete_log_stream()
        .log_group_name("g")
        .log_stream_name("web/1")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(message(&gone), "The specified log stream does not exist.");
    let group = logs.describe_log_groups().send().await.expect("describe");
    // "x" and "y" remain after web/1's "z" and "zz" went with their stream.
    assert_eq!(group.log_groups()[0].stored_bytes(), Some(2));
    server.server.shutdown().await;
}

#[tokio::test]
async fn put_log_events_follows_aws_rules() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "g", "s").await;
    let t = now();

    let accepted = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t - 10, "one"))
        .log_events(event(t - 10, "two"))
        .sequence_token("ignored-anything")
        .send()
        .await
        .expect("put");
    assert!(accepted.next_sequence_token().is_some());
    assert!(accepted.rejected_log_events_info().is_none());

    let unordered = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t, "b"))
        .log_events(event(t - 1, "a"))
        .send()
        .await
        .expect_err("order");
    assert_eq!(code(&unordered), "InvalidParameterException");
    assert_eq!(
        message(&unordered),
        "Log events in a single PutLogEvents request must be in chronological order."
    );

    let span = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t - 2 * DAY, "old"))
        .log_events(event(t, "new"))
        .send()
        .await
        .expect_err("span");
    assert_eq!(
        message(&span),
        "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
    );

    // Too old (> 14 days) and too new (> 2 hours ahead) are reported, the rest stored; the
    // 24-hour span counts only the valid ones.
    let mixed = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t - 20 * DAY, "too old 1"))
        .log_events(event(t - 15 * DAY, "too old 2"))
        .log_events(event(t - 5, "fine"))
        .log_events(event(t + 3 * HOUR, "too new"))
        .send()
        .await
        .expect("mixed");
    let info = mixed.rejected_log_events_info().expect("rejected info");
    assert_eq!(info.too_old_log_event_end_index(), Some(2));
    assert_eq!(info.too_new_log_event_start_index(), Some(3));
    assert_eq!(info.expired_log_event_end_index(), None);

    // With a 1-day retention, a 3-day-old event is expired.
    logs.put_retention_policy()
        .log_group_name("g")
        .retention_in_days(1)
        .send()
        .await
        .expect("retention");
    let expired = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t - 3 * DAY, "expired"))
        .log_events(event(t - 4, "kept"))
        .send()
        .await
        .expect("expired");
    let info = expired.rejected_log_events_info().expect("rejected info");
    assert_eq!(info.expired_log_event_end_index(), Some(1));

    let stored = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .start_from_head(true)
        .send()
        .await
        .expect("get");
    let messages: Vec<_> = stored.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(messages, ["one", "two", "fine", "kept"]);

    let too_big = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t, &"x".repeat(600_000)))
        .log_events(event(t, &"y".repeat(600_000)))
        .send()
        .await
        .expect_err("too big");
    assert_eq!(code(&too_big), "InvalidParameterException");
    assert_eq!(
        message(&too_big),
        "Upload too large: 1200052 bytes exceeds limit of 1048576"
    );

    let too_many = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .set_log_events(Some((0..10_001).map(|_| event(t, "m")).collect()))
        .send()
        .await
        .expect_err("too many");
    assert!(message(&too_many)
        .contains("at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to 10000"));

    let empty = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .log_events(event(t, ""))
        .send()
        .await
        .expect_err("empty message");
    assert!(message(&empty).contains("'logEvents.1.member.message'"));

    let missing = logs
        .put_log_events()
        .log_group_name("g")
        .log_stream_name("nope")
        .log_events(event(t, "m"))
        .send()
        .await
        .expect_err("no stream");
    assert_eq!(code(&missing), "ResourceNotFoundException");
    assert_eq!(
        message(&missing),
        "The specified log stream does not exist."
    );
    server.server.shutdown().await;
}

#[tokio::test]
async fn get_log_events_pages_forward_and_backward_with_aws_tokens() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "g", "s").await;
    let t = now() - HOUR;
    put(
        &logs,
        "g",
        "s",
        (0..25).map(|i| event(t + i, &format!("m{i}"))).collect(),
    )
    .await;
    let page = |token: Option<String>, head: bool| {
        logs.get_log_events()
            .log_group_name("g")
            .log_stream_name("s")
            .limit(10)
            .start_from_head(head)
            .set_next_token(token)
            .send()
    };
    let msgs = |out: &aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput| {
        out.events()
            .iter()
            .filter_map(|e| e.message().map(str::to_string))
            .collect::<Vec<_>>()
    };

    // From the head: 10, 10, 5, then nothing with the same token coming back.
    let p1 = page(None, true).await.expect("p1");
    assert_eq!(msgs(&p1).first().map(String::as_str), Some("m0"));
    let f1 = p1.next_forward_token().expect("f").to_string();
    assert!(f1.starts_with("f/"));
    assert!(p1.next_backward_token().expect("b").starts_with("b/"));
    let p2 = page(Some(f1.clone()), true).await.expect("p2");
    assert_eq!(msgs(&p2).first().map(String::as_str), Some("m10"));
    let p3 = page(p2.next_forward_token().map(str::to_string), true)
        .await
        .expect("p3");
    assert_eq!(msgs(&p3).len(), 5);
    let end_token = p3.next_forward_token().expect("f").to_string();
    let p4 = page(Some(end_token.clone()), true).await.expect("p4");
    assert!(p4.events().is_empty());
    assert_eq!(p4.next_forward_token(), Some(end_token.as_str()));

    // Backward from page 2 returns page 1; backward past the start returns its own token.
    let back = page(p2.next_backward_token().map(str::to_string), true)
        .await
        .expect("back");
    assert_eq!(msgs(&back), msgs(&p1));
    let start_token = back.next_backward_token().expect("b").to_string();
    let before = page(Some(start_token.clone()), true).await.expect("before");
    assert!(before.events().is_empty());
    assert_eq!(before.next_backward_token(), Some(start_token.as_str()));
    // …and forward from there again starts at m0.
    let again = page(before.next_forward_token().map(str::to_string), true)
        .await
        .expect("again");
    assert_eq!(msgs(&again), msgs(&p1));

    // From the tail: the newest 10, in ascending order.
    let tail = page(None, false).await.expect("tail");
    assert_eq!(msgs(&tail).first().map(String::as_str), Some("m15"));
    assert_eq!(msgs(&tail).last().map(String::as_str), Some("m24"));
    let older = page(tail.next_backward_token().map(str::to_string), false)
        .await
        .expect("older");
    assert_eq!(msgs(&older).first().map(String::as_str), Some("m5"));

    // A time range: [t+3, t+6).
    let ranged = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .start_time(t + 3)
        .end_time(t + 6)
        .start_from_head(true)
        .send()
        .await
        .expect("range");
    assert_eq!(msgs(&ranged), ["m3", "m4", "m5"]);

    // The SDK's paginator stops when the forward token repeats.
    let pages: Vec<_> = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .start_from_head(true)
        .limit(7)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("paginate");
    let total: usize = pages.iter().map(|p| p.events().len()).sum();
    assert_eq!(total, 25);

    let bad = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .next_token("f/nonsense")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(code(&bad), "InvalidParameterException");
    let limit = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .limit(10_001)
        .send()
        .await
        .expect_err("limit");
    assert!(message(&limit).contains("Member must have value less than or equal to 10000"));
    let missing = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&missing), "ResourceNotFoundException");
    server.server.shutdown().await;
}

#[tokio::test]
async fn filter_log_events_searches_streams_with_patterns() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "app", "web-1").await;
    for stream in ["web-2", "worker"] {
        logs.create_log_stream()
            .log_group_name("app")
            .log_stream_name(stream)
            .send()
            .await
            .expect("stream");
    }
    let t = now() - HOUR;
    put(
        &logs,
        "app",
        "web-1",
        vec![
            event(t, "ERROR disk full"),
            event(t + 2, r#"{"level":"warn","latency":120,"user":{"id":7}}"#),
        ],
    )
    .await;
    put(
        &logs,
        "app",
        "web-2",
        vec![
            event(t + 1, "INFO started"),
            event(t + 3, r#"{"level":"error","latency":20,"user":{"id":8}}"#),
        ],
    )
    .await;
    put(&logs, "app", "worker", vec![event(t + 4, "ERROR timeout")]).await;

    let filter = |pattern: &str| {
        logs.filter_log_events()
            .log_group_name("app")
            .filter_pattern(pattern)
            .send()
    };
    let messages =
        |out: &aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsOutput| {
            out.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_string))
                .collect::<Vec<_>>()
        };

    let all = filter("").await.expect("all");
    assert_eq!(all.events().len(), 5);
    assert!(all.next_token().is_none());
    let first = &all.events()[0];
    assert_eq!(first.log_stream_name(), Some("web-1"));
    assert!(first.ingestion_time().is_some());
    assert_eq!(first.event_id().map(str::len), Some(56));
    assert_eq!(all.events()[1].log_stream_name(), Some("web-2"));

    assert_eq!(
        messages(&filter("ERROR").await.expect("term")),
        ["ERROR disk full", "ERROR timeout"]
    );
    assert_eq!(
        messages(&filter("ERROR -timeout").await.expect("exclude")),
        ["ERROR disk full"]
    );
    assert_eq!(
        messages(&filter("?started ?timeout").await.expect("any")),
        ["INFO started", "ERROR timeout"]
    );
    assert_eq!(
        messages(&filter("\"disk full\"").await.expect("phrase")).len(),
        1
    );
    assert_eq!(
        messages(&filter("{ $.latency > 100 }").await.expect("json")).len(),
        1
    );
    assert_eq!(
        messages(
            &filter(r#"{ $.level = "err*" || $.user.id = 7 }"#)
                .await
                .expect("json or")
        )
        .len(),
        2
    );

    let bad = filter("{ $.latency > }").await.expect_err("bad pattern");
    assert_eq!(code(&bad), "InvalidParameterException");
    assert_eq!(message(&bad), "Invalid filter pattern");
    let unclosed = filter("{ $.a = 1").await.expect_err("unclosed");
    assert_eq!(
        message(&unclosed),
        "If a filter pattern starts with '{' it must end with '}'"
    );

    // Stream selection and time range.
    let named = logs
        .filter_log_events()
        .log_group_name("app")
        .log_stream_names("worker")
        .log_stream_names("web-2")
        .send()
        .await
        .expect("names");
    assert_eq!(named.events().len(), 3);
    let prefixed = logs
        .filter_log_events()
        .log_group_identifier(format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:app:*"))
        .log_stream_name_prefix("web-")
        .start_time(t + 1)
        .end_time(t + 2)
        .send()
        .await
        .expect("prefix");
    assert_eq!(
        messages(&prefixed),
        [
            "INFO started",
            r#"{"level":"warn","latency":120,"user":{"id":7}}"#
        ]
    );
    let both = logs
        .filter_log_events()
        .log_group_name("app")
        .log_stream_names("worker")
        .log_stream_name_prefix("w")
        .send()
        .await
        .expect_err("both");
    assert_eq!(code(&both), "InvalidParameterException");

    // Paging two at a time, oldest first and newest first.
    let pages: Vec<_> = logs
        .filter_log_events()
        .log_group_name("app")
        .limit(2)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("pages");
    let paged: Vec<_> = pages.iter().flat_map(messages).collect();
    assert_eq!(paged, messages(&all));
    let newest = logs
        .filter_log_events()
        .log_group_name("app")
        .start_from_head(false)
        .limit(2)
        .send()
        .await
        .expect("newest");
    assert_eq!(messages(&newest)[0], "ERROR timeout");
    let next = logs
        .filter_log_events()
        .log_group_name("app")
        .limit(2)
        .next_token(newest.next_token().expect("token"))
        .send()
        .await
        .expect("next newest");
    assert_eq!(messages(&next)[1], "INFO started");

    let missing = logs
        .filter_log_events()
        .log_group_name("nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&missing), "ResourceNotFoundException");
    server.server.shutdown().await;
}

/// The retention sweep, on a manual clock, through the operations' entry point.
#[tokio::test]
async fn retention_sweep_deletes_expired_events() {
    let start = 1_700_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let ctx = Arc::new(LogsContext::open(None, clock.clone(), REGION, ACCOUNT).expect("open"));
    let call = |op: &'static str, input: Value| {
        let ctx = ctx.clone();
        async move {
            logs::dispatch(&ctx, op, input)
                .await
                .expect("a logs operation")
                .unwrap_or_else(|e| panic!("{op}: {e}"))
        }
    };
    call("CreateLogGroup", json!({"logGroupName": "g"})).await;
    call(
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "s"}),
    )
    .await;
    call(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 1}),
    )
    .await;
    call(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [
            {"timestamp": start - 2 * HOUR, "message": "early"},
            {"timestamp": start, "message": "late"},
        ]}),
    )
    .await;
    // Not yet a day old: nothing goes.
    assert_eq!(ctx.sweep(clock.now_millis()).expect("sweep"), 0);
    clock.set_millis(start + DAY - HOUR);
    assert_eq!(ctx.sweep(clock.now_millis()).expect("sweep"), 1);
    let left = call(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
    )
    .await;
    assert_eq!(left["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(left["events"][0]["message"], "late");
    let groups = call("DescribeLogGroups", json!({})).await;
    assert_eq!(groups["logGroups"][0]["storedBytes"], 4);

    // The loop the server spawns sweeps on its first tick and stops when cancelled.
    clock.set_millis(start + 2 * DAY);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(logs::run_retention(ctx.clone(), cancel.clone()));
    let mut emptied = false;
    for _ in 0..100 {
        let left = call(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await;
        if left["events"].as_array().is_some_and(Vec::is_empty) {
            emptied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(emptied, "run_retention swept");
    cancel.cancel();
    task.await.expect("retention loop ends");

    // Unknown operations are not Logs'.
    assert!(logs::dispatch(&ctx, "NoSuchOperation", json!({}))
        .await
        .is_none());
}

/// Acknowledged writes survive the server going away: a new server on the same directory
/// reads them back.
#[tokio::test]
async fn log_events_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = Credentials::generate();
    let t = now() - HOUR;
    {
        let server = support::logs_start_in_dir(dir.path(), credentials.clone()).await;
        let logs = client(&server).await;
        group_with_stream(&logs, "durable", "s").await;
        logs.put_retention_policy()
            .log_group_name("durable")
            .retention_in_days(7)
            .send()
            .await
            .expect("retention");
        put(
            &logs,
            "durable",
            "s",
            vec![event(t, "first"), event(t + 1, "second")],
        )
        .await;
        server.server.shutdown().await;
    }
    let server = support::logs_start_in_dir(dir.path(), credentials).await;
    let logs = client(&server).await;
    let events = logs
        .get_log_events()
        .log_group_name("durable")
        .log_stream_name("s")
        .start_from_head(true)
        .send()
        .await
        .expect("read back");
    let messages: Vec<_> = events.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(messages, ["first", "second"]);
    let groups = logs.describe_log_groups().send().await.expect("groups");
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(7));
    // Writing continues after the restart.
    put(&logs, "durable", "s", vec![event(t + 2, "third")]).await;
    let found = logs
        .filter_log_events()
        .log_group_name("durable")
        .filter_pattern("third")
        .send()
        .await
        .expect("filter");
    assert_eq!(found.events().len(), 1);
    server.server.shutdown().await;
}

/// Parallel writers to one stream (AWS dropped the sequence-token rule, so clients do this)
/// all land, none twice.
#[tokio::test]
async fn concurrent_writers_to_one_stream_all_land() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "busy", "s").await;
    let t = now() - HOUR;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let logs = logs.clone();
        writers.spawn(async move {
            let batch = (0..50)
                .map(|i| event(t + i, &format!("w{w}-{i}")))
                .collect();
            put(&logs, "busy", "s", batch).await;
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let all = logs
        .get_log_events()
        .log_group_name("busy")
        .log_stream_name("s")
        .start_from_head(true)
        .send()
        .await
        .expect("read");
    assert_eq!(all.events().len(), 800);
    let mut messages: Vec<_> = all.events().iter().filter_map(|e| e.message()).collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), 800);
    // Time order holds across the interleaved batches.
    assert!(all
        .events()
        .windows(2)
        .all(|w| w[0].timestamp() <= w[1].timestamp()));
    server.server.shutdown().await;
}

/// `?` opens a term group (AWS's reading, and what the CDK's anyTermGroup writes); more than
/// one `...` is refused; column names take AWS's `[a-zA-Z0-9_-]+`.
#[tokio::test]
async fn filter_patterns_follow_aws_term_groups_and_column_rules() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "app", "s").await;
    let t = now() - HOUR;
    let lines = [
        "ERROR in MainThread",
        "WARN Deadlock found",
        "ERROR Deadlock found",
        "WARN in MainThread",
        "ERROR MainThread DEBUG",
    ];
    put(
        &logs,
        "app",
        "s",
        lines
            .iter()
            .enumerate()
            .map(|(i, m)| event(t + i as i64, m))
            .collect(),
    )
    .await;
    let filter = |pattern: &str| {
        logs.filter_log_events()
            .log_group_name("app")
            .filter_pattern(pattern)
            .send()
    };
    let messages =
        |out: aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsOutput| {
            out.events()
                .iter()
                .filter_map(|e| e.message().map(str::to_string))
                .collect::<Vec<_>>()
        };
    // (ERROR and MainThread) or (WARN and Deadlock); "all plain terms and any `?` term" would
    // have matched none of these, as none holds both MainThread and Deadlock.
    let grouped = filter(r#"?"ERROR" "MainThread" ?"WARN" "Deadlock""#)
        .await
        .expect("groups");
    assert_eq!(
        messages(grouped),
        [
            "ERROR in MainThread",
            "WARN Deadlock found",
            "ERROR MainThread DEBUG"
        ]
    );
    let excluded = filter(r#"?"ERROR" "MainThread" ?"WARN" "Deadlock" -DEBUG"#)
        .await
        .expect("groups with an exclusion");
    assert_eq!(
        messages(excluded),
        ["ERROR in MainThread", "WARN Deadlock found"]
    );

    let twice = filter("[..., level, ...]").await.expect_err("two ellipses");
    assert_eq!(code(&twice), "InvalidParameterException");
    assert_eq!(message(&twice), "Invalid filter pattern");
    let columns = filter("[log-level = WARN, 2nd, ...]")
        .await
        .expect("AWS column names");
    assert_eq!(
        messages(columns),
        ["WARN Deadlock found", "WARN in MainThread"]
    );
    server.server.shutdown().await;
}

/// GetLogEvents stops at 1 MB of events while reading (always at least one event), from
/// whichever end the read starts, and paging still reaches every event.
#[tokio::test]
async fn get_log_events_pages_large_events_by_size() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "big", "s").await;
    let t = now() - HOUR;
    let body = "x".repeat(600_000);
    for i in 0..3 {
        put(&logs, "big", "s", vec![event(t + i, &format!("{i}{body}"))]).await;
    }
    let first_chars =
        |out: &aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput| {
            out.events()
                .iter()
                .filter_map(|e| e.message().and_then(|m| m.chars().next()))
                .collect::<String>()
        };
    let head = logs
        .get_log_events()
        .log_group_name("big")
        .log_stream_name("s")
        .start_from_head(true)
        .send()
        .await
        .expect("head");
    assert_eq!(first_chars(&head), "0");
    let tail = logs
        .get_log_events()
        .log_group_name("big")
        .log_stream_name("s")
        .send()
        .await
        .expect("tail");
    assert_eq!(first_chars(&tail), "2");
    let pages: Vec<_> = logs
        .get_log_events()
        .log_group_name("big")
        .log_stream_name("s")
        .start_from_head(true)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("pages");
    let all: String = pages.iter().map(first_chars).collect();
    assert_eq!(all, "012");
    server.server.shutdown().await;
}

/// DeleteLogGroup answers once the group and its streams are gone; the events follow in
/// batches, and never show up in a group or stream re-created under the same names.
#[tokio::test]
async fn a_recreated_group_starts_empty_while_the_old_events_are_purged() {
    let server = support::start().await;
    let logs = client(&server).await;
    group_with_stream(&logs, "g", "s").await;
    let t = now() - HOUR;
    for batch in 0..3 {
        put(
            &logs,
            "g",
            "s",
            (0..5_000)
                .map(|i| event(t + i, &format!("old {batch} {i}")))
                .collect(),
        )
        .await;
    }
    logs.delete_log_group()
        .log_group_name("g")
        .send()
        .await
        .expect("delete");
    let gone = logs
        .describe_log_streams()
        .log_group_name("g")
        .send()
        .await
        .expect_err("group gone");
    assert_eq!(code(&gone), "ResourceNotFoundException");
    group_with_stream(&logs, "g", "s").await;
    put(&logs, "g", "s", vec![event(t, "new")]).await;
    let events = logs
        .get_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .start_from_head(true)
        .send()
        .await
        .expect("read");
    let messages: Vec<_> = events.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(messages, ["new"]);
    let found = logs
        .filter_log_events()
        .log_group_name("g")
        .filter_pattern("old")
        .send()
        .await
        .expect("filter");
    assert!(found.events().is_empty());
    let group = logs.describe_log_groups().send().await.expect("groups");
    assert_eq!(group.log_groups()[0].stored_bytes(), Some(3));
    server.server.shutdown().await;
}
