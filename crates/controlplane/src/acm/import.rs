//! Reading what ImportCertificate is given: the certificate, its private key and the optional
//! chain, all PEM. Checks them the way ACM does (one certificate, X.509 v3, valid now, an
//! unencrypted key of a supported type that belongs to the certificate, a chain that contains
//! the issuer or else a self-signed certificate) and extracts what DescribeCertificate reports.
//!
//! Pure: the current time is an argument. The key is parsed with rustls' ring provider, the
//! same code that later serves it, so a key accepted here is one the data plane can use.

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::PrivateKeyDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name, X509Version};

use super::error::AcmError;
use super::records::CertificateDetails;

fn invalid(message: impl Into<String>) -> AcmError {
    AcmError::Validation(message.into())
}

// AWS's text, as its knowledge-centre article on import errors quotes it.
const MORE_THAN_ONE: &str = "The certificate field contains more than one certificate. You can specify only one certificate in this field.";
// AWS's text (seen in ValidationException answers), without the key-size list older ACM added.
const KEY_NOT_SUPPORTED: &str = "The private key is not supported.";
// AWS's text, as users report it for a CA-signed certificate imported without its chain.
const NOT_SELF_SIGNED: &str = "Provided certificate is not a valid self signed. Please provide either a valid self-signed certificate or certificate chain.";

fn unparsable_certificate() -> AcmError {
    // guessed: the knowledge-centre article paraphrases this one.
    invalid("Unable to parse certificate. Please ensure the certificate is in PEM format.")
}

fn unparsable_chain() -> AcmError {
    // guessed
    invalid("The certificate chain provided is not in a valid PEM format.")
}

/// Check and read an import at `now_ms`.
pub fn read(
    certificate: &[u8],
    private_key: &[u8],
    chain: Option<&[u8]>,
    now_ms: i64,
) -> Result<CertificateDetails, AcmError> {
    let der = single_certificate(certificate)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| unparsable_certificate())?;
    if cert.version() != X509Version::V3 {
        // guessed
        return Err(invalid(
            "The certificate is not an X.509 version 3 certificate; ACM imports only version 3.",
        ));
    }
    if cert.issuer().as_raw().is_empty() || cert.issuer().iter_attributes().next().is_none() {
        return Err(invalid("The certificate's Issuer field is empty.")); // guessed
    }
    let not_before_ms = cert.validity().not_before.timestamp().saturating_mul(1000);
    let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
    if now_ms < not_before_ms {
        // guessed
        return Err(invalid(format!(
            "The certificate is not valid yet: its validity period starts at {}.",
            protocol::shape::format_iso8601(not_before_ms as f64 / 1000.0)
        )));
    }
    if now_ms >= not_after_ms {
        // guessed
        return Err(invalid(format!(
            "The certificate has expired: its validity period ended at {}.",
            protocol::shape::format_iso8601(not_after_ms as f64 / 1000.0)
        )));
    }

    let (key_der, key_pem) = read_private_key(private_key)?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|_| invalid(KEY_NOT_SUPPORTED))?;
    let key_spki = signing_key
        .public_key()
        .ok_or_else(|| invalid(KEY_NOT_SUPPORTED))?;
    if !same_public_key(key_spki.as_ref(), cert.public_key()) {
        // guessed
        return Err(invalid(
            "The private key does not match the public key in the certificate.",
        ));
    }
    let key_algorithm =
        key_algorithm(cert.public_key()).ok_or_else(|| invalid(KEY_NOT_SUPPORTED))?;

    let chain = match chain {
        Some(chain) => read_chain(chain)?,
        None => Vec::new(),
    };
    if chain.is_empty() {
        // Without a chain the certificate must vouch for itself.
        if cert.issuer().as_raw() != cert.subject().as_raw() {
            return Err(invalid(NOT_SELF_SIGNED));
        }
    } else {
        let issuer_present = chain.iter().any(|der| {
            X509Certificate::from_der(der)
                .is_ok_and(|(_, c)| c.subject().as_raw() == cert.issuer().as_raw())
        });
        if !issuer_present {
            // guessed
            return Err(invalid(
                "The certificate chain does not contain the certificate's issuer: the issuer must be the subject of one of the certificates in the chain.",
            ));
        }
    }

    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let dns_names = dns_names(&cert);
    let domain_name = common_name
        .clone()
        .or_else(|| dns_names.first().cloned())
        .unwrap_or_default();
    let subject_alternative_names = if dns_names.is_empty() {
        common_name.into_iter().collect()
    } else {
        dns_names
    };
    let (key_usages, extended_key_usages) = usages(&cert);

    Ok(CertificateDetails {
        domain_name,
        subject_alternative_names,
        serial: serial(cert.raw_serial()),
        subject: rfc4514(cert.subject()),
        issuer: issuer_name(cert.issuer()),
        not_before_ms,
        not_after_ms,
        key_algorithm: key_algorithm.to_string(),
        signature_algorithm: signature_algorithm(
            &cert.signature_algorithm.algorithm.to_id_string(),
        ),
        key_usages,
        extended_key_usages,
        certificate_pem: pem("CERTIFICATE", &der),
        chain_pem: chain
            .iter()
            .map(|der| pem("CERTIFICATE", der))
            .collect::<Vec<_>>()
            .concat(),
        private_key_pem: key_pem,
    })
}

