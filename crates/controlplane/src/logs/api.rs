//! The CloudWatch Logs operations: read the JSON input, validate it the way AWS does (shape
//! constraints first, reported as "N validation error(s) detected"), run it against the log
//! store on the blocking pool, and shape the output with the model's member names.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::{json, Map, Value};

use super::error::{LogsError, Problems};
use super::pattern::FilterPattern;
use super::store::{
    Cursor, EventRecord, GroupQuery, GroupRecord, StreamAfter, StreamOrder, StreamRecord,
    StreamSelection, EVENT_OVERHEAD,
};
use super::LogsContext;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// PutLogEvents' cap on a batch: every message's UTF-8 bytes plus `EVENT_OVERHEAD` per event
/// (the store sizes the pages of GetLogEvents and FilterLogEvents the same way).
const MAX_BATCH_BYTES: usize = 1_048_576;
const MAX_BATCH_EVENTS: usize = 10_000;
/// GetLogEvents and FilterLogEvents answer at most this many bytes of events per page.
const MAX_PAGE_BYTES: usize = 1_048_576;
/// FilterLogEvents examines at most this many events per call; a selective pattern over a big
/// group then returns a partial (possibly empty) page with a nextToken, as AWS does.
const FILTER_SCAN_BUDGET: usize = 100_000;
const MAX_TAGS: usize = 50;
pub const RETENTION_DAYS: [i64; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
const GROUP_CLASSES: [&str; 4] = ["STANDARD", "INFREQUENT_ACCESS", "DELIVERY", "ESSENTIALS"];

static GROUP_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\.\-_/#A-Za-z0-9]+$").expect("valid regex"));
static TAG_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]+)$").expect("valid regex"));
static TAG_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$").expect("valid regex"));

fn invalid_token() -> LogsError {
    // guessed
    LogsError::InvalidParameter("The specified nextToken is invalid.".to_string())
}

// ---- reading inputs ----

/// Typed access to a JSON input object. A member of the wrong JSON type is a
/// SerializationException, as with AWS's JSON protocol.
struct Input(Map<String, Value>);

fn wrong_type(field: &str, expected: &str) -> LogsError {
    // guessed
    LogsError::Serialization(format!("Value for '{field}' must be {expected}."))
}

impl Input {
    fn new(input: Value) -> Result<Input, LogsError> {
        match input {
            Value::Object(map) => Ok(Input(map)),
            Value::Null => Ok(Input(Map::new())),
            _ => Err(LogsError::Serialization(
                "The request body must be a JSON object.".to_string(), // guessed
            )),
        }
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    fn string(&self, field: &str) -> Result<Option<String>, LogsError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    fn int(&self, field: &str) -> Result<Option<i64>, LogsError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(field, "an integer")),
        }
    }

    fn boolean(&self, field: &str) -> Result<Option<bool>, LogsError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(field, "a boolean")),
        }
    }

    fn strings(&self, field: &str) -> Result<Option<Vec<String>>, LogsError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| wrong_type(field, "a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong_type(field, "a list of strings")),
        }
    }

    fn string_map(&self, field: &str) -> Result<Option<BTreeMap<String, String>>, LogsError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|v| (k.clone(), v.to_string()))
                        .ok_or_else(|| wrong_type(field, "a map of strings"))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map(Some),
            Some(_) => Err(wrong_type(field, "a map of strings")),
        }
    }
}

fn quote(value: &str) -> String {
    format!("'{value}'")
}

fn check_length(p: &mut Problems, field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min {
        p.constraint(
            &quote(value),
            field,
            &format!("Member must have length greater than or equal to {min}"),
        );
    } else if len > max {
        p.constraint(
            &quote(value),
            field,
            &format!("Member must have length less than or equal to {max}"),
        );
    }
}

fn check_range(p: &mut Problems, field: &str, value: i64, min: i64, max: i64) {
    if value < min {
        p.constraint(
            &quote(&value.to_string()),
            field,
            &format!("Member must have value greater than or equal to {min}"),
        );
    } else if value > max {
        p.constraint(
            &quote(&value.to_string()),
            field,
            &format!("Member must have value less than or equal to {max}"),
        );
    }
}

fn check_group_name(p: &mut Problems, field: &str, name: &str) {
    check_length(p, field, name, 1, 512);
    if !name.is_empty() && !GROUP_NAME.is_match(name) {
        p.constraint(
            &quote(name),
            field,
            r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+",
        );
    }
}

fn check_stream_name(p: &mut Problems, field: &str, name: &str) {
    check_length(p, field, name, 1, 512);
    if name.contains(':') || name.contains('*') {
        p.constraint(
            &quote(name),
            field,
            "Member must satisfy regular expression pattern: [^:*]*",
        );
    }
}

/// A required member: its value, or a "must not be null" problem.
fn required<T>(p: &mut Problems, field: &str, value: Option<T>) -> Option<T> {
    if value.is_none() {
        p.null(field);
    }
    value
}

