//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting and
//! ListAccountSettings.
//!
//! A setting's effective value for a principal is, in order: the principal's own setting, the
//! account default, then AWS's built-in default (`model::ecs::account_setting::DEFAULTS`).
//! Wharf has one principal per server today, the account root.

use model::ecs::account_setting::{default_value, validate_setting, Setting, DEFAULTS};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{encode, keys, paging, EcsContext, EcsError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutInput {
    name: String,
    value: String,
    principal_arn: Option<String>,
}

fn check_principal(principal: &str) -> Result<(), EcsError> {
    let ok = principal.starts_with("arn:aws:iam::")
        && (principal.contains(":root")
            || principal.contains(":user/")
            || principal.contains(":role/"));
    if ok {
        Ok(())
    } else {
        Err(EcsError::InvalidParameter(format!(
            "Invalid principal ARN '{principal}'. Specify the ARN of an IAM user, IAM role or the account root user."
        )))
    }
}

pub async fn put_account_setting(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: PutInput = ctx.parse(input)?;
    validate_setting(&input.name, &input.value)?;
    let principal = input
        .principal_arn
        .unwrap_or_else(|| ctx.scope.root_principal_arn());
    check_principal(&principal)?;
    let setting = Setting {
        name: input.name.clone(),
        value: input.value,
        principal_arn: Some(principal.clone()),
        setting_type: Some("user".to_string()),
    };
    ctx.store
        .put(&keys::setting(&principal, &input.name), encode(&setting))
        .await?;
    Ok(json!({ "setting": setting }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutDefaultInput {
    name: String,
    value: String,
}

pub async fn put_account_setting_default(
    ctx: &EcsContext,
    input: Value,
) -> Result<Value, EcsError> {
    let input: PutDefaultInput = ctx.parse(input)?;
    validate_setting(&input.name, &input.value)?;
    let setting = Setting {
        name: input.name.clone(),
        value: input.value,
        principal_arn: Some(ctx.scope.root_principal_arn()),
        setting_type: Some("user".to_string()),
    };
    ctx.store
        .put(&keys::setting_default(&input.name), encode(&setting))
        .await?;
    Ok(json!({ "setting": setting }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    name: String,
    principal_arn: Option<String>,
}

pub async fn delete_account_setting(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DeleteInput = ctx.parse(input)?;
    if default_value(&input.name).is_none() {
        validate_setting(&input.name, "")?;
    }
    let principal = input
        .principal_arn
        .unwrap_or_else(|| ctx.scope.root_principal_arn());
    check_principal(&principal)?;
    let key = keys::setting(&principal, &input.name);
    let existing = ctx.get_json::<Setting>(&key).await?;
    ctx.store.delete(&key).await?;
    // AWS answers with the setting as it now stands for the principal.
    let effective = effective(ctx, &principal, &input.name).await?;
    let setting = existing.map(|(s, _)| s).unwrap_or(effective);
    Ok(json!({ "setting": setting }))
}

async fn effective(ctx: &EcsContext, principal: &str, name: &str) -> Result<Setting, EcsError> {
    if let Some((setting, _)) = ctx
        .get_json::<Setting>(&keys::setting(principal, name))
        .await?
    {
        return Ok(setting);
    }
    if let Some((mut setting, _)) = ctx
        .get_json::<Setting>(&keys::setting_default(name))
        .await?
    {
        setting.principal_arn = Some(principal.to_string());
        return Ok(setting);
    }
    Ok(Setting {
        name: name.to_string(),
        value: default_value(name).unwrap_or("").to_string(),
        principal_arn: Some(principal.to_string()),
        setting_type: Some("aws_managed".to_string()),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: bool,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list_account_settings(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ListInput = ctx.parse(input)?;
    if let Some(name) = &input.name {
        if default_value(name).is_none() {
            validate_setting(name, "")?;
        }
    }
    if input.value.is_some() && input.name.is_none() {
        return Err(EcsError::InvalidParameter(
            "The value parameter requires the name parameter.".to_string(),
        ));
    }
    let principal = input
        .principal_arn
        .clone()
        .unwrap_or_else(|| ctx.scope.root_principal_arn());
    check_principal(&principal)?;
    let mut settings = Vec::new();
    if input.effective_settings {
        for (name, _) in DEFAULTS {
            settings.push(effective(ctx, &principal, name).await?);
        }
    } else {
        for (_, setting) in ctx
            .range_json::<Setting>(&keys::setting_principal_prefix(&principal))
            .await?
        {
            settings.push(setting);
        }
    }
    let items: Vec<(String, Setting)> = settings
        .into_iter()
        .filter(|s| input.name.as_ref().is_none_or(|n| &s.name == n))
        .filter(|s| input.value.as_ref().is_none_or(|v| &s.value == v))
        .map(|s| (s.name.clone(), s))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let scope = format!(
        "ListAccountSettings/{principal}/{}/{}/{}",
        input.name.as_deref().unwrap_or(""),
        input.value.as_deref().unwrap_or(""),
        input.effective_settings
    );
    let (settings, next) = paging::page(
        &ctx.tokens,
        &scope,
        items,
        input.next_token.as_deref(),
        input.max_results,
        10,
    )?;
    Ok(paging::output("settings", settings, next))
}
