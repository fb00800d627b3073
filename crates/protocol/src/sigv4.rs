//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) request verification, server side.
//!
//! The `aws-sigv4` crate only signs, so this module rebuilds the canonical request from what the
//! server received and checks the client's HMAC. It supports both ways clients sign:
//! the `Authorization` header, and presigned URLs (`X-Amz-Signature` in the query string).
//!
//! It follows the rules for every service except S3: the URI path is normalized and
//! percent-encoded a second time. It does not do SigV4a (`AWS4-ECDSA-P256-SHA256`), S3's
//! chunked `STREAMING-*` payloads, the legacy `Date` header in place of `X-Amz-Date`, or
//! session-token (STS) validation: `x-amz-security-token` is only covered by the signature
//! when the client signed it. Which region or service a request may be scoped to is the
//! caller's policy: it is reported in [`Identity`], not enforced here.
//!
//! Pure: the caller passes the current time and a secret lookup; nothing here reads the clock,
//! the environment or a store.

use hmac::{Hmac, Mac};
use percent_encoding::percent_decode;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::{AwsError, Request};

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload-hash placeholder a client uses when it does not sign the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far `X-Amz-Date` may be from the server's clock, either way (AWS: 15 minutes).
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;
/// The longest a presigned URL may live (AWS: 7 days).
pub const MAX_PRESIGNED_EXPIRES_SECONDS: i64 = 604_800;

const TERMINATOR: &str = "aws4_request";
const PARAM_ALGORITHM: &str = "X-Amz-Algorithm";
const PARAM_CREDENTIAL: &str = "X-Amz-Credential";
const PARAM_DATE: &str = "X-Amz-Date";
const PARAM_EXPIRES: &str = "X-Amz-Expires";
const PARAM_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const PARAM_SIGNATURE: &str = "X-Amz-Signature";

/// Who signed a request that verified, and the scope they signed it for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub access_key_id: String,
    /// The credential scope's date, `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Signed in the query string (presigned URL) rather than the `Authorization` header.
    pub presigned: bool,
}

/// The parts of `AKID/YYYYMMDD/region/service/aws4_request`, unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

/// How a service reports errors, which decides the error codes auth failures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// AWS JSON 1.0/1.1 (and REST-JSON) services such as ECS.
    Json,
    /// AWS Query services such as STS and IAM.
    Query,
}

/// Why a request was refused. The `Display` text is the message AWS would send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("Request is missing Authentication Token")]
    MissingAuthentication,
    /// The signature is present but malformed or missing parts.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key id is not known.
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    /// Well-formed, but the HMAC does not match (wrong secret, or the request was altered).
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
    )]
    SignatureDoesNotMatch,
    /// The credential scope contradicts the request (date, terminator). AWS reports these as
    /// signature failures with a specific message.
    #[error("{0}")]
    InvalidScope(String),
    /// Outside the clock-skew window, or a presigned URL past its expiry.
    #[error("{0}")]
    Expired(String),
}

impl SigV4Error {
    /// The AWS error a service of the given style returns for this failure.
    ///
    /// Status codes follow what AWS was seen to send: the JSON (Coral) services, ECS among
    /// them, answer every auth failure with 400; Query services (STS, IAM) with 403, except
    /// for a malformed signature (400). Query services report an expired signature as
    /// `SignatureDoesNotMatch` with the "Signature expired" message.
    pub fn to_aws_error(&self, style: ErrorStyle) -> AwsError {
        use SigV4Error::*;
        let (code, status) = match (style, self) {
            (ErrorStyle::Json, MissingAuthentication) => {
                ("MissingAuthenticationTokenException", 400)
            }
            (ErrorStyle::Json, IncompleteSignature(_)) => ("IncompleteSignatureException", 400),
            (ErrorStyle::Json, UnknownAccessKey) => ("UnrecognizedClientException", 400),
            (ErrorStyle::Json, SignatureDoesNotMatch | InvalidScope(_) | Expired(_)) => {
                ("InvalidSignatureException", 400)
            }
            (ErrorStyle::Query, MissingAuthentication) => ("MissingAuthenticationToken", 403),
            (ErrorStyle::Query, IncompleteSignature(_)) => ("IncompleteSignature", 400),
            (ErrorStyle::Query, UnknownAccessKey) => ("InvalidClientTokenId", 403),
            (ErrorStyle::Query, SignatureDoesNotMatch | InvalidScope(_) | Expired(_)) => {
                ("SignatureDoesNotMatch", 403)
            }
        };
        AwsError::sender(code, self.to_string()).with_status(status)
    }
}

