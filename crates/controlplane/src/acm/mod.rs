//! AWS Certificate Manager (`acm`, JSON 1.1 `CertificateManager`): the certificates HTTPS and
//! TLS listeners serve. Only imported certificates exist: ImportCertificate (new, or re-import
//! into an existing ARN), DescribeCertificate, ListCertificates, GetCertificate,
//! DeleteCertificate and the three tag operations. RequestCertificate (an Amazon-issued,
//! domain-validated certificate) is not served.
//!
//! - `api`: the operations (input validation, output shapes);
//! - `import`: checking and reading an imported certificate, key and chain;
//! - `records`: the stored record, shared with ELBv2;
//! - `error`: the one error enum and its mapping to AWS error codes.
//!
//! Store layout:
//!
//! ```text
//! acm/certificate/<uuid>      records::CertificateRecord (JSON): the certificate, chain and
//!                             private key PEM (unencrypted), what DescribeCertificate reports,
//!                             tags
//! ```
//!
//! ACM reads, and never writes, ELBv2's listeners (`elbv2/listener/<lb id>/<listener id>`) to
//! answer `InUseBy`: it takes `loadBalancerArn` and `certificates` from them as plain JSON so
//! it does not depend on ELBv2's private types.
//!
//! Writes are compare-and-swap transactions on the revision of the certificate read, so a
//! re-import, a tag change and a delete of one certificate cannot both win. ELBv2, when a
//! listener starts using a certificate (CreateListener, ModifyListener,
//! AddListenerCertificates), re-puts the record unchanged, compared on the revision it read:
//! so a DeleteCertificate that found the certificate unused fails its compare instead of
//! deleting a certificate just taken into use.

mod api;
mod error;
mod import;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use model::elb::keys::LISTENER_PREFIX;
use protocol::pagination::TokenCodec;
use serde_json::Value;
use store::clock::Clock;
use store::{Compare, CompareOp, CompareTarget, Op, Store, Txn};
use tracing::warn;

pub use self::error::AcmError;
use self::error::Result;
use self::records::{certificate_key, CertificateRecord, CERTIFICATE_PREFIX};

/// The `X-Amz-Target` prefix of ACM operations.
pub const TARGET_PREFIX: &str = "CertificateManager";
/// The SigV4 signing name (and credential-scope service) clients use.
pub const SIGNING_NAME: &str = "acm";

/// Compare-and-swap attempts before a write gives up with `ConflictException`.
const MAX_ATTEMPTS: usize = 16;

/// Everything ACM's handlers need.
pub struct AcmContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub account_id: String,
    tokens: TokenCodec,
}

impl AcmContext {
    /// `token_key` keys ListCertificates' `NextToken`s.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        region: &str,
        account_id: &str,
        token_key: &[u8],
    ) -> AcmContext {
        AcmContext {
            store,
            clock,
            region: region.to_string(),
            account_id: account_id.to_string(),
            tokens: TokenCodec::new(token_key),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// `arn:aws:acm:<region>:<account>:certificate/<id>`.
    fn arn(&self, id: &str) -> String {
        format!(
            "arn:aws:acm:{}:{}:certificate/{id}",
            self.region, self.account_id
        )
    }

    fn not_found(&self, arn: &str) -> AcmError {
        // AWS's text, as DescribeCertificate and its waiter report it.
        AcmError::ResourceNotFound(format!(
            "Could not find certificate {arn} in account {}.",
            self.account_id
        ))
    }

    /// The certificate an ARN (already checked against the shape's pattern) names, with its
    /// mod revision.
    async fn certificate(&self, arn: &str) -> Result<(CertificateRecord, i64)> {
        let id = self.certificate_id(arn)?;
        let Some(kv) = self.store.get(&certificate_key(id)).await? else {
            return Err(self.not_found(arn));
        };
        let record: CertificateRecord = serde_json::from_slice(&kv.value).map_err(|e| {
            AcmError::Internal(format!("certificate record {arn} does not decode: {e}"))
        })?;
        if record.arn != arn {
            return Err(self.not_found(arn));
        }
        Ok((record, kv.mod_revision))
    }

    /// The id of a certificate ARN of this region and account. A well-formed certificate ARN
    /// of another region or account names nothing here (not found); anything else that
    /// passed the shape's pattern is not a certificate ARN at all.
    fn certificate_id<'a>(&self, arn: &'a str) -> Result<&'a str> {
        if let Some(id) = records::certificate_id(arn, &self.region, &self.account_id) {
            return Ok(id);
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let is_certificate = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "acm"
            && parts[5]
                .strip_prefix("certificate/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        if is_certificate {
            Err(self.not_found(arn))
        } else {
            Err(AcmError::InvalidArn(format!(
                "The ARN {arn} is not a valid ACM certificate ARN." // guessed
            )))
        }
    }

    /// Every certificate, in key order, with mod revisions; unreadable records are skipped
    /// with a warning.
    async fn certificates(&self) -> Result<Vec<(CertificateRecord, i64)>> {
        let response = self
            .store
            .range(CERTIFICATE_PREFIX, Default::default())
            .await?;
        Ok(response
            .kvs
            .into_iter()
            .filter_map(|kv| match serde_json::from_slice(&kv.value) {
                Ok(record) => Some((record, kv.mod_revision)),
                Err(e) => {
                    warn!(key = kv.key, error = %e, "unreadable acm record ignored");
                    None
                }
            })
            .collect())
    }

    /// Certificate ARN → the load balancers whose listeners use it.
    async fn usage(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let response = self
            .store
            .range(LISTENER_PREFIX, Default::default())
            .await?;
        let listeners: Vec<Value> = response
            .kvs
            .iter()
            .filter_map(|kv| match serde_json::from_slice(&kv.value) {
                Ok(value) => Some(value),
                Err(e) => {
                    warn!(key = kv.key, error = %e, "unreadable listener record ignored");
                    None
                }
            })
            .collect();
        Ok(usage(&listeners))
    }

    /// `InUseBy` of one certificate: load balancer ARNs, sorted, without duplicates.
    async fn in_use_by(&self, arn: &str) -> Result<Vec<String>> {
        Ok(self
            .usage()
            .await?
            .remove(arn)
            .map(|lbs| lbs.into_iter().collect())
            .unwrap_or_default())
    }

    /// Put `record` if its key is still at `revision` (0: absent); `false` when another
    /// writer got there first.
    async fn put_if(&self, record: &CertificateRecord, revision: i64) -> Result<bool> {
        let value = serde_json::to_vec(record)
            .map_err(|e| AcmError::Internal(format!("certificate record does not encode: {e}")))?;
        self.txn_if(
            &certificate_key(&record.id),
            revision,
            Op::Put {
                key: certificate_key(&record.id),
                value: Bytes::from(value),
                lease: None,
            },
        )
        .await
    }

    async fn delete_if(&self, id: &str, revision: i64) -> Result<bool> {
        self.txn_if(
            &certificate_key(id),
            revision,
            Op::Delete {
                key: certificate_key(id),
            },
        )
        .await
    }

    async fn txn_if(&self, key: &str, revision: i64, op: Op) -> Result<bool> {
        let response = self
            .store
            .txn(Txn {
                compares: vec![Compare {
                    key: key.to_string(),
                    target: CompareTarget::ModRevision(revision),
                    op: CompareOp::Equal,
                }],
                success: vec![op],
                failure: vec![],
            })
            .await?;
        Ok(response.succeeded)
    }
}