fn check_tags(p: &mut Problems, field: &str, tags: &BTreeMap<String, String>) {
    if tags.is_empty() {
        p.constraint(
            "'{}'",
            field,
            "Member must have length greater than or equal to 1",
        );
    }
    if tags.len() > MAX_TAGS {
        p.constraint(
            "'{…}'",
            field,
            &format!("Member must have length less than or equal to {MAX_TAGS}"),
        );
    }
    for (key, value) in tags {
        check_length(p, &format!("{field}.key"), key, 1, 128);
        if !key.is_empty() && !TAG_KEY.is_match(key) {
            p.constraint(
                &quote(key),
                &format!("{field}.key"),
                r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]+)$",
            );
        }
        check_length(p, &format!("{field}.value"), value, 0, 256);
        if !TAG_VALUE.is_match(value) {
            p.constraint(
                &quote(value),
                &format!("{field}.value"),
                r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$",
            );
        }
    }
}

// ---- names and ARNs ----

impl LogsContext {
    fn group_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{name}",
            self.region, self.account_id
        )
    }

    /// The group name inside a log group ARN of this account and Region (with or without the
    /// trailing `:*`). `Ok(None)`: a well-formed ARN that names no log group here.
    fn group_from_arn(&self, arn: &str) -> Result<Option<String>, LogsError> {
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" || parts[2] != "logs" {
            // guessed
            return Err(LogsError::InvalidParameter(format!("Invalid ARN: {arn}")));
        }
        if parts[3] != self.region || parts[4] != self.account_id {
            return Ok(None);
        }
        if parts[5] != "log-group" || parts.len() < 7 {
            return Ok(None);
        }
        let name = parts[6].strip_suffix(":*").unwrap_or(parts[6]);
        Ok(Some(name.to_string()))
    }

    /// The log group named by `logGroupName` or `logGroupIdentifier` (a name or an ARN),
    /// exactly one of which must be given.
    fn resolve_group(&self, input: &Input, p: &mut Problems) -> Result<Option<String>, LogsError> {
        let name = input.string("logGroupName")?;
        let identifier = input.string("logGroupIdentifier")?;
        match (name, identifier) {
            (Some(_), Some(_)) => Err(LogsError::InvalidParameter(
                // guessed
                "LogGroup name and LogGroup ARN are mutually exclusive parameters.".to_string(),
            )),
            (None, None) => Err(LogsError::InvalidParameter(
                // guessed
                "Should provide either name or ARN of LogGroup.".to_string(),
            )),
            (Some(name), None) => {
                check_group_name(p, "logGroupName", &name);
                Ok(Some(name))
            }
            (None, Some(identifier)) => {
                check_length(p, "logGroupIdentifier", &identifier, 1, 2048);
                if identifier.starts_with("arn:") {
                    match self.group_from_arn(&identifier)? {
                        Some(name) => Ok(Some(name)),
                        None => Err(LogsError::group_not_found()),
                    }
                } else {
                    Ok(Some(identifier))
                }
            }
        }
    }

    fn group_json(&self, group: &GroupRecord) -> Value {
        let arn = self.group_arn(&group.name);
        let mut out = json!({
            "logGroupName": group.name,
            "creationTime": group.creation_time,
            "metricFilterCount": 0,
            "arn": format!("{arn}:*"),
            "storedBytes": group.stored_bytes,
            "logGroupClass": group.log_group_class,
            "logGroupArn": arn,
            "deletionProtectionEnabled": group.deletion_protection,
        });
        if let Some(days) = group.retention_days {
            out["retentionInDays"] = json!(days);
        }
        if let Some(key) = &group.kms_key_id {
            out["kmsKeyId"] = json!(key);
        }
        out
    }

    fn stream_json(&self, group: &str, stream: &StreamRecord) -> Value {
        let mut out = json!({
            "logStreamName": stream.name,
            "creationTime": stream.creation_time,
            "arn": format!("{}:log-stream:{}", self.group_arn(group), stream.name),
            "storedBytes": stream.stored_bytes,
        });
        if let Some(ts) = stream.first_event_ts {
            out["firstEventTimestamp"] = json!(ts);
        }
        if let Some(ts) = stream.last_event_ts {
            out["lastEventTimestamp"] = json!(ts);
        }
        if let Some(ts) = stream.last_ingestion_time {
            out["lastIngestionTime"] = json!(ts);
            out["uploadSequenceToken"] = json!(sequence_token(stream.last_seq));
        }
        out
    }
}

/// AWS's sequence tokens are 56-digit numbers; ours carry the stream's newest `seq`.
fn sequence_token(seq: i64) -> String {
    format!("{seq:056}")
}

fn event_id(event: &EventRecord) -> String {
    format!("{:020}{:036}", event.timestamp, event.seq)
}

