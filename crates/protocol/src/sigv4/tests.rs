//! Tests for SigV4 verification: AWS's published vectors, requests signed by the `aws-sigv4`
//! crate (what the Rust SDK sends), and every kind of refusal.

use super::*;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

// The AWS test suite's documented example credentials.
const SUITE_KEY: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the test suite's signing time.
const SUITE_NOW: i64 = 1_440_938_160;

const KEY: &str = "AKIAWHARFTEST0000001";
const SECRET: &str = "wharf/secret+key/0123456789abcdefghijklmn";
/// 2024-02-29T23:55:00Z: a leap day, five minutes before a date change.
const NOW: i64 = 1_709_250_900;

fn secrets(key: &str) -> Option<String> {
    match key {
        SUITE_KEY => Some(SUITE_SECRET.to_string()),
        KEY => Some(SECRET.to_string()),
        "AKIAIOSFODNN7EXAMPLE" => Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string()),
        _ => None,
    }
}

fn request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request {
    Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_string()))
            .collect(),
        body: Bytes::copy_from_slice(body),
    }
}

fn suite_authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// A request from AWS's SigV4 test suite, as a server would receive it.
fn suite_request(
    method: &str,
    path: &str,
    query: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    signed_headers: &str,
    signature: &str,
) -> Request {
    let authorization = suite_authorization(signed_headers, signature);
    let mut headers = vec![
        ("Host", "example.amazonaws.com"),
        ("X-Amz-Date", "20150830T123600Z"),
    ];
    headers.extend_from_slice(extra_headers);
    headers.push(("Authorization", &authorization));
    request(method, path, query, &headers, body)
}

// --- AWS's published vectors --------------------------------------------------------------

