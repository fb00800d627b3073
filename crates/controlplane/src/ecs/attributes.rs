//! Custom attributes: PutAttributes, DeleteAttributes and ListAttributes. Attributes are set
//! on container instances (the only target type ECS has) and feed placement constraints.

use model::arn::Arn;
use model::ecs::attribute::{validate_attribute, Attribute};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Compare, CompareOp, CompareTarget, Op, Txn};

use super::clusters::active_cluster;
use super::unchanged;
use super::{keys, paging, EcsContext, EcsError};

/// AWS allows at most 10 custom attributes on one resource.
const MAX_ATTRIBUTES_PER_TARGET: usize = 10;
const CONTAINER_INSTANCE: &str = "container-instance";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttributesInput {
    cluster: Option<String>,
    attributes: Vec<Attribute>,
}

/// A container instance given by id or ARN, resolved to its id; it must exist in the cluster.
async fn resolve_target(
    ctx: &EcsContext,
    cluster: &str,
    target_id: Option<&str>,
) -> Result<String, EcsError> {
    let target_id = target_id
        .filter(|t| !t.is_empty())
        .ok_or_else(|| EcsError::InvalidParameter("targetId can not be blank.".to_string()))?;
    let id = if target_id.starts_with("arn:") {
        let arn = Arn::parse(target_id)
            .filter(|a| a.service == "ecs")
            .ok_or_else(|| EcsError::InvalidParameter(format!("Invalid targetId: {target_id}.")))?;
        match arn.resource_type() {
            (CONTAINER_INSTANCE, rest) => rest.rsplit('/').next().unwrap_or("").to_string(),
            _ => {
                return Err(EcsError::InvalidParameter(format!(
                    "Invalid targetId: {target_id}."
                )))
            }
        }
    } else {
        target_id.to_string()
    };
    if ctx
        .store
        .get(&keys::container_instance(cluster, &id))
        .await?
        .is_none()
    {
        return Err(EcsError::TargetNotFound(format!(
            "Could not find {target_id}. The target may not exist or may not be in the specified cluster."
        )));
    }
    Ok(id)
}

pub async fn put_attributes(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: AttributesInput = ctx.parse(input)?;
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    if input.attributes.is_empty() {
        return Err(EcsError::InvalidParameter(
            "attributes can not be empty.".to_string(),
        ));
    }
    // Validate and resolve every attribute before writing any.
    let mut resolved = Vec::new();
    for attribute in &input.attributes {
        validate_attribute(attribute)?;
        let id = resolve_target(ctx, &cluster, attribute.target_id.as_deref()).await?;
        resolved.push((id, attribute.clone()));
    }
    for _ in 0..16 {
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut targets: Vec<&String> = resolved.iter().map(|(id, _)| id).collect();
        targets.dedup();
        for id in targets {
            let prefix = format!("{}{id}/", keys::attribute_cluster_prefix(&cluster));
            let existing = ctx.store.range(&prefix, Default::default()).await?;
            let mut names: Vec<String> = existing
                .kvs
                .iter()
                .map(|kv| kv.key[prefix.len()..].to_string())
                .collect();
            for (_, attribute) in resolved.iter().filter(|(t, _)| t == id) {
                if !names.contains(&attribute.name) {
                    names.push(attribute.name.clone());
                }
            }
            if names.len() > MAX_ATTRIBUTES_PER_TARGET {
                return Err(EcsError::AttributeLimitExceeded(format!(
                    "You can apply up to {MAX_ATTRIBUTES_PER_TARGET} custom attributes per resource."
                )));
            }
            // Guard the count check against a concurrent PutAttributes on the same target.
            for kv in &existing.kvs {
                compares.push(unchanged(&kv.key, kv.mod_revision));
            }
        }
        for (id, attribute) in &resolved {
            let key = keys::attribute(&cluster, id, &attribute.name);
            if !compares.iter().any(|c| c.key == key) {
                compares.push(Compare {
                    key: key.clone(),
                    target: CompareTarget::CreateRevision(0),
                    op: CompareOp::Equal,
                });
            }
            let stored = Attribute {
                name: attribute.name.clone(),
                value: attribute.value.clone(),
                target_type: Some(CONTAINER_INSTANCE.to_string()),
                target_id: Some(ctx.scope.container_instance_arn(&cluster, id)),
            };
            ops.push(Op::Put {
                key,
                value: super::encode(&stored),
                lease: None,
            });
        }
        let response = ctx
            .store
            .txn(Txn {
                compares,
                success: ops,
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(json!({ "attributes": input.attributes }));
        }
    }
    Err(EcsError::Conflict(
        "Attributes are being changed concurrently; retry.".to_string(),
    ))
}

pub async fn delete_attributes(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: AttributesInput = ctx.parse(input)?;
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let mut ops = Vec::new();
    for attribute in &input.attributes {
        let id = resolve_target(ctx, &cluster, attribute.target_id.as_deref()).await?;
        ops.push(Op::Delete {
            key: keys::attribute(&cluster, &id, &attribute.name),
        });
    }
    ctx.store
        .txn(Txn {
            compares: vec![],
            success: ops,
            failure: vec![],
        })
        .await?;
    Ok(json!({ "attributes": input.attributes }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAttributesInput {
    cluster: Option<String>,
    target_type: String,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list_attributes(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListAttributesInput = ctx.parse(input)?;
    if input.target_type != CONTAINER_INSTANCE {
        return Err(EcsError::InvalidParameter(
            "targetType must be container-instance.".to_string(),
        ));
    }
    if input.attribute_value.is_some() && input.attribute_name.is_none() {
        return Err(EcsError::InvalidParameter(
            "attributeName must be specified when attributeValue is specified.".to_string(),
        ));
    }
    let (cluster, _) = active_cluster(ctx, input.cluster.as_deref()).await?;
    let cluster = cluster.cluster_name.unwrap_or_default();
    let items: Vec<(String, Attribute)> = ctx
        .range_json::<Attribute>(&keys::attribute_cluster_prefix(&cluster))
        .await?
        .into_iter()
        .filter(|(_, a)| input.attribute_name.as_ref().is_none_or(|n| &a.name == n))
        .filter(|(_, a)| input.attribute_value.is_none() || a.value == input.attribute_value)
        .collect();
    let scope = format!(
        "ListAttributes/{cluster}/{}/{}",
        input.attribute_name.as_deref().unwrap_or(""),
        input.attribute_value.as_deref().unwrap_or("")
    );
    let (attributes, next) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        input.max_results,
        100,
    )?;
    Ok(paging::output("attributes", attributes, next))
}