// ---- paging tokens ----

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// GetLogEvents tokens, shaped like AWS's: `f/<56 digits>/s` and `b/<56 digits>/s`, the digits
/// being a point between events in `(timestamp, seq)` order.
fn stream_token(forward: bool, cursor: Cursor) -> String {
    let direction = if forward { 'f' } else { 'b' };
    format!(
        "{direction}/{:020}{:036}/s",
        cursor.0.max(0),
        cursor.1.max(0)
    )
}

fn parse_stream_token(token: &str) -> Option<(bool, Cursor)> {
    let forward = match token.get(..2)? {
        "f/" => true,
        "b/" => false,
        _ => return None,
    };
    let digits = token.get(2..)?.strip_suffix("/s")?;
    if digits.len() != 56 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ts = digits[..20].parse::<i64>().ok()?;
    let seq = digits[20..].parse::<i64>().ok()?;
    Some((forward, (ts, seq)))
}

fn filter_token(forward: bool, cursor: Cursor) -> String {
    let direction = if forward { 'A' } else { 'D' };
    format!("{direction}{:020}{:020}", cursor.0.max(0), cursor.1.max(0))
}

fn parse_filter_token(token: &str) -> Option<(bool, Cursor)> {
    let forward = match token.get(..1)? {
        "A" => true,
        "D" => false,
        _ => return None,
    };
    let digits = token.get(1..)?;
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((
        forward,
        (digits[..20].parse().ok()?, digits[20..].parse().ok()?),
    ))
}

// ---- log groups ----

pub async fn create_log_group(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let name = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(name) = &name {
        check_group_name(&mut p, "logGroupName", name);
    }
    let kms_key_id = input.string("kmsKeyId")?;
    if let Some(key) = &kms_key_id {
        check_length(&mut p, "kmsKeyId", key, 0, 256);
    }
    let tags = input.string_map("tags")?;
    if let Some(tags) = &tags {
        check_tags(&mut p, "tags", tags);
    }
    let class = input
        .string("logGroupClass")?
        .unwrap_or_else(|| "STANDARD".to_string());
    if !GROUP_CLASSES.contains(&class.as_str()) {
        p.constraint(
            &quote(&class),
            "logGroupClass",
            "Member must satisfy enum value set: [STANDARD, INFREQUENT_ACCESS, DELIVERY, ESSENTIALS]",
        );
    }
    let protection = input.boolean("deletionProtectionEnabled")?.unwrap_or(false);
    p.into_result()?;
    let name = name.unwrap_or_default();
    if name.starts_with("aws/") {
        return Err(LogsError::InvalidParameter(
            "Log group names can't start with the string 'aws/'.".to_string(), // guessed
        ));
    }
    let group = GroupRecord {
        name,
        creation_time: ctx.clock.now_millis(),
        retention_days: None,
        log_group_class: class,
        kms_key_id,
        deletion_protection: protection,
        tags: tags.unwrap_or_default(),
        stored_bytes: 0,
    };
    ctx.blocking(move |store| store.create_group(&group))
        .await?;
    Ok(json!({}))
}

pub async fn delete_log_group(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let name = group_name_only(&input)?;
    ctx.blocking(move |store| store.delete_group(&name)).await?;
    // The group and its streams are gone; its events go in the background, in batches, as AWS
    // also deletes them after answering. A failure is retried by the next retention sweep.
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = store.purge_deleted() {
            tracing::warn!(%error, "purging a deleted log group's events failed");
        }
    });
    Ok(json!({}))
}

/// The required, validated `logGroupName` of the operations that take only a name.
fn group_name_only(input: &Input) -> Result<String, LogsError> {
    let mut p = Problems::default();
    let name = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(name) = &name {
        check_group_name(&mut p, "logGroupName", name);
    }
    p.into_result()?;
    Ok(name.unwrap_or_default())
}

