//! What ACM stores: one record per certificate under `acm/certificate/<id>`, read by ACM's
//! handlers and by ELBv2 (a listener's certificates must exist, and the route snapshot carries
//! their PEM to the data plane, which terminates TLS with them).

use serde::{Deserialize, Serialize};

/// The prefix every certificate record is stored under.
pub const CERTIFICATE_PREFIX: &str = "acm/certificate/";

/// Store key of the certificate with ARN suffix `id` (`certificate/<id>`).
pub fn certificate_key(id: &str) -> String {
    format!("{CERTIFICATE_PREFIX}{id}")
}

/// The id (the last ARN segment) of a certificate ARN of `region` and `account`, or None when
/// `arn` is not such an ARN.
pub fn certificate_id<'a>(arn: &'a str, region: &str, account: &str) -> Option<&'a str> {
    let rest = arn.strip_prefix("arn:aws:acm:")?;
    let rest = rest.strip_prefix(region)?.strip_prefix(':')?;
    let rest = rest.strip_prefix(account)?.strip_prefix(":certificate/")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// An imported certificate, with what DescribeCertificate reports about it read from the
/// certificate once, at import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    pub arn: String,
    /// The last ARN segment, a UUID.
    pub id: String,
    /// The subject's common name, or the first DNS name when the subject has none.
    pub domain_name: String,
    /// Every DNS name the certificate is valid for (the subject alternative names, or the
    /// common name alone when there are none), as DescribeCertificate lists them.
    pub subject_alternative_names: Vec<String>,
    /// `aa:bb:…`, lower-case hex, as DescribeCertificate shows it.
    pub serial: String,
    /// `CN=…,O=…` (RFC 4514 order as the certificate holds it).
    pub subject: String,
    pub issuer: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// ACM's names: `RSA_2048`, `RSA_3072`, `RSA_4096`, `EC_prime256v1`, `EC_secp384r1`, …
    pub key_algorithm: String,
    /// ACM's names: `SHA256WITHRSA`, `SHA256WITHECDSA`, …
    pub signature_algorithm: String,
    /// The certificate itself, PEM.
    pub certificate_pem: String,
    /// The intermediate chain, PEM (empty when none was imported).
    #[serde(default)]
    pub chain_pem: String,
    /// The private key, PEM, as imported. Only ELBv2's route snapshot reads it (never an
    /// API answer).
    pub private_key_pem: String,
    pub created_at_ms: i64,
    pub imported_at_ms: i64,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}
