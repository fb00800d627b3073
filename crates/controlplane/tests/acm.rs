//! ACM through `aws-sdk-acm` against an in-process server: importing (new, with a chain, and
//! re-importing into an ARN), what DescribeCertificate and GetCertificate report, the refusals
//! (a key of another certificate, garbage, an expired certificate) that store nothing,
//! ListCertificates' filters (AWS's default key types) and paging, tags and their limits,
//! InUseBy from ELBv2 listener records and DeleteCertificate's ResourceInUseException.
//! Certificates are made on the fly with rcgen (ECDSA) and, where installed, openssl (RSA).

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_acm::error::ProvideErrorMetadata;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::{
    CertificateStatus, CertificateType, Filters, KeyAlgorithm, SortBy, SortOrder, Tag,
};
use aws_sdk_acm::Client;
use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair, SerialNumber};
use store::clock::ManualClock;
use store::Store;
use support::{error_code as code, error_message as message, TestServer, ACCOUNT, REGION};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A certificate and its key, PEM.
struct Pair {
    cert: String,
    key: String,
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn params(cn: &str, sans: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Wharf Test");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

fn self_signed(cn: &str, sans: &[&str], key: KeyPair) -> Pair {
    let cert = params(cn, sans).self_signed(&key).unwrap();
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// An RSA 2048 certificate from `openssl req -x509`, or None where openssl is missing.
fn openssl_rsa(cn: &str) -> Option<Pair> {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
            "cert.pem", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={cn}"))
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    Some(Pair {
        cert: std::fs::read_to_string(dir.path().join("cert.pem")).unwrap(),
        key: std::fs::read_to_string(dir.path().join("key.pem")).unwrap(),
    })
}

async fn import(acm: &Client, pair: &Pair) -> String {
    acm.import_certificate()
        .certificate(Blob::new(pair.cert.as_bytes()))
        .private_key(Blob::new(pair.key.as_bytes()))
        .send()
        .await
        .expect("import")
        .certificate_arn()
        .expect("arn")
        .to_string()
}

/// DescribeCertificate of `arn`, which must succeed.
async fn describe(
    acm: &Client,
    arn: &str,
) -> aws_sdk_acm::operation::describe_certificate::DescribeCertificateOutput {
    acm.describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap()
}

/// How many certificate records the store holds.
async fn stored(server: &TestServer) -> usize {
    server
        .store
        .range("acm/certificate/", Default::default())
        .await
        .unwrap()
        .kvs
        .len()
}

fn every_key_type() -> Filters {
    Filters::builder()
        .key_types(KeyAlgorithm::Rsa2048)
        .key_types(KeyAlgorithm::EcPrime256v1)
        .key_types(KeyAlgorithm::EcSecp384r1)
        .build()
}

#[tokio::test]
async fn an_imported_certificate_is_described_from_its_contents() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let key = p256();
    let mut params = params("www.example.com", &["www.example.com", "api.example.com"]);
    params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0xab, 0xcd]));
    params.not_before = rcgen::date_time_ymd(2024, 1, 2);
    params.not_after = rcgen::date_time_ymd(2090, 3, 4);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let pair = Pair {
        cert: params.self_signed(&key).unwrap().pem(),
        key: key.serialize_pem(),
    };
    let before = now_secs() as i64;
    let arn = import(&acm, &pair).await;
    let prefix = format!("arn:aws:acm:{REGION}:{ACCOUNT}:certificate/");
    let id = arn.strip_prefix(&prefix).expect("ACM ARN format");
    assert!(
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4),
        "{arn}"
    );

    let described = describe(&acm, &arn).await;
    let c = described.certificate().unwrap();
    assert_eq!(c.certificate_arn(), Some(arn.as_str()));
    assert_eq!(c.domain_name(), Some("www.example.com"));
    assert_eq!(
        c.subject_alternative_names(),
        ["www.example.com", "api.example.com"]
    );
    assert_eq!(c.serial(), Some("01:ab:cd"));
    assert_eq!(c.subject(), Some("CN=www.example.com,O=Wharf Test"));
    assert_eq!(c.issuer(), Some("Wharf Test"));
    assert_eq!(c.not_before().unwrap().secs(), 1_704_153_600); // 2024-01-02
    assert_eq!(c.not_after().unwrap().secs(), 3_792_268_800); // 2090-03-04
    assert_eq!(c.key_algorithm(), Some(&KeyAlgorithm::EcPrime256v1));
    assert_eq!(c.signature_algorithm(), Some("SHA256WITHECDSA"));
    assert_eq!(c.status(), Some(&CertificateStatus::Issued));
    assert_eq!(c.r#type(), Some(&CertificateType::Imported));
    assert!(c.in_use_by().is_empty());
    assert_eq!(
        c.renewal_eligibility().map(|r| r.as_str()),
        Some("INELIGIBLE")
    );
    let imported_at = c.imported_at().unwrap().secs();
    assert!(imported_at >= before && imported_at <= now_secs() as i64 + 1);
    assert_eq!(c.created_at().unwrap().secs(), imported_at);
    assert_eq!(
        c.extended_key_usages()
            .iter()
            .map(|e| (e.name().unwrap().as_str(), e.oid().unwrap()))
            .collect::<Vec<_>>(),
        [("TLS_WEB_SERVER_AUTHENTICATION", "1.3.6.1.5.5.7.3.1")]
    );
    // The SDK marks the member deprecated (the opt-out is gone); AWS still reports it.
    #[allow(deprecated)]
    let logging = c
        .options()
        .and_then(|o| o.certificate_transparency_logging_preference())
        .map(|p| p.as_str());
    assert_eq!(logging, Some("ENABLED"));

    // The record ELBv2 reads carries the key, and nothing of it leaks into the answers.
    let got = acm
        .get_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.certificate(),
        Some(pair.cert.replace("\r\n", "\n").as_str())
    );
    assert_eq!(got.certificate_chain(), None);
    let raw = server
        .store
        .get(&format!("acm/certificate/{id}"))
        .await
        .unwrap()
        .unwrap();
    let record: controlplane::acm::records::CertificateRecord =
        serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(
        record.details.private_key_pem,
        pair.key.replace("\r\n", "\n")
    );
}

