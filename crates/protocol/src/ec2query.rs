//! The EC2 protocol, a dialect of Query with its own names and envelopes.
//!
//! Requests are form bodies like Query's (`Action=DescribeVpcs&Version=2016-11-15&…`), but every
//! list is flattened as `Name.N` (never `Name.member.N`) and a member's parameter name is its
//! `queryName`, else its *capitalised* `locationName`, else the member name:
//! `VpcId.1=…`, `Filter.1.Name=vpc-id&Filter.1.Value.1=…`, `IpPermissions.1.Groups.1.GroupId=…`.
//!
//! Responses have no `<OpResult>` wrapper and no `<ResponseMetadata>`: the output members sit
//! directly under `<OpResponse xmlns="…">` after a `<requestId>`, each named by its
//! `locationName` (lower camel case in EC2), and list items are `<item>` elements. Errors are
//! `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
//!
//! Because the wire names differ from the member names, the EC2 shape table carries both
//! ([`Member`]); the canonical value is the same as the other codecs' (see [`crate::shape`]):
//! objects keyed by *member* name.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::shape::{
    as_f64, double_value, format_iso8601, parse_timestamp, special_double, ShapeError, MAX_DEPTH,
};
use crate::xml::format_double;

pub const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";

/// Append `text` escaped for element content. Quotes stay literal in content, as EC2 writes
/// them (`The vpc ID 'vpc-1' does not exist`); markup and characters XML cannot carry are
/// escaped as `crate::xml::escape_into` does.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' | '\'' => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                crate::xml::escape_into(out, c.encode_utf8(&mut buf));
            }
        }
    }
}

/// One member of an EC2 structure: its model name, target shape, and its names on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub name: &'static str,
    pub target: &'static str,
    /// The request parameter segment (`queryName`, else capitalised `locationName`, else name).
    pub query_name: &'static str,
    /// The response element (`locationName`, else name).
    pub xml_name: &'static str,
}

impl Member {
    pub const fn new(
        name: &'static str,
        target: &'static str,
        query_name: &'static str,
        xml_name: &'static str,
    ) -> Member {
        Member {
            name,
            target,
            query_name,
            xml_name,
        }
    }
}

/// One shape of the EC2 model. EC2 has no maps in the operations served, and no flattened
/// lists; the generator refuses both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ec2Shape {
    Structure(&'static [Member]),
    /// The member shape's name and the element each item is written in (`item`).
    List(&'static str, &'static str),
    String,
    Boolean,
    Integer,
    Long,
    Double,
    Timestamp,
    Blob,
}

/// A service's EC2 shapes, sorted by name for binary search.
#[derive(Debug)]
pub struct Ec2ShapeTable(pub &'static [(&'static str, Ec2Shape)]);

impl Ec2ShapeTable {
    pub fn get(&self, name: &str) -> Option<Ec2Shape> {
        self.0
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| self.0[i].1)
    }
}

/// The parameters as a tree of dotted path segments.
#[derive(Debug, Default)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: &str, value: String) {
        let mut node = self;
        for segment in path.split('.') {
            node = node.children.entry(segment.to_string()).or_default();
        }
        node.value = Some(value);
    }

    /// Children named by 1-based indexes, in index order; other names are ignored.
    fn indexed(&self) -> Vec<(u64, &Node)> {
        let mut items: Vec<(u64, &Node)> = self
            .children
            .iter()
            .filter_map(|(k, v)| k.parse::<u64>().ok().filter(|i| *i >= 1).map(|i| (i, v)))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items
    }
}

/// Turn the parameters (from [`crate::query::parse`]) into the canonical value of `shape`.
/// Parameters the shape does not know are ignored; a value that does not parse as its member's
/// type is an error naming the parameter.
pub fn to_canonical(
    table: &Ec2ShapeTable,
    shape: &str,
    params: &[(String, String)],
) -> Result<Json, ShapeError> {
    let mut root = Node::default();
    for (key, value) in params {
        root.insert(key, value.clone());
    }
    Ok(canonical(table, shape, &root, "", 0)?.unwrap_or_else(|| Json::Object(Map::new())))
}

fn join(prefix: &str, segment: &str) -> String {
    if prefix.is_empty() {
        segment.to_string()
    } else {
        format!("{prefix}.{segment}")
    }
}

