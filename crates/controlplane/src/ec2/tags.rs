//! CreateTags, DeleteTags and DescribeTags over the four resource types Wharf keeps (VPCs,
//! subnets, security groups, network interfaces). The resource type comes from the id's
//! prefix; every change in one request commits in one transaction.

use model::ec2::{self, Ec2Tag, NetworkInterface, SecurityGroup, Subnet, Vpc};
use serde::Deserialize;
use serde_json::{json, Value};
use store::Op;

use super::common::{
    check_filters, matches, merge_tags, validate_tags, well_formed, Filter, TagInput,
};
use super::error::{missing, Ec2Error, Result};
use super::{input, put_json, Ec2Context, MAX_ATTEMPTS};

/// The taggable kinds: (id prefix, EC2 resource type, store prefix).
const KINDS: &[(&str, &str, &str)] = &[
    ("vpc", "vpc", ec2::VPC_PREFIX),
    ("subnet", "subnet", ec2::SUBNET_PREFIX),
    ("sg", "security-group", ec2::SECURITY_GROUP_PREFIX),
    ("eni", "network-interface", ec2::NETWORK_INTERFACE_PREFIX),
];

/// One loaded resource, whichever kind.
enum Resource {
    Vpc(Vpc),
    Subnet(Subnet),
    Group(SecurityGroup),
    Eni(NetworkInterface),
}

impl Resource {
    fn tags_mut(&mut self) -> &mut Vec<Ec2Tag> {
        match self {
            Resource::Vpc(r) => &mut r.tags,
            Resource::Subnet(r) => &mut r.tags,
            Resource::Group(r) => &mut r.tags,
            Resource::Eni(r) => &mut r.tag_set,
        }
    }

    fn put(&self, key: &str) -> Op {
        match self {
            Resource::Vpc(r) => put_json(key, r),
            Resource::Subnet(r) => put_json(key, r),
            Resource::Group(r) => put_json(key, r),
            Resource::Eni(r) => put_json(key, r),
        }
    }
}

/// Load a resource by id, with its key and mod revision, or the error EC2 gives for it.
async fn load(ctx: &Ec2Context, id: &str) -> Result<(Resource, String, i64)> {
    let kind = KINDS.iter().find(|(prefix, _, _)| well_formed(id, prefix));
    let Some((prefix, _, store_prefix)) = kind else {
        return Err(Ec2Error::InvalidId(id.to_string()));
    };
    let key = format!("{store_prefix}{id}");
    let found = match *prefix {
        "vpc" => ctx
            .get_json::<Vpc>(&key)
            .await?
            .map(|(r, rev)| (Resource::Vpc(r), rev))
            .ok_or_else(|| Ec2Error::VpcNotFound(id.to_string())),
        "subnet" => ctx
            .get_json::<Subnet>(&key)
            .await?
            .map(|(r, rev)| (Resource::Subnet(r), rev))
            .ok_or_else(|| Ec2Error::SubnetNotFound(id.to_string())),
        "sg" => ctx
            .get_json::<SecurityGroup>(&key)
            .await?
            .map(|(r, rev)| (Resource::Group(r), rev))
            .ok_or_else(|| {
                Ec2Error::GroupNotFound(format!("The security group '{id}' does not exist"))
            }),
        _ => ctx
            .get_json::<NetworkInterface>(&key)
            .await?
            .map(|(r, rev)| (Resource::Eni(r), rev))
            .ok_or_else(|| Ec2Error::NetworkInterfaceNotFound(id.to_string())),
    };
    let (resource, revision) = found?;
    Ok((resource, key, revision))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TagsInput {
    resources: Vec<String>,
    tags: Vec<TagInput>,
}

/// Apply `change` to every resource named, in one transaction.
async fn change_tags(
    ctx: &Ec2Context,
    resources: &[String],
    change: impl Fn(&mut Vec<Ec2Tag>) -> Result<()>,
) -> Result<()> {
    if resources.is_empty() {
        return Err(missing("ResourceId"));
    }
    for _ in 0..MAX_ATTEMPTS {
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        for id in resources {
            let (mut resource, key, revision) = load(ctx, id).await?;
            if guards.iter().any(|(k, _)| k == &key) {
                continue;
            }
            change(resource.tags_mut())?;
            ops.push(resource.put(&key));
            guards.push((key, revision));
        }
        if ctx.commit(&guards, ops).await? {
            return Ok(());
        }
    }
    Err(Ec2Error::Conflict)
}

pub async fn create_tags(ctx: &Ec2Context, raw: Value) -> Result<()> {
    let request: TagsInput = input(raw)?;
    if request.tags.is_empty() {
        return Err(missing("Tag"));
    }
    let tags = validate_tags(&request.tags)?;
    change_tags(ctx, &request.resources, |existing| {
        merge_tags(existing, &tags)
    })
    .await
}

/// DeleteTags: a tag given with a value is removed only if the value matches (an empty value
/// matches only an empty value); without a value, whatever its value; no tags at all removes
/// every tag.
pub async fn delete_tags(ctx: &Ec2Context, raw: Value) -> Result<()> {
    let request: TagsInput = input(raw)?;
    let tags = request.tags;
    change_tags(ctx, &request.resources, |existing| {
        if tags.is_empty() {
            existing.clear();
        } else {
            existing.retain(|t| {
                !tags.iter().any(|d| {
                    d.key.as_deref() == Some(t.key.as_str())
                        && d.value.as_deref().is_none_or(|v| v == t.value)
                })
            });
        }
        Ok(())
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeTagsInput {
    filters: Vec<Filter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe_tags(ctx: &Ec2Context, raw: Value) -> Result<Value> {
    let request: DescribeTagsInput = input(raw)?;
    check_filters(
        &request.filters,
        &["key", "value", "resource-id", "resource-type"],
    )?;
    let mut items: Vec<(String, Value)> = Vec::new();
    for (prefix, resource_type, store_prefix) in KINDS {
        let records = ctx.range_json::<Value>(store_prefix).await?;
        for (record, _) in records {
            let (id_member, tags_member) = match *prefix {
                "vpc" => ("VpcId", "Tags"),
                "subnet" => ("SubnetId", "Tags"),
                "sg" => ("GroupId", "Tags"),
                _ => ("NetworkInterfaceId", "TagSet"),
            };
            let id = record[id_member].as_str().unwrap_or_default().to_string();
            let tags: Vec<Ec2Tag> =
                serde_json::from_value(record[tags_member].clone()).unwrap_or_default();
            for tag in &tags {
                let keep = matches(&request.filters, std::slice::from_ref(tag), |name| {
                    vec![match name {
                        "key" => tag.key.clone(),
                        "value" => tag.value.clone(),
                        "resource-id" => id.clone(),
                        _ => resource_type.to_string(),
                    }]
                });
                if keep {
                    // The position sorts by resource, then key.
                    items.push((
                        format!("{id}\u{1}{}", tag.key),
                        json!({
                            "ResourceId": id,
                            "ResourceType": resource_type,
                            "Key": tag.key,
                            "Value": tag.value,
                        }),
                    ));
                }
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let scope = format!(
        "DescribeTags {}",
        serde_json::to_string(&request.filters).unwrap_or_default()
    );
    let (page, next) = ctx
        .paginate(
            &scope,
            items,
            request.max_results,
            request.next_token.as_deref(),
        )
        .await?;
    Ok(json!({"Tags": page, "NextToken": next}))
}
