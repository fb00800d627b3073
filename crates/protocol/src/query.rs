//! The AWS Query protocol's requests: a form-encoded body (or URL query string) of
//! `Action=<Op>&Version=<v>&Member=value…`, where list members are `Name.member.N` (1-based),
//! map entries `Name.entry.N.key` / `Name.entry.N.value`, nested structures `Outer.Inner`, and
//! every value is a string the input shape gives a type to. Responses are XML (`crate::xml`).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::shape::{
    double_value, in_range, parse_timestamp, special_double, Shape, ShapeError, ShapeTable,
    MAX_DEPTH,
};

pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A parsed Query request: the operation, the API version and the remaining parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    pub action: Option<String>,
    pub version: Option<String>,
    /// Every other parameter, in the order received.
    pub params: Vec<(String, String)>,
}

/// Split a form body (`a=1&b=2`, `+` for space, percent-escapes) into a [`QueryRequest`].
pub fn parse(form: &[u8]) -> QueryRequest {
    let mut request = QueryRequest {
        action: None,
        version: None,
        params: Vec::new(),
    };
    for (key, value) in form_urlencoded::parse(form) {
        match key.as_ref() {
            "Action" => request.action = Some(value.into_owned()),
            "Version" => request.version = Some(value.into_owned()),
            _ => request.params.push((key.into_owned(), value.into_owned())),
        }
    }
    request
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
    fn indexed(&self) -> Vec<&Node> {
        let mut items: Vec<(u64, &Node)> = self
            .children
            .iter()
            .filter_map(|(k, v)| k.parse::<u64>().ok().filter(|i| *i >= 1).map(|i| (i, v)))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }
}

