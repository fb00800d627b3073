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

/// An imported certificate: its identity, what it says of itself, and its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    pub arn: String,
    /// The last ARN segment, a UUID.
    pub id: String,
    /// Stored flat beside the other members (one JSON object per record).
    #[serde(flatten)]
    pub details: CertificateDetails,
    pub created_at_ms: i64,
    pub imported_at_ms: i64,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// What an imported certificate says of itself, read once at import (`import::read`), with
/// the PEM the data plane serves; a re-import replaces it whole.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDetails {
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
    /// The Key Usage extension's purposes in ACM's names (`DIGITAL_SIGNATURE`, …); empty when
    /// the certificate has no such extension.
    #[serde(default)]
    pub key_usages: Vec<String>,
    /// The Extended Key Usage extension's purposes: (ACM's name, OID), e.g.
    /// (`TLS_WEB_SERVER_AUTHENTICATION`, `1.3.6.1.5.5.7.3.1`); `CUSTOM` for OIDs ACM does not name.
    #[serde(default)]
    pub extended_key_usages: Vec<(String, String)>,
}

impl std::fmt::Debug for CertificateDetails {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateDetails")
            .field("domain_name", &self.domain_name)
            .field("subject_alternative_names", &self.subject_alternative_names)
            .field("serial", &self.serial)
            .field("not_after_ms", &self.not_after_ms)
            .field("key_algorithm", &self.key_algorithm)
            .field("private_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_private_key() {
        let record = CertificateRecord {
            arn: "arn:aws:acm:us-east-1:123456789012:certificate/x".into(),
            id: "x".into(),
            details: CertificateDetails {
                domain_name: "example.com".into(),
                subject_alternative_names: vec!["example.com".into()],
                serial: "01".into(),
                subject: "CN=example.com".into(),
                issuer: "Example".into(),
                not_before_ms: 0,
                not_after_ms: 1,
                key_algorithm: "EC_prime256v1".into(),
                signature_algorithm: "SHA256WITHECDSA".into(),
                certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
                chain_pem: String::new(),
                private_key_pem: "-----BEGIN PRIVATE KEY-----SECRET".into(),
                key_usages: vec![],
                extended_key_usages: vec![],
            },
            created_at_ms: 0,
            imported_at_ms: 0,
            tags: vec![],
        };
        let shown = format!("{record:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("example.com"), "{shown}");
    }

    #[test]
    fn certificate_ids_come_only_from_this_region_and_account() {
        let arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
        assert_eq!(
            certificate_id(arn, "us-east-1", "123456789012"),
            Some("abc")
        );
        assert_eq!(certificate_id(arn, "eu-west-1", "123456789012"), None);
        assert_eq!(certificate_id(arn, "us-east-1", "000000000000"), None);
    }
}
