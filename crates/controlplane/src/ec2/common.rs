//! What every EC2 handler shares: resource ids, IPv4 CIDR arithmetic, the region's
//! availability zones, Describe filters with EC2's wildcards, tags and tag specifications.

use std::fmt;
use std::net::Ipv4Addr;

use model::ec2::Ec2Tag;
use serde::{Deserialize, Serialize};

use super::error::{invalid, Ec2Error, Result};

/// A new id in AWS's long format: `<prefix>-` and 17 lowercase hex digits.
pub fn new_id(prefix: &str) -> String {
    let bits = rand::random::<u128>() & ((1u128 << 68) - 1);
    format!("{prefix}-{bits:017x}")
}

/// An IPv4 CIDR block, with its base address already masked (canonical form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, masked to its network (`10.0.0.5/16` is `10.0.0.0/16`, as AWS
    /// canonicalises). `None` unless it is a dotted quad and a length of 0–32.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, len) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        if len > 32 {
            return None;
        }
        Some(Cidr {
            base: u32::from(addr) & mask(len),
            len,
        })
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        other.len >= self.len && other.base & mask(self.len) == self.base
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// How many addresses the block holds.
    pub fn size(&self) -> i64 {
        1i64 << (32 - u32::from(self.len))
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

/// One availability zone of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub id: String,
}

/// The region's three zones, `<region>a`…`c`, with zone ids in AWS's form (`use1-az1`). AWS
/// maps names to ids per account; here `a` is always `az1`.
pub fn zones(region: &str) -> Vec<Zone> {
    let code = region_code(region);
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, letter)| Zone {
            name: format!("{region}{letter}"),
            id: format!("{code}-az{}", i + 1),
        })
        .collect()
}

/// AWS's short region code: `us-east-1` → `use1`, `ap-northeast-2` → `apne2`,
/// `us-gov-west-1` → `usgw1`.
pub fn region_code(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 || part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(part);
            continue;
        }
        let short = match *part {
            "northeast" => "ne",
            "northwest" => "nw",
            "southeast" => "se",
            "southwest" => "sw",
            "north" => "n",
            "south" => "s",
            "east" => "e",
            "west" => "w",
            "central" => "c",
            other => &other[..other.len().min(1)],
        };
        out.push_str(short);
    }
    out
}