/// Every PEM section of `text`, or None when a section is malformed.
fn sections(text: &[u8]) -> Option<Vec<(SectionKind, Vec<u8>)>> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// The DER of the one certificate in the Certificate field.
fn single_certificate(text: &[u8]) -> Result<Vec<u8>, AcmError> {
    let sections = sections(text).ok_or_else(unparsable_certificate)?;
    let mut certificates = sections
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| der);
    let first = certificates.next().ok_or_else(unparsable_certificate)?;
    if certificates.next().is_some() {
        return Err(invalid(MORE_THAN_ONE));
    }
    Ok(first)
}

/// The DER of every certificate in the chain, which must hold certificates and nothing else.
fn read_chain(text: &[u8]) -> Result<Vec<Vec<u8>>, AcmError> {
    let sections = sections(text).ok_or_else(unparsable_chain)?;
    if sections.is_empty() || sections.iter().any(|(k, _)| *k != SectionKind::Certificate) {
        return Err(unparsable_chain());
    }
    let chain: Vec<Vec<u8>> = sections.into_iter().map(|(_, der)| der).collect();
    if chain
        .iter()
        .any(|der| X509Certificate::from_der(der).is_err())
    {
        return Err(unparsable_chain());
    }
    Ok(chain)
}

/// The key (PKCS#8, PKCS#1 RSA or SEC1 EC) and its PEM as stored.
fn read_private_key(text: &[u8]) -> Result<(PrivateKeyDer<'static>, String), AcmError> {
    // Both encrypted forms: PKCS#8 `ENCRYPTED PRIVATE KEY`, and OpenSSL's legacy PEM headers.
    let encrypted = String::from_utf8_lossy(text);
    if encrypted.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || encrypted.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(invalid("The private key must not be encrypted.")); // guessed
    }
    let key = PrivateKeyDer::from_pem_slice(text).map_err(|_| invalid(KEY_NOT_SUPPORTED))?;
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let pem = pem(label, key.secret_der());
    Ok((key, pem))
}

/// Whether `key_spki` (what rustls derives from the private key) is the certificate's key:
/// same algorithm and same key bits. The algorithm parameters are not compared byte for byte,
/// since encoders differ on an absent versus a NULL RSA parameter.
fn same_public_key(key_spki: &[u8], cert_spki: &SubjectPublicKeyInfo<'_>) -> bool {
    match SubjectPublicKeyInfo::from_der(key_spki) {
        Ok((_, key)) => {
            key.algorithm.algorithm == cert_spki.algorithm.algorithm
                && key.subject_public_key.data == cert_spki.subject_public_key.data
        }
        Err(_) => false,
    }
}

