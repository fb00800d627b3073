//! Task definition handlers: RegisterTaskDefinition, DescribeTaskDefinition,
//! ListTaskDefinitions, ListTaskDefinitionFamilies, DeregisterTaskDefinition and
//! DeleteTaskDefinitions.
//!
//! Storage (see `keys`): each revision is its own record under `ecs/taskdef/<family>/<rev>`,
//! and `ecs/taskdef-family/<family>` holds the last revision number handed out. Registering
//! compares that counter's mod revision and writes the counter, the definition and its tags in
//! one transaction, so concurrent registrations of one family get distinct, gap-free revisions
//! (a loser re-reads and retries).
//!
//! ```text
//!   Register ──> ACTIVE ──Deregister──> INACTIVE ──DeleteTaskDefinitions──> DELETE_IN_PROGRESS ──> removed
//! ```
//! A deleted revision is returned as DELETE_IN_PROGRESS and removed in the same transaction:
//! AWS keeps it only while tasks or services still reference it, and nothing can reference a
//! task definition yet. Once tasks and services exist, revisions they reference must instead
//! stay stored as DELETE_IN_PROGRESS until a controller removes them. The family counter is
//! never removed, so a family's revisions keep counting up after deletions, as in AWS.

use std::collections::BTreeMap;

use model::ecs::tag::{merge_tags, Tag};
use model::ecs::task_definition::{
    self, parse_reference, RegisterTaskDefinitionInput, TaskDefinition, TaskDefinitionReference,
    STATUS_ACTIVE, STATUS_DELETE_IN_PROGRESS, STATUS_INACTIVE,
};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Op, Txn};

use super::{decode, encode, keys, paging, tags, to_value, EcsContext, EcsError};
use super::{put_if_unchanged, unchanged};

/// How often a write that lost a race re-reads and tries again.
const MAX_ATTEMPTS: usize = 16;
/// ListTaskDefinitions and ListTaskDefinitionFamilies return at most this many per page.
const MAX_RESULTS: i64 = 100;
/// DeleteTaskDefinitions takes at most this many task definitions per call.
const MAX_DELETE: usize = 10;

/// AWS's answer for a reference it cannot resolve.
fn unable_to_describe() -> EcsError {
    EcsError::Client("Unable to describe task definition.".to_string())
}