pub async fn describe_log_groups(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let prefix = input.string("logGroupNamePrefix")?;
    if let Some(prefix) = &prefix {
        check_group_name(&mut p, "logGroupNamePrefix", prefix);
    }
    let contains = input.string("logGroupNamePattern")?;
    if let Some(pattern) = &contains {
        check_length(&mut p, "logGroupNamePattern", pattern, 0, 512);
        if !pattern.is_empty() && !GROUP_NAME.is_match(pattern) {
            p.constraint(
                &quote(pattern),
                "logGroupNamePattern",
                r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]*",
            );
        }
    }
    let limit = input.int("limit")?;
    if let Some(limit) = limit {
        check_range(&mut p, "limit", limit, 1, 50);
    }
    let identifiers = input.strings("logGroupIdentifiers")?;
    if let Some(ids) = &identifiers {
        if ids.is_empty() || ids.len() > 50 {
            p.constraint(
                "'[…]'",
                "logGroupIdentifiers",
                "Member must have length between 1 and 50",
            );
        }
    }
    let class = input.string("logGroupClass")?;
    if let Some(class) = &class {
        if !GROUP_CLASSES.contains(&class.as_str()) {
            p.constraint(
                &quote(class),
                "logGroupClass",
                "Member must satisfy enum value set: [STANDARD, INFREQUENT_ACCESS, DELIVERY, ESSENTIALS]",
            );
        }
    }
    let token = input.string("nextToken")?;
    p.into_result()?;
    if prefix.is_some() && contains.is_some() {
        return Err(LogsError::InvalidParameter(
            // guessed
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
                .to_string(),
        ));
    }
    if identifiers.is_some() && (prefix.is_some() || contains.is_some()) {
        return Err(LogsError::InvalidParameter(
            // guessed
            "logGroupIdentifiers cannot be combined with logGroupNamePrefix or logGroupNamePattern."
                .to_string(),
        ));
    }
    let names = match identifiers {
        None => None,
        Some(ids) => {
            let mut names = Vec::new();
            for id in ids {
                if id.starts_with("arn:") {
                    if let Some(name) = ctx.group_from_arn(&id)? {
                        names.push(name);
                    }
                } else {
                    names.push(id);
                }
            }
            Some(names)
        }
    };
    let after = match token {
        None => None,
        Some(token) => Some(
            token
                .strip_prefix("g.")
                .and_then(unhex)
                .ok_or_else(invalid_token)?,
        ),
    };
    // Infrequent Access and Essentials are listed together, as AWS documents.
    let classes = class.map(|c| match c.as_str() {
        "INFREQUENT_ACCESS" | "ESSENTIALS" => {
            vec!["INFREQUENT_ACCESS".to_string(), "ESSENTIALS".to_string()]
        }
        _ => vec![c],
    });
    let limit = limit.unwrap_or(50) as usize;
    let query = GroupQuery {
        after,
        prefix,
        contains,
        names,
        classes,
        limit: limit + 1,
    };
    let mut groups = ctx.blocking(move |store| store.list_groups(&query)).await?;
    let mut out = json!({});
    if groups.len() > limit {
        groups.truncate(limit);
        if let Some(last) = groups.last() {
            out["nextToken"] = json!(format!("g.{}", hex(&last.name)));
        }
    }
    out["logGroups"] = Value::Array(groups.iter().map(|g| ctx.group_json(g)).collect());
    Ok(out)
}

pub async fn put_retention_policy(
    ctx: &Arc<LogsContext>,
    input: Value,
) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let name = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(name) = &name {
        check_group_name(&mut p, "logGroupName", name);
    }
    let days = required(&mut p, "retentionInDays", input.int("retentionInDays")?);
    if let Some(days) = days {
        if !RETENTION_DAYS.contains(&days) {
            let set = RETENTION_DAYS
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            p.constraint(
                &quote(&days.to_string()),
                "retentionInDays",
                &format!("Member must satisfy enum value set: [{set}]"),
            );
        }
    }
    p.into_result()?;
    let (name, days) = (name.unwrap_or_default(), days.unwrap_or_default());
    ctx.blocking(move |store| {
        store.update_group(&name, |g| {
            g.retention_days = Some(days);
            Ok(())
        })
    })
    .await?;
    Ok(json!({}))
}

pub async fn delete_retention_policy(
    ctx: &Arc<LogsContext>,
    input: Value,
) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let name = group_name_only(&input)?;
    ctx.blocking(move |store| {
        store.update_group(&name, |g| {
            g.retention_days = None;
            Ok(())
        })
    })
    .await?;
    Ok(json!({}))
}

pub async fn put_log_group_deletion_protection(
    ctx: &Arc<LogsContext>,
    input: Value,
) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let identifier = required(
        &mut p,
        "logGroupIdentifier",
        input.string("logGroupIdentifier")?,
    );
    let enabled = required(
        &mut p,
        "deletionProtectionEnabled",
        input.boolean("deletionProtectionEnabled")?,
    );
    p.into_result()?;
    let identifier = identifier.unwrap_or_default();
    let name = if identifier.starts_with("arn:") {
        ctx.group_from_arn(&identifier)?
            .ok_or_else(LogsError::group_not_found)?
    } else {
        identifier
    };
    let enabled = enabled.unwrap_or_default();
    ctx.blocking(move |store| {
        store.update_group(&name, |g| {
            g.deletion_protection = enabled;
            Ok(())
        })
    })
    .await?;
    Ok(json!({}))
}

// ---- tags ----

/// Merge `tags` into a group's tags, refusing to exceed AWS's 50.
async fn add_tags(
    ctx: &Arc<LogsContext>,
    name: String,
    tags: BTreeMap<String, String>,
    too_many: fn(String) -> LogsError,
) -> Result<(), LogsError> {
    let arn = ctx.group_arn(&name);
    ctx.blocking(move |store| {
        store.update_group(&name, |g| {
            let mut merged = g.tags.clone();
            merged.extend(tags);
            if merged.len() > MAX_TAGS {
                return Err(too_many(format!(
                    "A resource can have no more than {MAX_TAGS} tags. Resource: {arn}" // guessed
                )));
            }
            g.tags = merged;
            Ok(())
        })
    })
    .await?;
    Ok(())
}

