//! Opaque, tamper-checked pagination tokens (`nextToken`).
//!
//! A token carries a listing's resume position (whatever string the store uses, e.g. the last
//! key returned) plus an HMAC-SHA256 tag over that position and a *scope*: the operation and
//! the filter parameters of the listing that issued it. A client can neither forge a position
//! nor replay a token from one listing (say, `ListTasks` of cluster A) on another.
//!
//! Tokens are not encrypted: the position is only base64-encoded, so it must not hold secrets.
//! They do not expire either; a caller that wants that puts a timestamp in the position.
//!
//! Format, URL-safe base64 without padding: `version (1 byte) || position || tag (32 bytes)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Keeps this key's tags apart from any other use of the same key.
const DOMAIN: &[u8] = b"wharf/pagination/v1\0";

/// Why a token was refused. Callers usually map every variant to the service's
/// "invalid token" error without telling the client which one it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not URL-safe base64, or too short to hold a tag.
    #[error("the pagination token is malformed")]
    Malformed,
    /// Issued by a different token format version.
    #[error("the pagination token has an unsupported version")]
    UnsupportedVersion,
    /// The tag does not match: altered, forged, or issued for a different listing.
    #[error("the pagination token is not valid for this request")]
    Invalid,
}

/// Encodes and checks tokens with one secret key.
#[derive(Clone)]
pub struct TokenCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenCodec {
    // The key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCodec")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TokenCodec {
    /// `key` should be at least 32 random bytes, kept by the server; changing it invalidates
    /// every token outstanding, which clients see as an invalid `nextToken`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// A token resuming at `position` in the listing identified by `scope`.
    pub fn encode(&self, scope: &str, position: &str) -> String {
        let tag = self.tag(scope, position.as_bytes());
        let mut raw = Vec::with_capacity(1 + position.len() + TAG_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(position.as_bytes());
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position in `token`, if this codec issued it for the same `scope`.
    pub fn decode(&self, scope: &str, token: &str) -> Result<String, TokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        let Some((&version, rest)) = raw.split_first() else {
            return Err(TokenError::Malformed);
        };
        if version != VERSION {
            return Err(TokenError::UnsupportedVersion);
        }
        let Some(split) = rest.len().checked_sub(TAG_LEN) else {
            return Err(TokenError::Malformed);
        };
        let (position, tag) = rest.split_at(split);
        let expected = self.tag(scope, position);
        if !bool::from(expected.as_slice().ct_eq(tag)) {
            return Err(TokenError::Invalid);
        }
        // Only this codec's `encode` produces a valid tag, and it only tags UTF-8.
        String::from_utf8(position.to_vec()).map_err(|_| TokenError::Invalid)
    }

    fn tag(&self, scope: &str, position: &[u8]) -> [u8; TAG_LEN] {
        // The scope is length-prefixed so that no (scope, position) pair can be re-split into
        // another with the same tag input.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            // Unreachable: HMAC accepts keys of any length.
            return [0u8; TAG_LEN];
        };
        mac.update(DOMAIN);
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(position);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codec() -> TokenCodec {
        TokenCodec::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trips_a_position() {
        let c = codec();
        let token = c.encode("ListTasks cluster=default", "arn:aws:ecs:task/abc");
        assert_eq!(
            c.decode("ListTasks cluster=default", &token).as_deref(),
            Ok("arn:aws:ecs:task/abc")
        );
    }

    #[test]
    fn tokens_are_url_safe() {
        let token = codec().encode("scope", "position/with+odd?chars&=ü");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn empty_position_round_trips() {
        let c = codec();
        let token = c.encode("s", "");
        assert_eq!(c.decode("s", &token).as_deref(), Ok(""));
    }

    #[test]
    fn refuses_a_token_from_another_scope() {
        let c = codec();
        let token = c.encode("ListTasks cluster=a", "42");
        assert_eq!(
            c.decode("ListTasks cluster=b", &token),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            c.decode("ListServices cluster=a", &token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn scope_and_position_cannot_be_re_split() {
        let c = codec();
        let token = c.encode("ab", "c");
        // Same bytes, different split: must not verify as scope "a" + position "bc".
        let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("own token decodes");
        raw.splice(1..1, *b"b");
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(c.decode("a", &forged), Err(TokenError::Invalid));
    }

    #[test]
    fn refuses_a_token_from_another_key() {
        let token = codec().encode("s", "p");
        let other = TokenCodec::new(b"another key entirely, 32 bytes!!");
        assert_eq!(other.decode("s", &token), Err(TokenError::Invalid));
    }

    #[test]
    fn refuses_garbage() {
        let c = codec();
        assert_eq!(c.decode("s", ""), Err(TokenError::Malformed));
        assert_eq!(c.decode("s", "not base64 !!"), Err(TokenError::Malformed));
        assert_eq!(c.decode("s", "AQ"), Err(TokenError::Malformed));
        // Padding is not part of the format.
        let token = c.encode("s", "p");
        assert_eq!(
            c.decode("s", &format!("{token}==")),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn refuses_another_version() {
        let c = codec();
        let mut raw = URL_SAFE_NO_PAD
            .decode(c.encode("s", "p"))
            .expect("own token decodes");
        raw[0] = 2;
        assert_eq!(
            c.decode("s", &URL_SAFE_NO_PAD.encode(raw)),
            Err(TokenError::UnsupportedVersion)
        );
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", codec());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }

    proptest! {
        #[test]
        fn round_trip(scope in ".*", position in ".*") {
            let c = codec();
            let token = c.encode(&scope, &position);
            prop_assert_eq!(c.decode(&scope, &token), Ok(position));
        }

        #[test]
        fn any_single_byte_change_is_refused(
            scope in ".{0,20}",
            position in ".{0,40}",
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let c = codec();
            let mut raw = URL_SAFE_NO_PAD.decode(c.encode(&scope, &position)).expect("own token decodes");
            let i = index.index(raw.len());
            raw[i] ^= flip;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(c.decode(&scope, &tampered).is_err());
        }

        #[test]
        fn truncation_is_refused(scope in ".{0,20}", position in ".{0,40}", cut in 1usize..80) {
            let c = codec();
            let raw = URL_SAFE_NO_PAD.decode(c.encode(&scope, &position)).expect("own token decodes");
            let keep = raw.len().saturating_sub(cut);
            let tampered = URL_SAFE_NO_PAD.encode(&raw[..keep]);
            prop_assert!(c.decode(&scope, &tampered).is_err());
        }

        #[test]
        fn other_scopes_are_refused(scope in ".{0,20}", other in ".{0,20}", position in ".{0,40}") {
            prop_assume!(scope != other);
            let c = codec();
            let token = c.encode(&scope, &position);
            prop_assert_eq!(c.decode(&other, &token), Err(TokenError::Invalid));
        }

        #[test]
        fn decode_never_panics(token in ".*") {
            let _ = codec().decode("s", &token);
        }
    }
}