/// One Describe filter (`Filter.N.Name`, `Filter.N.Value.M`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// EC2's filter wildcards: `*` any run of characters, `?` exactly one, `\` escapes either.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            '*' => Token::Any,
            '?' => Token::One,
            c => Token::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*` (linear in practice).
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::One) => {
                t += 1;
                p += 1;
            }
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| *t == Token::Any)
}

/// Refuse filter names the resource does not support, as EC2 does. `tag:<key>` is always
/// accepted.
pub fn check_filters(filters: &[Filter], known: &[&str]) -> Result<()> {
    for filter in filters {
        let tag = filter
            .name
            .strip_prefix("tag:")
            .is_some_and(|k| !k.is_empty());
        if !tag && !known.contains(&filter.name.as_str()) {
            return Err(invalid(format!("The filter '{}' is invalid", filter.name)));
        }
    }
    Ok(())
}

/// Whether a resource passes every filter: a filter passes when any of the resource's values
/// for it matches any of the filter's values. `values` answers a filter name with the
/// resource's values (tags are handled here).
pub fn matches(filters: &[Filter], tags: &[Ec2Tag], values: impl Fn(&str) -> Vec<String>) -> bool {
    filters.iter().all(|filter| {
        let have: Vec<String> = match filter.name.as_str() {
            "tag-key" => tags.iter().map(|t| t.key.clone()).collect(),
            "tag-value" => tags.iter().map(|t| t.value.clone()).collect(),
            name => match name.strip_prefix("tag:") {
                Some(key) => tags
                    .iter()
                    .filter(|t| t.key == key)
                    .map(|t| t.value.clone())
                    .collect(),
                None => values(name),
            },
        };
        have.iter()
            .any(|v| filter.values.iter().any(|p| wildcard_match(p, v)))
    })
}

pub fn bool_str(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

/// One tag as requests carry it (`Tag.N.Key`, `Tag.N.Value`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagInput {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// `TagSpecification.N`: tags to apply on create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TagSpecification {
    pub resource_type: Option<String>,
    pub tags: Vec<TagInput>,
}

/// The most tags one resource may carry.
pub const MAX_TAGS: usize = 50;

/// Check tags as EC2 does and turn them into records.
pub fn validate_tags(tags: &[TagInput]) -> Result<Vec<Ec2Tag>> {
    let mut out: Vec<Ec2Tag> = Vec::new();
    for tag in tags {
        let key = tag.key.clone().unwrap_or_default();
        let value = tag.value.clone().unwrap_or_default();
        if key.is_empty() {
            return Err(invalid("Tag key must not be empty")); // guessed
        }
        if key.chars().count() > 127 {
            return Err(invalid(format!(
                "Tag key exceeds the maximum length of 127 characters: {key}" // guessed
            )));
        }
        if value.chars().count() > 256 {
            return Err(invalid(format!(
                "Tag value exceeds the maximum length of 256 characters: {value}" // guessed
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(
                "Tag keys starting with 'aws:' are reserved for internal use", // guessed
            ));
        }
        // A repeated key keeps the last value, as a map would.
        match out.iter_mut().find(|t| t.key == key) {
            Some(existing) => existing.value = value,
            None => out.push(Ec2Tag { key, value }),
        }
    }
    Ok(out)
}

/// The tags of a create operation's `TagSpecification`s for `resource_type`; a specification
/// for another type is refused, as EC2 refuses it.
pub fn spec_tags(specs: &[TagSpecification], resource_type: &str) -> Result<Vec<Ec2Tag>> {
    let mut tags = Vec::new();
    for spec in specs {
        match spec.resource_type.as_deref() {
            Some(t) if t == resource_type => tags.extend(spec.tags.iter().cloned()),
            Some(t) => {
                return Err(invalid(format!(
                    "'{t}' is not a valid taggable resource type for this operation."
                )))
            }
            None => {
                return Err(invalid(
                    "Tag specification resource type must have a value", // guessed
                ));
            }
        }
    }
    let tags = validate_tags(&tags)?;
    if tags.len() > MAX_TAGS {
        return Err(Ec2Error::TagLimitExceeded(format!(
            "The maximum number of tags per resource is {MAX_TAGS}." // guessed
        )));
    }
    Ok(tags)
}

/// Set or replace tags on a resource's tag list.
pub fn merge_tags(existing: &mut Vec<Ec2Tag>, new: &[Ec2Tag]) -> Result<()> {
    for tag in new {
        match existing.iter_mut().find(|t| t.key == tag.key) {
            Some(t) => t.value = tag.value.clone(),
            None => existing.push(tag.clone()),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(Ec2Error::TagLimitExceeded(format!(
            "The maximum number of tags per resource is {MAX_TAGS}." // guessed
        )));
    }
    Ok(())
}

/// Check a resource id's shape: `<prefix>-` then hex digits (AWS's 8 or 17).
pub fn well_formed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shape() {
        let id = new_id("vpc");
        assert_eq!(id.len(), 4 + 17);
        assert!(well_formed(&id, "vpc"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(!well_formed("vpc-", "vpc"));
        assert!(!well_formed("subnet-12", "vpc"));
        assert!(!well_formed("vpc-xyz", "vpc"));
    }

    #[test]
    fn cidrs_parse_canonicalise_and_nest() {
        let vpc = Cidr::parse("10.0.0.5/16").expect("valid");
        assert_eq!(vpc.to_string(), "10.0.0.0/16");
        assert_eq!(vpc.size(), 65_536);
        let a = Cidr::parse("10.0.1.0/24").expect("valid");
        let b = Cidr::parse("10.0.1.128/25").expect("valid");
        let c = Cidr::parse("10.1.0.0/24").expect("valid");
        assert!(vpc.contains(&a) && !vpc.contains(&c));
        assert!(a.overlaps(&b) && b.overlaps(&a) && !a.overlaps(&c));
        assert_eq!(Cidr::parse("0.0.0.0/0").map(|c| c.size()), Some(1 << 32));
        for bad in [
            "10.0.0.0",
            "10.0.0/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "x/8",
            "10.0.0.0/+8",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn zones_and_region_codes() {
        assert_eq!(region_code("us-east-1"), "use1");
        assert_eq!(region_code("ap-northeast-2"), "apne2");
        assert_eq!(region_code("eu-central-1"), "euc1");
        assert_eq!(region_code("us-gov-west-1"), "usgw1");
        let z = zones("us-east-1");
        assert_eq!(z[1].name, "us-east-1b");
        assert_eq!(z[1].id, "use1-az2");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("vpc-*", "vpc-123"));
        assert!(wildcard_match("us-east-1?", "us-east-1a"));
        assert!(!wildcard_match("us-east-1?", "us-east-1"));
        assert!(wildcard_match("*web*", "my-web-sg"));
        assert!(!wildcard_match("web", "web2"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn filters_and_tags() {
        let tags = vec![Ec2Tag {
            key: "Env".into(),
            value: "prod".into(),
        }];
        let f = |name: &str, values: &[&str]| Filter {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let values = |name: &str| match name {
            "vpc-id" => vec!["vpc-1".to_string()],
            _ => vec![],
        };
        assert!(matches(&[f("vpc-id", &["vpc-2", "vpc-1"])], &tags, values));
        assert!(!matches(&[f("vpc-id", &["vpc-2"])], &tags, values));
        assert!(matches(
            &[f("tag:Env", &["pr*"]), f("tag-key", &["Env"])],
            &tags,
            values
        ));
        assert!(!matches(&[f("tag:Other", &["*"])], &tags, values));
        assert!(check_filters(&[f("tag:Env", &[])], &["vpc-id"]).is_ok());
        let err = check_filters(&[f("bogus", &[])], &["vpc-id"]).unwrap_err();
        assert_eq!(err.message(), "The filter 'bogus' is invalid");
    }

    #[test]
    fn tag_specifications() {
        let spec = |t: &str| TagSpecification {
            resource_type: Some(t.into()),
            tags: vec![TagInput {
                key: Some("Name".into()),
                value: Some("web".into()),
            }],
        };
        assert_eq!(spec_tags(&[spec("vpc")], "vpc").expect("ok").len(), 1);
        assert!(spec_tags(&[spec("subnet")], "vpc").is_err());
        let reserved = TagInput {
            key: Some("aws:x".into()),
            value: None,
        };
        assert!(validate_tags(&[reserved]).is_err());
    }
}
