//! AddTags, RemoveTags and DescribeTags for load balancers, target groups, listeners and rules.
//! Tags live in each resource's record; a call naming several resources checks them all first
//! and writes them in one transaction, so it changes all or none.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use model::elb::{keys, TargetGroupRecord};

use super::error::{invalid, Result};
use super::records::{
    merge_tags, parse_listener_arn, parse_load_balancer_arn, parse_rule_arn, tags_value,
    validate_tags, ListenerRecord, LoadBalancerRecord, RuleRecord, Tag,
};
use super::{conflict, parse, put_json, Elbv2Context, Elbv2Error, MAX_ATTEMPTS};

/// AWS's limit of resources per tagging call.
const MAX_RESOURCES: usize = 20;

/// A record that carries tags.
trait Tagged: Serialize + DeserializeOwned {
    fn arn(&self) -> &str;
    fn tags_mut(&mut self) -> &mut Vec<(String, String)>;
}

macro_rules! tagged {
    ($t:ty) => {
        impl Tagged for $t {
            fn arn(&self) -> &str {
                &self.arn
            }
            fn tags_mut(&mut self) -> &mut Vec<(String, String)> {
                &mut self.tags
            }
        }
    };
}
tagged!(LoadBalancerRecord);
tagged!(TargetGroupRecord);
tagged!(ListenerRecord);
tagged!(RuleRecord);

/// The not-found error of a resource kind.
type NotFound = fn(String) -> Elbv2Error;
/// Writes a record back with new tags.
type Write = Box<dyn FnOnce(Vec<(String, String)>) -> super::Op + Send>;

/// Where a taggable ARN's record lives, and the error when it is not there.
fn locate(arn: &str) -> Result<(String, NotFound)> {
    if let Some((name, _)) = parse_load_balancer_arn(arn) {
        return Ok((keys::load_balancer(name), Elbv2Error::LoadBalancerNotFound));
    }
    if let Some((name, _)) = model::elb::parse_target_group_arn(arn)
        .filter(|_| arn.starts_with("arn:aws:elasticloadbalancing:"))
    {
        return Ok((keys::target_group(name), Elbv2Error::TargetGroupNotFound));
    }
    if let Some((_, lb, id)) = parse_listener_arn(arn) {
        return Ok((keys::listener(lb, id), Elbv2Error::ListenerNotFound));
    }
    if let Some((_, _, listener, id)) = parse_rule_arn(arn) {
        return Ok((keys::rule(listener, id), Elbv2Error::RuleNotFound));
    }
    Err(invalid(format!("'{arn}' is not a valid resource ARN"))) // guessed
}

/// One resource's record: `(key, mod revision, tags, how to write it back with new tags)`.
async fn load(
    ctx: &Elbv2Context,
    arn: &str,
) -> Result<(String, i64, Vec<(String, String)>, Write)> {
    let (key, not_found) = locate(arn)?;
    let missing = || not_found(format!("Resource '{arn}' not found")); // guessed
    async fn typed<T: Tagged + Send + 'static>(
        ctx: &Elbv2Context,
        key: &str,
        arn: &str,
    ) -> Result<Option<(i64, Vec<(String, String)>, Write)>> {
        let Some((mut record, revision)) = ctx.get_json::<T>(key).await? else {
            return Ok(None);
        };
        if record.arn() != arn {
            return Ok(None);
        }
        let tags = record.tags_mut().clone();
        let key = key.to_string();
        let write = Box::new(move |tags: Vec<(String, String)>| {
            *record.tags_mut() = tags;
            put_json(&key, &record)
        });
        Ok(Some((revision, tags, write)))
    }
    let found = if key.starts_with(keys::LOAD_BALANCER_PREFIX) {
        typed::<LoadBalancerRecord>(ctx, &key, arn).await?
    } else if key.starts_with(keys::TARGET_GROUP_PREFIX) {
        typed::<TargetGroupRecord>(ctx, &key, arn).await?
    } else if key.starts_with(keys::LISTENER_PREFIX) {
        typed::<ListenerRecord>(ctx, &key, arn).await?
    } else {
        typed::<RuleRecord>(ctx, &key, arn).await?
    };
    let (revision, tags, write) = found.ok_or_else(missing)?;
    Ok((key, revision, tags, write))
}

fn check_resources(arns: &[String]) -> Result<()> {
    if arns.is_empty() {
        return Err(invalid("At least one resource ARN must be specified")); // guessed
    }
    if arns.len() > MAX_RESOURCES {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'resourceArns' failed to satisfy constraint: Member must have length less than or equal to {MAX_RESOURCES}"
        )));
    }
    Ok(())
}

/// Edit the tags of every resource with `edit`, all in one transaction.
async fn edit(
    ctx: &Elbv2Context,
    arns: &[String],
    edit: impl Fn(&mut Vec<(String, String)>) -> Result<()>,
) -> Result<Value> {
    check_resources(arns)?;
    for _ in 0..MAX_ATTEMPTS {
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        for arn in arns {
            let (key, revision, mut tags, write) = load(ctx, arn).await?;
            edit(&mut tags)?;
            guards.push((key, revision));
            ops.push(write(tags));
        }
        if ctx.commit(&guards, ops).await? {
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddInput {
    resource_arns: Vec<String>,
    tags: Vec<Tag>,
}

pub async fn add(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: AddInput = parse(input)?;
    let tags = validate_tags(&input.tags)?;
    if tags.is_empty() {
        return Err(invalid("At least one tag must be specified")); // guessed
    }
    edit(ctx, &input.resource_arns, |existing| {
        merge_tags(existing, &tags)
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveInput {
    resource_arns: Vec<String>,
    tag_keys: Vec<String>,
}

pub async fn remove(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: RemoveInput = parse(input)?;
    edit(ctx, &input.resource_arns, |existing| {
        existing.retain(|(k, _)| !input.tag_keys.contains(k));
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    resource_arns: Vec<String>,
}

pub async fn describe(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeInput = parse(input)?;
    check_resources(&input.resource_arns)?;
    let mut out = Vec::new();
    for arn in &input.resource_arns {
        let (_, _, tags, _) = load(ctx, arn).await?;
        out.push(json!({"ResourceArn": arn, "Tags": tags_value(&tags)}));
    }
    Ok(json!({"TagDescriptions": out}))
}
