//! The ACM operations: read the JSON input, validate it the way AWS does (shape constraints
//! first, reported as "N validation error(s) detected"), run it against the store with
//! compare-and-swap writes, and shape the output with the model's member names.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use regex::Regex;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{AcmError, Problems, Result};
use super::records::{CertificateDetails, CertificateRecord};
use super::{conflict, import, AcmContext, MAX_ATTEMPTS};

/// ImportCertificate's blob limits, from the model (bytes of the decoded blob).
const MAX_CERTIFICATE_BYTES: usize = 32_768;
const MAX_PRIVATE_KEY_BYTES: usize = 5_120;
const MAX_CHAIN_BYTES: usize = 2_097_152;
const MAX_TAGS: usize = 50;
/// ListCertificates' summaries carry at most this many names; DescribeCertificate has all.
const MAX_SUMMARY_NAMES: usize = 100;

const STATUSES: [&str; 7] = [
    "PENDING_VALIDATION",
    "ISSUED",
    "INACTIVE",
    "EXPIRED",
    "VALIDATION_TIMED_OUT",
    "REVOKED",
    "FAILED",
];
const KEY_PAIR_ORIGINS: [&str; 3] = ["ACME", "AWS_MANAGED", "CUSTOMER_PROVIDED"];
/// An imported certificate's key pair came with it.
const KEY_PAIR_ORIGIN: &str = "CUSTOMER_PROVIDED";
const KEY_ALGORITHMS: [&str; 7] = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
];
/// What ListCertificates returns when `Includes.keyTypes` is not given (the model's words:
/// "Default filtering returns only RSA_1024 and RSA_2048 certificates that have at least one
/// domain").
const DEFAULT_KEY_TYPES: [&str; 2] = ["RSA_1024", "RSA_2048"];
const KEY_USAGES: [&str; 11] = [
    "DIGITAL_SIGNATURE",
    "NON_REPUDIATION",
    "KEY_ENCIPHERMENT",
    "DATA_ENCIPHERMENT",
    "KEY_AGREEMENT",
    "CERTIFICATE_SIGNING",
    "CRL_SIGNING",
    "ENCIPHER_ONLY",
    "DECIPHER_ONLY",
    "ANY",
    "CUSTOM",
];
const EXTENDED_KEY_USAGES: [&str; 12] = [
    "TLS_WEB_SERVER_AUTHENTICATION",
    "TLS_WEB_CLIENT_AUTHENTICATION",
    "CODE_SIGNING",
    "EMAIL_PROTECTION",
    "TIME_STAMPING",
    "OCSP_SIGNING",
    "IPSEC_END_SYSTEM",
    "IPSEC_TUNNEL",
    "IPSEC_USER",
    "ANY",
    "NONE",
    "CUSTOM",
];

static ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^arn:[A-Za-z0-9_+=/,.@-]+:acm:[A-Za-z0-9_+=/,.@-]*:[0-9]+:[A-Za-z0-9_+=,.@-]+(/[A-Za-z0-9_+=,.@-]+)*$",
    )
    .expect("valid regex")
});
const ARN_PATTERN: &str = r"arn:[\w+=/,.@-]+:acm:[\w+=/,.@-]*:[0-9]+:[\w+=,.@-]+(/[\w+=,.@-]+)*";
static TAG_TEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("valid regex"));
const TAG_PATTERN: &str = r"[\p{L}\p{Z}\p{N}_.:\/=+\-@]*";

// ---- reading inputs ----