/// The credential scope named by the request (`Authorization` header, else the
/// `X-Amz-Credential` query parameter), without verifying anything. For routing only.
pub fn credential_scope(req: &Request) -> Option<CredentialScope> {
    let credential = match authorization_header(req) {
        Some(value) => header_credential(value)?,
        None => {
            let pairs = parse_query(&req.query);
            let raw = query_param(&pairs, PARAM_CREDENTIAL)?;
            String::from_utf8(raw.to_vec()).ok()?
        }
    };
    let (scope, _terminator) = split_credential(&credential)?;
    Some(scope)
}

/// The service named in the credential scope, without verifying the signature: lets a server
/// that hosts several services route a request before it checks it.
pub fn scope_service(req: &Request) -> Option<String> {
    credential_scope(req).map(|scope| scope.service)
}

/// Verify a SigV4-signed request.
///
/// `now_unix_seconds` is the server's clock; `secret_for` maps an access key id to its secret
/// access key (`None`: unknown key). Checks, in order: the signature is well formed, the
/// credential scope agrees with `X-Amz-Date`, the timestamp is within the skew window (or the
/// presigned URL has not expired), the key is known, and the HMAC matches, compared in
/// constant time.
pub fn verify(
    req: &Request,
    now_unix_seconds: i64,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Identity, SigV4Error> {
    let pairs = parse_query(&req.query);
    let parsed = parse_auth(req, &pairs)?;
    check_time(&parsed, now_unix_seconds)?;

    let secret = secret_for(&parsed.scope.access_key_id).ok_or(SigV4Error::UnknownAccessKey)?;
    let provided = decode_signature(&parsed.signature).ok_or(SigV4Error::SignatureDoesNotMatch)?;

    let payload_hashes = payload_hash_candidates(req, parsed.presigned)?;
    let canonical_query = canonical_query(&pairs, parsed.presigned);
    let signed_names: Vec<String> = parsed
        .signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    let canonical_headers = canonical_headers(req, &signed_names);
    let key = signing_key(
        &secret,
        &parsed.scope.date,
        &parsed.scope.region,
        &parsed.scope.service,
    );
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        parsed.scope.date, parsed.scope.region, parsed.scope.service
    );

    // Clients disagree on how to normalize a path with `.`, `..` or `//` segments (the Rust
    // and Java SDKs follow RFC 3986, botocore and the JS SDK drop a trailing slash after a dot
    // segment, the Go SDK does not normalize at all), and a presigned URL may have been signed
    // over `UNSIGNED-PAYLOAD` (S3 style, and our own convention) or over the empty body's hash
    // (botocore and the Go SDK for non-S3 services). Each candidate is a full HMAC check, so
    // trying a handful costs an attacker nothing but 2^-256 odds per try.
    let mut matched = Choice::from(0u8);
    for uri in canonical_uri_candidates(&req.path) {
        for payload_hash in &payload_hashes {
            let creq = format!(
                "{}\n{}\n{}\n{}\n{}\n{}",
                req.method,
                uri,
                canonical_query,
                canonical_headers,
                parsed.signed_headers,
                payload_hash
            );
            let string_to_sign = format!(
                "{ALGORITHM}\n{}\n{}\n{}",
                parsed.amz_date,
                scope,
                hex::encode(Sha256::digest(creq.as_bytes()))
            );
            let expected = hmac_sha256(&key, string_to_sign.as_bytes());
            matched |= expected.as_slice().ct_eq(provided.as_slice());
        }
    }
    if !bool::from(matched) {
        return Err(SigV4Error::SignatureDoesNotMatch);
    }

    Ok(Identity {
        access_key_id: parsed.scope.access_key_id,
        date: parsed.scope.date,
        region: parsed.scope.region,
        service: parsed.scope.service,
        presigned: parsed.presigned,
    })
}

/// What the signature claims, once it has been found well formed.
struct Parsed {
    presigned: bool,
    scope: CredentialScope,
    /// `X-Amz-Date` as sent, `YYYYMMDDTHHMMSSZ`.
    amz_date: String,
    signed_at: i64,
    /// Verbatim: the canonical request repeats it exactly as the client wrote it.
    signed_headers: String,
    signature: String,
    /// Presigned only: seconds the URL stays valid.
    expires: Option<i64>,
}

