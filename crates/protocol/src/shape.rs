//! A service's shapes, as much of them as the wire codecs need: which members are structures,
//! lists, maps, timestamps, doubles or integers. Query parameters are all strings and CBOR and
//! XML distinguish integers from doubles and timestamps from numbers, so no protocol but plain
//! JSON can be decoded or encoded without knowing the shape.
//!
//! Every codec here turns a request into one *canonical value*, a `serde_json::Value` in which
//! structures are objects keyed by member name, lists are arrays, maps are objects, strings are
//! strings, booleans are booleans, integers are integer numbers, doubles are floating-point
//! numbers, timestamps are floating-point epoch seconds and blobs are base64 strings (the JSON
//! protocol's own forms). Handlers read and write only that form; the codecs translate the
//! output back with the same table.
//!
//! Service tables are generated from the botocore model into `static` arrays (see
//! `controlplane::cloudwatch::shapes`).

use serde_json::{Map, Number, Value};

/// One shape of a service model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `(member name, target shape name)` in the model's (or its `xmlOrder`'s) order.
    Structure(&'static [(&'static str, &'static str)]),
    /// The member shape's name.
    List(&'static str),
    /// Key and value shape names.
    Map(&'static str, &'static str),
    String,
    Boolean,
    Integer,
    Long,
    Double,
    Timestamp,
    Blob,
}

/// A service's shapes, sorted by name so they can be looked up with a binary search.
#[derive(Debug)]
pub struct ShapeTable(pub &'static [(&'static str, Shape)]);

impl ShapeTable {
    pub fn get(&self, name: &str) -> Option<Shape> {
        self.0
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| self.0[i].1)
    }

    /// The shape of member `member` of structure `structure`, if both exist.
    pub fn member(&self, structure: &str, member: &str) -> Option<(&'static str, Shape)> {
        match self.get(structure)? {
            Shape::Structure(members) => members
                .iter()
                .find(|(m, _)| *m == member)
                .and_then(|(_, target)| Some((*target, self.get(target)?))),
            _ => None,
        }
    }
}

/// Why a request body did not fit its input shape; services answer with their
/// `SerializationException` (JSON, CBOR) or a `MalformedInput`-style error (Query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// Deepest nesting the codecs follow; CloudWatch's shapes nest less than ten deep, and a
/// recursive shape (none exists in CloudWatch) cannot make a hostile body recurse forever.
pub(crate) const MAX_DEPTH: usize = 32;

/// Check a JSON-protocol input against its shape and bring it into the canonical form:
/// integers for integer members (a JSON `5.0` is accepted, `5.5` is not), floating-point numbers
/// for doubles, timestamps from epoch seconds (numbers) or ISO 8601 strings. Members the model
/// does not know are dropped, as AWS's JSON services ignore them.
pub fn normalize_json(table: &ShapeTable, shape: &str, value: Value) -> Result<Value, ShapeError> {
    normalize(table, shape, value, 0)
}