#[tokio::test]
async fn an_rsa_certificate_from_openssl_is_imported() {
    let Some(pair) = openssl_rsa("rsa.example.com") else {
        eprintln!("openssl not installed: RSA import not tested");
        return;
    };
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let arn = import(&acm, &pair).await;
    let c = describe(&acm, &arn).await;
    let c = c.certificate().unwrap();
    assert_eq!(c.key_algorithm(), Some(&KeyAlgorithm::Rsa2048));
    assert_eq!(c.signature_algorithm(), Some("SHA256WITHRSA"));
    assert_eq!(c.domain_name(), Some("rsa.example.com"));
    assert_eq!(c.subject_alternative_names(), ["rsa.example.com"]);
}

#[tokio::test]
async fn a_certificate_imported_with_its_chain_round_trips_through_get_certificate() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut ca_params = params("Wharf Test CA", &[]);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = p256();
    let leaf = params("leaf.example.com", &["leaf.example.com"])
        .signed_by(&key, &issuer)
        .unwrap();

    // Signed by a CA, it needs the chain.
    let err = acm
        .import_certificate()
        .certificate(Blob::new(leaf.pem()))
        .private_key(Blob::new(key.serialize_pem()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(message(&err).contains("not a valid self signed"), "{err:?}");

    let arn = acm
        .import_certificate()
        .certificate(Blob::new(leaf.pem()))
        .private_key(Blob::new(key.serialize_pem()))
        .certificate_chain(Blob::new(ca.pem()))
        .send()
        .await
        .unwrap()
        .certificate_arn()
        .unwrap()
        .to_string();
    let got = acm
        .get_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.certificate(),
        Some(leaf.pem().replace("\r\n", "\n").as_str())
    );
    assert_eq!(
        got.certificate_chain(),
        Some(ca.pem().replace("\r\n", "\n").as_str())
    );
    let c = describe(&acm, &arn).await;
    assert_eq!(
        c.certificate().unwrap().signature_algorithm(),
        Some("SHA384WITHECDSA")
    );
}