fn canonical(
    table: &Ec2ShapeTable,
    name: &str,
    node: &Node,
    path: &str,
    depth: usize,
) -> Result<Option<Json>, ShapeError> {
    if depth > MAX_DEPTH {
        return Err(ShapeError("Request nesting is too deep.".into()));
    }
    let shape = table
        .get(name)
        .ok_or_else(|| ShapeError(format!("unknown shape {name}")))?;
    let scalar = node.value.as_deref();
    // EC2's own wording for a parameter of the wrong type. // guessed
    let invalid = |what: &str| {
        ShapeError(format!(
            "Invalid value '{}' for {path}. Expected {what}.",
            scalar.unwrap_or("")
        ))
    };
    Ok(Some(match shape {
        Ec2Shape::Structure(members) => {
            let mut out = Map::new();
            for member in members {
                if let Some(child) = node.children.get(member.query_name) {
                    let child_path = join(path, member.query_name);
                    if let Some(v) = canonical(table, member.target, child, &child_path, depth + 1)?
                    {
                        out.insert(member.name.to_string(), v);
                    }
                }
            }
            Json::Object(out)
        }
        Ec2Shape::List(member, _) => {
            let items = node.indexed();
            if items.is_empty() {
                return Ok(None);
            }
            Json::Array(
                items
                    .into_iter()
                    .map(|(i, item)| {
                        canonical(table, member, item, &format!("{path}.{i}"), depth + 1)
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        Ec2Shape::String | Ec2Shape::Blob => match scalar {
            Some(s) => Json::String(s.to_string()),
            None => return Ok(None),
        },
        Ec2Shape::Boolean => match scalar {
            Some(s) if s.eq_ignore_ascii_case("true") => Json::Bool(true),
            Some(s) if s.eq_ignore_ascii_case("false") => Json::Bool(false),
            Some(_) => return Err(invalid("a boolean")),
            None => return Ok(None),
        },
        Ec2Shape::Integer | Ec2Shape::Long => match scalar {
            Some(s) => Json::from(s.trim().parse::<i64>().map_err(|_| invalid("an integer"))?),
            None => return Ok(None),
        },
        Ec2Shape::Double => match scalar {
            Some(s) => double_value(
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .or_else(|| special_double(s.trim()))
                    .ok_or_else(|| invalid("a number"))?,
            ),
            None => return Ok(None),
        },
        Ec2Shape::Timestamp => match scalar {
            Some(s) => {
                double_value(parse_timestamp(s).ok_or_else(|| invalid("an ISO 8601 timestamp"))?)
            }
            None => return Ok(None),
        },
    }))
}

/// Write the canonical value of `shape` as the children of an element: a structure's members
/// by `locationName`, a list's `<item>`s, or escaped text. Members the shape does not know are
/// skipped, so records may carry fields of their own.
pub fn write_value(out: &mut String, table: &Ec2ShapeTable, shape: &str, value: &Json) {
    write_inner(out, table, shape, value, 0);
}

fn write_inner(out: &mut String, table: &Ec2ShapeTable, name: &str, value: &Json, depth: usize) {
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
        (Some(Ec2Shape::Structure(members)), Json::Object(object)) => {
            for member in members {
                if let Some(v) = object.get(member.name).filter(|v| !v.is_null()) {
                    wrap(out, member.xml_name, member.target, v);
                }
            }
        }
        (Some(Ec2Shape::List(member, item)), Json::Array(items)) => {
            for v in items {
                wrap(out, item, member, v);
            }
        }
        (Some(Ec2Shape::Double), v) => {
            escape_into(out, &format_double(as_f64(v).unwrap_or(f64::NAN)))
        }
        (Some(Ec2Shape::Timestamp), v) => {
            escape_into(out, &format_iso8601(as_f64(v).unwrap_or_default()))
        }
        (_, Json::String(s)) => escape_into(out, s),
        (_, Json::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        (_, Json::Number(n)) => out.push_str(&n.to_string()),
        // A value of the wrong kind for its shape (a handler bug): written as nothing rather
        // than as elements a client would misread.
        (_, Json::Array(_) | Json::Object(_)) => {}
    }
}

/// A whole successful response: `<OpResponse xmlns><requestId/>…members…</OpResponse>`.
/// `result`: the output shape and its canonical value; operations without an output shape
/// answer `<return>true</return>` as EC2 does.
pub fn response(
    operation: &str,
    namespace: &str,
    result: Option<(&Ec2ShapeTable, &str, &Json)>,
    request_id: &str,
) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!("<{operation}Response xmlns=\""));
    crate::xml::escape_into(&mut out, namespace);
    out.push_str("\"><requestId>");
    escape_into(&mut out, request_id);
    out.push_str("</requestId>");
    match result {
        Some((table, shape, value)) => write_value(&mut out, table, shape, value),
        None => out.push_str("<return>true</return>"),
    }
    out.push_str(&format!("</{operation}Response>"));
    out
}

/// EC2's error document (HTTP 400 for client errors, 500/503 for the server's).
pub fn error_response(code: &str, message: &str, request_id: &str) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>");
    escape_into(&mut out, code);
    out.push_str("</Code><Message>");
    escape_into(&mut out, message);
    out.push_str("</Message></Error></Errors><RequestID>");
    escape_into(&mut out, request_id);
    out.push_str("</RequestID></Response>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse;
    use serde_json::json;

    static SHAPES: Ec2ShapeTable = Ec2ShapeTable(&[
        ("Boolean", Ec2Shape::Boolean),
        (
            "Filter",
            Ec2Shape::Structure(&[
                Member::new("Name", "String", "Name", "Name"),
                Member::new("Values", "ValueList", "Value", "Value"),
            ]),
        ),
        ("FilterList", Ec2Shape::List("Filter", "Filter")),
        ("IdList", Ec2Shape::List("String", "VpcId")),
        (
            "Input",
            Ec2Shape::Structure(&[
                Member::new("Filters", "FilterList", "Filter", "Filter"),
                Member::new("VpcIds", "IdList", "VpcId", "VpcId"),
                Member::new("MaxResults", "Integer", "MaxResults", "maxResults"),
                Member::new("DryRun", "Boolean", "DryRun", "dryRun"),
            ]),
        ),
        ("Integer", Ec2Shape::Integer),
        (
            "Output",
            Ec2Shape::Structure(&[
                Member::new("Vpcs", "VpcList", "VpcSet", "vpcSet"),
                Member::new("NextToken", "String", "NextToken", "nextToken"),
            ]),
        ),
        ("String", Ec2Shape::String),
        ("Time", Ec2Shape::Timestamp),
        ("ValueList", Ec2Shape::List("String", "item")),
        (
            "Vpc",
            Ec2Shape::Structure(&[
                Member::new("VpcId", "String", "VpcId", "vpcId"),
                Member::new("IsDefault", "Boolean", "IsDefault", "isDefault"),
                Member::new("Created", "Time", "Created", "created"),
                Member::new("Tags", "ValueList", "TagSet", "tagSet"),
            ]),
        ),
        ("VpcList", Ec2Shape::List("Vpc", "item")),
    ]);

    #[test]
    fn table_is_sorted() {
        assert!(SHAPES.0.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn flattened_lists_and_query_names() {
        let request = parse(
            b"Action=DescribeVpcs&Version=2016-11-15&VpcId.2=vpc-b&VpcId.1=vpc-a\
              &Filter.1.Name=tag%3AEnv&Filter.1.Value.1=dev&Filter.1.Value.2=prod\
              &Filter.10.Name=state&Filter.10.Value.1=available&MaxResults=5&DryRun=false&Bogus=1",
        );
        let v = to_canonical(&SHAPES, "Input", &request.params).expect("valid");
        assert_eq!(
            v,
            json!({
                "VpcIds": ["vpc-a", "vpc-b"],
                "Filters": [
                    {"Name": "tag:Env", "Values": ["dev", "prod"]},
                    {"Name": "state", "Values": ["available"]}
                ],
                "MaxResults": 5,
                "DryRun": false
            })
        );
    }

    #[test]
    fn bad_scalars_name_the_parameter() {
        let err = to_canonical(&SHAPES, "Input", &parse(b"MaxResults=lots").params).unwrap_err();
        assert!(err.0.contains("MaxResults"), "{err}");
        let err = to_canonical(&SHAPES, "Input", &parse(b"DryRun=maybe").params).unwrap_err();
        assert!(err.0.contains("DryRun"), "{err}");
    }

    #[test]
    fn responses_use_location_names_and_items() {
        let body = response(
            "DescribeVpcs",
            "http://ec2.amazonaws.com/doc/2016-11-15/",
            Some((
                &SHAPES,
                "Output",
                &json!({"Vpcs": [{"VpcId": "vpc-1", "IsDefault": true, "Created": 0.0,
                                  "Tags": [], "Wharf": "not on the wire"}]}),
            )),
            "req-1",
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>req-1</requestId><vpcSet><item><vpcId>vpc-1</vpcId>\
             <isDefault>true</isDefault><created>1970-01-01T00:00:00Z</created><tagSet></tagSet>\
             </item></vpcSet></DescribeVpcsResponse>"
        );
        assert!(response("DeleteVpc", "ns", None, "r").ends_with(
            "<DeleteVpcResponse xmlns=\"ns\"><requestId>r</requestId><return>true</return>\
             </DeleteVpcResponse>"
        ));
    }

    #[test]
    fn errors_use_the_ec2_envelope() {
        assert_eq!(
            error_response("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' <x>", "r"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
             <Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-1' &lt;x&gt;</Message>\
             </Error></Errors><RequestID>r</RequestID></Response>"
        );
    }
}