/// Turn the parameters into the canonical value of `shape` (see [`crate::shape`]). Parameters
/// the shape does not know are ignored; a value that does not parse as its member's type is
/// an error naming the parameter.
pub fn to_canonical(
    table: &ShapeTable,
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
    table: &ShapeTable,
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
    let scalar = || node.value.as_deref();
    let invalid = |what: &str| {
        ShapeError(format!(
            "Value ({}) for parameter {path} is invalid. Expected {what}.",
            node.value.as_deref().unwrap_or("")
        ))
    };
    Ok(Some(match shape {
        Shape::Structure(members) => {
            let mut out = Map::new();
            for (member, target) in members {
                if let Some(child) = node.children.get(*member) {
                    if let Some(v) =
                        canonical(table, target, child, &join(path, member), depth + 1)?
                    {
                        out.insert((*member).to_string(), v);
                    }
                }
            }
            Json::Object(out)
        }
        Shape::List(member) => match node.children.get("member") {
            Some(items) => Json::Array(
                items
                    .indexed()
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        canonical(
                            table,
                            member,
                            item,
                            &format!("{path}.member.{}", i + 1),
                            depth + 1,
                        )
                        .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            // `Name=` with no members is how clients send an empty list.
            None if node.value.is_some() => Json::Array(Vec::new()),
            None => return Ok(None),
        },
        Shape::Map(_, value_shape) => match node.children.get("entry") {
            Some(entries) => {
                let mut out = Map::new();
                for entry in entries.indexed() {
                    let Some(key) = entry.children.get("key").and_then(|k| k.value.clone()) else {
                        continue;
                    };
                    let value = match entry.children.get("value") {
                        Some(v) => {
                            canonical(table, value_shape, v, &format!("{path}.entry"), depth + 1)?
                        }
                        None => None,
                    };
                    out.insert(key, value.unwrap_or_default());
                }
                Json::Object(out)
            }
            None if node.value.is_some() => Json::Object(Map::new()),
            None => return Ok(None),
        },
        Shape::String | Shape::Blob => match scalar() {
            Some(s) => Json::String(s.to_string()),
            None => return Ok(None),
        },
        Shape::Boolean => match scalar() {
            Some(s) if s.eq_ignore_ascii_case("true") => Json::Bool(true),
            Some(s) if s.eq_ignore_ascii_case("false") => Json::Bool(false),
            Some(_) => return Err(invalid("a boolean")),
            None => return Ok(None),
        },
        Shape::Integer | Shape::Long => match scalar() {
            Some(s) => {
                let i = s.trim().parse::<i64>().map_err(|_| invalid("an integer"))?;
                // The model's Integer is 32 bits; handlers rely on that.
                Json::from(in_range(shape, i).map_err(|_| invalid("a 32-bit integer"))?)
            }
            None => return Ok(None),
        },
        Shape::Double => match scalar() {
            Some(s) => double_value(
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .or_else(|| special_double(s.trim()))
                    .ok_or_else(|| invalid("a number"))?,
            ),
            None => return Ok(None),
        },
        Shape::Timestamp => match scalar() {
            Some(s) => {
                double_value(parse_timestamp(s).ok_or_else(|| invalid("an ISO 8601 timestamp"))?)
            }
            None => return Ok(None),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::tests::TEST_SHAPES;
    use serde_json::json;

    #[test]
    fn form_is_split_into_action_version_and_params() {
        let request = parse(b"Action=ListMetrics&Version=2010-08-01&Namespace=My%2FApp&Name=a+b");
        assert_eq!(request.action.as_deref(), Some("ListMetrics"));
        assert_eq!(request.version.as_deref(), Some("2010-08-01"));
        assert_eq!(
            request.params,
            vec![
                ("Namespace".to_string(), "My/App".to_string()),
                ("Name".to_string(), "a b".to_string())
            ]
        );
    }

    #[test]
    fn members_lists_and_types_follow_the_shape() {
        let request = parse(
            b"Namespace=N&Period=60&Start=2024-01-01T00%3A00%3A00Z&Flag=true&Value=2.5\
              &Dimensions.member.2.Name=B&Dimensions.member.2.Value=2\
              &Dimensions.member.1.Name=A&Dimensions.member.1.Value=1\
              &Stats.member.1=Sum&Stats.member.10=Max&Stats.member.2=Min&Unknown=x",
        );
        let v = to_canonical(&TEST_SHAPES, "Input", &request.params).expect("valid");
        assert_eq!(
            v,
            json!({
                "Namespace": "N", "Period": 60, "Start": 1_704_067_200.0, "Flag": true,
                "Value": 2.5,
                "Dimensions": [{"Name": "A", "Value": "1"}, {"Name": "B", "Value": "2"}],
                "Stats": ["Sum", "Min", "Max"]
            })
        );
    }

    #[test]
    fn empty_lists_and_maps() {
        let v = to_canonical(&TEST_SHAPES, "Input", &parse(b"Stats=").params).expect("valid");
        assert_eq!(v, json!({"Stats": []}));
        let v = to_canonical(
            &TEST_SHAPES,
            "Datapoint",
            &parse(b"Extended.entry.1.key=p90&Extended.entry.1.value=3&Extended.entry.2.key=p99&Extended.entry.2.value=4")
                .params,
        )
        .expect("valid");
        assert_eq!(v, json!({"Extended": {"p90": 3.0, "p99": 4.0}}));
    }

    #[test]
    fn bad_scalars_name_the_parameter() {
        let err = to_canonical(&TEST_SHAPES, "Input", &parse(b"Period=sixty").params).unwrap_err();
        assert_eq!(
            err.0,
            "Value (sixty) for parameter Period is invalid. Expected an integer."
        );
        let err = to_canonical(
            &TEST_SHAPES,
            "Input",
            &parse(b"Dimensions.member.1.Name=A&Flag=maybe").params,
        )
        .unwrap_err();
        assert!(err.0.contains("Flag"), "{err}");
        assert!(to_canonical(&TEST_SHAPES, "Input", &parse(b"Start=noon").params).is_err());
    }

    #[test]
    fn integers_and_timestamps_are_range_checked() {
        let canonical = |form: &[u8]| to_canonical(&TEST_SHAPES, "Input", &parse(form).params);
        let err = canonical(b"Period=2147483648").unwrap_err();
        assert_eq!(
            err.0,
            "Value (2147483648) for parameter Period is invalid. Expected a 32-bit integer."
        );
        assert_eq!(
            canonical(b"Period=2147483647&Total=9000000000").unwrap(),
            json!({"Period": 2_147_483_647, "Total": 9_000_000_000i64})
        );
        assert!(canonical(b"Start=1e300").is_err());
        assert!(canonical(b"Start=-1e12").is_err());
        assert!(canonical(b"Start=1700000000").is_ok());
    }
}
