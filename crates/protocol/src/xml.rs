//! XML responses of the AWS Query protocol:
//! `<OpResponse xmlns="…"><OpResult>…</OpResult><ResponseMetadata><RequestId>…</RequestId>
//! </ResponseMetadata></OpResponse>`, lists as `<member>` elements, maps as
//! `<entry><key/><value/></entry>`, timestamps in ISO 8601; and the error envelope
//! `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
//!
//! Only writing is needed (requests are form-encoded), so this is a small writer of our own
//! rather than a general XML library.

use serde_json::Value as Json;

use crate::shape::{as_f64, format_iso8601, Shape, ShapeTable, MAX_DEPTH};
use crate::{AwsError, Fault};

pub const CONTENT_TYPE: &str = "text/xml";

/// Append `text` escaped for element content or attribute values. Characters XML 1.0 cannot
/// carry at all (most C0 controls) become U+FFFD rather than an unparsable document.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A double as AWS's Java services print it: `1.0`, `92.5`, `1.0E-4`, `NaN`.
pub fn format_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let s = format!("{f}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    // Scientific, Java style: mantissa with at least one decimal, `E`, exponent without `+`.
    let s = format!("{f:e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exponent}")
}

/// Write the canonical value of `shape` as the children of an element (the member elements of
/// a structure, the `<member>`s of a list, the `<entry>`s of a map, or escaped text).
pub fn write_value(out: &mut String, table: &ShapeTable, shape: &str, value: &Json) {
    write_inner(out, table, shape, value, 0);
}

fn write_inner(out: &mut String, table: &ShapeTable, name: &str, value: &Json, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let wrap = |out: &mut String, tag: &str, target: &str, v: &Json| {
        out.push('<');
        out.push_str(tag);
        out.push('>');
        write_inner(out, table, target, v, depth + 1);
        out.push_str("</");
        out.push_str(tag);
        out.push('>');
    };
    match (table.get(name), value) {
        (_, Json::Null) => {}
        (Some(Shape::Structure(members)), Json::Object(object)) => {
            for (member, target) in members {
                if let Some(v) = object.get(*member).filter(|v| !v.is_null()) {
                    wrap(out, member, target, v);
                }
            }
        }
        (Some(Shape::List(member)), Json::Array(items)) => {
            for item in items {
                wrap(out, "member", member, item);
            }
        }
        (Some(Shape::Map(key_shape, value_shape)), Json::Object(object)) => {
            for (k, v) in object {
                out.push_str("<entry>");
                wrap(out, "key", key_shape, &Json::String(k.clone()));
                wrap(out, "value", value_shape, v);
                out.push_str("</entry>");
            }
        }
        (Some(Shape::Double), v) => escape_into(out, &format_double(as_f64(v).unwrap_or(f64::NAN))),
        (Some(Shape::Timestamp), v) => {
            escape_into(out, &format_iso8601(as_f64(v).unwrap_or_default()))
        }
        (_, Json::String(s)) => escape_into(out, s),
        (_, Json::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        (_, Json::Number(n)) => out.push_str(&n.to_string()),
        (_, Json::Array(items)) => {
            for item in items {
                out.push_str("<member>");
                write_inner(out, table, "", item, depth + 1);
                out.push_str("</member>");
            }
        }
        (_, Json::Object(object)) => {
            for (k, v) in object {
                wrap(out, k, "", v);
            }
        }
    }
}

/// A whole successful response. `result`: the output shape and its canonical value, or `None`
/// for operations without output (which answer with only the metadata).
pub fn response(
    operation: &str,
    namespace: &str,
    result: Option<(&ShapeTable, &str, &Json)>,
    request_id: &str,
) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!("<{operation}Response xmlns=\""));
    escape_into(&mut out, namespace);
    out.push_str("\">");
    if let Some((table, shape, value)) = result {
        out.push_str(&format!("<{operation}Result>"));
        write_value(&mut out, table, shape, value);
        out.push_str(&format!("</{operation}Result>"));
    }
    out.push_str("<ResponseMetadata>");
    element(&mut out, "RequestId", request_id);
    out.push_str("</ResponseMetadata>");
    out.push_str(&format!("</{operation}Response>"));
    out
}

/// The Query protocol's error document. `code` is the legacy Query code (the model's
/// `error.code`, e.g. `InvalidParameterValue`), which may differ from `error.code`.
pub fn error_response(error: &AwsError, code: &str, namespace: &str, request_id: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<ErrorResponse xmlns=\"");
    escape_into(&mut out, namespace);
    out.push_str("\"><Error>");
    element(
        &mut out,
        "Type",
        match error.fault {
            Fault::Sender => "Sender",
            Fault::Receiver => "Receiver",
        },
    );
    element(&mut out, "Code", code);
    element(&mut out, "Message", &error.message);
    out.push_str("</Error>");
    element(&mut out, "RequestId", request_id);
    out.push_str("</ErrorResponse>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::tests::TEST_SHAPES;
    use serde_json::json;

    #[test]
    fn escapes_markup_and_drops_unencodable_controls() {
        let mut out = String::new();
        escape_into(&mut out, "a<b>&\"c\"'\u{1}\r\n");
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&quot;&apos;\u{FFFD}&#xD;\n");
    }

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(format_double(1.0), "1.0");
        assert_eq!(format_double(92.5), "92.5");
        assert_eq!(format_double(0.0), "0.0");
        assert_eq!(format_double(-3.0), "-3.0");
        assert_eq!(format_double(1e-4), "1.0E-4");
        assert_eq!(format_double(1.5e10), "1.5E10");
        assert_eq!(format_double(f64::NAN), "NaN");
    }

    #[test]
    fn output_shapes_become_member_elements() {
        let body = response(
            "GetMetricStatistics",
            "http://monitoring.amazonaws.com/doc/2010-08-01/",
            Some((
                &TEST_SHAPES,
                "Output",
                &json!({"Label": "CPU & co", "Count": 2, "Datapoints": [
                    {"Timestamp": 1_704_067_200.0, "Average": 5.0, "Unit": "Percent",
                     "Extended": {"p90": 7.5}}
                ]}),
            )),
            "req-1",
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <GetMetricStatisticsResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
             <GetMetricStatisticsResult><Label>CPU &amp; co</Label><Datapoints><member>\
             <Timestamp>2024-01-01T00:00:00Z</Timestamp><Average>5.0</Average><Unit>Percent</Unit>\
             <Extended><entry><key>p90</key><value>7.5</value></entry></Extended></member></Datapoints>\
             <Count>2</Count></GetMetricStatisticsResult>\
             <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>\
             </GetMetricStatisticsResponse>"
        );
    }

    #[test]
    fn operations_without_output_answer_metadata_only() {
        let body = response("PutMetricData", "ns", None, "r");
        assert!(body.ends_with(
            "<PutMetricDataResponse xmlns=\"ns\"><ResponseMetadata><RequestId>r</RequestId>\
             </ResponseMetadata></PutMetricDataResponse>"
        ));
    }

    #[test]
    fn errors_carry_type_code_message_and_request_id() {
        let error = AwsError::sender("InvalidParameterValueException", "bad <value>");
        let body = error_response(&error, "InvalidParameterValue", "ns", "r");
        assert!(body.ends_with(
            "<ErrorResponse xmlns=\"ns\"><Error><Type>Sender</Type><Code>InvalidParameterValue</Code>\
             <Message>bad &lt;value&gt;</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        ));
    }
}