async fn remove_tags(
    ctx: &Arc<LogsContext>,
    name: String,
    keys: Vec<String>,
) -> Result<(), LogsError> {
    ctx.blocking(move |store| {
        store.update_group(&name, |g| {
            for key in &keys {
                g.tags.remove(key);
            }
            Ok(())
        })
    })
    .await?;
    Ok(())
}

async fn read_tags(ctx: &Arc<LogsContext>, name: String) -> Result<Value, LogsError> {
    let group = ctx.blocking(move |store| store.get_group(&name)).await?;
    Ok(json!({ "tags": group.tags }))
}

pub async fn tag_log_group(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let name = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(name) = &name {
        check_group_name(&mut p, "logGroupName", name);
    }
    let tags = required(&mut p, "tags", input.string_map("tags")?);
    if let Some(tags) = &tags {
        check_tags(&mut p, "tags", tags);
    }
    p.into_result()?;
    add_tags(
        ctx,
        name.unwrap_or_default(),
        tags.unwrap_or_default(),
        LogsError::InvalidParameter,
    )
    .await?;
    Ok(json!({}))
}

pub async fn untag_log_group(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let name = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(name) = &name {
        check_group_name(&mut p, "logGroupName", name);
    }
    let keys = required(&mut p, "tags", input.strings("tags")?);
    if keys.as_ref().is_some_and(|k| k.is_empty()) {
        p.constraint(
            "'[]'",
            "tags",
            "Member must have length greater than or equal to 1",
        );
    }
    p.into_result()?;
    remove_tags(ctx, name.unwrap_or_default(), keys.unwrap_or_default()).await?;
    Ok(json!({}))
}

pub async fn list_tags_log_group(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let name = group_name_only(&input)?;
    read_tags(ctx, name).await
}

/// The group a tagging ARN names; anything else (destinations, other accounts) is not found.
fn tagged_group(ctx: &LogsContext, input: &Input, p: &mut Problems) -> Result<String, LogsError> {
    let arn = required(p, "resourceArn", input.string("resourceArn")?).unwrap_or_default();
    check_length(p, "resourceArn", &arn, 1, 1011);
    if arn.is_empty() {
        return Ok(String::new());
    }
    ctx.group_from_arn(&arn)?.ok_or_else(|| {
        LogsError::ResourceNotFound("The specified resource does not exist.".to_string())
        // guessed
    })
}

pub async fn tag_resource(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let tags = required(&mut p, "tags", input.string_map("tags")?);
    if let Some(tags) = &tags {
        check_tags(&mut p, "tags", tags);
    }
    let name = tagged_group(ctx, &input, &mut p);
    p.into_result()?;
    add_tags(ctx, name?, tags.unwrap_or_default(), LogsError::TooManyTags).await?;
    Ok(json!({}))
}

pub async fn untag_resource(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let keys = required(&mut p, "tagKeys", input.strings("tagKeys")?);
    if keys.as_ref().is_some_and(|k| k.len() > MAX_TAGS) {
        p.constraint(
            "'[…]'",
            "tagKeys",
            &format!("Member must have length less than or equal to {MAX_TAGS}"),
        );
    }
    let name = tagged_group(ctx, &input, &mut p);
    p.into_result()?;
    remove_tags(ctx, name?, keys.unwrap_or_default()).await?;
    Ok(json!({}))
}

pub async fn list_tags_for_resource(
    ctx: &Arc<LogsContext>,
    input: Value,
) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let name = tagged_group(ctx, &input, &mut p);
    p.into_result()?;
    read_tags(ctx, name?).await
}

// ---- log streams ----

/// The group and stream of the stream operations, validated.
fn group_and_stream(input: &Input) -> Result<(String, String), LogsError> {
    let mut p = Problems::default();
    let group = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(group) = &group {
        check_group_name(&mut p, "logGroupName", group);
    }
    let stream = required(&mut p, "logStreamName", input.string("logStreamName")?);
    if let Some(stream) = &stream {
        check_stream_name(&mut p, "logStreamName", stream);
    }
    p.into_result()?;
    Ok((group.unwrap_or_default(), stream.unwrap_or_default()))
}

pub async fn create_log_stream(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let (group, stream) = group_and_stream(&input)?;
    let now = ctx.clock.now_millis();
    ctx.blocking(move |store| store.create_stream(&group, &stream, now))
        .await?;
    Ok(json!({}))
}

pub async fn delete_log_stream(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let (group, stream) = group_and_stream(&input)?;
    ctx.blocking(move |store| store.delete_stream(&group, &stream))
        .await?;
    Ok(json!({}))
}

