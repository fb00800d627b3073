//! Smithy RPC v2 CBOR (`smithy.protocols#rpcv2Cbor`): `POST /service/<Service>/operation/<Op>`
//! with `smithy-protocol: rpc-v2-cbor` and CBOR bodies both ways; timestamps are tag 1 over
//! epoch seconds; errors are maps with `__type` (and `message`).
//!
//! A small CBOR (RFC 8949) reader and writer of our own: the protocol needs only the generic data
//! model (no serde derive), indefinite-length items from clients, half-precision floats and
//! tags, and a writer whose choices we control: definite lengths, the shortest integer heads,
//! every double as a 64-bit float (the AWS SDKs read a double member only from a float item and
//! an integer member only from an integer item, which is why the shape drives the encoding).

use serde_json::{Map, Value as Json};

use crate::shape::{
    as_f64, checked_timestamp, double_value, in_range, integer_value, Shape, ShapeError,
    ShapeTable, MAX_DEPTH,
};
use crate::AwsError;

pub const CONTENT_TYPE: &str = "application/cbor";
pub const PROTOCOL_HEADER: &str = "smithy-protocol";
pub const PROTOCOL: &str = "rpc-v2-cbor";

/// CBOR's "epoch-based date/time" tag.
const TAG_EPOCH: u64 = 1;

