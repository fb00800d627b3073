//! TagResource, UntagResource and ListTagsForResource, plus the helpers other handlers use to
//! store a resource's tags in the same transaction that creates it.

use model::arn::Arn;
use model::ecs::tag::{merge_tags, Tag};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Op, Txn};

use super::unchanged;
use super::{encode, keys, EcsContext, EcsError};

/// The tags stored for a resource (empty when it has none).
pub async fn get_tags(ctx: &EcsContext, arn: &str) -> Result<Vec<Tag>, EcsError> {
    Ok(ctx
        .get_json::<Vec<Tag>>(&keys::tags(arn))
        .await?
        .map(|(tags, _)| tags)
        .unwrap_or_default())
}

/// The store op that sets a resource's tags; an empty list deletes the record.
pub fn put_tags_op(arn: &str, tags: &[Tag]) -> Op {
    if tags.is_empty() {
        Op::Delete {
            key: keys::tags(arn),
        }
    } else {
        Op::Put {
            key: keys::tags(arn),
            value: encode(&tags),
            lease: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceInput {
    resource_arn: String,
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceInput {
    resource_arn: String,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsInput {
    resource_arn: String,
}

/// Check that an ARN names an ECS resource that exists, as ECS does before touching tags.
async fn check_taggable(ctx: &EcsContext, resource_arn: &str) -> Result<(), EcsError> {
    let invalid = || EcsError::InvalidParameter("The ARN provided is invalid.".to_string());
    let arn = Arn::parse(resource_arn).ok_or_else(invalid)?;
    if arn.service != "ecs" {
        return Err(invalid());
    }
    let exists = match arn.resource_type() {
        ("cluster", name) => ctx.store.get(&keys::cluster(name)).await?.is_some(),
        ("task-definition", family_revision) => {
            match family_revision
                .rsplit_once(':')
                .and_then(|(f, r)| Some((f, r.parse().ok()?)))
            {
                Some((family, revision)) => ctx
                    .store
                    .get(&keys::task_definition(family, revision))
                    .await?
                    .is_some(),
                None => return Err(invalid()),
            }
        }
        ("service", rest) => match rest.split_once('/') {
            Some((cluster, name)) if !name.contains('/') => ctx
                .store
                .get(&keys::service(cluster, name))
                .await?
                .is_some(),
            _ => return Err(invalid()),
        },
        ("task", rest) => match rest.split_once('/') {
            Some((cluster, id)) if !id.contains('/') => {
                ctx.store.get(&keys::task(cluster, id)).await?.is_some()
            }
            _ => return Err(invalid()),
        },
        ("container-instance", rest) => match rest.split_once('/') {
            Some((cluster, id)) if !id.contains('/') => ctx
                .store
                .get(&keys::container_instance(cluster, id))
                .await?
                .is_some(),
            _ => return Err(invalid()),
        },
        // Capacity providers arrive with their issue.
        _ => return Err(invalid()),
    };
    if !exists {
        return Err(EcsError::ResourceNotFound(
            "The specified resource is not found.".to_string(),
        ));
    }
    Ok(())
}

/// Change a resource's tags with a compare on the revision read, retrying on a race.
async fn update_tags(
    ctx: &EcsContext,
    arn: &str,
    change: impl Fn(Vec<Tag>) -> Result<Vec<Tag>, EcsError>,
) -> Result<(), EcsError> {
    for _ in 0..16 {
        let key = keys::tags(arn);
        let current = ctx.store.get(&key).await?;
        let (existing, mod_revision) = match &current {
            Some(kv) => (super::decode::<Vec<Tag>>(kv)?, kv.mod_revision),
            None => (Vec::new(), 0),
        };
        let updated = change(existing)?;
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, mod_revision)],
                success: vec![put_tags_op(arn, &updated)],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(());
        }
    }
    Err(EcsError::Conflict(
        "Too many concurrent updates to this resource's tags.".to_string(),
    ))
}

pub async fn tag_resource(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: TagResourceInput = ctx.parse(input)?;
    check_taggable(ctx, &input.resource_arn).await?;
    update_tags(ctx, &input.resource_arn, |existing| {
        Ok(merge_tags(&existing, &input.tags)?)
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag_resource(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: UntagResourceInput = ctx.parse(input)?;
    check_taggable(ctx, &input.resource_arn).await?;
    update_tags(ctx, &input.resource_arn, |existing| {
        Ok(existing
            .into_iter()
            .filter(|t| !input.tag_keys.iter().any(|k| Some(k) == t.key.as_ref()))
            .collect())
    })
    .await?;
    Ok(json!({}))
}

pub async fn list_tags_for_resource(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListTagsInput = ctx.parse(input)?;
    check_taggable(ctx, &input.resource_arn).await?;
    let tags = get_tags(ctx, &input.resource_arn).await?;
    Ok(json!({ "tags": tags }))
}