/// Which load balancers use which certificates, from listener records read as plain JSON:
/// `{"loadBalancerArn": "...", "certificates": ["<certificate arn>", ...],
/// "additionalCertificates": [...]}` (the default certificate, then those
/// AddListenerCertificates added).
fn usage(listeners: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for listener in listeners {
        let Some(lb) = listener.get("loadBalancerArn").and_then(Value::as_str) else {
            continue;
        };
        let certificates = ["certificates", "additionalCertificates"]
            .into_iter()
            .filter_map(|field| listener.get(field).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str);
        for certificate in certificates {
            out.entry(certificate.to_string())
                .or_default()
                .insert(lb.to_string());
        }
    }
    out
}

fn conflict() -> AcmError {
    AcmError::Conflict(
        "The certificate is being modified by another request. Try again.".to_string(), // guessed
    )
}

/// Run one operation; `None` when `operation` is not one ACM serves here (RequestCertificate
/// and the rest are then answered as unknown operations).
pub async fn dispatch(
    ctx: &Arc<AcmContext>,
    operation: &str,
    input: Value,
) -> Option<std::result::Result<Value, AcmError>> {
    let result = match operation {
        "ImportCertificate" => api::import_certificate(ctx, input).await,
        "DescribeCertificate" => api::describe_certificate(ctx, input).await,
        "ListCertificates" => api::list_certificates(ctx, input).await,
        "GetCertificate" => api::get_certificate(ctx, input).await,
        "DeleteCertificate" => api::delete_certificate(ctx, input).await,
        "AddTagsToCertificate" => api::add_tags(ctx, input).await,
        "RemoveTagsFromCertificate" => api::remove_tags(ctx, input).await,
        "ListTagsForCertificate" => api::list_tags(ctx, input).await,
        _ => return None,
    };
    if let Err(error) = &result {
        tracing::debug!(operation, %error, "acm request refused");
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn in_use_is_read_from_listener_json_deduplicated_and_sorted() {
        let cert = "arn:aws:acm:us-east-1:123456789012:certificate/a";
        let other = "arn:aws:acm:us-east-1:123456789012:certificate/b";
        let listeners = vec![
            json!({"loadBalancerArn": "lb/2", "certificates": [cert], "port": 443}),
            json!({"loadBalancerArn": "lb/1", "certificates": [other, cert]}),
            json!({"loadBalancerArn": "lb/2", "certificates": [cert]}),
            json!({"loadBalancerArn": "lb/3", "certificates": [], "additionalCertificates": [other]}),
            json!({"loadBalancerArn": "lb/4"}),
            json!({"certificates": [cert]}),
        ];
        let usage = usage(&listeners);
        assert_eq!(
            usage[cert].iter().collect::<Vec<_>>(),
            [&"lb/1".to_string(), &"lb/2".to_string()]
        );
        assert_eq!(usage[other].len(), 2);
        assert_eq!(usage.len(), 2);
    }

    fn ctx() -> AcmContext {
        let clock: Arc<dyn Clock> = Arc::new(store::clock::ManualClock::new(0));
        AcmContext::new(
            Arc::new(store::MemoryStore::new(clock.clone())),
            clock,
            "us-east-1",
            "123456789012",
            b"key",
        )
    }

    #[test]
    fn arns_of_elsewhere_are_not_found_and_others_are_invalid() {
        let ctx = ctx();
        assert_eq!(
            ctx.certificate_id("arn:aws:acm:us-east-1:123456789012:certificate/abc")
                .unwrap(),
            "abc"
        );
        let elsewhere = ctx
            .certificate_id("arn:aws:acm:eu-west-1:123456789012:certificate/abc")
            .unwrap_err();
        assert!(matches!(elsewhere, AcmError::ResourceNotFound(_)));
        assert!(elsewhere.to_string().contains("in account 123456789012."));
        let not_a_certificate = ctx
            .certificate_id("arn:aws:acm:us-east-1:123456789012:thing/abc")
            .unwrap_err();
        assert!(matches!(not_a_certificate, AcmError::InvalidArn(_)));
    }
}