fn authorization_header(req: &Request) -> Option<&str> {
    req.header("authorization").filter(|v| !v.trim().is_empty())
}

fn parse_auth(req: &Request, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<Parsed, SigV4Error> {
    let presign_params = [
        PARAM_ALGORITHM,
        PARAM_CREDENTIAL,
        PARAM_SIGNATURE,
        PARAM_SIGNED_HEADERS,
    ];
    let presigned = presign_params
        .iter()
        .any(|p| query_param(pairs, p).is_some());
    match (authorization_header(req), presigned) {
        (None, false) => Err(SigV4Error::MissingAuthentication),
        (Some(_), true) => Err(SigV4Error::IncompleteSignature(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified"
                .to_string(),
        )),
        (Some(value), false) => {
            let authorization_headers = req
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"));
            if authorization_headers.count() > 1 {
                return Err(SigV4Error::IncompleteSignature(
                    "Multiple Authorization headers were sent; exactly one is allowed.".to_string(),
                ));
            }
            parse_header_auth(req, value)
        }
        (None, true) => parse_presigned(pairs),
    }
}

fn parse_header_auth(req: &Request, value: &str) -> Result<Parsed, SigV4Error> {
    let value = value.trim();
    let (algorithm, rest) = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((algorithm, rest)) => (algorithm, rest),
        None => (value, ""),
    };

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    // AWS splits the parameters on commas and on whitespace alike, which is why a stray space
    // inside a credential shows up as a separate "not a valid key=value pair" token.
    for token in rest.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
        if token.is_empty() {
            continue;
        }
        let Some((key, val)) = token.split_once('=') else {
            return Err(SigV4Error::IncompleteSignature(format!(
                "'{token}' not a valid key=value pair (missing equal-sign) in Authorization \
                 header: '{value}'."
            )));
        };
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }

    let amz_date = req.header("x-amz-date").map(str::trim);
    let mut problems = Vec::new();
    if credential.is_none() {
        problems.push("Authorization header requires 'Credential' parameter.");
    }
    if signature.is_none() {
        problems.push("Authorization header requires 'Signature' parameter.");
    }
    if signed_headers.is_none() {
        problems.push("Authorization header requires 'SignedHeaders' parameter.");
    }
    if amz_date.is_none() {
        // AWS also accepts a `Date` header; every current SDK sends `X-Amz-Date`, so only
        // that is supported, but the message stays AWS's.
        problems.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header.",
        );
    }
    if !problems.is_empty() {
        return Err(SigV4Error::IncompleteSignature(format!(
            "{} Authorization={value}",
            problems.join(" ")
        )));
    }
    if algorithm != ALGORITHM {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Only {ALGORITHM} is supported. \
             Authorization={value}"
        )));
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        // Unreachable: every `None` was reported above.
        return Err(SigV4Error::IncompleteSignature(format!(
            "Malformed Authorization header: {value}"
        )));
    };
    finish_parse(false, credential, amz_date, signed_headers, signature, None)
}

fn parse_presigned(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<Parsed, SigV4Error> {
    let names = [
        PARAM_ALGORITHM,
        PARAM_CREDENTIAL,
        PARAM_SIGNATURE,
        PARAM_SIGNED_HEADERS,
        PARAM_DATE,
        PARAM_EXPIRES,
    ];
    let mut values = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for name in names {
        let mut found = pairs
            .iter()
            .filter(|(k, _)| k.as_slice() == name.as_bytes());
        let first = found.next();
        if found.next().is_some() {
            // A second copy would be left out of, or doubled in, what was signed: refuse it
            // rather than guess which one the client meant.
            return Err(SigV4Error::IncompleteSignature(format!(
                "AWS query-string parameter '{name}' appears more than once."
            )));
        }
        match first.map(|(_, v)| String::from_utf8_lossy(v).into_owned()) {
            Some(v) => values.push(v),
            None => {
                problems.push(format!(
                    "AWS query-string parameters must include '{name}'."
                ));
                values.push(String::new());
            }
        }
    }
    if !problems.is_empty() {
        return Err(SigV4Error::IncompleteSignature(format!(
            "{} Re-examine the query-string parameters.",
            problems.join(" ")
        )));
    }
    let [algorithm, credential, signature, signed_headers, amz_date, expires] =
        <[String; 6]>::try_from(values).map_err(|_| {
            SigV4Error::IncompleteSignature("Malformed presigned query string.".to_string())
        })?;
    if algorithm != ALGORITHM {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Only {ALGORITHM} is supported."
        )));
    }
    let expires = parse_expires(&expires)?;
    finish_parse(
        true,
        &credential,
        &amz_date,
        &signed_headers,
        &signature,
        Some(expires),
    )
}

