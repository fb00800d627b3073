//! The AWS JSON 1.0/1.1 protocol envelope: `POST /` with `X-Amz-Target: <Prefix>.<Operation>`,
//! a JSON object body, and errors as `{"__type": ..., "message": ...}`.
//!
//! This module splits the target, reads the body into a `serde_json::Value` and builds the
//! protocol-level errors (`SerializationException`, `UnknownOperationException`). It does not
//! know any service's operations or shapes: turning the body into typed input, and validating
//! members, is each service's job.

use crate::AwsError;

pub const CONTENT_TYPE_1_0: &str = "application/x-amz-json-1.0";
pub const CONTENT_TYPE_1_1: &str = "application/x-amz-json-1.1";

/// Split an `X-Amz-Target` value into (prefix, operation). `None` if it has no dot.
pub fn parse_target(target: &str) -> Option<(&str, &str)> {
    target.rsplit_once('.')
}

/// The body AWS sends for a JSON-protocol error: `{"__type":"<code>","message":"<message>"}`.
pub fn error_body(error: &AwsError) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"__type": error.code, "message": error.message}))
        .unwrap_or_default()
}

/// The longest operation name echoed back in an error message; longer targets are cut so a
/// hostile header cannot bloat every error response.
const MAX_ECHOED_TARGET: usize = 200;

/// A `SerializationException` (400): the body is not what the protocol or the operation's
/// input shape expects. Services use it too, e.g. with AWS's own "Start of structure or map
/// found where not expected." when a member that should be a string holds an object.
pub fn serialization_exception(message: impl Into<String>) -> AwsError {
    AwsError::sender("SerializationException", message)
}

/// Parse a JSON-protocol request body into the operation's input object.
///
/// An empty (or all-whitespace) body is `{}`: the Smithy protocol tests require operations
/// without input to accept no payload. Anything that is not JSON, or is JSON but not an object,
/// is a `SerializationException`, with messages in the style of AWS's JSON services
/// ("Start of list found where not expected" for a top-level array, a character-level
/// description for a syntax error).
pub fn parse_body(body: &[u8]) -> Result<serde_json::Value, AwsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(other) => Err(serialization_exception(match other {
            serde_json::Value::Array(_) => "Start of list found where not expected",
            serde_json::Value::String(_) => {
                "Expected the start of a structure ('{'), found a string value"
            }
            serde_json::Value::Number(_) => {
                "Expected the start of a structure ('{'), found a number value"
            }
            serde_json::Value::Bool(_) => {
                "Expected the start of a structure ('{'), found a boolean value"
            }
            serde_json::Value::Null | serde_json::Value::Object(_) => {
                "Expected the start of a structure ('{'), found null"
            }
        })),
        Err(error) => Err(serialization_exception(describe_syntax_error(body, &error))),
    }
}

/// `UnknownOperationException` (400) for an `X-Amz-Target` that names no operation of the
/// service. AWS sends this with no message; ours says which target was not understood.
pub fn unknown_operation(target: &str) -> AwsError {
    let shown: String = target.chars().take(MAX_ECHOED_TARGET).collect();
    let ellipsis = if shown.len() < target.len() {
        "..."
    } else {
        ""
    };
    AwsError::sender(
        "UnknownOperationException",
        format!("Unknown operation: X-Amz-Target '{shown}{ellipsis}' names no operation of this service."),
    )
}

/// `UnknownOperationException` (400) for a JSON-protocol request with no `X-Amz-Target`.
pub fn missing_target() -> AwsError {
    AwsError::sender(
        "UnknownOperationException",
        "Missing X-Amz-Target header: AWS JSON protocol requests name their operation there, \
         as <ServicePrefix>.<Operation>.",
    )
}

/// A parse error in the words of the Jackson-based AWS services: the offending character and
/// where it is.
fn describe_syntax_error(body: &[u8], error: &serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let reason = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full);
    if error.classify() == serde_json::error::Category::Eof {
        return format!("Unexpected end-of-input: {reason}");
    }
    match offending_char(body, line, column) {
        Some(Ok(c)) => format!(
            "Unexpected character ('{}' (code {})): {reason} at line {line}, column {column}",
            c.escape_debug(),
            u32::from(c)
        ),
        Some(Err(byte)) => {
            format!("Unexpected byte 0x{byte:02X}: {reason} at line {line}, column {column}")
        }
        None => format!("{reason} at line {line}, column {column}"),
    }
}