/// ACM's name for the certificate's key, or None when ACM does not support it.
fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Option<&'static str> {
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => match rsa_bits(rsa.modulus) {
            1024 => Some("RSA_1024"),
            2048 => Some("RSA_2048"),
            3072 => Some("RSA_3072"),
            4096 => Some("RSA_4096"),
            _ => None,
        },
        PublicKey::EC(_) => {
            let parameters = spki.algorithm.parameters.as_ref()?;
            let curve = x509_parser::der_parser::oid::Oid::try_from(parameters).ok()?;
            match curve.to_id_string().as_str() {
                "1.2.840.10045.3.1.7" => Some("EC_prime256v1"),
                "1.3.132.0.34" => Some("EC_secp384r1"),
                "1.3.132.0.35" => Some("EC_secp521r1"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The bit length of a big-endian modulus (DER may prefix a zero byte to keep it positive).
fn rsa_bits(modulus: &[u8]) -> usize {
    let digits: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(first) => &modulus[first..],
        None => return 0,
    };
    (digits.len() - 1) * 8 + (8 - digits[0].leading_zeros() as usize)
}

/// ACM's name for a signature algorithm OID (`SHA256WITHRSA`…); the dotted OID for others.
fn signature_algorithm(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.4" => "MD5WITHRSA",
        "1.2.840.113549.1.1.5" => "SHA1WITHRSA",
        "1.2.840.113549.1.1.11" => "SHA256WITHRSA",
        "1.2.840.113549.1.1.12" => "SHA384WITHRSA",
        "1.2.840.113549.1.1.13" => "SHA512WITHRSA",
        "1.2.840.113549.1.1.10" => "RSASSAPSS", // guessed
        "1.2.840.10045.4.1" => "SHA1WITHECDSA",
        "1.2.840.10045.4.3.2" => "SHA256WITHECDSA",
        "1.2.840.10045.4.3.3" => "SHA384WITHECDSA",
        "1.2.840.10045.4.3.4" => "SHA512WITHECDSA",
        other => return other.to_string(),
    };
    name.to_string()
}

/// `aa:bb:…`, lower-case hex of the serial's DER bytes.
fn serial(raw: &[u8]) -> String {
    raw.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The DNS names of the subject alternative name extension, in certificate order.
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
        .collect()
}

/// The Key Usage names and the Extended Key Usage (name, OID) pairs, in ACM's vocabulary.
fn usages(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<(String, String)>) {
    let mut key_usages = Vec::new();
    if let Ok(Some(ku)) = cert.key_usage() {
        let ku = ku.value;
        let named = [
            (ku.digital_signature(), "DIGITAL_SIGNATURE"),
            (ku.non_repudiation(), "NON_REPUDIATION"),
            (ku.key_encipherment(), "KEY_ENCIPHERMENT"),
            (ku.data_encipherment(), "DATA_ENCIPHERMENT"),
            (ku.key_agreement(), "KEY_AGREEMENT"),
            (ku.key_cert_sign(), "CERTIFICATE_SIGNING"),
            (ku.crl_sign(), "CRL_SIGNING"),
            (ku.encipher_only(), "ENCIPHER_ONLY"),
            (ku.decipher_only(), "DECIPHER_ONLY"),
        ];
        key_usages = named
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| name.to_string())
            .collect();
    }
    let mut extended = Vec::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let eku = eku.value;
        let named = [
            (
                eku.server_auth,
                "TLS_WEB_SERVER_AUTHENTICATION",
                "1.3.6.1.5.5.7.3.1",
            ),
            (
                eku.client_auth,
                "TLS_WEB_CLIENT_AUTHENTICATION",
                "1.3.6.1.5.5.7.3.2",
            ),
            (eku.code_signing, "CODE_SIGNING", "1.3.6.1.5.5.7.3.3"),
            (
                eku.email_protection,
                "EMAIL_PROTECTION",
                "1.3.6.1.5.5.7.3.4",
            ),
            (eku.time_stamping, "TIME_STAMPING", "1.3.6.1.5.5.7.3.8"),
            (eku.ocsp_signing, "OCSP_SIGNING", "1.3.6.1.5.5.7.3.9"),
            (eku.any, "ANY", "2.5.29.37.0"),
        ];
        extended = named
            .iter()
            .filter(|(set, _, _)| *set)
            .map(|(_, name, oid)| (name.to_string(), oid.to_string()))
            .collect();
        for oid in &eku.other {
            let oid = oid.to_id_string();
            let name = match oid.as_str() {
                "1.3.6.1.5.5.7.3.5" => "IPSEC_END_SYSTEM",
                "1.3.6.1.5.5.7.3.6" => "IPSEC_TUNNEL",
                "1.3.6.1.5.5.7.3.7" => "IPSEC_USER",
                _ => "CUSTOM",
            };
            extended.push((name.to_string(), oid));
        }
    }
    (key_usages, extended)
}