/// A decoded CBOR data item.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Major types 0 and 1 (−2^64 ..= 2^64−1).
    Integer(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    /// Keys in the order received (or to be written).
    Map(Vec<(Value, Value)>),
    Tag(u64, Box<Value>),
    Bool(bool),
    Null,
    Undefined,
    Float(f64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("unexpected end of CBOR input")]
    Eof,
    #[error("invalid CBOR at byte {0}: {1}")]
    Invalid(usize, &'static str),
    #[error("CBOR nesting is too deep")]
    TooDeep,
    #[error("{0} trailing bytes after the CBOR data item")]
    Trailing(usize),
}

/// Split an RPC v2 path `/service/<service>/operation/<operation>` (a leading path prefix is
/// allowed, as the spec permits endpoints with paths) into (service, operation).
pub fn parse_path(path: &str) -> Option<(&str, &str)> {
    let at = path.rfind("/service/")?;
    let rest = &path[at + "/service/".len()..];
    let (service, rest) = rest.split_once('/')?;
    let operation = rest.strip_prefix("operation/")?;
    if service.is_empty() || operation.is_empty() || operation.contains('/') {
        return None;
    }
    // A namespaced service id (`com.amazonaws.cloudwatch#Service`) names the same service.
    let service = service.rsplit_once("%23").map_or(service, |(_, s)| s);
    let service = service.rsplit_once('#').map_or(service, |(_, s)| s);
    Some((service, operation))
}

/// Decode exactly one data item filling `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.item(0)?;
    match bytes.len() - reader.pos {
        0 => Ok(value),
        n => Err(CborError::Trailing(n)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// What a head's additional information says about the length.
enum Arg {
    Value(u64),
    Indefinite,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self.pos.checked_add(n).ok_or(CborError::Eof)?;
        let slice = self.bytes.get(self.pos..end).ok_or(CborError::Eof)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: usize) -> Result<u64, CborError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn arg(&mut self, info: u8) -> Result<Arg, CborError> {
        Ok(Arg::Value(match info {
            0..=23 => u64::from(info),
            24 => self.uint(1)?,
            25 => self.uint(2)?,
            26 => self.uint(4)?,
            27 => self.uint(8)?,
            31 => return Ok(Arg::Indefinite),
            _ => {
                return Err(CborError::Invalid(
                    self.pos,
                    "reserved additional information",
                ))
            }
        }))
    }

    fn len(&mut self, n: u64) -> Result<usize, CborError> {
        // A length can never exceed what is left of the input (every element takes a byte).
        let n = usize::try_from(n).map_err(|_| CborError::Eof)?;
        if n > self.bytes.len() - self.pos {
            return Err(CborError::Eof);
        }
        Ok(n)
    }

    fn is_break(&self) -> bool {
        self.bytes.get(self.pos) == Some(&0xff)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH * 2 {
            return Err(CborError::TooDeep);
        }
        let start = self.pos;
        let head = self.byte()?;
        let (major, info) = (head >> 5, head & 0x1f);
        match major {
            0 | 1 => {
                let Arg::Value(n) = self.arg(info)? else {
                    return Err(CborError::Invalid(start, "indefinite integer"));
                };
                Ok(Value::Integer(if major == 0 {
                    i128::from(n)
                } else {
                    -1 - i128::from(n)
                }))
            }
            2 | 3 => {
                let mut data = Vec::new();
                match self.arg(info)? {
                    Arg::Value(n) => {
                        let n = self.len(n)?;
                        data.extend_from_slice(self.take(n)?);
                    }
                    Arg::Indefinite => loop {
                        if self.is_break() {
                            self.pos += 1;
                            break;
                        }
                        let chunk_start = self.pos;
                        let chunk = self.byte()?;
                        if chunk >> 5 != major {
                            return Err(CborError::Invalid(chunk_start, "bad string chunk"));
                        }
                        let Arg::Value(n) = self.arg(chunk & 0x1f)? else {
                            return Err(CborError::Invalid(
                                chunk_start,
                                "nested indefinite string",
                            ));
                        };
                        let n = self.len(n)?;
                        data.extend_from_slice(self.take(n)?);
                    },
                }
                if major == 2 {
                    Ok(Value::Bytes(data))
                } else {
                    String::from_utf8(data)
                        .map(Value::Text)
                        .map_err(|_| CborError::Invalid(start, "text is not UTF-8"))
                }
            }
            4 => {
                let mut items = Vec::new();
                match self.arg(info)? {
                    Arg::Value(n) => {
                        for _ in 0..self.len(n)? {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                    Arg::Indefinite => {
                        while !self.is_break() {
                            items.push(self.item(depth + 1)?);
                        }
                        self.pos += 1;
                    }
                }
                Ok(Value::Array(items))
            }
            5 => {
                let mut entries = Vec::new();
                match self.arg(info)? {
                    Arg::Value(n) => {
                        for _ in 0..self.len(n)? {
                            let k = self.item(depth + 1)?;
                            entries.push((k, self.item(depth + 1)?));
                        }
                    }
                    Arg::Indefinite => {
                        while !self.is_break() {
                            let k = self.item(depth + 1)?;
                            entries.push((k, self.item(depth + 1)?));
                        }
                        self.pos += 1;
                    }
                }
                Ok(Value::Map(entries))
            }
            6 => {
                let Arg::Value(tag) = self.arg(info)? else {
                    return Err(CborError::Invalid(start, "indefinite tag"));
                };
                Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                23 => Ok(Value::Undefined),
                25 => Ok(Value::Float(f16_to_f64(self.uint(2)? as u16))),
                26 => Ok(Value::Float(f64::from(
                    f32::from_bits(self.uint(4)? as u32),
                ))),
                27 => Ok(Value::Float(f64::from_bits(self.uint(8)?))),
                _ => Err(CborError::Invalid(start, "unsupported simple value")),
            },
        }
    }
}

/// IEEE 754 half precision to double.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Encode one data item with definite lengths and the shortest heads.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Integer(i) if *i >= 0 => head(out, 0, u64::try_from(*i).unwrap_or(u64::MAX)),
        Value::Integer(i) => head(out, 1, u64::try_from(-1 - *i).unwrap_or(u64::MAX)),
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            items.iter().for_each(|item| write(out, item));
        }
        Value::Map(entries) => {
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                write(out, k);
                write(out, v);
            }
        }
        Value::Tag(tag, inner) => {
            head(out, 6, *tag);
            write(out, inner);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Undefined => out.push(0xf7),
        Value::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
    }
}

/// Decode a request body into the canonical value of `shape` (see [`crate::shape`]). An
/// empty body is an empty input structure, as the protocol allows.
pub fn to_canonical(table: &ShapeTable, shape: &str, body: &[u8]) -> Result<Json, ShapeError> {
    if body.is_empty() {
        return Ok(Json::Object(Map::new()));
    }
    let value = decode(body).map_err(|e| ShapeError(e.to_string()))?;
    canonical(table, shape, value, 0)
}

fn text_key(key: Value) -> Result<String, ShapeError> {
    match key {
        Value::Text(s) => Ok(s),
        _ => Err(ShapeError("CBOR map keys must be text strings".into())),
    }
}

fn canonical(
    table: &ShapeTable,
    name: &str,
    value: Value,
    depth: usize,
) -> Result<Json, ShapeError> {
    if depth > MAX_DEPTH {
        return Err(ShapeError("Request nesting is too deep.".into()));
    }
    let shape = table
        .get(name)
        .ok_or_else(|| ShapeError(format!("unknown shape {name}")))?;
    let wrong = |what: &str| ShapeError(format!("Expected {what} for {name}"));
    let timestamp = |seconds: f64| {
        checked_timestamp(seconds)
            .map(double_value)
            .ok_or_else(|| wrong("a timestamp between the years 0 and 9999"))
    };
    match (shape, value) {
        (_, Value::Null | Value::Undefined) => Ok(Json::Null),
        (Shape::Structure(members), Value::Map(entries)) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = text_key(k)?;
                if let Some((_, target)) = members.iter().find(|(m, _)| *m == key) {
                    let v = canonical(table, target, v, depth + 1)?;
                    if !v.is_null() {
                        out.insert(key, v);
                    }
                }
            }
            Ok(Json::Object(out))
        }
        (Shape::List(member), Value::Array(items)) => Ok(Json::Array(
            items
                .into_iter()
                .map(|item| canonical(table, member, item, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        (Shape::Map(_, value_shape), Value::Map(entries)) => {
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(text_key(k)?, canonical(table, value_shape, v, depth + 1)?);
            }
            Ok(Json::Object(out))
        }
        (Shape::String, Value::Text(s)) => Ok(Json::String(s)),
        (Shape::Blob, Value::Bytes(b)) => {
            use base64::Engine as _;
            Ok(Json::String(
                base64::engine::general_purpose::STANDARD.encode(b),
            ))
        }
        (Shape::Boolean, Value::Bool(b)) => Ok(Json::Bool(b)),
        (Shape::Integer | Shape::Long, Value::Integer(i)) => {
            let i = i64::try_from(i).map_err(|_| wrong("a 64-bit integer"))?;
            in_range(shape, i).map(Json::from)
        }
        (Shape::Double, Value::Float(f)) => Ok(double_value(f)),
        // Lenient: an integer where a double is expected is still a number.
        (Shape::Double, Value::Integer(i)) => Ok(double_value(i as f64)),
        (Shape::Timestamp, Value::Tag(TAG_EPOCH, inner)) => match *inner {
            Value::Integer(i) => timestamp(i as f64),
            Value::Float(f) => timestamp(f),
            _ => Err(wrong("epoch seconds in tag 1")),
        },
        (Shape::Timestamp, Value::Integer(i)) => timestamp(i as f64),
        (Shape::Timestamp, Value::Float(f)) => timestamp(f),
        (Shape::Structure(_) | Shape::Map(..), _) => Err(wrong("a map")),
        (Shape::List(_), _) => Err(wrong("an array")),
        (Shape::String, _) => Err(wrong("a text string")),
        (Shape::Blob, _) => Err(wrong("a byte string")),
        (Shape::Boolean, _) => Err(wrong("a boolean")),
        (Shape::Integer | Shape::Long, _) => Err(wrong("an integer")),
        (Shape::Double, _) => Err(wrong("a floating-point number")),
        (Shape::Timestamp, _) => Err(wrong("a timestamp (tag 1)")),
    }
}

/// Encode a canonical output value of `shape` as a response body.
pub fn from_canonical(table: &ShapeTable, shape: &str, value: &Json) -> Vec<u8> {
    encode(&to_cbor(table, shape, value, 0))
}

fn to_cbor(table: &ShapeTable, name: &str, value: &Json, depth: usize) -> Value {
    if depth > MAX_DEPTH || value.is_null() {
        return Value::Null;
    }
    match (table.get(name), value) {
        (Some(Shape::Structure(members)), Json::Object(object)) => Value::Map(
            members
                .iter()
                .filter_map(|(member, target)| {
                    let v = object.get(*member).filter(|v| !v.is_null())?;
                    Some((
                        Value::Text((*member).to_string()),
                        to_cbor(table, target, v, depth + 1),
                    ))
                })
                .collect(),
        ),
        (Some(Shape::List(member)), Json::Array(items)) => Value::Array(
            items
                .iter()
                .map(|item| to_cbor(table, member, item, depth + 1))
                .collect(),
        ),
        (Some(Shape::Map(_, value_shape)), Json::Object(object)) => Value::Map(
            object
                .iter()
                .map(|(k, v)| {
                    (
                        Value::Text(k.clone()),
                        to_cbor(table, value_shape, v, depth + 1),
                    )
                })
                .collect(),
        ),
        (Some(Shape::Integer | Shape::Long), Json::Number(n)) => {
            Value::Integer(i128::from(integer_value(n).unwrap_or_default()))
        }
        (Some(Shape::Double), v) => Value::Float(as_f64(v).unwrap_or(f64::NAN)),
        (Some(Shape::Timestamp), v) => {
            let seconds = as_f64(v).unwrap_or_default();
            let inner = if seconds.fract() == 0.0 && seconds.abs() < 9.0e15 {
                Value::Integer(seconds as i128)
            } else {
                Value::Float(seconds)
            };
            Value::Tag(TAG_EPOCH, Box::new(inner))
        }
        (Some(Shape::Blob), Json::String(s)) => {
            use base64::Engine as _;
            Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_default(),
            )
        }
        (_, v) => generic(v),
    }
}

/// A JSON value without a shape (a shape the table lacks): the obvious CBOR.
fn generic(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i128::from(i)),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(generic).collect()),
        Json::Object(object) => Value::Map(
            object
                .iter()
                .map(|(k, v)| (Value::Text(k.clone()), generic(v)))
                .collect(),
        ),
    }
}