pub async fn describe_log_streams(
    ctx: &Arc<LogsContext>,
    input: Value,
) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let group = ctx.resolve_group(&input, &mut p)?;
    let prefix = input.string("logStreamNamePrefix")?;
    if let Some(prefix) = &prefix {
        check_stream_name(&mut p, "logStreamNamePrefix", prefix);
    }
    let order = match input.string("orderBy")?.as_deref() {
        None | Some("LogStreamName") => StreamOrder::Name,
        Some("LastEventTime") => StreamOrder::LastEventTime,
        Some(other) => {
            p.constraint(
                &quote(other),
                "orderBy",
                "Member must satisfy enum value set: [LogStreamName, LastEventTime]",
            );
            StreamOrder::Name
        }
    };
    let descending = input.boolean("descending")?.unwrap_or(false);
    let limit = input.int("limit")?;
    if let Some(limit) = limit {
        check_range(&mut p, "limit", limit, 1, 50);
    }
    let token = input.string("nextToken")?;
    p.into_result()?;
    if order == StreamOrder::LastEventTime && prefix.is_some() {
        return Err(LogsError::InvalidParameter(
            "Cannot order by LastEventTime with a logStreamNamePrefix.".to_string(),
        ));
    }
    let after = match token {
        None => None,
        Some(token) => Some(parse_streams_token(&token, order).ok_or_else(invalid_token)?),
    };
    let group = group.unwrap_or_default();
    let limit = limit.unwrap_or(50) as usize;
    let name = group.clone();
    let mut streams = ctx
        .blocking(move |store| {
            store.list_streams(
                &name,
                order,
                descending,
                prefix.as_deref(),
                after.as_ref(),
                limit + 1,
            )
        })
        .await?;
    let mut out = json!({});
    if streams.len() > limit {
        streams.truncate(limit);
        if let Some(last) = streams.last() {
            out["nextToken"] = json!(streams_token(order, last));
        }
    }
    out["logStreams"] = Value::Array(streams.iter().map(|s| ctx.stream_json(&group, s)).collect());
    Ok(out)
}

fn streams_token(order: StreamOrder, last: &StreamRecord) -> String {
    match order {
        StreamOrder::Name => format!("n.{}", hex(&last.name)),
        StreamOrder::LastEventTime => {
            format!("t.{}.{}", last.last_event_ts.unwrap_or(-1), hex(&last.name))
        }
    }
}

fn parse_streams_token(token: &str, order: StreamOrder) -> Option<StreamAfter> {
    match order {
        StreamOrder::Name => Some(StreamAfter {
            last_event_ts: None,
            name: unhex(token.strip_prefix("n.")?)?,
        }),
        StreamOrder::LastEventTime => {
            let (ts, name) = token.strip_prefix("t.")?.split_once('.')?;
            let ts: i64 = ts.parse().ok()?;
            Some(StreamAfter {
                last_event_ts: (ts >= 0).then_some(ts),
                name: unhex(name)?,
            })
        }
    }
}

// ---- events ----