fn normalize(
    table: &ShapeTable,
    name: &str,
    value: Value,
    depth: usize,
) -> Result<Value, ShapeError> {
    if depth > MAX_DEPTH {
        return Err(ShapeError("Request nesting is too deep.".into()));
    }
    let shape = table
        .get(name)
        .ok_or_else(|| ShapeError(format!("unknown shape {name}")))?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    match (shape, value) {
        (Shape::Structure(members), Value::Object(object)) => {
            let mut out = Map::new();
            for (key, member_value) in object {
                if let Some((_, target)) = members.iter().find(|(m, _)| *m == key) {
                    let v = normalize(table, target, member_value, depth + 1)?;
                    if !v.is_null() {
                        out.insert(key, v);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        (Shape::List(member), Value::Array(items)) => Ok(Value::Array(
            items
                .into_iter()
                .map(|item| normalize(table, member, item, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        (Shape::Map(_, value_shape), Value::Object(object)) => {
            let mut out = Map::new();
            for (key, v) in object {
                out.insert(key, normalize(table, value_shape, v, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        (Shape::String, v @ Value::String(_)) => Ok(v),
        (Shape::Blob, v @ Value::String(_)) => Ok(v),
        (Shape::Boolean, v @ Value::Bool(_)) => Ok(v),
        (Shape::Integer | Shape::Long, Value::Number(n)) => {
            let i = integer_value(&n)
                .ok_or_else(|| ShapeError(format!("Expected an integer for {name}, found {n}")))?;
            in_range(shape, i).map(Value::from)
        }
        (Shape::Double, Value::Number(n)) => Ok(double_value(n.as_f64().unwrap_or(0.0))),
        (Shape::Double, Value::String(s)) => special_double(&s)
            .map(double_value)
            .ok_or_else(|| ShapeError(format!("Expected a number for {name}, found a string"))),
        (Shape::Timestamp, Value::Number(n)) => n
            .as_f64()
            .and_then(checked_timestamp)
            .map(double_value)
            .ok_or_else(|| ShapeError(format!("Invalid timestamp for {name}: {n}"))),
        (Shape::Timestamp, Value::String(s)) => parse_timestamp(&s)
            .map(double_value)
            .ok_or_else(|| ShapeError(format!("Invalid timestamp for {name}: {s}"))),
        (shape, other) => Err(ShapeError(mismatch(shape, &other))),
    }
}

/// AWS's Jackson-style message for a value of the wrong JSON type.
fn mismatch(shape: Shape, found: &Value) -> String {
    let found = match found {
        Value::Object(_) => return "Start of structure or map found where not expected.".into(),
        Value::Array(_) => return "Start of list found where not expected".into(),
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    let expected = match shape {
        Shape::Structure(_) | Shape::Map(..) => "a structure ('{')",
        Shape::List(_) => "a list ('[')",
        Shape::String | Shape::Blob => "a string",
        Shape::Boolean => "a boolean",
        Shape::Integer | Shape::Long => "an integer",
        Shape::Double => "a number",
        Shape::Timestamp => "a timestamp",
    };
    format!("Expected {expected}, found {found} value")
}

/// An integer member's value checked against its shape's width: the model's `Integer` is 32
/// bits (`Long` is 64), and handlers multiply such values (`Period * 1000`), so a value that
/// fits no `int` must not get past the codec.
pub(crate) fn in_range(shape: Shape, i: i64) -> Result<i64, ShapeError> {
    if shape == Shape::Integer && i32::try_from(i).is_err() {
        // Jackson's wording, which AWS's JSON services answer with.
        return Err(ShapeError(format!(
            "Numeric value ({i}) out of range of int"
        )));
    }
    Ok(i)
}

/// The instants the codecs accept, in epoch seconds: years 0000 to 9999, what ISO 8601's
/// four-digit years can name. Anything outside is a hostile or broken client; refusing it here
/// keeps handlers' millisecond arithmetic (`seconds * 1000`, period alignment) far from `i64`
/// overflow.
pub const MIN_TIMESTAMP_SECONDS: f64 = -62_167_219_200.0;
pub const MAX_TIMESTAMP_SECONDS: f64 = 253_402_300_799.999;

/// `seconds` if it is a finite instant within [`MIN_TIMESTAMP_SECONDS`, `MAX_TIMESTAMP_SECONDS`].
pub fn checked_timestamp(seconds: f64) -> Option<f64> {
    (seconds.is_finite() && (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds))
        .then_some(seconds)
}

/// An integer from a JSON number that holds one exactly (`5` or `5.0`).
pub(crate) fn integer_value(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// A canonical double: a floating-point JSON number; NaN and infinities (which JSON cannot
/// hold) become the strings the JSON protocol uses for them.
pub fn double_value(f: f64) -> Value {
    Number::from_f64(f).map(Value::Number).unwrap_or_else(|| {
        Value::String(
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .into(),
        )
    })
}

/// The JSON protocol's spellings of the non-finite doubles.
pub(crate) fn special_double(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A canonical double or timestamp back as `f64` (numbers, and the special strings).
pub fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => special_double(s),
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Calendar fields of a UTC instant given in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub millis: i64,
}

impl Civil {
    pub fn from_millis(ms: i64) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let rest = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: rest / 3_600_000,
            minute: rest / 60_000 % 60,
            second: rest / 1000 % 60,
            millis: rest % 1000,
        }
    }
}

/// ISO 8601 in UTC as the Query protocol writes timestamps: `2024-01-02T03:04:05Z`, with
/// `.mmm` when the instant has milliseconds.
pub fn format_iso8601(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as i64;
    let c = Civil::from_millis(ms);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
    if c.millis == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{:03}Z", c.millis)
    }
}

/// Parse an ISO 8601 / RFC 3339 date-time (`2024-01-02T03:04:05Z`, with optional fraction and
/// `±hh:mm` offset; a missing zone is UTC; a bare date is midnight) or epoch seconds, into
/// epoch seconds.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    parse_timestamp_unchecked(text).and_then(checked_timestamp)
}

fn parse_timestamp_unchecked(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return checked_timestamp(seconds);
    }
    let bytes = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) as f64 * 86_400.0;
    if bytes.len() == 10 {
        return Some(seconds);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.len() < 19 {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    seconds += (hour * 3600 + minute * 60 + second) as f64;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        seconds += format!("0.{}", &fraction[..digits]).parse::<f64>().ok()?;
        rest = &fraction[digits..];
    }
    match rest {
        "" | "Z" | "z" => Some(seconds),
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1.0,
                b'-' => -1.0,
                _ => return None,
            };
            let zone = zone[1..].replace(':', "");
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: f64 = zone[..2].parse().ok()?;
            let minutes: f64 = zone[2..].parse().ok()?;
            Some(seconds - sign * (hours * 3600.0 + minutes * 60.0))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A small table in the style of the generated ones, shared by the codec tests.
    pub static TEST_SHAPES: ShapeTable = ShapeTable(&[
        ("Bool", Shape::Boolean),
        (
            "Datapoint",
            Shape::Structure(&[
                ("Timestamp", "Time"),
                ("Average", "Double"),
                ("Unit", "Str"),
                ("Extended", "ValueMap"),
            ]),
        ),
        ("Datapoints", Shape::List("Datapoint")),
        (
            "Dimension",
            Shape::Structure(&[("Name", "Str"), ("Value", "Str")]),
        ),
        ("Dimensions", Shape::List("Dimension")),
        ("Double", Shape::Double),
        (
            "Input",
            Shape::Structure(&[
                ("Namespace", "Str"),
                ("Period", "Int"),
                ("Start", "Time"),
                ("Dimensions", "Dimensions"),
                ("Stats", "Strs"),
                ("Flag", "Bool"),
                ("Value", "Double"),
                ("Total", "Long"),
            ]),
        ),
        ("Int", Shape::Integer),
        ("Long", Shape::Long),
        (
            "Output",
            Shape::Structure(&[
                ("Label", "Str"),
                ("Datapoints", "Datapoints"),
                ("Count", "Int"),
            ]),
        ),
        ("Str", Shape::String),
        ("Strs", Shape::List("Str")),
        ("Time", Shape::Timestamp),
        ("ValueMap", Shape::Map("Str", "Double")),
    ]);

    #[test]
    fn table_is_sorted_and_found() {
        assert!(TEST_SHAPES.0.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(TEST_SHAPES.get("Int"), Some(Shape::Integer));
        assert_eq!(TEST_SHAPES.get("Nope"), None);
        assert_eq!(
            TEST_SHAPES.member("Input", "Period"),
            Some(("Int", Shape::Integer))
        );
    }

    #[test]
    fn json_is_normalized_by_shape() {
        let v = normalize_json(
            &TEST_SHAPES,
            "Input",
            json!({"Namespace": "N", "Period": 60.0, "Start": "2024-01-01T00:00:00Z",
                   "Value": 3, "Unknown": 1, "Flag": null}),
        )
        .expect("valid");
        assert_eq!(v["Period"], json!(60));
        assert!(v["Period"].is_i64());
        assert!(v["Value"].is_f64());
        assert_eq!(v["Start"], json!(1_704_067_200.0));
        assert!(v.get("Unknown").is_none());
        assert!(v.get("Flag").is_none());
    }

    #[test]
    fn json_type_mismatches_are_refused() {
        let err = normalize_json(&TEST_SHAPES, "Input", json!({"Period": 1.5})).unwrap_err();
        assert!(err.0.contains("integer"), "{err}");
        let err = normalize_json(&TEST_SHAPES, "Input", json!({"Namespace": {}})).unwrap_err();
        assert_eq!(err.0, "Start of structure or map found where not expected.");
        let err = normalize_json(&TEST_SHAPES, "Input", json!({"Stats": "x"})).unwrap_err();
        assert!(err.0.contains("list"), "{err}");
    }

    #[test]
    fn integers_are_range_checked_by_width() {
        let input = |v: Value| normalize_json(&TEST_SHAPES, "Input", v);
        assert_eq!(
            input(json!({"Period": 2_147_483_647})).unwrap()["Period"],
            json!(2_147_483_647)
        );
        assert_eq!(
            input(json!({"Period": -2_147_483_648})).unwrap()["Period"],
            json!(-2_147_483_648i64)
        );
        for bad in [2_147_483_648i64, -2_147_483_649, i64::MAX] {
            let err = input(json!({ "Period": bad })).unwrap_err();
            assert!(err.0.contains("out of range of int"), "{err}");
        }
        // A Long keeps its 64 bits.
        assert_eq!(
            input(json!({"Total": 9_000_000_000i64})).unwrap()["Total"],
            json!(9_000_000_000i64)
        );
    }

    #[test]
    fn timestamps_outside_years_0_to_9999_are_refused() {
        let input = |v: Value| normalize_json(&TEST_SHAPES, "Input", v);
        for bad in [
            json!(1e300),
            json!(-1e300),
            json!("1e300"),
            json!(3.0e11),
            json!(-6.3e10),
        ] {
            assert!(input(json!({ "Start": bad })).is_err(), "{bad}");
        }
        assert_eq!(parse_timestamp("1e300"), None);
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59Z"),
            Some(253_402_300_799.0)
        );
        assert_eq!(
            parse_timestamp("0000-01-01T00:00:00Z"),
            Some(MIN_TIMESTAMP_SECONDS)
        );
        assert!(input(json!({"Start": 253_402_300_799.0})).is_ok());
        assert!(input(json!({"Start": -1.5})).is_ok());
    }

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_timestamp("2024-02-29T12:30:15.250Z"),
            Some(1_709_209_815.25)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T13:30:15.250+01:00"),
            Some(1_709_209_815.25)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T12:30:15"),
            Some(1_709_209_815.0)
        );
        assert_eq!(parse_timestamp("2024-02-29"), Some(1_709_164_800.0));
        assert_eq!(parse_timestamp("1709209815"), Some(1_709_209_815.0));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-13-01T00:00:00Z"), None);
        assert_eq!(format_iso8601(1_709_209_815.25), "2024-02-29T12:30:15.250Z");
        assert_eq!(format_iso8601(0.0), "1970-01-01T00:00:00Z");
        for t in [0.0, 951_782_400.0, 1_709_209_815.0, 4_102_444_800.5] {
            assert_eq!(parse_timestamp(&format_iso8601(t)), Some(t));
        }
    }

    #[test]
    fn civil_fields() {
        let c = Civil::from_millis(1_709_209_815_250);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis),
            (2024, 2, 29, 12, 30, 15, 250)
        );
    }
}