#[tokio::test]
async fn reimporting_keeps_the_arn_and_tags_and_replaces_the_details() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let first = self_signed("old.example.com", &["old.example.com"], p256());
    let arn = acm
        .import_certificate()
        .certificate(Blob::new(first.cert.as_bytes()))
        .private_key(Blob::new(first.key.as_bytes()))
        .tags(Tag::builder().key("team").value("web").build().unwrap())
        .send()
        .await
        .unwrap()
        .certificate_arn()
        .unwrap()
        .to_string();
    let created = describe(&acm, &arn)
        .await
        .certificate()
        .unwrap()
        .created_at()
        .cloned();

    let second = self_signed(
        "new.example.com",
        &["new.example.com", "www.new.example.com"],
        p256(),
    );
    let reimported = acm
        .import_certificate()
        .certificate_arn(&arn)
        .certificate(Blob::new(second.cert.as_bytes()))
        .private_key(Blob::new(second.key.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(reimported.certificate_arn(), Some(arn.as_str()));
    let c = describe(&acm, &arn).await;
    let c = c.certificate().unwrap();
    assert_eq!(c.domain_name(), Some("new.example.com"));
    assert_eq!(
        c.subject_alternative_names(),
        ["new.example.com", "www.new.example.com"]
    );
    assert_eq!(c.created_at().cloned(), created);
    let got = acm
        .get_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.certificate(),
        Some(second.cert.replace("\r\n", "\n").as_str())
    );
    let tags = acm
        .list_tags_for_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
    assert_eq!(stored(&server).await, 1);

    // Tags cannot come with a re-import; the ARN must exist; the key type cannot change.
    let err = acm
        .import_certificate()
        .certificate_arn(&arn)
        .certificate(Blob::new(second.cert.as_bytes()))
        .private_key(Blob::new(second.key.as_bytes()))
        .tags(Tag::builder().key("k").build().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    let missing = format!(
        "arn:aws:acm:{REGION}:{ACCOUNT}:certificate/{}",
        uuid::Uuid::new_v4()
    );
    let err = acm
        .import_certificate()
        .certificate_arn(&missing)
        .certificate(Blob::new(second.cert.as_bytes()))
        .private_key(Blob::new(second.key.as_bytes()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ResourceNotFoundException");
    assert_eq!(
        message(&err),
        format!("Could not find certificate {missing}.")
    );
    let p384 = self_signed(
        "p384.example.com",
        &[],
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
    );
    let err = acm
        .import_certificate()
        .certificate_arn(&arn)
        .certificate(Blob::new(p384.cert.as_bytes()))
        .private_key(Blob::new(p384.key.as_bytes()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert_eq!(stored(&server).await, 1);
}

#[tokio::test]
async fn bad_imports_are_validation_errors_and_store_nothing() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let pair = self_signed("a.example.com", &[], p256());
    let other = self_signed("b.example.com", &[], p256());
    let attempts: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        (
            "key of another certificate",
            pair.cert.clone().into(),
            other.key.clone().into(),
            "does not match",
        ),
        (
            "garbage certificate",
            b"this is not PEM".to_vec(),
            pair.key.clone().into(),
            "Unable to parse certificate",
        ),
        (
            "garbage key",
            pair.cert.clone().into(),
            b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".to_vec(),
            "The private key is not supported.",
        ),
        (
            "a bundle",
            format!("{}{}", pair.cert, other.cert).into(),
            pair.key.clone().into(),
            "more than one certificate",
        ),
    ];
    for (what, cert, key, says) in attempts {
        let err = acm
            .import_certificate()
            .certificate(Blob::new(cert))
            .private_key(Blob::new(key))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "ValidationException", "{what}");
        assert!(message(&err).contains(says), "{what}: {}", message(&err));
    }
    // A key over the model's 5120 bytes fails request validation.
    let err = acm
        .import_certificate()
        .certificate(Blob::new(pair.cert.as_bytes()))
        .private_key(Blob::new(vec![b'a'; 5121]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(message(&err).contains("'privateKey'"), "{}", message(&err));
    assert_eq!(stored(&server).await, 0);
    let listed = acm
        .list_certificates()
        .includes(every_key_type())
        .send()
        .await
        .unwrap();
    assert!(listed.certificate_summary_list().is_empty());
}

#[tokio::test]
async fn a_certificate_past_its_not_after_is_expired() {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = Arc::new(ManualClock::new(start));
    let server = support::start_with(clock.clone(), Default::default()).await;
    let acm = support::acm_client(&server).await;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let key = p256();
    let mut short = params("short.example.com", &[]);
    short.not_before = epoch + Duration::from_secs(now_secs() - 3600);
    short.not_after = epoch + Duration::from_secs(now_secs() + 120);
    let pair = Pair {
        cert: short.self_signed(&key).unwrap().pem(),
        key: key.serialize_pem(),
    };
    let arn = import(&acm, &pair).await;
    let status = |acm: Client, arn: String| async move {
        describe(&acm, &arn)
            .await
            .certificate()
            .unwrap()
            .status()
            .cloned()
    };
    assert_eq!(
        status(acm.clone(), arn.clone()).await,
        Some(CertificateStatus::Issued)
    );
    // Five minutes on (within SigV4's clock-skew window): past NotAfter.
    clock.advance(Duration::from_secs(300));
    assert_eq!(
        status(acm.clone(), arn.clone()).await,
        Some(CertificateStatus::Expired)
    );
    let expired = acm
        .list_certificates()
        .certificate_statuses(CertificateStatus::Expired)
        .includes(every_key_type())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.certificate_summary_list().len(), 1);
    let issued = acm
        .list_certificates()
        .certificate_statuses(CertificateStatus::Issued)
        .includes(every_key_type())
        .send()
        .await
        .unwrap();
    assert!(issued.certificate_summary_list().is_empty());

    // ACM refuses to import a certificate that has already expired.
    let err = acm
        .import_certificate()
        .certificate(Blob::new(pair.cert.as_bytes()))
        .private_key(Blob::new(pair.key.as_bytes()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(message(&err).contains("expired"), "{}", message(&err));
    assert_eq!(stored(&server).await, 1);
}

#[tokio::test]
async fn list_certificates_filters_by_key_type_the_aws_way_and_pages() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let mut ec = Vec::new();
    for i in 0..3 {
        let name = format!("ec{i}.example.com");
        ec.push(import(&acm, &self_signed(&name, &[&name], p256())).await);
    }
    let p384 = import(
        &acm,
        &self_signed(
            "p384.example.com",
            &[],
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        ),
    )
    .await;
    let rsa = match openssl_rsa("rsa.example.com") {
        Some(pair) => Some(import(&acm, &pair).await),
        None => None,
    };

    // No keyTypes: AWS's default, RSA_1024 and RSA_2048 only.
    let default = acm.list_certificates().send().await.unwrap();
    let arns: Vec<&str> = default
        .certificate_summary_list()
        .iter()
        .map(|s| s.certificate_arn().unwrap())
        .collect();
    assert_eq!(arns, rsa.iter().map(String::as_str).collect::<Vec<_>>());

    let p256_only = Filters::builder()
        .key_types(KeyAlgorithm::EcPrime256v1)
        .build();
    let listed = acm
        .list_certificates()
        .includes(p256_only.clone())
        .send()
        .await
        .unwrap();
    let summaries = listed.certificate_summary_list();
    assert_eq!(
        summaries
            .iter()
            .map(|s| s.certificate_arn().unwrap())
            .collect::<Vec<_>>(),
        ec.iter().map(String::as_str).collect::<Vec<_>>(),
        "in import order"
    );
    let s = &summaries[0];
    assert_eq!(s.domain_name(), Some("ec0.example.com"));
    assert_eq!(s.subject_alternative_name_summaries(), ["ec0.example.com"]);
    assert_eq!(s.has_additional_subject_alternative_names(), Some(false));
    assert_eq!(s.status(), Some(&CertificateStatus::Issued));
    assert_eq!(s.r#type(), Some(&CertificateType::Imported));
    assert_eq!(s.key_algorithm(), Some(&KeyAlgorithm::EcPrime256v1));
    assert_eq!(s.in_use(), Some(false));
    assert!(s.not_after().is_some() && s.imported_at().is_some());

    let all = Filters::builder()
        .key_types(KeyAlgorithm::EcPrime256v1)
        .key_types(KeyAlgorithm::EcSecp384r1)
        .key_types(KeyAlgorithm::Rsa2048)
        .build();
    let total = 4 + rsa.iter().count();
    // Pages of two, resumed with NextToken.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = acm
            .list_certificates()
            .includes(all.clone())
            .max_items(2)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(page.certificate_summary_list().len() <= 2);
        seen.extend(
            page.certificate_summary_list()
                .iter()
                .map(|s| s.certificate_arn().unwrap().to_string()),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), total);
    assert!(seen.contains(&p384));
    // The SDK's paginator agrees, and a descending sort reverses the order.
    let paginated: Vec<String> = acm
        .list_certificates()
        .includes(all.clone())
        .max_items(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.certificate_arn().unwrap().to_string())
        .collect();
    assert_eq!(paginated, seen);
    let descending = acm
        .list_certificates()
        .includes(all.clone())
        .sort_by(SortBy::CreatedAt)
        .sort_order(SortOrder::Descending)
        .send()
        .await
        .unwrap();
    let mut reversed: Vec<String> = descending
        .certificate_summary_list()
        .iter()
        .map(|s| s.certificate_arn().unwrap().to_string())
        .collect();
    reversed.reverse();
    assert_eq!(reversed, seen);

    // A token belongs to its listing; MaxItems has the model's bounds.
    let first = acm
        .list_certificates()
        .includes(all.clone())
        .max_items(1)
        .send()
        .await
        .unwrap();
    let err = acm
        .list_certificates()
        .includes(p256_only)
        .next_token(first.next_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgsException");
    let err = acm
        .list_certificates()
        .max_items(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(message(&err).contains("'maxItems'"), "{}", message(&err));
    let err = acm
        .list_certificates()
        .sort_by(SortBy::CreatedAt)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
}

#[tokio::test]
async fn tags_are_added_listed_removed_and_limited() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let pair = self_signed("tags.example.com", &[], p256());
    let tag = |k: &str, v: Option<&str>| {
        Tag::builder()
            .key(k)
            .set_value(v.map(str::to_string))
            .build()
            .unwrap()
    };
    let arn = acm
        .import_certificate()
        .certificate(Blob::new(pair.cert.as_bytes()))
        .private_key(Blob::new(pair.key.as_bytes()))
        .tags(tag("env", Some("prod")))
        .send()
        .await
        .unwrap()
        .certificate_arn()
        .unwrap()
        .to_string();
    let list = |acm: Client, arn: String| async move {
        acm.list_tags_for_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().unwrap_or("").to_string()))
            .collect::<Vec<_>>()
    };
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(acm.clone(), arn.clone()).await,
        pairs(&[("env", "prod")])
    );

    acm.add_tags_to_certificate()
        .certificate_arn(&arn)
        .tags(tag("team", Some("web")))
        .tags(tag("env", Some("staging")))
        .tags(tag("flag", None))
        .send()
        .await
        .unwrap();
    assert_eq!(
        list(acm.clone(), arn.clone()).await,
        pairs(&[("env", "staging"), ("team", "web"), ("flag", "")])
    );

    // By key alone any value goes; with a value only a matching one.
    acm.remove_tags_from_certificate()
        .certificate_arn(&arn)
        .tags(tag("flag", None))
        .tags(tag("team", Some("not-web")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        list(acm.clone(), arn.clone()).await,
        pairs(&[("env", "staging"), ("team", "web")])
    );
    acm.remove_tags_from_certificate()
        .certificate_arn(&arn)
        .tags(tag("team", Some("web")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        list(acm.clone(), arn.clone()).await,
        pairs(&[("env", "staging")])
    );

    // The reserved prefix, the model's lengths, and at most 50 tags in all.
    let err = acm
        .add_tags_to_certificate()
        .certificate_arn(&arn)
        .tags(tag("aws:owner", Some("me")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidTagException");
    let err = acm
        .add_tags_to_certificate()
        .certificate_arn(&arn)
        .tags(tag(&"k".repeat(129), None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(
        message(&err).contains("'tags.1.member.key'"),
        "{}",
        message(&err)
    );
    let many = |from: usize, n: usize| -> Vec<Tag> {
        (from..from + n)
            .map(|i| tag(&format!("k{i}"), Some("v")))
            .collect()
    };
    let err = acm
        .add_tags_to_certificate()
        .certificate_arn(&arn)
        .set_tags(Some(many(0, 51)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    acm.add_tags_to_certificate()
        .certificate_arn(&arn)
        .set_tags(Some(many(0, 49)))
        .send()
        .await
        .unwrap();
    let err = acm
        .add_tags_to_certificate()
        .certificate_arn(&arn)
        .set_tags(Some(many(49, 2)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "TooManyTagsException");
    assert_eq!(list(acm.clone(), arn.clone()).await.len(), 50);
}

#[tokio::test]
async fn a_certificate_a_listener_uses_is_in_use_and_cannot_be_deleted() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let arn = import(&acm, &self_signed("web.example.com", &[], p256())).await;
    let unused = import(&acm, &self_signed("spare.example.com", &[], p256())).await;
    let lb = format!(
        "arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/web/50dc6c495c0c9188"
    );
    // A listener record as ELBv2 stores it (ACM reads only the two fields it needs).
    let listener = serde_json::json!({
        "arn": format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"),
        "id": "f2f7dc8efc522ab2",
        "loadBalancerArn": lb,
        "loadBalancerId": "50dc6c495c0c9188",
        "port": 443,
        "protocol": "HTTPS",
        "certificates": [arn],
        "defaultActions": [],
        "defaultRuleId": "0000000000000000",
    });
    let key = "elbv2/listener/50dc6c495c0c9188/f2f7dc8efc522ab2";
    server
        .store
        .put(key, bytes::Bytes::from(listener.to_string()))
        .await
        .unwrap();

    let c = describe(&acm, &arn).await;
    assert_eq!(
        c.certificate().unwrap().in_use_by(),
        std::slice::from_ref(&lb)
    );
    let listed = acm
        .list_certificates()
        .includes(every_key_type())
        .send()
        .await
        .unwrap();
    let in_use: Vec<(String, bool)> = listed
        .certificate_summary_list()
        .iter()
        .map(|s| {
            (
                s.certificate_arn().unwrap().to_string(),
                s.in_use().unwrap(),
            )
        })
        .collect();
    assert!(in_use.contains(&(arn.clone(), true)) && in_use.contains(&(unused.clone(), false)));

    let err = acm
        .delete_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ResourceInUseException");
    assert_eq!(
        message(&err),
        format!("Certificate {arn} in account {ACCOUNT} is in use.")
    );
    assert_eq!(stored(&server).await, 2);

    // Once no listener uses it, it goes; then it is not found.
    server.store.delete(key).await.unwrap();
    acm.delete_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap();
    let err = acm
        .describe_certificate()
        .certificate_arn(&arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ResourceNotFoundException");
    assert_eq!(
        message(&err),
        format!("Could not find certificate {arn} in account {ACCOUNT}.")
    );
    for err in [
        acm.delete_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .code()
            .map(str::to_string),
        acm.get_certificate()
            .certificate_arn(&arn)
            .send()
            .await
            .unwrap_err()
            .into_service_error()
            .code()
            .map(str::to_string),
    ] {
        assert_eq!(err.as_deref(), Some("ResourceNotFoundException"));
    }
    assert_eq!(stored(&server).await, 1);
}

#[tokio::test]
async fn arns_are_checked_and_unserved_operations_are_unknown() {
    let server = support::start().await;
    let acm = support::acm_client(&server).await;
    let err = acm
        .describe_certificate()
        .certificate_arn("not-an-arn")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    assert!(
        message(&err).contains("'certificateArn'"),
        "{}",
        message(&err)
    );
    let err = acm
        .describe_certificate()
        .certificate_arn(format!("arn:aws:acm:{REGION}:{ACCOUNT}:thing/abc"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArnException");
    let err = acm
        .describe_certificate()
        .certificate_arn(format!("arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/abc"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ResourceNotFoundException");

    // RequestCertificate is not served: answered like any unknown operation.
    let err = acm
        .request_certificate()
        .domain_name("www.example.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnknownOperationException");
}