pub async fn put_log_events(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let group = required(&mut p, "logGroupName", input.string("logGroupName")?);
    if let Some(group) = &group {
        check_group_name(&mut p, "logGroupName", group);
    }
    let stream = required(&mut p, "logStreamName", input.string("logStreamName")?);
    if let Some(stream) = &stream {
        check_stream_name(&mut p, "logStreamName", stream);
    }
    // The sequence token is accepted and ignored, as AWS now does.
    let _ = input.string("sequenceToken")?;
    let raw = match input.present("logEvents") {
        None => {
            p.null("logEvents");
            Vec::new()
        }
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(wrong_type("logEvents", "a list of log events")),
    };
    if input.present("logEvents").is_some() {
        if raw.is_empty() {
            p.constraint(
                "'[]'",
                "logEvents",
                "Member must have length greater than or equal to 1",
            );
        } else if raw.len() > MAX_BATCH_EVENTS {
            p.constraint(
                "'[…]'",
                "logEvents",
                &format!("Member must have length less than or equal to {MAX_BATCH_EVENTS}"),
            );
        }
    }
    let mut events: Vec<(i64, String)> = Vec::with_capacity(raw.len());
    for (i, item) in raw.into_iter().enumerate() {
        let field = format!("logEvents.{}.member", i + 1);
        let Value::Object(map) = item else {
            return Err(wrong_type(&field, "a log event"));
        };
        let event = Input(map);
        let timestamp = event.int("timestamp")?;
        let message = event.string("message")?;
        match timestamp {
            None => p.null(&format!("{field}.timestamp")),
            Some(ts) if ts < 0 => {
                check_range(&mut p, &format!("{field}.timestamp"), ts, 0, i64::MAX)
            }
            Some(_) => {}
        }
        match &message {
            None => p.null(&format!("{field}.message")),
            Some(m) if m.is_empty() => {
                check_length(&mut p, &format!("{field}.message"), m, 1, usize::MAX)
            }
            Some(_) => {}
        }
        events.push((timestamp.unwrap_or_default(), message.unwrap_or_default()));
    }
    p.into_result()?;
    let (group, stream) = (group.unwrap_or_default(), stream.unwrap_or_default());

    for (_, message) in &events {
        let size = message.len() + EVENT_OVERHEAD;
        if size > MAX_BATCH_BYTES {
            return Err(LogsError::InvalidParameter(format!(
                "Log event too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}" // guessed
            )));
        }
    }
    let batch: usize = events.iter().map(|(_, m)| m.len() + EVENT_OVERHEAD).sum();
    if batch > MAX_BATCH_BYTES {
        return Err(LogsError::InvalidParameter(format!(
            "Upload too large: {batch} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(LogsError::InvalidParameter(
            "Log events in a single PutLogEvents request must be in chronological order."
                .to_string(),
        ));
    }

    // The group's retention decides which events are already expired.
    let name = group.clone();
    let retention = ctx
        .blocking(move |store| store.get_group(&name))
        .await?
        .retention_days;
    let now = ctx.clock.now_millis();
    let too_old_before = now - 14 * DAY_MS;
    let expired_before = retention.map(|days| now - days * DAY_MS);
    let too_new_after = now + 2 * HOUR_MS;
    let too_old = events.iter().filter(|e| e.0 < too_old_before).count();
    let expired = expired_before
        .map(|cut| events.iter().filter(|e| e.0 < cut).count())
        .unwrap_or(0);
    let too_new_start = events.iter().position(|e| e.0 > too_new_after);
    let first_valid = too_old.max(expired);
    let end_valid = too_new_start.unwrap_or(events.len()).max(first_valid);
    let valid = &events[first_valid..end_valid];
    if let (Some(first), Some(last)) = (valid.first(), valid.last()) {
        if last.0 - first.0 > DAY_MS {
            return Err(LogsError::InvalidParameter(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours."
                    .to_string(),
            ));
        }
    }
    let accepted: Vec<(i64, String)> = valid.to_vec();
    let last_seq = ctx
        .blocking(move |store| store.put_events(&group, &stream, &accepted, now))
        .await?;
    let mut out = json!({ "nextSequenceToken": sequence_token(last_seq) });
    let mut rejected = Map::new();
    if let Some(start) = too_new_start {
        rejected.insert("tooNewLogEventStartIndex".into(), json!(start));
    }
    if too_old > 0 {
        rejected.insert("tooOldLogEventEndIndex".into(), json!(too_old));
    }
    if expired > 0 {
        rejected.insert("expiredLogEventEndIndex".into(), json!(expired));
    }
    if !rejected.is_empty() {
        out["rejectedLogEventsInfo"] = Value::Object(rejected);
    }
    Ok(out)
}

fn time_range(input: &Input, p: &mut Problems) -> Result<(Option<i64>, Option<i64>), LogsError> {
    let start = input.int("startTime")?;
    let end = input.int("endTime")?;
    for (field, value) in [("startTime", start), ("endTime", end)] {
        if let Some(v) = value {
            check_range(p, field, v, 0, i64::MAX);
        }
    }
    Ok((start, end))
}

pub async fn get_log_events(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let group = ctx.resolve_group(&input, &mut p)?;
    let stream = required(&mut p, "logStreamName", input.string("logStreamName")?);
    if let Some(stream) = &stream {
        check_stream_name(&mut p, "logStreamName", stream);
    }
    let (start, end) = time_range(&input, &mut p)?;
    let limit = input.int("limit")?;
    if let Some(limit) = limit {
        check_range(&mut p, "limit", limit, 1, MAX_BATCH_EVENTS as i64);
    }
    let from_head = input.boolean("startFromHead")?.unwrap_or(false);
    let token = input.string("nextToken")?;
    p.into_result()?;
    let (forward, cursor) = match &token {
        Some(token) => parse_stream_token(token).ok_or_else(invalid_token)?,
        None if from_head => (true, (0, 0)),
        None => (false, (i64::MAX, i64::MAX)),
    };
    let (group, stream) = (group.unwrap_or_default(), stream.unwrap_or_default());
    let limit = limit.unwrap_or(MAX_BATCH_EVENTS as i64) as usize;
    let (start, end) = (start.unwrap_or(0), end.unwrap_or(i64::MAX));
    // The store stops at MAX_PAGE_BYTES while reading, keeping the end nearest the cursor.
    let events = ctx
        .blocking(move |store| {
            store.stream_events(
                &group,
                &stream,
                start,
                end,
                forward,
                cursor,
                limit,
                MAX_PAGE_BYTES,
            )
        })
        .await?;
    let (next_forward, next_backward) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (
            stream_token(true, (last.timestamp, last.seq)),
            stream_token(false, (first.timestamp, first.seq - 1)),
        ),
        // Nothing (more) in this direction: the token that came in goes back out, and the
        // other direction continues from the same point.
        _ => {
            let at = if token.is_some() { cursor } else { (0, 0) };
            (stream_token(true, at), stream_token(false, at))
        }
    };
    let out_events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
            })
        })
        .collect();
    Ok(json!({
        "events": out_events,
        "nextForwardToken": next_forward,
        "nextBackwardToken": next_backward,
    }))
}