/// A typed input; a member of the wrong JSON type is a SerializationException, as with AWS's
/// JSON protocol.
fn parse<T: DeserializeOwned>(input: Value) -> Result<T> {
    serde_json::from_value(input).map_err(|e| AcmError::Serialization(e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnInput {
    certificate_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportInput {
    certificate_arn: Option<String>,
    certificate: Option<String>,
    private_key: Option<String>,
    certificate_chain: Option<String>,
    tags: Option<Vec<TagInput>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsInput {
    certificate_arn: Option<String>,
    tags: Option<Vec<TagInput>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filters {
    extended_key_usage: Option<Vec<String>>,
    key_usage: Option<Vec<String>>,
    key_types: Option<Vec<String>>,
    export_option: Option<String>,
    managed_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    certificate_statuses: Option<Vec<String>>,
    certificate_key_pair_origins: Option<Vec<String>>,
    includes: Option<Filters>,
    next_token: Option<String>,
    max_items: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

fn quote(value: &str) -> String {
    format!("'{value}'")
}

/// A required member: its value, or a "must not be null" problem.
fn required<T>(p: &mut Problems, field: &str, value: Option<T>) -> Option<T> {
    if value.is_none() {
        p.null(field);
    }
    value
}

fn check_length(p: &mut Problems, shown: &str, field: &str, len: usize, min: usize, max: usize) {
    if len < min {
        p.constraint(
            shown,
            field,
            &format!("Member must have length greater than or equal to {min}"),
        );
    } else if len > max {
        p.constraint(
            shown,
            field,
            &format!("Member must have length less than or equal to {max}"),
        );
    }
}

fn check_arn(p: &mut Problems, field: &str, arn: &str) {
    let len = arn.chars().count();
    check_length(p, &quote(arn), field, len, 20, 2048);
    if !ARN.is_match(arn) {
        p.constraint(
            &quote(arn),
            field,
            &format!("Member must satisfy regular expression pattern: {ARN_PATTERN}"),
        );
    }
}

/// The one required certificate ARN of an operation, shape-checked.
fn certificate_arn(input: ArnInput) -> Result<String> {
    let mut p = Problems::default();
    let arn = required(&mut p, "certificateArn", input.certificate_arn);
    if let Some(arn) = &arn {
        check_arn(&mut p, "certificateArn", arn);
    }
    p.into_result()?;
    Ok(arn.unwrap_or_default())
}

/// A blob member: base64 in the JSON body. Its decoded length is checked against the model
/// (the value is not echoed: blobs hold PEM, and keys are sensitive).
fn blob(p: &mut Problems, field: &str, value: Option<&str>, max: usize) -> Result<Option<Vec<u8>>> {
    let Some(value) = value else { return Ok(None) };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| {
            AcmError::Serialization(format!("Value for '{field}' is not valid base64."))
            // guessed
        })?;
    check_length(p, "", field, bytes.len(), 1, max);
    Ok(Some(bytes))
}

/// A tag as given: key and optional value (the value is optional in the model).
type GivenTag = (String, Option<String>);

/// Shape-check a tag list; `field` is the member name (`tags`).
fn check_tags(p: &mut Problems, field: &str, tags: &[TagInput]) -> Vec<GivenTag> {
    if tags.is_empty() || tags.len() > MAX_TAGS {
        let constraint = if tags.is_empty() {
            "Member must have length greater than or equal to 1".to_string()
        } else {
            format!("Member must have length less than or equal to {MAX_TAGS}")
        };
        p.constraint("", field, &constraint);
    }
    let mut out = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let at = |member: &str| format!("{field}.{}.member.{member}", i + 1);
        let Some(key) = required(p, &at("key"), tag.key.clone()) else {
            continue;
        };
        check_length(p, &quote(&key), &at("key"), key.chars().count(), 1, 128);
        if !TAG_TEXT.is_match(&key) {
            p.constraint(
                &quote(&key),
                &at("key"),
                &format!("Member must satisfy regular expression pattern: {TAG_PATTERN}"),
            );
        }
        if let Some(value) = &tag.value {
            check_length(
                p,
                &quote(value),
                &at("value"),
                value.chars().count(),
                0,
                256,
            );
            if !TAG_TEXT.is_match(value) {
                p.constraint(
                    &quote(value),
                    &at("value"),
                    &format!("Member must satisfy regular expression pattern: {TAG_PATTERN}"),
                );
            }
        }
        out.push((key, tag.value.clone()));
    }
    out
}

/// Tags the caller may not set or remove: AWS reserves the `aws:` prefix.
fn check_reserved(tags: &[GivenTag]) -> Result<()> {
    match tags
        .iter()
        .find(|(k, _)| k.to_ascii_lowercase().starts_with("aws:"))
    {
        Some((key, _)) => Err(AcmError::InvalidTag(format!(
            "Tag key '{key}' uses the prefix 'aws:', which is reserved for AWS use." // guessed
        ))),
        None => Ok(()),
    }
}

/// Merge `new` into `tags` (a key already present takes the new value; no value is stored as
/// the empty one).
fn merge_tags(tags: &mut Vec<(String, String)>, new: Vec<GivenTag>) {
    for (key, value) in new {
        let value = value.unwrap_or_default();
        match tags.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => tags.push((key, value)),
        }
    }
}

fn too_many_tags(count: usize) -> AcmError {
    AcmError::TooManyTags(format!(
        "The certificate would have {count} tags; a certificate can have at most {MAX_TAGS}." // guessed
    ))
}

/// An enum member: a problem unless `value` is one of `allowed`.
fn check_enum(p: &mut Problems, field: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        p.constraint(
            &quote(value),
            field,
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        );
    }
}

/// A list of enum members, reported the way AWS reports list members.
fn check_enum_list(p: &mut Problems, field: &str, values: &[String], allowed: &[&str]) {
    if values.iter().any(|v| !allowed.contains(&v.as_str())) {
        p.constraint(
            &quote(&format!("[{}]", values.join(", "))),
            field,
            &format!(
                "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                allowed.join(", ")
            ),
        );
    }
}

// ---- output shapes ----

/// Timestamps are epoch seconds, as JSON numbers.
fn timestamp(ms: i64) -> Value {
    protocol::shape::double_value(ms as f64 / 1000.0)
}

/// ISSUED, or EXPIRED once `now_ms` reaches NotAfter.
fn status(record: &CertificateRecord, now_ms: i64) -> &'static str {
    if now_ms >= record.details.not_after_ms {
        "EXPIRED"
    } else {
        "ISSUED"
    }
}

fn tag_list(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// A `CertificateDetail`.
fn detail(record: &CertificateRecord, in_use_by: Vec<String>, now_ms: i64) -> Value {
    let mut out = Map::new();
    out.insert("CertificateArn".into(), json!(record.arn));
    if !record.details.domain_name.is_empty() {
        out.insert("DomainName".into(), json!(record.details.domain_name));
    }
    if !record.details.subject_alternative_names.is_empty() {
        out.insert(
            "SubjectAlternativeNames".into(),
            json!(record.details.subject_alternative_names),
        );
    }
    out.insert("Serial".into(), json!(record.details.serial));
    out.insert("Subject".into(), json!(record.details.subject));
    out.insert("Issuer".into(), json!(record.details.issuer));
    out.insert("CreatedAt".into(), timestamp(record.created_at_ms));
    out.insert("ImportedAt".into(), timestamp(record.imported_at_ms));
    out.insert("Status".into(), json!(status(record, now_ms)));
    out.insert("NotBefore".into(), timestamp(record.details.not_before_ms));
    out.insert("NotAfter".into(), timestamp(record.details.not_after_ms));
    out.insert("KeyAlgorithm".into(), json!(record.details.key_algorithm));
    out.insert(
        "SignatureAlgorithm".into(),
        json!(record.details.signature_algorithm),
    );
    out.insert("InUseBy".into(), json!(in_use_by));
    out.insert("Type".into(), json!("IMPORTED"));
    out.insert("RenewalEligibility".into(), json!("INELIGIBLE"));
    out.insert("CertificateKeyPairOrigin".into(), json!(KEY_PAIR_ORIGIN));
    out.insert(
        "KeyUsages".into(),
        Value::Array(
            record
                .details
                .key_usages
                .iter()
                .map(|name| json!({"Name": name}))
                .collect(),
        ),
    );
    out.insert(
        "ExtendedKeyUsages".into(),
        Value::Array(
            record
                .details
                .extended_key_usages
                .iter()
                .map(|(name, oid)| json!({"Name": name, "OID": oid}))
                .collect(),
        ),
    );
    out.insert(
        "Options".into(),
        json!({"CertificateTransparencyLoggingPreference": "ENABLED"}),
    );
    Value::Object(out)
}

/// A `CertificateSummary`.
fn summary(record: &CertificateRecord, in_use: bool, now_ms: i64) -> Value {
    let mut out = Map::new();
    out.insert("CertificateArn".into(), json!(record.arn));
    if !record.details.domain_name.is_empty() {
        out.insert("DomainName".into(), json!(record.details.domain_name));
    }
    let names = &record.details.subject_alternative_names;
    if !names.is_empty() {
        out.insert(
            "SubjectAlternativeNameSummaries".into(),
            json!(names.iter().take(MAX_SUMMARY_NAMES).collect::<Vec<_>>()),
        );
    }
    out.insert(
        "HasAdditionalSubjectAlternativeNames".into(),
        json!(names.len() > MAX_SUMMARY_NAMES),
    );
    out.insert("Status".into(), json!(status(record, now_ms)));
    out.insert("Type".into(), json!("IMPORTED"));
    out.insert("KeyAlgorithm".into(), json!(record.details.key_algorithm));
    out.insert("KeyUsages".into(), json!(record.details.key_usages));
    out.insert(
        "ExtendedKeyUsages".into(),
        json!(record
            .details
            .extended_key_usages
            .iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>()),
    );
    out.insert("InUse".into(), json!(in_use));
    out.insert("CertificateKeyPairOrigin".into(), json!(KEY_PAIR_ORIGIN));
    out.insert("RenewalEligibility".into(), json!("INELIGIBLE"));
    out.insert("NotBefore".into(), timestamp(record.details.not_before_ms));
    out.insert("NotAfter".into(), timestamp(record.details.not_after_ms));
    out.insert("CreatedAt".into(), timestamp(record.created_at_ms));
    out.insert("ImportedAt".into(), timestamp(record.imported_at_ms));
    Value::Object(out)
}

// ---- operations ----

pub async fn import_certificate(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let input: ImportInput = parse(input)?;
    let mut p = Problems::default();
    if let Some(arn) = &input.certificate_arn {
        check_arn(&mut p, "certificateArn", arn);
    }
    let certificate = required(&mut p, "certificate", input.certificate.as_deref());
    let certificate = blob(&mut p, "certificate", certificate, MAX_CERTIFICATE_BYTES)?;
    let private_key = required(&mut p, "privateKey", input.private_key.as_deref());
    let private_key = blob(&mut p, "privateKey", private_key, MAX_PRIVATE_KEY_BYTES)?;
    let chain = blob(
        &mut p,
        "certificateChain",
        input.certificate_chain.as_deref(),
        MAX_CHAIN_BYTES,
    )?;
    let tags = input
        .tags
        .as_deref()
        .map(|tags| check_tags(&mut p, "tags", tags));
    p.into_result()?;
    let (certificate, private_key) = (
        certificate.unwrap_or_default(),
        private_key.unwrap_or_default(),
    );
    if let Some(tags) = &tags {
        if input.certificate_arn.is_some() {
            return Err(AcmError::Validation(
                "Tags cannot be applied when reimporting a certificate.".to_string(), // guessed
            ));
        }
        check_reserved(tags)?;
    }

    let now = ctx.now_ms();
    let imported = import::read(&certificate, &private_key, chain.as_deref(), now)?;
    let arn = match &input.certificate_arn {
        None => {
            let mut merged = Vec::new();
            merge_tags(&mut merged, tags.unwrap_or_default());
            let id = uuid::Uuid::new_v4().to_string();
            let record = CertificateRecord {
                arn: ctx.arn(&id),
                id,
                details: imported,
                created_at_ms: now,
                imported_at_ms: now,
                tags: merged,
            };
            // A fresh UUID key is absent; a failed compare would mean a collision.
            if !ctx.put_if(&record, 0).await? {
                return Err(conflict());
            }
            tracing::info!(
                arn = record.arn,
                domain = record.details.domain_name,
                "certificate imported"
            );
            record.arn
        }
        Some(arn) => reimport(ctx, arn, imported, now).await?,
    };
    Ok(json!({ "CertificateArn": arn }))
}

/// Replace the certificate of an existing ARN, keeping its id, creation time and tags.
async fn reimport(
    ctx: &AcmContext,
    arn: &str,
    imported: CertificateDetails,
    now: i64,
) -> Result<String> {
    for _ in 0..MAX_ATTEMPTS {
        let (old, revision) = ctx.certificate(arn).await.map_err(|e| match e {
            // AWS's text for a re-import into an ARN that does not exist.
            AcmError::ResourceNotFound(_) => {
                AcmError::ResourceNotFound(format!("Could not find certificate {arn}."))
            }
            other => other,
        })?;
        if old.details.key_algorithm != imported.key_algorithm {
            return Err(AcmError::Validation(format!(
                "The certificate's key algorithm {} differs from the {} of the certificate being replaced; a re-import cannot change the key type or size.", // guessed
                imported.key_algorithm, old.details.key_algorithm
            )));
        }
        let new = CertificateRecord {
            details: imported.clone(),
            imported_at_ms: now,
            ..old
        };
        if ctx.put_if(&new, revision).await? {
            tracing::info!(
                arn,
                domain = new.details.domain_name,
                "certificate re-imported"
            );
            return Ok(new.arn);
        }
    }
    Err(conflict())
}

pub async fn describe_certificate(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let arn = certificate_arn(parse(input)?)?;
    let (record, _) = ctx.certificate(&arn).await?;
    let in_use_by = ctx.in_use_by(&arn).await?;
    Ok(json!({ "Certificate": detail(&record, in_use_by, ctx.now_ms()) }))
}

pub async fn get_certificate(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let arn = certificate_arn(parse(input)?)?;
    let (record, _) = ctx.certificate(&arn).await?;
    let mut out = json!({ "Certificate": record.details.certificate_pem });
    if !record.details.chain_pem.is_empty() {
        out["CertificateChain"] = json!(record.details.chain_pem);
    }
    Ok(out)
}

pub async fn delete_certificate(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let arn = certificate_arn(parse(input)?)?;
    for _ in 0..MAX_ATTEMPTS {
        let (record, revision) = ctx.certificate(&arn).await?;
        if !ctx.in_use_by(&arn).await?.is_empty() {
            // AWS's text.
            return Err(AcmError::ResourceInUse(format!(
                "Certificate {arn} in account {} is in use.",
                ctx.account_id
            )));
        }
        if ctx.delete_if(&record.id, revision).await? {
            tracing::info!(arn, "certificate deleted");
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

/// Read a tag operation's input: the ARN and the shape-checked tags.
fn tags_input(input: Value) -> Result<(String, Vec<GivenTag>)> {
    let input: TagsInput = parse(input)?;
    let mut p = Problems::default();
    let arn = required(&mut p, "certificateArn", input.certificate_arn);
    if let Some(arn) = &arn {
        check_arn(&mut p, "certificateArn", arn);
    }
    let tags = required(&mut p, "tags", input.tags)
        .map(|tags| check_tags(&mut p, "tags", &tags))
        .unwrap_or_default();
    p.into_result()?;
    check_reserved(&tags)?;
    Ok((arn.unwrap_or_default(), tags))
}

/// Apply `change` to the certificate's tags and write it back, compare-and-swap.
async fn update_tags<F>(ctx: &AcmContext, arn: &str, change: F) -> Result<Value>
where
    F: Fn(&mut Vec<(String, String)>) -> Result<()>,
{
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = ctx.certificate(arn).await?;
        change(&mut record.tags)?;
        if ctx.put_if(&record, revision).await? {
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

pub async fn add_tags(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let (arn, new) = tags_input(input)?;
    update_tags(ctx, &arn, |tags| {
        merge_tags(tags, new.clone());
        if tags.len() > MAX_TAGS {
            return Err(too_many_tags(tags.len()));
        }
        Ok(())
    })
    .await
}

pub async fn remove_tags(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    // A tag given by its key alone goes whatever its value; with a value, only on a match.
    let (arn, remove) = tags_input(input)?;
    update_tags(ctx, &arn, |tags| {
        tags.retain(|(key, value)| {
            !remove
                .iter()
                .any(|(k, v)| k == key && v.as_ref().is_none_or(|v| v == value))
        });
        Ok(())
    })
    .await
}

pub async fn list_tags(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let arn = certificate_arn(parse(input)?)?;
    let (record, _) = ctx.certificate(&arn).await?;
    Ok(json!({ "Tags": tag_list(&record.tags) }))
}

/// ListCertificates' filters, checked.
struct Listing {
    statuses: Vec<String>,
    /// Empty: AWS's default (AWS_MANAGED and CUSTOMER_PROVIDED), which imported ones pass.
    origins: Vec<String>,
    key_types: Vec<String>,
    /// Whether `keyTypes` was left to AWS's default (which also drops nameless certificates).
    default_key_types: bool,
    key_usages: Vec<String>,
    extended_key_usages: Vec<String>,
    export_option: Option<String>,
    managed_by: Option<String>,
    descending: bool,
    max_items: usize,
}

impl Listing {
    /// What a NextToken is bound to: the filters and the order, so a token from one listing
    /// cannot be replayed on another.
    fn scope(&self) -> String {
        let sorted = |v: &[String]| {
            v.iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "ListCertificates|{}|{}|{}|{}|{}|{:?}|{:?}|{}",
            sorted(&self.statuses),
            sorted(&self.origins),
            sorted(&self.key_types),
            sorted(&self.key_usages),
            sorted(&self.extended_key_usages),
            self.export_option,
            self.managed_by,
            self.descending
        )
    }

    fn matches(&self, record: &CertificateRecord, now_ms: i64) -> bool {
        let any_of = |wanted: &[String], have: &[&str]| {
            wanted.is_empty() || wanted.iter().any(|w| have.contains(&w.as_str()))
        };
        let usages: Vec<&str> = record
            .details
            .key_usages
            .iter()
            .map(String::as_str)
            .collect();
        let extended: Vec<&str> = if record.details.extended_key_usages.is_empty() {
            vec!["NONE"]
        } else {
            record
                .details
                .extended_key_usages
                .iter()
                .map(|(name, _)| name.as_str())
                .collect()
        };
        (self.statuses.is_empty() || self.statuses.iter().any(|s| s == status(record, now_ms)))
            && (self.origins.is_empty() || self.origins.iter().any(|o| o == KEY_PAIR_ORIGIN))
            && self.key_types.contains(&record.details.key_algorithm)
            && !(self.default_key_types && record.details.domain_name.is_empty())
            && any_of(&self.key_usages, &usages)
            // Imported certificates cannot be exported, and no AWS service manages them.
            && self.export_option.as_deref().is_none_or(|o| o == "DISABLED")
            && self.managed_by.is_none()
            && any_of(&self.extended_key_usages, &extended)
    }
}

fn listing(input: ListInput) -> Result<(Listing, Option<String>)> {
    let mut p = Problems::default();
    let statuses = input.certificate_statuses.unwrap_or_default();
    check_enum_list(&mut p, "certificateStatuses", &statuses, &STATUSES);
    let origins = input.certificate_key_pair_origins.unwrap_or_default();
    check_enum_list(
        &mut p,
        "certificateKeyPairOrigins",
        &origins,
        &KEY_PAIR_ORIGINS,
    );
    let includes = input.includes.unwrap_or_default();
    let default_key_types = includes.key_types.as_ref().is_none_or(Vec::is_empty);
    let key_types = match includes.key_types {
        Some(types) if !types.is_empty() => types,
        _ => DEFAULT_KEY_TYPES.iter().map(|s| s.to_string()).collect(),
    };
    check_enum_list(&mut p, "includes.keyTypes", &key_types, &KEY_ALGORITHMS);
    let key_usages = includes.key_usage.unwrap_or_default();
    check_enum_list(&mut p, "includes.keyUsage", &key_usages, &KEY_USAGES);
    let extended_key_usages = includes.extended_key_usage.unwrap_or_default();
    check_enum_list(
        &mut p,
        "includes.extendedKeyUsage",
        &extended_key_usages,
        &EXTENDED_KEY_USAGES,
    );
    if let Some(option) = &includes.export_option {
        check_enum(
            &mut p,
            "includes.exportOption",
            option,
            &["ENABLED", "DISABLED"],
        );
    }
    if let Some(managed_by) = &includes.managed_by {
        check_enum(&mut p, "includes.managedBy", managed_by, &["CLOUDFRONT"]);
    }
    if let Some(n) = input.max_items {
        if n < 1 {
            p.constraint(
                &quote(&n.to_string()),
                "maxItems",
                "Member must have value greater than or equal to 1",
            );
        } else if n > 1000 {
            p.constraint(
                &quote(&n.to_string()),
                "maxItems",
                "Member must have value less than or equal to 1000",
            );
        }
    }
    if let Some(token) = &input.next_token {
        check_length(
            &mut p,
            &quote(token),
            "nextToken",
            token.chars().count(),
            1,
            10_000,
        );
    }
    if let Some(sort_by) = &input.sort_by {
        check_enum(&mut p, "sortBy", sort_by, &["CREATED_AT"]);
    }
    if let Some(order) = &input.sort_order {
        check_enum(&mut p, "sortOrder", order, &["ASCENDING", "DESCENDING"]);
    }
    p.into_result()?;
    if input.sort_by.is_some() != input.sort_order.is_some() {
        // The model: "If you specify SortBy, you must also specify SortOrder" (and the reverse).
        return Err(AcmError::Validation(
            "SortBy and SortOrder must be specified together.".to_string(), // guessed
        ));
    }
    let listing = Listing {
        statuses,
        origins,
        key_types,
        default_key_types,
        key_usages,
        extended_key_usages,
        export_option: includes.export_option,
        managed_by: includes.managed_by,
        descending: input.sort_order.as_deref() == Some("DESCENDING"),
        max_items: input.max_items.map_or(1000, |n| n as usize),
    };
    Ok((listing, input.next_token))
}

/// Where a certificate sits in ListCertificates' order: creation time, then id. Fixed-width so
/// positions compare as strings.
fn position(record: &CertificateRecord) -> String {
    format!("{:020}|{}", record.created_at_ms.max(0), record.id)
}

pub async fn list_certificates(ctx: &Arc<AcmContext>, input: Value) -> Result<Value> {
    let (listing, token) = listing(parse(input)?)?;
    let scope = listing.scope();
    let after = token
        .map(|t| {
            ctx.tokens.decode(&scope, &t).map_err(|_| {
                AcmError::InvalidArgs("The NextToken is not valid for this request.".to_string())
                // guessed
            })
        })
        .transpose()?;
    let now = ctx.now_ms();
    let usage = ctx.usage().await?;
    let mut records: Vec<CertificateRecord> = ctx
        .certificates()
        .await?
        .into_iter()
        .map(|(record, _)| record)
        .filter(|record| listing.matches(record, now))
        .collect();
    records.sort_by_key(position);
    if listing.descending {
        records.reverse();
    }
    if let Some(after) = &after {
        records.retain(|r| {
            if listing.descending {
                position(r) < *after
            } else {
                position(r) > *after
            }
        });
    }
    let next = (records.len() > listing.max_items).then(|| {
        records.truncate(listing.max_items);
        records
            .last()
            .map(|last| ctx.tokens.encode(&scope, &position(last)))
    });
    let summaries: Vec<Value> = records
        .iter()
        .map(|r| summary(r, usage.contains_key(&r.arn), now))
        .collect();
    let mut out = json!({ "CertificateSummaryList": summaries });
    if let Some(Some(next)) = next {
        out["NextToken"] = json!(next);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_checked_against_the_model_pattern() {
        let mut p = Problems::default();
        check_arn(
            &mut p,
            "certificateArn",
            "arn:aws:acm:us-east-1:123456789012:certificate/1234",
        );
        assert!(p.into_result().is_ok());
        let mut p = Problems::default();
        check_arn(&mut p, "certificateArn", "not-an-arn");
        let err = p.into_result().unwrap_err().to_string();
        assert!(err.starts_with("2 validation errors detected"), "{err}");
        assert!(err.contains("length greater than or equal to 20"), "{err}");
        assert!(err.contains("regular expression pattern"), "{err}");
    }

    #[test]
    fn tags_follow_the_model_limits() {
        let tag = |k: &str, v: Option<&str>| TagInput {
            key: Some(k.to_string()),
            value: v.map(str::to_string),
        };
        let mut p = Problems::default();
        let got = check_tags(
            &mut p,
            "tags",
            &[tag("env", Some("prod")), tag("team", None)],
        );
        assert!(p.into_result().is_ok());
        assert_eq!(
            got,
            [
                ("env".to_string(), Some("prod".to_string())),
                ("team".to_string(), None)
            ]
        );
        let mut p = Problems::default();
        let long_key = "k".repeat(129);
        let long_value = "v".repeat(257);
        check_tags(
            &mut p,
            "tags",
            &[
                tag(&long_key, None),
                tag("ok", Some(&long_value)),
                tag("bad*", None),
            ],
        );
        let err = p.into_result().unwrap_err().to_string();
        assert!(err.starts_with("3 validation errors detected"), "{err}");
        assert!(err.contains("'tags.1.member.key'"), "{err}");
        assert!(err.contains("'tags.2.member.value'"), "{err}");
        assert!(err.contains("'tags.3.member.key'"), "{err}");
        let too_many: Vec<TagInput> = (0..51).map(|i| tag(&format!("k{i}"), None)).collect();
        let mut p = Problems::default();
        check_tags(&mut p, "tags", &too_many);
        assert!(p.into_result().is_err());
        assert!(matches!(
            check_reserved(&[("aws:x".to_string(), None)]),
            Err(AcmError::InvalidTag(_))
        ));
        assert!(check_reserved(&[("x:aws".to_string(), None)]).is_ok());
    }

    #[test]
    fn merging_tags_overwrites_values_and_keeps_order() {
        let mut tags = vec![("a".to_string(), "1".to_string())];
        merge_tags(
            &mut tags,
            vec![
                ("b".to_string(), Some("2".to_string())),
                ("a".to_string(), Some("3".to_string())),
            ],
        );
        assert_eq!(
            tags,
            [
                ("a".to_string(), "3".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn listing_defaults_to_aws_key_types_and_checks_enums() {
        let input = |v: Value| parse::<ListInput>(v).unwrap();
        let (l, _) = listing(input(json!({}))).unwrap();
        assert_eq!(l.key_types, ["RSA_1024", "RSA_2048"]);
        assert!(l.default_key_types);
        assert_eq!(l.max_items, 1000);
        let (l, _) = listing(input(json!({"Includes": {"keyTypes": ["EC_prime256v1"]}}))).unwrap();
        assert_eq!(l.key_types, ["EC_prime256v1"]);
        assert!(!l.default_key_types);
        let err = listing(input(
            json!({"CertificateStatuses": ["NOPE"], "MaxItems": 0}),
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("2 validation errors detected"), "{err}");
        assert!(err.contains("'certificateStatuses'"), "{err}");
        assert!(listing(input(json!({"SortBy": "CREATED_AT"}))).is_err());
    }
}