/// The body of an RPC v2 CBOR error: `{"__type": <code>, "message": <message>}`.
pub fn error_body(error: &AwsError) -> Vec<u8> {
    encode(&Value::Map(vec![
        (
            Value::Text("__type".into()),
            Value::Text(error.code.clone()),
        ),
        (
            Value::Text("message".into()),
            Value::Text(error.message.clone()),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::tests::TEST_SHAPES;
    use serde_json::json;

    #[test]
    fn rfc8949_examples_decode() {
        let cases: &[(&[u8], Value)] = &[
            (&[0x00], Value::Integer(0)),
            (&[0x18, 0x64], Value::Integer(100)),
            (&[0x39, 0x03, 0xe7], Value::Integer(-1000)),
            (
                &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Value::Integer(u64::MAX.into()),
            ),
            (&[0xf9, 0x3c, 0x00], Value::Float(1.0)),
            (&[0xf9, 0xc4, 0x00], Value::Float(-4.0)),
            (&[0xf9, 0x7c, 0x00], Value::Float(f64::INFINITY)),
            (&[0xfa, 0x47, 0xc3, 0x50, 0x00], Value::Float(100000.0)),
            (
                &[0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a],
                Value::Float(1.1),
            ),
            (&[0x64, 0x49, 0x45, 0x54, 0x46], Value::Text("IETF".into())),
            (
                &[
                    0x7f, 0x65, 0x73, 0x74, 0x72, 0x65, 0x61, 0x64, 0x6d, 0x69, 0x6e, 0x67, 0xff,
                ],
                Value::Text("streaming".into()),
            ),
            (
                &[0x9f, 0x01, 0x82, 0x02, 0x03, 0xff],
                Value::Array(vec![
                    Value::Integer(1),
                    Value::Array(vec![Value::Integer(2), Value::Integer(3)]),
                ]),
            ),
            (
                &[0xbf, 0x61, 0x61, 0x01, 0xff],
                Value::Map(vec![(Value::Text("a".into()), Value::Integer(1))]),
            ),
            (
                &[0xc1, 0x1a, 0x51, 0x4b, 0x67, 0xb0],
                Value::Tag(1, Box::new(Value::Integer(1363896240))),
            ),
            (&[0xf5], Value::Bool(true)),
            (&[0xf6], Value::Null),
        ];
        for (bytes, expected) in cases {
            assert_eq!(&decode(bytes).expect("decodes"), expected, "{bytes:02x?}");
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bytes in [
            &[0x18][..],
            &[0x62, 0x61],
            &[0x9f, 0x01],
            &[0x1c],
            &[0x01, 0x02],
            &[0x7f, 0x41, 0x00, 0xff],
            &[0x62, 0xff, 0xfe],
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:02x?}");
        }
        let deep = vec![0x81; 10_000];
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
    }

    #[test]
    fn encode_decode_round_trip() {
        let value = Value::Map(vec![
            (Value::Text("n".into()), Value::Integer(-70000)),
            (
                Value::Text("big".into()),
                Value::Integer(u32::MAX as i128 + 1),
            ),
            (Value::Text("f".into()), Value::Float(2.5)),
            (Value::Text("b".into()), Value::Bytes(vec![1, 2, 3])),
            (
                Value::Text("l".into()),
                Value::Array(vec![Value::Bool(false), Value::Null]),
            ),
            (
                Value::Text("t".into()),
                Value::Tag(1, Box::new(Value::Float(1.5))),
            ),
        ]);
        assert_eq!(decode(&encode(&value)), Ok(value));
    }

    #[test]
    fn integers_and_timestamps_are_range_checked() {
        let input = |member: &str, v: Value| {
            to_canonical(
                &TEST_SHAPES,
                "Input",
                &encode(&Value::Map(vec![(Value::Text(member.into()), v)])),
            )
        };
        assert!(input("Period", Value::Integer(i128::from(i32::MAX))).is_ok());
        assert!(input("Period", Value::Integer(i128::from(i32::MAX) + 1)).is_err());
        assert!(input("Period", Value::Integer(i128::from(i32::MIN) - 1)).is_err());
        assert_eq!(
            input("Total", Value::Integer(1 << 40)).unwrap()["Total"],
            json!(1i64 << 40)
        );
        for bad in [
            Value::Tag(1, Box::new(Value::Float(1e300))),
            Value::Tag(1, Box::new(Value::Integer(i128::from(i64::MAX)))),
            Value::Tag(1, Box::new(Value::Float(f64::NAN))),
            Value::Float(-1e300),
            Value::Integer(1 << 62),
        ] {
            assert!(input("Start", bad.clone()).is_err(), "{bad:?}");
        }
        assert_eq!(
            input(
                "Start",
                Value::Tag(1, Box::new(Value::Integer(1_700_000_000)))
            )
            .unwrap()["Start"],
            json!(1_700_000_000.0)
        );
    }

    #[test]
    fn paths_name_service_and_operation() {
        assert_eq!(
            parse_path("/service/GraniteServiceVersion20100801/operation/PutMetricData"),
            Some(("GraniteServiceVersion20100801", "PutMetricData"))
        );
        assert_eq!(
            parse_path("/prefix/service/S/operation/Op"),
            Some(("S", "Op"))
        );
        assert_eq!(
            parse_path("/service/com.amazonaws.cloudwatch%23S/operation/Op"),
            Some(("S", "Op"))
        );
        assert_eq!(parse_path("/"), None);
        assert_eq!(parse_path("/service/S/operation/"), None);
        assert_eq!(parse_path("/service/S/Op"), None);
    }

    #[test]
    fn input_becomes_canonical_by_shape() {
        let body = encode(&Value::Map(vec![
            (Value::Text("Namespace".into()), Value::Text("N".into())),
            (Value::Text("Period".into()), Value::Integer(60)),
            (
                Value::Text("Start".into()),
                Value::Tag(1, Box::new(Value::Float(1.5))),
            ),
            (Value::Text("Value".into()), Value::Integer(3)),
            (Value::Text("Flag".into()), Value::Null),
            (
                Value::Text("Stats".into()),
                Value::Array(vec![Value::Text("Sum".into())]),
            ),
            (Value::Text("Other".into()), Value::Bytes(vec![0])),
        ]));
        let v = to_canonical(&TEST_SHAPES, "Input", &body).expect("valid");
        assert_eq!(
            v,
            json!({"Namespace": "N", "Period": 60, "Start": 1.5, "Value": 3.0, "Stats": ["Sum"]})
        );
        assert_eq!(to_canonical(&TEST_SHAPES, "Input", b""), Ok(json!({})));
        let wrong = encode(&Value::Map(vec![(
            Value::Text("Period".into()),
            Value::Text("60".into()),
        )]));
        assert!(to_canonical(&TEST_SHAPES, "Input", &wrong).is_err());
    }

    /// The real client's decoder (aws-smithy-cbor) reads what we write: doubles as floats,
    /// integers as integers, timestamps as tag 1.
    #[test]
    fn output_is_what_the_aws_sdk_decoder_expects() {
        let body = from_canonical(
            &TEST_SHAPES,
            "Output",
            &json!({"Label": "L", "Count": 2, "Datapoints": [
                {"Timestamp": 1_700_000_060.0, "Average": 5, "Unit": "Percent", "Extended": {"p90": 7}},
                {"Timestamp": 1.25}
            ], "Ignored": true}),
        );
        let mut d = aws_smithy_cbor::Decoder::new(&body);
        assert_eq!(d.map().expect("map"), Some(3));
        assert_eq!(d.str().expect("key"), "Label");
        assert_eq!(d.string().expect("label"), "L");
        assert_eq!(d.str().expect("key"), "Datapoints");
        assert_eq!(d.list().expect("list"), Some(2));
        assert_eq!(d.map().expect("datapoint"), Some(4));
        assert_eq!(d.str().expect("key"), "Timestamp");
        assert_eq!(d.timestamp().expect("ts").secs(), 1_700_000_060);
        assert_eq!(d.str().expect("key"), "Average");
        assert_eq!(d.double().expect("double"), 5.0);
        assert_eq!(d.str().expect("key"), "Unit");
        assert_eq!(d.string().expect("unit"), "Percent");
        assert_eq!(d.str().expect("key"), "Extended");
        assert_eq!(d.map().expect("map"), Some(1));
        assert_eq!(d.str().expect("key"), "p90");
        assert_eq!(d.double().expect("double"), 7.0);
        assert_eq!(d.map().expect("datapoint"), Some(1));
        assert_eq!(d.str().expect("key"), "Timestamp");
        let ts = d.timestamp().expect("fractional ts");
        assert_eq!((ts.secs(), ts.subsec_nanos()), (1, 250_000_000));
        assert_eq!(d.str().expect("key"), "Count");
        assert_eq!(d.integer().expect("int"), 2);
    }

    #[test]
    fn error_body_is_a_map_with_type_and_message() {
        let body = error_body(&AwsError::sender("InvalidParameterValueException", "bad"));
        assert_eq!(
            decode(&body),
            Ok(Value::Map(vec![
                (
                    Value::Text("__type".into()),
                    Value::Text("InvalidParameterValueException".into())
                ),
                (Value::Text("message".into()), Value::Text("bad".into())),
            ]))
        );
    }
}