fn parse_expires(raw: &str) -> Result<i64, SigV4Error> {
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigV4Error::IncompleteSignature(format!(
            "X-Amz-Expires should be a non-negative number of seconds, not '{raw}'."
        )));
    }
    let expires: i64 = raw.parse().map_err(|_| {
        SigV4Error::IncompleteSignature(format!(
            "X-Amz-Expires should be a non-negative number of seconds, not '{raw}'."
        ))
    })?;
    if expires > MAX_PRESIGNED_EXPIRES_SECONDS {
        return Err(SigV4Error::IncompleteSignature(format!(
            "X-Amz-Expires must be less than a week (in seconds) that is \
             {MAX_PRESIGNED_EXPIRES_SECONDS}"
        )));
    }
    Ok(expires)
}

fn finish_parse(
    presigned: bool,
    credential: &str,
    amz_date: &str,
    signed_headers: &str,
    signature: &str,
    expires: Option<i64>,
) -> Result<Parsed, SigV4Error> {
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::IncompleteSignature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See \
             http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;
    let (scope, terminator) = split_credential(credential).ok_or_else(|| {
        SigV4Error::IncompleteSignature(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        ))
    })?;
    if terminator != TERMINATOR {
        return Err(SigV4Error::InvalidScope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not \
             '{terminator}'."
        )));
    }
    // `amz_date` parsed, so it is 16 ASCII characters and this slice cannot fail.
    let day = amz_date.get(..8).unwrap_or_default();
    if scope.date != day {
        return Err(SigV4Error::InvalidScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from '{amz_date}'.",
            scope.date
        )));
    }
    // Signing `host` binds the request to the endpoint it was meant for.
    if !signed_headers
        .split(';')
        .any(|h| h.eq_ignore_ascii_case("host"))
    {
        return Err(SigV4Error::IncompleteSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_string(),
        ));
    }
    Ok(Parsed {
        presigned,
        scope,
        amz_date: amz_date.to_string(),
        signed_at,
        signed_headers: signed_headers.to_string(),
        signature: signature.to_string(),
        expires,
    })
}

fn check_time(parsed: &Parsed, now: i64) -> Result<(), SigV4Error> {
    let earliest = now.saturating_sub(MAX_CLOCK_SKEW_SECONDS);
    let latest = now.saturating_add(MAX_CLOCK_SKEW_SECONDS);
    if parsed.signed_at > latest {
        return Err(SigV4Error::Expired(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            parsed.amz_date,
            format_amz_date(latest),
            format_amz_date(now)
        )));
    }
    match parsed.expires {
        None => {
            if parsed.signed_at < earliest {
                return Err(SigV4Error::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                    parsed.amz_date,
                    format_amz_date(earliest),
                    format_amz_date(now)
                )));
            }
        }
        Some(expires) => {
            let ends = parsed.signed_at.saturating_add(expires);
            if now > ends {
                return Err(SigV4Error::Expired(format!(
                    "Request has expired: signed at {} for {expires} seconds, so valid until \
                     {}; it is now {}.",
                    parsed.amz_date,
                    format_amz_date(ends),
                    format_amz_date(now)
                )));
            }
        }
    }
    Ok(())
}

/// `Credential=` from an `Authorization` header, for routing (no validation).
fn header_credential(value: &str) -> Option<String> {
    value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .find_map(|token| token.strip_prefix("Credential="))
        .map(str::to_string)
}