/// Vectors from AWS's SigV4 test suite (`aws-sig-v4-test-suite`, as shipped in the AWS SDKs'
/// own tests). The suite's requests are unencoded, so paths such as `/ሴ` arrive raw here.
#[test]
fn aws_test_suite_vectors_verify() {
    let h = "host;x-amz-date";
    let cases: Vec<(&str, Request)> = vec![
        ("get-vanilla", suite_request("GET", "/", "", &[], b"", h, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")),
        ("get-vanilla-query-order-key-case", suite_request("GET", "/", "Param2=value2&Param1=value1", &[], b"", h, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")),
        ("get-vanilla-empty-query-key", suite_request("GET", "/", "Param1=value1", &[], b"", h, "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb")),
        ("get-vanilla-query-unreserved", suite_request(
            "GET", "/",
            "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            &[], b"", h, "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197")),
        ("get-vanilla-utf8-query", suite_request("GET", "/", "ሴ=bar", &[], b"", h, "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04")),
        ("get-unreserved", suite_request("GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "", &[], b"", h, "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f")),
        ("get-utf8", suite_request("GET", "/ሴ", "", &[], b"", h, "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85")),
        ("get-header-key-duplicate", suite_request(
            "GET", "/", "",
            &[("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            b"", "host;my-header1;x-amz-date", "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea")),
        ("get-header-value-order", suite_request(
            "GET", "/", "",
            &[("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"), ("My-Header1", "value2")],
            b"", "host;my-header1;x-amz-date", "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01")),
        ("get-header-value-trim", suite_request(
            "GET", "/", "",
            &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            b"", "host;my-header1;my-header2;x-amz-date", "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736")),
        ("post-vanilla", suite_request("POST", "/", "", &[], b"", h, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")),
        ("post-vanilla-query", suite_request("POST", "/", "Param1=value1", &[], b"", h, "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11")),
        ("post-header-key-sort", suite_request("POST", "/", "", &[("My-Header1", "value1")], b"", "host;my-header1;x-amz-date", "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c")),
        ("post-header-value-case", suite_request("POST", "/", "", &[("My-Header1", "VALUE1")], b"", "host;my-header1;x-amz-date", "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d")),
        ("post-vanilla-query-nonunreserved", suite_request(
            "POST", "/",
            "%40%23%24%25%5E=&%2B=%2F%2C%3F%3E%3C%60%22%3B%3A%5C%7C%5D%5B%7B%7D",
            &[], b"", h, "66c82657c86e26fb25238d0e69f011edc4c6df5ae71119d7cb98ed9b87393c1e")),
        ("post-x-www-form-urlencoded", suite_request(
            "POST", "/", "", &[("Content-Type", "application/x-www-form-urlencoded")], b"Param1=value1",
            "content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")),
        ("post-x-www-form-urlencoded-parameters", suite_request(
            "POST", "/", "", &[("Content-Type", "application/x-www-form-urlencoded; charset=utf8")], b"Param1=value1",
            "content-type;host;x-amz-date", "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe")),
        // normalize-path cases: each normalizes to `/`, so the canonical request, and with it
        // the signature, is get-vanilla's.
        ("get-relative-relative", suite_request("GET", "/example1/example2/../..", "", &[], b"", h, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")),
        ("get-slash", suite_request("GET", "//", "", &[], b"", h, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")),
        ("get-slash-dot-slash", suite_request("GET", "/./", "", &[], b"", h, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")),
    ];
    for (name, req) in cases {
        let identity =
            verify(&req, SUITE_NOW, &secrets).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            identity,
            Identity {
                access_key_id: SUITE_KEY.to_string(),
                date: "20150830".to_string(),
                region: "us-east-1".to_string(),
                service: "service".to_string(),
                presigned: false,
            },
            "{name}"
        );
    }
}

/// The presigned-URL example of AWS's S3 documentation: `/test.txt` has nothing to encode, so
/// single and double encoding agree, and it is signed over `UNSIGNED-PAYLOAD`.
#[test]
fn aws_documented_presigned_url_verifies() {
    let req = request(
        "GET",
        "/test.txt",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        &[("Host", "examplebucket.s3.amazonaws.com")],
        b"",
    );
    let signed_at = 1_369_353_600; // 2013-05-24T00:00:00Z
    let identity = verify(&req, signed_at + 3_600, &secrets).expect("AWS's example verifies");
    assert!(identity.presigned);
    assert_eq!(identity.service, "s3");
    assert!(
        verify(&req, signed_at + 86_400, &secrets).is_ok(),
        "valid through its last second"
    );
    let err = verify(&req, signed_at + 86_401, &secrets).expect_err("expired");
    assert_eq!(
        err,
        SigV4Error::Expired(
            "Request has expired: signed at 20130524T000000Z for 86400 seconds, so valid until \
             20130525T000000Z; it is now 20130525T000001Z."
                .to_string()
        )
    );
}

#[test]
fn suite_vector_with_the_wrong_secret_fails() {
    let req = suite_request(
        "GET",
        "/",
        "",
        &[],
        b"",
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    );
    let wrong = |_: &str| Some("not the secret".to_string());
    assert_eq!(
        verify(&req, SUITE_NOW, &wrong),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
}

// --- requests signed by the aws-sigv4 crate -----------------------------------------------

struct Signer<'a> {
    settings: SigningSettings,
    secret: &'a str,
    key: &'a str,
    region: &'a str,
    service: &'a str,
    session_token: Option<&'a str>,
    time: i64,
    unsigned_body: bool,
}

impl<'a> Signer<'a> {
    fn new() -> Self {
        Self {
            settings: SigningSettings::default(),
            secret: SECRET,
            key: KEY,
            region: "us-east-1",
            service: "ecs",
            session_token: None,
            time: NOW,
            unsigned_body: false,
        }
    }

    fn presigned(mut self, expires_in: u64) -> Self {
        self.settings.signature_location = SignatureLocation::QueryParams;
        self.settings.expires_in = Some(Duration::from_secs(expires_in));
        self
    }

    /// Sign as the Rust SDK would and return what the server receives.
    fn sign(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let identity = Credentials::new(
            self.key,
            self.secret,
            self.session_token.map(str::to_string),
            None,
            "wharf-tests",
        )
        .into();
        let time = u64::try_from(self.time).expect("test times are after 1970");
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(UNIX_EPOCH + Duration::from_secs(time))
            .settings(self.settings.clone())
            .build()
            .expect("signing params")
            .into();
        let signable_body = if self.unsigned_body {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(body)
        };
        let signable = SignableRequest::new(method, uri, headers.iter().copied(), signable_body)
            .expect("signable request");
        let (instructions, _signature) = sign(signable, &params).expect("signs").into_parts();

        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut signed = builder.body(()).expect("http request");
        instructions.apply_to_request_http1x(&mut signed);
        received(&signed, body)
    }
}

/// What the server sees for a request an HTTP client sends: raw path and query, a `Host`
/// header taken from the URI.
fn received(signed: &http::Request<()>, body: &[u8]) -> Request {
    let mut headers: Vec<(String, String)> = Vec::new();
    if !signed.headers().contains_key(http::header::HOST) {
        let authority = signed.uri().authority().expect("absolute URI").as_str();
        headers.push(("host".to_string(), authority.to_string()));
    }
    for (name, value) in signed.headers() {
        headers.push((
            name.as_str().to_string(),
            value.to_str().expect("ASCII header").to_string(),
        ));
    }
    Request {
        method: signed.method().as_str().to_string(),
        path: signed.uri().path().to_string(),
        query: signed.uri().query().unwrap_or("").to_string(),
        headers,
        body: Bytes::copy_from_slice(body),
    }
}

fn ecs_call(signer: &Signer<'_>, body: &[u8]) -> Request {
    signer.sign(
        "POST",
        "https://ecs.us-east-1.amazonaws.com/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            ),
        ],
        body,
    )
}

fn set_header(req: &mut Request, name: &str, value: &str) {
    for (n, v) in req.headers.iter_mut() {
        if n == name {
            *v = value.to_string();
        }
    }
}

#[test]
fn sdk_signed_json_post_verifies() {
    let req = ecs_call(&Signer::new(), br#"{"maxResults":10}"#);
    let identity = verify(&req, NOW, &secrets).expect("verifies");
    assert_eq!(
        identity,
        Identity {
            access_key_id: KEY.to_string(),
            date: "20240229".to_string(),
            region: "us-east-1".to_string(),
            service: "ecs".to_string(),
            presigned: false,
        }
    );
    assert_eq!(scope_service(&req).as_deref(), Some("ecs"));
}

#[test]
fn sdk_signed_with_content_sha256_header_verifies() {
    let mut signer = Signer::new();
    signer.settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let req = ecs_call(&signer, br#"{"cluster":"default"}"#);
    assert!(req.header("x-amz-content-sha256").is_some());
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn unsigned_payload_verifies_whatever_the_body() {
    let mut signer = Signer::new();
    signer.settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    signer.unsigned_body = true;
    let mut req = ecs_call(&signer, b"{}");
    assert_eq!(req.header("x-amz-content-sha256"), Some(UNSIGNED_PAYLOAD));
    assert!(verify(&req, NOW, &secrets).is_ok());
    // The client chose not to sign the body, so a different one is still accepted.
    req.body = Bytes::from_static(br#"{"other":true}"#);
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn session_token_is_covered_when_signed() {
    let mut signer = Signer::new();
    signer.session_token = Some("FwoGZXIvYXdzEXAMPLETOKEN//+=");
    let mut req = ecs_call(&signer, b"{}");
    assert!(req.header("x-amz-security-token").is_some());
    assert!(verify(&req, NOW, &secrets).is_ok());
    set_header(&mut req, "x-amz-security-token", "another-token");
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
}

#[test]
fn tricky_query_strings_verify() {
    let queries = [
        "a=b%20c",
        "a=b+c",
        "a=%2B&b=%2F&c=~&d=%7E",
        "slash=a/b&tilde=~x",
        "key=&empty",
        "k=2&k=1&k=10&k=",
        "%E1%88%B4=%C3%A9t%C3%A9",
        "A=1&a=2&B=3&_=4&-=5&.=6",
        "x=%25&y=%2525",
        "space%20key=v&plus+key=v",
        "semi=%3B&colon=%3A&at=%40&bang=%21&star=%2A&quote=%27&paren=%28%29",
        "=novalue&&trailing=",
        "Action=ListClusters&Version=2014-11-13&Filter.1.Name=a%20b",
    ];
    for query in queries {
        let uri = format!("https://ecs.us-east-1.amazonaws.com/?{query}");
        let req = Signer::new().sign("GET", &uri, &[], b"");
        assert_eq!(req.query, query, "the client sent the query as written");
        verify(&req, NOW, &secrets).unwrap_or_else(|e| panic!("{query}: {e:?}"));
    }
}

#[test]
fn encoded_and_unusual_paths_verify() {
    let paths = [
        "/",
        "/a%20b/c",
        "/a%2Fb",
        "/%E1%88%B4/%C3%A9",
        "/~user/-._/",
        "/a+b/(c)!*'$,;:@=&",
        "/foo/../bar//baz/./",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123%3Afunction%3Af/invocations",
        "/trailing/.",
        "/x/y/..",
        "/%25percent",
    ];
    for path in paths {
        let uri = format!("https://ecs.us-east-1.amazonaws.com{path}");
        let req = Signer::new().sign("PUT", &uri, &[("content-type", "application/json")], b"{}");
        verify(&req, NOW, &secrets).unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

#[test]
fn paths_signed_without_normalization_verify() {
    // The Go SDK does not normalize paths; its signature covers `//` and `..` as sent.
    let mut signer = Signer::new();
    signer.settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    for path in ["//double//slash", "/a/../b", "/a/./b/"] {
        let uri = format!("https://ecs.us-east-1.amazonaws.com{path}");
        let req = signer.sign("GET", &uri, &[], b"");
        verify(&req, NOW, &secrets).unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

#[test]
fn botocore_style_path_normalization_verifies() {
    // botocore drops the trailing slash after a dot segment (`/a/b/..` -> `/a`) where the Rust
    // SDK keeps it (`/a/`). Sign botocore's way by hand.
    let path = "/a/b/..";
    let creq = format!(
        "GET\n/a\n\nhost:ecs.us-east-1.amazonaws.com\nx-amz-date:20240229T235500Z\n\nhost;x-amz-date\n{}",
        hex::encode(Sha256::digest(b""))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n20240229T235500Z\n20240229/us-east-1/ecs/aws4_request\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let key = signing_key(SECRET, "20240229", "us-east-1", "ecs");
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={KEY}/20240229/us-east-1/ecs/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={signature}"
    );
    let req = request(
        "GET",
        path,
        "",
        &[
            ("host", "ecs.us-east-1.amazonaws.com"),
            ("x-amz-date", "20240229T235500Z"),
            ("authorization", &authorization),
        ],
        b"",
    );
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn host_with_port_verifies() {
    let req = Signer::new().sign("POST", "http://127.0.0.1:8080/", &[], b"{}");
    assert_eq!(req.header("host"), Some("127.0.0.1:8080"));
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn http2_authority_stands_in_for_host() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    for (name, _) in req.headers.iter_mut() {
        if name == "host" {
            *name = ":authority".to_string();
        }
    }
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn header_names_are_matched_case_insensitively() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    for (name, _) in req.headers.iter_mut() {
        *name = name.to_ascii_uppercase();
    }
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn unsigned_extra_headers_do_not_matter() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    req.headers
        .push(("user-agent".to_string(), "aws-cli/2".to_string()));
    req.headers
        .push(("x-forwarded-for".to_string(), "10.0.0.1".to_string()));
    assert!(verify(&req, NOW, &secrets).is_ok());
}

// --- presigned URLs -----------------------------------------------------------------------

#[test]
fn presigned_url_verifies_until_it_expires() {
    let signer = Signer::new().presigned(300);
    let req = signer.sign(
        "GET",
        "https://ecs.us-east-1.amazonaws.com/?Action=Describe&x=a%20b",
        &[],
        b"",
    );
    assert!(req.query.contains("X-Amz-Signature="));
    assert!(req.header("authorization").is_none());
    assert_eq!(scope_service(&req).as_deref(), Some("ecs"));

    let identity = verify(&req, NOW, &secrets).expect("verifies");
    assert!(identity.presigned);
    assert_eq!(identity.access_key_id, KEY);
    assert!(verify(&req, NOW + 300, &secrets).is_ok());
    assert!(matches!(
        verify(&req, NOW + 301, &secrets),
        Err(SigV4Error::Expired(_))
    ));
    assert!(verify(&req, NOW - MAX_CLOCK_SKEW_SECONDS, &secrets).is_ok());
    let err = verify(&req, NOW - MAX_CLOCK_SKEW_SECONDS - 1, &secrets).expect_err("future");
    assert!(
        matches!(&err, SigV4Error::Expired(m) if m.starts_with("Signature not yet current")),
        "{err:?}"
    );
}

#[test]
fn presigned_url_signed_over_the_body_hash_verifies() {
    // botocore and the Go SDK presign non-S3 requests over the (empty) body's hash.
    let req = Signer::new().presigned(60).sign(
        "GET",
        "https://sts.amazonaws.com/?Action=GetCallerIdentity",
        &[],
        b"",
    );
    assert!(verify(&req, NOW, &secrets).is_ok());
    let mut signer = Signer::new().presigned(60);
    signer.unsigned_body = true;
    let req = signer.sign(
        "GET",
        "https://sts.amazonaws.com/?Action=GetCallerIdentity",
        &[],
        b"",
    );
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn presigned_url_with_session_token_verifies() {
    let mut signer = Signer::new().presigned(60);
    signer.session_token = Some("SESSION/TOKEN+==");
    let req = signer.sign("GET", "https://ecs.us-east-1.amazonaws.com/", &[], b"");
    assert!(req.query.contains("X-Amz-Security-Token="));
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn presigned_url_tampering_is_refused() {
    let req = Signer::new().presigned(60).sign(
        "GET",
        "https://ecs.us-east-1.amazonaws.com/?a=1",
        &[],
        b"",
    );
    let mut changed = req.clone();
    changed.query = changed.query.replace("a=1", "a=2");
    assert_eq!(
        verify(&changed, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
    let mut added = req.clone();
    added.query.push_str("&b=2");
    assert_eq!(
        verify(&added, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
    let mut longer = req.clone();
    longer.query = longer
        .query
        .replace("X-Amz-Expires=60", "X-Amz-Expires=3600");
    assert_eq!(
        verify(&longer, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
    let mut doubled = req.clone();
    doubled.query.push_str("&X-Amz-Signature=00");
    assert!(matches!(
        verify(&doubled, NOW, &secrets),
        Err(SigV4Error::IncompleteSignature(_))
    ));
}

#[test]
fn presigned_expiry_is_capped_at_a_week() {
    let req = Signer::new().presigned(604_801).sign(
        "GET",
        "https://ecs.us-east-1.amazonaws.com/",
        &[],
        b"",
    );
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::IncompleteSignature(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800".to_string()
        ))
    );
    let req = Signer::new().presigned(604_800).sign(
        "GET",
        "https://ecs.us-east-1.amazonaws.com/",
        &[],
        b"",
    );
    assert!(verify(&req, NOW + 604_800, &secrets).is_ok());
}

#[test]
fn presigned_url_missing_parameters_is_incomplete() {
    let req = request(
        "GET",
        "/",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc",
        &[("host", "h")],
        b"",
    );
    let Err(SigV4Error::IncompleteSignature(message)) = verify(&req, NOW, &secrets) else {
        panic!("expected IncompleteSignature");
    };
    assert_eq!(
        message,
        "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string \
         parameters must include 'X-Amz-SignedHeaders'. AWS query-string parameters must \
         include 'X-Amz-Date'. AWS query-string parameters must include 'X-Amz-Expires'. \
         Re-examine the query-string parameters."
    );
}

#[test]
fn both_mechanisms_at_once_is_refused() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    req.query = "X-Amz-Signature=00".to_string();
    assert!(
        matches!(verify(&req, NOW, &secrets), Err(SigV4Error::IncompleteSignature(m)) if m.starts_with("Only one auth mechanism"))
    );
}

// --- refusals ------------------------------------------------------------------------------

#[test]
fn wrong_secret_is_signature_does_not_match() {
    let mut signer = Signer::new();
    signer.secret = "not-the-right-secret";
    let req = ecs_call(&signer, b"{}");
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
}

#[test]
fn unknown_key_is_refused() {
    let mut signer = Signer::new();
    signer.key = "AKIAUNKNOWN";
    let req = ecs_call(&signer, b"{}");
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::UnknownAccessKey)
    );
}

#[test]
fn tampering_is_refused() {
    let req = ecs_call(&Signer::new(), br#"{"cluster":"a"}"#);
    assert!(verify(&req, NOW, &secrets).is_ok());

    let mut body = req.clone();
    body.body = Bytes::from_static(br#"{"cluster":"b"}"#);
    assert_eq!(
        verify(&body, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "body"
    );

    let mut header = req.clone();
    set_header(
        &mut header,
        "x-amz-target",
        "AmazonEC2ContainerServiceV20141113.DeleteCluster",
    );
    assert_eq!(
        verify(&header, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "header"
    );

    let mut host = req.clone();
    set_header(&mut host, "host", "evil.example.com");
    assert_eq!(
        verify(&host, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "host"
    );

    let mut query = req.clone();
    query.query = "extra=1".to_string();
    assert_eq!(
        verify(&query, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "query"
    );

    let mut method = req.clone();
    method.method = "PUT".to_string();
    assert_eq!(
        verify(&method, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "method"
    );

    let mut path = req.clone();
    path.path = "/other".to_string();
    assert_eq!(
        verify(&path, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "path"
    );

    let mut date = req.clone();
    set_header(&mut date, "x-amz-date", "20240229T235501Z");
    assert_eq!(
        verify(&date, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "date"
    );

    let mut dup = req.clone();
    dup.headers
        .push(("x-amz-target".to_string(), "Another.Op".to_string()));
    assert_eq!(
        verify(&dup, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "repeated header"
    );

    let mut signature = req.clone();
    let auth = signature
        .header("authorization")
        .expect("signed")
        .to_string();
    let flipped = match auth.chars().last() {
        Some('0') => format!("{}1", &auth[..auth.len() - 1]),
        _ => format!("{}0", &auth[..auth.len() - 1]),
    };
    set_header(&mut signature, "authorization", &flipped);
    assert_eq!(
        verify(&signature, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch),
        "signature"
    );
}

#[test]
fn a_content_sha256_header_that_lies_about_the_body_is_refused() {
    let mut signer = Signer::new();
    signer.settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let mut req = ecs_call(&signer, br#"{"a":1}"#);
    req.body = Bytes::from_static(br#"{"a":2}"#);
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
}

#[test]
fn an_unsigned_payload_header_cannot_be_slipped_in() {
    // The client signed the body's hash; claiming UNSIGNED-PAYLOAD afterwards changes the
    // canonical request, so the signature no longer matches.
    let mut req = ecs_call(&Signer::new(), br#"{"a":1}"#);
    req.headers.insert(
        0,
        (
            "x-amz-content-sha256".to_string(),
            UNSIGNED_PAYLOAD.to_string(),
        ),
    );
    req.body = Bytes::from_static(br#"{"a":2}"#);
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
}

#[test]
fn clock_skew_window_is_fifteen_minutes_each_way() {
    let req = ecs_call(&Signer::new(), b"{}");
    assert!(verify(&req, NOW + MAX_CLOCK_SKEW_SECONDS, &secrets).is_ok());
    assert!(verify(&req, NOW - MAX_CLOCK_SKEW_SECONDS, &secrets).is_ok());

    // Signed at 2024-02-29T23:55:00Z, checked at 00:10:01 on March 1st.
    assert_eq!(
        verify(&req, NOW + MAX_CLOCK_SKEW_SECONDS + 1, &secrets),
        Err(SigV4Error::Expired(
            "Signature expired: 20240229T235500Z is now earlier than 20240229T235501Z \
             (20240301T001001Z - 15 min.)"
                .to_string()
        ))
    );
    assert_eq!(
        verify(&req, NOW - MAX_CLOCK_SKEW_SECONDS - 1, &secrets),
        Err(SigV4Error::Expired(
            "Signature not yet current: 20240229T235500Z is still later than 20240229T235459Z \
             (20240229T233959Z + 15 min.)"
                .to_string()
        ))
    );
}

#[test]
fn expiry_is_checked_before_the_key_is_looked_up() {
    let mut signer = Signer::new();
    signer.key = "AKIAUNKNOWN";
    let req = ecs_call(&signer, b"{}");
    assert!(matches!(
        verify(&req, NOW + 3_600, &secrets),
        Err(SigV4Error::Expired(_))
    ));
}

#[test]
fn no_authentication_at_all() {
    let req = request(
        "POST",
        "/",
        "",
        &[("host", "h"), ("x-amz-date", "20240229T235500Z")],
        b"{}",
    );
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::MissingAuthentication)
    );
    let blank = request(
        "POST",
        "/",
        "",
        &[("host", "h"), ("authorization", "  ")],
        b"",
    );
    assert_eq!(
        verify(&blank, NOW, &secrets),
        Err(SigV4Error::MissingAuthentication)
    );
    assert_eq!(scope_service(&req), None);
}

fn incomplete_message(authorization: &str, amz_date: Option<&str>) -> String {
    let mut headers = vec![("host", "h"), ("authorization", authorization)];
    if let Some(date) = amz_date {
        headers.push(("x-amz-date", date));
    }
    match verify(&request("POST", "/", "", &headers, b""), NOW, &secrets) {
        Err(SigV4Error::IncompleteSignature(message)) => message,
        other => panic!("expected IncompleteSignature, got {other:?}"),
    }
}

#[test]
fn malformed_authorization_headers_are_incomplete() {
    let date = Some("20240229T235500Z");
    let cred = "AKIAWHARFTEST0000001/20240229/us-east-1/ecs/aws4_request";

    assert_eq!(
        incomplete_message(
            &format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host"),
            date
        ),
        format!(
            "Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256 \
             Credential={cred}, SignedHeaders=host"
        )
    );
    assert_eq!(
        incomplete_message("AWS AKIDEXAMPLE:c2lnbmF0dXJl=", None),
        "Authorization header requires 'Credential' parameter. Authorization header requires \
         'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
         Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
         Authorization=AWS AKIDEXAMPLE:c2lnbmF0dXJl="
    );
    assert_eq!(
        incomplete_message(
            "AWS4-HMAC-SHA256 Credential= AKIDEXAMPLE/20240229/us-east-1/ecs/aws4_request, \
             SignedHeaders=host, Signature=00",
            date
        ),
        "'AKIDEXAMPLE/20240229/us-east-1/ecs/aws4_request' not a valid key=value pair (missing \
         equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential= \
         AKIDEXAMPLE/20240229/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00'."
    );
    assert!(incomplete_message(
        &format!("AWS4-HMAC-SHA512 Credential={cred}, SignedHeaders=host, Signature=00"),
        date
    )
    .starts_with("Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'"));
    assert_eq!(
        incomplete_message(
            "AWS4-HMAC-SHA256 Credential=AKID/20240229/us-east-1/aws4_request, SignedHeaders=host, Signature=00",
            date
        ),
        "Credential must have exactly 5 slash-delimited elements, e.g. \
         keyid/date/region/service/term, got 'AKID/20240229/us-east-1/aws4_request'"
    );
    assert_eq!(
        incomplete_message(
            &format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=x-amz-date, Signature=00"),
            date
        ),
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    );
    assert_eq!(
        incomplete_message(
            &format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host, Signature=00"),
            Some("2024-02-29T23:55:00Z")
        ),
        "Date must be in ISO-8601 'basic format'. Got '2024-02-29T23:55:00Z'. See \
         http://en.wikipedia.org/wiki/ISO_8601"
    );
}

#[test]
fn compact_authorization_header_without_spaces_verifies() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    let compact = req
        .header("authorization")
        .expect("signed")
        .replace(", ", ",");
    set_header(&mut req, "authorization", &compact);
    assert!(verify(&req, NOW, &secrets).is_ok());
}

#[test]
fn multiple_authorization_headers_are_refused() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    let auth = req.header("authorization").expect("signed").to_string();
    req.headers.push(("authorization".to_string(), auth));
    assert!(matches!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::IncompleteSignature(_))
    ));
}

#[test]
fn scope_must_agree_with_the_request() {
    // Signed at 23:55 on the 29th, but the scope claims the 1st of March.
    let req = request(
        "POST",
        "/",
        "",
        &[
            ("host", "h"),
            ("x-amz-date", "20240229T235500Z"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAWHARFTEST0000001/20240301/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
        ],
        b"",
    );
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::InvalidScope(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '20240301' != '20240229', from '20240229T235500Z'."
                .to_string()
        ))
    );
    let req = request(
        "POST",
        "/",
        "",
        &[
            ("host", "h"),
            ("x-amz-date", "20240229T235500Z"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAWHARFTEST0000001/20240229/us-east-1/ecs/aws4_blah, SignedHeaders=host;x-amz-date, Signature=00"),
        ],
        b"",
    );
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::InvalidScope(
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4_blah'."
                .to_string()
        ))
    );
}

#[test]
fn non_hex_signature_is_a_mismatch() {
    let mut req = ecs_call(&Signer::new(), b"{}");
    let auth = req.header("authorization").expect("signed").to_string();
    let (head, _) = auth.split_once("Signature=").expect("has signature");
    set_header(&mut req, "authorization", &format!("{head}Signature=zz"));
    assert_eq!(
        verify(&req, NOW, &secrets),
        Err(SigV4Error::SignatureDoesNotMatch)
    );
}

#[test]
fn scope_service_reads_header_and_query() {
    let req = request(
        "POST",
        "/",
        "",
        &[("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20240229/eu-west-1/sts/aws4_request, SignedHeaders=host, Signature=00")],
        b"",
    );
    assert_eq!(scope_service(&req).as_deref(), Some("sts"));
    assert_eq!(
        credential_scope(&req),
        Some(CredentialScope {
            access_key_id: "AKID".to_string(),
            date: "20240229".to_string(),
            region: "eu-west-1".to_string(),
            service: "sts".to_string(),
        })
    );
    let req = request(
        "GET",
        "/",
        "X-Amz-Credential=AKID%2F20240229%2Fus-east-1%2Fecs%2Faws4_request",
        &[],
        b"",
    );
    assert_eq!(scope_service(&req).as_deref(), Some("ecs"));
    let req = request("GET", "/", "X-Amz-Credential=garbage", &[], b"");
    assert_eq!(scope_service(&req), None);
}

#[test]
fn aws_errors_per_style() {
    use ErrorStyle::{Json, Query};
    let expired = SigV4Error::Expired("Signature expired: x".to_string());
    let cases = [
        (
            SigV4Error::MissingAuthentication,
            Json,
            "MissingAuthenticationTokenException",
            400,
        ),
        (
            SigV4Error::IncompleteSignature("m".to_string()),
            Json,
            "IncompleteSignatureException",
            400,
        ),
        (
            SigV4Error::UnknownAccessKey,
            Json,
            "UnrecognizedClientException",
            400,
        ),
        (
            SigV4Error::SignatureDoesNotMatch,
            Json,
            "InvalidSignatureException",
            400,
        ),
        (
            SigV4Error::InvalidScope("m".to_string()),
            Json,
            "InvalidSignatureException",
            400,
        ),
        (expired.clone(), Json, "InvalidSignatureException", 400),
        (
            SigV4Error::MissingAuthentication,
            Query,
            "MissingAuthenticationToken",
            403,
        ),
        (
            SigV4Error::IncompleteSignature("m".to_string()),
            Query,
            "IncompleteSignature",
            400,
        ),
        (
            SigV4Error::UnknownAccessKey,
            Query,
            "InvalidClientTokenId",
            403,
        ),
        (
            SigV4Error::SignatureDoesNotMatch,
            Query,
            "SignatureDoesNotMatch",
            403,
        ),
        (
            SigV4Error::InvalidScope("m".to_string()),
            Query,
            "SignatureDoesNotMatch",
            403,
        ),
        (expired.clone(), Query, "SignatureDoesNotMatch", 403),
    ];
    for (error, style, code, status) in cases {
        let aws = error.to_aws_error(style);
        assert_eq!(
            (aws.code.as_str(), aws.status),
            (code, status),
            "{error:?} {style:?}"
        );
        assert_eq!(aws.fault, crate::Fault::Sender);
        assert_eq!(aws.message, error.to_string());
    }
    assert_eq!(
        SigV4Error::UnknownAccessKey.to_aws_error(Json).message,
        "The security token included in the request is invalid."
    );
    assert_eq!(
        SigV4Error::SignatureDoesNotMatch
            .to_aws_error(Query)
            .message,
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    );
    assert_eq!(
        SigV4Error::MissingAuthentication.to_aws_error(Json).message,
        "Request is missing Authentication Token"
    );
    assert_eq!(expired.to_aws_error(Json).message, "Signature expired: x");
}

// --- canonicalization pieces --------------------------------------------------------------

#[test]
fn uri_encoding_uses_the_unreserved_set() {
    assert_eq!(uri_encode(b"aZ09-._~", false), "aZ09-._~");
    assert_eq!(uri_encode(b"a b+c/d*", false), "a%20b%2Bc%2Fd%2A");
    assert_eq!(uri_encode(b"/a b/", true), "/a%20b/");
    assert_eq!(uri_encode("ሴ".as_bytes(), false), "%E1%88%B4");
}

#[test]
fn path_candidates_double_encode() {
    assert_eq!(
        canonical_uri_candidates("/a%20b"),
        vec!["/a%2520b".to_string()]
    );
    assert_eq!(canonical_uri_candidates(""), vec!["/".to_string()]);
    assert_eq!(
        canonical_uri_candidates("/a/b/.."),
        vec!["/a/".to_string(), "/a".to_string(), "/a/b/..".to_string()]
    );
}

#[test]
fn query_is_decoded_then_canonically_encoded_and_sorted() {
    let pairs = parse_query("b=2&a=x+y&a=%20&c&%7e=%7E");
    assert_eq!(canonical_query(&pairs, false), "a=%20&a=x%20y&b=2&c=&~=~");
}

#[test]
fn header_values_are_trimmed_and_collapsed() {
    assert_eq!(trim_all("  a   b  c \t"), "a b c");
    assert_eq!(trim_all("\"a   b\""), "\"a b\"");
    assert_eq!(trim_all(""), "");
}

#[test]
fn amz_dates_parse_and_format() {
    assert_eq!(parse_amz_date("20150830T123600Z"), Some(SUITE_NOW));
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20240229T235500Z"), Some(NOW));
    assert_eq!(format_amz_date(NOW), "20240229T235500Z");
    for bad in [
        "20230229T000000Z",
        "20150830T123600",
        "20150830 123600Z",
        "2015083OT123600Z",
        "20151301T000000Z",
        "20150830T246000Z",
        "+0150830T123600Z",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}

// --- properties ---------------------------------------------------------------------------

fn form_encode(s: &str) -> String {
    // How a caller might put arbitrary text in a URL: encode everything but unreserved bytes,
    // and sometimes use `+` for a space.
    let mut out = String::new();
    for b in s.bytes() {
        if b == b' ' && s.len().is_multiple_of(2) {
            out.push('+');
        } else if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sdk_signed_queries_verify(params in prop::collection::vec((".{0,12}", ".{0,12}"), 0..5)) {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let uri = format!("https://ecs.us-east-1.amazonaws.com/?{}", query.join("&"));
        let req = Signer::new().sign("GET", &uri, &[], b"");
        prop_assert!(verify(&req, NOW, &secrets).is_ok(), "{}", uri);
    }

    #[test]
    fn sdk_signed_paths_verify(segments in prop::collection::vec("[a-zA-Z0-9 ._~%!$&'()*+,;=:@ሴé-]{0,8}", 0..5)) {
        let path: String = segments.iter().map(|s| format!("/{}", form_encode(s).replace('+', "%20"))).collect();
        let uri = format!("https://ecs.us-east-1.amazonaws.com{path}");
        let req = Signer::new().sign("POST", &uri, &[], b"{}");
        prop_assert!(verify(&req, NOW, &secrets).is_ok(), "{}", uri);
    }

    #[test]
    fn sdk_signed_bodies_verify_and_tampering_fails(body in prop::collection::vec(any::<u8>(), 0..64), flip in any::<prop::sample::Index>()) {
        let req = ecs_call(&Signer::new(), &body);
        prop_assert!(verify(&req, NOW, &secrets).is_ok());
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 0x01;
            let mut changed = req.clone();
            changed.body = Bytes::from(tampered);
            prop_assert_eq!(verify(&changed, NOW, &secrets), Err(SigV4Error::SignatureDoesNotMatch));
        }
    }

    #[test]
    fn verify_never_panics(
        method in "[A-Z]{0,6}",
        path in ".{0,20}",
        query in ".{0,40}",
        auth in ".{0,120}",
        date in ".{0,20}",
        now in any::<i64>(),
    ) {
        let req = request(&method, &path, &query, &[("host", "h"), ("authorization", &auth), ("x-amz-date", &date)], b"");
        let _ = verify(&req, now, &secrets);
        let _ = scope_service(&req);
    }

    #[test]
    fn format_and_parse_round_trip(t in 0i64..253_402_300_799) {
        prop_assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
    }
}