/// ECS family names; anything else cannot name a stored family, and must not be spliced into
/// a store key.
fn is_family_name(family: &str) -> bool {
    !family.is_empty()
        && family.len() <= 255
        && family
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A task definition record with the store revision it was read at.
struct Stored {
    definition: TaskDefinition,
    mod_revision: i64,
}

/// Read one revision of a family.
async fn get_revision(
    ctx: &EcsContext,
    family: &str,
    revision: i32,
) -> Result<Option<Stored>, EcsError> {
    if !is_family_name(family) {
        return Ok(None);
    }
    let record = ctx
        .get_json::<TaskDefinition>(&keys::task_definition(family, revision.into()))
        .await?;
    Ok(record.map(|(definition, mod_revision)| Stored {
        definition,
        mod_revision,
    }))
}

/// Every stored revision of a family, oldest first.
async fn family_revisions(ctx: &EcsContext, family: &str) -> Result<Vec<TaskDefinition>, EcsError> {
    if !is_family_name(family) {
        return Ok(Vec::new());
    }
    let records = ctx
        .range_json::<TaskDefinition>(&keys::task_definition_family_prefix(family))
        .await?;
    Ok(records
        .into_iter()
        .map(|(_, definition)| definition)
        .collect())
}

/// Resolve a reference as DescribeTaskDefinition does: a bare family means its latest ACTIVE
/// revision; a revision or ARN means exactly that revision, whatever its status.
async fn resolve(
    ctx: &EcsContext,
    reference: &TaskDefinitionReference,
) -> Result<Option<Stored>, EcsError> {
    match reference {
        TaskDefinitionReference::Revision { family, revision } => {
            get_revision(ctx, family, *revision).await
        }
        TaskDefinitionReference::Family(family) => {
            let latest = family_revisions(ctx, family)
                .await?
                .into_iter()
                .filter(|d| d.status.as_deref() == Some(STATUS_ACTIVE))
                .max_by_key(|d| d.revision);
            match latest {
                Some(definition) => {
                    let revision = definition.revision.unwrap_or_default();
                    get_revision(ctx, family, revision).await
                }
                None => Ok(None),
            }
        }
    }
}

/// The definition a reference names (a bare family: its latest ACTIVE revision), for RunTask,
/// services and agents.
pub(super) async fn resolve_definition(
    ctx: &EcsContext,
    reference: &TaskDefinitionReference,
) -> Result<Option<TaskDefinition>, EcsError> {
    Ok(resolve(ctx, reference)
        .await?
        .map(|stored| stored.definition))
}

/// Deregister and delete need one revision; ECS refuses a bare family rather than picking one.
fn require_revision(reference: TaskDefinitionReference) -> Result<(String, i32), EcsError> {
    match reference {
        TaskDefinitionReference::Revision { family, revision } => Ok((family, revision)),
        // guessed wording; AWS documents "You must specify a revision".
        TaskDefinitionReference::Family(_) => Err(EcsError::Client(
            "You must specify a revision (family:revision) or a full task definition ARN."
                .to_string(),
        )),
    }
}

fn reject_bad_enum(member: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), EcsError> {
    match value {
        Some(value) if !allowed.contains(&value) => Err(EcsError::InvalidParameter(format!(
            "Invalid value '{value}' for {member}. Valid values are: {}.",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Task-definition placement constraints, checked by the scheduler that will evaluate them:
/// only `memberOf`, with an expression in the cluster query language, at most 10.
fn validate_placement_constraints(input: &RegisterTaskDefinitionInput) -> Result<(), EcsError> {
    let constraints = input
        .placement_constraints
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            scheduler::PlacementConstraint::from_wire(
                c.r#type.as_deref(),
                c.expression.as_deref(),
                i + 1,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut request = scheduler::PlacementRequest::new(
        input.family.as_deref().unwrap_or(""),
        scheduler::TaskRequirements::default(),
        1,
        0,
    );
    request.task_definition_constraints = constraints;
    Ok(request.validate()?)
}

pub async fn register_task_definition(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: RegisterTaskDefinitionInput = ctx.parse(input)?;
    task_definition::validate(&input)?;
    validate_placement_constraints(&input)?;
    let tags: Vec<Tag> = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    let family = input
        .family
        .clone()
        .ok_or_else(|| EcsError::Client("Family can not be blank.".to_string()))?;

    let counter_key = keys::task_definition_family_counter(&family);
    for _ in 0..MAX_ATTEMPTS {
        let (last_revision, counter_revision) = match ctx.store.get(&counter_key).await? {
            Some(kv) => (decode::<i64>(&kv)?, kv.mod_revision),
            None => (0, 0),
        };
        let revision = i32::try_from(last_revision + 1).map_err(|_| {
            EcsError::LimitExceeded(format!(
                "The task definition family {family} has reached its revision limit."
            ))
        })?;
        let arn = ctx.scope.task_definition_arn(&family, revision.into());
        let definition = task_definition::build(
            &input,
            arn.clone(),
            revision,
            ctx.now(),
            ctx.scope.root_principal_arn(),
        );
        let mut success = vec![
            Op::Put {
                key: counter_key.clone(),
                value: encode(&i64::from(revision)),
                lease: None,
            },
            Op::Put {
                key: keys::task_definition(&family, revision.into()),
                value: encode(&definition),
                lease: None,
            },
        ];
        if !tags.is_empty() {
            success.push(tags::put_tags_op(&arn, &tags));
        }
        let response = ctx
            .store
            .txn(Txn {
                // Revision 0 also matches a counter that does not exist yet, so the first
                // registration of a family races safely too.
                compares: vec![unchanged(&counter_key, counter_revision)],
                success,
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(json!({ "taskDefinition": to_value(&definition), "tags": tags }));
        }
    }
    Err(EcsError::Client(
        "Too many concurrent attempts to create a new revision of the specified family."
            .to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTaskDefinitionInput {
    task_definition: String,
    include: Option<Vec<String>>,
}

pub async fn describe_task_definition(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DescribeTaskDefinitionInput = ctx.parse(input)?;
    for field in input.include.iter().flatten() {
        reject_bad_enum("include", Some(field), &["TAGS"])?;
    }
    let reference = parse_reference(&input.task_definition)?;
    let stored = resolve(ctx, &reference)
        .await?
        .ok_or_else(unable_to_describe)?;
    let mut response = json!({ "taskDefinition": to_value(&stored.definition) });
    if input.include.iter().flatten().any(|field| field == "TAGS") {
        let arn = stored
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        response["tags"] = json!(tags::get_tags(ctx, &arn).await?);
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTaskDefinitionsInput {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// A key that sorts like (family, revision) ascending: a space sorts before every character
/// allowed in a family name, so `web` comes before `web-2` as plain string order has it.
fn ascending_key(family: &str, revision: i32) -> String {
    format!("{family} {revision:010}")
}

/// A key that sorts like (family, revision) descending: every family byte complemented (as
/// two hex digits), a terminator above any hex digit so that a family sorts after the longer
/// families it prefixes, then the revision complemented.
fn descending_key(family: &str, revision: i32) -> String {
    let complemented: String = family.bytes().map(|b| format!("{:02x}", 255 - b)).collect();
    format!(
        "{complemented}~{:010}",
        i64::from(i32::MAX) - i64::from(revision)
    )
}

pub async fn list_task_definitions(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListTaskDefinitionsInput = ctx.parse(input)?;
    let status = input.status.as_deref().unwrap_or(STATUS_ACTIVE);
    reject_bad_enum(
        "status",
        Some(status),
        &[STATUS_ACTIVE, STATUS_INACTIVE, STATUS_DELETE_IN_PROGRESS],
    )?;
    let sort = input.sort.as_deref().unwrap_or("ASC");
    reject_bad_enum("sort", Some(sort), &["ASC", "DESC"])?;

    // familyPrefix is, despite its name, an exact family name in this operation.
    let definitions: Vec<TaskDefinition> = match input.family_prefix.as_deref() {
        Some(family) => family_revisions(ctx, family).await?,
        None => ctx
            .range_json::<TaskDefinition>(keys::TASK_DEFINITION_PREFIX)
            .await?
            .into_iter()
            .map(|(_, definition)| definition)
            .collect(),
    };
    let mut items: Vec<(String, String)> = definitions
        .into_iter()
        .filter(|d| d.status.as_deref() == Some(status))
        .filter_map(|d| {
            let family = d.family?;
            let revision = d.revision?;
            let key = if sort == "DESC" {
                descending_key(&family, revision)
            } else {
                ascending_key(&family, revision)
            };
            Some((key, d.task_definition_arn?))
        })
        .collect();
    items.sort();

    let scope = format!(
        "ListTaskDefinitions|{}|{status}|{sort}",
        input.family_prefix.as_deref().unwrap_or("")
    );
    let (arns, next_token) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        input.max_results,
        MAX_RESULTS,
    )?;
    Ok(paging::output("taskDefinitionArns", arns, next_token))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTaskDefinitionFamiliesInput {
    family_prefix: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list_task_definition_families(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: ListTaskDefinitionFamiliesInput = ctx.parse(input)?;
    // AWS lists families in every state unless told otherwise.
    let status = input.status.as_deref().unwrap_or("ALL");
    reject_bad_enum(
        "status",
        Some(status),
        &[STATUS_ACTIVE, STATUS_INACTIVE, "ALL"],
    )?;
    let prefix = input.family_prefix.as_deref().unwrap_or("");
    // A prefix outside the family alphabet cannot match; splicing it into the key could.
    let records = if prefix.is_empty() || is_family_name(prefix) {
        ctx.range_json::<TaskDefinition>(&format!("{}{prefix}", keys::TASK_DEFINITION_PREFIX))
            .await?
    } else {
        Vec::new()
    };

    // family -> whether it has an ACTIVE revision.
    let mut families: BTreeMap<String, bool> = BTreeMap::new();
    for (_, definition) in records {
        let Some(family) = definition.family else {
            continue;
        };
        let active = definition.status.as_deref() == Some(STATUS_ACTIVE);
        *families.entry(family).or_insert(false) |= active;
    }
    let items: Vec<(String, String)> = families
        .into_iter()
        .filter(|(_, active)| match status {
            "ACTIVE" => *active,
            "INACTIVE" => !*active,
            _ => true,
        })
        .map(|(family, _)| (family.clone(), family))
        .collect();

    let scope = format!("ListTaskDefinitionFamilies|{prefix}|{status}");
    let (families, next_token) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        input.max_results,
        MAX_RESULTS,
    )?;
    Ok(paging::output("families", families, next_token))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterTaskDefinitionInput {
    task_definition: String,
}

pub async fn deregister_task_definition(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DeregisterTaskDefinitionInput = ctx.parse(input)?;
    let (family, revision) = require_revision(parse_reference(&input.task_definition)?)?;
    for _ in 0..MAX_ATTEMPTS {
        let Some(Stored {
            mut definition,
            mod_revision,
        }) = get_revision(ctx, &family, revision).await?
        else {
            // guessed wording.
            return Err(EcsError::Client(
                "The specified task definition does not exist.".to_string(),
            ));
        };
        // Deregistering an INACTIVE revision again changes nothing and is not an error.
        if definition.status.as_deref() != Some(STATUS_ACTIVE) {
            return Ok(json!({ "taskDefinition": to_value(&definition) }));
        }
        definition.status = Some(STATUS_INACTIVE.to_string());
        definition.deregistered_at = Some(ctx.now());
        let key = keys::task_definition(&family, revision.into());
        if put_if_unchanged(ctx, &key, mod_revision, &definition).await? {
            return Ok(json!({ "taskDefinition": to_value(&definition) }));
        }
    }
    Err(EcsError::Conflict(
        "Too many concurrent updates to this task definition.".to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteTaskDefinitionsInput {
    task_definitions: Vec<String>,
}

pub async fn delete_task_definitions(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DeleteTaskDefinitionsInput = ctx.parse(input)?;
    if input.task_definitions.is_empty() || input.task_definitions.len() > MAX_DELETE {
        // guessed wording; the 1–10 limit is AWS's.
        return Err(EcsError::InvalidParameter(format!(
            "taskDefinitions must contain between 1 and {MAX_DELETE} task definitions."
        )));
    }
    // Resolve every reference before touching anything: a malformed one fails the whole call.
    let mut wanted: Vec<(String, i32)> = Vec::new();
    for text in &input.task_definitions {
        let target = require_revision(parse_reference(text)?)?;
        if !wanted.contains(&target) {
            wanted.push(target);
        }
    }

    for _ in 0..MAX_ATTEMPTS {
        let now = ctx.now();
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        let mut compares = Vec::new();
        let mut success = Vec::new();
        for (family, revision) in &wanted {
            let arn = ctx.scope.task_definition_arn(family, (*revision).into());
            let Some(Stored {
                mut definition,
                mod_revision,
            }) = get_revision(ctx, family, *revision).await?
            else {
                failures.push(json!({
                    "arn": arn,
                    "reason": "MISSING",
                    // guessed wording.
                    "detail": "The specified task definition does not exist.",
                }));
                continue;
            };
            if definition.status.as_deref() == Some(STATUS_ACTIVE) {
                failures.push(json!({
                    "arn": arn,
                    // guessed reason code and wording.
                    "reason": "TASK_DEFINITION_ACTIVE",
                    "detail": "The task definition must be deregistered before it can be deleted.",
                }));
                continue;
            }
            let key = keys::task_definition(family, (*revision).into());
            compares.push(unchanged(&key, mod_revision));
            success.push(Op::Delete { key });
            success.push(tags::put_tags_op(&arn, &[]));
            definition.status = Some(STATUS_DELETE_IN_PROGRESS.to_string());
            definition.delete_requested_at.get_or_insert(now);
            deleted.push(to_value(&definition));
        }
        if !success.is_empty() {
            let response = ctx
                .store
                .txn(Txn {
                    compares,
                    success,
                    failure: vec![],
                })
                .await?;
            if !response.succeeded {
                continue;
            }
        }
        return Ok(json!({ "taskDefinitions": deleted, "failures": failures }));
    }
    Err(EcsError::Conflict(
        "Too many concurrent updates to these task definitions.".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn sort_keys_order_like_aws() {
        let pairs = [
            ("web", 2),
            ("web", 10),
            ("web-2", 1),
            ("wec", 1),
            ("a_b", 7),
            ("web", 1),
        ];
        let mut ascending: Vec<_> = pairs
            .iter()
            .map(|(f, r)| (ascending_key(f, *r), (*f, *r)))
            .collect();
        ascending.sort();
        let ascending: Vec<_> = ascending.into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            ascending,
            vec![
                ("a_b", 7),
                ("web", 1),
                ("web", 2),
                ("web", 10),
                ("web-2", 1),
                ("wec", 1)
            ]
        );
        let mut descending: Vec<_> = pairs
            .iter()
            .map(|(f, r)| (descending_key(f, *r), (*f, *r)))
            .collect();
        descending.sort();
        let descending: Vec<_> = descending.into_iter().map(|(_, p)| p).collect();
        let mut expected = ascending.clone();
        expected.reverse();
        assert_eq!(descending, expected);
        let unique: BTreeSet<_> = pairs.iter().map(|(f, r)| descending_key(f, *r)).collect();
        assert_eq!(unique.len(), pairs.len());
    }
}