/// The short name RFC 4514 (and OpenSSL) use for an attribute type; the dotted OID otherwise.
fn attribute_name(oid: &str) -> String {
    let name = match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "SERIALNUMBER",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        other => return other.to_string(),
    };
    name.to_string()
}

/// A name as an RFC 4514 string: the most specific RDN first (`CN=…,O=…,C=…`), multi-valued
/// RDNs joined with `+`, special characters escaped.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let value = match attr.as_str() {
                        Ok(s) => escape(s),
                        // Other string types (BMPString…): their bytes, as `#hex` per RFC 4514.
                        Err(_) => format!(
                            "#{}",
                            attr.as_slice()
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        ),
                    };
                    format!(
                        "{}={value}",
                        attribute_name(&attr.attr_type().to_id_string())
                    )
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge =
            (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Issuer DescribeCertificate shows: the issuing organisation, as AWS shows "Amazon" for
/// its own certificates; the common name when there is no organisation, else the whole name.
fn issuer_name(name: &X509Name<'_>) -> String {
    name.iter_organization()
        .chain(name.iter_common_name())
        .find_map(|attr| attr.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| rfc4514(name))
}

/// `der` as PEM with `label`, base64 in 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
        KeyUsagePurpose, SerialNumber,
    };

    const NOW_MS: i64 = 1_800_000_000_000;

    fn params(cn: &str, sans: &[&str]) -> CertificateParams {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Wharf Test");
        if !cn.is_empty() {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params
    }

    /// [`read`] of a certificate with its own key and no chain, at `now_ms`.
    fn read_own(
        cert: &rcgen::Certificate,
        key: &KeyPair,
        now_ms: i64,
    ) -> Result<CertificateDetails, AcmError> {
        read(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            None,
            now_ms,
        )
    }

    fn p256() -> KeyPair {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    }

    #[test]
    fn a_self_signed_ecdsa_certificate_is_read_as_acm_describes_it() {
        let key = p256();
        let mut params = params("www.example.com", &["www.example.com", "example.com"]);
        params.serial_number = Some(SerialNumber::from_slice(&[0x0a, 0xbc, 0x01]));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).unwrap();
        let got = read_own(&cert, &key, NOW_MS).unwrap();
        assert_eq!(got.domain_name, "www.example.com");
        assert_eq!(
            got.subject_alternative_names,
            ["www.example.com", "example.com"]
        );
        assert_eq!(got.serial, "0a:bc:01");
        assert_eq!(got.subject, "CN=www.example.com,O=Wharf Test,C=US");
        assert_eq!(got.issuer, "Wharf Test");
        assert_eq!(got.key_algorithm, "EC_prime256v1");
        assert_eq!(got.signature_algorithm, "SHA256WITHECDSA");
        assert_eq!(got.key_usages, ["DIGITAL_SIGNATURE"]);
        assert_eq!(
            got.extended_key_usages,
            [(
                "TLS_WEB_SERVER_AUTHENTICATION".to_string(),
                "1.3.6.1.5.5.7.3.1".to_string()
            )]
        );
        // rcgen's defaults: 1975-01-01 to 4096-01-01.
        assert_eq!(got.not_before_ms, 157_766_400_000);
        assert!(got.not_after_ms > NOW_MS);
        assert_eq!(got.certificate_pem, cert.pem().replace("\r\n", "\n"));
        assert!(got.chain_pem.is_empty());
        assert!(got
            .private_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!format!("{got:?}").contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn names_fall_back_between_common_name_and_dns_names() {
        let key = p256();
        let cert = params("", &["only.example.com", "second.example.com"])
            .self_signed(&key)
            .unwrap();
        let got = read_own(&cert, &key, NOW_MS).unwrap();
        assert_eq!(got.domain_name, "only.example.com");
        let cert = params("cn.example.com", &[]).self_signed(&key).unwrap();
        let got = read_own(&cert, &key, NOW_MS).unwrap();
        assert_eq!(got.domain_name, "cn.example.com");
        assert_eq!(got.subject_alternative_names, ["cn.example.com"]);
    }

    #[test]
    fn p384_keys_and_their_signatures_get_acm_names() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = params("p384.example.com", &[]).self_signed(&key).unwrap();
        let got = read_own(&cert, &key, NOW_MS).unwrap();
        assert_eq!(got.key_algorithm, "EC_secp384r1");
        assert_eq!(got.signature_algorithm, "SHA384WITHECDSA");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let cert = params("a.example.com", &[]).self_signed(&p256()).unwrap();
        let err = read(
            cert.pem().as_bytes(),
            p256().serialize_pem().as_bytes(),
            None,
            NOW_MS,
        )
        .unwrap_err();
        assert!(matches!(err, AcmError::Validation(_)));
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn garbage_and_bundles_are_refused_with_aws_words() {
        let key = p256();
        let cert = params("a.example.com", &[]).self_signed(&key).unwrap();
        let key_pem = key.serialize_pem();
        for garbage in [&b"not a certificate"[..], b"", cert.der().as_ref()] {
            let err = read(garbage, key_pem.as_bytes(), None, NOW_MS).unwrap_err();
            assert!(
                err.to_string().starts_with("Unable to parse certificate"),
                "{err}"
            );
        }
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(read(broken.as_bytes(), key_pem.as_bytes(), None, NOW_MS).is_err());
        let bundle = format!("{}{}", cert.pem(), cert.pem());
        let err = read(bundle.as_bytes(), key_pem.as_bytes(), None, NOW_MS).unwrap_err();
        assert_eq!(err.to_string(), MORE_THAN_ONE);
        let err = read(cert.pem().as_bytes(), b"garbage", None, NOW_MS).unwrap_err();
        assert_eq!(err.to_string(), KEY_NOT_SUPPORTED);
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = read(cert.pem().as_bytes(), encrypted.as_bytes(), None, NOW_MS).unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }

    #[test]
    fn certificates_outside_their_validity_are_refused() {
        let key = p256();
        let mut params = params("a.example.com", &[]);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let err = read_own(&cert, &key, NOW_MS).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        // 2021-01-01 is 1_609_459_200 s: valid one second before, not at that instant.
        assert!(read_own(&cert, &key, 1_609_459_199_000).is_ok());
        let err = read_own(&cert, &key, 1_500_000_000_000).unwrap_err();
        assert!(err.to_string().contains("not valid yet"), "{err}");
    }

    #[test]
    fn a_ca_signed_certificate_needs_a_chain_holding_its_issuer() {
        let ca_key = p256();
        let mut ca_params = params("Wharf Test CA", &[]);
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);
        let key = p256();
        let leaf = params("leaf.example.com", &["leaf.example.com"])
            .signed_by(&key, &issuer)
            .unwrap();
        let key_pem = key.serialize_pem();
        let err = read(leaf.pem().as_bytes(), key_pem.as_bytes(), None, NOW_MS).unwrap_err();
        assert_eq!(err.to_string(), NOT_SELF_SIGNED);
        let got = read(
            leaf.pem().as_bytes(),
            key_pem.as_bytes(),
            Some(ca_cert.pem().as_bytes()),
            NOW_MS,
        )
        .unwrap();
        assert_eq!(got.issuer, "Wharf Test");
        assert_eq!(got.chain_pem, ca_cert.pem().replace("\r\n", "\n"));
        // A chain without the issuer, or with something other than certificates, is refused.
        let other = params("other", &[]).self_signed(&p256()).unwrap();
        let err = read(
            leaf.pem().as_bytes(),
            key_pem.as_bytes(),
            Some(other.pem().as_bytes()),
            NOW_MS,
        )
        .unwrap_err();
        assert!(err.to_string().contains("issuer"), "{err}");
        let err = read(
            leaf.pem().as_bytes(),
            key_pem.as_bytes(),
            Some(key_pem.as_bytes()),
            NOW_MS,
        )
        .unwrap_err();
        assert!(err.to_string().contains("chain"), "{err}");
    }

    #[test]
    fn openssl_key_formats_are_accepted() {
        // PKCS#1 RSA and SEC1 EC keys, as `openssl req -x509` and `openssl ecparam` write
        // them; skipped where openssl is not installed.
        let Some(dir) = openssl_dir() else { return };
        let run = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            // openssl's NotBefore is the second it runs, which may come after this instant.
            + 60_000;
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-out",
            "rsa.pem",
            "-days",
            "2",
            "-subj",
            "/O=Wharf RSA/CN=rsa.example.com",
        ]);
        run(&["rsa", "-in", "rsa.key", "-traditional", "-out", "rsa1.key"]);
        let read_file = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        for key in ["rsa.key", "rsa1.key"] {
            let got = read(&read_file("rsa.pem"), &read_file(key), None, now).unwrap();
            assert_eq!(got.key_algorithm, "RSA_2048");
            assert_eq!(got.signature_algorithm, "SHA256WITHRSA");
            assert_eq!(got.domain_name, "rsa.example.com");
        }
        assert!(String::from_utf8(read_file("rsa1.key"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY"));
        let got = read(&read_file("rsa.pem"), &read_file("rsa1.key"), None, now).unwrap();
        assert!(got
            .private_key_pem
            .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        // ring, which serves the keys, takes RSA from 2048 bits and ECDSA on P-256 and P-384
        // only: RSA_1024 and EC_secp521r1 are refused.
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            "small.key",
            "-out",
            "small.pem",
            "-days",
            "2",
            "-subj",
            "/CN=small.example.com",
        ]);
        let err = read(&read_file("small.pem"), &read_file("small.key"), None, now).unwrap_err();
        assert_eq!(err.to_string(), KEY_NOT_SUPPORTED);
        run(&[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-out",
            "p521.key",
        ]);
        run(&[
            "req",
            "-x509",
            "-key",
            "p521.key",
            "-out",
            "p521.pem",
            "-days",
            "2",
            "-subj",
            "/CN=p521.example.com",
        ]);
        let err = read(&read_file("p521.pem"), &read_file("p521.key"), None, now).unwrap_err();
        assert_eq!(err.to_string(), KEY_NOT_SUPPORTED);
        run(&["ecparam", "-name", "secp384r1", "-genkey", "-out", "ec.key"]);
        run(&[
            "req",
            "-x509",
            "-key",
            "ec.key",
            "-out",
            "ec.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ec.example.com",
        ]);
        let got = read(&read_file("ec.pem"), &read_file("ec.key"), None, now).unwrap();
        assert_eq!(got.key_algorithm, "EC_secp384r1");
        assert!(got
            .private_key_pem
            .starts_with("-----BEGIN EC PRIVATE KEY-----"));
    }

    fn openssl_dir() -> Option<tempfile::TempDir> {
        let found = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        found.then(|| tempfile::tempdir().unwrap())
    }

    #[test]
    fn rsa_sizes_count_bits_not_bytes() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x7f, 0]), 15);
        assert_eq!(rsa_bits(&[0, 0]), 0);
        let mut modulus = vec![0x00, 0xc0];
        modulus.extend(std::iter::repeat_n(0u8, 255));
        assert_eq!(rsa_bits(&modulus), 2048);
    }

    #[test]
    fn names_escape_rfc4514_specials() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("plain"), "plain");
    }
}