pub async fn filter_log_events(ctx: &Arc<LogsContext>, input: Value) -> Result<Value, LogsError> {
    let input = Input::new(input)?;
    let mut p = Problems::default();
    let group = ctx.resolve_group(&input, &mut p)?;
    let names = input.strings("logStreamNames")?;
    if let Some(names) = &names {
        if names.is_empty() {
            p.constraint(
                "'[]'",
                "logStreamNames",
                "Member must have length greater than or equal to 1",
            );
        } else if names.len() > 100 {
            p.constraint(
                "'[…]'",
                "logStreamNames",
                "Member must have length less than or equal to 100",
            );
        }
        for (i, name) in names.iter().enumerate() {
            check_stream_name(&mut p, &format!("logStreamNames.{}.member", i + 1), name);
        }
    }
    let prefix = input.string("logStreamNamePrefix")?;
    if let Some(prefix) = &prefix {
        check_stream_name(&mut p, "logStreamNamePrefix", prefix);
    }
    let (start, end) = time_range(&input, &mut p)?;
    let pattern = input.string("filterPattern")?.unwrap_or_default();
    check_length(&mut p, "filterPattern", &pattern, 0, 1024);
    let limit = input.int("limit")?;
    if let Some(limit) = limit {
        check_range(&mut p, "limit", limit, 1, MAX_BATCH_EVENTS as i64);
    }
    let from_head = input.boolean("startFromHead")?.unwrap_or(true);
    let token = input.string("nextToken")?;
    let _ = input.boolean("interleaved")?;
    p.into_result()?;
    if names.is_some() && prefix.is_some() {
        return Err(LogsError::InvalidParameter(
            // guessed
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.".to_string(),
        ));
    }
    let pattern = FilterPattern::parse(&pattern).map_err(|e| LogsError::InvalidParameter(e.0))?;
    // A token carries its direction: "the nextToken determines the sort direction".
    let (forward, cursor) = match &token {
        Some(token) => {
            let (forward, cursor) = parse_filter_token(token).ok_or_else(invalid_token)?;
            (forward, Some(cursor))
        }
        None => (from_head, None),
    };
    let selection = match (names, prefix) {
        (Some(names), _) => StreamSelection::Names(names),
        (None, Some(prefix)) => StreamSelection::Prefix(prefix),
        (None, None) => StreamSelection::All,
    };
    let group = group.unwrap_or_default();
    let limit = limit.unwrap_or(MAX_BATCH_EVENTS as i64) as usize;
    let (start, end) = (start.unwrap_or(0), end.unwrap_or(i64::MAX));
    let scan = ctx
        .blocking(move |store| {
            store.scan_group(
                &group,
                &selection,
                start,
                end,
                forward,
                cursor,
                FILTER_SCAN_BUDGET,
                limit,
                MAX_PAGE_BYTES,
                &|message| pattern.matches(message),
            )
        })
        .await?;
    let events: Vec<Value> = scan
        .matched
        .iter()
        .map(|e| {
            json!({
                "logStreamName": e.stream_name,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": event_id(e),
            })
        })
        .collect();
    let mut out = json!({ "events": events, "searchedLogStreams": [] });
    if !scan.exhausted {
        if let Some(position) = scan.position {
            out["nextToken"] = json!(filter_token(forward, position));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = stream_token(true, (1_700_000_000_000, 42));
        assert!(token.starts_with("f/") && token.ends_with("/s"));
        assert_eq!(token.len(), 2 + 56 + 2);
        assert_eq!(
            parse_stream_token(&token),
            Some((true, (1_700_000_000_000, 42)))
        );
        let back = stream_token(false, (i64::MAX, i64::MAX));
        assert_eq!(
            parse_stream_token(&back),
            Some((false, (i64::MAX, i64::MAX)))
        );
        assert_eq!(parse_stream_token("f/123/s"), None);
        assert_eq!(parse_stream_token("x/"), None);
        let filter = filter_token(false, (5, 6));
        assert_eq!(parse_filter_token(&filter), Some((false, (5, 6))));
        assert_eq!(parse_filter_token("A12"), None);
        assert_eq!(unhex(&hex("a/b#c")).as_deref(), Some("a/b#c"));
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn problems_are_reported_like_aws() {
        let mut p = Problems::default();
        check_group_name(&mut p, "logGroupName", "bad name!");
        let Err(LogsError::InvalidParameter(message)) = p.into_result() else {
            panic!("expected a problem");
        };
        assert_eq!(
            message,
            r"1 validation error detected: Value 'bad name!' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+"
        );
    }
}