/// The character at serde_json's 1-based (line, byte column); `Err(byte)` if it is not UTF-8.
fn offending_char(body: &[u8], line: usize, column: usize) -> Option<Result<char, u8>> {
    let line_bytes = body.split(|&b| b == b'\n').nth(line.checked_sub(1)?)?;
    let rest = line_bytes.get(column.checked_sub(1)?..)?;
    let first = *rest.first()?;
    for len in 1..=rest.len().min(4) {
        if let Some(c) = rest
            .get(..len)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.chars().next())
        {
            return Some(Ok(c));
        }
    }
    Some(Err(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fault;
    use serde_json::json;

    #[test]
    fn parse_target_splits_on_the_last_dot() {
        assert_eq!(
            parse_target("AmazonEC2ContainerServiceV20141113.ListClusters"),
            Some(("AmazonEC2ContainerServiceV20141113", "ListClusters"))
        );
        assert_eq!(parse_target("NoDot"), None);
    }

    #[test]
    fn error_body_has_type_and_message() {
        let body = error_body(&unknown_operation("X.Y"));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("error body is JSON");
        assert_eq!(v["__type"], "UnknownOperationException");
        assert!(v["message"].as_str().is_some_and(|m| m.contains("X.Y")));
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        assert_eq!(parse_body(b""), Ok(json!({})));
        assert_eq!(parse_body(b"  \r\n\t"), Ok(json!({})));
    }

    #[test]
    fn object_body_parses() {
        assert_eq!(
            parse_body(br#"{"cluster":"default","maxResults":5}"#),
            Ok(json!({"cluster":"default","maxResults":5}))
        );
        assert_eq!(parse_body(b" {} "), Ok(json!({})));
    }

    fn serialization_message(body: &[u8]) -> String {
        let err = parse_body(body).expect_err("body should be refused");
        assert_eq!(err.code, "SerializationException");
        assert_eq!(err.status, 400);
        assert_eq!(err.fault, Fault::Sender);
        err.message
    }

    #[test]
    fn top_level_array_is_refused_like_aws() {
        assert_eq!(
            serialization_message(b"[1,2]"),
            "Start of list found where not expected"
        );
    }

    #[test]
    fn top_level_scalars_are_refused() {
        assert!(serialization_message(br#""abc""#).contains("string"));
        assert!(serialization_message(b"42").contains("number"));
        assert!(serialization_message(b"true").contains("boolean"));
        assert!(serialization_message(b"null").contains("null"));
    }

    #[test]
    fn garbage_names_the_character() {
        assert_eq!(
            serialization_message(b"xyz"),
            "Unexpected character ('x' (code 120)): expected value at line 1, column 1"
        );
        let msg = serialization_message(b"{\n  \"a\": 1,\n  }");
        assert!(
            msg.starts_with("Unexpected character ('}' (code 125))"),
            "{msg}"
        );
        assert!(msg.ends_with("at line 3, column 3"), "{msg}");
        let msg = serialization_message("{\"a\": é}".as_bytes());
        assert!(
            msg.starts_with("Unexpected character ('é' (code 233))"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_json_is_end_of_input() {
        let msg = serialization_message(br#"{"a": "#);
        assert!(msg.starts_with("Unexpected end-of-input"), "{msg}");
    }

    #[test]
    fn invalid_utf8_is_refused_without_panicking() {
        let msg = serialization_message(b"{\"a\": \"\xff\"}");
        assert!(!msg.is_empty());
        let msg = serialization_message(b"\xff");
        assert!(msg.contains("0xFF"), "{msg}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let body = "[".repeat(100_000);
        serialization_message(body.as_bytes());
    }

    #[test]
    fn unknown_operation_is_a_400_naming_the_target() {
        let err = unknown_operation("AmazonEC2ContainerServiceV20141113.Frobnicate");
        assert_eq!(err.code, "UnknownOperationException");
        assert_eq!(err.status, 400);
        assert_eq!(err.fault, Fault::Sender);
        assert!(err
            .message
            .contains("AmazonEC2ContainerServiceV20141113.Frobnicate"));
    }

    #[test]
    fn unknown_operation_truncates_long_targets() {
        let err = unknown_operation(&"é".repeat(10_000));
        assert!(err.message.chars().count() < 400);
        assert!(err.message.contains("..."));
    }

    #[test]
    fn missing_target_is_unknown_operation() {
        let err = missing_target();
        assert_eq!(err.code, "UnknownOperationException");
        assert_eq!(err.status, 400);
        assert!(err.message.contains("X-Amz-Target"));
    }
}