/// Split `AKID/date/region/service/terminator`; `None` unless there are exactly five parts.
fn split_credential(credential: &str) -> Option<(CredentialScope, String)> {
    let mut parts = credential.split('/');
    let (Some(key), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((
        CredentialScope {
            access_key_id: key.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        },
        terminator.to_string(),
    ))
}

fn decode_signature(signature: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(signature).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// The payload hashes the client may have signed.
fn payload_hash_candidates(req: &Request, presigned: bool) -> Result<Vec<String>, SigV4Error> {
    let body_hash = hex::encode(Sha256::digest(&req.body));
    match req.header("x-amz-content-sha256").map(str::trim) {
        Some(UNSIGNED_PAYLOAD) => Ok(vec![UNSIGNED_PAYLOAD.to_string()]),
        Some(claimed) => {
            // The canonical request uses the header's value, not the body, so a header that
            // does not describe the body would let the body be swapped under a valid signature.
            if claimed.eq_ignore_ascii_case(&body_hash) {
                Ok(vec![claimed.to_string()])
            } else {
                Err(SigV4Error::SignatureDoesNotMatch)
            }
        }
        None if presigned => Ok(vec![UNSIGNED_PAYLOAD.to_string(), body_hash]),
        None => Ok(vec![body_hash]),
    }
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail; the fallback keeps this
    // path free of panics all the same.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0u8; 32],
    }
}

// --- canonical request pieces ---------------------------------------------------------------

/// AWS's unreserved set: everything else is percent-encoded, upper-case hex.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Split a raw query string into decoded pairs, as `application/x-www-form-urlencoded`: `+`
/// is a space and `%XX` a byte (a malformed escape stays literal). This is how the Rust SDK
/// reads the query before re-encoding it; botocore and the other SDKs send queries already in
/// canonical encoding, which decoding and re-encoding leaves unchanged.
fn parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            (form_decode(key), form_decode(value))
        })
        .collect()
}

fn form_decode(s: &str) -> Vec<u8> {
    let plus_as_space = s.replace('+', " ");
    percent_decode(plus_as_space.as_bytes()).collect()
}

fn query_param<'a>(pairs: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k.as_slice() == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// Every parameter, keys and values encoded with the unreserved set, sorted by key then value;
/// a presigned URL's own signature is left out.
fn canonical_query(pairs: &[(Vec<u8>, Vec<u8>)], presigned: bool) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !(presigned && k.as_slice() == PARAM_SIGNATURE.as_bytes()))
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `name:value\n` for each signed header, in the order signed. Repeated headers are joined
/// with `,`; values are trimmed and runs of spaces collapsed.
fn canonical_headers(req: &Request, signed: &[String]) -> String {
    let mut out = String::new();
    for name in signed {
        let mut values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_all(v))
            .collect();
        if values.is_empty() && name == "host" {
            // HTTP/2 carries the host as the `:authority` pseudo-header.
            values = req
                .headers
                .iter()
                .filter(|(n, _)| n == ":authority")
                .map(|(_, v)| trim_all(v))
                .collect();
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// Trim surrounding whitespace and collapse runs of spaces to one, as SigV4's "Trimall".
fn trim_all(value: &str) -> String {
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    let mut out = String::with_capacity(trimmed.len());
    let mut previous_space = false;
    for c in trimmed.chars() {
        if c == ' ' {
            if !previous_space {
                out.push(c);
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
    out
}

/// The canonical URIs a client may have signed for this raw path (see `verify`), each
/// percent-encoded a second time as non-S3 services require: the path arrives encoded once,
/// and the client encoded that encoded form again before signing.
fn canonical_uri_candidates(raw_path: &str) -> Vec<String> {
    let mut candidates: Vec<String> = Vec::with_capacity(3);
    let raw = if raw_path.is_empty() { "/" } else { raw_path };
    for path in [
        normalize_rfc3986(raw),
        normalize_botocore(raw),
        raw.to_string(),
    ] {
        let encoded = uri_encode(path.as_bytes(), true);
        if !candidates.contains(&encoded) {
            candidates.push(encoded);
        }
    }
    candidates
}

/// Remove `.`/`..` segments and empty segments; keep a trailing slash if the path ended in a
/// slash or a dot segment (the Rust and Java SDKs).
fn normalize_rfc3986(path: &str) -> String {
    let segments = collapse_segments(path);
    let ends_with_slash = ["/", "/.", "/..", "/./", "/../"]
        .iter()
        .any(|s| path.ends_with(s));
    let mut out = format!("/{}", segments.join("/"));
    if ends_with_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// As botocore and the JS SDK: a trailing slash survives only if the path ended in `/` and
/// something is left.
fn normalize_botocore(path: &str) -> String {
    let segments = collapse_segments(path);
    let mut out = format!("/{}", segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

fn collapse_segments(path: &str) -> Vec<&str> {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments
}

// --- time -----------------------------------------------------------------------------------

/// Parse `YYYYMMDDTHHMMSSZ` into Unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Format Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3_600,
        (secs % 3_600) / 60,
        secs % 60
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
